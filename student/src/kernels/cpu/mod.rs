//! The kernels on burn's CPU backend (Flex), for `f32` tensors (other dtypes
//! take the composed path). Work is split over rayon's pool (the one Flex
//! uses): attention by (batch, key/value head), the rest by rows. The small
//! per-head matrix products go through the `gemm` crate (Flex's own GEMM)
//! with explicit strides, so queries, keys and values are read where the
//! projections wrote them instead of being transposed into copies first.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

mod attention;

use super::{Kernels, KeyMask, composed, simd};
use attention::{Dims, KeyValues, attention_backward, attention_forward};

/// Rows per parallel task in the row-wise kernels: enough work per task to
/// amortise scheduling, enough tasks to balance the cores.
const ROWS_PER_TASK: usize = 64;

/// Elements per parallel task in the element-wise kernels.
const ELEMS_PER_TASK: usize = 16 * 1024;

/// A raw pointer that tasks writing disjoint parts of one buffer share.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every task writes a region no other task touches (see callers).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer. A method rather than the field, so that closures
    /// capture the whole (`Sync`) struct, not the raw pointer inside it.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Panics, naming the kernel and the shapes of `tensors`, unless `fits`.
/// The kernels index raw buffers by these shapes, so a mismatch has to stop
/// here rather than read or write out of bounds.
fn check(kernel: &str, fits: bool, tensors: &[&FlexTensor]) {
    if !fits {
        let shapes: Vec<Vec<usize>> = tensors.iter().map(|t| shape(t).to_vec()).collect();
        panic!("{kernel}: input shapes {shapes:?} do not fit together");
    }
}

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn shape(t: &FlexTensor) -> Shape {
    t.layout().shape().clone()
}

/// `dst (+)= scale · lhs · rhs` for row-major `dst` (`m × n`, row stride
/// `dst_rs`), with `lhs` (`m × k`) and `rhs` (`k × n`) given by their row
/// and column strides in elements.
///
/// # Safety
/// Every pointer must address its whole matrix under the given strides.
unsafe fn matmul(
    dims: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    scale: f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm_with(
            dims,
            (dst, dst_rs, accumulate),
            lhs,
            rhs,
            scale,
            Parallelism::None,
        )
    }
}

/// [`matmul`] with the GEMM's own threading chosen by the caller.
///
/// # Safety
/// As for [`matmul`].
unsafe fn gemm_with(
    [m, n, k]: [usize; 3],
    (dst, dst_rs, accumulate): (*mut f32, usize, bool),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    scale: f32,
    threads: Parallelism,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            threads,
        )
    }
}

/// A vector of `len` elements, all written by `fill` into its uninitialised
/// buffer, and what `fill` returns. Outputs are written whole by every
/// kernel, and zero-filling them first cost a tenth of a training step
/// (freed memory is kept in the heap, see `alloc.rs`, so fresh buffers are
/// not pre-zeroed pages).
///
/// # Safety
/// `fill` must initialise every one of the `len` elements.
unsafe fn filled<R>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>]) -> R) -> (Vec<f32>, R) {
    let mut v = Vec::with_capacity(len);
    let r = fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `fill` initialised `len` elements.
    unsafe { v.set_len(len) };
    (v, r)
}

/// `s` as initialised.
///
/// # Safety
/// Every element of `s` must have been written.
unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller guarantees
    // that every element is initialised.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The element-wise sum of per-block partial sums, added in block order.
/// Rayon's `reduce` combines partials in a tree whose shape depends on
/// work stealing, so float sums (and the trained weights) differed from
/// one run to the next; collecting the partials and adding them in order
/// makes every run of a seed give the same bits.
fn sum_in_order(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut sum = vec![0f32; len];
    for p in partials {
        sum.iter_mut().zip(p).for_each(|(s, x)| *s += x);
    }
    sum
}

