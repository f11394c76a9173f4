//! The tables stages hand on, as polars frames persisted to parquet. Every
//! table is declared once, with [`table!`](crate::table): its row type,
//! whose fields are its columns in order, yields the schema, the writer and
//! the reader. Reading checks the schema, so a missing or mistyped column is
//! a clear error naming the file and the column, never a panic deep inside
//! a stage.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;
/// For [`table!`](crate::table) in other crates.
pub use polars::prelude::{Column, DataFrame};

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

/// A value one column of a table holds: the column's type, how a column of
/// such values is built, and how it is read back.
pub trait Cell: Sized {
    const TYPE: ColumnType;
    fn column(name: &str, values: Vec<&Self>) -> Column;
    /// The column's values; `path` names the file in errors.
    fn read(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Self>>;
}

impl Cell for String {
    const TYPE: ColumnType = ColumnType::Str;
    fn column(name: &str, values: Vec<&Self>) -> Column {
        Column::new(
            name.into(),
            values
                .into_iter()
                .map(String::as_str)
                .collect::<Vec<&str>>(),
        )
    }
    fn read(df: &DataFrame, name: &str, _: &Path) -> Result<Vec<Self>> {
        Ok(strs(df, name)?.into_iter().map(str::to_string).collect())
    }
}

macro_rules! number_cell {
    ($ty:ty, $col:ident, $read:ident) => {
        impl Cell for $ty {
            const TYPE: ColumnType = ColumnType::$col;
            fn column(name: &str, values: Vec<&Self>) -> Column {
                Column::new(
                    name.into(),
                    values.into_iter().copied().collect::<Vec<$ty>>(),
                )
            }
            fn read(df: &DataFrame, name: &str, _: &Path) -> Result<Vec<Self>> {
                $read(df, name)
            }
        }
    };
}

number_cell!(u32, U32, u32s);
number_cell!(u64, U64, u64s);
number_cell!(f64, F64, f64s);
number_cell!(bool, Bool, bools);

/// A value stored by its name (`arith`, `train`) and parsed back, with the
/// row of a name that does not parse in the error.
macro_rules! named_cell {
    ($ty:ty) => {
        impl Cell for $ty {
            const TYPE: ColumnType = ColumnType::Str;
            fn column(name: &str, values: Vec<&Self>) -> Column {
                Column::new(
                    name.into(),
                    values.into_iter().map(|v| v.name()).collect::<Vec<&str>>(),
                )
            }
            fn read(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Self>> {
                strs(df, name)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.parse::<$ty>()
                            .map_err(|e| schema_err(path, format!("row {i}: {e}")))
                    })
                    .collect()
            }
        }
    };
}

named_cell!(DomainKind);
named_cell!(Split);

/// A row type declared with [`table!`](crate::table): one table.
pub trait Table: Sized {
    const SCHEMA: TableSchema;
    /// The rows as a frame, columns in declaration order.
    fn frame(rows: &[Self]) -> Result<DataFrame>;
    /// Reads the table at `path`, checking its schema.
    fn read(path: &Path) -> Result<Vec<Self>>;
    /// Writes `rows` to `path` atomically.
    fn write(path: &Path, rows: &[Self]) -> Result<()> {
        write_table(path, &Self::SCHEMA, &mut Self::frame(rows)?)
    }
}

