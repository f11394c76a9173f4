//! The tables stages hand on, as polars frames persisted to parquet. One
//! schema definition per table is used by both the writer and the reader;
//! reading checks it, so a missing or mistyped column is a clear error naming
//! the file and the column, never a panic deep inside a stage.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::domain::{DomainKind, Task};
use crate::error::{DataError, Result};

/// Column types used by didact's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Str,
    U32,
    U64,
    F64,
    Bool,
}

impl ColumnType {
    fn dtype(self) -> DataType {
        match self {
            Self::Str => DataType::String,
            Self::U32 => DataType::UInt32,
            Self::U64 => DataType::UInt64,
            Self::F64 => DataType::Float64,
            Self::Bool => DataType::Boolean,
        }
    }
}

/// The columns a table must have, with their types. Extra columns are allowed
/// so that later versions can add to a table without breaking old readers.
#[derive(Debug, Clone, Copy)]
pub struct TableSchema {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnType)],
}

/// `tasks.parquet`: one row per task. `metadata` is the domain's privileged
/// information as JSON (hidden tests, solution grid, maze layout).
pub const TASKS: TableSchema = TableSchema {
    name: "tasks",
    columns: &[
        ("task_id", ColumnType::Str),
        ("domain", ColumnType::Str),
        ("difficulty", ColumnType::U32),
        ("split", ColumnType::Str),
        ("seed", ColumnType::U64),
        ("prompt", ColumnType::Str),
        ("solution", ColumnType::Str),
        ("metadata", ColumnType::Str),
    ],
};

/// `synthetic_dialogues.parquet`: for train tasks, `wrong_attempts` wrong
/// attempts from the error model, each answered by the teacher, then the
/// student's repairs (each answered by the teacher while still wrong) and
/// the correct answer; used to warm-start the feedback format. Pretraining
/// trains every student turn after the first `wrong_attempts`. `attempt`,
/// `attempt_verdict`, `feedback` and `leak_blocked` describe the first
/// exchange (`text` holds the whole dialogue); `leak_blocked` marks
/// feedback that failed the leak check and was replaced by the verdict-only
/// message.
pub const SYNTHETIC_DIALOGUES: TableSchema = TableSchema {
    name: "synthetic_dialogues",
    columns: &[
        ("dialogue_id", ColumnType::Str),
        ("task_id", ColumnType::Str),
        ("domain", ColumnType::Str),
        ("difficulty", ColumnType::U32),
        ("attempt", ColumnType::Str),
        ("attempt_verdict", ColumnType::Str),
        ("feedback_level", ColumnType::Str),
        ("feedback", ColumnType::Str),
        ("leak_blocked", ColumnType::Bool),
        ("wrong_attempts", ColumnType::U32),
        ("answer", ColumnType::Str),
        ("text", ColumnType::Str),
    ],
};

/// `train_log.parquet`: one row per (stage, step, metric), long format so a
/// stage can log any metric (loss, learning rate, tokens/s, accuracy by
/// domain) without a schema change. Each training stage replaces its own rows.
pub const TRAIN_LOG: TableSchema = TableSchema {
    name: "train_log",
    columns: &[
        ("stage", ColumnType::Str),
        ("step", ColumnType::U64),
        ("metric", ColumnType::Str),
        ("value", ColumnType::F64),
    ],
};

/// `rollouts.parquet`: one row per student attempt sampled during online
/// RL: which iteration, task and group member, the turn, the attempt and its
/// verdict, the teacher's reply (empty when the dialogue ended there), the
/// tokens generated with their summed log-probability, and the dialogue's
/// discounted reward.
pub const ROLLOUTS: TableSchema = TableSchema {
    name: "rollouts",
    columns: &[
        ("iteration", ColumnType::U64),
        ("task_id", ColumnType::Str),
        ("domain", ColumnType::Str),
        ("member", ColumnType::U32),
        ("turn", ColumnType::U32),
        ("attempt", ColumnType::Str),
        ("verdict", ColumnType::Str),
        ("feedback", ColumnType::Str),
        ("leak_blocked", ColumnType::Bool),
        ("tokens", ColumnType::U32),
        ("logprob", ColumnType::F64),
        ("reward", ColumnType::F64),
    ],
};

/// One row of `rollouts.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    pub iteration: u64,
    pub task_id: String,
    pub domain: DomainKind,
    pub member: u32,
    pub turn: u32,
    pub attempt: String,
    pub verdict: String,
    pub feedback: String,
    pub leak_blocked: bool,
    pub tokens: u32,
    pub logprob: f64,
    pub reward: f64,
}

