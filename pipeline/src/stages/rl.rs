//! The RL runner every RL stage shares: GRPO from a checkpoint with the
//! teacher (or the shard teacher), validated greedily by turn, saved with
//! its log. `student` (RL²F), `baseline` (single-turn RL), `transfer` (one
//! student per domain) and `sml` (from the Q-primed model) call it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use burn::module::AutodiffModule;
use didact_data::domain::Shard;
use didact_data::tables;
use didact_data::teaching::LeakTally;
use didact_data::{DomainKind, Task, Tokenizer};
use didact_student::grpo::{self, RlConfig, RlHooks};
use didact_student::kernels::TrainBackend;
use didact_student::rollout::{DialogueEnv, ShardTeacher, validation_dialogues};
use didact_student::teachers::{HttpTeacher, ModelTeacher, TeacherConfig, TeacherKind};
use didact_student::{Llama, checkpoint};
use indicatif::ProgressBar;
use serde_json::json;

use super::common::{StageContext, finish_training, load_tasks, save_final, subset};
use crate::analysis::solved_by_turn;
use crate::layout::{
    BASE_DIR, TASKS_FILE, TOKENIZER_FILE, TRAIN_LOG_FILE, checkpoint_files, resumable_dir,
};
use crate::progress;

/// The hooks of an RL run: the progress bar, and validation by greedy
/// dialogues with the teacher (the shard teacher for SML), accuracy by turn.
struct Hooks<'a> {
    bar: ProgressBar,
    name: &'a str,
    tokenizer: &'a Tokenizer,
    val: Vec<&'a Task>,
    cfg: &'a RlConfig,
    /// Shards of the sharded tasks (SML): validation then uses the shard
    /// teacher.
    shards: Option<&'a HashMap<String, Vec<Shard>>>,
    /// The task follows each reply (`data.restate_task`).
    restate_task: bool,
    /// Validation accuracy by turn of the latest evaluation.
    last_val: Vec<f64>,
}

impl<B: TrainBackend> RlHooks<B> for Hooks<'_> {
    fn on_iteration(&mut self, iteration: usize, metrics: &[(String, f64)]) {
        let get = |k: &str| metrics.iter().find(|m| m.0 == k).map_or(f64::NAN, |m| m.1);
        let last_turn = format!("solve_rate_turn_{}", self.cfg.max_turns);
        self.bar.set_position(iteration as u64);
        self.bar.set_message(format!(
            "reward {:.3} · solved@1 {:.0}% · solved@{} {:.0}%",
            get("reward_mean"),
            100.0 * get("solve_rate_turn_1"),
            self.cfg.max_turns,
            100.0 * get(&last_turn),
        ));
    }

    fn evaluate(
        &mut self,
        model: &Llama<B::InnerBackend>,
    ) -> didact_student::Result<Vec<(String, f64)>> {
        let solved = validation_dialogues(
            model,
            self.tokenizer,
            &self.val,
            self.cfg,
            self.shards,
            self.restate_task,
        )?;
        let acc = solved_by_turn(&solved, self.cfg.max_turns);
        let line = format!(
            "{}: validation accuracy with the teacher by turn: {}",
            self.name,
            acc.iter()
                .map(|a| format!("{:.1}%", 100.0 * a))
                .collect::<Vec<_>>()
                .join(" → ")
        );
        self.bar.suspend(|| tracing::info!("{line}"));
        self.last_val = acc.clone();
        Ok(acc
            .iter()
            .enumerate()
            .map(|(t, a)| (format!("val_accuracy_turn_{}", t + 1), *a))
            .collect())
    }
}

/// What an RL run produced.
pub struct RlOutcome {
    pub outputs: Vec<String>,
    pub metrics: serde_json::Value,
    pub summary: Vec<String>,
    pub rollouts: Vec<tables::RolloutRow>,
}