/// Declares a table: the row struct (each field a column, in order, of a
/// [`Cell`] type), its [`TableSchema`] constant, and its [`Table`] writer
/// and reader, all from one list of fields.
///
/// ```ignore
/// didact_data::table! {
///     /// `train_log.parquet`: ...
///     TRAIN_LOG = "train_log";
///     /// One row of `train_log.parquet`.
///     #[derive(Debug, Clone, PartialEq)]
///     pub struct TrainLogRow { pub stage: String, pub step: u64, pub metric: String, pub value: f64 }
/// }
/// ```
#[macro_export]
macro_rules! table {
    (
        $(#[$schema_meta:meta])*
        $schema:ident = $name:literal;
        $(#[$meta:meta])*
        pub struct $row:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $row {
            $( $(#[$field_meta])* pub $field: $ty ),*
        }

        $(#[$schema_meta])*
        pub const $schema: $crate::tables::TableSchema = $crate::tables::TableSchema {
            name: $name,
            columns: &[ $( (stringify!($field), <$ty as $crate::tables::Cell>::TYPE) ),* ],
        };

        impl $crate::tables::Table for $row {
            const SCHEMA: $crate::tables::TableSchema = $schema;

            fn frame(rows: &[Self]) -> $crate::Result<$crate::tables::DataFrame> {
                $crate::tables::frame(vec![ $(
                    <$ty as $crate::tables::Cell>::column(
                        stringify!($field),
                        rows.iter().map(|r| &r.$field).collect(),
                    )
                ),* ])
            }

            fn read(path: &::std::path::Path) -> $crate::Result<Vec<Self>> {
                let df = $crate::tables::read_table(path, &$schema)?;
                $(
                    let mut $field =
                        <$ty as $crate::tables::Cell>::read(&df, stringify!($field), path)?
                            .into_iter();
                )*
                let mut rows = Vec::with_capacity(df.height());
                for _ in 0..df.height() {
                    rows.push($row {
                        $( $field: $field.next().expect("a checked column has a value per row"), )*
                    });
                }
                Ok(rows)
            }
        }
    };
}

table! {
    /// `tasks.parquet`: one row per task. `metadata` is the domain's
    /// privileged information as JSON (hidden tests, solution grid, maze
    /// layout). Stages read it as [`TaskRow`]s.
    TASKS = "tasks";
    /// The columns of `tasks.parquet`; [`TaskRow`] is the form stages use.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TaskRecord {
        pub task_id: String,
        pub domain: DomainKind,
        pub difficulty: u32,
        pub split: Split,
        pub seed: u64,
        pub prompt: String,
        pub solution: String,
        pub metadata: String,
    }
}

table! {
    /// `synthetic_dialogues.parquet`: for train tasks, `wrong_attempts` wrong
    /// attempts from the error model, each answered by the teacher, then the
    /// student's repairs (each answered by the teacher while still wrong) and
    /// the correct answer; used to warm-start the feedback format. Pretraining
    /// trains every student turn after the first `wrong_attempts`. `attempt`,
    /// `attempt_verdict`, `feedback` and `leak_blocked` describe the first
    /// exchange (`text` holds the whole dialogue); `leak_blocked` marks
    /// feedback that failed the leak check and was replaced by the verdict-only
    /// message.
    SYNTHETIC_DIALOGUES = "synthetic_dialogues";
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
}

table! {
    /// `train_log.parquet`: one row per (stage, step, metric), long format so a
    /// stage can log any metric (loss, learning rate, tokens/s, accuracy by
    /// domain) without a schema change. Each training stage replaces its own
    /// rows.
    TRAIN_LOG = "train_log";
    /// One row of `train_log.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct TrainLogRow {
        pub stage: String,
        pub step: u64,
        pub metric: String,
        pub value: f64,
    }
}

table! {
    /// `rollouts.parquet`: one row per student attempt sampled during online
    /// RL: which iteration, task and group member, the turn, the attempt and its
    /// verdict, the teacher's reply (empty when the dialogue ended there), the
    /// tokens generated with their summed log-probability, and the dialogue's
    /// discounted reward.
    ROLLOUTS = "rollouts";
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
}

table! {
    /// `eval/turns.parquet`: one row per (model, condition, seed, task, turn)
    /// of the evaluation grid: the attempt, its verdict, and the feedback that
    /// followed it with its source (`teacher`, `retry`; empty when the dialogue
    /// ended with this attempt).
    EVAL_TURNS = "eval_turns";
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
}

table! {
    /// `critiques.parquet`: the critic's training data, one row per student
    /// attempt on a train task: the dialogue before the critique as the critic
    /// sees it (`context`, no privileged information), the attempt, its
    /// verdict, and the teacher's critique (`Correct.` for a correct attempt).
    CRITIQUES = "critiques";
    /// One critique: the teacher's message on one attempt, with the dialogue
    /// before it as the critic sees it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CritiqueRow {
        pub task_id: String,
        pub domain: DomainKind,
        /// Index of the dialogue the attempt belongs to.
        pub dialogue: u64,
        pub turn: u32,
        /// The rendered dialogue up to and including the opening teacher token.
        pub context: String,
        pub attempt: String,
        pub verdict: String,
        pub critique: String,
        pub leak_blocked: bool,
    }
}

// ---- the report's tables (`analyse`, `sml`, `transfer`) ----

table! {
    /// `report/summary.parquet`: accuracy by turn per model, condition and
    /// domain (`all` pooled), pooled over training seeds, with a two-level
    /// bootstrap 95% interval.
    SUMMARY = "summary";
    /// One row of `report/summary.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SummaryRecord {
        pub model: String,
        pub condition: String,
        pub domain: String,
        pub turn: u32,
        pub cum_accuracy: f64,
        pub ci_low: f64,
        pub ci_high: f64,
        pub n_tasks: u32,
        pub n_seeds: u32,
    }
}

table! {
    /// `report/gains.parquet`: Δ = acc@K − acc@1 with its interval, Δi→c,
    /// Δc→i, and on critic rows the recovered fraction of the teacher's gain
    /// (NaN elsewhere).
    GAINS = "gains";
    /// One row of `report/gains.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct GainRecord {
        pub model: String,
        pub condition: String,
        pub domain: String,
        pub delta: f64,
        pub delta_ci_low: f64,
        pub delta_ci_high: f64,
        pub delta_i_to_c: f64,
        pub delta_c_to_i: f64,
        pub recovered_fraction: f64,
        /// Its two-level bootstrap 95% interval (NaN where the teacher's
        /// gain is not told apart from zero, and on rows other than critic).
        pub recovered_ci_low: f64,
        pub recovered_ci_high: f64,
        pub n_tasks: u32,
        pub n_seeds: u32,
    }
}