pub fn rollouts_frame(rows: &[RolloutRow]) -> Result<DataFrame> {
    let s = |f: fn(&RolloutRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let u = |f: fn(&RolloutRow) -> u32| rows.iter().map(f).collect::<Vec<u32>>();
    let x = |f: fn(&RolloutRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    frame(vec![
        Column::new(
            "iteration".into(),
            rows.iter().map(|r| r.iteration).collect::<Vec<u64>>(),
        ),
        Column::new("task_id".into(), s(|r| &r.task_id)),
        Column::new("domain".into(), s(|r| r.domain.name())),
        Column::new("member".into(), u(|r| r.member)),
        Column::new("turn".into(), u(|r| r.turn)),
        Column::new("attempt".into(), s(|r| &r.attempt)),
        Column::new("verdict".into(), s(|r| &r.verdict)),
        Column::new("feedback".into(), s(|r| &r.feedback)),
        Column::new(
            "leak_blocked".into(),
            rows.iter().map(|r| r.leak_blocked).collect::<Vec<bool>>(),
        ),
        Column::new("tokens".into(), u(|r| r.tokens)),
        Column::new("logprob".into(), x(|r| r.logprob)),
        Column::new("reward".into(), x(|r| r.reward)),
    ])
}

/// Reads `rollouts.parquet` back into typed rows.
pub fn read_rollouts(path: &Path) -> Result<Vec<RolloutRow>> {
    let df = read_table(path, &ROLLOUTS)?;
    let (tasks, domains) = (strs(&df, "task_id")?, strs(&df, "domain")?);
    let (attempts, verdicts, feedback) = (
        strs(&df, "attempt")?,
        strs(&df, "verdict")?,
        strs(&df, "feedback")?,
    );
    let iterations = u64s(&df, "iteration")?;
    let (members, turns, tokens) = (
        u32s(&df, "member")?,
        u32s(&df, "turn")?,
        u32s(&df, "tokens")?,
    );
    let blocked = bools(&df, "leak_blocked")?;
    let (logprobs, rewards) = (f64s(&df, "logprob")?, f64s(&df, "reward")?);
    (0..df.height())
        .map(|i| {
            Ok(RolloutRow {
                iteration: iterations[i],
                task_id: tasks[i].to_string(),
                domain: domains[i]
                    .parse()
                    .map_err(|e: DataError| schema_err(path, format!("row {i}: {e}")))?,
                member: members[i],
                turn: turns[i],
                attempt: attempts[i].to_string(),
                verdict: verdicts[i].to_string(),
                feedback: feedback[i].to_string(),
                leak_blocked: blocked[i],
                tokens: tokens[i],
                logprob: logprobs[i],
                reward: rewards[i],
            })
        })
        .collect()
}

/// `eval/turns.parquet`: one row per (model, condition, seed, task, turn)
/// of the evaluation grid: the attempt, its verdict, and the feedback that
/// followed it with its source (`teacher`, `retry`; empty when the dialogue
/// ended with this attempt).
pub const EVAL_TURNS: TableSchema = TableSchema {
    name: "eval_turns",
    columns: &[
        ("model", ColumnType::Str),
        ("condition", ColumnType::Str),
        ("seed", ColumnType::U64),
        ("task_id", ColumnType::Str),
        ("domain", ColumnType::Str),
        ("difficulty", ColumnType::U32),
        ("turn", ColumnType::U32),
        ("attempt", ColumnType::Str),
        ("verdict", ColumnType::Str),
        ("correct", ColumnType::Bool),
        ("feedback", ColumnType::Str),
        ("feedback_source", ColumnType::Str),
        ("judged", ColumnType::Str),
        ("leak_blocked", ColumnType::Bool),
    ],
};

/// One row of `eval/turns.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalTurnRow {
    pub model: String,
    pub condition: String,
    pub seed: u64,
    pub task_id: String,
    pub domain: DomainKind,
    pub difficulty: u32,
    pub turn: u32,
    pub attempt: String,
    pub verdict: String,
    pub correct: bool,
    pub feedback: String,
    pub feedback_source: String,
    /// The responder's verdict on the attempt (`correct`, `wrong`), or
    /// empty when it was not asked.
    pub judged: String,
    /// The responder's first message failed the leak check and was
    /// replaced by the verdict (counted for whichever teacher spoke:
    /// programmatic, model or HTTP).
    pub leak_blocked: bool,
}

pub fn eval_turns_frame(rows: &[EvalTurnRow]) -> Result<DataFrame> {
    let s = |f: fn(&EvalTurnRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let u = |f: fn(&EvalTurnRow) -> u32| rows.iter().map(f).collect::<Vec<u32>>();
    frame(vec![
        Column::new("model".into(), s(|r| &r.model)),
        Column::new("condition".into(), s(|r| &r.condition)),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        Column::new("task_id".into(), s(|r| &r.task_id)),
        Column::new("domain".into(), s(|r| r.domain.name())),
        Column::new("difficulty".into(), u(|r| r.difficulty)),
        Column::new("turn".into(), u(|r| r.turn)),
        Column::new("attempt".into(), s(|r| &r.attempt)),
        Column::new("verdict".into(), s(|r| &r.verdict)),
        Column::new(
            "correct".into(),
            rows.iter().map(|r| r.correct).collect::<Vec<bool>>(),
        ),
        Column::new("feedback".into(), s(|r| &r.feedback)),
        Column::new("feedback_source".into(), s(|r| &r.feedback_source)),
        Column::new("judged".into(), s(|r| &r.judged)),
        Column::new(
            "leak_blocked".into(),
            rows.iter().map(|r| r.leak_blocked).collect::<Vec<bool>>(),
        ),
    ])
}

/// Reads `eval/turns.parquet` back into typed rows.
pub fn read_eval_turns(path: &Path) -> Result<Vec<EvalTurnRow>> {
    let df = read_table(path, &EVAL_TURNS)?;
    let col = |n| strs(&df, n);
    let (models, conditions, tasks, domains) = (
        col("model")?,
        col("condition")?,
        col("task_id")?,
        col("domain")?,
    );
    let (attempts, verdicts, feedback, sources) = (
        col("attempt")?,
        col("verdict")?,
        col("feedback")?,
        col("feedback_source")?,
    );
    let judged = col("judged")?;
    let seeds = u64s(&df, "seed")?;
    let (difficulties, turns) = (u32s(&df, "difficulty")?, u32s(&df, "turn")?);
    let correct = bools(&df, "correct")?;
    let leak_blocked = bools(&df, "leak_blocked")?;
    (0..df.height())
        .map(|i| {
            Ok(EvalTurnRow {
                model: models[i].to_string(),
                condition: conditions[i].to_string(),
                seed: seeds[i],
                task_id: tasks[i].to_string(),
                domain: domains[i]
                    .parse()
                    .map_err(|e: DataError| schema_err(path, format!("row {i}: {e}")))?,
                difficulty: difficulties[i],
                turn: turns[i],
                attempt: attempts[i].to_string(),
                verdict: verdicts[i].to_string(),
                correct: correct[i],
                feedback: feedback[i].to_string(),
                feedback_source: sources[i].to_string(),
                judged: judged[i].to_string(),
                leak_blocked: leak_blocked[i],
            })
        })
        .collect()
}

/// `critiques.parquet`: the critic's training data, one row per student
/// attempt on a train task: the dialogue before the critique as the critic
/// sees it (`context`, no privileged information), the attempt, its
/// verdict, and the teacher's critique (`Correct.` for a correct attempt).
pub const CRITIQUES: TableSchema = TableSchema {
    name: "critiques",
    columns: &[
        ("task_id", ColumnType::Str),
        ("domain", ColumnType::Str),
        ("dialogue", ColumnType::U64),
        ("turn", ColumnType::U32),
        ("context", ColumnType::Str),
        ("attempt", ColumnType::Str),
        ("verdict", ColumnType::Str),
        ("critique", ColumnType::Str),
        ("leak_blocked", ColumnType::Bool),
    ],
};

/// Builds `critiques.parquet` from columns in row order.
#[allow(clippy::too_many_arguments)]
pub fn critiques_frame(
    task_id: Vec<&str>,
    domain: Vec<&str>,
    dialogue: Vec<u64>,
    turn: Vec<u32>,
    context: Vec<&str>,
    attempt: Vec<&str>,
    verdict: Vec<&str>,
    critique: Vec<&str>,
    leak_blocked: Vec<bool>,
) -> Result<DataFrame> {
    frame(vec![
        Column::new("task_id".into(), task_id),
        Column::new("domain".into(), domain),
        Column::new("dialogue".into(), dialogue),
        Column::new("turn".into(), turn),
        Column::new("context".into(), context),
        Column::new("attempt".into(), attempt),
        Column::new("verdict".into(), verdict),
        Column::new("critique".into(), critique),
        Column::new("leak_blocked".into(), leak_blocked),
    ])
}

/// One row of `train_log.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLogRow {
    pub stage: String,
    pub step: u64,
    pub metric: String,
    pub value: f64,
}

pub fn train_log_frame(rows: &[TrainLogRow]) -> Result<DataFrame> {
    frame(vec![
        Column::new(
            "stage".into(),
            rows.iter().map(|r| r.stage.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step).collect::<Vec<u64>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<f64>>(),
        ),
    ])
}

pub fn read_train_log(path: &Path) -> Result<Vec<TrainLogRow>> {
    let df = read_table(path, &TRAIN_LOG)?;
    let (stages, metrics) = (strs(&df, "stage")?, strs(&df, "metric")?);
    let steps = u64s(&df, "step")?;
    let values = f64s(&df, "value")?;
    Ok((0..df.height())
        .map(|i| TrainLogRow {
            stage: stages[i].to_string(),
            step: steps[i],
            metric: metrics[i].to_string(),
            value: values[i],
        })
        .collect())
}

/// Replaces `stage`'s rows of the train log at `path` (creating it if
/// needed) with `rows`, keeping other stages' rows; written atomically.
pub fn replace_train_log(path: &Path, stage: &str, rows: &[TrainLogRow]) -> Result<()> {
    let mut all = if path.exists() {
        read_train_log(path)?
    } else {
        Vec::new()
    };
    all.retain(|r| r.stage != stage);
    all.extend_from_slice(rows);
    write_table(path, &TRAIN_LOG, &mut train_log_frame(&all)?)
}

/// Which part of the data a task belongs to. Splits are disjoint by content.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown split `{s}` (expected train, val or test)"))
    }
}

