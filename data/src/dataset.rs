//! The `data` stage's work: generate each domain's tasks into disjoint
//! splits, write the synthetic feedback dialogues, and collect the corpus the
//! tokenizer is trained on.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::dialogue::{Dialogue, Role};
use crate::domain::{DomainKind, FeedbackLevel, Task, WRONG_MESSAGE, content_hash};
use crate::error::{DataError, Result};
use crate::leak::teacher_message;
use crate::rng::{Rng, mix_seed};
use crate::tables::{Split, SyntheticDialogue, TaskRow};

/// How many tasks of one domain to generate, and how hard. A field left out
/// of the config takes its value from [`Default`], as in every config struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainConfig {
    /// Whether this domain is part of the run.
    pub enabled: bool,
    /// Difficulty levels, used in turn (see each domain's docs for the scale).
    /// Defaults to the domain's own easy range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difficulties: Option<Vec<u32>>,
    /// Number of train tasks.
    pub train: usize,
    /// Number of validation tasks.
    pub val: usize,
    /// Number of held-out test tasks.
    pub test: usize,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            difficulties: None,
            train: 2000,
            val: 200,
            test: 300,
        }
    }
}

/// Difficulties used when a config names none: easy enough for the CPU demo.
/// Imported domains have the one difficulty 0.
pub fn default_difficulties(kind: DomainKind) -> Vec<u32> {
    match kind {
        DomainKind::Arith => vec![1, 2],
        DomainKind::Listops => vec![1],
        DomainKind::Sudoku => vec![2, 3, 4],
        DomainKind::Maze => vec![4],
        DomainKind::Numeric | DomainKind::Exact => vec![0],
    }
}

/// The config of a domain the data stage does not generate (the imported
/// domains): disabled, no tasks.
static NOT_GENERATED: DomainConfig = DomainConfig {
    enabled: false,
    difficulties: None,
    train: 0,
    val: 0,
    test: 0,
};

/// The synthetic feedback dialogues that warm-start the feedback format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Dialogues per train task.
    pub per_task: usize,
    /// Teacher feedback levels, used in turn across dialogues.
    pub feedback_levels: Vec<FeedbackLevel>,
    /// Each dialogue has 1 to this many wrong attempts (drawn uniformly),
    /// each answered by the teacher, before the correct answer, so that
    /// the student sees turn 3 and later before RL does. On
    /// configs/default.toml, 3 made pretraining 50% slower and the
    /// teacher's gain smaller (see the README), so 1 is the default.
    pub max_wrong_attempts: usize,
    /// The answer after a located critique is the domain's repair of the
    /// attempt (keep what was not flagged, change what was) rather than
    /// the stored solution, where the domain has a repair (maze, sudoku).
    pub repair: bool,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            per_task: 1,
            feedback_levels: vec![FeedbackLevel::Location, FeedbackLevel::Explanation],
            max_wrong_attempts: 1,
            repair: true,
        }
    }
}

/// The tokenizer trained on the generated corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Vocabulary size, including the 256 byte symbols and special tokens.
    pub vocab_size: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self { vocab_size: 512 }
    }
}

/// Everything the `data` stage needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Seed of task generation: the same seed gives byte-identical tables.
    pub seed: u64,
    pub arith: DomainConfig,
    pub listops: DomainConfig,
    pub sudoku: DomainConfig,
    pub maze: DomainConfig,
    pub synthetic: SyntheticConfig,
    pub tokenizer: TokenizerConfig,
    /// After each teacher (or critic) message the task's prompt is given
    /// again before the student's next attempt, in every stage's dialogues.
    /// A small model answers a task by copying from it at fixed distances;
    /// without the restatement the attempt and the critique push the task
    /// out of reach, and it answers worse after any message than without
    /// one. Only didact's own role-token format can restate (a chat
    /// template alternates user and assistant turns).
    pub restate_task: bool,
    /// A `tasks.parquet` written by `didact data import` (relative to the
    /// working directory): its tasks, with their splits, join the generated
    /// ones. Disable the synthetic domains to train on it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<std::path::PathBuf>,
}

