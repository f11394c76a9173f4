//! didact-student: the Llama-style student model on burn 0.21, its Hugging
//! Face checkpoints, and batched KV-cache generation.

pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod grads;
pub mod grpo;
pub mod kernels;
pub mod model;
pub mod parallel;
pub mod resume;
pub mod rollout;
pub mod sft;
pub mod teachers;
pub mod trainer;

pub use config::{LlamaConfig, ModelConfig, ModelSource};
pub use error::{Result, StudentError};
pub use model::{KvCache, Llama};
