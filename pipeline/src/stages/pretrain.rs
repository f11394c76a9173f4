//! The `pretrain` stage: supervised training of the single-turn base student
//! from scratch on (task → solution) examples and on the synthetic feedback
//! dialogues (their answer-after-feedback turns), validated by greedy
//! accuracy per domain. Writes the `base/` checkpoint in Hugging Face layout.
//!
//! With `model.source = "pretrained:<dir>"` nothing is trained: the stage
//! imports the pretrained checkpoint as `base/` (weights in f32, the run's
//! tokenizer and chat template beside them) and reports its validation
//! accuracy.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::tensor::ElementConversion;
use didact_data::dataset::revision_dialogue;
use didact_data::rng::{Rng, mix_seed};
use didact_data::tables::{SyntheticDialogue, Table, read_tasks};
use didact_data::{Dialogue, DomainKind, FeedbackLevel, Role, Split, Task, TaskRow, Tokenizer};
use didact_student::Llama;
use didact_student::eval::{accuracy_by_domain, accuracy_of, student_answers};
use didact_student::generate::SamplingParams;
use didact_student::kernels::TrainBackend;
use didact_student::rollout::{DialogueParams, Teacher, run_dialogues_with};
use didact_student::sft::TrainConfig;
use didact_student::sft::{self, Example, TrainHooks};
use didact_student::{checkpoint, sft::masked_nll};
use indicatif::ProgressBar;
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, finish_training, pretrain_examples, save_final, subset,
};
use crate::layout::{
    BASE_DIR, SYNTHETIC_FILE, TASKS_FILE, TOKENIZER_FILE, TRAIN_LOG_FILE, checkpoint_files,
    resumable_dir,
};
use crate::progress;

/// The training run names of the two phases, which name their resumable
/// checkpoints ([`resumable_dir`]).
const PHASE_NAME: &str = "pretrain";
const OWN_PHASE_NAME: &str = "pretrain_own";

pub const STAGE: Stage = Stage {
    name: "pretrain",
    per_seed: true,
    inputs: &[TASKS_FILE, SYNTHETIC_FILE, TOKENIZER_FILE],
    // The critic's level enters only in `self` mode, where pretraining
    // learns its critiques; other modes keep the section (and the stage's
    // outputs) as they were.
    config_section: |c| {
        let mut section =
            json!({"model": c.model, "pretrain": c.pretrain, "own_mistakes": c.own_mistakes});
        if let Some(level) = c.critic.self_critique() {
            section["self_critique"] = json!(level);
        }
        section
    },
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

struct Hooks<'a, B: TrainBackend> {
    bar: ProgressBar,
    tokenizer: &'a Tokenizer,
    val_tasks: Vec<&'a Task>,
    val_examples: Vec<Example>,
    max_new_tokens: usize,
    batch_size: usize,
    max_seq_len: usize,
    _backend: std::marker::PhantomData<B>,
    last_accuracy: BTreeMap<String, f64>,
    revisions: RevisionProbes<'a>,
}

/// The validation tasks, each with a wrong attempt from the domain's error
/// model, opened for the student once after the teacher's critique of it (at
/// the eval's feedback level) and once after "Try again.". Against the
/// first attempt's accuracy the two say, while the model learns, whether it
/// can answer after feedback at all and whether what the critique says
/// helps it.
struct RevisionProbes<'a> {
    tasks: Vec<&'a Task>,
    after_teacher: Vec<Dialogue>,
    after_retry: Vec<Dialogue>,
}

fn revision_probes<'a>(
    tasks: &[&'a Task],
    level: FeedbackLevel,
    restate: bool,
) -> Result<RevisionProbes<'a>> {
    let mut probes = RevisionProbes {
        tasks: tasks.to_vec(),
        after_teacher: Vec::with_capacity(tasks.len()),
        after_retry: Vec::with_capacity(tasks.len()),
    };
    for &task in tasks {
        let mut rng = Rng::new(mix_seed(&[task.seed, 0x9E7]));
        let attempt = task.domain.domain().wrong_attempt(task, &mut rng)?;
        let opened = |level| -> Result<Dialogue> {
            let (message, _) = didact_data::leak::teacher_message(task, &attempt, level)?;
            let mut d = Dialogue::from_task(&task.prompt);
            d.push(Role::Student, &attempt)
                .push_reply(Role::Teacher, &message, restate);
            Ok(d)
        };
        probes.after_teacher.push(opened(level)?);
        probes.after_retry.push(opened(FeedbackLevel::Retry)?);
    }
    Ok(probes)
}

