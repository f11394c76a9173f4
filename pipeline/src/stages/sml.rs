//! The `sml` stage: social meta-learning (arXiv 2602.16488) beside RL²F.
//! Tasks become underspecified ("sharded": the first turn withholds an
//! essential part, the teacher reveals it when asked), and a student is
//! trained to ask rather than answer prematurely:
//!
//! 1. **Q-priming**: SFT of the base model on dialogues in which an
//!    incorrect student turn at turn t became a question with probability
//!    `question_base^t` (and on the fully specified tasks answered at once,
//!    so that asking is learnt only where something is hidden);
//! 2. **GRPO** from the Q-primed model with the `[student]` settings, on
//!    sharded and fully specified train tasks, with the shard teacher;
//! 3. **evaluation** of the base model, the RL²F student, the Q-primed model
//!    (SFT only) and the SML student
//!    with the shard teacher on the same test tasks, sharded and fully
//!    specified: `sml/turns.parquet`, summarised (premature-answer rate,
//!    questions per dialogue, accuracy by turn, with bootstrap 95% CIs) in
//!    `sml/summary.parquet`, `sml/report.md` and the `analyse` report.
//!
//! Off unless `sml.enabled`; `just sml` runs it on `configs/sml.toml`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use didact_data::domain::Shard;
use didact_data::rng::{Rng, mix_seed};
use didact_data::shard::{ShardedTask, classify_turns, full_task_id, parse_move, qprimed_dialogue};
use didact_data::tables::{
    self, SML_SUMMARY, SmlSummaryRow as SummaryRow, SmlTurnRow, Table, read_tasks,
};
use didact_data::{Dialogue, Role, Split, Task, Tokenizer};
use didact_student::checkpoint;
use didact_student::grpo::RlConfig;
use didact_student::kernels::{Kernels, TrainBackend};
use didact_student::rollout::{DialogueRun, ShardTeacher, run_dialogues_with};
use didact_student::sft::Example;
use polars::prelude::*;
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, dialogue_params, dialogue_seed, run_sft, save_final, subset,
};
use super::rl::{RlSetup, run_rl_with};
use crate::analysis::bootstrap_mean_ci;
use crate::layout::{
    BASE_DIR, BASE_WEIGHTS, QPRIMED_DIR, QPRIMED_WEIGHTS, SML_DIR, SML_REPORT_FILE,
    SML_STUDENT_DIR, SML_SUMMARY_FILE, SML_TURNS_FILE, STUDENT_DIR, STUDENT_WEIGHTS, TASKS_FILE,
    TOKENIZER_FILE,
};
use crate::progress;

const RESAMPLES: usize = 1000;

