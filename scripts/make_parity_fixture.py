#!/usr/bin/env python3
"""Make the tiny Hugging Face checkpoints used by didact's logits-parity test.

What it makes
-------------
Two fixture directories under ``--out`` (default ``student/tests/fixtures``),
each in the layout ``model.save_pretrained(dir, safe_serialization=True)``
writes (``config.json``, ``model.safetensors``, ``generation_config.json``),
float32 weights, under 100 KB each (about 220 KB in all):

* ``tiny-llama/``  -- ``LlamaForCausalLM``: vocab 64, hidden 32, 2 layers,
  4 query heads / 2 KV heads (GQA), head_dim 8, intermediate 64,
  rms_norm_eps 1e-5, rope_theta 1e4, untied lm_head, no attention bias.
* ``tiny-qwen2/``  -- ``Qwen2ForCausalLM``: vocab 64, hidden 32, 2 layers,
  4/2 heads, intermediate 48, rms_norm_eps 1e-6, rope_theta 1e6, tied
  embeddings (so there is no ``lm_head.weight`` in the file), q/k/v biases.

After the model is built every parameter is overwritten with fresh random
values (``0.2 * randn`` for projection matrices, biases and the untied
lm_head, ``0.02 * randn`` for the token embedding, ``1 + 0.1 * randn`` for
RMSNorm weights), so a loader that drops or misreads any tensor -- a bias, a
norm weight, the tied head -- changes the logits.

Each directory also gets ``reference.json``::

    {"input_ids": [[7 ids], [7 ids]],            # batch 2, seq 7, no padding
     "shape": [2, 7, 64],                         # [batch, seq, vocab]
     "logits": [...],                             # row-major, float32 values
     "torch": "...", "transformers": "...", ...}

computed in fp32 with ``model.eval()`` / ``torch.no_grad()``, eager attention,
full causal attention over each sequence, default RoPE (no ``rope_scaling``).

Why
---
The parity test in ``student/src/checkpoint.rs`` loads these directories with
didact's own safetensors/config loader, runs its Llama forward pass on
``input_ids`` and requires every logit to match ``logits`` to 1e-4.
The script also runs "sensitivity probes": it recomputes the logits with a
deliberately wrong variant of the model (no RoPE, interleaved RoPE pairs,
wrong rope_theta, wrong rms_norm_eps, wrong GQA head mapping, no causal mask,
no q/k/v bias, ...) and fails unless each variant moves the logits by well
over the test's tolerance, so the fixture cannot silently stop catching those
bugs. The scales above serve that: with every tensor at the usual 0.02 the
attention scores are so small that softmax is nearly uniform and RoPE
mistakes move the logits by only ~1e-3 (a wrong rope_theta by ~1e-4), while
keeping the embedding at 0.02 keeps the first RMSNorm's input small enough
that a wrong rms_norm_eps (1e-5 vs 1e-6) still shows (~2e-2 to 6e-2).

How to rerun
------------
::

    python3 -m venv /work/venv-parity
    /work/venv-parity/bin/pip install torch transformers safetensors
    /work/venv-parity/bin/python scripts/make_parity_fixture.py \\
        --out student/tests/fixtures --seed 0

(``pip install torch --index-url https://download.pytorch.org/whl/cpu`` gives
a smaller CPU-only torch where that index is reachable.)  The output is
byte-for-byte deterministic for a given torch/transformers pair (checked by
running it twice); other versions were not tried and may write a differently
shaped ``config.json``.

Versions used for the committed fixtures: torch 2.15.0 (PyPI wheel,
2.15.0+cu132, run on CPU), transformers 5.24.0, safetensors 0.8.0,
Python 3.11.7.  transformers 5.x writes RoPE settings as
``"rope_parameters": {"rope_theta": ..., "rope_type": "default"}`` instead of
the top-level ``"rope_theta"`` that 4.x wrote; didact's loader must accept both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

BATCH = 2
SEQ = 7
WEIGHT_STD = 0.2
EMBED_STD = 0.02
NORM_STD = 0.1
# The parity test's tolerance, and how far every probe must move the logits.
TOLERANCE = 1e-4
MIN_PROBE_EFFECT = 100 * TOLERANCE


def rope_kwargs(config_cls, theta: float) -> dict:
    """Default (unscaled) RoPE with the given theta, for transformers 4 or 5."""
    fields = getattr(config_cls, "__dataclass_fields__", None) or {}
    if "rope_parameters" in fields:  # transformers >= 5
        return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}}
    return {"rope_theta": theta, "rope_scaling": None}


def build_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    def make(**over):
        kw = dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            attention_bias=False,
            **rope_kwargs(LlamaConfig, over.pop("rope_theta", 10000.0)),
        )
        kw.update(over)
        cfg = LlamaConfig(**kw)
        cfg._attn_implementation = "eager"
        return LlamaForCausalLM(cfg)

    return make


def build_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    def make(**over):
        kw = dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            **rope_kwargs(Qwen2Config, over.pop("rope_theta", 1000000.0)),
        )
        kw.update(over)
        cfg = Qwen2Config(**kw)
        cfg._attn_implementation = "eager"
        return Qwen2ForCausalLM(cfg)

    return make


def randomize(model: torch.nn.Module) -> None:
    """Overwrite every parameter (biases and norm weights too) with random values."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied params are listed once
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(EMBED_STD * torch.randn_like(p))
            else:
                p.copy_(WEIGHT_STD * torch.randn_like(p))