/// Accuracy per domain and pooled: `{name}_{domain}` metrics, then `{name}`.
fn accuracy_metrics(name: &str, acc: &BTreeMap<DomainKind, (usize, usize)>) -> Vec<(String, f64)> {
    let (mut right, mut total) = (0, 0);
    let mut metrics = Vec::with_capacity(acc.len() + 1);
    for (domain, (c, n)) in acc {
        metrics.push((format!("{name}_{domain}"), *c as f64 / *n as f64));
        right += c;
        total += n;
    }
    metrics.push((name.to_string(), right as f64 / total.max(1) as f64));
    metrics
}

impl<B: TrainBackend> TrainHooks<B> for Hooks<'_, B> {
    fn on_step(&mut self, step: usize, loss: f64, lr: f64, tokens_per_s: f64) {
        self.bar.set_position(step as u64);
        self.bar.set_message(format!(
            "loss {loss:.3} · lr {lr:.1e} · {tokens_per_s:.0} tok/s"
        ));
    }

    fn evaluate(
        &mut self,
        model: &Llama<B::InnerBackend>,
    ) -> didact_student::Result<Vec<(String, f64)>> {
        let inner = model
            .devices()
            .into_iter()
            .next()
            .expect("a model has parameters");
        let mut metrics = Vec::new();
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for chunk in self.val_examples.chunks(self.batch_size) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = sft::make_batch::<B::InnerBackend>(
                &refs,
                self.max_seq_len,
                self.tokenizer.pad_id(),
                &inner,
            );
            let l: f64 = masked_nll(model, &batch).into_scalar().elem();
            loss_sum += l;
            batches += 1;
        }
        metrics.push(("val_loss".to_string(), loss_sum / batches.max(1) as f64));
        let acc = accuracy_by_domain(
            model,
            self.tokenizer,
            &self.val_tasks,
            self.max_new_tokens,
            64,
            &inner,
        )?;
        let first = accuracy_metrics("val_accuracy", &acc);
        for (domain, (c, n)) in &acc {
            self.last_accuracy
                .insert(domain.to_string(), *c as f64 / *n as f64);
        }
        let overall = first.last().expect("the pooled accuracy").1;
        self.last_accuracy.insert("all".into(), overall);
        metrics.extend(first);
        let revised = self.revision_accuracy(model, &inner)?;
        metrics.extend(revised.iter().cloned());
        let line = format!(
            "pretrain: validation loss {:.3}, accuracy {}; after a critique of an error-model attempt {}",
            loss_sum / batches.max(1) as f64,
            acc.iter()
                .map(|(d, (c, n))| format!("{d} {:.0}%", 100.0 * *c as f64 / *n as f64))
                .collect::<Vec<_>>()
                .join(", "),
            revised
                .iter()
                .filter(|(m, _)| m.starts_with("val_after_teacher_accuracy_"))
                .map(|(m, a)| format!(
                    "{} {:.0}%",
                    m.trim_start_matches("val_after_teacher_accuracy_"),
                    100.0 * a
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.bar.suspend(|| tracing::info!("{line}"));
        Ok(metrics)
    }
}

impl<B: TrainBackend> Hooks<'_, B> {
    /// Accuracy of the answer after the teacher's critique and after "Try
    /// again." on the revision probes, by domain and pooled.
    fn revision_accuracy(
        &self,
        model: &Llama<B::InnerBackend>,
        device: &B::Device,
    ) -> didact_student::Result<Vec<(String, f64)>> {
        let probes = &self.revisions;
        let mut metrics = Vec::new();
        for (name, dialogues) in [
            ("val_after_teacher_accuracy", &probes.after_teacher),
            ("val_after_retry_accuracy", &probes.after_retry),
        ] {
            let answers = student_answers(
                model,
                self.tokenizer,
                dialogues,
                self.max_new_tokens,
                64,
                device,
            )?;
            let acc = accuracy_of(&probes.tasks, &answers)?;
            metrics.extend(accuracy_metrics(name, &acc));
        }
        Ok(metrics)
    }
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    if let Some(dir) = ctx.config.model.source.pretrained_dir() {
        return import_pretrained::<B::InnerBackend>(ctx, dir, device);
    }
    let cfg = &ctx.config.pretrain;
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let tasks = read_tasks(&ctx.shared(TASKS_FILE))?;
    let synthetic = SyntheticDialogue::read(&ctx.shared(SYNTHETIC_FILE))?;
    let train: Vec<&Task> = tasks
        .iter()
        .filter(|r| r.split == Split::Train)
        .map(|r| &r.task)
        .collect();
    let examples = pretrain_examples(
        &tokenizer,
        &train,
        &synthetic,
        ctx.config.critic.self_critique(),
    )?;
    let val_tasks = val_tasks(ctx.config, &tasks, cfg.eval_tasks);
    let val_tasks: Vec<&Task> = val_tasks.iter().collect();
    let val_examples = pretrain_examples(&tokenizer, &val_tasks, &[], None)?;
    let revisions = revision_probes(
        &val_tasks,
        ctx.config.eval.feedback_level,
        ctx.config.data.restate_task,
    )?;

    let llama = ctx.config.model.to_llama(tokenizer.vocab_size());
    tracing::info!(
        "pretrain: {} parameters, {} examples, {} steps of {}×{} on {}",
        llama.num_params(),
        examples.len(),
        cfg.steps,
        cfg.batch_size,
        cfg.grad_accum,
        ctx.device
    );
    let model = checkpoint::init_random::<B>(&llama, ctx.config.model.seed, device)?;
    let bar = progress::bar(ctx.progress, cfg.steps as u64, "pretraining");
    let mut hooks = Hooks::<B> {
        bar: bar.clone(),
        tokenizer: &tokenizer,
        val_tasks,
        val_examples,
        max_new_tokens: cfg.max_new_tokens,
        batch_size: cfg.batch_size,
        max_seq_len: cfg.max_seq_len,
        _backend: std::marker::PhantomData,
        last_accuracy: BTreeMap::new(),
        revisions,
    };
    let started = std::time::Instant::now();
    let trained = sft::train(
        model,
        &examples,
        cfg,
        tokenizer.pad_id(),
        &resumable_dir(ctx.run_dir, PHASE_NAME),
        &mut hooks,
        device,
    )?;
    bar.finish_and_clear();
    if trained.resumed_from > 0 {
        tracing::info!("pretrain: resumed from step {}", trained.resumed_from);
    }
    let mut log = trained.log;
    let mut model = trained.model;
    let mut own_metrics = serde_json::Value::Null;
    if ctx.config.own_mistakes.tasks_per_domain > 0 {
        let own = own_mistakes_phase(
            ctx, model, &examples, &train, &tokenizer, &mut hooks, device,
        )?;
        model = own.model;
        log.extend(own.log);
        own_metrics = own.metrics;
    }
    save_final(
        &model.valid(),
        &ctx.run_dir.join(BASE_DIR),
        &ctx.shared(TOKENIZER_FILE),
    )?;
    let _ = std::fs::remove_dir_all(resumable_dir(ctx.run_dir, OWN_PHASE_NAME));
    finish_training(
        ctx.run_dir,
        "pretrain",
        &log,
        &resumable_dir(ctx.run_dir, PHASE_NAME),
    )?;

    let final_loss = log
        .iter()
        .rev()
        .find(|r| r.metric == "train_loss")
        .map(|r| r.value);
    let tps = log
        .iter()
        .rev()
        .find(|r| r.metric == "tokens_per_s")
        .map(|r| r.value);
    let acc = hooks.last_accuracy.clone();
    let mut summary = vec![format!(
        "pretrain: {} steps in {:.0}s, final train loss {:.3}, {:.0} tokens/s",
        cfg.steps - trained.resumed_from,
        started.elapsed().as_secs_f64(),
        final_loss.unwrap_or(f64::NAN),
        tps.unwrap_or(f64::NAN)
    )];
    summary.push(accuracy_line(&acc));
    Ok(StageOutput {
        outputs: checkpoint_files(BASE_DIR)
            .into_iter()
            .chain([TRAIN_LOG_FILE.to_string()])
            .collect(),
        metrics: json!({
            "parameters": llama.num_params(),
            "examples": examples.len(),
            "steps": cfg.steps,
            "resumed_from": trained.resumed_from,
            "final_train_loss": final_loss,
            "tokens_per_s": tps,
            "val_accuracy": acc,
            "own_mistakes": own_metrics,
        }),
        summary,
    })
}

