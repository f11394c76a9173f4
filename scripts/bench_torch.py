#!/usr/bin/env python3
"""The PyTorch reference for `just bench`: the same Llama (transformers'
LlamaForCausalLM), the same batch shapes and the same number of CPU threads as
student/benches/throughput.rs, so bench/results.md can report didact's speed
as a ratio to what a user would otherwise pick.

Two model shapes, as the Rust bench measures them: the reference
configuration (about 1M parameters; the top-level keys of the JSON files) and
the shape of SmolLM2-135M-Instruct (vocab 49152, hidden 576, 30 layers, 9
heads / 3 KV heads, SwiGLU 1536, tied embeddings, rope_theta 100000; the
`smollm2_135m` section), with random weights in fp32. The second takes a few
minutes on 2 cores; a bench/didact.json without that section (from before it
existed) measures the first only.

Needs torch and transformers (`pip install torch transformers`). Reads the
model shapes, batch shapes, rounds and warm-up from bench/didact.json
(written by the Rust bench) so the two always measure the same model the
same way; writes bench/torch.json.
"""

import argparse
import json
import time

import torch
import transformers


# Where the model runs: "cpu", or "cuda" for the GPU bench (`--device`).
DEVICE = torch.device("cpu")


def sync() -> None:
    """Waits for queued GPU work, so that a round's time includes it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def median_rate(rounds: int, round_fn) -> float:
    """Median over `rounds` runs of `round_fn` (which returns the tokens it
    processed) of tokens per second, as the Rust bench measures."""
    rates = []
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        tokens = round_fn()
        sync()
        rates.append(tokens / (time.perf_counter() - t))
    return sorted(rates)[rounds // 2]


def measure(ref: dict, rounds: int) -> dict:
    """Train, prefill and generate rates for the shape `ref` describes (the
    top level of bench/didact.json or one of its model sections). Settings
    a section leaves out take the reference configuration's values, which
    bench/didact.json has never spelled out."""
    m, tr, pf, gen = ref["model"], ref["train"], ref["prefill"], ref["generate"]
    torch.manual_seed(0)
    # Qwen2 is Llama with biases on q/k/v alone (Llama's attention_bias
    # would add one to o_proj too).
    qwen2 = m.get("model_type") == "qwen2"
    config_class = transformers.Qwen2Config if qwen2 else transformers.LlamaConfig
    model_class = transformers.Qwen2ForCausalLM if qwen2 else transformers.LlamaForCausalLM
    cfg = config_class(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["layers"],
        num_attention_heads=m["heads"],
        num_key_value_heads=m["kv_heads"],
        head_dim=m.get("head_dim", m["hidden_size"] // m["heads"]),
        max_position_embeddings=m.get("max_position_embeddings", 256),
        rms_norm_eps=m.get("rms_norm_eps", 1e-5),
        rope_theta=m.get("rope_theta", 10_000.0),
        tie_word_embeddings=m.get("tie_word_embeddings", False),
    )
    model = model_class(cfg).float().to(DEVICE)
    model.config.pad_token_id = 0
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    assert tied == cfg.tie_word_embeddings, "lm_head tying differs from the config"
    # parameters() yields a tied weight once, as didact counts it.
    parameters = sum(p.numel() for p in model.parameters())

    # Training: forward + backward + AdamW on batch x seq.
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(8, m["vocab_size"], (tr["batch"], tr["seq"] + 1), device=DEVICE)

    def step() -> None:
        # The forward pass runs on `seq` tokens per row, as didact's does
        # (transformers shifts the labels itself).
        x = ids[:, :-1]
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(tr.get("warmup_steps", 3)):
        step()

    def train_round() -> int:
        for _ in range(tr["steps"]):
            step()
        return tr["steps"] * tr["batch"] * tr["seq"]

    train_tps = median_rate(tr.get("rounds", rounds), train_round)
    # The optimizer's moments (twice the model) are not needed for inference.
    del opt

    model.eval()
    with torch.no_grad():
        x = torch.randint(8, m["vocab_size"], (pf["batch"], pf["seq"]), device=DEVICE)
        model(input_ids=x)

        def prefill_round() -> int:
            for _ in range(pf["reps"]):
                model(input_ids=x)
            return pf["reps"] * pf["batch"] * pf["seq"]

        prefill_tps = median_rate(pf.get("rounds", rounds), prefill_round)

        prompts = torch.randint(8, m["vocab_size"], (gen["batch"], gen["prompt"]), device=DEVICE)

        def kw(new_tokens: int) -> dict:
            return dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)

        warmup = gen.get("warmup_new_tokens", gen["new_tokens"])
        model.generate(prompts[:2], attention_mask=torch.ones_like(prompts[:2]), **kw(warmup))

        def generate_round() -> int:
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), **kw(gen["new_tokens"]))
            return (out.shape[1] - gen["prompt"]) * gen["batch"]

        gen_tps = median_rate(gen.get("rounds", rounds), generate_round)
    return {
        "parameters": parameters,
        "train": {"tokens_per_s": train_tps},
        "prefill": {"tokens_per_s": prefill_tps},
        "generate": {"tokens_per_s": gen_tps},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--didact", default="bench/didact.json")
    ap.add_argument("--out", default="bench/torch.json")
    ap.add_argument(
        "--device",
        default="cpu",
        help="cuda: measure one shape on the GPU, the one a bench/gpu/didact-SHAPE.json "
        "written by the Rust bench's GPU mode describes (its rounds, no thread count)",
    )
    args = ap.parse_args()
    with open(args.didact) as f:
        ref = json.load(f)
    if args.device != "cpu":
        global DEVICE
        DEVICE = torch.device(args.device)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        started = time.perf_counter()
        result = measure(ref, ref["train"]["rounds"])
        result.update(
            implementation=f"PyTorch {torch.__version__}, transformers {transformers.__version__} (eager, fp32)",
            device=torch.cuda.get_device_name(DEVICE),
            shape=ref["shape"],
            tf32=torch.backends.cuda.matmul.allow_tf32,
            max_memory_allocated_bytes=torch.cuda.max_memory_allocated(DEVICE),
            max_memory_reserved_bytes=torch.cuda.max_memory_reserved(DEVICE),
            seconds=time.perf_counter() - started,
        )
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result, indent=2))
        return
    torch.set_num_threads(ref["threads"])
    rounds = ref["rounds"]
    reference = measure(ref, rounds)
    result = {
        "implementation": f"PyTorch {torch.__version__}, transformers {transformers.__version__} (eager, fp32)",
        "threads": torch.get_num_threads(),
        "train": reference["train"],
        "prefill": reference["prefill"],
        "generate": reference["generate"],
    }
    if "smollm2_135m" in ref:
        started = time.perf_counter()
        section = measure(ref["smollm2_135m"], rounds)
        section["seconds"] = time.perf_counter() - started
        result["smollm2_135m"] = section
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
