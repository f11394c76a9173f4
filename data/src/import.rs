//! `didact data import`: tasks from a question/answer dataset (JSONL or
//! parquet) for the imported domains, `numeric` (GSM8K-style) and `exact`.
//!
//! Each row gives a task: `prompt` is the question as it is, `solution` the
//! answer normalised by the domain (the final number for `numeric`, see
//! [`crate::domain::numeric`]; the whitespace-collapsed text for `exact`),
//! `metadata` the original answer text and where it came from
//! ([`ImportMeta`]), `difficulty` 0 and `seed` the import seed.
//!
//! Splits come from the rows' split field when they have one (`train`,
//! `val`, `test`; `validation`, `valid` and `dev` mean `val`), else from the
//! seed: kept tasks are ordered by a hash of the seed and their content, and
//! the first `test_fraction` of them go to test, the next `val_fraction` to
//! val, the rest to train. Either way a task's split depends only on its
//! content (and the seed), not on the order of the rows.
//!
//! Rows whose prompts are equal up to whitespace are one task: the first
//! is kept, in the most held-out split any copy is labelled with (test over
//! val over train), so splits stay disjoint by content hash.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::domain::exact::collapse_whitespace;
use crate::domain::numeric::{ImportMeta, final_number};
use crate::domain::{DomainKind, Task, content_hash};
use crate::error::{DataError, Result};
use crate::rng::mix_seed;
use crate::tables::{Split, TaskRow};

/// Fraction of val and of test tasks when neither the rows nor the caller
/// say otherwise.
pub const DEFAULT_FRACTION: f64 = 0.1;

/// What to import and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// `numeric` or `exact`.
    pub kind: DomainKind,
    /// Field (JSONL key or parquet column) holding the question.
    pub question_field: String,
    /// Field holding the answer: a string, or a number.
    pub answer_field: String,
    /// Field holding each row's split; used when the rows have it.
    pub split_field: String,
    /// Fraction of val tasks when splits come from the seed
    /// ([`DEFAULT_FRACTION`] when `None`); an error when rows have splits.
    pub val_fraction: Option<f64>,
    /// Fraction of test tasks, likewise.
    pub test_fraction: Option<f64>,
    /// Seed of the split assignment, recorded as each task's `seed`.
    pub seed: u64,
}

impl ImportOptions {
    /// Numeric or exact-match import with the fields `question`, `answer`
    /// and `split`, seed 0 and the default fractions.
    pub fn new(kind: DomainKind) -> Self {
        Self {
            kind,
            question_field: "question".into(),
            answer_field: "answer".into(),
            split_field: "split".into(),
            val_fraction: None,
            test_fraction: None,
            seed: 0,
        }
    }
}

/// One row of the source, with where it was (line or row, from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub row: usize,
    pub question: String,
    pub answer: String,
    pub split: Option<Split>,
}

/// The file formats an import reads, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => Ok(Self::Jsonl),
            Some("parquet") => Ok(Self::Parquet),
            other => Err(whole_file(
                path,
                format!(
                    "unknown extension {} (expected .jsonl or .parquet)",
                    other.map_or("(none)".to_string(), |e| format!("`.{e}`"))
                ),
            )),
        }
    }

    /// How an error points into a file of this format.
    fn at(self, row: usize) -> String {
        match self {
            Self::Jsonl => format!(":{row}"),
            Self::Parquet => format!(": row {row}"),
        }
    }
}

/// The result of an import: the task rows in source order, and counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub rows: Vec<TaskRow>,
    /// Rows read from the source.
    pub read: usize,
    /// Rows dropped because an earlier row had the same prompt.
    pub duplicates: usize,
    /// Of those, rows whose answer differed from the kept row's.
    pub conflicting: usize,
    /// Whether splits came from the rows' split field (else from the seed).
    pub splits_from_field: bool,
}

impl Imported {
    pub fn count(&self, split: Split) -> usize {
        self.rows.iter().filter(|r| r.split == split).count()
    }
}

fn whole_file(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Import {
        path: path.to_path_buf(),
        at: String::new(),
        reason: reason.into(),
    }
}