def forward(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False)
    return out.logits.float()


# ---------------------------------------------------------------- sensitivity probes


def _patched(module, name, value):
    """Context manager: temporarily replace ``module.name``."""

    class _Ctx:
        def __enter__(self):
            self.old = getattr(module, name)
            setattr(module, name, value)

        def __exit__(self, *exc):
            setattr(module, name, self.old)

    return _Ctx()


def probes(make, model, input_ids, ref, has_bias: bool) -> list[tuple[str, float]]:
    """Max |logit change| for several deliberately wrong variants of the model."""
    mod = sys.modules[type(model).__module__]
    sd = model.state_dict()
    cfg = model.config
    theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or cfg.rope_theta
    results = []

    def effect(logits):
        return (logits - ref).abs().max().item()

    def variant(**over):
        m = make(**over)
        m.load_state_dict(sd)
        return forward(m, input_ids)

    def no_rope(q, k, cos, sin, unsqueeze_dim=1):
        return q, k

    def rope_interleaved(q, k, cos, sin, unsqueeze_dim=1):
        # GPT-J style pairs (0,1),(2,3),... instead of HF's (i, i + d/2) halves.
        def rot(x):
            d = x.shape[-1]
            c = cos.unsqueeze(unsqueeze_dim)[..., : d // 2].repeat_interleave(2, dim=-1)
            s = sin.unsqueeze(unsqueeze_dim)[..., : d // 2].repeat_interleave(2, dim=-1)
            x1, x2 = x[..., 0::2], x[..., 1::2]
            rx = torch.stack((-x2, x1), dim=-1).flatten(-2)
            return x * c + rx * s

        return rot(q), rot(k)

    def repeat_kv_tiled(h, n_rep):
        # head i uses kv head i % n_kv instead of HF's i // n_rep.
        return h if n_rep == 1 else h.repeat(1, n_rep, 1, 1)

    orig_eager = mod.eager_attention_forward

    def eager_no_mask(module, q, k, v, attention_mask, *a, **kw):
        return orig_eager(module, q, k, v, None, *a, **kw)

    with _patched(mod, "apply_rotary_pos_emb", no_rope):
        results.append(("no RoPE", effect(forward(model, input_ids))))
    with _patched(mod, "apply_rotary_pos_emb", rope_interleaved):
        results.append(("interleaved RoPE pairs", effect(forward(model, input_ids))))
    with _patched(mod, "repeat_kv", repeat_kv_tiled):
        results.append(("GQA kv head i % n_kv", effect(forward(model, input_ids))))
    with _patched(mod, "eager_attention_forward", eager_no_mask):
        results.append(("no causal mask", effect(forward(model, input_ids))))
    other_theta = 1000000.0 if theta < 100000.0 else 10000.0
    results.append((f"rope_theta {other_theta:g}", effect(variant(rope_theta=other_theta))))
    other_eps = 1e-6 if cfg.rms_norm_eps > 5e-6 else 1e-5
    results.append((f"rms_norm_eps {other_eps:g}", effect(variant(rms_norm_eps=other_eps))))

    def zeroed(pred):
        m = make()
        m.load_state_dict({k: (torch.zeros_like(v) if pred(k) else v) for k, v in sd.items()})
        return effect(forward(m, input_ids))

    def unit_norms(m_sd):
        return {k: (torch.ones_like(v) if k.endswith("norm.weight") else v) for k, v in m_sd.items()}

    m = make()
    m.load_state_dict(unit_norms(sd))
    results.append(("all norm weights = 1", effect(forward(m, input_ids))))
    results.append(("final norm weight = 1", _final_norm_one(make, sd, input_ids, ref)))
    results.append(("layer 1 zeroed mlp.down_proj", zeroed(lambda k: k == "model.layers.1.mlp.down_proj.weight")))
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        m = make()
        m.load_state_dict({**sd, "lm_head.weight": sd["model.embed_tokens.weight"]})
        results.append(("lm_head tied to embed_tokens", effect(forward(m, input_ids))))
    if has_bias:
        for proj in ("q", "k", "v"):
            results.append((f"{proj}_proj bias = 0", zeroed(lambda k, p=proj: k.endswith(f"{p}_proj.bias"))))
    return results


def _final_norm_one(make, sd, input_ids, ref):
    m = make()
    m.load_state_dict({k: (torch.ones_like(v) if k == "model.norm.weight" else v) for k, v in sd.items()})
    return (forward(m, input_ids) - ref).abs().max().item()


# ---------------------------------------------------------------- main


def make_fixture(name: str, make, out_dir: Path, seed: int, has_bias: bool, versions: dict) -> None:
    torch.manual_seed(seed)
    model = make()
    randomize(model)
    model.eval()

    gen = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(0, model.config.vocab_size, (BATCH, SEQ), generator=gen)
    logits = forward(model, input_ids)
    assert logits.shape == (BATCH, SEQ, model.config.vocab_size)
    assert logits.dtype == torch.float32

    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)

    # Reload what was written and check it reproduces the logits exactly.
    reloaded = type(model).from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    diff = (forward(reloaded, input_ids) - logits).abs().max().item()
    assert diff == 0.0, f"{name}: reloaded checkpoint differs by {diff}"

    reference = {
        "model": type(model).__name__,
        "input_ids": input_ids.tolist(),
        "shape": list(logits.shape),
        "logits": [float(x) for x in logits.flatten().tolist()],
        "tolerance": TOLERANCE,
        "seed": seed,
        "rope_scaling": None,
        **versions,
    }
    (d / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    print(f"== {name}: logits |max| {logits.abs().max().item():.4f}, std {logits.std().item():.4f}")
    failed = []
    for label, eff in probes(make, model, input_ids, logits, has_bias):
        ok = eff >= MIN_PROBE_EFFECT
        print(f"   probe {label:<32} max|dlogit| = {eff:.3e} {'ok' if ok else 'TOO SMALL'}")
        if not ok:
            failed.append(label)
    if failed:
        raise SystemExit(f"{name}: fixture is insensitive to: {', '.join(failed)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="student/tests/fixtures", type=Path)
    ap.add_argument("--seed", default=0, type=int)
    args = ap.parse_args()

    import safetensors
    import transformers

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    make_fixture("tiny-llama", build_llama(), args.out, args.seed, False, versions)
    make_fixture("tiny-qwen2", build_qwen2(), args.out, args.seed, True, versions)

    from safetensors import safe_open

    total = 0
    for name in ("tiny-llama", "tiny-qwen2"):
        d = args.out / name
        print(f"\n== {d}/config.json")
        cfg = json.loads((d / "config.json").read_text())
        print(json.dumps(cfg, indent=2, sort_keys=True))
        where = "top-level rope_theta" if "rope_theta" in cfg else "rope_parameters"
        print(f"   rope settings found as: {where}")
        print(f"== {d}/model.safetensors tensors")
        with safe_open(str(d / "model.safetensors"), framework="pt") as f:
            for key in sorted(f.keys()):
                t = f.get_slice(key)
                print(f"   {key:<45} {t.get_dtype():<4} {t.get_shape()}")
        for p in sorted(d.iterdir()):
            size = p.stat().st_size
            total += size
            print(f"   {p.name:<25} {size:>8} bytes")
    print(f"\ntotal fixture size: {total} bytes; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, safetensors {safetensors.__version__}")
    if total > 300 * 1024:
        raise SystemExit("fixtures exceed 300 KB")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