/// What the second phase hands back.
struct OwnMistakes<B: TrainBackend> {
    model: Llama<B>,
    log: Vec<didact_student::sft::LogRow>,
    metrics: serde_json::Value,
}

/// The second phase of pretraining ([`crate::config::OwnMistakesConfig`]):
/// the base model answers a stratified draw of train tasks, and each
/// distinct wrong answer becomes a revision dialogue (the teacher's
/// critique, then the repair or the solution), trained beside as many
/// first-phase examples drawn at random. Steps are logged after the first
/// phase's.
fn own_mistakes_phase<B: TrainBackend>(
    ctx: &StageContext,
    model: Llama<B>,
    first_phase: &[Example],
    train: &[&Task],
    tokenizer: &Tokenizer,
    hooks: &mut Hooks<'_, B>,
    device: &B::Device,
) -> Result<OwnMistakes<B>> {
    let own = &ctx.config.own_mistakes;
    let cfg = &ctx.config.pretrain;
    let synthetic = &ctx.config.data.synthetic;
    let owned: Vec<Task> = train.iter().map(|t| (*t).clone()).collect();
    let tasks = subset(ctx.config, &owned, own.tasks_per_domain);
    let seed = mix_seed(&[cfg.seed, OWN_SEED_TAG]);
    let params = DialogueParams {
        max_turns: 1,
        feedback_level: FeedbackLevel::Retry,
        sampling: SamplingParams {
            temperature: own.temperature,
            top_p: 1.0,
            max_new_tokens: cfg.max_new_tokens,
        },
        batch_size: 128,
        restate_task: ctx.config.data.restate_task,
    };
    let runs = run_dialogues_with(
        &model.valid(),
        tokenizer,
        &tasks,
        own.samples,
        &params,
        &mut Teacher(FeedbackLevel::Retry),
        seed,
        device,
    )?;
    let levels = &synthetic.feedback_levels;
    let mut seen = std::collections::HashSet::new();
    let mut examples = Vec::new();
    let mut wrong_by_domain: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let task = tasks[run.task_index];
        let Some(turn) = run.turns.first() else {
            continue;
        };
        if turn.verdict.is_correct() || !seen.insert((run.task_index, turn.attempt.clone())) {
            continue;
        }
        *wrong_by_domain
            .entry(task.domain.name().to_string())
            .or_default() += 1;
        let level = levels[(run.task_index + run.member) % levels.len()];
        let revision = revision_dialogue(
            task,
            &turn.attempt,
            level,
            synthetic.repair,
            ctx.config.data.restate_task,
            1,
            &mut |_| Ok(task.solution.clone()),
        )?;
        let enc = tokenizer.encode_dialogue(&revision.dialogue)?;
        examples.push(Example {
            mask: enc.loss_mask_turns(Role::Student, |k| k >= revision.untrained),
            ids: enc.ids,
        });
    }
    let own_examples = examples.len();
    let metrics = json!({
        "answers": runs.len(),
        "wrong": own_examples,
        "wrong_by_domain": wrong_by_domain,
    });
    tracing::info!(
        "pretrain: {} of the base model's {} answers to {} train tasks are wrong; training on them",
        own_examples,
        runs.len(),
        tasks.len()
    );
    if own_examples == 0 {
        return Ok(OwnMistakes {
            model,
            log: Vec::new(),
            metrics,
        });
    }
    let mut rng = Rng::new(seed);
    for _ in 0..own_examples {
        examples.push(first_phase[rng.below(first_phase.len() as u64) as usize].clone());
    }
    let phase = TrainConfig {
        steps: own.steps,
        lr: own.lr,
        warmup_steps: cfg.warmup_steps.min(own.steps / 10).max(1),
        eval_every: own.steps,
        ..cfg.clone()
    };
    hooks.bar = progress::bar(ctx.progress, own.steps as u64, "own mistakes");
    let trained = sft::train(
        model,
        &examples,
        &phase,
        tokenizer.pad_id(),
        &resumable_dir(ctx.run_dir, OWN_PHASE_NAME),
        hooks,
        device,
    )?;
    hooks.bar.finish_and_clear();
    let log = trained
        .log
        .into_iter()
        .map(|mut r| {
            r.step += cfg.steps as u64;
            r
        })
        .collect();
    Ok(OwnMistakes {
        model: trained.model,
        log,
        metrics,
    })
}

