//! didact-critic: the critic that learns to say what the teacher would say,
//! without the teacher's privileged information, so that a student can
//! correct itself with no teacher at all.
//!
//! - [`data`]: critique examples from the student's own attempts (wrong and
//!   right), each paired with the teacher's message.
//! - [`head`]: the critic model, the student's frozen trunk with a trainable
//!   copy of its top layers and LM head (or, in `shared` mode, the whole
//!   student fine-tuned on critiques next to its own objective).
//! - [`calibration`]: whether P("Correct.") reads as a probability and
//!   tells right attempts from wrong ones (ECE, Brier score, AUROC).
//! - [`respond`]: critique generation, as a [`didact_student::rollout::Responder`]
//!   that takes the teacher's seat in a dialogue.

pub mod calibration;
pub mod config;
pub mod data;
pub mod head;
pub mod respond;

pub use config::{CriticConfig, CriticMode};
pub use respond::Critic;
