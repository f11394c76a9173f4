#!/usr/bin/env python3
"""Writes bench/results.md and bench/results.json from bench/didact.json and
bench/torch.json: throughput of each measurement and didact's ratio to
PyTorch, both measured in the same `just bench` run on the same machine, for
the reference configuration and, when the run measured it, the shape of
SmolLM2-135M-Instruct (section `smollm2_135m`)."""

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


ROWS = [("train step (fwd + bwd + AdamW)", "train"), ("prefill (forward)", "prefill"), ("generate (KV cache, greedy)", "generate")]


def model_line(d: dict) -> str:
    m = d["model"]
    extra = f", head_dim {m['head_dim']}" if "head_dim" in m else ""
    if m.get("tie_word_embeddings"):
        extra += ", tied embeddings"
    if "rope_theta" in m:
        extra += f", rope_theta {m['rope_theta']:g}"
    return (
        f"Model: {d['parameters']:,} parameters (vocab {m['vocab_size']}, hidden {m['hidden_size']}, {m['layers']} layers, "
        f"{m['heads']} heads / {m['kv_heads']} KV heads, SwiGLU {m['intermediate_size']}{extra})."
    )


def rate(x: float) -> str:
    # The 135M shape's rates are tens of tokens per second, where whole
    # numbers would round off a visible share.
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def table(d: dict, t: dict | None) -> list[str]:
    """The measurement table; `t` is None where PyTorch did not measure."""
    lines = ["| measurement | didact tokens/s | PyTorch tokens/s | didact / PyTorch |", "|---|---:|---:|---:|"]
    for name, key in ROWS:
        a = d[key]["tokens_per_s"]
        if t:
            b = t[key]["tokens_per_s"]
            lines.append(f"| {name} | {rate(a)} | {rate(b)} | {a / b:.2f} |")
        else:
            lines.append(f"| {name} | {rate(a)} | – | – |")
    return lines


def summary(d: dict, t: dict | None) -> dict:
    ratio = lambda k: d[k]["tokens_per_s"] / t[k]["tokens_per_s"] if t else None
    return {
        "train_tokens_per_s": d["train"]["tokens_per_s"],
        "torch_train_tokens_per_s": t["train"]["tokens_per_s"] if t else None,
        "train_ratio": ratio("train"),
        "gen_tokens_per_s": d["generate"]["tokens_per_s"],
        "torch_gen_tokens_per_s": t["generate"]["tokens_per_s"] if t else None,
        "gen_ratio": ratio("generate"),
        "prefill_tokens_per_s": d["prefill"]["tokens_per_s"],
        "torch_prefill_tokens_per_s": t["prefill"]["tokens_per_s"] if t else None,
    }


d = json.load(open("bench/didact.json"))
t = json.load(open("bench/torch.json")) if os.path.exists("bench/torch.json") else None
today = datetime.date.today().isoformat()
lines = [
    "# Student throughput",
    "",
    f"Measured by `just bench` on {today}, commit {commit()}, {cpu_name()}, {d['threads']} threads, CPU.",
    model_line(d),
    f"Training and prefill: batch {d['train']['batch']} x {d['train']['seq']} tokens. "
    f"Generation: {d['generate']['batch']} prompts of {d['generate']['prompt']} tokens, "
    f"{d['generate']['new_tokens']} new tokens each. Each figure is the median of {d['rounds']} timed rounds "
    f"({d['train']['steps']} training steps, {d['prefill']['reps']} prefills or 1 generation per round).",
    "",
    f"- didact: {d['implementation']}",
    f"- reference: {t['implementation'] if t else 'not measured (no torch)'}",
    "",
    *table(d, t),
]
results = summary(d, t) | {"commit": commit(), "date": today, "machine": cpu_name(), "threads": d["threads"]}

s = d.get("smollm2_135m")
if s:
    # A torch.json from a run that did not measure this shape leaves its
    # PyTorch column empty rather than comparing against another run.
    ts = t.get("smollm2_135m") if t else None
    tr, pf, gen = s["train"], s["prefill"], s["generate"]
    seconds = f"about {s['seconds'] / 60:.1f} minutes in didact" + (f", {ts['seconds'] / 60:.1f} in PyTorch" if ts and "seconds" in ts else "")
    lines += [
        "",
        "## SmolLM2-135M-Instruct shape",
        "",
        f"{s['name']}, fp32, on both sides; the same {d['threads']} threads.",
        model_line(s),
        f"Training: batch {tr['batch']} x {tr['seq']} tokens, median of {tr['rounds']} rounds of {tr['steps']} step "
        f"(after {tr['warmup_steps']} untimed). Prefill: batch {pf['batch']} x {pf['seq']} tokens, median of "
        f"{pf['rounds']} rounds of {pf['reps']} forward pass. Generation: {gen['batch']} prompts of {gen['prompt']} tokens, "
        f"{gen['new_tokens']} new tokens each, median of {gen['rounds']} generations. Fewer and smaller rounds than "
        f"above, so this part takes minutes ({seconds}): its figures are the noisier.",
    ]
    if ts and ts.get("parameters") not in (None, s["parameters"]):
        lines.append(f"PyTorch's model has {ts['parameters']:,} parameters, not {s['parameters']:,}: the shapes differ.")
    lines += ["", *table(s, ts)]
    results["smollm2_135m"] = {"parameters": s["parameters"], **summary(s, ts), "seconds": s["seconds"],
                               "torch_seconds": ts.get("seconds") if ts else None}

open("bench/results.md", "w").write("\n".join(lines) + "\n")
json.dump(results, open("bench/results.json", "w"), indent=2)
print("\n".join(lines))
