//! Fused kernels for the student's hot spots: causal attention, rotary
//! embedding, RMSNorm, SwiGLU and the dense layers, each with a
//! hand-written gradient, and in-place writes into the KV cache.
//!
//! Built from burn's stock tensor operations, these take one pass per
//! operation, and on the CPU backend every element-wise pass runs on a
//! single core with the C library's scalar `expf`; the layout changes
//! around attention (`swap_dims`, then copies back to contiguous memory)
//! added as much again. A profile of a training step put about half its time
//! there. [`Kernels`] is a backend extension in burn's sense: the CPU
//! backend (Flex) runs hand-written kernels (`cpu/`) that read the
//! projections in their natural `[batch, len, heads, head_dim]` layout, use
//! every core, and vectorise the exponential; any other backend (CUDA) runs
//! the same mathematics composed from tensor operations (`composed.rs`), and
//! the autodiff backend records each kernel as one node with its gradient
//! (`autodiff.rs`).

mod autodiff;
pub mod composed;
mod cpu;
mod mask;
mod simd;

use burn::nn::{Linear, RmsNorm};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;

use composed::{unwrap, wrap};
pub use mask::KeyMask;

/// A backend with the student's fused kernels. Every method has a default
/// built from tensor operations ([`composed`]), so a backend opts in with
/// an empty `impl`, and overrides what it has faster kernels for.
pub trait Kernels: Backend {
    /// Causal grouped-query attention, `softmax(q·kᵀ/√d + mask)·v`, with
    /// `q` `[b, tq, h, d]`, `k`/`v` `[b, tk, kv, d]` (`kv` divides `h`,
    /// `tk ≥ tq`); returns `[b, tq, h, d]`. A query that sees no key (a
    /// padding position) gets an output that is finite but unspecified.
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &KeyMask,
    ) -> FloatTensor<Self> {
        composed::attention::<Self>(q, k, v, mask).0
    }

    /// [`Kernels::attention`] that also returns what
    /// [`Kernels::attention_backward`] needs (the attention probabilities).
    fn attention_for_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &KeyMask,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::attention::<Self>(q, k, v, mask)
    }

    /// Gradients of attention with respect to `q`, `k`, `v`, given the
    /// saved probabilities and the output's gradient.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        composed::attention_backward::<Self>(q, k, v, probs, grad)
    }

    /// `x · weight + bias` for `x` `[.., in]` and `weight` `[in, out]`
    /// (burn's `Linear` layout), as one matrix product over all leading
    /// dimensions.
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        composed::dense::<Self>(x, weight, bias)
    }

    /// Gradients of [`Kernels::dense`] with respect to `x`, `weight` and,
    /// when `with_bias`, the bias.
    fn dense_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        with_bias: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    ) {
        composed::dense_backward::<Self>(x, weight, grad, with_bias)
    }

    /// `cache` `[b, capacity, kv, d]` with positions `start..start + t`
    /// replaced by `new` `[b, t, kv, d]` (a KV cache receiving the keys or
    /// values of new tokens). Backends may write in place when nothing else
    /// holds `cache`.
    fn write_positions(
        cache: FloatTensor<Self>,
        start: usize,
        new: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::write_positions::<Self>(cache, start, new)
    }

    /// Rotary position embedding of `x` `[b, t, n, d]` by angles whose
    /// cosines and sines are `cos`/`sin` `[t, d/2]` (Hugging Face layout:
    /// element `i` rotates with element `i + d/2`). Its gradient is the
    /// same rotation with `-sin`.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::rope::<Self>(x, cos, sin)
    }

    /// RMSNorm over the last dimension.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        composed::rms_norm::<Self>(x, weight, eps)
    }

    /// Gradients of RMSNorm with respect to `x` and `weight`.
    fn rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        composed::rms_norm_backward::<Self>(x, weight, eps, grad)
    }

    /// `silu(gate) · up`, element-wise.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::swiglu::<Self>(gate, up)
    }

    /// Gradients of SwiGLU with respect to `gate` and `up`.
    fn swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        composed::swiglu_backward::<Self>(gate, up, grad)
    }
}

