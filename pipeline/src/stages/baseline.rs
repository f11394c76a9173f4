//! The `baseline` stage: the two baselines of RL²F on the same budget as
//! `student` (same tasks in the same order, same iterations, same number of
//! sampled dialogues).
//!
//! - **single-turn RL**: GRPO exactly as in `student`, with one attempt per
//!   episode (T_max = 1), so the model never sees feedback in training.
//! - **offline SFT** (offline RL): dialogues sampled once from the base
//!   model with the teacher, the successful ones kept, and supervised
//!   training on their student turns, one step per RL iteration.

use anyhow::Result;
use burn::module::AutodiffModule;

use didact_data::{Task, Tokenizer};
use didact_student::checkpoint;
use didact_student::grpo::RlConfig;
use didact_student::kernels::TrainBackend;
use didact_student::rollout::{DialogueEnv, run_dialogues};
use didact_student::sft::{Example, TrainConfig};
use serde_json::json;

use super::common::{Stage, StageContext, StageOutput, load_tasks, run_sft, save_final};
use super::rl::run_rl;
use crate::layout::{
    BASE_DIR, BASE_WEIGHTS, OFFLINE_DIR, OFFLINE_WEIGHTS, SINGLE_TURN_DIR, TASKS_FILE,
    TOKENIZER_FILE,
};
use crate::progress;

pub const STAGE: Stage = Stage {
    name: "baseline",
    per_seed: true,
    inputs: &[TASKS_FILE, TOKENIZER_FILE, BASE_WEIGHTS],
    config_section: |c| json!({"student": c.student, "baseline": c.baseline}),
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    let single_cfg = RlConfig {
        max_turns: 1,
        ..ctx.config.student.clone()
    };
    let single = run_rl::<B>(
        ctx,
        &single_cfg,
        "baseline_single_turn_rl",
        SINGLE_TURN_DIR,
        None,
        device,
    )?;
    let (offline_outputs, offline_metrics, offline_summary) = offline_sft::<B>(ctx, device)?;
    let mut outputs = single.outputs;
    outputs.extend(offline_outputs);
    let mut summary = single.summary;
    summary.extend(offline_summary);
    Ok(StageOutput {
        outputs,
        metrics: json!({"single_turn_rl": single.metrics, "offline_sft": offline_metrics}),
        summary,
    })
}

/// The successful dialogues of the base model with the teacher, sampled on
/// the RL run's task batches with its group size, temperature and turns.
fn successful_dialogues<B: TrainBackend>(
    ctx: &StageContext,
    tokenizer: &Tokenizer,
    train: &[Task],
    device: &B::Device,
) -> Result<(Vec<Example>, usize)> {
    let cfg = &ctx.config.student;
    let base = checkpoint::load::<B::InnerBackend>(&ctx.run_dir.join(BASE_DIR), device)?;
    let refs: Vec<&Task> = train.iter().collect();
    let mut env = DialogueEnv::new(refs, tokenizer, cfg);
    env.restate_task = ctx.config.data.restate_task;
    let params = env.params();
    let bar = progress::bar(
        ctx.progress,
        cfg.iterations as u64,
        "offline: sampling base",
    );
    let (mut examples, mut sampled) = (Vec::new(), 0);
    for it in 0..cfg.iterations {
        let tasks = env.batch(it);
        let seed = env.seed(it);
        let runs = run_dialogues(
            &base,
            tokenizer,
            &tasks,
            cfg.group_size,
            &params,
            seed,
            device,
        )?;
        sampled += runs.len();
        examples.extend(
            runs.into_iter()
                .filter(|r| r.solved_turn.is_some())
                .map(|r| Example {
                    ids: r.ids,
                    mask: r.mask,
                }),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((examples, sampled))
}

fn offline_sft<B: TrainBackend>(
    ctx: &StageContext,
    device: &B::Device,
) -> Result<(Vec<String>, serde_json::Value, Vec<String>)> {
    let rl = &ctx.config.student;
    let bl = &ctx.config.baseline;
    let (tokenizer, train, _) = load_tasks(ctx)?;
    let started = std::time::Instant::now();
    let (examples, sampled) = successful_dialogues::<B>(ctx, &tokenizer, &train, device)?;
    let steps = rl.iterations * rl.inner_epochs;
    let out = ctx.run_dir.join(OFFLINE_DIR);
    let base = checkpoint::load::<B>(&ctx.run_dir.join(BASE_DIR), device)?;
    let kept = examples.len();
    let model = if examples.is_empty() {
        tracing::warn!(
            "offline_sft: the base model solved none of {sampled} sampled dialogues; the baseline is the base model"
        );
        base
    } else {
        let cfg = TrainConfig {
            steps,
            batch_size: bl.offline_batch_size,
            grad_accum: 1,
            lr: bl.offline_lr,
            warmup_steps: rl.warmup_steps,
            min_lr_ratio: 1.0,
            weight_decay: rl.weight_decay,
            clip_norm: rl.clip_norm,
            max_seq_len: rl.max_seq_len,
            eval_every: steps,
            checkpoint_every: (steps / 4).max(1),
            eval_tasks: 0,
            max_new_tokens: rl.max_new_tokens,
            bucket_window: 4,
            seed: rl.seed,
        };
        run_sft(
            ctx,
            "baseline_offline_sft",
            "offline: SFT",
            base,
            &examples,
            &cfg,
            tokenizer.pad_id(),
            device,
        )?
    };
    save_final(&model.valid(), &out, &ctx.shared(TOKENIZER_FILE))?;
    let wall = started.elapsed().as_secs_f64();
    Ok((
        vec![format!("{OFFLINE_DIR}/config.json"), OFFLINE_WEIGHTS.into()],
        json!({"sampled": sampled, "kept": kept, "steps": steps, "wall_time_s": wall}),
        vec![format!(
            "offline_sft: kept {kept} of {sampled} base-model dialogues (solved), {steps} SFT steps in {wall:.0}s"
        )],
    ))
}