/// Mixed into `pretrain.seed` for the second phase's sampling.
const OWN_SEED_TAG: u64 = 0x0FF1CE;

/// The summary line of the base model's validation accuracy by domain.
fn accuracy_line(accuracy: &BTreeMap<String, f64>) -> String {
    format!(
        "base model validation accuracy (greedy, first attempt): {}",
        accuracy
            .iter()
            .map(|(d, a)| format!("{d} {:.1}%", 100.0 * a))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Up to `n` validation tasks per domain, drawn as every subset is
/// ([`subset`]).
fn val_tasks(config: &crate::config::Config, tasks: &[TaskRow], n: usize) -> Vec<Task> {
    let val: Vec<Task> = tasks
        .iter()
        .filter(|r| r.split == Split::Val)
        .map(|r| r.task.clone())
        .collect();
    subset(config, &val, n).into_iter().cloned().collect()
}

/// The `pretrain` stage of a pretrained model: loads the checkpoint
/// (refusing an unsupported architecture or a vocabulary the tokenizer
/// outgrows), measures its first-attempt accuracy on validation tasks, and
/// writes it as `base/`.
fn import_pretrained<B: didact_student::kernels::Kernels>(
    ctx: &StageContext,
    dir: &Path,
    device: &B::Device,
) -> Result<StageOutput> {
    let cfg = &ctx.config.pretrain;
    let started = std::time::Instant::now();
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let tasks = read_tasks(&ctx.shared(TASKS_FILE))?;
    let model = checkpoint::load::<B>(dir, device)
        .with_context(|| format!("model.source: cannot import {}", dir.display()))?;
    let config = model.config.clone();
    anyhow::ensure!(
        tokenizer.vocab_size() <= config.vocab_size,
        "model.source: the tokenizer of {} has {} tokens but the model's vocab_size is {}",
        dir.display(),
        tokenizer.vocab_size(),
        config.vocab_size
    );
    tracing::info!(
        "pretrain: importing {} ({}, {} parameters) instead of training",
        dir.display(),
        config.model_type,
        config.num_params()
    );
    let val = val_tasks(ctx.config, &tasks, cfg.eval_tasks);
    let val: Vec<&Task> = val.iter().collect();
    let acc = accuracy_by_domain(&model, &tokenizer, &val, cfg.max_new_tokens, 64, device)?;
    let mut accuracy: BTreeMap<String, f64> = acc
        .iter()
        .map(|(d, (c, n))| (d.to_string(), *c as f64 / (*n).max(1) as f64))
        .collect();
    let (right, total) = acc.values().fold((0, 0), |(r, t), (c, n)| (r + c, t + n));
    accuracy.insert("all".into(), right as f64 / total.max(1) as f64);
    save_final(
        &model,
        &ctx.run_dir.join(BASE_DIR),
        &ctx.shared(TOKENIZER_FILE),
    )?;
    let summary = vec![
        format!(
            "pretrain: imported {} ({}, {} parameters) in {:.0}s; nothing trained",
            dir.display(),
            config.model_type,
            config.num_params(),
            started.elapsed().as_secs_f64()
        ),
        accuracy_line(&accuracy),
    ];
    Ok(StageOutput {
        outputs: checkpoint_files(BASE_DIR),
        metrics: json!({
            "imported_from": dir.display().to_string(),
            "parameters": config.num_params(),
            "val_accuracy": accuracy,
        }),
        summary,
    })
}
