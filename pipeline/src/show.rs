//! `didact show`: tasks and dialogues from a run's tables, for people.

use std::path::{Path, PathBuf};

use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

use didact_data::tables::{
    EvalTurnRow, RolloutRow, SyntheticDialogue, Table, TrainLogRow, read_tasks,
};
use didact_data::{Dialogue, DomainKind, Split};

use crate::layout::{
    ROLLOUTS_FILE, SML_TURNS_FILE, SYNTHETIC_FILE, TASKS_FILE, TRAIN_LOG_FILE, TRANSFER_TURNS_FILE,
    TURNS_FILE,
};

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
    /// `eval`, `transfer`: only this model (base, single_turn_rl,
    /// offline_sft, rl2f; rl2f_<domain> in `transfer`).
    #[arg(long)]
    pub model: Option<String>,
    /// `eval`: only this condition (single, retry, teacher, verdict,
    /// shuffled, critic, critic_oracle_stop).
    #[arg(long)]
    pub condition: Option<String>,
    /// `eval`, `transfer`: only dialogues whose first attempt was wrong.
    #[arg(long)]
    pub wrong_first: bool,
    /// `sml`: only this form of the tasks (sharded, full).
    #[arg(long)]
    pub spec: Option<String>,
    /// In a run with several training seeds (`run.seeds`), the seed whose
    /// log, rollouts and dialogues to show (default: the lowest).
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// eval/turns.parquet: the evaluation dialogues, turn by turn, with
    /// who answered each attempt and the responder's verdict.
    Eval,
    /// transfer/turns.parquet: the cross-domain matrix's dialogues.
    Transfer,
    /// sml/turns.parquet: the SML evaluation's dialogues on sharded and
    /// fully specified tasks, each turn marked as a question, a premature
    /// answer or an answer.
    Sml,
}

/// The directory of the training seed whose tables to show: `--seed`'s,
/// else the lowest `seed-<s>/` of a multi-seed run, else the run directory.
fn seed_dir(run_dir: &Path, args: &ShowArgs) -> Result<PathBuf> {
    if let Some(s) = args.seed {
        let dir = run_dir.join(crate::layout::seed_dir_name(s));
        anyhow::ensure!(
            dir.is_dir(),
            "{}: no such training seed directory (is {s} in run.seeds?)",
            dir.display()
        );
        return Ok(dir);
    }
    let mut seeds: Vec<u64> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("seed-")?.parse().ok())
        .collect();
    seeds.sort_unstable();
    Ok(match seeds.first() {
        Some(s) => {
            eprintln!("training seed {s} (of {seeds:?}; --seed picks another)");
            run_dir.join(crate::layout::seed_dir_name(*s))
        }
        None => run_dir.to_path_buf(),
    })
}