/// A backend to train the student on: autodiff over a backend with the
/// kernels, so that both the training model and its inner (inference) copy
/// can run forward.
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B: AutodiffBackend<InnerBackend: Kernels> + Kernels> TrainBackend for B {}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {}

/// See [`Kernels::attention`].
pub fn attention<B: Kernels>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &KeyMask,
) -> Tensor<B, 4> {
    wrap(<B as Kernels>::attention(
        unwrap(q),
        unwrap(k),
        unwrap(v),
        mask,
    ))
}

/// `linear` applied to `x` through [`Kernels::dense`].
pub fn dense<B: Kernels, const D: usize>(x: Tensor<B, D>, linear: &Linear<B>) -> Tensor<B, D> {
    let bias = linear.bias.as_ref().map(|b| unwrap(b.val()));
    wrap(B::dense(unwrap(x), unwrap(linear.weight.val()), bias))
}

/// See [`Kernels::write_positions`].
pub fn write_positions<B: Kernels>(
    cache: Tensor<B, 4>,
    start: usize,
    new: Tensor<B, 4>,
) -> Tensor<B, 4> {
    wrap(B::write_positions(unwrap(cache), start, unwrap(new)))
}

/// See [`Kernels::rope`].
pub fn rope<B: Kernels>(x: Tensor<B, 4>, cos: &Tensor<B, 2>, sin: &Tensor<B, 2>) -> Tensor<B, 4> {
    wrap(B::rope(unwrap(x), unwrap(cos.clone()), unwrap(sin.clone())))
}

/// See [`Kernels::rms_norm`]; `norm` holds the weight and epsilon.
pub fn rms_norm<B: Kernels, const D: usize>(x: Tensor<B, D>, norm: &RmsNorm<B>) -> Tensor<B, D> {
    wrap(B::rms_norm(
        unwrap(x),
        unwrap(norm.gamma.val()),
        norm.epsilon,
    ))
}

