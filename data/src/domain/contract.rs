//! The domain contract: what a task is, how an attempt is judged and
//! answered, and the [`Domain`] trait each domain implements. The domains
//! (`arith`, `listops`, ...) import this module; the parent module only
//! dispatches a [`DomainKind`] to its implementation, so no domain imports
//! the module that imports it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::rng::Rng;

/// Longest untrusted answer a verifier looks at; longer text is malformed.
/// Bounding the input is what makes every verifier linear-time at worst.
pub const MAX_ANSWER_CHARS: usize = 4096;

/// The task domains: four synthetic ones and two for imported tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    Arith,
    Listops,
    Sudoku,
    Maze,
    /// Imported tasks with a numeric answer (GSM8K-style).
    Numeric,
    /// Imported tasks judged by exact match of the answer text.
    Exact,
}

impl DomainKind {
    /// The synthetic domains, which the data stage generates and which each
    /// have a config section (`data.<domain>`). The imported domains are
    /// not in this list: nothing generates them in a run.
    pub const ALL: [DomainKind; 4] = [Self::Arith, Self::Listops, Self::Sudoku, Self::Maze];

    /// The domains of tasks read from a dataset by `didact data import`.
    pub const IMPORTED: [DomainKind; 2] = [Self::Numeric, Self::Exact];

    pub fn name(self) -> &'static str {
        match self {
            Self::Arith => "arith",
            Self::Listops => "listops",
            Self::Sudoku => "sudoku",
            Self::Maze => "maze",
            Self::Numeric => "numeric",
            Self::Exact => "exact",
        }
    }

    /// Whether tasks of this kind are imported rather than generated.
    pub fn is_imported(self) -> bool {
        Self::IMPORTED.contains(&self)
    }
}

impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DomainKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::IMPORTED)
            .find(|d| d.name() == s)
            .ok_or_else(|| DataError::UnknownDomain(s.to_string()))
    }
}

/// One verifiable single-turn task. `solution` is a reference answer (any
/// answer the verifier accepts is correct); `metadata` holds the domain's
/// privileged information as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub domain: DomainKind,
    pub difficulty: u32,
    pub seed: u64,
    pub prompt: String,
    pub solution: String,
    pub metadata: String,
}

impl Task {
    /// Builds a task whose id is derived from its content, so identical tasks
    /// share an id whatever seed produced them.
    pub fn new(
        domain: DomainKind,
        difficulty: u32,
        seed: u64,
        prompt: String,
        solution: String,
        metadata: String,
    ) -> Self {
        let task_id = format!("{}-{:016x}", domain, content_hash(domain, &prompt));
        Self {
            task_id,
            domain,
            difficulty,
            seed,
            prompt,
            solution,
            metadata,
        }
    }

    /// Parses the domain's privileged metadata.
    pub fn meta<M: for<'de> Deserialize<'de>>(&self) -> Result<M> {
        serde_json::from_str(&self.metadata).map_err(|e| DataError::CorruptTask {
            task_id: self.task_id.clone(),
            reason: e.to_string(),
        })
    }
}

/// Hash of what the student sees, used for ids and to keep splits disjoint.
pub fn content_hash(domain: DomainKind, prompt: &str) -> u64 {
    let normalised: String = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::rng::fnv1a(format!("{domain}\u{0}{normalised}").as_bytes())
}

/// The verifier's judgement of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Correct,
    /// Well-formed but wrong.
    Wrong,
    /// Not an answer in the domain's format at all.
    Malformed,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Correct => "correct",
            Self::Wrong => "wrong",
            Self::Malformed => "malformed",
        }
    }

    pub fn is_correct(self) -> bool {
        self == Self::Correct
    }
}

/// How much the teacher says about a wrong attempt. `Retry` is the
/// no-information control of the paper ("Try again.").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackLevel {
    Retry,
    Verdict,
    Location,
    Explanation,
    /// Which characters of the attempt are wrong, as a mask written under
    /// the attempt character for character (`.` right, `!` wrong), so that
    /// acting on it is a copy at a fixed offset rather than a reading of
    /// "row 2, column 3". Positions only, never values. Domains without a
    /// character-level notion of wrong (listops, imported datasets) say
    /// what they say at `Explanation`.
    Mask,
}

impl FeedbackLevel {
    pub const ALL: [FeedbackLevel; 5] = [
        Self::Retry,
        Self::Verdict,
        Self::Location,
        Self::Explanation,
        Self::Mask,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Verdict => "verdict",
            Self::Location => "location",
            Self::Explanation => "explanation",
            Self::Mask => "mask",
        }
    }
}

impl FromStr for FeedbackLevel {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| DataError::UnknownFeedbackLevel(s.to_string()))
    }
}

/// The no-information control message.
pub const RETRY_MESSAGE: &str = "Try again.";
/// What every teacher says to a correct attempt.
pub const CORRECT_MESSAGE: &str = "Correct.";
/// The verdict-only message for a wrong attempt.
pub const WRONG_MESSAGE: &str = "Incorrect.";

/// What [`Domain::read_critique`] finds in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CritiqueReading {
    /// The message is one of the teacher's forms for the domain, at any
    /// feedback level, with every slot filled by a value of its kind.
    pub well_formed: bool,
    /// Whether the claim the message makes about the attempt holds:
    /// `None` for a verdict alone ("Incorrect.", "Correct.": judged as a
    /// verdict elsewhere), for a form whose claim needs the solution, and
    /// for a message that is not well formed.
    pub claim: Option<bool>,
}

