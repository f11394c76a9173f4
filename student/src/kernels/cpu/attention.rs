//! Causal grouped-query attention on the CPU, forward and backward, one
//! rayon task per (batch row, key/value head). Queries, keys and values are
//! read where the projections (or the KV cache) put them, through strides;
//! the score matrix of each head is the only intermediate, and the causal
//! upper triangle is skipped in blocks of queries.

use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{Shared, assume_init, matmul, shape};
use crate::kernels::{KeyMask, simd};

/// Keys or values `[b, tk, kv, d]` read in place when only their batch
/// rows are spread out: a view of the first `tk` positions of a longer KV
/// cache buffer, which copying would cost a pass over the whole cache at
/// every generated token.
pub(super) struct KeyValues {
    tensor: FlexTensor,
    offset: usize,
    pub(super) batch_stride: usize,
}

impl KeyValues {
    pub(super) fn new(t: &FlexTensor) -> Self {
        let layout = t.layout();
        let [_, tk, kv, hd] = layout.shape().dims();
        match *layout.strides() {
            [sb, st, sg, 1]
                if st == (kv * hd) as isize
                    && sg == hd as isize
                    && sb >= (tk * kv * hd) as isize =>
            {
                Self {
                    tensor: t.clone(),
                    offset: layout.start_offset(),
                    batch_stride: sb as usize,
                }
            }
            _ => Self {
                tensor: t.to_contiguous(),
                offset: 0,
                batch_stride: tk * kv * hd,
            },
        }
    }

    pub(super) fn values(&self) -> &[f32] {
        &self.tensor.storage::<f32>()[self.offset..]
    }
}

/// Queries per block of the attention products (see `Dims::row_blocks`):
/// smaller blocks skip more of the causal triangle but make more, smaller
/// GEMM calls.
const QUERY_BLOCK: usize = 32;

/// Sizes of one attention call.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub(super) batch: usize,
    pub(super) q_len: usize,
    pub(super) k_len: usize,
    pub(super) heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Elements between batch rows of `k` and `v`: `k_len·kv_heads·head_dim`
    /// when contiguous, more when they are views of a longer KV cache.
    kv_batch_stride: usize,
}