impl DataConfig {
    /// The config of a synthetic domain; an imported domain (which has no
    /// config section) gets a disabled one with no tasks.
    pub fn domain(&self, kind: DomainKind) -> &DomainConfig {
        match kind {
            DomainKind::Arith => &self.arith,
            DomainKind::Listops => &self.listops,
            DomainKind::Sudoku => &self.sudoku,
            DomainKind::Maze => &self.maze,
            DomainKind::Numeric | DomainKind::Exact => &NOT_GENERATED,
        }
    }

    /// `None` for the imported domains, which have no config section.
    fn domain_mut(&mut self, kind: DomainKind) -> Option<&mut DomainConfig> {
        match kind {
            DomainKind::Arith => Some(&mut self.arith),
            DomainKind::Listops => Some(&mut self.listops),
            DomainKind::Sudoku => Some(&mut self.sudoku),
            DomainKind::Maze => Some(&mut self.maze),
            DomainKind::Numeric | DomainKind::Exact => None,
        }
    }

    /// Enabled domains, in their canonical order.
    pub fn enabled(&self) -> Vec<DomainKind> {
        DomainKind::ALL
            .into_iter()
            .filter(|k| self.domain(*k).enabled)
            .collect()
    }

    /// Fills defaults that depend on the domain and checks every value,
    /// naming the offending key (`data.<domain>.<field>`).
    pub fn resolve(&mut self) -> std::result::Result<(), String> {
        for kind in DomainKind::ALL {
            let range = kind.domain().difficulty_range();
            let Some(dc) = self.domain_mut(kind) else {
                continue;
            };
            let diffs = dc
                .difficulties
                .get_or_insert_with(|| default_difficulties(kind));
            if diffs.is_empty() {
                return Err(format!(
                    "data.{kind}.difficulties: must list at least one difficulty"
                ));
            }
            if let Some(bad) = diffs.iter().find(|d| !(range.0..=range.1).contains(*d)) {
                return Err(format!(
                    "data.{kind}.difficulties: {bad} is outside {}..={} for {kind}",
                    range.0, range.1
                ));
            }
            if dc.enabled && dc.train + dc.val + dc.test == 0 {
                return Err(format!("data.{kind}: train, val and test are all 0"));
            }
        }
        if self.enabled().is_empty() && self.import.is_none() {
            return Err("data: every domain is disabled and data.import is not set".into());
        }
        if self.synthetic.feedback_levels.is_empty() {
            return Err("data.synthetic.feedback_levels: must list at least one level".into());
        }
        if self.tokenizer.vocab_size < 300 {
            return Err(format!(
                "data.tokenizer.vocab_size: {} is too small (at least 300: 256 byte symbols, special tokens and merges)",
                self.tokenizer.vocab_size
            ));
        }
        Ok(())
    }
}

/// Candidates tried per requested task before giving up on a domain whose
/// difficulties do not have enough distinct tasks.
const ATTEMPTS_PER_TASK: usize = 50;

