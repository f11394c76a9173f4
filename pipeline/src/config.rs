//! Run configuration: one typed struct per stage, read from TOML with
//! `deny_unknown_fields`, with `--set key.path=value` overrides applied
//! before type checking so that a typo in either is caught the same way.

use std::path::{Path, PathBuf};

use didact_critic::CriticConfig;
use didact_data::FeedbackLevel;
use didact_data::dataset::DataConfig;
use didact_student::ModelConfig;
use didact_student::grpo::RlConfig;
use didact_student::sft::TrainConfig;
use didact_student::teachers::{TeacherConfig, TeacherKind};

use didact_data::DomainKind;
use serde::{Deserialize, Serialize};

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The run as a whole: its training seeds.
    pub run: RunConfig,
    /// The `data` stage: task generation, synthetic dialogues, tokenizer.
    pub data: DataConfig,
    /// Size of the student trained from scratch.
    pub model: ModelConfig,
    /// The `pretrain` stage: SFT of the base student on single-turn examples
    /// and the synthetic feedback dialogues.
    pub pretrain: TrainConfig,
    /// The second phase of `pretrain`: the base model's own mistakes on
    /// train tasks, each with the teacher's critique and the answer after it.
    pub own_mistakes: OwnMistakesConfig,
    /// The `student` stage: RL²F, GRPO over whole dialogues with the teacher.
    pub student: RlConfig,
    /// Who teaches during RL²F: the programmatic teacher (default), the
    /// base model itself, or an OpenAI-compatible endpoint.
    pub teacher: TeacherConfig,
    /// The `baseline` stage: single-turn RL and offline SFT on the same
    /// tasks, iterations and samples as `student`.
    pub baseline: BaselineConfig,
    /// The `critic` stage: a critic trained to predict the teacher's
    /// critiques of the RL²F student's attempts.
    pub critic: CriticConfig,
    /// The `eval` stage: every model under every condition on the test tasks.
    pub eval: EvalConfig,
    /// The `transfer` stage: the cross-domain matrix (trained on X,
    /// evaluated on Y).
    pub transfer: TransferConfig,
    /// The `sml` stage: social meta-learning on sharded tasks (off by
    /// default; configs/sml.toml turns it on).
    pub sml: SmlConfig,
}

/// The run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Training seeds. Each runs the seed-dependent stages (pretrain
    /// through sml) into `seed-<s>/` of the run directory, on the shared
    /// tasks and tokenizer, with `s` added to every training seed of the
    /// config (`model.seed`, `pretrain.seed`, `student.seed`,
    /// `critic.train.seed`, `sml.sft.seed`); `analyse` pools them. Empty:
    /// one training seed, everything in the run directory itself. A claim
    /// should hold over several (the papers use 3).
    pub seeds: Vec<u64>,
}

impl RunConfig {
    pub fn validate(&self) -> Result<(), String> {
        let mut sorted = self.seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.seeds.len() {
            return Err(format!("seeds: {:?} names a seed twice", self.seeds));
        }
        Ok(())
    }
}

/// The second phase of `pretrain`. Synthetic dialogues show the error
/// model's mistakes, which are not the student's: after the first phase the
/// base model answers train tasks, and each of its wrong answers, with the
/// teacher's critique (at `data.synthetic.feedback_levels`, in turn) and the
/// answer after it (the domain's repair where `data.synthetic.repair`, else
/// the solution), is trained beside an equal number of first-phase
/// examples, so that the mistakes it learns to revise look like the ones it
/// makes at test time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnMistakesConfig {
    /// Train tasks per domain the base model answers (0: no second phase).
    pub tasks_per_domain: usize,
    /// Answers sampled per task; duplicates and right answers are dropped.
    pub samples: usize,
    /// Sampling temperature of those answers.
    pub temperature: f32,
    /// SFT steps of the second phase (with `pretrain`'s batch size).
    pub steps: usize,
    /// Peak learning rate of the second phase.
    pub lr: f64,
}

impl Default for OwnMistakesConfig {
    fn default() -> Self {
        Self {
            tasks_per_domain: 0,
            samples: 2,
            temperature: 1.0,
            steps: 150,
            lr: 1e-3,
        }
    }
}

impl OwnMistakesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.tasks_per_domain > 0 && (self.samples == 0 || self.steps == 0) {
            return Err("samples and steps must be at least 1 when tasks_per_domain > 0".into());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature: {} must be positive",
                self.temperature
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr: {} must be positive", self.lr));
        }
        Ok(())
    }
}

