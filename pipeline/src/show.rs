//! `didact show`: tasks and dialogues from a run's tables, for people.

use std::path::Path;

use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

use didact_data::tables::{read_rollouts, read_synthetic, read_tasks, read_train_log};
use didact_data::{Dialogue, DomainKind, Split};

use crate::stages::data::{SYNTHETIC_FILE, TASKS_FILE};
use crate::stages::pretrain::TRAIN_LOG_FILE;
use crate::stages::student::ROLLOUTS_FILE;

/// `println!` that ends the program quietly when the reader went away
/// (`didact show log | head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            return Err(e.into());
        }
    }};
}

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
    /// `log`: only this stage (pretrain, student, baseline_single_turn_rl,
    /// baseline_offline_sft).
    #[arg(long)]
    pub stage: Option<String>,
    /// `log`: only these metrics (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ShowTable {
    /// tasks.parquet: prompt and reference solution of each task.
    Tasks,
    /// synthetic_dialogues.parquet: wrong attempts, feedback, correct answer.
    Dialogues,
    /// train_log.parquet: one line per (stage, step), one column per metric
    /// (`-n` limits the steps shown, spread evenly; 0 shows all).
    Log,
    /// rollouts.parquet: the dialogues sampled during RL, turn by turn.
    Rollouts,
}

pub fn show(run_dir: &Path, args: &ShowArgs) -> Result<()> {
    match args.table {
        ShowTable::Log => return show_log(run_dir, args),
        ShowTable::Rollouts => return show_rollouts(run_dir, args),
        _ => {}
    }
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
                say!(
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
        ShowTable::Log | ShowTable::Rollouts => unreachable!("handled above"),
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
                say!(
                    "{}  [{} · feedback {}{leak}]\n{dialogue}",
                    d.dialogue_id,
                    d.domain,
                    d.feedback_level
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

/// The train log as a table: steps down, metrics across.
fn show_log(run_dir: &Path, args: &ShowArgs) -> Result<()> {
    let rows = read_train_log(&run_dir.join(TRAIN_LOG_FILE))?;
    let mut stages: BTreeMap<&str, BTreeMap<u64, BTreeMap<&str, f64>>> = BTreeMap::new();
    for r in &rows {
        if args.stage.as_deref().is_some_and(|s| s != r.stage)
            || !(args.metrics.is_empty() || args.metrics.contains(&r.metric))
        {
            continue;
        }
        stages
            .entry(&r.stage)
            .or_default()
            .entry(r.step)
            .or_default()
            .insert(&r.metric, r.value);
    }
    if stages.is_empty() {
        eprintln!("no rows match");
    }
    for (stage, steps) in stages {
        let names: BTreeSet<&str> = steps.values().flat_map(|m| m.keys().copied()).collect();
        say!("{stage}");
        say!(
            "{:>6} {}",
            "step",
            names
                .iter()
                .map(|n| format!("{n:>w$}", w = n.len().max(10)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let keys: Vec<u64> = steps.keys().copied().collect();
        let shown: Vec<u64> = if args.limit == 0 || keys.len() <= args.limit {
            keys
        } else {
            (0..args.limit)
                .map(|i| keys[i * (keys.len() - 1) / (args.limit - 1).max(1)])
                .collect()
        };
        for step in shown {
            let m = &steps[&step];
            say!(
                "{step:>6} {}",
                names
                    .iter()
                    .map(|n| {
                        let w = n.len().max(10);
                        m.get(n)
                            .map_or(format!("{:>w$}", ""), |v| format!("{v:>w$.4}"))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        say!();
    }
    Ok(())
}

/// Sampled RL dialogues, one block per (iteration, task, group member).
fn show_rollouts(run_dir: &Path, args: &ShowArgs) -> Result<()> {
    let rows = read_rollouts(&run_dir.join(ROLLOUTS_FILE))?;
    let mut shown = 0;
    let mut i = 0;
    while i < rows.len() && (args.limit == 0 || shown < args.limit) {
        let first = &rows[i];
        let mut j = i;
        while j < rows.len()
            && rows[j].iteration == first.iteration
            && rows[j].task_id == first.task_id
            && rows[j].member == first.member
        {
            j += 1;
        }
        let keep = args.domain.is_none_or(|d| d == first.domain)
            && args
                .id
                .as_deref()
                .is_none_or(|p| first.task_id.starts_with(p));
        if keep {
            say!(
                "iteration {} · {} · member {} · reward {:.3}",
                first.iteration,
                first.task_id,
                first.member,
                first.reward
            );
            for r in &rows[i..j] {
                say!("  {:>2} student │ {}   [{}]", r.turn, r.attempt, r.verdict);
                if !r.feedback.is_empty() {
                    say!("     teacher │ {}", r.feedback);
                }
            }
            shown += 1;
        }
        i = j;
    }
    if shown == 0 {
        eprintln!("no rows match");
    }
    Ok(())
}
