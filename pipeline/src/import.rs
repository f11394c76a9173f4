//! `didact data import`: a question/answer dataset (JSONL or parquet) as
//! `tasks.parquet` in the `numeric` or `exact` domain, with splits. The
//! work is [`didact_data::import`]; this is the command line around it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use didact_data::import::{self, ImportOptions};
use didact_data::tables::{self, TASKS};
use didact_data::{DomainKind, Split};

/// `didact data [import …]`: without a subcommand, the data stage.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub action: Option<DataAction>,
}

#[derive(Debug, Subcommand)]
pub enum DataAction {
    /// Read tasks from a question/answer dataset (.jsonl or .parquet) into
    /// tasks.parquet, with train/val/test splits. Prints one summary line.
    Import(ImportArgs),
}

/// How answers are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    /// GSM8K-style: the number after `####`, else the last number in the
    /// answer; `1,234`, `$1234` and `1234.0` are the same answer.
    Numeric,
    /// The answer text, ignoring case and runs of whitespace.
    Exact,
}

impl From<ImportKind> for DomainKind {
    fn from(kind: ImportKind) -> Self {
        match kind {
            ImportKind::Numeric => DomainKind::Numeric,
            ImportKind::Exact => DomainKind::Exact,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The dataset: .jsonl (one JSON object per line) or .parquet.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// How answers are judged: numeric or exact.
    #[arg(long, value_enum)]
    pub kind: ImportKind,
    /// A run directory (gets tasks.parquet) or a .parquet file to write.
    /// An existing file is replaced only with --force.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub out: PathBuf,
    /// Field (JSON key or column) holding the question.
    #[arg(long, default_value = "question", value_name = "NAME")]
    pub question_field: String,
    /// Field holding the answer (a string, or a number).
    #[arg(long, default_value = "answer", value_name = "NAME")]
    pub answer_field: String,
    /// Field holding each row's split (train, val or validation, test);
    /// when the rows have it, it decides the splits.
    #[arg(long, default_value = "split", value_name = "NAME")]
    pub split_field: String,
    /// Fraction of tasks for val when the rows have no split field
    /// [default: 0.1].
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
    /// Fraction of tasks for test when the rows have no split field
    /// [default: 0.1].
    #[arg(long, value_name = "F")]
    pub test_fraction: Option<f64>,
    /// Seed of the split assignment (recorded as each task's seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Imports, writes the table atomically, prints the summary line.
pub fn run(args: &ImportArgs, force: bool) -> Result<()> {
    let opts = ImportOptions {
        kind: args.kind.into(),
        question_field: args.question_field.clone(),
        answer_field: args.answer_field.clone(),
        split_field: args.split_field.clone(),
        val_fraction: args.val_fraction,
        test_fraction: args.test_fraction,
        seed: args.seed,
    };
    let out = import::tasks_path(&args.out);
    anyhow::ensure!(
        force || !out.exists(),
        "{}: exists; pass --force to replace it",
        out.display()
    );
    let imported = import::import(&args.input, &opts)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
    }
    tables::write_table(&out, &TASKS, &mut tables::tasks_frame(&imported.rows)?)?;
    println!("{}", summary(args, &imported, &out));
    Ok(())
}

fn summary(args: &ImportArgs, imported: &import::Imported, out: &std::path::Path) -> String {
    let plural = if imported.duplicates == 1 { "" } else { "s" };
    let mut dropped = format!("{} duplicate prompt{plural} dropped", imported.duplicates);
    if imported.conflicting > 0 {
        dropped.push_str(&format!(
            ", {} of them with a different answer",
            imported.conflicting
        ));
    }
    let source = if imported.splits_from_field {
        format!("splits from field `{}`", args.split_field)
    } else {
        format!("splits by seed {}", args.seed)
    };
    format!(
        "{}: read {} rows, kept {} {} tasks ({dropped}); train {}, val {}, test {} ({source}) -> {}",
        args.input.display(),
        imported.read,
        imported.rows.len(),
        DomainKind::from(args.kind),
        imported.count(Split::Train),
        imported.count(Split::Val),
        imported.count(Split::Test),
        out.display()
    )
}