/// What the baselines do beyond what they share with `student`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Learning rate of offline SFT on the base model's successful dialogues.
    pub offline_lr: f64,
    /// Dialogues per offline-SFT step.
    pub offline_batch_size: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            offline_lr: 5e-4,
            offline_batch_size: 32,
        }
    }
}

/// The evaluation grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Test tasks per domain (0: all of them).
    pub tasks_per_domain: usize,
    /// Student attempts per dialogue (K).
    pub max_turns: usize,
    /// Conditions, from `single` (one attempt), `retry` ("Try again."
    /// after a wrong attempt), `teacher` (the teacher's feedback),
    /// `verdict` ("Incorrect."), `shuffled` (the teacher's critique of a
    /// different wrong answer to the same task), `critic`
    /// (the critic's feedback and verdict, no oracle) and
    /// `critic_oracle_stop` (the critic's feedback, the verifier stops).
    pub conditions: Vec<Condition>,
    /// The teacher's feedback level in the `teacher` condition.
    pub feedback_level: FeedbackLevel,
    /// 0 decodes greedily (then one seed is enough).
    pub temperature: f32,
    /// Sampling seeds per (model, condition, task).
    pub seeds: usize,
    /// Token budget of one attempt.
    pub max_new_tokens: usize,
    /// Token budget of one critique.
    pub critique_tokens: usize,
    /// Dialogues per batched generation.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            tasks_per_domain: 0,
            max_turns: 4,
            conditions: vec![
                Condition::Single,
                Condition::Retry,
                Condition::Teacher,
                Condition::Verdict,
                Condition::Shuffled,
                Condition::Critic,
                Condition::CriticOracleStop,
            ],
            feedback_level: FeedbackLevel::Explanation,
            temperature: 0.0,
            seeds: 1,
            max_new_tokens: 24,
            critique_tokens: 48,
            batch_size: 128,
        }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_turns == 0 || self.seeds == 0 || self.batch_size == 0 {
            return Err("max_turns, seeds and batch_size must be positive".into());
        }
        if self.conditions.is_empty() {
            return Err("conditions: name at least one".into());
        }
        if self.temperature < 0.0 {
            return Err(format!("temperature: {} is negative", self.temperature));
        }
        Ok(())
    }
}

/// How a wrong attempt is answered during evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// One attempt, no feedback.
    Single,
    /// "Try again." whatever the attempt: the no-information control.
    Retry,
    /// The teacher's feedback.
    Teacher,
    /// The teacher says only "Incorrect." (and the verifier stops): a gain
    /// over `retry` is the verdict's, not the wording's.
    Verdict,
    /// The teacher's critique of a *different* wrong answer to the same
    /// task, in the same form: if `teacher` ≈ `shuffled`, the student
    /// responds to the form of feedback, not to its content.
    Shuffled,
    /// The critic's critique, and its verdict decides when to stop: no
    /// oracle at all.
    Critic,
    /// The critic's critique, but the verifier stops at the first correct
    /// attempt.
    CriticOracleStop,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Retry => "retry",
            Self::Teacher => "teacher",
            Self::Verdict => "verdict",
            Self::Shuffled => "shuffled",
            Self::Critic => "critic",
            Self::CriticOracleStop => "critic_oracle_stop",
        }
    }
}

/// A configuration error: always names the file, and the key when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
}

