//! Row loops of the CPU kernels, written as plain slice arithmetic that the
//! compiler vectorises, and compiled three times: for AVX-512, for AVX2 +
//! FMA, and for the baseline target. Each public function picks the widest
//! version the CPU supports at run time, so one binary runs everywhere and
//! still uses the wide registers where they exist. The exponential is a
//! branch-free polynomial (the C library's `expf` is scalar and was a tenth
//! of a training step in a profile).

/// Defines `pub fn $name` that runs `$imp` compiled for the best instruction
/// set available.
use std::mem::MaybeUninit;

macro_rules! dispatch {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `narrow` is compiled for.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

/// `e^x` to within about 2e-7 relative error, and exactly 0 below -87
/// (where `e^x` is under the smallest normal `f32`, and where masked scores
/// sit). Range reduction `x = n·ln2 + r` with `|r| ≤ ln2/2`, then a degree-7
/// Taylor polynomial for `e^r` and `2^n` built from its bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n·LN2_HI` is exact for the `n` in range.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2^23: adding it rounds to the nearest integer, which then sits in
    // the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // `t`'s bits are 0x4B40_0000 + n; the exponent field of 2^n is n + 127.
    let two_n = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    if x < -87.0 { 0.0 } else { p * two_n }
}

#[inline(always)]
fn max_of(row: &[f32]) -> f32 {
    // Eight running maxima so the loop vectorises (a single `fold` is a
    // serial dependency chain).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = l.max(x);
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for l in lanes {
        m = m.max(l);
    }
    m
}

#[inline(always)]
fn sum(row: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    chunks.remainder().iter().sum::<f32>() + lanes.iter().sum::<f32>()
}

/// `Σ a·b·c` in separate lanes (see [`max_of`]).
#[inline(always)]
fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (mut ca, mut cb, mut cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    for ((x, y), z) in (&mut ca).zip(&mut cb).zip(&mut cc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i] * z[i];
        }
    }
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder())
        .map(|((x, y), z)| x * y * z)
        .sum();
    rest + lanes.iter().sum::<f32>()
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for l in lanes {
        s += l;
    }
    s
}

#[inline(always)]
fn softmax_row_impl(row: &mut [f32], visible: usize, key_valid: Option<&[bool]>) {
    let (seen, hidden) = row.split_at_mut(visible);
    hidden.fill(0.0);
    if let Some(valid) = key_valid {
        for (s, &ok) in seen.iter_mut().zip(valid) {
            if !ok {
                *s = f32::NEG_INFINITY;
            }
        }
    }
    let max = max_of(seen);
    if max == f32::NEG_INFINITY {
        // Every key is masked (a padding query): attend to nothing.
        seen.fill(0.0);
        return;
    }
    // Exponentials, then their sum in separate lanes: a running scalar sum
    // in the same loop would keep it from vectorising.
    for s in seen.iter_mut() {
        *s = exp(*s - max);
    }
    let inv = 1.0 / sum(seen);
    for s in seen.iter_mut() {
        *s *= inv;
    }
}

dispatch! {
    /// Softmax of `row[..visible]` in place; `row[visible..]` (future keys)
    /// and keys that `key_valid` marks false become exactly 0. A row with no
    /// visible key becomes all zeros.
    pub fn softmax_row(row: &mut [f32], visible: usize, key_valid: Option<&[bool]>) => softmax_row_impl
}

#[inline(always)]
fn softmax_backward_row_impl(probs: &[f32], grad: &mut [f32], scale: f32) {
    let d = dot(probs, grad);
    for (g, &p) in grad.iter_mut().zip(probs) {
        *g = p * (*g - d) * scale;
    }
}

dispatch! {
    /// Gradient of softmax in place: `grad ← scale · p ⊙ (grad − ⟨p, grad⟩)`.
    pub fn softmax_backward_row(probs: &[f32], grad: &mut [f32], scale: f32) => softmax_backward_row_impl
}

#[inline(always)]
fn rms_norm_rows_impl(x: &[f32], weight: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    let d = weight.len();
    for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let r = 1.0 / (dot(xr, xr) / d as f32 + eps).sqrt();
        for ((y, &v), &w) in yr.iter_mut().zip(xr).zip(weight) {
            y.write(v * r * w);
        }
    }
}

dispatch! {
    /// `out = x / sqrt(mean(x²) + eps) · weight` for each row of `x`.
    pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) => rms_norm_rows_impl
}

#[inline(always)]
fn rms_norm_backward_rows_impl(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    grad: &[f32],
    dx: &mut [MaybeUninit<f32>],
    dweight: &mut [f32],
) {
    let d = weight.len();
    let inv_d = 1.0 / d as f32;
    for ((xr, gr), dxr) in x
        .chunks_exact(d)
        .zip(grad.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let r = 1.0 / (dot(xr, xr) * inv_d + eps).sqrt();
        // c = mean(dy·w·x̂) with x̂ = x·r.
        let c = dot3(gr, weight, xr) * r * inv_d;
        for ((((o, &g), &w), &v), dw) in dxr
            .iter_mut()
            .zip(gr)
            .zip(weight)
            .zip(xr)
            .zip(dweight.iter_mut())
        {
            let xn = v * r;
            o.write(r * (g * w - xn * c));
            *dw += g * xn;
        }
    }
}

dispatch! {
    /// Gradients of [`rms_norm_rows`]: writes `dx` and adds into `dweight`.
    pub fn rms_norm_backward_rows(x: &[f32], weight: &[f32], eps: f32, grad: &[f32], dx: &mut [MaybeUninit<f32>], dweight: &mut [f32]) => rms_norm_backward_rows_impl
}

#[inline(always)]
fn swiglu_impl(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        o.write(g / (1.0 + exp(-g)) * u);
    }
}

dispatch! {
    /// `out = silu(gate) · up`.
    pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) => swiglu_impl
}

#[inline(always)]
fn swiglu_backward_impl(
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
    dgate: &mut [MaybeUninit<f32>],
    dup: &mut [MaybeUninit<f32>],
) {
    for ((((dg, du), &g), &u), &dy) in dgate
        .iter_mut()
        .zip(dup.iter_mut())
        .zip(gate)
        .zip(up)
        .zip(grad)
    {
        let s = 1.0 / (1.0 + exp(-g));
        let silu = g * s;
        du.write(dy * silu);
        dg.write(dy * u * (s + silu * (1.0 - s)));
    }
}

dispatch! {
    /// Gradients of [`swiglu`] with respect to `gate` and `up`.
    pub fn swiglu_backward(gate: &[f32], up: &[f32], grad: &[f32], dgate: &mut [MaybeUninit<f32>], dup: &mut [MaybeUninit<f32>]) => swiglu_backward_impl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_c_library_across_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.001_3;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn softmax_rows_hide_future_and_invalid_keys_exactly() {
        let mut row = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        softmax_row(&mut row, 3, Some(&[true, false, true, true, true]));
        let z = 1f32.exp() + 3f32.exp();
        assert!((row[0] - 1f32.exp() / z).abs() < 1e-6);
        assert!((row[2] - 3f32.exp() / z).abs() < 1e-6);
        assert_eq!((row[1], row[3], row[4]), (0.0, 0.0, 0.0));
        let mut none = vec![1.0, 2.0];
        softmax_row(&mut none, 1, Some(&[false, true]));
        assert_eq!(none, vec![0.0, 0.0]);
    }
}
