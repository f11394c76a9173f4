//! The GGUF container (llama.cpp's model file, versions 2 and 3): header,
//! metadata key/values and tensor directory, read from bytes that are not
//! trusted. Every length and offset is checked against the buffer before
//! it is used, so a truncated or hostile file is an error, never a panic
//! or a huge allocation.

use std::collections::BTreeMap;

use super::quant::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value. Arrays keep their element type implicitly: every
/// element is one variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any unsigned or non-negative signed integer, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Where one tensor's data lies. `dims` are GGUF's, fastest-varying first
/// (the reverse of a row-major shape).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The row-major shape (`[rows, cols]` for a matrix).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

/// A parsed GGUF file: metadata, tensor directory, and the bytes the
/// tensors' offsets point into.
#[derive(Debug)]
pub struct GgufFile<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: &'a [u8],
}

/// Why a GGUF file could not be read, without the file name (the caller
/// adds it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("not a GGUF file (the first bytes are not `GGUF`)")]
    Magic,
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("the file ends inside {0}")]
    Truncated(String),
    #[error("{0}")]
    Invalid(String),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| FormatError::Truncated(what.to_string()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items that each take at least `min_item_bytes`: larger
    /// than what is left of the file means a corrupt count, caught before
    /// anything is allocated for it.
    fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize, FormatError> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(FormatError::Invalid(format!(
                "{what}: count {n} exceeds what is left of the file"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let n = self.count(1, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| FormatError::Invalid(format!("{what}: not UTF-8")))
    }

    fn value(&mut self, kind: u32, key: &str, depth: u32) -> Result<Value, FormatError> {
        let v = match kind {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(FormatError::Invalid(format!("{key}: bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth > 0 {
                    return Err(FormatError::Invalid(format!("{key}: nested arrays")));
                }
                let elem = self.u32(key)?;
                let n = self.count(1, key)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(FormatError::Invalid(format!(
                    "{key}: unknown value type {other}"
                )));
            }
        };
        Ok(v)
    }
}

impl<'a> GgufFile<'a> {
    /// Parses the header, metadata and tensor directory of `bytes` and
    /// checks that every tensor's data lies inside them.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut c = Cursor { bytes, pos: 0 };
        if c.take(4, "the magic").map_err(|_| FormatError::Magic)? != MAGIC {
            return Err(FormatError::Magic);
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(FormatError::Version(version));
        }
        let n_tensors = c.count(24, "the tensor count")?;
        let n_kv = c.count(12, "the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let kind = c.u32(&key)?;
            let value = c.value(kind, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(FormatError::Invalid(format!(
                    "tensor {name}: {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64(&name))
                .collect::<Result<Vec<_>, _>>()?;
            let code = c.u32(&name)?;
            let ggml_type = GgmlType::from_code(code).ok_or_else(|| {
                FormatError::Invalid(format!(
                    "tensor {name}: ggml type {code} is not supported \
                     (F32, F16, BF16, Q4_0, Q4_1 and Q8_0 are)"
                ))
            })?;
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| {
                    FormatError::Invalid(format!("general.alignment {v:?} is not a power of two"))
                })?,
        };
        let start = (c.pos as u64).div_ceil(alignment) * alignment;
        let data = bytes.get(start as usize..).unwrap_or(&[]);
        let file = Self {
            version,
            metadata,
            tensors,
            data,
        };
        for t in &file.tensors {
            file.tensor_bytes(t)?;
        }
        Ok(file)
    }

    /// The stored bytes of `t` (quantized blocks or plain values).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&'a [u8], FormatError> {
        let elements = t
            .elements()
            .ok_or_else(|| FormatError::Invalid(format!("tensor {}: size overflows", t.name)))?;
        let block = t.ggml_type.block_len() as u64;
        if !t.dims[0].is_multiple_of(block) {
            return Err(FormatError::Invalid(format!(
                "tensor {}: row length {} is not a multiple of the {:?} block ({block})",
                t.name, t.dims[0], t.ggml_type
            )));
        }
        let len = elements / block * t.ggml_type.block_bytes() as u64;
        let end = t
            .offset
            .checked_add(len)
            .filter(|&e| e <= self.data.len() as u64);
        match end {
            Some(end) => Ok(&self.data[t.offset as usize..end as usize]),
            None => Err(FormatError::Truncated(format!("tensor {}'s data", t.name))),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}
