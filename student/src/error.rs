//! Errors of the student crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StudentError {
    #[error("model config: {0}")]
    Config(String),
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] didact_data::DataError),
    #[error("training: {0}")]
    Training(String),
    #[error("teacher: {0}")]
    Teacher(String),
}

pub type Result<T, E = StudentError> = std::result::Result<T, E>;