impl Config {
    /// Reads `path`, applies `overrides` (`key.path=value`, value in TOML
    /// syntax or a bare string), checks every key and type, and resolves
    /// defaults.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path, overrides)
    }

    pub fn from_toml(text: &str, path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            invalid(match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("line {line}, column {col}: {}", e.message().trim())
                }
                None => e.message().trim().to_string(),
            })
        })?;
        for arg in overrides {
            apply_override(&mut table, arg)?;
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| invalid(describe(&e.path().to_string(), e.inner().message().trim())))?;
        config
            .run
            .validate()
            .map_err(|e| invalid(format!("run: {e}")))?;
        config.data.resolve().map_err(invalid)?;
        config
            .pretrain
            .validate()
            .map_err(|e| invalid(format!("pretrain: {e}")))?;
        config
            .own_mistakes
            .validate()
            .map_err(|e| invalid(format!("own_mistakes: {e}")))?;
        config
            .student
            .validate()
            .map_err(|e| invalid(format!("student: {e}")))?;
        if config.student.critique_weight != 0.0 {
            return Err(invalid(
                "student.critique_weight is not a config key: the student stage sets it \
                 from critic.self_weight when critic.mode = \"self\""
                    .into(),
            ));
        }
        config.teacher.validate("teacher").map_err(invalid)?;
        if config.teacher.kind == TeacherKind::Model && config.model.source.is_scratch() {
            return Err(invalid(
                "teacher.kind = \"model\" needs a pretrained chat model as the base \
                 (model.source = \"pretrained:<dir>\"): a model trained from scratch cannot \
                 follow a teacher's instructions"
                    .into(),
            ));
        }
        if config.data.restate_task && !config.model.source.is_scratch() {
            return Err(invalid(
                "data.restate_task = true gives the task again as a turn of its own, which \
                 only didact's own role-token format can render; a pretrained chat model's \
                 template alternates user and assistant turns: set data.restate_task = false"
                    .into(),
            ));
        }
        config
            .critic
            .validate()
            .map_err(|e| invalid(format!("critic: {e}")))?;
        config
            .eval
            .validate()
            .map_err(|e| invalid(format!("eval: {e}")))?;
        config
            .transfer
            .validate()
            .map_err(|e| invalid(format!("transfer: {e}")))?;
        config
            .sml
            .validate()
            .map_err(|e| invalid(format!("sml: {e}")))?;
        let offline_ok = config.baseline.offline_lr > 0.0 && config.baseline.offline_batch_size > 0;
        if !offline_ok {
            return Err(invalid(
                "baseline: offline_lr and offline_batch_size must be positive".into(),
            ));
        }
        Ok(config)
    }

    /// The configuration of training seed `seed`: `seed` added to each
    /// stage's own training seed, everything else unchanged.
    pub fn for_training_seed(&self, seed: u64) -> Config {
        let mut c = self.clone();
        c.model.seed = c.model.seed.wrapping_add(seed);
        c.pretrain.seed = c.pretrain.seed.wrapping_add(seed);
        c.student.seed = c.student.seed.wrapping_add(seed);
        c.critic.train.seed = c.critic.train.seed.wrapping_add(seed);
        c.sml.sft.seed = c.sml.sft.seed.wrapping_add(seed);
        c
    }

    /// The resolved configuration as TOML, written into the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// One line naming the key: "unknown key `data.arith.trian`, expected one of
/// … (did you mean `train`?)" or "`data.seed`: invalid type: …".
fn describe(key: &str, message: &str) -> String {
    let key = if key.is_empty() || key == "." {
        "config"
    } else {
        key
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once("`, ").map_or("", |(_, e)| e);
        let hint = suggestion(message)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return format!("unknown key `{key}`, {expected}{hint}");
    }
    format!("`{key}`: {message}")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" message, the
/// expected name closest to `x`.
fn suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::levenshtein(unknown, candidate), candidate))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_string())
}

fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key.path=value"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty key segment"));
    }
    let value: toml::Value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let (last, parents) = parts.split_last().expect("non-empty");
    let mut node = table;
    for p in parents {
        node = node
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| err(&format!("`{p}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// Settings of the SML comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmlConfig {
    /// Off: the stage writes an empty table (it trains two more models).
    pub enabled: bool,
    /// P_Q(t) = question_base^t: the chance that an incorrect turn of a
    /// Q-priming dialogue becomes a question.
    pub question_base: f64,
    /// Student turns of a Q-priming dialogue at most.
    pub qprime_turns: usize,
    /// Chance that a Q-priming dialogue has one more mistake (and the
    /// teacher's feedback) after everything essential is revealed, before
    /// the correct answer: it teaches answering again, not asking again.
    pub qprime_retry: f64,
    /// What the teacher says to a wrong answer, in Q-priming, GRPO and
    /// evaluation alike. `verdict` ("Incorrect.") keeps the withheld parts
    /// the teacher's to reveal when asked: richer feedback on a premature
    /// answer gives some of them away (a failing hidden example, where a
    /// path hits a wall).
    pub feedback_level: FeedbackLevel,
    /// Q-priming SFT (from the base model).
    pub sft: TrainConfig,
    /// GRPO iterations after Q-priming (the other settings are
    /// `[student]`'s, as in the paper: same γ, group size and masks).
    pub iterations: usize,
    /// Test tasks per domain, each evaluated sharded and fully specified.
    pub tasks_per_domain: usize,
    /// Student turns (questions included) per evaluation dialogue.
    pub max_turns: usize,
}

impl Default for SmlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            question_base: 0.75,
            qprime_turns: 4,
            qprime_retry: 0.5,
            feedback_level: FeedbackLevel::Verdict,
            sft: TrainConfig {
                steps: 400,
                batch_size: 32,
                lr: 1e-3,
                warmup_steps: 10,
                max_seq_len: 160,
                eval_every: 400,
                eval_tasks: 0,
                ..TrainConfig::default()
            },
            iterations: 40,
            tasks_per_domain: 100,
            max_turns: 5,
        }
    }
}

