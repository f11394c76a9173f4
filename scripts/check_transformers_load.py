#!/usr/bin/env python3
"""Loads a didact checkpoint in Hugging Face transformers and compares its
logits with the ones didact computed (student/examples/export_logits.rs):
the check that a model trained by didact is a regular HF checkpoint.

    cargo run --release -p didact-student --example export_logits -- runs/default/base /tmp/didact_logits.json
    python scripts/check_transformers_load.py runs/default/base /tmp/didact_logits.json

Needs torch and transformers. Exits non-zero if any logit differs by more
than the tolerance (default 1e-4).
"""

import argparse
import json
import sys

import torch
import transformers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("logits")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    ref = json.load(open(args.logits))
    model = transformers.AutoModelForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ref["input_ids"])).logits
    expected = torch.tensor(ref["logits"]).reshape(ref["shape"])
    diff = (out - expected).abs().max().item()
    print(f"{type(model).__name__} from {args.checkpoint}: max |transformers - didact| = {diff:.2e} "
          f"(tolerance {args.tolerance:.0e}, transformers {transformers.__version__})")
    return 0 if diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