pub const STAGE: Stage = Stage {
    name: "sml",
    per_seed: true,
    inputs: &[TASKS_FILE, TOKENIZER_FILE, BASE_WEIGHTS, STUDENT_WEIGHTS],
    config_section: |c| json!({"sml": c.sml, "student": c.student, "eval": c.eval}),
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

/// The sharded forms of those `tasks` that shard.
fn shard_all(tasks: &[Task]) -> Result<Vec<ShardedTask>> {
    let mut out = Vec::new();
    for t in tasks {
        if let Some(s) = ShardedTask::new(t)? {
            out.push(s);
        }
    }
    Ok(out)
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    let cfg = &ctx.config.sml;
    let path = ctx.run_dir.join(SML_TURNS_FILE);
    std::fs::create_dir_all(ctx.run_dir.join(SML_DIR))?;
    if !cfg.enabled {
        SmlTurnRow::write(&path, &[])?;
        return Ok(StageOutput {
            outputs: vec![SML_TURNS_FILE.into()],
            metrics: json!({"enabled": false}),
            summary: vec!["sml: off (set sml.enabled = true, or run `just sml`)".into()],
        });
    }
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let rows = read_tasks(&ctx.shared(TASKS_FILE))?;
    let split = |s: Split| -> Vec<Task> {
        rows.iter()
            .filter(|r| r.split == s)
            .map(|r| r.task.clone())
            .collect()
    };
    let (train, val, test) = (split(Split::Train), split(Split::Val), split(Split::Test));
    let sharded_train = shard_all(&train)?;
    let sharded_val = shard_all(&val)?;
    let mut shards: HashMap<String, Vec<Shard>> = HashMap::new();
    for s in sharded_train.iter().chain(&sharded_val) {
        shards.insert(s.task.task_id.clone(), s.shards.clone());
    }
    anyhow::ensure!(
        !sharded_train.is_empty(),
        "none of the {} train tasks in {TASKS_FILE} can be sharded (sudoku with few \
         blanks has no essential row; arith, listops and maze shard almost always)",
        train.len()
    );
    tracing::info!(
        "sml: {} of {} train tasks sharded, {} of {} validation tasks",
        sharded_train.len(),
        train.len(),
        sharded_val.len(),
        val.len()
    );
    let mut summary = Vec::new();
    let started = std::time::Instant::now();

    // 1. Q-priming.
    let (examples, questions) = qpriming_examples(ctx, &tokenizer, &train, &sharded_train)?;
    let base = checkpoint::load::<B>(&ctx.run_dir.join(BASE_DIR), device)?;
    let qprimed = run_sft(
        ctx,
        "sml_qpriming",
        "sml: Q-priming SFT",
        base,
        &examples,
        &cfg.sft,
        tokenizer.pad_id(),
        device,
    )?;
    save_final(
        &qprimed.valid(),
        &ctx.run_dir.join(QPRIMED_DIR),
        &ctx.shared(TOKENIZER_FILE),
    )?;
    let sft_wall = started.elapsed().as_secs_f64();
    summary.push(format!(
        "sml: Q-priming SFT on {} Q-primed dialogues ({questions} questions) and {} single-turn answers, {} steps in {sft_wall:.0}s",
        examples.len() - train.len(),
        train.len(),
        cfg.sft.steps
    ));

    // 2. GRPO with the shard teacher, on sharded and fully specified tasks.
    let outcome = shard_grpo::<B>(
        ctx,
        &tokenizer,
        (&train, &sharded_train),
        (&val, &sharded_val),
        &shards,
        device,
    )?;
    summary.extend(outcome.summary);
    let mut outputs = outcome.outputs;
    outputs.extend([
        format!("{QPRIMED_DIR}/{}", checkpoint::CONFIG_FILE),
        QPRIMED_WEIGHTS.into(),
    ]);

    // 3. Evaluation, sharded and fully specified, on the same test tasks.
    let (full_test, sharded_test) = test_tasks(ctx.config, &test, cfg.tasks_per_domain)?;
    for s in &sharded_test {
        shards.insert(s.task.task_id.clone(), s.shards.clone());
    }
    let turn_rows =
        evaluate::<B::InnerBackend>(ctx, &tokenizer, &full_test, &sharded_test, &shards, device)?;
    SmlTurnRow::write(&path, &turn_rows)?;
    let (md, mut table) = report(&turn_rows, cfg.max_turns);
    tables::write_table(
        &ctx.run_dir.join(SML_SUMMARY_FILE),
        &SML_SUMMARY,
        &mut table,
    )?;
    didact_data::atomic::write(&ctx.run_dir.join(SML_REPORT_FILE), md.as_bytes())?;
    summary.push(format!(
        "sml: {} test tasks, sharded and fully specified; report: {}",
        sharded_test.len(),
        ctx.run_dir.join(SML_REPORT_FILE).display()
    ));
    summary.extend(headline(&turn_rows, cfg.max_turns));
    outputs.extend([
        SML_TURNS_FILE.into(),
        SML_SUMMARY_FILE.into(),
        SML_REPORT_FILE.into(),
    ]);
    outputs.sort();
    outputs.dedup();
    Ok(StageOutput {
        outputs,
        metrics: json!({
            "sharded_train_tasks": sharded_train.len(),
            "sharded_train_tasks_by_domain": by_domain(&sharded_train),
            "qpriming_dialogues": examples.len() - train.len(),
            "qpriming_questions": questions,
            "test_tasks": sharded_test.len(),
            "wall_time_s": started.elapsed().as_secs_f64(),
        }),
        summary,
    })
}

/// Step 2 of the stage: GRPO from the Q-primed model with the shard
/// teacher, on the sharded and the fully specified train tasks, validated
/// on both forms of a subset of the validation tasks.
fn shard_grpo<B: TrainBackend>(
    ctx: &StageContext,
    tokenizer: &Tokenizer,
    (train, sharded_train): (&[Task], &[ShardedTask]),
    (val, sharded_val): (&[Task], &[ShardedTask]),
    shards: &HashMap<String, Vec<Shard>>,
    device: &B::Device,
) -> Result<super::rl::RlOutcome> {
    let cfg = &ctx.config.sml;
    let rl = RlConfig {
        iterations: cfg.iterations,
        feedback_level: cfg.feedback_level,
        ..ctx.config.student.clone()
    };
    let mixed = |full: &[Task], sharded: &[ShardedTask]| -> Vec<Task> {
        full.iter()
            .cloned()
            .chain(sharded.iter().map(|s| s.task.clone()))
            .collect()
    };
    let val_full: Vec<Task> = subset(ctx.config, val, rl.eval_tasks)
        .into_iter()
        .cloned()
        .collect();
    let val_ids: std::collections::HashSet<&str> =
        val_full.iter().map(|t| t.task_id.as_str()).collect();
    let val_sharded: Vec<ShardedTask> = sharded_val
        .iter()
        .filter(|s| val_ids.contains(full_task_id(&s.task.task_id)))
        .cloned()
        .collect();
    run_rl_with::<B>(
        ctx,
        &rl,
        tokenizer,
        RlSetup {
            name: "sml",
            out_dir: SML_STUDENT_DIR,
            init_dir: QPRIMED_DIR,
            train: mixed(train, sharded_train),
            val: mixed(&val_full, &val_sharded),
            shards: Some(shards),
        },
        device,
    )
}

/// How many of `sharded` each domain has.
fn by_domain(sharded: &[ShardedTask]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in sharded {
        *counts.entry(s.task.domain.name().to_string()).or_default() += 1;
    }
    counts
}

/// Up to `n` test tasks of each domain that shard (all of them for 0),
/// drawn as every subset is ([`super::subset`]), fully specified and sharded,
/// in the same order.
fn test_tasks(
    config: &crate::config::Config,
    test: &[Task],
    n: usize,
) -> Result<(Vec<Task>, Vec<ShardedTask>)> {
    let mut shardable = Vec::new();
    let mut sharded_by_id = HashMap::new();
    for t in test {
        if let Some(s) = ShardedTask::new(t)? {
            shardable.push(t.clone());
            sharded_by_id.insert(t.task_id.clone(), s);
        }
    }
    let (mut full, mut sharded) = (Vec::new(), Vec::new());
    for t in subset(config, &shardable, n) {
        full.push(t.clone());
        sharded.push(sharded_by_id.remove(&t.task_id).expect("shardable"));
    }
    Ok((full, sharded))
}

/// Every compared model with the shard teacher on the test tasks, sharded
/// and fully specified: the rows of `sml/turns.parquet`.
fn evaluate<B: Kernels>(
    ctx: &StageContext,
    tokenizer: &Tokenizer,
    full_test: &[Task],
    sharded_test: &[ShardedTask],
    shards: &HashMap<String, Vec<Shard>>,
    device: &B::Device,
) -> Result<Vec<SmlTurnRow>> {
    let cfg = &ctx.config.sml;
    let models = [
        ("base", BASE_DIR),
        ("rl2f", STUDENT_DIR),
        ("qprimed", QPRIMED_DIR),
        ("sml", SML_STUDENT_DIR),
    ];
    let params = dialogue_params(&ctx.config.eval, cfg.max_turns, cfg.feedback_level);
    let bar = progress::bar(ctx.progress, (models.len() * 2) as u64, "sml: evaluation");
    let mut rows = Vec::new();
    for (name, dir) in models {
        let model = checkpoint::load::<B>(&ctx.run_dir.join(dir), device)
            .with_context(|| format!("sml: loading the {name} model from {dir}"))?;
        let specs: [(&str, Vec<&Task>); 2] = [
            ("sharded", sharded_test.iter().map(|s| &s.task).collect()),
            ("full", full_test.iter().collect()),
        ];
        for (spec, tasks) in specs {
            bar.set_message(format!("{name} · {spec}"));
            let mut teacher = ShardTeacher {
                level: cfg.feedback_level,
                tokenizer,
                shards,
            };
            let runs = run_dialogues_with(
                &model,
                tokenizer,
                &tasks,
                1,
                &params,
                &mut teacher,
                dialogue_seed(0),
                device,
            )?;
            for run in &runs {
                let task = tasks[run.task_index];
                let task_shards = shards.get(&task.task_id).map_or(&[][..], Vec::as_slice);
                rows.extend(rows_of(name, spec, task, task_shards, run));
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The Q-priming SFT set: one Q-primed dialogue per sharded train task
/// (trained on its questions and its correct answer, never on the error
/// model's mistakes) and one single-turn answer per train task. Returns the
/// examples and how many questions they train.
fn qpriming_examples(
    ctx: &StageContext,
    tokenizer: &Tokenizer,
    train: &[Task],
    sharded: &[ShardedTask],
) -> Result<(Vec<Example>, usize)> {
    let cfg = &ctx.config.sml;
    let level = cfg.feedback_level;
    let mut examples = Vec::new();
    let mut questions = 0;
    for s in sharded {
        let seed = mix_seed(&[
            cfg.sft.seed,
            didact_data::rng::fnv1a(s.task.task_id.as_bytes()),
        ]);
        let dialogue = qprimed_dialogue(
            s,
            level,
            cfg.qprime_turns,
            cfg.question_base,
            cfg.qprime_retry,
            &mut Rng::new(seed),
        )?;
        let student = dialogue.texts(Role::Student);
        let domain = s.task.domain.domain();
        let mut keep = Vec::with_capacity(student.len());
        for text in &student {
            let question = parse_move(text).is_question();
            questions += question as usize;
            keep.push(question || domain.verify(&s.task, text)?.is_correct());
        }
        if !keep.iter().any(|&k| k) {
            continue;
        }
        let encoded = tokenizer.encode_dialogue(&dialogue)?;
        let mask =
            encoded.loss_mask_turns(Role::Student, |k| keep.get(k).copied().unwrap_or(false));
        examples.push(Example {
            ids: encoded.ids,
            mask,
        });
    }
    for task in train {
        let mut dialogue = Dialogue::from_task(&task.prompt);
        dialogue.push(Role::Student, &task.solution);
        let encoded = tokenizer.encode_dialogue(&dialogue)?;
        let mask = encoded.loss_mask(Role::Student);
        examples.push(Example {
            ids: encoded.ids,
            mask,
        });
    }
    Ok((examples, questions))
}

/// The rows of one evaluation dialogue, each turn classified as a question
/// or an answer, premature or not.
fn rows_of(
    model: &str,
    spec: &str,
    task: &Task,
    shards: &[Shard],
    run: &DialogueRun,
) -> Vec<SmlTurnRow> {
    let turns: Vec<(&str, Option<&str>)> = run
        .turns
        .iter()
        .map(|t| (t.attempt.as_str(), t.feedback.as_deref()))
        .collect();
    let kinds = classify_turns(shards, &turns);
    run.turns
        .iter()
        .zip(kinds)
        .map(|(t, k)| SmlTurnRow {
            model: model.into(),
            spec: spec.into(),
            domain: task.domain.name().into(),
            task_id: full_task_id(&task.task_id).into(),
            turn: t.turn as u32,
            attempt: t.attempt.clone(),
            feedback: t.feedback.clone().unwrap_or_default(),
            question: k.question,
            premature: k.premature,
            correct: t.verdict.is_correct() && !k.question,
        })
        .collect()
}

/// Per-dialogue facts the metrics are means of.
struct DialogueFacts {
    /// The fully specified task's id, which pairs dialogues across models.
    task: String,
    /// 1-based turn of the first correct answer.
    solved: Option<u32>,
    questions: usize,
    premature: bool,
}

type Key = (String, String, String);

/// Dialogues by (model, spec, domain), with `all` pooled; models in the
/// order base, rl2f, qprimed, sml.
fn dialogues(rows: &[SmlTurnRow]) -> Vec<(Key, Vec<DialogueFacts>)> {
    let mut by_dialogue: std::collections::BTreeMap<
        (String, String, String, String),
        Vec<&SmlTurnRow>,
    > = Default::default();
    for r in rows {
        by_dialogue
            .entry((
                r.model.clone(),
                r.spec.clone(),
                r.domain.clone(),
                r.task_id.clone(),
            ))
            .or_default()
            .push(r);
    }
    let mut cells: Vec<(Key, Vec<DialogueFacts>)> = Vec::new();
    for ((model, spec, domain, task), turns) in by_dialogue {
        for d in [domain.clone(), "all".to_string()] {
            let facts = DialogueFacts {
                task: task.clone(),
                solved: turns.iter().filter(|r| r.correct).map(|r| r.turn).min(),
                questions: turns.iter().filter(|r| r.question).count(),
                premature: turns.iter().any(|r| r.premature),
            };
            let key = (model.clone(), spec.clone(), d);
            match cells.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(facts),
                None => cells.push((key, vec![facts])),
            }
        }
    }
    let rank = |m: &str| {
        ["base", "rl2f", "qprimed", "sml"]
            .iter()
            .position(|x| *x == m)
            .unwrap_or(4)
    };
    cells.sort_by(|a, b| {
        (rank(&a.0.0), &a.0.1, a.0.2 != "all", &a.0.2).cmp(&(
            rank(&b.0.0),
            &b.0.1,
            b.0.2 != "all",
            &b.0.2,
        ))
    });
    cells
}

/// Accuracy at turn `k` of `ours` minus that of `base` on the tasks both
/// were evaluated on, with a bootstrap 95% interval of the paired mean.
fn paired_difference(ours: &[DialogueFacts], base: &[DialogueFacts], k: u32) -> (f64, f64, f64) {
    let solved = |f: &DialogueFacts| f.solved.is_some_and(|s| s <= k) as u8 as f64;
    let base: HashMap<&str, f64> = base.iter().map(|f| (f.task.as_str(), solved(f))).collect();
    let diffs: Vec<f64> = ours
        .iter()
        .filter_map(|f| base.get(f.task.as_str()).map(|b| solved(f) - b))
        .collect();
    mean_ci(&diffs, 0xD1FF)
}

/// A mean with its bootstrap 95% interval.
fn mean_ci(values: &[f64], seed: u64) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let (lo, hi) = bootstrap_mean_ci(values, RESAMPLES, seed);
    (mean, lo, hi)
}

/// The report's lookups in its summary rows.
trait SummaryLookup {
    fn is(&self, model: &str, spec: &str, domain: &str, metric: &str, turn: u32) -> bool;
}

impl SummaryLookup for SummaryRow {
    fn is(&self, model: &str, spec: &str, domain: &str, metric: &str, turn: u32) -> bool {
        self.model == model
            && self.spec == spec
            && self.domain == domain
            && self.metric == metric
            && self.turn == turn
    }
}

/// The report section and the summary table.
pub fn report(rows: &[SmlTurnRow], k: usize) -> (String, DataFrame) {
    let cells = dialogues(rows);
    let mut table: Vec<SummaryRow> = Vec::new();
    let mut md = String::from("## Social meta-learning: sharded tasks\n\n");
    let _ = writeln!(
        md,
        "The first turn withholds an essential part of each task; the teacher reveals a part when \
         the student asks (`? name`). An answer is *premature* when an essential part was still \
         unrevealed. Greedy decoding, up to {k} student turns (questions count as turns); the same \
         test tasks sharded and fully specified; percentages with bootstrap 95% CIs over tasks.\n"
    );
    md.push_str(&format!(
        "| model | spec | tasks | premature-answer rate | questions / dialogue | acc@1 | acc@{k} |\n|---|---|---:|---|---|---|---|\n"
    ));
    for (i, ((model, spec, domain), facts)) in cells.iter().enumerate() {
        let n = facts.len() as u32;
        let seed = i as u64;
        let premature: Vec<f64> = facts.iter().map(|f| f.premature as u8 as f64).collect();
        let questions: Vec<f64> = facts.iter().map(|f| f.questions as f64).collect();
        let p = mean_ci(&premature, seed);
        let q = mean_ci(&questions, seed + 1);
        let mut push = |metric: &'static str, turn: u32, v: (f64, f64, f64)| {
            table.push(SummaryRow {
                model: model.clone(),
                spec: spec.clone(),
                domain: domain.clone(),
                metric: metric.into(),
                turn,
                value: v.0,
                ci_low: v.1,
                ci_high: v.2,
                n_dialogues: n,
            });
        };
        push("premature_rate", 0, p);
        push("questions_per_dialogue", 0, q);
        let mut acc = Vec::new();
        for t in 1..=k as u32 {
            let solved: Vec<f64> = facts
                .iter()
                .map(|f| f.solved.is_some_and(|s| s <= t) as u8 as f64)
                .collect();
            let a = mean_ci(&solved, seed + 1 + t as u64);
            push("cum_accuracy", t, a);
            acc.push(a);
        }
        if domain == "all" {
            let pct = |v: (f64, f64, f64)| {
                format!(
                    "{:.1} [{:.1}, {:.1}]",
                    100.0 * v.0,
                    100.0 * v.1,
                    100.0 * v.2
                )
            };
            let _ = writeln!(
                md,
                "| {model} | {spec} | {n} | {} | {:.2} [{:.2}, {:.2}] | {} | {} |",
                if spec == "sharded" {
                    pct(p)
                } else {
                    "—".into()
                },
                q.0,
                q.1,
                q.2,
                pct(acc[0]),
                pct(acc[k - 1])
            );
        }
    }
    delta_section(&mut md, &mut table, &cells, k);
    turn_and_domain_sections(&mut md, &table, &cells, k);
    md.push('\n');
    (md, summary_frame(&table))
}

/// The report's dialogues, by (model, spec, domain).
type Cells = Vec<(Key, Vec<DialogueFacts>)>;

/// The difference from the base model at turn `k`, paired over tasks, as
/// a report table and as `delta_vs_base` rows.
fn delta_section(md: &mut String, table: &mut Vec<SummaryRow>, cells: &Cells, k: usize) {
    let _ = write!(
        md,
        "\nDifference from the base model in accuracy at turn {k} (points, paired over tasks, \
         bootstrap 95% CI):\n\n| model | sharded | full |\n|---|---|---|\n"
    );
    for model in ["rl2f", "qprimed", "sml"] {
        let mut line = format!("| {model} |");
        for spec in ["sharded", "full"] {
            let cell = |m: &str| {
                cells
                    .iter()
                    .find(|((cm, cs, cd), _)| cm == m && cs == spec && cd == "all")
                    .map(|(_, f)| f)
            };
            let (Some(ours), Some(base)) = (cell(model), cell("base")) else {
                line.push_str(" |");
                continue;
            };
            let d = paired_difference(ours, base, k as u32);
            table.push(SummaryRow {
                model: model.into(),
                spec: spec.into(),
                domain: "all".into(),
                metric: "delta_vs_base".into(),
                turn: k as u32,
                value: d.0,
                ci_low: d.1,
                ci_high: d.2,
                n_dialogues: ours.len() as u32,
            });
            line.push_str(&format!(
                " {:+.1} [{:+.1}, {:+.1}] |",
                100.0 * d.0,
                100.0 * d.1,
                100.0 * d.2
            ));
        }
        let _ = writeln!(md, "{line}");
    }
}

/// Accuracy by turn pooled over domains, and the sharded tasks by domain.
fn turn_and_domain_sections(md: &mut String, table: &[SummaryRow], cells: &Cells, k: usize) {
    md.push_str(
        "\nAccuracy by turn (cumulative, percent), all domains pooled:\n\n| model | spec |",
    );
    for t in 1..=k {
        md.push_str(&format!(" {t} |"));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(k));
    md.push('\n');
    for ((model, spec, domain), _) in cells {
        if domain != "all" {
            continue;
        }
        md.push_str(&format!("| {model} | {spec} |"));
        for t in 1..=k as u32 {
            let v = table
                .iter()
                .find(|r| r.is(model, spec, domain, "cum_accuracy", t))
                .map_or(f64::NAN, |r| r.value);
            md.push_str(&format!(" {:.1} |", 100.0 * v));
        }
        md.push('\n');
    }
    md.push_str("\nBy domain (sharded tasks): premature-answer rate, questions per dialogue, acc@K:\n\n| model | domain | premature | questions | acc@K |\n|---|---|---:|---:|---:|\n");
    for ((model, spec, domain), _) in cells {
        if domain == "all" || spec != "sharded" {
            continue;
        }
        let get = |metric: &str, turn: u32| {
            table
                .iter()
                .find(|r| r.is(model, spec, domain, metric, turn))
                .map_or(f64::NAN, |r| r.value)
        };
        md.push_str(&format!(
            "| {model} | {domain} | {:.1} | {:.2} | {:.1} |\n",
            100.0 * get("premature_rate", 0),
            get("questions_per_dialogue", 0),
            100.0 * get("cum_accuracy", k as u32)
        ));
    }
}

/// `sml/summary.parquet`'s frame.
fn summary_frame(table: &[SummaryRow]) -> DataFrame {
    SummaryRow::frame(table).expect("columns of equal length")
}

/// One line per model on sharded tasks, for the run's summary.
fn headline(rows: &[SmlTurnRow], k: usize) -> Vec<String> {
    dialogues(rows)
        .into_iter()
        .filter(|((_, spec, domain), _)| spec == "sharded" && domain == "all")
        .map(|((model, _, _), facts)| {
            let n = facts.len().max(1) as f64;
            let premature = facts.iter().filter(|f| f.premature).count() as f64 / n;
            let questions = facts.iter().map(|f| f.questions).sum::<usize>() as f64 / n;
            let acc = |t: u32| facts.iter().filter(|f| f.solved.is_some_and(|s| s <= t)).count() as f64 / n;
            format!(
                "sml: {model:>5} on sharded tasks: premature answers in {:.1}% of dialogues, {questions:.2} questions per dialogue, accuracy {:.1}% → {:.1}% (turn 1 → {k})",
                100.0 * premature,
                100.0 * acc(1),
                100.0 * acc(k as u32)
            )
        })
        .collect()
}

/// The section `analyse` adds to `report.md`: the SML stage's report, or
/// how to produce it.
pub fn report_section(run_dir: &Path) -> Result<String> {
    let path = run_dir.join(SML_TURNS_FILE);
    let rows = if path.exists() {
        SmlTurnRow::read(&path)?
    } else {
        Vec::new()
    };
    if rows.is_empty() {
        return Ok("## Social meta-learning\n\nNot run: `just sml` (configs/sml.toml) or `--set sml.enabled=true` adds it.\n\n".into());
    }
    let k = rows.iter().map(|r| r.turn as usize).max().unwrap_or(1);
    Ok(report(&rows, k).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        model: &str,
        task: &str,
        turn: u32,
        question: bool,
        premature: bool,
        correct: bool,
    ) -> SmlTurnRow {
        SmlTurnRow {
            model: model.into(),
            spec: "sharded".into(),
            domain: "arith".into(),
            task_id: task.into(),
            turn,
            attempt: if question { "? x".into() } else { "7".into() },
            feedback: String::new(),
            question,
            premature,
            correct,
        }
    }

    #[test]
    fn metrics_on_a_hand_made_table() {
        let rows = vec![
            // base answers at once, wrong then right by luck.
            row("base", "a", 1, false, true, false),
            row("base", "a", 2, false, true, true),
            row("base", "b", 1, false, true, false),
            // sml asks, then answers.
            row("sml", "a", 1, true, false, false),
            row("sml", "a", 2, false, false, true),
            row("sml", "b", 1, true, false, false),
            row("sml", "b", 2, false, false, true),
        ];
        let cells = dialogues(&rows);
        let get = |m: &str| {
            &cells
                .iter()
                .find(|(k, _)| k.0 == m && k.2 == "all")
                .unwrap()
                .1
        };
        let base = get("base");
        assert_eq!(base.len(), 2);
        assert!(base.iter().all(|f| f.premature && f.questions == 0));
        assert_eq!(
            base.iter().filter_map(|f| f.solved).collect::<Vec<_>>(),
            [2]
        );
        let sml = get("sml");
        assert!(sml.iter().all(|f| !f.premature && f.questions == 1));
        let (md, df) = report(&rows, 2);
        assert!(
            md.contains("| base | sharded | 2 | 100.0 [100.0, 100.0] | 0.00"),
            "{md}"
        );
        assert!(
            md.contains("| sml | sharded | 2 | 0.0 [0.0, 0.0] | 1.00"),
            "{md}"
        );
        // acc@2: base 50%, sml 100%, paired over the same two tasks.
        assert!(md.contains("| sml | +50.0 [+0.0, +100.0] | |"), "{md}");
        let acc: Vec<f64> = df
            .column("value")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        // 2 models × (arith, all) × (premature, questions, 2 turns), and
        // sml's difference from base.
        assert_eq!(df.height(), 2 * 2 * 4 + 1);
        assert!(acc.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