/// Generates one domain's tasks. Each candidate's split is decided by its
/// content hash, and duplicates are dropped, so no task text is in two splits
/// and a task always falls in the same split whatever the quotas.
pub fn generate_domain(
    cfg: &DataConfig,
    kind: DomainKind,
    tick: &mut dyn FnMut(),
) -> Result<Vec<TaskRow>> {
    let dc = cfg.domain(kind);
    let diffs = dc
        .difficulties
        .clone()
        .unwrap_or_else(|| default_difficulties(kind));
    let quotas = [dc.train, dc.val, dc.test];
    let total: usize = quotas.iter().sum();
    let mut filled = [0usize; 3];
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(total);
    let domain = kind.domain();
    for i in 0..(total * ATTEMPTS_PER_TASK + 1000) {
        if filled == quotas {
            break;
        }
        let seed = mix_seed(&[cfg.seed, kind as u64, i as u64]);
        let difficulty = diffs[i % diffs.len()];
        let task = domain.generate(seed, difficulty);
        let hash = content_hash(kind, &task.prompt);
        if !seen.insert(hash) {
            continue;
        }
        let bucket = (mix_seed(&[hash]) % total as u64) as usize;
        let split_index = if bucket < quotas[0] {
            0
        } else if bucket < quotas[0] + quotas[1] {
            1
        } else {
            2
        };
        if filled[split_index] < quotas[split_index] {
            filled[split_index] += 1;
            rows.push(TaskRow {
                task,
                split: Split::ALL[split_index],
            });
            tick();
        }
    }
    if filled != quotas {
        return Err(DataError::Generation(format!(
            "data.{kind}: found only {} distinct tasks at difficulties {diffs:?} \
             (train {}/{}, val {}/{}, test {}/{}); ask for fewer tasks or add harder difficulties",
            seen.len(),
            filled[0],
            quotas[0],
            filled[1],
            quotas[1],
            filled[2],
            quotas[2]
        )));
    }
    rows.sort_by_key(|r| (r.split, r.task.difficulty, r.task.task_id.clone()));
    Ok(rows)
}

/// Leak-check counts for one domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LeakStats {
    pub messages: usize,
    pub leaks: usize,
}

impl LeakStats {
    pub fn rate(&self) -> f64 {
        if self.messages == 0 {
            0.0
        } else {
            self.leaks as f64 / self.messages as f64
        }
    }
}

/// Builds the synthetic dialogues for the train tasks: one to
/// `max_wrong_attempts` wrong attempts from the error model, each followed
/// by the teacher's feedback (replaced by the verdict-only message if it
/// fails the leak check), then the correct answer. With `repair` on, the
/// answer after a located critique (location or explanation) is the
/// domain's repair of the attempt ([`crate::Domain::repair`]) where it has
/// one: the student keeps what the critique did not flag; a repair that is
/// still wrong gets its own critique and repair, up to [`MAX_REPAIRS`].
pub fn synthetic_dialogues(
    cfg: &DataConfig,
    tasks: &[TaskRow],
) -> Result<(Vec<SyntheticDialogue>, BTreeMap<DomainKind, LeakStats>)> {
    let mut rows = Vec::new();
    let mut stats: BTreeMap<DomainKind, LeakStats> = BTreeMap::new();
    let levels = &cfg.synthetic.feedback_levels;
    for row in tasks.iter().filter(|r| r.split == Split::Train) {
        let task = &row.task;
        let domain = task.domain.domain();
        let hash = content_hash(task.domain, &task.prompt);
        for j in 0..cfg.synthetic.per_task {
            let mut rng = Rng::new(mix_seed(&[cfg.seed, hash, j as u64]));
            let level = levels[(hash as usize).wrapping_add(j) % levels.len()];
            let wrong = 1 + rng.below(cfg.synthetic.max_wrong_attempts.max(1) as u64) as usize;
            let first_attempt = domain.wrong_attempt(task, &mut rng)?;
            let mut fresh = |previous: &[String]| -> Result<String> {
                // A fresh mistake each turn where the error model has one.
                let mut attempt = domain.wrong_attempt(task, &mut rng)?;
                for _ in 0..4 {
                    if !previous.contains(&attempt) {
                        break;
                    }
                    attempt = domain.wrong_attempt(task, &mut rng)?;
                }
                Ok(attempt)
            };
            let revision = revision_dialogue(
                task,
                &first_attempt,
                level,
                cfg.synthetic.repair,
                cfg.restate_task,
                wrong,
                &mut fresh,
            )?;
            let entry = stats.entry(task.domain).or_default();
            entry.messages += revision.critiques;
            entry.leaks += revision.leaks;
            let dialogue = revision.dialogue;
            rows.push(SyntheticDialogue {
                dialogue_id: format!("{}-s{j}", task.task_id),
                task_id: task.task_id.clone(),
                domain: task.domain,
                difficulty: task.difficulty,
                attempt_verdict: domain.verify(task, &first_attempt)?.name().to_string(),
                feedback: dialogue.turns[2].text.clone(),
                attempt: first_attempt,
                feedback_level: level.name().to_string(),
                leak_blocked: revision.first_leak_blocked,
                wrong_attempts: revision.untrained as u32,
                answer: revision.answer,
                text: dialogue.render(),
            });
        }
    }
    Ok((rows, stats))
}

