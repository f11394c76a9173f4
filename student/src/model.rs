//! The decoder-only Llama architecture (also Qwen2 with q/k/v biases):
//! token embedding, RMSNorm, rotary position embedding, grouped-query
//! attention, SwiGLU MLP, optional tied embeddings. Field names follow the
//! Hugging Face module tree so that `checkpoint.rs` maps names one to one.

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::LlamaConfig;

/// Additive attention bias for a masked key: large and finite, so a row whose
/// keys are all masked (a left-padding query) gives a uniform softmax, not NaN.
const MASKED: f32 = -1.0e9;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

/// The causal language model.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head is tied to the embedding.
    pub lm_head: Option<Linear<B>>,
    #[module(skip)]
    pub config: LlamaConfig,
}

/// Keys and values of every layer for the positions seen so far, so that
/// generation feeds only new tokens.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// Number of positions cached.
    pub len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Keeps only the batch rows `rows` (in that order), so that sequences
    /// that finished generating stop costing compute.
    pub fn retain_rows(&mut self, rows: &[usize], device: &B::Device) {
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
            device,
        );
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index.clone());
        }
    }
}

/// Rotary position embedding for one forward pass, laid out so that
/// applying it is a handful of element-wise operations on contiguous
/// tensors of equal shape (broadcast and strided operands take a slow path
/// on the CPU backend): `cos`/`sin` are expanded to every (batch, position,
/// head) row, and `rotate_half` is a product with a fixed signed permutation.
pub struct Rope<B: Backend> {
    /// `[batch·len·heads, head_dim]` for queries, pre-scaled by
    /// `1/sqrt(head_dim)` so that attention scores need no extra pass.
    q: (Tensor<B, 2>, Tensor<B, 2>),
    /// The same for keys (`kv_heads` rows per position), unscaled.
    k: (Tensor<B, 2>, Tensor<B, 2>),
    /// `rotate_half` as a `[head_dim, head_dim]` matrix (HF layout).
    rotate: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    pub fn new(
        config: &LlamaConfig,
        batch: usize,
        offset: usize,
        len: usize,
        device: &B::Device,
    ) -> Self {
        let hd = config.head_dim();
        let half = hd / 2;
        let theta = config.rope_theta();
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / hd as f64))
            .collect();
        let mut cos_row = Vec::with_capacity(len * hd);
        let mut sin_row = Vec::with_capacity(len * hd);
        for p in offset..offset + len {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = (p as f64 * f) as f32;
                    cos_row.push(angle.cos());
                    sin_row.push(angle.sin());
                }
            }
        }
        let expand = |table: &[f32], heads: usize, scale: f32| {
            let mut out = Vec::with_capacity(batch * len * heads * hd);
            for _ in 0..batch {
                for t in 0..len {
                    let row = &table[t * hd..(t + 1) * hd];
                    for _ in 0..heads {
                        out.extend(row.iter().map(|v| v * scale));
                    }
                }
            }
            Tensor::from_data(TensorData::new(out, [batch * len * heads, hd]), device)
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let (h, kv) = (config.num_attention_heads, config.kv_heads());
        let mut rotate = vec![0f32; hd * hd];
        for i in 0..half {
            // out[i] = -x[i + half]; out[i + half] = x[i]  (row = input, col = output)
            rotate[(i + half) * hd + i] = -1.0;
            rotate[i * hd + i + half] = 1.0;
        }
        Self {
            q: (expand(&cos_row, h, scale), expand(&sin_row, h, scale)),
            k: (expand(&cos_row, kv, 1.0), expand(&sin_row, kv, 1.0)),
            rotate: Tensor::from_data(TensorData::new(rotate, [hd, hd]), device),
        }
    }

    /// Rotates projections `[batch, len, heads·head_dim]` and returns them as
    /// `[batch, heads, len, head_dim]`.
    fn apply(&self, x: Tensor<B, 3>, heads: usize, head_dim: usize, keys: bool) -> Tensor<B, 4> {
        let [b, t, _] = x.dims();
        let (cos, sin) = if keys { &self.k } else { &self.q };
        let flat = x.reshape([b * t * heads, head_dim]);
        let rotated = flat.clone().matmul(self.rotate.clone());
        (flat * cos.clone() + rotated * sin.clone())
            .reshape([b, t, heads, head_dim])
            .swap_dims(1, 2)
    }
}

/// Additive attention bias `[batch, heads, queries, keys]`: query `i` (at
/// position `offset + i`) sees key `j` when `j <= offset + i` and the key is
/// not padding. `key_valid` is `batch × (offset + queries)`, row-major; `None`
/// means no padding. Built at full shape so that adding it to the scores is
/// a contiguous element-wise operation.
pub fn attention_bias<B: Backend>(
    batch: usize,
    heads: usize,
    queries: usize,
    offset: usize,
    key_valid: Option<&[bool]>,
    device: &B::Device,
) -> Tensor<B, 4> {
    let keys = offset + queries;
    let mut one = vec![0.0f32; queries * keys];
    let mut bias = Vec::with_capacity(batch * heads * queries * keys);
    for b in 0..batch {
        for i in 0..queries {
            for j in 0..keys {
                let visible = j <= offset + i && key_valid.is_none_or(|v| v[b * keys + j]);
                one[i * keys + j] = if visible { 0.0 } else { MASKED };
            }
        }
        for _ in 0..heads {
            bias.extend_from_slice(&one);
        }
    }
    Tensor::from_data(TensorData::new(bias, [batch, heads, queries, keys]), device)
}

impl<B: Backend> Attention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = rope.apply(self.q_proj.forward(x.clone()), h, hd, false);
        let mut k = rope.apply(self.k_proj.forward(x.clone()), kv, hd, true);
        let mut v = self
            .v_proj
            .forward(x)
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let tk = k.dims()[2];
        // Grouped-query attention without copying keys and values per query
        // head: the `rep` query heads that share a key/value head are
        // stacked along the query axis (head i uses key/value head i / rep,
        // as in transformers' `repeat_kv`).
        let rep = h / kv;
        let q = q.reshape([b, kv, rep * t, hd]);
        let bias = bias.clone().reshape([b, kv, rep * t, tk]);
        // q carries the 1/sqrt(head_dim) scale (see `Rope`).
        let scores = q.matmul(k.swap_dims(2, 3)) + bias;
        let out = softmax(scores, 3).matmul(v).reshape([b, h, t, hd]);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, h * hd]))
    }
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

impl<B: Backend> DecoderLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, bias, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

impl<B: Backend> Llama<B> {
    /// Logits `[batch, len, vocab]` for `ids` `[batch, len]`. With a cache,
    /// `ids` are the positions after the cached ones and the cache grows by
    /// `len`. `key_valid` marks non-padding keys over the cached and new
    /// positions (`batch × (cache.len + len)`); `None` means no padding.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        key_valid: Option<&[bool]>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = ids.device();
        let [b, t] = ids.dims();
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let rope = Rope::<B>::new(&self.config, b, offset, t, &device);
        let bias = attention_bias::<B>(
            b,
            self.config.num_attention_heads,
            t,
            offset,
            key_valid,
            &device,
        );
        let mut x = self.embed_tokens.forward(ids);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &rope, &bias, slot);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        let x = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.matmul(self.embed_tokens.weight.val().transpose().unsqueeze_dim(0)),
        }
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}
