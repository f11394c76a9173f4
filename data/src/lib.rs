//! didact-data: task domains with verifiers and programmatic teachers, the
//! leak check, the dialogue format, the tables every stage hands on, and the
//! tokenizer. Knows nothing of models or training.

pub mod atomic;
pub mod chat;
pub mod dataset;
pub mod dialogue;
pub mod domain;
pub mod error;
pub mod import;
pub mod leak;
pub mod revision;
pub mod rng;
pub mod shard;
pub mod subset;
pub mod tables;
pub mod teaching;
pub mod tokenizer;

pub use dialogue::{Dialogue, Role, Turn};
pub use domain::{Domain, DomainKind, FeedbackLevel, Task, Verdict};
pub use error::{DataError, Result};
pub use tables::{Split, TaskRow};
pub use tokenizer::{HfTokenizer, Tokenizer};