/// See [`Kernels::swiglu`].
pub fn swiglu<B: Kernels, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    wrap(B::swiglu(unwrap(gate), unwrap(up)))
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Tensor, TensorData};
    use didact_data::rng::Rng;

    use super::*;

    type A = Autodiff<Flex>;

    fn random<B: Backend, const D: usize>(rng: &mut Rng, shape: [usize; D]) -> Tensor<B, D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn assert_close<const D: usize>(
        what: &str,
        got: Tensor<Flex, D>,
        want: Tensor<Flex, D>,
        tol: f32,
    ) {
        assert_eq!(got.dims(), want.dims(), "{what}: shapes");
        let (got, want) = (
            got.into_data().to_vec::<f32>().unwrap(),
            want.into_data().to_vec::<f32>().unwrap(),
        );
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "{what}: largest difference {worst} > {tol}");
    }

    /// Attention shapes `q`, `k` for two sequences: `tq` queries after
    /// `tk - tq` cached keys, `h` query heads over `kv` key/value heads, head
    /// size 8. With a cache of at least two keys, the second sequence has its
    /// first two keys padded (left padding, as in batched generation; every
    /// query still sees a real key, since what a query that sees none gets
    /// is unspecified).
    fn attention_case(
        tq: usize,
        tk: usize,
        h: usize,
        kv: usize,
    ) -> ([usize; 4], [usize; 4], KeyMask) {
        let mask = if tk - tq >= 2 {
            let mut valid = vec![true; 2 * tk];
            valid[tk] = false;
            valid[tk + 1] = false;
            KeyMask::new(Some(&valid))
        } else {
            KeyMask::none()
        };
        ([2, tq, h, 8], [2, tk, kv, 8], mask)
    }

    /// Grouped-query attention with a cache (4 queries after 3 keys); 70
    /// queries after 5 keys (three query blocks of the CPU kernel, the last
    /// partial); one query after 74 keys (a generation step); and no cache
    /// (training).
    fn attention_cases() -> [([usize; 4], [usize; 4], KeyMask); 4] {
        [
            attention_case(4, 7, 4, 2),
            attention_case(70, 75, 2, 1),
            attention_case(1, 75, 4, 2),
            attention_case(40, 40, 2, 2),
        ]
    }

    #[test]
    fn cpu_kernels_match_the_composed_reference() {
        let mut rng = Rng::new(1);
        for (qs, ks, mask) in attention_cases() {
            let (q, k, v) = (
                random::<Flex, 4>(&mut rng, qs),
                random(&mut rng, ks),
                random(&mut rng, ks),
            );
            let want = wrap::<Flex, 4>(
                composed::attention::<Flex>(
                    unwrap(q.clone()),
                    unwrap(k.clone()),
                    unwrap(v.clone()),
                    &mask,
                )
                .0,
            );
            assert_close("attention", attention(q, k, v, &mask), want, 1e-5);
        }

        // Keys and values as views of the first 75 positions of longer
        // cache buffers, as generation passes them.
        let (qs, _, mask) = attention_case(3, 75, 4, 2);
        let q = random::<Flex, 4>(&mut rng, qs);
        let k = random::<Flex, 4>(&mut rng, [2, 96, 2, 8]).slice([0..2, 0..75]);
        let v = random::<Flex, 4>(&mut rng, [2, 96, 2, 8]).slice([0..2, 0..75]);
        let want = wrap::<Flex, 4>(
            composed::attention::<Flex>(
                unwrap(q.clone()),
                unwrap(k.clone()),
                unwrap(v.clone()),
                &mask,
            )
            .0,
        );
        assert_close(
            "attention over cache views",
            attention(q, k, v, &mask),
            want,
            1e-5,
        );

        let x = random::<Flex, 4>(&mut rng, [2, 5, 3, 8]);
        let (cos, sin) = (
            random::<Flex, 2>(&mut rng, [5, 4]),
            random::<Flex, 2>(&mut rng, [5, 4]),
        );
        let want = wrap(composed::rope::<Flex>(
            unwrap(x.clone()),
            unwrap(cos.clone()),
            unwrap(sin.clone()),
        ));
        assert_close("rope", rope(x, &cos, &sin), want, 1e-6);

        let x = random::<Flex, 2>(&mut rng, [150, 24]);
        let w = random::<Flex, 1>(&mut rng, [24]);
        let want = wrap(composed::rms_norm::<Flex>(
            unwrap(x.clone()),
            unwrap(w.clone()),
            1e-6,
        ));
        assert_close(
            "rms_norm",
            wrap::<Flex, 2>(Flex::rms_norm(unwrap(x), unwrap(w), 1e-6)),
            want,
            1e-5,
        );

        // A weight stored transposed, as checkpoints load them, and a bias.
        let x = random::<Flex, 3>(&mut rng, [3, 70, 24]);
        let w = random::<Flex, 2>(&mut rng, [40, 24]).transpose();
        let b = random::<Flex, 1>(&mut rng, [40]);
        for bias in [None, Some(b)] {
            let want = wrap(composed::dense::<Flex>(
                unwrap(x.clone()),
                unwrap(w.clone()),
                bias.clone().map(unwrap),
            ));
            let got = wrap::<Flex, 3>(Flex::dense(
                unwrap(x.clone()),
                unwrap(w.clone()),
                bias.map(unwrap),
            ));
            assert_close("dense", got, want, 1e-5);
        }

        let (g, u) = (
            random::<Flex, 2>(&mut rng, [300, 70]).mul_scalar(8.0),
            random::<Flex, 2>(&mut rng, [300, 70]),
        );
        let want = wrap(composed::swiglu::<Flex>(
            unwrap(g.clone()),
            unwrap(u.clone()),
        ));
        assert_close("swiglu", swiglu(g, u), want, 1e-5);
    }

    #[test]
    fn weight_gradients_are_the_same_bits_on_every_run() {
        // Rows enough for many parallel blocks, so that a reduction whose
        // order followed rayon's work stealing would differ between runs.
        let mut rng = Rng::new(9);
        let x = random::<Flex, 2>(&mut rng, [4096, 64]);
        let w = random::<Flex, 2>(&mut rng, [64, 48]);
        let g = random::<Flex, 2>(&mut rng, [4096, 48]);
        let norm_w = random::<Flex, 1>(&mut rng, [64]);
        let norm_g = random::<Flex, 2>(&mut rng, [4096, 64]);
        let bits = |t: FloatTensor<Flex>| -> Vec<u32> {
            wrap::<Flex, 1>(t)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect()
        };
        let once = || {
            let (_, _, bias) = Flex::dense_backward(
                unwrap(x.clone()),
                unwrap(w.clone()),
                unwrap(g.clone()),
                true,
            );
            let [_, dw] = Flex::rms_norm_backward(
                unwrap(x.clone()),
                unwrap(norm_w.clone()),
                1e-6,
                unwrap(norm_g.clone()),
            );
            (bits(bias.expect("bias gradient")), bits(dw))
        };
        let first = once();
        for _ in 0..20 {
            assert_eq!(once(), first);
        }
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn mismatched_shapes_stop_before_any_kernel_runs() {
        let mut rng = Rng::new(4);
        let x = random::<Flex, 2>(&mut rng, [4, 8]);
        let w = random::<Flex, 2>(&mut rng, [8, 16]);
        let bias = random::<Flex, 1>(&mut rng, [1]);
        let _ = Flex::dense(unwrap(x), unwrap(w), Some(unwrap(bias)));
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn attention_with_fewer_key_rows_than_query_rows_stops() {
        let mut rng = Rng::new(5);
        let q = random::<Flex, 4>(&mut rng, [2, 4, 2, 8]);
        let kv = random::<Flex, 4>(&mut rng, [1, 4, 1, 8]);
        let _ = attention(q, kv.clone(), kv, &KeyMask::none());
    }

    #[test]
    fn cache_writes_match_slice_assign_and_never_change_a_shared_buffer() {
        let mut rng = Rng::new(3);
        let cache = random::<Flex, 4>(&mut rng, [2, 6, 2, 4]);
        let new = random::<Flex, 4>(&mut rng, [2, 2, 2, 4]);
        let want = wrap::<Flex, 4>(composed::write_positions::<Flex>(
            unwrap(cache.clone()),
            3,
            unwrap(new.clone()),
        ));
        // `cache` is shared with `kept`: the write must leave `kept` alone.
        let original = cache.to_data().to_vec::<f32>().unwrap();
        let kept = cache.clone();
        let got = write_positions(cache, 3, new.clone());
        assert_close("shared write", got.clone(), want.clone(), 0.0);
        assert_eq!(kept.into_data().to_vec::<f32>().unwrap(), original);
        // Unshared: written in place, same result.
        let again = write_positions(got, 3, new);
        assert_close("in-place write", again, want, 0.0);
    }

    /// The gradients of `sum(out ⊙ probe)` through the kernel (one autodiff
    /// node with its hand-written backward) and through the composed
    /// operations (burn's autodiff of each one).
    fn gradients<const D: usize>(
        inputs: &[Tensor<Flex, D>],
        probe: &Tensor<Flex, D>,
        f: impl Fn(&[Tensor<A, D>]) -> Tensor<A, D>,
    ) -> Vec<Tensor<Flex, D>> {
        let tracked: Vec<Tensor<A, D>> = inputs
            .iter()
            .map(|t| Tensor::from_inner(t.clone()).require_grad())
            .collect();
        let loss = (f(&tracked) * Tensor::from_inner(probe.clone())).sum();
        let grads = loss.backward();
        tracked
            .iter()
            .map(|t| t.grad(&grads).expect("a gradient"))
            .collect()
    }

    fn same_gradients<const D: usize>(
        what: &str,
        inputs: &[Tensor<Flex, D>],
        probe: Tensor<Flex, D>,
        kernel: impl Fn(&[Tensor<A, D>]) -> Tensor<A, D>,
        reference: impl Fn(&[Tensor<A, D>]) -> Tensor<A, D>,
    ) {
        let got = gradients(inputs, &probe, kernel);
        let want = gradients(inputs, &probe, reference);
        for (i, (g, w)) in got.into_iter().zip(want).enumerate() {
            assert_close(&format!("{what}: gradient of input {i}"), g, w, 1e-4);
        }
    }

    #[test]
    fn hand_written_gradients_match_autodiff_of_the_composed_operations() {
        let mut rng = Rng::new(2);
        for (qs, ks, mask) in attention_cases() {
            let inputs = [
                random(&mut rng, qs),
                random(&mut rng, ks),
                random(&mut rng, ks),
            ];
            same_gradients(
                "attention",
                &inputs,
                random(&mut rng, qs),
                |t| attention(t[0].clone(), t[1].clone(), t[2].clone(), &mask),
                |t| {
                    wrap(
                        composed::attention::<A>(
                            unwrap(t[0].clone()),
                            unwrap(t[1].clone()),
                            unwrap(t[2].clone()),
                            &mask,
                        )
                        .0,
                    )
                },
            );
        }

        let (cos, sin) = (
            random::<A, 2>(&mut rng, [5, 4]),
            random::<A, 2>(&mut rng, [5, 4]),
        );
        same_gradients(
            "rope",
            &[random(&mut rng, [2, 5, 3, 8])],
            random(&mut rng, [2, 5, 3, 8]),
            |t| rope(t[0].clone(), &cos, &sin),
            |t| {
                wrap(composed::rope::<A>(
                    unwrap(t[0].clone()),
                    unwrap(cos.clone()),
                    unwrap(sin.clone()),
                ))
            },
        );

        // RMSNorm's weight is 1-D and its input 2-D: probe each separately
        // by broadcasting the weight into a matrix.
        let x = random::<Flex, 2>(&mut rng, [150, 24]);
        let w = random::<Flex, 2>(&mut rng, [1, 24]);
        let norm = |t: &[Tensor<A, 2>], composed_path: bool| {
            let w = t[1].clone().reshape([24]);
            if composed_path {
                wrap(composed::rms_norm::<A>(
                    unwrap(t[0].clone()),
                    unwrap(w),
                    1e-5,
                ))
            } else {
                wrap(A::rms_norm(unwrap(t[0].clone()), unwrap(w), 1e-5))
            }
        };
        same_gradients(
            "rms_norm",
            &[x, w],
            random(&mut rng, [150, 24]),
            |t| norm(t, false),
            |t| norm(t, true),
        );

        // Dense: the weight a transposed view, the bias 1-D (probed as a row).
        let inputs = [
            random::<Flex, 2>(&mut rng, [70, 24]),
            random::<Flex, 2>(&mut rng, [40, 24]).transpose(),
            random::<Flex, 2>(&mut rng, [1, 40]),
        ];
        let dense_with = |t: &[Tensor<A, 2>], composed_path: bool| {
            let (x, w, b) = (
                unwrap(t[0].clone()),
                unwrap(t[1].clone()),
                unwrap(t[2].clone().reshape([40])),
            );
            if composed_path {
                wrap(composed::dense::<A>(x, w, Some(b)))
            } else {
                wrap(A::dense(x, w, Some(b)))
            }
        };
        same_gradients(
            "dense",
            &inputs,
            random(&mut rng, [70, 40]),
            |t| dense_with(t, false),
            |t| dense_with(t, true),
        );
        let no_bias = |t: &[Tensor<A, 2>], composed_path: bool| {
            let (x, w) = (unwrap(t[0].clone()), unwrap(t[1].clone()));
            if composed_path {
                wrap(composed::dense::<A>(x, w, None))
            } else {
                wrap(A::dense(x, w, None))
            }
        };
        same_gradients(
            "dense without bias",
            &inputs[..2],
            random(&mut rng, [70, 40]),
            |t| no_bias(t, false),
            |t| no_bias(t, true),
        );

        let inputs = [
            random::<Flex, 2>(&mut rng, [300, 70]).mul_scalar(8.0),
            random(&mut rng, [300, 70]),
        ];
        same_gradients(
            "swiglu",
            &inputs,
            random(&mut rng, [300, 70]),
            |t| swiglu(t[0].clone(), t[1].clone()),
            |t| {
                wrap(composed::swiglu::<A>(
                    unwrap(t[0].clone()),
                    unwrap(t[1].clone()),
                ))
            },
        );
    }
}
