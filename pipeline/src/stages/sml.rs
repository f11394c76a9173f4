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

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use didact_data::domain::Shard;
use didact_data::rng::{Rng, mix_seed};
use didact_data::shard::{ShardedTask, classify_turns, full_task_id, parse_move, qprimed_dialogue};
use didact_data::tables::{self, SML_SUMMARY, SmlTurnRow, Table, read_tasks};
use didact_data::{Dialogue, Role, Split, Task, Tokenizer};
use didact_student::checkpoint;
use didact_student::grpo::RlConfig;
use didact_student::kernels::{Kernels, TrainBackend};
use didact_student::rollout::{DialogueRun, ShardTeacher, run_dialogues_with};
use didact_student::sft::Example;
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, dialogue_params, dialogue_seed, run_sft, save_final, subset,
};
use super::rl::{RlSetup, run_rl_with};
use crate::layout::{
    BASE_DIR, BASE_WEIGHTS, QPRIMED_DIR, QPRIMED_WEIGHTS, SML_DIR, SML_REPORT_FILE,
    SML_STUDENT_DIR, SML_SUMMARY_FILE, SML_TURNS_FILE, STUDENT_DIR, STUDENT_WEIGHTS, TASKS_FILE,
    TOKENIZER_FILE,
};
use crate::progress;
use crate::report::sml::{headline, report};

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
    let params = dialogue_params(&ctx.config.eval, cfg.max_turns, cfg.feedback_level, false);
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
