#!/usr/bin/env python3
"""Writes bench/results.md from bench/didact.json and (if present)
bench/torch.json: throughput of each measurement and didact's ratio to
PyTorch, both measured in the same `just bench` run on the same machine."""

import datetime
import json
import os
import platform

d = json.load(open("bench/didact.json"))
t = json.load(open("bench/torch.json")) if os.path.exists("bench/torch.json") else None
rows = [("train (fwd+bwd+AdamW)", "train"), ("prefill (forward)", "prefill"), ("generate (KV cache, greedy)", "generate")]
m = d["model"]
lines = [
    "# Student throughput",
    "",
    f"Measured by `just bench` on {datetime.date.today()}, {platform.machine()}, {d['threads']} threads, CPU.",
    f"Model: {d['parameters']:,} parameters (hidden {m['hidden_size']}, {m['layers']} layers, "
    f"{m['heads']} heads / {m['kv_heads']} KV heads, SwiGLU {m['intermediate_size']}, vocab {m['vocab_size']}).",
    f"Batch {d['train']['batch']} x {d['train']['seq']} tokens for training and prefill; "
    f"generation: {d['generate']['batch']} prompts of {d['generate']['prompt']} tokens, "
    f"{d['generate']['new_tokens']} new tokens each.",
    "",
    f"- didact: {d['implementation']}",
    f"- reference: {t['implementation'] if t else 'not measured (torch not installed)'}",
    "",
    "| measurement | didact tokens/s | PyTorch tokens/s | didact / PyTorch |",
    "|---|---:|---:|---:|",
]
for name, key in rows:
    a = d[key]["tokens_per_s"]
    if t:
        b = t[key]["tokens_per_s"]
        lines.append(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    else:
        lines.append(f"| {name} | {a:,.0f} | – | – |")
open("bench/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