/// Runs GRPO from the base model with `cfg` and writes the result to
/// `out_dir` (relative to the run directory); `name` labels the train log,
/// the checkpoint directory and the messages. With `only`, the student
/// trains and is validated on that domain's tasks alone.
pub fn run_rl<B: TrainBackend>(
    ctx: &StageContext,
    cfg: &RlConfig,
    name: &str,
    out_dir: &str,
    only: Option<DomainKind>,
    device: &B::Device,
) -> Result<RlOutcome> {
    let (tokenizer, mut train, mut val) = load_tasks(ctx)?;
    if let Some(domain) = only {
        train.retain(|t| t.domain == domain);
        val.retain(|t| t.domain == domain);
    }
    let val = subset(ctx.config, &val, cfg.eval_tasks)
        .into_iter()
        .cloned()
        .collect();
    let setup = RlSetup {
        name,
        out_dir,
        init_dir: BASE_DIR,
        train,
        val,
        shards: None,
    };
    run_rl_with::<B>(ctx, cfg, &tokenizer, setup, device)
}

/// What an RL run trains on and where it starts and ends.
pub struct RlSetup<'a> {
    /// Labels the train log, the checkpoint directory and the messages.
    pub name: &'a str,
    /// Where the trained model goes, relative to the run directory.
    pub out_dir: &'a str,
    /// The checkpoint the policy starts from, relative to the run directory.
    pub init_dir: &'a str,
    pub train: Vec<Task>,
    /// Validated greedily at every `eval_every`.
    pub val: Vec<Task>,
    /// Shards of the sharded tasks among `train` and `val`, by task id:
    /// the shard teacher answers then (SML). `None`: the plain teacher.
    pub shards: Option<&'a HashMap<String, Vec<Shard>>>,
}

/// [`run_rl`] on any tasks, from any checkpoint, with the teacher of
/// `setup.shards`.
pub fn run_rl_with<B: TrainBackend>(
    ctx: &StageContext,
    cfg: &RlConfig,
    tokenizer: &Tokenizer,
    setup: RlSetup<'_>,
    device: &B::Device,
) -> Result<RlOutcome> {
    let RlSetup {
        name,
        out_dir,
        init_dir,
        train,
        val,
        shards,
    } = setup;
    anyhow::ensure!(!train.is_empty(), "{name}: no train tasks in {TASKS_FILE}");
    let policy = checkpoint::load::<B>(&ctx.run_dir.join(init_dir), device)?;
    let reference = policy.valid();
    let train_refs: Vec<&Task> = train.iter().collect();
    let tally = Arc::new(Mutex::new(LeakTally::default()));
    // SML's Q-priming dialogues do not restate its sharded tasks, so
    // neither do its rollouts.
    let restate_task = ctx.config.data.restate_task && shards.is_none();
    let (mut env, teacher_kind) = dialogue_env::<B>(
        &ctx.config.teacher,
        cfg,
        tokenizer,
        train_refs,
        shards,
        &reference,
        &tally,
        device,
    );
    env.restate_task = restate_task;
    tracing::info!(
        "{name}: {} iterations of {} tasks × {} dialogues of up to {} turns on {}",
        cfg.iterations,
        cfg.tasks_per_iteration,
        cfg.group_size,
        cfg.max_turns,
        ctx.device
    );
    let bar = progress::bar(ctx.progress, cfg.iterations as u64, name);
    let mut hooks = Hooks {
        bar: bar.clone(),
        name,
        tokenizer,
        val: val.iter().collect(),
        cfg,
        shards,
        restate_task,
        last_val: Vec::new(),
    };
    let started = std::time::Instant::now();
    let ckpt = resumable_dir(ctx.run_dir, name);
    let trained = grpo::train(
        policy,
        Some(&reference),
        &mut env,
        cfg,
        tokenizer.pad_id(),
        &ckpt,
        &mut hooks,
        device,
    )?;
    bar.finish_and_clear();
    if trained.resumed_from > 0 {
        tracing::info!("{name}: resumed from iteration {}", trained.resumed_from);
    }
    save_final(
        &trained.model.valid(),
        &ctx.run_dir.join(out_dir),
        &ctx.shared(TOKENIZER_FILE),
    )?;
    finish_training(ctx.run_dir, name, &trained.log, &ckpt)?;

    let leaks = *tally.lock().expect("tally");
    let (summary, metrics) = run_report(
        name,
        cfg,
        &trained.log,
        trained.resumed_from,
        &hooks.last_val,
        started.elapsed().as_secs_f64(),
        teacher_kind,
        &leaks,
    );
    Ok(RlOutcome {
        outputs: checkpoint_files(out_dir)
            .into_iter()
            .chain([TRAIN_LOG_FILE.to_string()])
            .collect(),
        metrics,
        summary,
        rollouts: env.rows,
    })
}