table! {
    /// `report/contrasts.parquet`: one row per (contrast, domain, turn), the
    /// paired difference pooled over training seeds. Contrast names:
    /// `{model}:{a}-{b}` (conditions a and b of one model, cumulative accuracy
    /// at `turn`), `{m1}-{m2}:{condition}` (two models under one condition)
    /// and `{m1}-{m2}:{condition}:gain` (difference in differences of
    /// Δ(turn 1, `turn`)).
    CONTRASTS = "contrasts";
    /// One row of `report/contrasts.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ContrastRecord {
        pub contrast: String,
        pub domain: String,
        pub turn: u32,
        pub estimate: f64,
        pub ci_low: f64,
        pub ci_high: f64,
        pub n_tasks: u32,
        pub n_seeds: u32,
    }
}

table! {
    /// `report/contrasts_by_seed.parquet`: the estimates of [`CONTRASTS`]
    /// for each training seed alone.
    CONTRASTS_BY_SEED = "contrasts_by_seed";
    /// One row of `report/contrasts_by_seed.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ContrastBySeedRecord {
        pub contrast: String,
        pub domain: String,
        pub turn: u32,
        pub training_seed: u64,
        pub estimate: f64,
        pub n_tasks: u32,
    }
}

table! {
    /// `report/revisions.parquet`: per model, condition, domain and turn t,
    /// the dialogues whose answer standing at t is wrong (`n_wrong`), the fix
    /// rate P(correct at t+1 | wrong at t) with its interval, the revisions
    /// made (an attempt at t+1 after a wrong one at t), how many repeat the
    /// previous answer, and, where the domain can tell
    /// ([`crate::revision::targeted_revision`]), the share of revisions
    /// that change only what the feedback pointed at.
    REVISIONS = "revisions";
    /// One row of `report/revisions.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct RevisionRecord {
        pub model: String,
        pub condition: String,
        pub domain: String,
        pub turn: u32,
        pub n_wrong: u32,
        pub fix_rate: f64,
        pub fix_ci_low: f64,
        pub fix_ci_high: f64,
        pub n_revisions: u32,
        pub repeat_rate: f64,
        pub n_judged: u32,
        pub targeted_rate: f64,
        pub n_seeds: u32,
    }
}

table! {
    /// `report/critic_messages.parquet`: the critic's messages in the eval
    /// read against the domain's teacher (`Domain::read_critique`), one row
    /// per (model, condition, domain), `all` pooling the domains.
    CRITIC_MESSAGES = "critic_messages";
    /// One row of `report/critic_messages.parquet`. Shares are NaN where
    /// their count is zero.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CriticMessageRecord {
        pub model: String,
        pub condition: String,
        pub domain: String,
        /// Critiques the critic wrote, in domains that have a reader.
        pub n_messages: u32,
        /// Share of them in one of the teacher's forms for the domain.
        pub well_formed: f64,
        /// Critiques of wrong or malformed attempts whose claim the task
        /// and the attempt settle.
        pub n_claims: u32,
        /// Share of those claims that hold.
        pub claims_true: f64,
        /// Attempts the critic judged (its verdict against the verifier).
        pub n_judged: u32,
        /// P(correct | judged correct).
        pub precision: f64,
        /// P(judged correct | correct).
        pub recall: f64,
        pub n_seeds: u32,
    }
}