/// Reads the source and builds its tasks.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let format = Format::of(path)?;
    let records = read_records(path, format, opts)?;
    build(path, format, records, opts)
}

/// Reads the question, answer and (if present) split of every row.
pub fn read_records(path: &Path, format: Format, opts: &ImportOptions) -> Result<Vec<Record>> {
    let records = match format {
        Format::Jsonl => read_jsonl(path, opts)?,
        Format::Parquet => read_parquet(path, opts)?,
    };
    if records.is_empty() {
        return Err(whole_file(path, "no rows"));
    }
    Ok(records)
}

fn parse_split(value: &str) -> std::result::Result<Split, String> {
    match value.trim().to_lowercase().as_str() {
        "train" => Ok(Split::Train),
        "val" | "valid" | "validation" | "dev" => Ok(Split::Val),
        "test" => Ok(Split::Test),
        _ => Err(format!(
            "unknown split `{value}` (expected train, val or test)"
        )),
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_jsonl(path: &Path, opts: &ImportOptions) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut bytes = Vec::new();
    for line_no in 1.. {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let err = |reason: String| DataError::Import {
            path: path.to_path_buf(),
            at: format!(":{line_no}"),
            reason,
        };
        let line = std::str::from_utf8(&bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(err(format!(
                "expected a JSON object, got {}",
                json_type(&value)
            )));
        };
        let field = |name: &str| {
            object.get(name).ok_or_else(|| {
                let keys: Vec<&str> = object.keys().map(String::as_str).take(20).collect();
                err(format!(
                    "field `{name}` is missing (the object has: {})",
                    keys.join(", ")
                ))
            })
        };
        let question = match field(&opts.question_field)? {
            serde_json::Value::String(s) => s.clone(),
            other => {
                return Err(err(format!(
                    "field `{}` is {}, expected a string",
                    opts.question_field,
                    json_type(other)
                )));
            }
        };
        let answer = match field(&opts.answer_field)? {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(err(format!(
                    "field `{}` is {}, expected a string or a number",
                    opts.answer_field,
                    json_type(other)
                )));
            }
        };
        let split = match object.get(&opts.split_field) {
            None => None,
            Some(serde_json::Value::String(s)) => Some(
                parse_split(s).map_err(|e| err(format!("field `{}`: {e}", opts.split_field)))?,
            ),
            Some(other) => {
                return Err(err(format!(
                    "field `{}` is {}, expected a string",
                    opts.split_field,
                    json_type(other)
                )));
            }
        };
        records.push(Record {
            row: line_no,
            question,
            answer,
            split,
        });
    }
    Ok(records)
}

/// A string column of `df`: `name` must exist; with `numbers_ok`, numeric
/// columns are read as their decimal text.
fn string_column(
    path: &Path,
    df: &DataFrame,
    name: &str,
    numbers_ok: bool,
) -> Result<Option<StringChunked>> {
    let Ok(column) = df.column(name) else {
        return Ok(None);
    };
    let dtype = column.dtype();
    let cast = if dtype == &DataType::String {
        column.clone()
    } else if numbers_ok && dtype.is_primitive_numeric() {
        column
            .cast(&DataType::String)
            .map_err(|e| whole_file(path, format!("column `{name}`: {e}")))?
    } else {
        let expected = if numbers_ok {
            "a string or a number"
        } else {
            "a string"
        };
        return Err(whole_file(
            path,
            format!("column `{name}` has type {dtype}, expected {expected}"),
        ));
    };
    let ca = cast
        .str()
        .map_err(|e| whole_file(path, format!("column `{name}`: {e}")))?
        .clone();
    Ok(Some(ca))
}

