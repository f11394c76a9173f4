#!/usr/bin/env python3
"""Writes DIR/results.md and DIR/results.json (DIR: bench/gpu by default)
from what scripts/bench_gpu.sh measured there: didact's and PyTorch's
tokens/s per shape and measurement, their ratio, the peak GPU memory each
process held (nvidia-smi, sampled every 100 ms, the idle reading
subtracted), and the model FLOP utilisation (MFU).

MFU counts the matrix products of the model (PaLM's convention, attention
counted as if not causal): per token, 2·N + 4·L·d·T forward and three times
that for a training step, N the parameters of the projections and of the
output head (the embedding lookup is no product), L layers, d the query
width, T the sequence length (for generation, the mean context). It is
quoted against the H200's dense fp32 rate without tensor cores (67 TFLOP/s,
NVIDIA's datasheet), the rate both sides' fp32 products are entitled to.
"""

import datetime
import json
import os
import subprocess
import sys

FP32_PEAK = 67e12
SHAPES = [
    ("reference", "reference configuration (1.1M parameters)"),
    ("smollm2_135m", "SmolLM2-135M-Instruct shape"),
    ("qwen2.5_0.5b", "Qwen2.5-0.5B-Instruct shape"),
]
ROWS = [("train step (fwd + bwd + AdamW)", "train"), ("prefill (forward)", "prefill"), ("generate (KV cache, greedy)", "generate")]


def load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mem(dir_: str, name: str, idle: float):
    try:
        with open(os.path.join(dir_, name)) as f:
            return float(f.read().strip()) - idle
    except (OSError, ValueError):
        return None


def flops_per_token(d: dict, what: str) -> float:
    m = d["model"]
    h, layers, inter, vocab = m["hidden_size"], m["layers"], m["intermediate_size"], m["vocab_size"]
    q = m["heads"] * m["head_dim"]
    kv = m["kv_heads"] * m["head_dim"]
    n = layers * (h * (q + 2 * kv) + q * h + 3 * h * inter) + vocab * h
    if what == "generate":
        g = d["generate"]
        context = g["prompt"] + g["new_tokens"] / 2
    else:
        context = d[what]["seq"]
    forward = 2 * n + 4 * layers * q * context
    return 3 * forward if what == "train" else forward


def main() -> None:
    dir_ = sys.argv[1] if len(sys.argv) > 1 else "bench/gpu"
    idle = mem(dir_, "mem-idle.txt", 0.0) or 0.0
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        rev = "unknown"
    lines = ["# Student throughput on a GPU", ""]
    results = {"date": datetime.date.today().isoformat(), "commit": rev, "shapes": {}}
    first = True
    for shape, title in SHAPES:
        d = load(os.path.join(dir_, f"didact-{shape}.json"))
        if d is None:
            lines += [f"## {title}", "", "Not measured (the didact run failed or was not asked for).", ""]
            continue
        t = load(os.path.join(dir_, f"torch-{shape}.json"))
        if first:
            lines += [
                f"Measured by `scripts/bench_gpu.sh` on {results['date']}, commit {rev}, one {d['device']}.",
                f"- didact: {d['implementation']}",
                f"- reference: {t['implementation'] if t else 'PyTorch (failed)'}"
                + (f"; TF32 matmul {'on' if t and t.get('tf32') else 'off'}" if t else ""),
                "",
                "Memory: the most the process held on the GPU (nvidia-smi every 100 ms, less the idle reading), "
                "so it includes the CUDA context and each framework's cached pool. "
                "MFU: model FLOPs (2N + 4·L·d·T per token forward, 3× for training) over the H200's 67 TFLOP/s dense fp32.",
                "",
            ]
            first = False
        m = d["model"]
        lines += [
            f"## {title}",
            "",
            f"{d['parameters']:,} parameters (vocab {m['vocab_size']}, hidden {m['hidden_size']}, {m['layers']} layers, "
            f"{m['heads']} heads / {m['kv_heads']} KV heads, SwiGLU {m['intermediate_size']}). "
            f"Training {d['train']['batch']} x {d['train']['seq']} tokens, prefill {d['prefill']['batch']} x {d['prefill']['seq']}, "
            f"generation {d['generate']['batch']} prompts of {d['generate']['prompt']} + {d['generate']['new_tokens']} new; "
            f"median of {d['train']['rounds']} rounds.",
            "",
            "| measurement | didact tokens/s | PyTorch tokens/s | didact / PyTorch | didact MFU | PyTorch MFU |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        section = {"didact": d, "torch": t, "rows": {}}
        for label, key in ROWS:
            a = d[key]["tokens_per_s"]
            b = t[key]["tokens_per_s"] if t else None
            f = flops_per_token(d, key)
            row = {"didact_tokens_per_s": a, "torch_tokens_per_s": b, "ratio": a / b if b else None,
                   "flops_per_token": f, "didact_mfu": a * f / FP32_PEAK, "torch_mfu": b * f / FP32_PEAK if b else None}
            section["rows"][key] = row
            fmt = lambda x: f"{x:,.0f}" if x is not None else "failed"
            pct = lambda x: f"{100 * x:.1f}%" if x is not None else "-"
            lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {row['ratio']:.2f} | {pct(row['didact_mfu'])} | {pct(row['torch_mfu'])} |"
                         if b else f"| {label} | {fmt(a)} | failed | - | {pct(row['didact_mfu'])} | - |")
        dm, tm = mem(dir_, f"mem-didact-{shape}.txt", idle), mem(dir_, f"mem-torch-{shape}.txt", idle)
        section["memory_mib"] = {"didact": dm, "torch": tm}
        lines += ["", f"Peak GPU memory: didact {dm:,.0f} MiB, PyTorch {tm:,.0f} MiB"
                  + f" (torch's own max allocated {t['max_memory_allocated_bytes'] / 2**20:,.0f} MiB)."
                  if t and dm is not None and tm is not None
                  else f"Peak GPU memory: didact {dm:,.0f} MiB." if dm is not None else "Peak GPU memory: not sampled.", ""]
        results["shapes"][shape] = section
    with open(os.path.join(dir_, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(dir_, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
