#!/usr/bin/env python3
"""Make the tiny GGUF file behind didact's GGUF import test, written by
llama.cpp's own Python package (`gguf`), not by didact.

What it makes
-------------
``student/tests/fixtures/tiny-gguf/`` (``--out``):

* ``tiny.gguf`` -- a Llama (vocab about 300, hidden 64, 2 layers, 4 query
  heads / 2 KV heads, SwiGLU 128, tied embeddings) with random weights, its
  tensors in every encoding the importer reads: the embedding Q8_0, query
  Q4_0, key Q4_1, value F16, output Q8_0, gate Q4_1, up Q4_0, down BF16,
  norms F32, each quantized by ``gguf.quants.quantize``; query and key rows
  permuted as llama.cpp's converter permutes them. The tokenizer is a
  byte-level BPE trained here with SmolLM2's pre-tokenizer (each digit
  alone, then GPT-2's split), ``tokenizer.ggml.pre = "smollm"``, with a
  ChatML template.
* ``reference.json`` -- sample texts, their token ids under the trained
  tokenizer, and transformers' fp32 logits for them, computed with
  ``LlamaForCausalLM`` on the weights as ``gguf.quants.dequantize`` decodes
  them.

Why
---
The test imports ``tiny.gguf`` with ``didact_student::gguf::import`` and
requires the same token ids and logits within 1e-4: an independent writer,
quantizer and model implementation on the other side.

Needs torch, transformers, tokenizers and gguf (``pip install gguf``).
"""

import argparse
import json
import os

import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "Ana has 7 apples and gets 5 more. How many apples does Ana have now?",
    "Ben has 14 books and gives 6 of them to Chen. How many books are left?",
    "The answer is 12. Your answer is too high; try again.",
    "A box holds 8 marbles. How many marbles are in 3 boxes? 24 marbles.",
    "Hello world! don't stop   now.\nNew lines\tand tabs.",
] * 20
TEXTS = ["Ana has 7 apples and gets 5 more.", "Hello  12 world! 345 boxes\nnow"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 64, 2, 4, 2, 128


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of query/key rows."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="student/tests/fixtures/tiny-gguf")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    vocab = tok.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tokens), hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, rms_norm_eps=1e-5, rope_theta=10000.0,
        max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    for name, p in model.named_parameters():
        with torch.no_grad():
            p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("norm.weight") else 0.2 * torch.randn_like(p))

    kinds = {
        "self_attn.q_proj": ("attn_q", Q.Q4_0, HEADS), "self_attn.k_proj": ("attn_k", Q.Q4_1, KV_HEADS),
        "self_attn.v_proj": ("attn_v", Q.F16, None), "self_attn.o_proj": ("attn_output", Q.Q8_0, None),
        "mlp.gate_proj": ("ffn_gate", Q.Q4_1, None), "mlp.up_proj": ("ffn_up", Q.Q4_0, None),
        "mlp.down_proj": ("ffn_down", Q.BF16, None), "input_layernorm": ("attn_norm", Q.F32, None),
        "post_attention_layernorm": ("ffn_norm", Q.F32, None),
    }
    path = os.path.join(args.out, "tiny.gguf")
    w = GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_block_count(LAYERS)
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(INTER)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)

    decoded = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        x = p.numpy().astype(np.float32)
        if name == "model.embed_tokens.weight":
            gname, qtype, heads = "token_embd.weight", Q.Q8_0, None
        elif name == "model.norm.weight":
            gname, qtype, heads = "output_norm.weight", Q.F32, None
        else:
            layer, rest = name.removeprefix("model.layers.").split(".", 1)
            part, qtype, heads = kinds[rest.removesuffix(".weight")]
            gname = f"blk.{layer}.{part}.weight"
        stored = permute(x, heads) if heads else x
        q = quants.quantize(stored, qtype)
        w.add_tensor(gname, q, raw_dtype=qtype)
        # Quantization is per row, so quantizing the permuted rows and
        # quantizing the rows in place decode to the same values.
        decoded[name] = torch.from_numpy(quants.dequantize(quants.quantize(x, qtype), qtype).reshape(x.shape).copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    decoded["lm_head.weight"] = decoded["model.embed_tokens.weight"]
    model.load_state_dict(decoded)
    ref = {"texts": TEXTS, "ids": [], "logits": [], "vocab_size": len(tokens),
           "torch": torch.__version__, "transformers": transformers.__version__}
    with torch.no_grad():
        for text in TEXTS:
            ids = tok.encode(text).ids
            ref["ids"].append(ids)
            logits = model(torch.tensor([ids])).logits[0, -1]
            ref["logits"].append([round(float(v), 6) for v in logits])
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tokens)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
