//! Errors of the data crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, reading or writing didact's data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("task {task_id}: corrupt metadata: {reason}")]
    CorruptTask { task_id: String, reason: String },
    #[error("unknown domain `{0}` (expected one of: arith, listops, sudoku, maze, numeric, exact)")]
    UnknownDomain(String),
    #[error(
        "unknown feedback level `{0}` (expected one of: verdict, location, explanation, mask, retry)"
    )]
    UnknownFeedbackLevel(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable parquet file: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Schema { path: PathBuf, reason: String },
    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("dialogue: {0}")]
    Dialogue(String),
    #[error("{0}")]
    Generation(String),
    /// A dataset that `didact data import` cannot read: `at` says where
    /// (`:3` for line 3 of a JSONL file, `: row 3` in a parquet file, or
    /// nothing when it is about the whole file).
    #[error("{path}{at}: {reason}")]
    Import {
        path: PathBuf,
        at: String,
        reason: String,
    },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
