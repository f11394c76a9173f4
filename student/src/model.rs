//! The decoder-only Llama architecture (also Qwen2 with q/k/v biases):
//! token embedding, RMSNorm, rotary position embedding, grouped-query
//! attention, SwiGLU MLP, optional tied embeddings. Field names follow the
//! Hugging Face module tree so that `checkpoint.rs` maps names one to one.

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::LlamaConfig;
use crate::kernels::{self, Kernels, KeyMask};

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
    layers: Vec<Option<LayerCache<B>>>,
    /// Number of positions cached.
    pub len: usize,
}

/// One layer's keys and values, `[batch, capacity, kv_heads, head_dim]`,
/// of which the first `KvCache::len` positions are filled. The buffers
/// grow by doubling, and new positions are written into them in place
/// (where the backend can, see [`Kernels::write_positions`]) instead of
/// concatenating a copy of the whole cache at every generated token.
#[derive(Debug, Clone)]
struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
}

impl<B: Kernels> LayerCache<B> {
    /// Writes `k`/`v` `[b, t, kv, d]` at positions `len..len + t` of the
    /// cache in `slot` (creating or growing it) and returns views of the
    /// keys and values of positions `0..len + t`.
    fn append(
        slot: &mut Option<Self>,
        len: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, kv, hd] = k.dims();
        let need = len + t;
        // Room for as many positions again, so that growing (a copy of the
        // whole cache) happens a logarithmic number of times.
        let capacity = (2 * need).max(64);
        let zeros = |n: usize| Tensor::<B, 4>::zeros([b, n, kv, hd], &k.device());
        let mut cache = slot.take().unwrap_or_else(|| Self {
            keys: zeros(capacity),
            values: zeros(capacity),
        });
        let have = cache.keys.dims()[1];
        if need > have {
            cache.keys = Tensor::cat(vec![cache.keys, zeros(capacity - have)], 1);
            cache.values = Tensor::cat(vec![cache.values, zeros(capacity - have)], 1);
        }
        cache.keys = kernels::write_positions(cache.keys, len, k);
        cache.values = kernels::write_positions(cache.values, len, v);
        let seen = [0..b, 0..need, 0..kv, 0..hd];
        let views = (
            cache.keys.clone().slice(seen.clone()),
            cache.values.clone().slice(seen),
        );
        *slot = Some(cache);
        views
    }
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
        for layer in self.layers.iter_mut().flatten() {
            layer.keys = layer.keys.clone().select(0, index.clone());
            layer.values = layer.values.clone().select(0, index.clone());
        }
    }
}

/// The cosines and sines of the rotary embedding for the positions of one
/// forward pass, `[len, head_dim/2]` each.
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Angles for positions `offset..offset + len`.
    pub fn new(config: &LlamaConfig, offset: usize, len: usize, device: &B::Device) -> Self {
        let hd = config.head_dim();
        let half = hd / 2;
        let theta = config.rope_theta();
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / hd as f64))
            .collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in offset..offset + len {
            for f in &inv_freq {
                // The angle in f32 before cos/sin, as transformers computes it.
                let angle = (p as f64 * f) as f32;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v| Tensor::from_data(TensorData::new(v, [len, half]), device);
        Self {
            cos: table(cos),
            sin: table(sin),
        }
    }
}

impl<B: Kernels> Attention<B> {
    /// `x` is `[batch·len, hidden]` (see [`Llama::forward`]).
    fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        rope: &Rope<B>,
        mask: &KeyMask,
        cache: Option<(&mut Option<LayerCache<B>>, usize)>,
    ) -> Tensor<B, 2> {
        let [n, _] = x.dims();
        let (b, t) = (batch, n / batch);
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let heads =
            |proj: &Linear<B>, n: usize| kernels::dense(x.clone(), proj).reshape([b, t, n, hd]);
        let q = kernels::rope(heads(&self.q_proj, h), &rope.cos, &rope.sin);
        let mut k = kernels::rope(heads(&self.k_proj, kv), &rope.cos, &rope.sin);
        let mut v = heads(&self.v_proj, kv);
        if let Some((slot, len)) = cache {
            (k, v) = LayerCache::append(slot, len, k, v);
        }
        let out = kernels::attention(q, k, v, mask);
        kernels::dense(out.reshape([n, h * hd]), &self.o_proj)
    }
}

impl<B: Kernels> Mlp<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let gate = kernels::dense(x.clone(), &self.gate_proj);
        let up = kernels::dense(x, &self.up_proj);
        kernels::dense(kernels::swiglu(gate, up), &self.down_proj)
    }
}

impl<B: Kernels> DecoderLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        rope: &Rope<B>,
        mask: &KeyMask,
        cache: Option<(&mut Option<LayerCache<B>>, usize)>,
    ) -> Tensor<B, 2> {
        let normed = kernels::rms_norm(x.clone(), &self.input_layernorm);
        let h = x + self.self_attn.forward(normed, batch, rope, mask, cache);
        let normed = kernels::rms_norm(h.clone(), &self.post_attention_layernorm);
        h + self.mlp.forward(normed)
    }
}

impl<B: Kernels> Llama<B> {
    /// Logits `[batch, len, vocab]` for `ids` `[batch, len]`. With a cache,
    /// `ids` are the positions after the cached ones and the cache grows by
    /// `len`. `key_valid` marks non-padding keys over the cached and new
    /// positions (`batch × (cache.len + len)`); `None` means no padding.
    ///
    /// Hidden states are kept as `[batch·len, hidden]` matrices: a linear
    /// layer on a 3-D input runs one small matrix product per batch row
    /// (and its weight gradient one per row, then a sum), while on the
    /// flattened input it is one large product, several times faster on
    /// the CPU.
    pub fn forward(
        &self,
        ids: Tensor<B, 2, Int>,
        key_valid: Option<&[bool]>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let device = ids.device();
        let [b, t] = ids.dims();
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let rope = Rope::<B>::new(&self.config, offset, t, &device);
        let mask = KeyMask::new(key_valid);
        let hidden = self.config.hidden_size;
        let mut x = self.embed_tokens.forward(ids).reshape([b * t, hidden]);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| (&mut c.layers[i], offset));
            x = layer.forward(x, b, &rope, &mask, slot);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        let x = kernels::rms_norm(x, &self.norm);
        let logits = match &self.lm_head {
            Some(head) => kernels::dense(x, head),
            None => x.matmul(self.embed_tokens.weight.val().transpose()),
        };
        logits.reshape([b, t, self.config.vocab_size])
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}
