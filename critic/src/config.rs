//! The critic stage's settings.

use didact_data::FeedbackLevel;
use didact_student::sft::TrainConfig;
use serde::{Deserialize, Serialize};

/// How the critic is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CriticMode {
    /// A head on the frozen student trunk: copies of the top `head_layers`
    /// layers, the final norm and the LM head are trained; the rest is the
    /// student's and stays fixed.
    Head,
    /// The whole student LM fine-tuned on critique tokens next to its
    /// student objective (the paper's world-modelling variant).
    Shared,
    /// The student itself (`"self"`): it learns the teacher's turns (the
    /// critiques at `feedback_level`, and "Correct." after a right answer)
    /// as a second next-token objective in pretraining, and at evaluation
    /// the same weights answer as student and as critic. The critic stage
    /// trains nothing (`head_layers` and `train` are unused); it calibrates
    /// the verdict on the RL²F student. The default.
    #[serde(rename = "self")]
    Student,
}

/// How the threshold on P("Correct.") is chosen, per domain, from held-out
/// attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictRule {
    /// The largest threshold that still calls `min_recall` of the correct
    /// attempts correct.
    #[default]
    Recall,
    /// The threshold that maximises the expected accuracy change of the
    /// self-correction loop: a wrong attempt called wrong is fixed at the
    /// rate the student fixes its attempts after the teacher's feedback
    /// (measured on the critic's own training dialogues), a correct one
    /// called wrong is lost. Where the critic cannot tell right from wrong
    /// well enough to pay, it calls nothing wrong and the loop stops.
    Utility,
}

/// Which held-out attempts the verdict threshold is calibrated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrateOn {
    /// First attempts alone. The loop's first verdict decides the most, and
    /// first attempts are right about as often as at evaluation's first
    /// turn; later held-out attempts are nearly all wrong, and pooled with
    /// them a threshold that pays on the calibration set calls right first
    /// attempts wrong at evaluation (issue 17).
    #[default]
    First,
    /// Every held-out attempt, whatever its turn.
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriticConfig {
    pub mode: CriticMode,
    /// Top layers of the student copied into the head (`head` mode).
    pub head_layers: usize,
    /// Train tasks whose dialogues with the student make the data.
    pub tasks: usize,
    /// Dialogues per task.
    pub dialogues_per_task: usize,
    /// Student attempts per dialogue.
    pub max_turns: usize,
    /// Sampling temperature of the student's attempts.
    pub temperature: f32,
    /// The teacher whose critiques the critic learns.
    pub feedback_level: FeedbackLevel,
    /// Token budget of one student attempt.
    pub max_new_tokens: usize,
    /// Token budget of one critique.
    pub critique_tokens: usize,
    /// Extra copies of each dialogue in which the student was right at
    /// some turn: correct attempts are rare, and a critic that never says
    /// "Correct." talks the student out of its right answers.
    pub correct_copies: usize,
    /// In `self` mode, the weight of the critique loss in RL²F: the
    /// negative log-likelihood of the teacher's turns of the rollouts (at
    /// `student.feedback_level`, and "Correct." after a right last attempt),
    /// per teacher token, beside the policy loss. 0.3 cost RL²F 8 points of
    /// first-attempt accuracy on configs/default.toml; 0.05 nothing
    /// measurable (README, issue 17).
    pub self_weight: f64,
    /// How the verdict threshold is calibrated.
    pub verdict: VerdictRule,
    /// Which held-out attempts the threshold is calibrated on.
    pub calibrate_on: CalibrateOn,
    /// With `verdict = "recall"`: the threshold is the largest at which the
    /// critic still calls at least this share of the held-out correct
    /// attempts correct.
    pub min_recall: f64,
    /// Supervised training of the critic.
    pub train: TrainConfig,
}

impl CriticMode {
    /// The name a config uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Shared => "shared",
            Self::Student => "self",
        }
    }
}

impl CriticConfig {
    /// The feedback level whose critiques the student learns in
    /// pretraining, in `self` mode; `None` in the other modes.
    pub fn self_critique(&self) -> Option<FeedbackLevel> {
        (self.mode == CriticMode::Student).then_some(self.feedback_level)
    }
}

impl Default for CriticConfig {
    fn default() -> Self {
        Self {
            mode: CriticMode::Student,
            head_layers: 2,
            tasks: 1000,
            dialogues_per_task: 2,
            max_turns: 4,
            temperature: 1.0,
            feedback_level: FeedbackLevel::Explanation,
            max_new_tokens: 24,
            critique_tokens: 48,
            correct_copies: 3,
            self_weight: 0.05,
            verdict: VerdictRule::Utility,
            calibrate_on: CalibrateOn::First,
            min_recall: 0.9,
            train: TrainConfig {
                steps: 300,
                batch_size: 32,
                lr: 1e-3,
                warmup_steps: 20,
                eval_every: 300,
                checkpoint_every: 100,
                max_seq_len: 256,
                ..TrainConfig::default()
            },
        }
    }
}

impl CriticConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.head_layers == 0 {
            return Err("head_layers: must be positive".into());
        }
        if self.tasks == 0 || self.dialogues_per_task == 0 || self.max_turns == 0 {
            return Err("tasks, dialogues_per_task and max_turns must be positive".into());
        }
        if self.temperature < 0.0 || self.critique_tokens == 0 || self.max_new_tokens == 0 {
            return Err(
                "temperature must be non-negative, critique_tokens and max_new_tokens positive"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_recall) {
            return Err(format!("min_recall: {} is outside 0..=1", self.min_recall));
        }
        if !(self.self_weight >= 0.0 && self.self_weight.is_finite()) {
            return Err(format!(
                "self_weight: {} must be a non-negative number",
                self.self_weight
            ));
        }
        self.train.validate().map_err(|e| format!("train: {e}"))
    }
}