/// A dialogue in which a student revises a wrong attempt after feedback.
pub struct Revision {
    pub dialogue: Dialogue,
    /// The student's last turn: the right answer it ends on.
    pub answer: String,
    /// Leading student turns that are mistakes to learn from, not to learn:
    /// the first attempt and any fresh mistakes after it. The student
    /// turns after them (repairs, the answer) are the ones trained.
    pub untrained: usize,
    /// Teacher messages written, and how many failed the leak check.
    pub critiques: usize,
    pub leaks: usize,
    pub first_leak_blocked: bool,
}

/// task → `attempt` (wrong) → the teacher's message at `level` → the
/// student's next answer, until the answer is right. The next answer is the
/// domain's repair of the attempt when `repair` holds and the critique is
/// located (location or explanation) and the domain has one; a repair that
/// is still wrong gets its own critique and repair, up to [`MAX_REPAIRS`].
/// Otherwise, while fewer than `mistakes` wrong attempts have been made,
/// `fresh` supplies another mistake; then the stored solution answers.
pub fn revision_dialogue(
    task: &Task,
    attempt: &str,
    level: FeedbackLevel,
    repair: bool,
    restate: bool,
    mistakes: usize,
    fresh: &mut dyn FnMut(&[String]) -> Result<String>,
) -> Result<Revision> {
    let domain = task.domain.domain();
    let located = matches!(
        level,
        FeedbackLevel::Location | FeedbackLevel::Explanation | FeedbackLevel::Mask
    );
    let mut dialogue = Dialogue::from_task(&task.prompt);
    let mut previous: Vec<String> = Vec::new();
    let mut attempt = attempt.to_string();
    let (mut repairs, mut leaks) = (0usize, 0usize);
    let mut first_leak_blocked = false;
    let answer = loop {
        let (feedback, leak_blocked) = teacher_message(task, &attempt, level)?;
        leaks += leak_blocked as usize;
        first_leak_blocked |= previous.is_empty() && leak_blocked;
        dialogue
            .push(Role::Student, &attempt)
            .push_reply(Role::Teacher, &feedback, restate);
        previous.push(attempt.clone());
        let repaired = if repair && located && !leak_blocked {
            domain.repair(task, &attempt, level)?
        } else {
            None
        };
        match repaired {
            Some(next) if domain.verify(task, &next)?.is_correct() => break next,
            Some(next) if repairs + 1 < MAX_REPAIRS && !previous.contains(&next) => {
                repairs += 1;
                attempt = next;
            }
            // Fresh mistakes come only before any repair, so the untrained
            // turns are the leading ones.
            None if repairs == 0 && previous.len() < mistakes => attempt = fresh(&previous)?,
            _ => break task.solution.clone(),
        }
    };
    dialogue.push(Role::Student, &answer);
    Ok(Revision {
        dialogue,
        answer,
        untrained: previous.len() - repairs,
        critiques: previous.len(),
        leaks,
        first_leak_blocked,
    })
}

/// Repairs in one synthetic dialogue before the solution is given instead.
pub const MAX_REPAIRS: usize = 3;