impl SmlConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("question_base", self.question_base),
            ("qprime_retry", self.qprime_retry),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name}: {p} is not a probability"));
            }
        }
        if self.qprime_turns == 0 || self.max_turns == 0 {
            return Err("qprime_turns and max_turns must be positive".into());
        }
        if self.enabled && self.iterations == 0 {
            return Err("iterations must be positive when enabled".into());
        }
        self.sft.validate().map_err(|e| format!("sft: {e}"))
    }
}

/// Settings of the cross-domain matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Domains to train a single-domain RL²F student on (empty: the
    /// matrix is not computed).
    pub domains: Vec<DomainKind>,
    /// GRPO iterations of each single-domain student (the other settings
    /// are `[student]`'s).
    pub iterations: usize,
    /// Test tasks per evaluated domain (0: all of them).
    pub tasks_per_domain: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            iterations: 40,
            tasks_per_domain: 0,
        }
    }
}

impl TransferConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.domains.is_empty() && self.iterations == 0 {
            return Err("iterations must be positive when domains are listed".into());
        }
        let mut seen = self.domains.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.domains.len() {
            return Err(format!("domains: {:?} lists a domain twice", self.domains));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, overrides: &[&str]) -> Result<Config, String> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::from_toml(text, Path::new("configs/x.toml"), &overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_config_gets_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.data.arith.train, 2000);
        assert!(c.data.arith.difficulties.is_some());
    }

    #[test]
    fn typo_names_file_key_and_suggestion() {
        let err = load("[data.arith]\ntrian = 5\n", &[]).unwrap_err();
        assert!(
            err.starts_with("configs/x.toml: unknown key `data.arith.trian`, expected one of"),
            "{err}"
        );
        assert!(err.ends_with("(did you mean `train`?)"), "{err}");
        let err = load("[dta]\n", &[]).unwrap_err();
        assert!(
            err.contains("unknown key `dta`") && err.contains("did you mean `data`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_key_and_expectation() {
        let err = load("[data.arith]\ntrain = \"many\"\n", &[]).unwrap_err();
        assert!(
            err.starts_with("configs/x.toml: `data.arith.train`: invalid type: string \"many\""),
            "{err}"
        );
        assert!(err.contains("expected usize"), "{err}");
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let err = load("[data]\nseed = = 3\n", &[]).unwrap_err();
        assert!(err.starts_with("configs/x.toml: line 2, column"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let c = load(
            "[data]\nseed = 1\n",
            &["data.seed=7", "data.maze.difficulties=[5,6]"],
        )
        .unwrap();
        assert_eq!(c.data.seed, 7);
        assert_eq!(c.data.maze.difficulties, Some(vec![5, 6]));
        let err = load("", &["data.sed=7"]).unwrap_err();
        assert!(
            err.contains("unknown key `data.sed`") && err.contains("did you mean `seed`"),
            "{err}"
        );
        let err = load("", &["data.seed"]).unwrap_err();
        assert_eq!(err, "--set data.seed: expected key.path=value");
    }

    #[test]
    fn semantic_checks_name_the_key() {
        let err = load("[data.arith]\ndifficulties = [0]\n", &[]).unwrap_err();
        assert_eq!(
            err,
            "configs/x.toml: data.arith.difficulties: 0 is outside 1..=10 for arith"
        );
    }

    #[test]
    fn a_chat_model_cannot_restate_the_task() {
        let err = load(
            "[model]\nsource = \"pretrained:models/x\"\n",
            &["data.restate_task=true"],
        )
        .unwrap_err();
        assert!(err.contains("data.restate_task"), "{err}");
        assert!(load("[model]\nsource = \"pretrained:models/x\"\n", &[]).is_ok());
    }

    /// The critique loss's weight is the critic's to set; in [student] it
    /// is refused by name, and a negative critic weight too.
    #[test]
    fn the_critique_weight_is_set_by_the_critic_section() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.critic.mode, didact_critic::config::CriticMode::Student);
        assert_eq!(c.student.critique_weight, 0.0);
        let err = load("", &["student.critique_weight=0.1"]).unwrap_err();
        assert!(err.contains("critic.self_weight"), "{err}");
        let err = load("", &["critic.self_weight=-1"]).unwrap_err();
        assert!(err.contains("critic: self_weight"), "{err}");
    }

    #[test]
    fn every_shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for name in [
            "smoke.toml",
            "default.toml",
            "paper.toml",
            "sml.toml",
            "gpu-qwen2.5-0.5b.toml",
            "smollm2-cpu.toml",
        ] {
            Config::load(&dir.join(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = load("[data]\nseed = 3\n", &[]).unwrap();
        assert_eq!(load(&c.to_toml(), &[]).unwrap(), c);
    }
}