fn read_parquet(path: &Path, opts: &ImportOptions) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let df = ParquetReader::new(file).finish().map_err(|e| {
        let reason = e.to_string();
        whole_file(
            path,
            format!(
                "not a readable parquet file: {}",
                reason.lines().next().unwrap_or("")
            ),
        )
    })?;
    let required = |name: &str, numbers_ok| -> Result<StringChunked> {
        string_column(path, &df, name, numbers_ok)?.ok_or_else(|| {
            let names: Vec<String> = df
                .get_column_names()
                .iter()
                .take(20)
                .map(|n| n.to_string())
                .collect();
            whole_file(
                path,
                format!(
                    "column `{name}` is missing (the file has: {})",
                    names.join(", ")
                ),
            )
        })
    };
    let questions = required(&opts.question_field, false)?;
    let answers = required(&opts.answer_field, true)?;
    let splits = string_column(path, &df, &opts.split_field, false)?;
    let mut records = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let row = i + 1;
        let err = |reason: String| DataError::Import {
            path: path.to_path_buf(),
            at: Format::Parquet.at(row),
            reason,
        };
        let get = |ca: &StringChunked, name: &str| {
            ca.get(i)
                .map(str::to_string)
                .ok_or_else(|| err(format!("field `{name}` is null")))
        };
        let split = match &splits {
            None => None,
            Some(ca) => Some(
                parse_split(&get(ca, &opts.split_field)?)
                    .map_err(|e| err(format!("field `{}`: {e}", opts.split_field)))?,
            ),
        };
        records.push(Record {
            row,
            question: get(&questions, &opts.question_field)?,
            answer: get(&answers, &opts.answer_field)?,
            split,
        });
    }
    Ok(records)
}

/// Shortens `text` for an error message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The normalised solution of one row's answer, or why there is none.
fn solution(kind: DomainKind, answer: &str) -> std::result::Result<String, String> {
    match kind {
        DomainKind::Numeric => final_number(answer)
            .map(|n| n.to_string())
            .ok_or_else(|| format!("no number in `{}`", excerpt(answer))),
        DomainKind::Exact => {
            let s = collapse_whitespace(answer);
            if s.is_empty() {
                Err("is empty".to_string())
            } else {
                Ok(s)
            }
        }
        other => Err(format!(
            "`{other}` tasks are generated, not imported (expected numeric or exact)"
        )),
    }
}

/// Builds tasks from `records`: normalises answers, drops duplicate
/// prompts, and assigns splits (see the module docs).
pub fn build(
    path: &Path,
    format: Format,
    records: Vec<Record>,
    opts: &ImportOptions,
) -> Result<Imported> {
    if !opts.kind.is_imported() {
        return Err(whole_file(
            path,
            format!(
                "`{}` tasks are generated, not imported (expected numeric or exact)",
                opts.kind
            ),
        ));
    }
    let labelled = records.iter().filter(|r| r.split.is_some()).count();
    let splits_from_field = labelled > 0;
    if splits_from_field {
        if let Some(r) = records.iter().find(|r| r.split.is_none()) {
            return Err(DataError::Import {
                path: path.to_path_buf(),
                at: format.at(r.row),
                reason: format!(
                    "field `{}` is missing, but other rows have it (all rows or none)",
                    opts.split_field
                ),
            });
        }
        if opts.val_fraction.is_some() || opts.test_fraction.is_some() {
            return Err(whole_file(
                path,
                format!(
                    "rows have a `{}` field, so val and test fractions do not apply",
                    opts.split_field
                ),
            ));
        }
    }
    let val_fraction = opts.val_fraction.unwrap_or(DEFAULT_FRACTION);
    let test_fraction = opts.test_fraction.unwrap_or(DEFAULT_FRACTION);
    for (name, f) in [("val", val_fraction), ("test", test_fraction)] {
        if !(0.0..=1.0).contains(&f) {
            return Err(whole_file(
                path,
                format!("{name} fraction {f} is outside 0..=1"),
            ));
        }
    }
    if val_fraction + test_fraction > 1.0 {
        return Err(whole_file(
            path,
            format!(
                "val fraction {val_fraction} and test fraction {test_fraction} add up to more than 1"
            ),
        ));
    }

    let domain = opts.kind.domain();
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let read = records.len();
    let mut rows: Vec<TaskRow> = Vec::with_capacity(read);
    let mut hashes: Vec<u64> = Vec::with_capacity(read);
    let mut index_of: HashMap<u64, usize> = HashMap::new();
    let (mut duplicates, mut conflicting) = (0, 0);
    for record in records {
        let err = |reason: String| DataError::Import {
            path: path.to_path_buf(),
            at: format.at(record.row),
            reason,
        };
        if record.question.trim().is_empty() {
            return Err(err(format!("field `{}` is empty", opts.question_field)));
        }
        let solution = solution(opts.kind, &record.answer)
            .map_err(|e| err(format!("field `{}`: {e}", opts.answer_field)))?;
        let hash = content_hash(opts.kind, &record.question);
        if let Some(&kept) = index_of.get(&hash) {
            duplicates += 1;
            let row: &mut TaskRow = &mut rows[kept];
            conflicting += usize::from(row.task.solution != solution);
            if let Some(split) = record.split {
                row.split = row.split.max(split);
            }
            continue;
        }
        let meta = ImportMeta {
            source: source.clone(),
            row: record.row,
            answer: record.answer.clone(),
        };
        let task = Task::new(
            opts.kind,
            0,
            opts.seed,
            record.question,
            solution,
            serde_json::to_string(&meta).expect("serialisable"),
        );
        if !domain.verify(&task, &task.solution)?.is_correct() {
            return Err(err(format!(
                "field `{}`: `{}` is not an answer the {} verifier accepts",
                opts.answer_field,
                excerpt(&task.solution),
                opts.kind
            )));
        }
        index_of.insert(hash, rows.len());
        hashes.push(hash);
        rows.push(TaskRow {
            task,
            split: record.split.unwrap_or(Split::Train),
        });
    }

    if !splits_from_field {
        let n = rows.len();
        let n_test = ((n as f64 * test_fraction).round() as usize).min(n);
        let n_val = ((n as f64 * val_fraction).round() as usize).min(n - n_test);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (mix_seed(&[opts.seed, hashes[i]]), hashes[i]));
        for (rank, &i) in order.iter().enumerate() {
            rows[i].split = if rank < n_test {
                Split::Test
            } else if rank < n_test + n_val {
                Split::Val
            } else {
                Split::Train
            };
        }
    }
    Ok(Imported {
        rows,
        read,
        duplicates,
        conflicting,
        splits_from_field,
    })
}