impl CritiqueReading {
    /// Not one of the teacher's forms.
    pub const GARBLED: Self = Self {
        well_formed: false,
        claim: None,
    };

    /// A teacher's form that makes no claim checkable from the task and
    /// the attempt alone.
    pub const UNCHECKABLE: Self = Self {
        well_formed: true,
        claim: None,
    };

    /// A teacher's form whose claim about the attempt `holds` or not.
    pub fn claim(holds: bool) -> Self {
        Self {
            well_formed: true,
            claim: Some(holds),
        }
    }
}

/// A task domain. Implementations are stateless; everything a call needs is
/// in the task.
pub trait Domain: Sync {
    fn kind(&self) -> DomainKind;

    /// Smallest and largest meaningful difficulty; others are clamped.
    fn difficulty_range(&self) -> (u32, u32);

    /// Deterministic: the same `(seed, difficulty)` gives the same task.
    fn generate(&self, seed: u64, difficulty: u32) -> Task;

    /// Judges untrusted text. Must never panic or hang, whatever `attempt` is;
    /// errors only when the task itself is corrupt.
    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict>;

    /// The programmatic teacher: feedback on an attempt, written with the
    /// solution in view but never revealing it. `Retry` gives
    /// [`RETRY_MESSAGE`] whatever the attempt; a correct attempt gets
    /// [`CORRECT_MESSAGE`].
    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String>;

    /// A plausible wrong attempt, of the kind a student makes.
    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String>;

    /// The answer of a student who acts on the teacher's located critique
    /// of a wrong `attempt`: what the critique did not flag is kept, what it
    /// flagged is changed. `None` where the domain has no local repair (the
    /// answer after a critique is then the solution) or the attempt cannot
    /// be read. A repair may still be wrong (another mistake the critique
    /// did not name); the next critique names it.
    /// At `Mask` level every flagged character changes, so the repair
    /// is right whenever the mask covers every mistake.
    fn repair(
        &self,
        _task: &Task,
        _attempt: &str,
        _level: FeedbackLevel,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// How `message`, a critic's critique of `attempt`, reads against this
    /// domain's teacher: whether it is one of the teacher's forms and
    /// whether its claim about the attempt holds where the task and the
    /// attempt settle it ([`CritiqueReading`]). `None` where the domain has
    /// no reader (imported domains), so a report leaves it out rather than
    /// counting every message as garbled. Must never panic, whatever the
    /// message is.
    fn read_critique(
        &self,
        _task: &Task,
        _attempt: &str,
        _message: &str,
    ) -> Result<Option<CritiqueReading>> {
        Ok(None)
    }

    /// Domain-specific leak rule: `Some(reason)` if `message` gives away the
    /// solution. [`Domain::leak`] adds the generic substring rule.
    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>>;

    /// The whole leak check ([`crate::leak::check`]): the generic rule (the
    /// normalised solution appears in the normalised message), then
    /// [`Domain::leak_rule`]. Solutions shorter than three normalised
    /// characters are left to the domain rule, since they occur in ordinary
    /// words.
    fn leak(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let solution = normalise(&task.solution);
        if solution.chars().count() >= 3 && normalise(message).contains(&solution) {
            return Ok(Some("contains the solution".to_string()));
        }
        self.leak_rule(task, message)
    }

    /// The underspecified form of `task` for social meta-learning: a first
    /// prompt that withholds part of the task, and the withheld shards, at
    /// least one essential and none leaking the solution. `None` when this
    /// task offers no such split. Deterministic.
    fn shard(&self, task: &Task) -> Result<Option<Sharding>>;
}

/// Returns `None` when the text is too long to be judged, so verifiers share
/// one bound.
pub(crate) fn bounded(attempt: &str) -> Option<&str> {
    if attempt.len() > MAX_ANSWER_CHARS {
        None
    } else {
        Some(attempt.trim())
    }
}

/// The mask of a `Mask`-level critique: `.` for each right character and
/// `!` for each wrong one, in the attempt's order. Both symbols are
/// tokens of their own, so the mask lines up with the attempt token for
/// token.
pub(crate) fn render_mask(wrong: impl IntoIterator<Item = bool>) -> String {
    wrong
        .into_iter()
        .map(|w| if w { '!' } else { '.' })
        .collect()
}

/// Shared prefix of every teacher: the retry control and the correct case.
/// Returns `Some(message)` when the teacher's domain logic need not run.
pub(crate) fn common_feedback(verdict: Verdict, level: FeedbackLevel) -> Option<String> {
    if verdict.is_correct() {
        return Some(CORRECT_MESSAGE.to_string());
    }
    match level {
        FeedbackLevel::Retry => Some(RETRY_MESSAGE.to_string()),
        FeedbackLevel::Verdict if verdict == Verdict::Wrong => Some(WRONG_MESSAGE.to_string()),
        _ => None,
    }
}

/// Lower-cases and drops everything but letters and digits, so that
/// `"R R D"` and `"rrd"` or `"1 2 3"` and `"123"` compare equal.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One piece of a task the first turn withholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// What a question names to ask for it: `x`, `row 2`, `example 3`.
    pub name: String,
    /// The teacher's whole reply when revealing it: `x = 8`.
    pub reveal: String,
    /// The answer is not determined without it.
    pub essential: bool,
}

/// How a domain splits one task: the prompt of the first turn and what it
/// withholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharding {
    pub prompt: String,
    pub shards: Vec<Shard>,
}