/// The GEMM's own threading for products large enough to split (the
/// threshold Flex uses), none below it.
fn threads_for([m, n, k]: [usize; 3]) -> Parallelism {
    if m * n * k >= 192 * 192 * 192 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// `[m, n, k]` product as in [`matmul`], split over the GEMM's threads
/// where large, for the dense layers.
///
/// # Safety
/// As for [`matmul`].
unsafe fn matmul_threaded(
    dims: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm_with(
            dims,
            (dst, dst_rs, accumulate),
            lhs,
            rhs,
            1.0,
            threads_for(dims),
        )
    }
}

/// A 2-D `f32` tensor read in place through its strides, so that a weight
/// that is a view (a transposed one, say) is not copied into contiguous
/// memory at every call: with weights loaded as transposed views, that copy
/// was half of generation's time.
struct Matrix {
    tensor: FlexTensor,
    /// Element offset of `[0, 0]`, and the row and column strides.
    offset: usize,
    strides: (usize, usize),
}

impl Matrix {
    fn new(t: &FlexTensor) -> Self {
        let layout = t.layout();
        match layout.as_2d_strides() {
            Some((_, _, rs, cs)) if rs >= 0 && cs >= 0 => Self {
                tensor: t.clone(),
                offset: layout.start_offset(),
                strides: (rs as usize, cs as usize),
            },
            _ => {
                let tensor = t.to_contiguous();
                let cols = tensor.layout().shape()[tensor.layout().num_dims() - 1];
                Self {
                    tensor,
                    offset: 0,
                    strides: (cols, 1),
                }
            }
        }
    }

    fn dims(&self) -> [usize; 2] {
        shape(&self.tensor).dims()
    }

    /// `(pointer, row stride, column stride)` of the matrix.
    fn operand(&self) -> (*const f32, usize, usize) {
        let storage = self.tensor.storage::<f32>();
        (
            storage[self.offset..].as_ptr(),
            self.strides.0,
            self.strides.1,
        )
    }

    /// The same for its transpose.
    fn transposed(&self) -> (*const f32, usize, usize) {
        let (ptr, rs, cs) = self.operand();
        (ptr, cs, rs)
    }
}

