//! GGML tensor encodings and their dequantization to f32, following
//! ggml's reference `dequantize_row_*`: a block of 32 values shares one
//! f16 scale (and, for Q4_1, one f16 minimum).

use half::{bf16, f16};

/// The tensor encodings the importer reads (ggml's type codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    /// 4-bit, symmetric: `x = (q − 8) · d`.
    Q4_0,
    /// 4-bit with a minimum: `x = q · d + m`.
    Q4_1,
    /// 8-bit, symmetric: `x = q · d`.
    Q8_0,
}

const QK: usize = 32;

impl GgmlType {
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
        }
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 2 + QK / 2,
            Self::Q4_1 => 4 + QK / 2,
            Self::Q8_0 => 2 + QK,
        }
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes `bytes` (whole blocks of `ty`, as [`super::file::GgufFile`]
/// checked) into f32 values.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let block = ty.block_bytes();
    debug_assert_eq!(bytes.len() % block, 0);
    let mut out = Vec::with_capacity(bytes.len() / block * ty.block_len());
    for b in bytes.chunks_exact(block) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(f16_at(b, 0)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q4_0 => {
                let d = f16_at(b, 0);
                let qs = &b[2..];
                out.extend(qs.iter().map(|q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                let qs = &b[4..];
                out.extend(qs.iter().map(|q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
            }
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                out.extend(b[2..].iter().map(|&q| q as i8 as f32 * d));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_puts_low_nibbles_first_and_centres_on_eight() {
        let mut block = f16_bytes(0.5).to_vec();
        // byte j holds value j (low nibble) and value j + 16 (high nibble).
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x = dequantize(GgmlType::Q4_0, &block);
        assert_eq!(x.len(), 32);
        assert_eq!(x[0], -4.0); // (0 − 8) · 0.5
        assert_eq!(x[15], 3.5); // (15 − 8) · 0.5
        assert_eq!(x[16], 3.5); // high nibble of byte 0 is 15
        assert_eq!(x[31], -4.0);
    }

    #[test]
    fn q4_1_adds_the_minimum() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | (j << 4)));
        let x = dequantize(GgmlType::Q4_1, &block);
        assert_eq!(x[0], -1.0);
        assert_eq!(x[4], 0.0);
        assert_eq!(x[15], 2.75);
        assert_eq!(x[16 + 15], 2.75);
    }

    #[test]
    fn q8_0_reads_signed_bytes() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let x = dequantize(GgmlType::Q8_0, &block);
        assert_eq!(x[0], -32.0);
        assert_eq!(x[16], 0.0);
        assert_eq!(x[31], 30.0);
    }

    #[test]
    fn plain_types_round_trip() {
        let v = [1.5f32, -0.125, 3.0];
        let f32s: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32s), v);
        let f16s: Vec<u8> = v.iter().flat_map(|&x| f16_bytes(x)).collect();
        assert_eq!(dequantize(GgmlType::F16, &f16s), v);
        let bf16s: Vec<u8> = v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(dequantize(GgmlType::BF16, &bf16s), v);
    }
}