table! {
    /// `report/transfer.parquet`: the cross-domain matrix, one row per
    /// (model, evaluated domain): accuracy at turns 1 and K with the teacher,
    /// the gain between them, and the difference from the base model at K
    /// (paired over tasks), each with a bootstrap 95% interval.
    TRANSFER_MATRIX = "transfer";
    /// One cell of the matrix.
    #[derive(Debug, Clone, PartialEq)]
    pub struct MatrixCell {
        pub model: String,
        /// `none` for the base model, `all` for the RL²F student of `student`.
        pub trained_on: String,
        pub evaluated_on: String,
        pub acc_1: f64,
        pub acc_k: f64,
        pub delta: f64,
        pub delta_ci_low: f64,
        pub delta_ci_high: f64,
        pub vs_base: f64,
        pub vs_base_ci_low: f64,
        pub vs_base_ci_high: f64,
        pub n_tasks: u32,
    }
}

table! {
    /// `sml/turns.parquet`: one row per student turn of an SML evaluation
    /// dialogue.
    SML_TURNS = "sml_turns";
    /// One row of `sml/turns.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SmlTurnRow {
        pub model: String,
        /// `sharded` or `full`.
        pub spec: String,
        pub domain: String,
        /// The fully specified task's id, shared by both specs.
        pub task_id: String,
        pub turn: u32,
        pub attempt: String,
        pub feedback: String,
        pub question: bool,
        pub premature: bool,
        pub correct: bool,
    }
}

table! {
    /// `sml/summary.parquet`, long format: `metric` is `cum_accuracy` (by
    /// `turn`), `questions_per_dialogue` or `premature_rate` (share of
    /// dialogues with an answer given before every essential shard was known;
    /// `turn` 0 for both).
    SML_SUMMARY = "sml_summary";
    /// One row of `sml/summary.parquet`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct SmlSummaryRow {
        pub model: String,
        pub spec: String,
        pub domain: String,
        pub metric: String,
        pub turn: u32,
        pub value: f64,
        pub ci_low: f64,
        pub ci_high: f64,
        pub n_dialogues: u32,
    }
}

/// Replaces `stage`'s rows of the train log at `path` (creating it if
/// needed) with `rows`, keeping other stages' rows; written atomically.
pub fn replace_train_log(path: &Path, stage: &str, rows: &[TrainLogRow]) -> Result<()> {
    let mut all = if path.exists() {
        TrainLogRow::read(path)?
    } else {
        Vec::new()
    };
    all.retain(|r| r.stage != stage);
    all.extend_from_slice(rows);
    TrainLogRow::write(path, &all)
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

/// A frame of equal-length columns; for [`table!`](crate::table).
#[doc(hidden)]
pub fn frame(columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(columns).map_err(|e| DataError::Generation(e.to_string()))
}

/// A task with the split it belongs to: one row of `tasks.parquet` as
/// stages use it ([`TaskRecord`] holds its columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub task: Task,
    pub split: Split,
}

impl From<&TaskRow> for TaskRecord {
    fn from(r: &TaskRow) -> Self {
        let t = &r.task;
        Self {
            task_id: t.task_id.clone(),
            domain: t.domain,
            difficulty: t.difficulty,
            split: r.split,
            seed: t.seed,
            prompt: t.prompt.clone(),
            solution: t.solution.clone(),
            metadata: t.metadata.clone(),
        }
    }
}

impl From<TaskRecord> for TaskRow {
    fn from(r: TaskRecord) -> Self {
        Self {
            task: Task {
                task_id: r.task_id,
                domain: r.domain,
                difficulty: r.difficulty,
                seed: r.seed,
                prompt: r.prompt,
                solution: r.solution,
                metadata: r.metadata,
            },
            split: r.split,
        }
    }
}

/// `tasks.parquet`'s frame.
pub fn tasks_frame(rows: &[TaskRow]) -> Result<DataFrame> {
    TaskRecord::frame(&rows.iter().map(TaskRecord::from).collect::<Vec<_>>())
}

/// Reads `tasks.parquet` back into typed rows.
pub fn read_tasks(path: &Path) -> Result<Vec<TaskRow>> {
    Ok(TaskRecord::read(path)?
        .into_iter()
        .map(TaskRow::from)
        .collect())
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
        write_table(&path, &ROLLOUTS, &mut RolloutRow::frame(&rows).unwrap()).unwrap();
        assert_eq!(RolloutRow::read(&path).unwrap(), rows);
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
        let back = TrainLogRow::read(&path).unwrap();
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