pub fn show(run_dir: &Path, args: &ShowArgs) -> Result<()> {
    if matches!(
        args.table,
        ShowTable::Log
            | ShowTable::Rollouts
            | ShowTable::Eval
            | ShowTable::Transfer
            | ShowTable::Sml
    ) {
        let dir = seed_dir(run_dir, args)?;
        match args.table {
            ShowTable::Log => return show_log(&dir, args),
            ShowTable::Rollouts => return show_rollouts(&dir, args),
            ShowTable::Eval => return show_eval(&dir.join(TURNS_FILE), run_dir, args),
            ShowTable::Transfer => {
                return show_eval(&dir.join(TRANSFER_TURNS_FILE), run_dir, args);
            }
            _ => return show_sml(&dir, run_dir, args),
        }
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
        ShowTable::Log
        | ShowTable::Rollouts
        | ShowTable::Eval
        | ShowTable::Transfer
        | ShowTable::Sml => unreachable!("handled above"),
        ShowTable::Dialogues => {
            let split_of: std::collections::HashMap<&str, Split> = tasks
                .iter()
                .map(|r| (r.task.task_id.as_str(), r.split))
                .collect();
            for d in SyntheticDialogue::read(&run_dir.join(SYNTHETIC_FILE))? {
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
    let rows = TrainLogRow::read(&run_dir.join(TRAIN_LOG_FILE))?;
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
    let rows = RolloutRow::read(&run_dir.join(ROLLOUTS_FILE))?;
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

/// Evaluation dialogues, one block per (model, condition, seed, task).
fn show_sml(seed_dir: &Path, run_dir: &Path, args: &ShowArgs) -> Result<()> {
    let rows = didact_data::tables::SmlTurnRow::read(&seed_dir.join(SML_TURNS_FILE))?;
    let tasks: std::collections::HashMap<String, didact_data::Task> =
        read_tasks(&run_dir.join(TASKS_FILE))?
            .into_iter()
            .map(|r| (r.task.task_id.clone(), r.task))
            .collect();
    let mut dialogues: BTreeMap<(&str, &str, &str), Vec<&didact_data::tables::SmlTurnRow>> =
        BTreeMap::new();
    for r in &rows {
        let keep = args.model.as_deref().is_none_or(|m| m == r.model)
            && args.spec.as_deref().is_none_or(|s| s == r.spec)
            && args.domain.is_none_or(|d| d.name() == r.domain)
            && args.id.as_deref().is_none_or(|p| r.task_id.starts_with(p));
        if keep {
            dialogues
                .entry((&r.model, &r.spec, &r.task_id))
                .or_default()
                .push(r);
        }
    }
    let mut shown = 0;
    for ((model, spec, task_id), mut turns) in dialogues {
        if args.limit != 0 && shown == args.limit {
            break;
        }
        turns.sort_by_key(|r| r.turn);
        say!("{model} · {spec} · {task_id}");
        let prompt = match (tasks.get(task_id), spec) {
            (Some(t), "sharded") => didact_data::shard::ShardedTask::new(t)?
                .map_or_else(|| t.prompt.clone(), |s| s.task.prompt),
            (Some(t), _) => t.prompt.clone(),
            (None, _) => "(not in tasks.parquet)".into(),
        };
        say!("        task │ {prompt}");
        for t in &turns {
            let kind = if t.question {
                "question"
            } else if t.correct {
                "correct"
            } else if t.premature {
                "premature, wrong"
            } else {
                "wrong"
            };
            say!("  {:>2} student │ {}   [{kind}]", t.turn, t.attempt);
            if !t.feedback.is_empty() {
                say!("     teacher │ {}", t.feedback);
            }
        }
        say!();
        shown += 1;
    }
    if shown == 0 {
        eprintln!("no rows match");
    }
    Ok(())
}

fn show_eval(path: &Path, run_dir: &Path, args: &ShowArgs) -> Result<()> {
    let rows = EvalTurnRow::read(path)?;
    let prompts: std::collections::HashMap<String, String> = read_tasks(&run_dir.join(TASKS_FILE))?
        .into_iter()
        .map(|r| (r.task.task_id, r.task.prompt))
        .collect();
    let mut dialogues: BTreeMap<(&str, &str, u64, &str), Vec<&EvalTurnRow>> = BTreeMap::new();
    for r in &rows {
        let keep = args.model.as_deref().is_none_or(|m| m == r.model)
            && args.condition.as_deref().is_none_or(|c| c == r.condition)
            && args.domain.is_none_or(|d| d == r.domain)
            && args.id.as_deref().is_none_or(|p| r.task_id.starts_with(p));
        if keep {
            dialogues
                .entry((&r.model, &r.condition, r.seed, &r.task_id))
                .or_default()
                .push(r);
        }
    }
    let mut shown = 0;
    for ((model, condition, seed, task_id), mut turns) in dialogues {
        turns.sort_by_key(|r| r.turn);
        if args.wrong_first && turns.first().is_some_and(|t| t.correct) {
            continue;
        }
        if args.limit != 0 && shown == args.limit {
            break;
        }
        say!(
            "{model} · {condition} · {task_id} · difficulty {} · seed {seed}",
            turns[0].difficulty
        );
        say!(
            "        task │ {}",
            prompts
                .get(task_id)
                .map_or("(not in tasks.parquet)", String::as_str)
        );
        for t in &turns {
            let judged = if t.judged.is_empty() {
                String::new()
            } else {
                format!(", judged {}", t.judged)
            };
            say!(
                "  {:>2} student │ {}   [{}{judged}]",
                t.turn,
                t.attempt,
                t.verdict
            );
            if !t.feedback.is_empty() {
                say!("  {:>10} │ {}", t.feedback_source, t.feedback);
            }
        }
        say!();
        shown += 1;
    }
    if shown == 0 {
        eprintln!("no rows match");
    }
    Ok(())
}
