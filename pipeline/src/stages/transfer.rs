//! The `transfer` stage: the cross-domain matrix (trained on X, evaluated
//! on Y). For each domain X in `transfer.domains`, an RL²F student is
//! trained from the base model on X's train tasks alone (the `[student]`
//! settings, `transfer.iterations` iterations); then the base model, the
//! RL²F student trained on every domain, and each single-domain student
//! talk with the teacher on the test tasks of every domain. Writes
//! `transfer/turns.parquet` (the schema of `eval/turns.parquet`; a student
//! trained on X alone is model `rl2f_<X>`), which `analyse` turns into the
//! matrix. With no domains listed the stage writes an empty table and the
//! report says how to compute the matrix: training one student per domain
//! costs about as much as the `student` stage each.

use anyhow::Result;
use didact_data::tables::Table;
use didact_data::tables::{self, read_tasks};
use didact_data::{DomainKind, Split, Task, Tokenizer};
use didact_student::checkpoint;
use didact_student::grpo::RlConfig;
use didact_student::kernels::TrainBackend;
use didact_student::rollout::{Teacher, run_dialogues_with};
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, dialogue_params, dialogue_seed, subset, turn_rows,
};
use super::rl::run_rl;
use crate::config::Condition;
use crate::layout::{
    BASE_DIR, BASE_WEIGHTS, STUDENT_DIR, STUDENT_WEIGHTS, TASKS_FILE, TOKENIZER_FILE,
    TRANSFER_TURNS_FILE,
};
use crate::progress;

pub const STAGE: Stage = Stage {
    name: "transfer",
    per_seed: true,
    inputs: &[TASKS_FILE, TOKENIZER_FILE, BASE_WEIGHTS, STUDENT_WEIGHTS],
    config_section: |c| json!({"transfer": c.transfer, "eval": c.eval}),
    run,
};

/// The table's model name of a student trained on `domain` alone.
pub fn model_name(domain: DomainKind) -> String {
    format!("rl2f_{}", domain.name())
}

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    let cfg = &ctx.config.transfer;
    let path = ctx.run_dir.join(TRANSFER_TURNS_FILE);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if cfg.domains.is_empty() {
        tables::EvalTurnRow::write(&path, &[])?;
        return Ok(StageOutput {
            outputs: vec![TRANSFER_TURNS_FILE.into()],
            metrics: json!({"domains": []}),
            summary: vec![
                "transfer: no domains listed, cross-domain matrix skipped (set transfer.domains)"
                    .into(),
            ],
        });
    }
    let mut outputs = vec![TRANSFER_TURNS_FILE.to_string()];
    let mut summary = Vec::new();
    let rl = RlConfig {
        iterations: cfg.iterations,
        ..ctx.config.student.clone()
    };
    let mut models: Vec<(String, String)> = vec![
        ("base".into(), BASE_DIR.into()),
        ("rl2f".into(), STUDENT_DIR.into()),
    ];
    for &domain in &cfg.domains {
        let name = model_name(domain);
        let dir = format!("transfer/{}", domain.name());
        let outcome = run_rl::<B>(ctx, &rl, &name, &dir, Some(domain), device)?;
        outputs.extend(outcome.outputs);
        summary.extend(outcome.summary);
        models.push((name, dir));
    }
    outputs.sort();
    outputs.dedup();

    let eval = &ctx.config.eval;
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let test: Vec<Task> = read_tasks(&ctx.shared(TASKS_FILE))?
        .into_iter()
        .filter(|r| r.split == Split::Test)
        .map(|r| r.task)
        .collect();
    let tasks = subset(ctx.config, &test, cfg.tasks_per_domain);
    anyhow::ensure!(!tasks.is_empty(), "transfer: no test tasks in {TASKS_FILE}");
    let params = dialogue_params(
        eval,
        eval.max_turns,
        eval.feedback_level,
        ctx.config.data.restate_task,
    );
    let bar = progress::bar(ctx.progress, models.len() as u64, "transfer eval");
    let mut rows = Vec::new();
    let mut accuracy = serde_json::Map::new();
    for (name, dir) in &models {
        bar.set_message(name.clone());
        let model = checkpoint::load::<B::InnerBackend>(&ctx.run_dir.join(dir), device)?;
        let runs = run_dialogues_with(
            &model,
            &tokenizer,
            &tasks,
            1,
            &params,
            &mut Teacher(eval.feedback_level),
            dialogue_seed(0),
            device,
        )?;
        let mut by_domain: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for run in &runs {
            rows.extend(turn_rows(
                name,
                Condition::Teacher,
                0,
                &tasks,
                run,
                "teacher",
            ));
            let cell = by_domain
                .entry(tasks[run.task_index].domain.name())
                .or_default();
            cell.0 += run.solved_turn.is_some() as usize;
            cell.1 += 1;
        }
        let line = by_domain
            .iter()
            .map(|(d, (solved, n))| format!("{d} {:.1}%", 100.0 * *solved as f64 / *n as f64))
            .collect::<Vec<_>>()
            .join(", ");
        summary.push(format!(
            "transfer · {name} with the teacher, solved within {} turns: {line}",
            eval.max_turns
        ));
        accuracy.insert(name.clone(), json!(by_domain));
        bar.inc(1);
    }
    bar.finish_and_clear();
    tables::EvalTurnRow::write(&path, &rows)?;
    Ok(StageOutput {
        outputs,
        metrics: json!({
            "domains": cfg.domains,
            "iterations": cfg.iterations,
            "tasks": tasks.len(),
            "solved_within_k": accuracy,
        }),
        summary,
    })
}