impl Dims {
    /// The sizes of `q` `[b, tq, h, d]` and `k`, `v` `[b, tk, kv, d]`.
    ///
    /// # Panics
    /// When the shapes do not fit together: the kernels index the buffers
    /// by these sizes, so this check is what keeps them in bounds.
    pub(super) fn of(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> Self {
        let [batch, q_len, heads, head_dim] = shape(q).dims();
        let [k_batch, k_len, kv_heads, k_dim] = shape(k).dims();
        assert!(
            shape(v) == shape(k)
                && k_batch == batch
                && k_dim == head_dim
                && q_len > 0
                && k_len >= q_len
                && kv_heads > 0
                && heads % kv_heads == 0,
            "attention: q {:?}, k {:?} and v {:?} do not fit (q [b, tq, h, d], k and v [b, tk ≥ tq > 0, kv, d] with kv dividing h)",
            shape(q).as_slice(),
            shape(k).as_slice(),
            shape(v).as_slice(),
        );
        Self {
            batch,
            q_len,
            k_len,
            heads,
            kv_heads,
            head_dim,
            kv_batch_stride: k_len * kv_heads * head_dim,
        }
    }

    /// The same sizes, for keys and values whose batch rows lie `stride`
    /// elements apart (views of a longer KV cache).
    pub(super) fn with_kv_batch_stride(self, stride: usize) -> Self {
        Self {
            kv_batch_stride: stride,
            ..self
        }
    }

    /// Keys the first `queries` queries see between them (causality: query
    /// `i` sees keys up to `offset + i`).
    fn keys_seen(&self, queries: usize) -> usize {
        (self.k_len - self.q_len + queries).min(self.k_len)
    }

    /// The queries in blocks of [`QUERY_BLOCK`] rows, last block first: each
    /// block's products stop at the last key it sees, so the causal upper
    /// triangle costs (almost) nothing. The last block sees every key.
    fn row_blocks(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let n = self.q_len.div_ceil(QUERY_BLOCK);
        (0..n)
            .rev()
            .map(move |i| i * QUERY_BLOCK..((i + 1) * QUERY_BLOCK).min(self.q_len))
    }

    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// Offset of head `head` of token `t` of batch row `b` in `[b, t, h, d]`.
    fn q_at(&self, b: usize, t: usize, head: usize) -> usize {
        ((b * self.q_len + t) * self.heads + head) * self.head_dim
    }

    /// Offset of key/value head `g` of token `t` of batch row `b` in the
    /// keys and values (which may be views, see `kv_batch_stride`).
    fn kv_at(&self, b: usize, t: usize, g: usize) -> usize {
        b * self.kv_batch_stride + (t * self.kv_heads + g) * self.head_dim
    }

    /// The same in the contiguous `[b, tk, kv, d]` gradients of keys and
    /// values.
    fn dkv_at(&self, b: usize, t: usize, g: usize) -> usize {
        ((b * self.k_len + t) * self.kv_heads + g) * self.head_dim
    }
}

/// Output `[b, tq, h, d]` and probabilities `[b, h, tq, tk]`.
pub(super) fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: Dims,
    mask: &KeyMask,
    keep_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (tq, tk, hd) = (d.q_len, d.k_len, d.head_dim);
    let (out_len, probs_len) = (d.batch * tq * d.heads * hd, d.batch * d.heads * tq * tk);
    let group_len = d.rep() * tq * tk;
    let mut out = Vec::with_capacity(out_len);
    // Probabilities of every head when the backward pass needs them; else
    // each task works in its thread's scratch (the whole matrix of a long
    // prompt can run to gigabytes).
    let mut probs = Vec::with_capacity(if keep_probs { probs_len } else { 0 });
    let (out_ptr, probs_ptr) = (Shared(out.as_mut_ptr()), Shared(probs.as_mut_ptr()));
    (0..d.batch * d.kv_heads)
        .into_par_iter()
        .for_each_init(Vec::<f32>::new, |scratch, task| {
            let group_probs: &mut [MaybeUninit<f32>] = if keep_probs {
                // SAFETY: `probs` has capacity for every group; task `task`
                // alone uses group `task`.
                unsafe {
                    std::slice::from_raw_parts_mut(
                        probs_ptr.get().add(task * group_len).cast(),
                        group_len,
                    )
                }
            } else {
                scratch.clear();
                scratch.reserve(group_len);
                &mut scratch.spare_capacity_mut()[..group_len]
            };
            let (b, g) = (task / d.kv_heads, task % d.kv_heads);
            let valid = mask.row(b, tk);
            for (r, p) in group_probs.chunks_exact_mut(tq * tk).enumerate() {
                let head = g * d.rep() + r;
                for rows in d.row_blocks() {
                    let keys = d.keys_seen(rows.end);
                    let block = &mut p[rows.start * tk..rows.end * tk];
                    // Keys no query of the block sees: probability 0.
                    for row in block.chunks_exact_mut(tk) {
                        row[keys..].fill(MaybeUninit::new(0.0));
                    }
                    // SAFETY: q/k/v rows of this (b, head) lie inside their
                    // buffers under these strides; `block` is this task's
                    // own; the output rows of (b, head) are written by this
                    // task only.
                    unsafe {
                        matmul(
                            [rows.len(), keys, hd],
                            block.as_mut_ptr().cast(),
                            tk,
                            false,
                            (q[d.q_at(b, rows.start, head)..].as_ptr(), d.heads * hd, 1),
                            (k[d.kv_at(b, 0, g)..].as_ptr(), 1, d.kv_heads * hd),
                            d.scale(),
                        );
                    }
                    // SAFETY: the product wrote the first `keys` scores of
                    // each row, the fill above the rest.
                    let block = unsafe { assume_init(block) };
                    for (i, row) in rows.clone().zip(block.chunks_exact_mut(tk)) {
                        simd::softmax_row(row, d.keys_seen(i + 1), valid);
                    }
                    unsafe {
                        matmul(
                            [rows.len(), hd, keys],
                            out_ptr.get().add(d.q_at(b, rows.start, head)),
                            d.heads * hd,
                            false,
                            (block.as_ptr(), tk, 1),
                            (v[d.kv_at(b, 0, g)..].as_ptr(), d.kv_heads * hd, 1),
                            1.0,
                        );
                    }
                }
            }
        });
    // SAFETY: every (batch, head) block of both was written above: the
    // scores by the first product and the fill (then normalised in place),
    // the output rows by the second product.
    unsafe {
        out.set_len(out_len);
        if keep_probs {
            probs.set_len(probs_len);
        }
    }
    (out, keep_probs.then_some(probs))
}

