//! The attention mask the kernels share: which keys are padding. Kept
//! apart from the kernel trait so that the composed kernels
//! (`composed.rs`), which the trait's defaults call, need not import the
//! trait's module.

use std::sync::Arc;

/// Which keys are padding, for attention. Attention is always causal: a
/// query at position `offset + i` (where `offset` is the number of keys
/// before the queries, i.e. a KV cache's length) sees keys `j ≤ offset + i`.
#[derive(Clone, Debug, Default)]
pub struct KeyMask {
    /// `batch × keys`, row-major, `false` for a padding key; `None` when
    /// nothing is padding.
    valid: Option<Arc<[bool]>>,
}

impl KeyMask {
    /// No padding.
    pub fn none() -> Self {
        Self { valid: None }
    }

    /// `valid` is `batch × keys`, row-major; `None` means no padding.
    pub fn new(valid: Option<&[bool]>) -> Self {
        Self {
            valid: valid.map(Arc::from),
        }
    }

    /// Whether key `key` of batch row `row` (of `keys` keys) is real.
    pub fn is_valid(&self, row: usize, key: usize, keys: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row * keys + key])
    }

    /// The validity of batch row `row`'s `keys` keys, if any are padding.
    pub fn row(&self, row: usize, keys: usize) -> Option<&[bool]> {
        self.valid
            .as_ref()
            .map(|v| &v[row * keys..(row + 1) * keys])
    }
}
