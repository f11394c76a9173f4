//! The kernels written with burn's tensor operations, for any backend:
//! what a backend without its own kernels (CUDA) runs, and the reference the
//! CPU kernels and their hand-written gradients are tested against.

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorData, TensorPrimitive};

use super::mask::KeyMask;

/// Additive bias for a key that a query must not see: large and finite, so
/// that a row whose keys are all masked stays finite.
const MASKED: f32 = -1.0e9;

pub(crate) fn wrap<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

pub(crate) fn unwrap<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// `[b, t, heads, d]` → `[b, kv, heads/kv · t, d]`: the query heads that
/// share a key/value head stacked along the query axis (head `i` uses
/// key/value head `i / rep`, as transformers' `repeat_kv` does).
fn group_heads<B: Backend>(x: Tensor<B, 4>, kv: usize) -> Tensor<B, 4> {
    let [b, t, h, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, kv, h / kv * t, d])
}

fn ungroup_heads<B: Backend>(x: Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    let [b, _, _, d] = x.dims();
    let t = x.dims()[2] * x.dims()[1] / heads;
    x.reshape([b, heads, t, d]).swap_dims(1, 2)
}

/// The additive mask `[b, kv, rep·tq, tk]` of [`attention`].
fn bias<B: Backend>(
    mask: &KeyMask,
    [b, kv, rep, tq, tk]: [usize; 5],
    device: &B::Device,
) -> Tensor<B, 4> {
    let offset = tk - tq;
    let mut one = vec![0f32; tq * tk];
    let mut out = Vec::with_capacity(b * kv * rep * tq * tk);
    for bi in 0..b {
        for i in 0..tq {
            for j in 0..tk {
                let visible = j <= offset + i && mask.is_valid(bi, j, tk);
                one[i * tk + j] = if visible { 0.0 } else { MASKED };
            }
        }
        for _ in 0..kv * rep {
            out.extend_from_slice(&one);
        }
    }
    Tensor::from_data(TensorData::new(out, [b, kv, rep * tq, tk]), device)
}

/// Causal attention; returns the output `[b, tq, h, d]` and the attention
/// probabilities (`[b, kv, rep·tq, tk]`, for [`attention_backward`]).
pub fn attention<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask: &KeyMask,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (q, k, v) = (wrap::<B, 4>(q), wrap::<B, 4>(k), wrap::<B, 4>(v));
    let [b, tq, h, d] = q.dims();
    let [_, tk, kv, _] = k.dims();
    let scale = 1.0 / (d as f64).sqrt();
    let bias = bias::<B>(mask, [b, kv, h / kv, tq, tk], &q.device());
    let q = group_heads(q, kv);
    let k = k.swap_dims(1, 2);
    let v = v.swap_dims(1, 2);
    let probs = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias, 3);
    let out = ungroup_heads(probs.clone().matmul(v), h);
    (unwrap(out), unwrap(probs))
}

/// Gradients of [`attention`] with respect to `q`, `k` and `v`.
pub fn attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    probs: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let (q, k, v) = (wrap::<B, 4>(q), wrap::<B, 4>(k), wrap::<B, 4>(v));
    let (probs, grad) = (wrap::<B, 4>(probs), wrap::<B, 4>(grad));
    let [_, _, h, d] = q.dims();
    let kv = k.dims()[2];
    let scale = 1.0 / (d as f64).sqrt();
    let q = group_heads(q, kv);
    let grad = group_heads(grad, kv);
    let k = k.swap_dims(1, 2);
    let v = v.swap_dims(1, 2);
    let dv = probs.clone().swap_dims(2, 3).matmul(grad.clone());
    let dp = grad.matmul(v.swap_dims(2, 3));
    let row = (probs.clone() * dp.clone()).sum_dim(3);
    let ds = (probs * (dp - row)).mul_scalar(scale);
    let dq = ungroup_heads(ds.clone().matmul(k), h);
    let dk = ds.swap_dims(2, 3).matmul(q).swap_dims(1, 2);
    [unwrap(dq), unwrap(dk), unwrap(dv.swap_dims(1, 2))]
}

/// `x · weight + bias` over the last dimension of `x`.
pub fn dense<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let (x, mut shape) = rows::<B>(x);
    let weight = wrap::<B, 2>(weight);
    *shape.last_mut().expect("a tensor with dimensions") = weight.dims()[1];
    let mut y = x.matmul(weight);
    if let Some(bias) = bias {
        y = y + wrap::<B, 1>(bias).unsqueeze_dim::<2>(0);
    }
    shaped(y, &shape)
}

