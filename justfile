# didact task runner. `just --list` shows every recipe.

config := "configs/default.toml"

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