fn schema_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Schema {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks that `df` has every column of `schema` with the right type.
pub fn check_schema(df: &DataFrame, schema: &TableSchema, path: &Path) -> Result<()> {
    for (name, ty) in schema.columns {
        let column = df.column(name).map_err(|_| {
            schema_err(
                path,
                format!("table `{}` is missing column `{name}`", schema.name),
            )
        })?;
        if column.dtype() != &ty.dtype() {
            return Err(schema_err(
                path,
                format!(
                    "table `{}`: column `{name}` has type {}, expected {}",
                    schema.name,
                    column.dtype(),
                    ty.dtype()
                ),
            ));
        }
        if column.null_count() > 0 {
            return Err(schema_err(
                path,
                format!(
                    "table `{}`: column `{name}` has missing values",
                    schema.name
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the schema and writes `df` to `path` atomically.
pub fn write_table(path: &Path, schema: &TableSchema, df: &mut DataFrame) -> Result<()> {
    check_schema(df, schema, path)?;
    crate::atomic::write_with(path, |file| {
        ParquetWriter::new(file)
            .with_statistics(StatisticsOptions::empty())
            .finish(df)
            .map(|_| ())
            .map_err(|e| DataError::Parquet {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    })
}

/// Reads a parquet table and checks it against `schema`.
pub fn read_table(path: &Path, schema: &TableSchema) -> Result<DataFrame> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| DataError::Parquet {
            path: path.to_path_buf(),
            reason: first_line(&e.to_string()),
        })?;
    check_schema(&df, schema, path)?;
    Ok(df)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Typed access to a string column whose presence [`check_schema`] verified.
pub fn strs<'a>(df: &'a DataFrame, name: &str) -> Result<Vec<&'a str>> {
    let ca = df
        .column(name)
        .and_then(|c| c.str())
        .map_err(|e| DataError::Generation(e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

/// A column's values, nulls as the default; for readers of tables whose
/// schemas live outside this crate too.
pub fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    let ca = df
        .column(name)
        .and_then(|c| c.u64())
        .map_err(|e| DataError::Generation(e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

/// A column's values, nulls as the default; for readers of tables whose
/// schemas live outside this crate too.
pub fn u32s(df: &DataFrame, name: &str) -> Result<Vec<u32>> {
    let ca = df
        .column(name)
        .and_then(|c| c.u32())
        .map_err(|e| DataError::Generation(e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

/// A column's values, nulls as the default; for readers of tables whose
/// schemas live outside this crate too.
pub fn bools(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    let ca = df
        .column(name)
        .and_then(|c| c.bool())
        .map_err(|e| DataError::Generation(e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
}

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let ca = df
        .column(name)
        .and_then(|c| c.f64())
        .map_err(|e| DataError::Generation(e.to_string()))?;
    Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn frame(columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(columns).map_err(|e| DataError::Generation(e.to_string()))
}

/// A task with the split it belongs to: one row of `tasks.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub task: Task,
    pub split: Split,
}

pub fn tasks_frame(rows: &[TaskRow]) -> Result<DataFrame> {
    let s = |f: fn(&TaskRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    frame(vec![
        Column::new("task_id".into(), s(|r| &r.task.task_id)),
        Column::new("domain".into(), s(|r| r.task.domain.name())),
        Column::new(
            "difficulty".into(),
            rows.iter().map(|r| r.task.difficulty).collect::<Vec<u32>>(),
        ),
        Column::new("split".into(), s(|r| r.split.name())),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.task.seed).collect::<Vec<u64>>(),
        ),
        Column::new("prompt".into(), s(|r| &r.task.prompt)),
        Column::new("solution".into(), s(|r| &r.task.solution)),
        Column::new("metadata".into(), s(|r| &r.task.metadata)),
    ])
}

/// Reads `tasks.parquet` back into typed rows.
pub fn read_tasks(path: &Path) -> Result<Vec<TaskRow>> {
    let df = read_table(path, &TASKS)?;
    let (ids, domains, splits) = (
        strs(&df, "task_id")?,
        strs(&df, "domain")?,
        strs(&df, "split")?,
    );
    let (prompts, solutions, metas) = (
        strs(&df, "prompt")?,
        strs(&df, "solution")?,
        strs(&df, "metadata")?,
    );
    let (difficulties, seeds) = (u32s(&df, "difficulty")?, u64s(&df, "seed")?);
    (0..df.height())
        .map(|i| {
            let bad = |what: String| schema_err(path, format!("row {i}: {what}"));
            let domain: DomainKind = domains[i]
                .parse()
                .map_err(|e: DataError| bad(e.to_string()))?;
            let split: Split = splits[i].parse().map_err(bad)?;
            Ok(TaskRow {
                task: Task {
                    task_id: ids[i].to_string(),
                    domain,
                    difficulty: difficulties[i],
                    seed: seeds[i],
                    prompt: prompts[i].to_string(),
                    solution: solutions[i].to_string(),
                    metadata: metas[i].to_string(),
                },
                split,
            })
        })
        .collect()
}

/// One row of `synthetic_dialogues.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticDialogue {
    pub dialogue_id: String,
    pub task_id: String,
    pub domain: DomainKind,
    pub difficulty: u32,
    pub attempt: String,
    pub attempt_verdict: String,
    pub feedback_level: String,
    pub feedback: String,
    pub leak_blocked: bool,
    /// Error-model attempts (each with feedback) that open the dialogue;
    /// the student turns after them (repairs, the answer) are the ones
    /// trained.
    pub wrong_attempts: u32,
    pub answer: String,
    /// The rendered dialogue (see [`crate::dialogue`]).
    pub text: String,
}

pub fn synthetic_frame(rows: &[SyntheticDialogue]) -> Result<DataFrame> {
    let s = |f: fn(&SyntheticDialogue) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    frame(vec![
        Column::new("dialogue_id".into(), s(|r| &r.dialogue_id)),
        Column::new("task_id".into(), s(|r| &r.task_id)),
        Column::new("domain".into(), s(|r| r.domain.name())),
        Column::new(
            "difficulty".into(),
            rows.iter().map(|r| r.difficulty).collect::<Vec<u32>>(),
        ),
        Column::new("attempt".into(), s(|r| &r.attempt)),
        Column::new("attempt_verdict".into(), s(|r| &r.attempt_verdict)),
        Column::new("feedback_level".into(), s(|r| &r.feedback_level)),
        Column::new("feedback".into(), s(|r| &r.feedback)),
        Column::new(
            "leak_blocked".into(),
            rows.iter().map(|r| r.leak_blocked).collect::<Vec<bool>>(),
        ),
        Column::new(
            "wrong_attempts".into(),
            rows.iter().map(|r| r.wrong_attempts).collect::<Vec<u32>>(),
        ),
        Column::new("answer".into(), s(|r| &r.answer)),
        Column::new("text".into(), s(|r| &r.text)),
    ])
}

/// Reads `synthetic_dialogues.parquet` back into typed rows.
pub fn read_synthetic(path: &Path) -> Result<Vec<SyntheticDialogue>> {
    let df = read_table(path, &SYNTHETIC_DIALOGUES)?;
    let col = |n| strs(&df, n);
    let (ids, tasks, domains, attempts) = (
        col("dialogue_id")?,
        col("task_id")?,
        col("domain")?,
        col("attempt")?,
    );
    let (verdicts, levels, feedback) = (
        col("attempt_verdict")?,
        col("feedback_level")?,
        col("feedback")?,
    );
    let (answers, texts) = (col("answer")?, col("text")?);
    let (difficulties, blocked) = (u32s(&df, "difficulty")?, bools(&df, "leak_blocked")?);
    let wrong = u32s(&df, "wrong_attempts")?;
    (0..df.height())
        .map(|i| {
            let domain: DomainKind = domains[i]
                .parse()
                .map_err(|e: DataError| schema_err(path, format!("row {i}: {e}")))?;
            Ok(SyntheticDialogue {
                dialogue_id: ids[i].to_string(),
                task_id: tasks[i].to_string(),
                domain,
                difficulty: difficulties[i],
                attempt: attempts[i].to_string(),
                attempt_verdict: verdicts[i].to_string(),
                feedback_level: levels[i].to_string(),
                feedback: feedback[i].to_string(),
                leak_blocked: blocked[i],
                wrong_attempts: wrong[i],
                answer: answers[i].to_string(),
                text: texts[i].to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;
    use crate::domain::arith::Arith;

    fn rows() -> Vec<TaskRow> {
        (0..5)
            .map(|i| TaskRow {
                task: Arith.generate(i, 3),
                split: Split::ALL[i as usize % 3],
            })
            .collect()
    }

    #[test]
    fn tasks_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.parquet");
        write_table(&path, &TASKS, &mut tasks_frame(&rows()).unwrap()).unwrap();
        assert_eq!(read_tasks(&path).unwrap(), rows());
    }

    #[test]
    fn missing_and_mistyped_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.parquet");
        let mut df = tasks_frame(&rows()).unwrap().drop("solution").unwrap();
        let mut f = File::create(&path).unwrap();
        ParquetWriter::new(&mut f).finish(&mut df).unwrap();
        let err = read_tasks(&path).unwrap_err().to_string();
        assert!(
            err.contains("tasks.parquet") && err.contains("missing column `solution`"),
            "{err}"
        );

        let mut df = tasks_frame(&rows()).unwrap();
        df.replace("seed", Column::new("seed".into(), vec!["x"; 5]))
            .unwrap();
        let mut f = File::create(&path).unwrap();
        ParquetWriter::new(&mut f).finish(&mut df).unwrap();
        let err = read_tasks(&path).unwrap_err().to_string();
        assert!(
            err.contains("column `seed` has type str, expected u64"),
            "{err}"
        );
    }

    #[test]
    fn rollouts_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollouts.parquet");
        let rows: Vec<RolloutRow> = (0..3)
            .map(|i| RolloutRow {
                iteration: i,
                task_id: format!("arith-{i}"),
                domain: DomainKind::Arith,
                member: i as u32 % 2,
                turn: 1 + i as u32,
                attempt: "12".into(),
                verdict: "wrong".into(),
                feedback: if i == 2 {
                    String::new()
                } else {
                    "Too high.".into()
                },
                leak_blocked: i == 1,
                tokens: 3,
                logprob: -1.5 * i as f64,
                reward: 0.49,
            })
            .collect();
        write_table(&path, &ROLLOUTS, &mut rollouts_frame(&rows).unwrap()).unwrap();
        assert_eq!(read_rollouts(&path).unwrap(), rows);
    }

    #[test]
    fn train_log_keeps_other_stages_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train_log.parquet");
        let row = |stage: &str, step, value| TrainLogRow {
            stage: stage.into(),
            step,
            metric: "train_loss".into(),
            value,
        };
        replace_train_log(
            &path,
            "pretrain",
            &[row("pretrain", 1, 2.0), row("pretrain", 2, 1.0)],
        )
        .unwrap();
        replace_train_log(&path, "student", &[row("student", 1, 0.5)]).unwrap();
        replace_train_log(&path, "pretrain", &[row("pretrain", 1, 3.0)]).unwrap();
        let back = read_train_log(&path).unwrap();
        assert_eq!(back, vec![row("student", 1, 0.5), row("pretrain", 1, 3.0)]);
    }

    #[test]
    fn truncated_and_absent_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.parquet");
        write_table(&path, &TASKS, &mut tasks_frame(&rows()).unwrap()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_tasks(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a readable parquet file", path.display())),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let err = read_tasks(&dir.path().join("absent.parquet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.parquet"), "{err}");
    }
}