/// Every text the tokenizer should know: prompts, solutions, attempts,
/// feedback, and the fixed teacher messages.
pub fn tokenizer_corpus<'a>(
    tasks: &'a [TaskRow],
    dialogues: &'a [SyntheticDialogue],
) -> impl Iterator<Item = &'a str> + Send + 'a {
    let fixed = [
        crate::domain::RETRY_MESSAGE,
        crate::domain::CORRECT_MESSAGE,
        WRONG_MESSAGE,
    ];
    tasks
        .iter()
        .flat_map(|r| [r.task.prompt.as_str(), r.task.solution.as_str()])
        .chain(
            dialogues
                .iter()
                .flat_map(|d| [d.attempt.as_str(), d.feedback.as_str()]),
        )
        .chain(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::Turn;

    fn small() -> DataConfig {
        let mut cfg = DataConfig::default();
        for kind in DomainKind::ALL {
            let dc = cfg.domain_mut(kind).unwrap();
            (dc.train, dc.val, dc.test) = (40, 10, 10);
        }
        cfg.resolve().unwrap();
        cfg
    }

    #[test]
    fn restating_the_task_changes_no_attempt_message_or_answer() {
        let mut cfg = small();
        cfg.synthetic.max_wrong_attempts = 2;
        let tasks: Vec<TaskRow> = DomainKind::ALL
            .into_iter()
            .flat_map(|k| generate_domain(&cfg, k, &mut || {}).unwrap())
            .collect();
        let (plain, _) = synthetic_dialogues(&cfg, &tasks).unwrap();
        cfg.restate_task = true;
        let (restated, _) = synthetic_dialogues(&cfg, &tasks).unwrap();
        assert_eq!(plain.len(), restated.len());
        for (p, r) in plain.iter().zip(&restated) {
            let (dp, dr) = (
                Dialogue::parse(&p.text).unwrap(),
                Dialogue::parse(&r.text).unwrap(),
            );
            assert_eq!(
                (&p.attempt, &p.feedback, &p.answer),
                (&r.attempt, &r.feedback, &r.answer)
            );
            // The same turns, with the task's prompt after each message.
            let without: Vec<&Turn> = dr.turns[1..]
                .iter()
                .filter(|t| t.role != Role::Task)
                .collect();
            assert_eq!(without, dp.turns[1..].iter().collect::<Vec<_>>());
            for (i, t) in dr.turns.iter().enumerate() {
                if t.role == Role::Teacher {
                    assert_eq!(dr.turns[i + 1], dr.turns[0], "{}", r.text);
                }
            }
        }
    }

    #[test]
    fn quotas_are_met_and_splits_are_disjoint() {
        let cfg = small();
        for kind in DomainKind::ALL {
            let rows = generate_domain(&cfg, kind, &mut || {}).unwrap();
            assert_eq!(rows.len(), 60);
            let count = |s| rows.iter().filter(|r| r.split == s).count();
            assert_eq!(
                (count(Split::Train), count(Split::Val), count(Split::Test)),
                (40, 10, 10)
            );
            let prompts: HashSet<&str> = rows.iter().map(|r| r.task.prompt.as_str()).collect();
            assert_eq!(prompts.len(), rows.len(), "{kind}: a prompt appears twice");
        }
    }

    #[test]
    fn same_seed_same_tasks_and_different_seed_different_tasks() {
        let a = generate_domain(&small(), DomainKind::Arith, &mut || {}).unwrap();
        let b = generate_domain(&small(), DomainKind::Arith, &mut || {}).unwrap();
        let mut other = small();
        other.seed = 99;
        let c = generate_domain(&other, DomainKind::Arith, &mut || {}).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn too_many_tasks_for_a_difficulty_is_a_clear_error() {
        let mut cfg = small();
        cfg.arith.difficulties = Some(vec![1]);
        cfg.arith.train = 1000;
        let err = generate_domain(&cfg, DomainKind::Arith, &mut || {})
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("data.arith: found only"), "{err}");
    }

    #[test]
    fn resolve_names_the_bad_key() {
        let mut cfg = DataConfig::default();
        cfg.maze.difficulties = Some(vec![4, 40]);
        assert_eq!(
            cfg.resolve().unwrap_err(),
            "data.maze.difficulties: 40 is outside 4..=8 for maze"
        );
    }

    #[test]
    fn synthetic_dialogues_are_wrong_then_right_and_never_leak() {
        let mut cfg = small();
        cfg.synthetic.max_wrong_attempts = 3;
        let tasks: Vec<TaskRow> = DomainKind::ALL
            .into_iter()
            .flat_map(|k| generate_domain(&cfg, k, &mut || {}).unwrap())
            .collect();
        let (rows, stats) = synthetic_dialogues(&cfg, &tasks).unwrap();
        assert_eq!(rows.len(), 4 * 40);
        let mut lengths = std::collections::BTreeSet::new();
        let mut repaired = BTreeMap::<DomainKind, usize>::new();
        for r in &rows {
            assert_ne!(r.attempt_verdict, "correct");
            let d = Dialogue::parse(&r.text).unwrap();
            // Task, then (wrong student turn, feedback) pairs, then the answer.
            assert_eq!(d.turns.len() % 2, 0, "{}", r.text);
            let answers = d.turns.len() / 2;
            let k = r.wrong_attempts as usize;
            assert!((1..=3).contains(&k));
            assert!(k < answers && answers <= k + MAX_REPAIRS, "{}", r.text);
            lengths.insert(k);
            let task = &tasks
                .iter()
                .find(|t| t.task.task_id == r.task_id)
                .unwrap()
                .task;
            let domain = task.domain.domain();
            for i in 0..answers - 1 {
                assert_eq!(d.turns[1 + 2 * i].role, Role::Student);
                let v = domain.verify(task, &d.turns[1 + 2 * i].text).unwrap();
                assert!(!v.is_correct(), "{}", r.text);
                assert_eq!(d.turns[2 + 2 * i].role, Role::Teacher);
            }
            // Every student turn after the error model's is a repair of
            // the one before it, and the last one is right.
            for i in k..answers {
                let before = &d.turns[2 * i - 1].text;
                let repair = domain
                    .repair(task, before, FeedbackLevel::Location)
                    .unwrap();
                if i + 1 < answers || r.answer != task.solution {
                    assert_eq!(repair.as_deref(), Some(d.turns[2 * i + 1].text.as_str()));
                }
            }
            assert!(
                domain.verify(task, &r.answer).unwrap().is_correct(),
                "{}",
                r.text
            );
            assert_eq!(d.turns[1].text, r.attempt);
            assert_eq!(d.turns[2].text, r.feedback);
            assert_eq!(d.turns[2 * answers - 1].text, r.answer);
            if r.answer != task.solution || answers > k + 1 {
                *repaired.entry(task.domain).or_default() += 1;
            }
        }
        // Maze and sudoku answers after a located critique are repairs.
        assert!(
            repaired.get(&DomainKind::Maze).copied().unwrap_or(0) > 5,
            "{repaired:?}"
        );
        assert!(
            repaired.get(&DomainKind::Sudoku).copied().unwrap_or(0) > 0,
            "{repaired:?}"
        );
        assert!(!repaired.contains_key(&DomainKind::Arith), "{repaired:?}");

        cfg.synthetic.repair = false;
        let (plain, _) = synthetic_dialogues(&cfg, &tasks).unwrap();
        for r in &plain {
            let task = &tasks
                .iter()
                .find(|t| t.task.task_id == r.task_id)
                .unwrap()
                .task;
            assert_eq!(r.answer, task.solution);
            assert_eq!(
                Dialogue::parse(&r.text).unwrap().turns.len(),
                2 + 2 * r.wrong_attempts as usize
            );
        }
        assert_eq!(lengths.len(), 3, "1, 2 and 3 wrong attempts all occur");
        assert!(stats.values().all(|s| s.leaks == 0), "{stats:?}");
        assert!(stats.values().map(|s| s.messages).sum::<usize>() > rows.len());
    }
}
