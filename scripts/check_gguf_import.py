#!/usr/bin/env python3
"""Checks `didact import gguf` against transformers' own GGUF loader on the
same file: every tensor, the tokenization of sample texts, the chat prompt,
and a greedy answer. Needs torch, transformers, gguf and safetensors
(`pip install torch transformers gguf safetensors`); didact itself needs
none of them.

    python3 scripts/check_gguf_import.py \
        --gguf .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --imported models/SmolLM2-135M-Instruct

transformers builds a GPT-2 style tokenizer for every byte-level GGUF file
and drops llama.cpp's per-digit split (`tokenizer.ggml.pre = "smollm"`),
which didact keeps, as llama.cpp and SmolLM2's own tokenizer.json do; the
two differ where a space precedes a digit ("!  1"). Texts without that are
compared for equality; that one is printed.
"""

import argparse
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

SAME = [
    "What is 17+25? Answer with the number only.",
    "ünïcödé 😀 tabs\tand\r\nnewlines",
    "Ana has 7 apples and gets 5 more. How many apples does Ana have now?",
]
DIFFERENT = "Hello world!  12345 don't   x\n\ny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--imported", required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    gdir, gfile = os.path.split(os.path.abspath(args.gguf))
    ref_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gfile)
    ref = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gfile, dtype=torch.float32)
    ours = load_file(os.path.join(args.imported, "model.safetensors"))
    ref_sd = {k: v for k, v in ref.state_dict().items() if k != "lm_head.weight" or not ref.config.tie_word_embeddings}
    ok = True
    if set(ours) != set(ref_sd):
        print("tensor names differ:", sorted(set(ours) ^ set(ref_sd)))
        ok = False
    worst = max(((k, (ours[k] - ref_sd[k]).abs().max().item()) for k in set(ours) & set(ref_sd)), key=lambda x: x[1])
    print(f"tensors: {len(ours)}, largest absolute difference {worst[1]:g} ({worst[0]})")
    ok &= worst[1] == 0.0

    tok = AutoTokenizer.from_pretrained(args.imported)
    for text in SAME:
        same = tok.encode(text, add_special_tokens=False) == ref_tok.encode(text, add_special_tokens=False)
        print(f"tokens of {text!r}: {'same' if same else 'DIFFERENT'}")
        ok &= same
    print(f"tokens of {DIFFERENT!r} (per-digit split): didact {tok.tokenize(DIFFERENT)} transformers {ref_tok.tokenize(DIFFERENT)}")

    msgs = [{"role": "user", "content": SAME[0]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    ref_ids = ref_tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    same = ids.tolist() == ref_ids.tolist()
    print(f"chat prompt: {'same' if same else 'DIFFERENT'} ({ids.shape[1]} tokens)")
    ok &= same
    model = AutoModelForCausalLM.from_pretrained(args.imported, dtype=torch.float32)
    a = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1]:]
    b = ref.generate(ref_ids, max_new_tokens=20, do_sample=False)[0, ref_ids.shape[1]:]
    print(f"greedy answer: imported {tok.decode(a)!r}, transformers' GGUF load {ref_tok.decode(b)!r}")
    ok &= a.tolist() == b.tolist()
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