impl Kernels for Flex {
    fn write_positions(mut cache: FlexTensor, start: usize, new: FlexTensor) -> FlexTensor {
        let [b, capacity, kv, hd] = shape(&cache).dims();
        let t = shape(&new).dims::<4>()[1];
        check(
            "write_positions",
            shape(&new).as_slice() == [b, t, kv, hd],
            &[&cache, &new],
        );
        let in_place = is_f32(&[&cache, &new])
            && cache.is_contiguous()
            && cache.layout().start_offset() == 0
            && start + t <= capacity;
        if !in_place {
            return composed::write_positions::<Self>(cache, start, new);
        }
        let new = new.to_contiguous();
        let src = values(&new);
        let row = kv * hd;
        match cache.try_storage_mut::<f32>() {
            Some(dst) => {
                for bi in 0..b {
                    let to = (bi * capacity + start) * row;
                    dst[to..to + t * row].copy_from_slice(&src[bi * t * row..(bi + 1) * t * row]);
                }
                cache
            }
            // Shared with a view still alive: copy, as a functional update.
            None => composed::write_positions::<Self>(cache, start, new),
        }
    }

    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, mask: &KeyMask) -> FlexTensor {
        if !is_f32(&[&q, &k, &v]) {
            return composed::attention::<Self>(q, k, v, mask).0;
        }
        let q = q.to_contiguous();
        // Keys and values read in place share one batch stride; otherwise
        // (never from the model's cache) both are read as contiguous copies.
        let (keys, vals) = match (KeyValues::new(&k), KeyValues::new(&v)) {
            (keys, vals) if keys.batch_stride == vals.batch_stride => (keys, vals),
            _ => (
                KeyValues::new(&k.to_contiguous()),
                KeyValues::new(&v.to_contiguous()),
            ),
        };
        let d = Dims::of(&q, &k, &v).with_kv_batch_stride(keys.batch_stride);
        let (out, _) = attention_forward(values(&q), keys.values(), vals.values(), d, mask, false);
        tensor(out, shape(&q))
    }

    fn dense(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
        if !is_f32(&[&x, &weight]) || bias.as_ref().is_some_and(|b| !is_f32(&[b])) {
            return composed::dense::<Self>(x, weight, bias);
        }
        let (x, weight) = (x.to_contiguous(), Matrix::new(&weight));
        let [d_in, d_out] = weight.dims();
        check(
            "dense",
            shape(&x).last() == Some(&d_in)
                && bias.as_ref().is_none_or(|b| shape(b).as_slice() == [d_out]),
            &[&x, &weight.tensor],
        );
        let xs = values(&x);
        let rows = xs.len() / d_in;
        let lhs = (xs.as_ptr(), d_in, 1);
        let rhs = weight.operand();
        let out = match bias {
            Some(bias) => {
                let bias = bias.to_contiguous();
                let mut out = values(&bias).repeat(rows);
                // SAFETY: `out` is rows × d_out; x and w match their strides.
                unsafe {
                    matmul_threaded([rows, d_out, d_in], out.as_mut_ptr(), d_out, true, lhs, rhs)
                };
                out
            }
            // SAFETY: the product writes all rows × d_out elements.
            None => unsafe {
                filled(rows * d_out, |out| {
                    matmul_threaded(
                        [rows, d_out, d_in],
                        out.as_mut_ptr().cast(),
                        d_out,
                        false,
                        lhs,
                        rhs,
                    )
                })
                .0
            },
        };
        let mut out_shape = shape(&x);
        let last = out_shape.len() - 1;
        out_shape[last] = d_out;
        tensor(out, out_shape)
    }

    fn dense_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        with_bias: bool,
    ) -> (FlexTensor, FlexTensor, Option<FlexTensor>) {
        if !is_f32(&[&x, &weight, &grad]) {
            return composed::dense_backward::<Self>(x, weight, grad, with_bias);
        }
        let (x, w, grad) = (
            x.to_contiguous(),
            Matrix::new(&weight),
            grad.to_contiguous(),
        );
        let [d_in, d_out] = w.dims();
        check(
            "dense_backward",
            shape(&x).last() == Some(&d_in)
                && shape(&grad).as_slice()
                    == [&shape(&x)[..shape(&x).len() - 1], &[d_out]].concat(),
            &[&x, &weight, &grad],
        );
        let (xs, gs) = (values(&x), values(&grad));
        let rows = xs.len() / d_in;
        // SAFETY (both): each product writes its whole output; the operands
        // are read under their own (possibly transposed) strides.
        // dx = grad · wᵀ
        let (dx, ()) = unsafe {
            filled(rows * d_in, |dx| {
                matmul_threaded(
                    [rows, d_in, d_out],
                    dx.as_mut_ptr().cast(),
                    d_in,
                    false,
                    (gs.as_ptr(), d_out, 1),
                    w.transposed(),
                )
            })
        };
        // dw = xᵀ · grad
        let (dw, ()) = unsafe {
            filled(d_in * d_out, |dw| {
                matmul_threaded(
                    [d_in, d_out, rows],
                    dw.as_mut_ptr().cast(),
                    d_out,
                    false,
                    (xs.as_ptr(), 1, d_in),
                    (gs.as_ptr(), d_out, 1),
                )
            })
        };
        let dbias = with_bias.then(|| {
            let sums = gs
                .par_chunks(ROWS_PER_TASK * d_out)
                .map(|block| {
                    let mut sum = vec![0f32; d_out];
                    for row in block.chunks_exact(d_out) {
                        sum.iter_mut().zip(row).for_each(|(s, g)| *s += g);
                    }
                    sum
                })
                .collect::<Vec<_>>();
            tensor(sum_in_order(&sums, d_out), Shape::new([d_out]))
        });
        (
            tensor(dx, shape(&x)),
            tensor(dw, Shape::new([d_in, d_out])),
            dbias,
        )
    }

    fn attention_for_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: &KeyMask,
    ) -> (FlexTensor, FlexTensor) {
        if !is_f32(&[&q, &k, &v]) {
            return composed::attention::<Self>(q, k, v, mask);
        }
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let d = Dims::of(&q, &k, &v);
        let (out, probs) = attention_forward(values(&q), values(&k), values(&v), d, mask, true);
        let probs = probs.expect("kept when asked");
        (
            tensor(out, shape(&q)),
            tensor(probs, Shape::new([d.batch, d.heads, d.q_len, d.k_len])),
        )
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probs: FlexTensor,
        grad: FlexTensor,
    ) -> [FlexTensor; 3] {
        if !is_f32(&[&q, &k, &v, &probs, &grad]) {
            return composed::attention_backward::<Self>(q, k, v, probs, grad);
        }
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let (probs, grad) = (probs.to_contiguous(), grad.to_contiguous());
        let d = Dims::of(&q, &k, &v);
        check(
            "attention_backward",
            shape(&grad) == shape(&q)
                && shape(&probs).num_elements() == d.batch * d.heads * d.q_len * d.k_len,
            &[&q, &probs, &grad],
        );
        let [dq, dk, dv] = attention_backward(
            values(&q),
            values(&k),
            values(&v),
            values(&probs),
            values(&grad),
            d,
        );
        [
            tensor(dq, shape(&q)),
            tensor(dk, shape(&k)),
            tensor(dv, shape(&v)),
        ]
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        if !is_f32(&[&x, &cos, &sin]) {
            return composed::rope::<Self>(x, cos, sin);
        }
        let (x, cos, sin) = (x.to_contiguous(), cos.to_contiguous(), sin.to_contiguous());
        check(
            "rope",
            shape(&x).len() == 4
                && shape(&x)[3].is_multiple_of(2)
                && shape(&cos).as_slice() == [shape(&x)[1], shape(&x)[3] / 2]
                && shape(&sin) == shape(&cos),
            &[&x, &cos, &sin],
        );
        let [_, t, n, hd] = shape(&x).dims();
        let half = hd / 2;
        let (xs, cos_v, sin_v) = (values(&x), values(&cos), values(&sin));
        // SAFETY: every row writes both halves of each of its heads.
        let (out, ()) = unsafe {
            filled(xs.len(), |out| {
                out.par_chunks_mut(n * hd)
                    .zip(xs.par_chunks(n * hd))
                    .enumerate()
                    .with_min_len(ROWS_PER_TASK)
                    .for_each(|(row, (o, x))| {
                        let pos = row % t;
                        let (c, s) = (&cos_v[pos * half..][..half], &sin_v[pos * half..][..half]);
                        for (oh, xh) in o.chunks_exact_mut(hd).zip(x.chunks_exact(hd)) {
                            let (x1, x2) = xh.split_at(half);
                            let (o1, o2) = oh.split_at_mut(half);
                            for i in 0..half {
                                o1[i].write(x1[i] * c[i] - x2[i] * s[i]);
                                o2[i].write(x2[i] * c[i] + x1[i] * s[i]);
                            }
                        }
                    })
            })
        };
        tensor(out, shape(&x))
    }

    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        if !is_f32(&[&x, &weight]) {
            return composed::rms_norm::<Self>(x, weight, eps);
        }
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        check(
            "rms_norm",
            shape(&weight).len() == 1 && shape(&x).last() == Some(&shape(&weight)[0]),
            &[&x, &weight],
        );
        let (xs, w) = (values(&x), values(&weight));
        let block = ROWS_PER_TASK * w.len();
        // SAFETY: `rms_norm_rows` writes every element of its rows.
        let (out, ()) = unsafe {
            filled(xs.len(), |out| {
                out.par_chunks_mut(block)
                    .zip(xs.par_chunks(block))
                    .for_each(|(o, x)| simd::rms_norm_rows(x, w, eps as f32, o))
            })
        };
        tensor(out, shape(&x))
    }

    fn rms_norm_backward(
        x: FlexTensor,
        weight: FlexTensor,
        eps: f64,
        grad: FlexTensor,
    ) -> [FlexTensor; 2] {
        if !is_f32(&[&x, &weight, &grad]) {
            return composed::rms_norm_backward::<Self>(x, weight, eps, grad);
        }
        let (x, weight, grad) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            grad.to_contiguous(),
        );
        check(
            "rms_norm_backward",
            shape(&weight).len() == 1
                && shape(&x).last() == Some(&shape(&weight)[0])
                && shape(&grad) == shape(&x),
            &[&x, &weight, &grad],
        );
        let (xs, w, gs) = (values(&x), values(&weight), values(&grad));
        let block = ROWS_PER_TASK * w.len();
        // SAFETY: `rms_norm_backward_rows` writes every element of its rows.
        let (dx, dw) = unsafe {
            filled(xs.len(), |dx| {
                dx.par_chunks_mut(block)
                    .zip(xs.par_chunks(block))
                    .zip(gs.par_chunks(block))
                    .map(|((dx, x), g)| {
                        let mut dw = vec![0f32; w.len()];
                        simd::rms_norm_backward_rows(x, w, eps as f32, g, dx, &mut dw);
                        dw
                    })
                    .collect::<Vec<_>>()
            })
        };
        let dw = sum_in_order(&dw, w.len());
        [tensor(dx, shape(&x)), tensor(dw, shape(&weight))]
    }

    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        if !is_f32(&[&gate, &up]) {
            return composed::swiglu::<Self>(gate, up);
        }
        let (gate, up) = (gate.to_contiguous(), up.to_contiguous());
        check("swiglu", shape(&gate) == shape(&up), &[&gate, &up]);
        let (g, u) = (values(&gate), values(&up));
        // SAFETY: `swiglu` writes every element of its chunk.
        let (out, ()) = unsafe {
            filled(g.len(), |out| {
                out.par_chunks_mut(ELEMS_PER_TASK)
                    .zip(g.par_chunks(ELEMS_PER_TASK))
                    .zip(u.par_chunks(ELEMS_PER_TASK))
                    .for_each(|((o, g), u)| simd::swiglu(g, u, o))
            })
        };
        tensor(out, shape(&gate))
    }

    fn swiglu_backward(gate: FlexTensor, up: FlexTensor, grad: FlexTensor) -> [FlexTensor; 2] {
        if !is_f32(&[&gate, &up, &grad]) {
            return composed::swiglu_backward::<Self>(gate, up, grad);
        }
        let (gate, up, grad) = (
            gate.to_contiguous(),
            up.to_contiguous(),
            grad.to_contiguous(),
        );
        check(
            "swiglu_backward",
            shape(&gate) == shape(&up) && shape(&grad) == shape(&gate),
            &[&gate, &up, &grad],
        );
        let (g, u, dy) = (values(&gate), values(&up), values(&grad));
        // SAFETY: `swiglu_backward` writes every element of both chunks.
        let (dg, du) = unsafe {
            filled(g.len(), |dg| {
                filled(g.len(), |du| {
                    dg.par_chunks_mut(ELEMS_PER_TASK)
                        .zip(du.par_chunks_mut(ELEMS_PER_TASK))
                        .zip(g.par_chunks(ELEMS_PER_TASK))
                        .zip(u.par_chunks(ELEMS_PER_TASK))
                        .zip(dy.par_chunks(ELEMS_PER_TASK))
                        .for_each(|((((dg, du), g), u), dy)| {
                            simd::swiglu_backward(g, u, dy, dg, du)
                        })
                })
                .0
            })
        };
        [tensor(dg, shape(&gate)), tensor(du, shape(&up))]
    }
}
