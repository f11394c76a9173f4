# didact task runner. `just --list` shows every recipe.

config := "configs/default.toml"
python := env_var_or_default("PYTHON", "python3")

# Run every pipeline stage on the default config (runs/default/).
pipeline *ARGS:
    cargo run --release --bin didact -- pipeline --config {{config}} {{ARGS}}

# The `data` stage alone: tasks, synthetic dialogues, tokenizer.
data *ARGS:
    cargo run --release --bin didact -- data --config {{config}} {{ARGS}}

# Print tasks or dialogues of a run, e.g. `just show dialogues --domain maze`.
show *ARGS:
    cargo run --release --bin didact -- show --config {{config}} {{ARGS}}

# Every test, in release mode; the last line counts the tests that passed.
test *ARGS:
    bash scripts/test.sh {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# Throughput of the student (train, prefill, generation) against PyTorch on
# the same model and batch; writes bench/results.md. Set PYTHON to a Python
# with torch and transformers for the reference (skipped if it has none).
bench:
    cargo bench -p didact-student --bench throughput
    -{{python}} scripts/bench_torch.py
    python3 scripts/bench_report.py