/// The summary lines and manifest metrics of a finished RL run: reward
/// early and late, validation accuracy by turn, the teacher's leak tally.
#[allow(clippy::too_many_arguments)]
fn run_report(
    name: &str,
    cfg: &RlConfig,
    log: &[didact_student::sft::LogRow],
    resumed_from: usize,
    last_val: &[f64],
    wall: f64,
    teacher_kind: &str,
    leaks: &LeakTally,
) -> (Vec<String>, serde_json::Value) {
    let mean_of = |metric: &str, from: usize| {
        let v: Vec<f64> = log
            .iter()
            .filter(|r| r.metric == metric && r.step as usize > from)
            .map(|r| r.value)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let window = (cfg.iterations / 5).max(1);
    let early = {
        let v: Vec<f64> = log
            .iter()
            .filter(|r| r.metric == "reward_mean" && r.step as usize <= window)
            .map(|r| r.value)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let late = mean_of("reward_mean", cfg.iterations - window);
    let mut summary = vec![
        format!(
            "{name}: {} iterations in {wall:.0}s; mean reward {early:.3} over the first {window} → {late:.3} over the last {window}",
            cfg.iterations - resumed_from
        ),
        format!(
            "{name}: validation accuracy with the teacher by turn: {}",
            last_val
                .iter()
                .map(|a| format!("{:.1}%", 100.0 * a))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
    ];
    if leaks.critiques > 0 {
        summary.push(format!(
            "{name}: {teacher_kind} teacher wrote {} critiques in {} drafts; {} drafts leaked \
             ({:.2}%) and were redrafted, {} critiques redacted to the verdict",
            leaks.critiques,
            leaks.drafts,
            leaks.leaked_drafts,
            100.0 * leaks.draft_leak_rate(),
            leaks.redacted
        ));
    }
    let metrics = json!({
            "iterations": cfg.iterations,
            "resumed_from": resumed_from,
            "reward_first": early,
            "reward_last": late,
            "val_accuracy_by_turn": last_val,
            "wall_time_s": wall,
            "teacher": {
                "kind": teacher_kind,
                "critiques": leaks.critiques,
                "drafts": leaks.drafts,
                "leaked_drafts": leaks.leaked_drafts,
                "empty_drafts": leaks.empty_drafts,
                "redacted": leaks.redacted,
                "draft_leak_rate": leaks.draft_leak_rate(),
            },
    });
    (summary, metrics)
}

/// The RL environment over `train` with the run's teacher in the teacher's
/// seat (the shard teacher when `shards` is given), and the teacher's kind
/// as the summary names it.
#[allow(clippy::too_many_arguments)]
fn dialogue_env<'a, B: TrainBackend>(
    teacher: &'a TeacherConfig,
    cfg: &RlConfig,
    tokenizer: &'a Tokenizer,
    train: Vec<&'a Task>,
    shards: Option<&'a HashMap<String, Vec<Shard>>>,
    reference: &'a Llama<B::InnerBackend>,
    tally: &Arc<Mutex<LeakTally>>,
    device: &B::Device,
) -> (DialogueEnv<'a>, &'static str) {
    let mut env = DialogueEnv::new(train, tokenizer, cfg);
    if let Some(shards) = shards {
        env = env.with_responder(Box::new(ShardTeacher {
            level: cfg.feedback_level,
            tokenizer,
            shards,
        }));
    } else {
        match teacher.kind {
            TeacherKind::Programmatic => {}
            // The base model, frozen, in the teacher's seat.
            TeacherKind::Model => {
                env = env.with_responder(Box::new(ModelTeacher::new(
                    reference,
                    tokenizer,
                    teacher,
                    cfg.seed,
                    device.clone(),
                    tally.clone(),
                )));
            }
            TeacherKind::Http => {
                env = env.with_responder(Box::new(HttpTeacher::new(teacher, tally.clone())));
            }
        }
    }
    let teacher_kind = match (shards, teacher.kind) {
        (Some(_), _) => "shard",
        (None, TeacherKind::Programmatic) => "programmatic",
        (None, TeacherKind::Model) => "model",
        (None, TeacherKind::Http) => "http",
    };
    (env, teacher_kind)
}