/// Where `out` puts `tasks.parquet`: `out` itself when it names a
/// `.parquet` file, else `out/tasks.parquet`.
pub fn tasks_path(out: &Path) -> PathBuf {
    if out.extension().is_some_and(|e| e == "parquet") {
        out.to_path_buf()
    } else {
        out.join("tasks.parquet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Domain;
    use std::io::Write;

    fn jsonl(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut f = File::create(&path).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        path
    }

    fn err_of(lines: &[&str], opts: &ImportOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = jsonl(dir.path(), "data.jsonl", lines);
        import(&path, opts).unwrap_err().to_string()
    }

    fn numeric() -> ImportOptions {
        ImportOptions::new(DomainKind::Numeric)
    }

    #[test]
    fn gsm8k_rows_become_numeric_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = jsonl(
            dir.path(),
            "gsm.jsonl",
            &[
                r#"{"question": "Natalia sold 48 clips in April and half as many in May. How many altogether?", "answer": "In May 48/2 = <<48/2=24>>24.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"}"#,
                "",
                "{\"question\": \"How much is 1,000 plus 234?\", \"answer\": \"#### 1,234\"}",
                r#"{"question": "A number", "answer": 5.0}"#,
            ],
        );
        let got = import(&path, &numeric()).unwrap();
        assert_eq!(got.read, 3);
        let solutions: Vec<&str> = got.rows.iter().map(|r| r.task.solution.as_str()).collect();
        assert_eq!(solutions, ["72", "1234", "5"]);
        let t = &got.rows[0].task;
        assert_eq!(t.domain, DomainKind::Numeric);
        assert!(t.prompt.starts_with("Natalia sold 48"));
        let meta: ImportMeta = t.meta().unwrap();
        assert_eq!((meta.source.as_str(), meta.row), ("gsm.jsonl", 1));
        assert!(meta.answer.ends_with("#### 72"));
        assert_eq!(got.rows[1].task.meta::<ImportMeta>().unwrap().row, 3);
        for r in &got.rows {
            assert!(
                r.task
                    .domain
                    .domain()
                    .verify(&r.task, &r.task.solution)
                    .unwrap()
                    .is_correct()
            );
        }
    }

    #[test]
    fn seeded_splits_have_exact_sizes_and_ignore_row_order() {
        let lines: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"question": "q{i}", "answer": "{i}"}}"#))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let a = import(&jsonl(dir.path(), "a.jsonl", &refs), &numeric()).unwrap();
        assert!(!a.splits_from_field);
        assert_eq!(
            (
                a.count(Split::Train),
                a.count(Split::Val),
                a.count(Split::Test)
            ),
            (40, 5, 5)
        );
        let reversed: Vec<&str> = refs.iter().rev().copied().collect();
        let b = import(&jsonl(dir.path(), "b.jsonl", &reversed), &numeric()).unwrap();
        let split_of = |got: &Imported| -> HashMap<String, Split> {
            got.rows
                .iter()
                .map(|r| (r.task.task_id.clone(), r.split))
                .collect()
        };
        assert_eq!(split_of(&a), split_of(&b));
        let mut opts = numeric();
        opts.seed = 1;
        let c = import(&jsonl(dir.path(), "c.jsonl", &refs), &opts).unwrap();
        assert_ne!(split_of(&a), split_of(&c), "another seed, other splits");
        opts.val_fraction = Some(0.0);
        opts.test_fraction = Some(0.5);
        let d = import(&jsonl(dir.path(), "d.jsonl", &refs), &opts).unwrap();
        assert_eq!((d.count(Split::Val), d.count(Split::Test)), (0, 25));
    }

    #[test]
    fn split_field_wins_and_duplicates_keep_the_held_out_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = jsonl(
            dir.path(),
            "x.jsonl",
            &[
                r#"{"question": "What is 2+2?", "answer": "4", "split": "train"}"#,
                r#"{"question": "What is 3+3?", "answer": "6", "split": "validation"}"#,
                r#"{"question": "What  is 2+2? ", "answer": "5", "split": "test"}"#,
                r#"{"question": "What is 4+4?", "answer": "8", "split": "train"}"#,
            ],
        );
        let got = import(&path, &numeric()).unwrap();
        assert!(got.splits_from_field);
        assert_eq!((got.read, got.duplicates, got.conflicting), (4, 1, 1));
        let splits: Vec<(&str, Split)> = got
            .rows
            .iter()
            .map(|r| (r.task.solution.as_str(), r.split))
            .collect();
        assert_eq!(
            splits,
            [("4", Split::Test), ("6", Split::Val), ("8", Split::Train)]
        );

        let mut opts = numeric();
        opts.test_fraction = Some(0.2);
        let err = import(&path, &opts).unwrap_err().to_string();
        assert!(err.contains("rows have a `split` field"), "{err}");
    }

    #[test]
    fn exact_answers_keep_case_and_collapse_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = jsonl(
            dir.path(),
            "x.jsonl",
            &[r#"{"q": "Capital of the USA's largest city state?", "a": "  New   York "}"#],
        );
        let mut opts = ImportOptions::new(DomainKind::Exact);
        opts.question_field = "q".into();
        opts.answer_field = "a".into();
        let got = import(&path, &opts).unwrap();
        let t = &got.rows[0].task;
        assert_eq!(t.solution, "New York");
        assert!(
            crate::domain::exact::Exact
                .verify(t, "new york")
                .unwrap()
                .is_correct()
        );
    }

    #[test]
    fn bad_rows_are_named_by_file_line_and_field() {
        let ok = r#"{"question": "q", "answer": "1"}"#;
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec![ok, "{not json"], "data.jsonl:2: not valid JSON"),
            (
                vec![ok, r#"{"question": "q2"}"#],
                "data.jsonl:2: field `answer` is missing (the object has: question)",
            ),
            (
                vec![r#"{"question": 3, "answer": "1"}"#],
                "data.jsonl:1: field `question` is a number, expected a string",
            ),
            (
                vec![r#"{"question": "q", "answer": null}"#],
                "data.jsonl:1: field `answer` is null, expected a string or a number",
            ),
            (
                vec![ok, "", r#"{"question": "q2", "answer": "none"}"#],
                "data.jsonl:3: field `answer`: no number in `none`",
            ),
            (
                vec![r#"[1, 2]"#],
                "data.jsonl:1: expected a JSON object, got an array",
            ),
            (
                vec![r#"{"question": " ", "answer": "1"}"#],
                "data.jsonl:1: field `question` is empty",
            ),
            (
                vec![r#"{"question": "q", "answer": "1", "split": "holdout"}"#],
                "data.jsonl:1: field `split`: unknown split `holdout`",
            ),
            (
                vec![
                    r#"{"question": "q", "answer": "1", "split": "test"}"#,
                    r#"{"question": "r", "answer": "1"}"#,
                ],
                "data.jsonl:2: field `split` is missing, but other rows have it",
            ),
            (vec!["", "  "], "data.jsonl: no rows"),
        ];
        for (lines, want) in cases {
            let err = err_of(&lines, &numeric());
            assert!(err.contains(want), "{err}\nwanted: {want}");
        }
        let mut opts = numeric();
        opts.val_fraction = Some(0.7);
        opts.test_fraction = Some(0.7);
        assert!(err_of(&[ok], &opts).contains("add up to more than 1"));
        let exact = ImportOptions::new(DomainKind::Exact);
        assert!(
            err_of(&[r#"{"question": "q", "answer": "  "}"#], &exact)
                .contains("data.jsonl:1: field `answer`: is empty")
        );
        assert!(
            err_of(&[ok], &ImportOptions::new(DomainKind::Arith))
                .contains("`arith` tasks are generated, not imported")
        );
    }

    #[test]
    fn invalid_utf8_and_unknown_extensions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(
            &path,
            b"{\"question\": \"q\", \"answer\": \"1\"}\n\xff\xfe\n",
        )
        .unwrap();
        let err = import(&path, &numeric()).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:2: not UTF-8"), "{err}");
        let err = import(&dir.path().join("x.csv"), &numeric())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.csv: unknown extension `.csv` (expected .jsonl or .parquet)"),
            "{err}"
        );
    }

    fn parquet(dir: &Path, columns: Vec<Column>) -> PathBuf {
        let path = dir.join("data.parquet");
        let mut df = DataFrame::new_infer_height(columns).unwrap();
        ParquetWriter::new(File::create(&path).unwrap())
            .finish(&mut df)
            .unwrap();
        path
    }

    #[test]
    fn parquet_rows_with_numeric_answers_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = parquet(
            dir.path(),
            vec![
                Column::new("question".into(), ["a?", "b?", "c?"]),
                Column::new("answer".into(), [10i64, -2, 3]),
                Column::new("split".into(), ["train", "test", "test"]),
            ],
        );
        let got = import(&path, &numeric()).unwrap();
        let rows: Vec<(&str, Split)> = got
            .rows
            .iter()
            .map(|r| (r.task.solution.as_str(), r.split))
            .collect();
        assert_eq!(
            rows,
            [
                ("10", Split::Train),
                ("-2", Split::Test),
                ("3", Split::Test)
            ]
        );
        assert_eq!(got.rows[2].task.meta::<ImportMeta>().unwrap().row, 3);

        let path = parquet(
            dir.path(),
            vec![
                Column::new("question".into(), [Some("a?"), None]),
                Column::new("answer".into(), ["1", "2"]),
            ],
        );
        let err = import(&path, &numeric()).unwrap_err().to_string();
        assert!(
            err.contains("data.parquet: row 2: field `question` is null"),
            "{err}"
        );

        let path = parquet(
            dir.path(),
            vec![
                Column::new("question".into(), [1i64]),
                Column::new("answer".into(), ["1"]),
            ],
        );
        let err = import(&path, &numeric()).unwrap_err().to_string();
        assert!(
            err.contains("column `question` has type i64, expected a string"),
            "{err}"
        );

        let path = parquet(dir.path(), vec![Column::new("prompt".into(), ["a?"])]);
        let err = import(&path, &numeric()).unwrap_err().to_string();
        assert!(
            err.contains("column `question` is missing (the file has: prompt)"),
            "{err}"
        );
    }

    #[test]
    fn tasks_path_takes_a_file_or_a_directory() {
        assert_eq!(
            tasks_path(Path::new("runs/x")),
            Path::new("runs/x/tasks.parquet")
        );
        assert_eq!(tasks_path(Path::new("t.parquet")), Path::new("t.parquet"));
    }
}