/// Gradients of [`dense`] with respect to `x`, `weight` and the bias.
pub fn dense_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    with_bias: bool,
) -> (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) {
    let (x, shape) = rows::<B>(x);
    let (grad, _) = rows::<B>(grad);
    let weight = wrap::<B, 2>(weight);
    let dx = grad.clone().matmul(weight.transpose());
    let dweight = x.transpose().matmul(grad.clone());
    let dbias = with_bias.then(|| unwrap(grad.sum_dim(0).squeeze_dim::<1>(0)));
    (shaped(dx, &shape), unwrap(dweight), dbias)
}

/// Rotary embedding of `x` `[b, t, n, d]` with `cos`/`sin` `[t, d/2]`, in
/// the Hugging Face layout (the two halves of each head rotate together).
pub fn rope<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = wrap::<B, 4>(x);
    let [_, t, _, d] = x.dims();
    let half = d / 2;
    let cos = wrap::<B, 2>(cos).reshape([1, t, 1, half]);
    let sin = wrap::<B, 2>(sin).reshape([1, t, 1, half]);
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let out = Tensor::cat(
        vec![
            x1.clone() * cos.clone() - x2.clone() * sin.clone(),
            x2 * cos + x1 * sin,
        ],
        3,
    );
    unwrap(out)
}

/// `cache` with positions `start..` replaced by `new` (a functional
/// `slice_assign`).
pub fn write_positions<B: Backend>(
    cache: FloatTensor<B>,
    start: usize,
    new: FloatTensor<B>,
) -> FloatTensor<B> {
    let new = wrap::<B, 4>(new);
    let [b, t, kv, d] = new.dims();
    unwrap(wrap::<B, 4>(cache).slice_assign([0..b, start..start + t, 0..kv, 0..d], new))
}

/// `x` as `[rows, last]` and its original shape.
fn rows<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 2>, Vec<usize>) {
    let shape = burn::tensor::TensorMetadata::shape(&x).to_vec();
    let last = *shape.last().expect("a tensor with at least one dimension");
    let count = shape.iter().product::<usize>() / last.max(1);
    (wrap(B::float_reshape(x, Shape::new([count, last]))), shape)
}

fn shaped<B: Backend>(x: Tensor<B, 2>, shape: &[usize]) -> FloatTensor<B> {
    B::float_reshape(unwrap(x), Shape::from(shape.to_vec()))
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension.
pub fn rms_norm<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, eps: f64) -> FloatTensor<B> {
    let (x, shape) = rows::<B>(x);
    let weight = wrap::<B, 1>(weight).unsqueeze_dim::<2>(0);
    let r = (x.clone().square().mean_dim(1) + eps).sqrt().recip();
    shaped(x * r * weight, &shape)
}

/// Gradients of [`rms_norm`] with respect to `x` and `weight`.
pub fn rms_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    eps: f64,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 2] {
    let (x, shape) = rows::<B>(x);
    let (grad, _) = rows::<B>(grad);
    let weight = wrap::<B, 1>(weight).unsqueeze_dim::<2>(0);
    let r = (x.clone().square().mean_dim(1) + eps).sqrt().recip();
    let xn = x * r.clone();
    let dweight = (grad.clone() * xn.clone()).sum_dim(0).squeeze_dim::<1>(0);
    let dxn = grad * weight;
    let c = (dxn.clone() * xn.clone()).mean_dim(1);
    let dx = r * (dxn - xn * c);
    [shaped(dx, &shape), unwrap(dweight)]
}

/// `silu(gate) · up`.
pub fn swiglu<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    let (gate, shape) = rows::<B>(gate);
    let (up, _) = rows::<B>(up);
    shaped(gate.clone() * sigmoid(gate) * up, &shape)
}

/// Gradients of [`swiglu`] with respect to `gate` and `up`.
pub fn swiglu_backward<B: Backend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 2] {
    let (gate, shape) = rows::<B>(gate);
    let (up, _) = rows::<B>(up);
    let (grad, _) = rows::<B>(grad);
    let s = sigmoid(gate.clone());
    let silu = gate * s.clone();
    let dup = grad.clone() * silu.clone();
    let dgate = grad * up * (s.clone() + silu * (s.neg() + 1.0));
    [shaped(dgate, &shape), shaped(dup, &shape)]
}