/// Gradients `dq` `[b, tq, h, d]`, `dk` and `dv` `[b, tk, kv, d]`.
pub(super) fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    grad: &[f32],
    d: Dims,
) -> [Vec<f32>; 3] {
    let (tq, tk, hd) = (d.q_len, d.k_len, d.head_dim);
    let mut dq = Vec::with_capacity(q.len());
    let mut dk = Vec::with_capacity(k.len());
    let mut dv = Vec::with_capacity(v.len());
    let (dq_ptr, dk_ptr, dv_ptr) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..d.batch * d.kv_heads).into_par_iter().for_each_init(
        || vec![0f32; tq * tk],
        |ds, task| {
            let (b, g) = (task / d.kv_heads, task % d.kv_heads);
            for r in 0..d.rep() {
                let head = g * d.rep() + r;
                let p = &probs[(b * d.heads + head) * tq * tk..][..tq * tk];
                for (n, rows) in d.row_blocks().enumerate() {
                    let keys = d.keys_seen(rows.end);
                    let (m, at) = (rows.len(), rows.start * tk);
                    let grad_h = grad[d.q_at(b, rows.start, head)..].as_ptr();
                    let q_h = q[d.q_at(b, rows.start, head)..].as_ptr();
                    // The first block of the group's first head (the last
                    // block, which sees every key) writes dK and dV whole;
                    // the rest add to them.
                    let accumulate = r > 0 || n > 0;
                    // SAFETY: as in `attention_forward`; dq rows of (b, head)
                    // and dk/dv rows of (b, g) belong to this task alone.
                    unsafe {
                        // dP = dO · Vᵀ
                        matmul(
                            [m, keys, hd],
                            ds[at..].as_mut_ptr(),
                            tk,
                            false,
                            (grad_h, d.heads * hd, 1),
                            (v[d.kv_at(b, 0, g)..].as_ptr(), 1, d.kv_heads * hd),
                            1.0,
                        );
                    }
                    let (p_rows, ds_rows) = (&p[at..at + m * tk], &mut ds[at..at + m * tk]);
                    for (prow, grow) in p_rows.chunks_exact(tk).zip(ds_rows.chunks_exact_mut(tk)) {
                        simd::softmax_backward_row(&prow[..keys], &mut grow[..keys], d.scale());
                    }
                    unsafe {
                        // dQ = dS · K
                        matmul(
                            [m, hd, keys],
                            dq_ptr.get().add(d.q_at(b, rows.start, head)),
                            d.heads * hd,
                            false,
                            (ds[at..].as_ptr(), tk, 1),
                            (k[d.kv_at(b, 0, g)..].as_ptr(), d.kv_heads * hd, 1),
                            1.0,
                        );
                        // dK (+)= dSᵀ · Q
                        matmul(
                            [keys, hd, m],
                            dk_ptr.get().add(d.dkv_at(b, 0, g)),
                            d.kv_heads * hd,
                            accumulate,
                            (ds[at..].as_ptr(), 1, tk),
                            (q_h, d.heads * hd, 1),
                            1.0,
                        );
                        // dV (+)= Pᵀ · dO
                        matmul(
                            [keys, hd, m],
                            dv_ptr.get().add(d.dkv_at(b, 0, g)),
                            d.kv_heads * hd,
                            accumulate,
                            (p[at..].as_ptr(), 1, tk),
                            (grad_h, d.heads * hd, 1),
                            1.0,
                        );
                    }
                }
            }
        },
    );
    // SAFETY: each (batch, head) writes its dq rows whole (block by block),
    // and the last query block of each group's first head, which sees every
    // key, writes its dk and dv rows whole (without accumulating); together
    // they cover all three.
    unsafe {
        dq.set_len(q.len());
        dk.set_len(k.len());
        dv.set_len(v.len());
    }
    [dq, dk, dv]
}
