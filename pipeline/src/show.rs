//! `didact show`: tasks and dialogues from a run's tables, for people.

use std::path::Path;

use anyhow::Result;
use didact_data::tables::{read_synthetic, read_tasks};
use didact_data::{Dialogue, DomainKind, Split};

use crate::stages::data::{SYNTHETIC_FILE, TASKS_FILE};

/// Which rows to show.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Table to show.
    #[arg(value_enum, default_value = "tasks")]
    pub table: ShowTable,
    /// Only this domain (arith, listops, sudoku, maze).
    #[arg(long)]
    pub domain: Option<DomainKind>,
    /// Only this split (train, val, test).
    #[arg(long)]
    pub split: Option<Split>,
    /// Only rows whose task id (or dialogue id) starts with this.
    #[arg(long)]
    pub id: Option<String>,
    /// At most this many rows.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ShowTable {
    /// tasks.parquet: prompt and reference solution of each task.
    Tasks,
    /// synthetic_dialogues.parquet: wrong attempt, feedback, correct answer.
    Dialogues,
}

pub fn show(run_dir: &Path, args: &ShowArgs) -> Result<()> {
    let tasks = read_tasks(&run_dir.join(TASKS_FILE))?;
    let keep_id = |id: &str| args.id.as_deref().is_none_or(|p| id.starts_with(p));
    let mut shown = 0;
    match args.table {
        ShowTable::Tasks => {
            for r in tasks.iter().filter(|r| {
                args.domain.is_none_or(|d| d == r.task.domain)
                    && args.split.is_none_or(|s| s == r.split)
                    && keep_id(&r.task.task_id)
            }) {
                if shown == args.limit {
                    break;
                }
                println!(
                    "{}  [{} · {} · difficulty {}]\n  prompt:   {}\n  solution: {}\n",
                    r.task.task_id,
                    r.task.domain,
                    r.split.name(),
                    r.task.difficulty,
                    r.task.prompt,
                    r.task.solution
                );
                shown += 1;
            }
        }
        ShowTable::Dialogues => {
            let split_of: std::collections::HashMap<&str, Split> = tasks
                .iter()
                .map(|r| (r.task.task_id.as_str(), r.split))
                .collect();
            for d in read_synthetic(&run_dir.join(SYNTHETIC_FILE))? {
                let split = split_of.get(d.task_id.as_str()).copied();
                if args.domain.is_some_and(|x| x != d.domain)
                    || args.split.is_some_and(|s| Some(s) != split)
                    || !(keep_id(&d.task_id) || keep_id(&d.dialogue_id))
                {
                    continue;
                }
                if shown == args.limit {
                    break;
                }
                let dialogue = Dialogue::parse(&d.text)?;
                let leak = if d.leak_blocked {
                    " · leak blocked"
                } else {
                    ""
                };
                println!(
                    "{}  [{} · feedback {}{leak}]\n{dialogue}",
                    d.dialogue_id, d.domain, d.feedback_level
                );
                shown += 1;
            }
        }
    }
    if shown == 0 {
        eprintln!("no rows match");
    }
    Ok(())
}
