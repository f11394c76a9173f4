#!/usr/bin/env python3
"""Writes bench/results.md and bench/results.json from bench/didact.json and
bench/torch.json: throughput of each measurement and didact's ratio to
PyTorch, both measured in the same `just bench` run on the same machine."""

import datetime
import json
import os
import platform
import subprocess


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # The bench's own outputs under bench/ do not make the measured code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"], capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


d = json.load(open("bench/didact.json"))
t = json.load(open("bench/torch.json")) if os.path.exists("bench/torch.json") else None
today = datetime.date.today().isoformat()
rows = [("train step (fwd + bwd + AdamW)", "train"), ("prefill (forward)", "prefill"), ("generate (KV cache, greedy)", "generate")]
m = d["model"]
lines = [
    "# Student throughput",
    "",
    f"Measured by `just bench` on {today}, commit {commit()}, {cpu_name()}, {d['threads']} threads, CPU.",
    f"Model: {d['parameters']:,} parameters (vocab {m['vocab_size']}, hidden {m['hidden_size']}, {m['layers']} layers, "
    f"{m['heads']} heads / {m['kv_heads']} KV heads, SwiGLU {m['intermediate_size']}).",
    f"Training and prefill: batch {d['train']['batch']} x {d['train']['seq']} tokens. "
    f"Generation: {d['generate']['batch']} prompts of {d['generate']['prompt']} tokens, "
    f"{d['generate']['new_tokens']} new tokens each. Each figure is the median of {d['rounds']} timed rounds "
    f"({d['train']['steps']} training steps, {d['prefill']['reps']} prefills or 1 generation per round).",
    "",
    f"- didact: {d['implementation']}",
    f"- reference: {t['implementation'] if t else 'not measured (no torch)'}",
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
ratio = lambda k: d[k]["tokens_per_s"] / t[k]["tokens_per_s"] if t else None
summary = {
    "train_tokens_per_s": d["train"]["tokens_per_s"],
    "torch_train_tokens_per_s": t["train"]["tokens_per_s"] if t else None,
    "train_ratio": ratio("train"),
    "gen_tokens_per_s": d["generate"]["tokens_per_s"],
    "torch_gen_tokens_per_s": t["generate"]["tokens_per_s"] if t else None,
    "gen_ratio": ratio("generate"),
    "prefill_tokens_per_s": d["prefill"]["tokens_per_s"],
    "torch_prefill_tokens_per_s": t["prefill"]["tokens_per_s"] if t else None,
    "commit": commit(),
    "date": today,
    "machine": cpu_name(),
    "threads": d["threads"],
}
json.dump(summary, open("bench/results.json", "w"), indent=2)
print("\n".join(lines))
