//! The `critic` stage: the RL²F student talks with the teacher on train
//! tasks; every attempt, wrong or right, is paired with the teacher's
//! message (`critiques.parquet`); the critic learns to predict those
//! messages from the dialogue alone. `critic.mode = "head"` trains a head
//! on the frozen student trunk; `"shared"` fine-tunes the whole student LM
//! on the critiques next to its student objective. Writes `critic/`.

use std::collections::BTreeMap;

use anyhow::Result;
use burn::module::{AutodiffModule, Module};
use didact_critic::calibration::{Calibration, calibration};
use didact_critic::config::{CalibrateOn, VerdictRule};
use didact_critic::data::fix_counts;
use didact_critic::data::{CritiqueRow, attempt_context, critic_examples, critique_dialogues};
use didact_critic::head::freeze_trunk;
use didact_critic::respond::{calibrate, calibrate_utility, critic_prompt};
use didact_critic::{Critic, CriticConfig, CriticMode};
use didact_data::domain::CORRECT_MESSAGE;
use didact_data::rng::Rng;
use didact_data::tables::Table;
use didact_data::{Dialogue, DomainKind, Task, Tokenizer};
use didact_student::generate::SamplingParams;
use didact_student::kernels::{Kernels, TrainBackend};
use didact_student::rollout::{DialogueParams, Request, Responder, run_dialogues};
use didact_student::sft::{self, Example, TrainHooks};
use didact_student::{Llama, checkpoint};
use indicatif::ProgressBar;
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, finish_training, load_tasks, pretrain_examples, save_final,
    subset,
};
use super::verdict::VerdictCalibration;
use crate::layout::{
    CRITIC_DIR, CRITIC_VERDICT_FILE, CRITIC_WEIGHTS, CRITIQUES_FILE, STUDENT_DIR, STUDENT_WEIGHTS,
    TASKS_FILE, TOKENIZER_FILE, TRAIN_LOG_FILE, VERDICT_FILE, resumable_dir,
};
use crate::progress;

pub const STAGE: Stage = Stage {
    name: "critic",
    per_seed: true,
    inputs: &[TASKS_FILE, TOKENIZER_FILE, STUDENT_WEIGHTS],
    // The verdict is calibrated on attempts decoded as `eval` decodes them.
    config_section: |c| json!({"critic": c.critic, "eval_temperature": c.eval.temperature}),
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

/// The student's dialogues with the teacher on `tasks` (`per_task` each,
/// decoded at `temperature`), as critique data.
#[allow(clippy::too_many_arguments)]
fn critique_data<B: Kernels>(
    student: &Llama<B>,
    tokenizer: &Tokenizer,
    tasks: &[&Task],
    cfg: &CriticConfig,
    temperature: f32,
    per_task: usize,
    seed: u64,
    restate_task: bool,
    device: &B::Device,
) -> Result<(Vec<Dialogue>, Vec<CritiqueRow>)> {
    let params = DialogueParams {
        max_turns: cfg.max_turns,
        feedback_level: cfg.feedback_level,
        sampling: SamplingParams {
            temperature,
            top_p: 1.0,
            max_new_tokens: cfg.max_new_tokens,
        },
        batch_size: 128,
        restate_task,
    };
    let runs = run_dialogues(student, tokenizer, tasks, per_task, &params, seed, device)?;
    Ok(critique_dialogues(
        tokenizer,
        tasks,
        &runs,
        cfg.feedback_level,
        restate_task,
    )?)
}

struct Hooks<'a> {
    bar: ProgressBar,
    cfg: &'a CriticConfig,
    tokenizer: &'a Tokenizer,
    /// Held-out attempts (on validation tasks) with the teacher's critique.
    val: &'a [CritiqueRow],
    /// The task of each held-out row.
    val_tasks: Vec<&'a Task>,
    /// Each held-out row's context, encoded.
    /// Each held-out attempt's ids through its stop token, and the stop.
    val_contexts: &'a [(Vec<u32>, u32)],
    val_examples: Vec<Example>,
    last: Vec<(String, f64)>,
}

impl<B: TrainBackend> TrainHooks<B> for Hooks<'_> {
    fn prepare(&mut self, model: Llama<B>) -> Llama<B> {
        match self.cfg.mode {
            CriticMode::Head => freeze_trunk(model, self.cfg.head_layers),
            CriticMode::Shared | CriticMode::Student => model,
        }
    }

    fn on_step(&mut self, step: usize, loss: f64, _lr: f64, tokens_per_s: f64) {
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {loss:.3} · {tokens_per_s:.0} tok/s"));
    }

    fn evaluate(
        &mut self,
        model: &Llama<B::InnerBackend>,
    ) -> didact_student::Result<Vec<(String, f64)>> {
        let device = model.devices().into_iter().next().expect("parameters");
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for chunk in self.val_examples.chunks(64) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = sft::make_batch::<B::InnerBackend>(
                &refs,
                self.cfg.train.max_seq_len,
                self.tokenizer.pad_id(),
                &device,
            );
            let l: f64 =
                burn::tensor::ElementConversion::elem(sft::masked_nll(model, &batch).into_scalar());
            loss_sum += l;
            batches += 1;
        }
        let requests: Vec<Request<'_>> = self
            .val_contexts
            .iter()
            .zip(self.val.iter().zip(&self.val_tasks))
            .map(|(c, (row, task))| Request {
                task,
                attempt: &row.attempt,
                verdict: didact_data::Verdict::Wrong,
                context: &c.0,
                stop: Some(c.1),
            })
            .collect();
        let mut critic = Critic {
            model,
            tokenizer: self.tokenizer,
            max_tokens: self.cfg.critique_tokens,
            oracle_stop: false,
            thresholds: Default::default(),
            default_threshold: 0.5,
            batch_size: 128,
            device,
        };
        let replies = critic.respond(&requests)?;
        let n = self.val.len().max(1) as f64;
        let verdict_agreement = self
            .val
            .iter()
            .zip(&replies)
            .filter(|(r, reply)| reply.judged_correct == (r.verdict == "correct"))
            .count() as f64
            / n;
        let exact = self
            .val
            .iter()
            .zip(&replies)
            .filter(|(r, reply)| reply.message == r.critique)
            .count() as f64
            / n;
        let metrics = vec![
            ("val_loss".to_string(), loss_sum / batches.max(1) as f64),
            ("val_verdict_agreement".to_string(), verdict_agreement),
            ("val_exact_critique".to_string(), exact),
        ];
        let line = format!(
            "critic: validation loss {:.3}, verdict agrees with the verifier on {:.1}% of attempts, critique identical to the teacher's on {:.1}%",
            metrics[0].1,
            100.0 * verdict_agreement,
            100.0 * exact
        );
        self.bar.suspend(|| tracing::info!("{line}"));
        self.last = metrics.clone();
        Ok(metrics)
    }
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    let cfg = &ctx.config.critic;
    let (tokenizer, train, val) = load_tasks(ctx)?;
    let student = checkpoint::load::<B::InnerBackend>(&ctx.run_dir.join(STUDENT_DIR), device)?;
    // A seeded sample of train tasks, so that every domain is represented.
    let mut order: Vec<&Task> = train.iter().collect();
    Rng::new(cfg.train.seed ^ 0xC41C).shuffle(&mut order);
    order.truncate(cfg.tasks);
    tracing::info!(
        "critic: sampling {} dialogues of the student with the teacher on {} train tasks",
        order.len() * cfg.dialogues_per_task,
        order.len()
    );
    let started = std::time::Instant::now();
    let (dialogues, rows) = critique_data(
        &student,
        &tokenizer,
        &order,
        cfg,
        cfg.temperature,
        cfg.dialogues_per_task,
        cfg.train.seed,
        ctx.config.data.restate_task,
        device,
    )?;
    // Held-out attempts decoded as `eval` decodes them: the verdict
    // threshold is calibrated on these, and sampled attempts (often
    // garbage, easy to call wrong) made thresholds that flagged right
    // answers at evaluation. Greedy decoding needs one dialogue per task.
    let eval_temperature = ctx.config.eval.temperature;
    let val_per_task = if eval_temperature == 0.0 {
        1
    } else {
        cfg.dialogues_per_task
    };
    let val_tasks = subset(ctx.config, &val, cfg.train.eval_tasks.max(1));
    let (val_dialogues, val_rows) = critique_data(
        &student,
        &tokenizer,
        &val_tasks,
        cfg,
        eval_temperature,
        val_per_task,
        cfg.train.seed + 1,
        ctx.config.data.restate_task,
        device,
    )?;
    let by_id: std::collections::HashMap<&str, &Task> =
        val_tasks.iter().map(|t| (t.task_id.as_str(), *t)).collect();
    let val_task_of: Vec<&Task> = val_rows.iter().map(|r| by_id[r.task_id.as_str()]).collect();
    CritiqueRow::write(&ctx.run_dir.join(CRITIQUES_FILE), &rows)?;
    let sampling_s = started.elapsed().as_secs_f64();
    let correct = rows.iter().filter(|r| r.verdict == "correct").count();
    tracing::info!(
        "critic: {} critiques ({} of correct attempts) in {sampling_s:.0}s",
        rows.len(),
        correct
    );

    let bar = progress::bar(ctx.progress, cfg.train.steps as u64, "critic");
    let val_contexts: Vec<(Vec<u32>, u32)> = val_rows
        .iter()
        .map(|r| {
            attempt_context(
                &tokenizer,
                &val_dialogues[r.dialogue as usize],
                r.turn as usize,
            )
        })
        .collect::<didact_data::Result<_>>()?;
    let mut hooks = Hooks {
        bar: bar.clone(),
        cfg,
        tokenizer: &tokenizer,
        val: &val_rows,
        val_tasks: val_task_of,
        val_contexts: &val_contexts,
        val_examples: critic_examples(&tokenizer, &val_dialogues)?,
        last: Vec::new(),
    };
    let ckpt = resumable_dir(ctx.run_dir, "critic");
    // In `self` mode the critic is the RL²F student as it is: it learnt the
    // teacher's turns beside its own in pretraining.
    let (critic, log, steps) = if cfg.mode == CriticMode::Student {
        <Hooks<'_> as TrainHooks<B>>::evaluate(&mut hooks, &student)?;
        (student, Vec::new(), 0)
    } else {
        let examples = training_examples(&tokenizer, &dialogues, &rows, &order, cfg)?;
        let model = checkpoint::load::<B>(&ctx.run_dir.join(STUDENT_DIR), device)?;
        let trained = sft::train(
            model,
            &examples,
            &cfg.train,
            tokenizer.pad_id(),
            &ckpt,
            &mut hooks,
            device,
        )?;
        let steps = cfg.train.steps - trained.resumed_from;
        (trained.model.valid(), trained.log, steps)
    };
    bar.finish_and_clear();
    save_final(
        &critic,
        &ctx.run_dir.join(CRITIC_DIR),
        &ctx.shared(TOKENIZER_FILE),
    )?;
    // The verdict threshold, calibrated on the held-out attempts.
    let verdict = calibrate_verdict::<B>(
        &critic,
        &tokenizer,
        cfg,
        &val_contexts,
        &val_rows,
        &rows,
        device,
    )?;
    didact_data::atomic::write(
        &ctx.run_dir.join(CRITIC_DIR).join(VERDICT_FILE),
        &serde_json::to_vec_pretty(&verdict)?,
    )?;
    finish_training(ctx.run_dir, "critic", &log, &ckpt)?;
    let wall = started.elapsed().as_secs_f64();
    let get = |k: &str| hooks.last.iter().find(|m| m.0 == k).map(|m| m.1);
    let summary = summary_lines(cfg, rows.len(), steps, wall, &hooks.last, &verdict);
    Ok(StageOutput {
        outputs: vec![
            format!("{CRITIC_DIR}/{}", checkpoint::CONFIG_FILE),
            CRITIC_WEIGHTS.into(),
            CRITIC_VERDICT_FILE.into(),
            CRITIQUES_FILE.into(),
            TRAIN_LOG_FILE.into(),
        ],
        metrics: json!({
            "mode": cfg.mode,
            "critiques": rows.len(),
            "critiques_of_correct_attempts": correct,
            "val_loss": get("val_loss"),
            "val_verdict_agreement": get("val_verdict_agreement"),
            "val_exact_critique": get("val_exact_critique"),
            "verdict": verdict,
            "wall_time_s": wall,
        }),
        summary,
    })
}

/// The critic's training examples: the teacher's message after every
/// sampled attempt, the solved dialogues' repeated `correct_copies` times,
/// and in `shared` mode the student's own single-turn solutions beside them.
fn training_examples(
    tokenizer: &Tokenizer,
    dialogues: &[Dialogue],
    rows: &[CritiqueRow],
    order: &[&Task],
    cfg: &CriticConfig,
) -> Result<Vec<Example>> {
    let mut examples = critic_examples(tokenizer, dialogues)?;
    let solved: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.verdict == "correct")
        .map(|r| r.dialogue)
        .collect();
    let copies: Vec<Example> = solved
        .iter()
        .flat_map(|&d| std::iter::repeat_n(examples[d as usize].clone(), cfg.correct_copies))
        .collect();
    examples.extend(copies);
    if cfg.mode == CriticMode::Shared {
        // The student objective beside the critique objective: single-turn
        // solutions of the same tasks.
        examples.extend(pretrain_examples(tokenizer, order, &[], None)?);
    }
    Ok(examples)
}

/// The stage's summary: the critic's agreement with the verifier and the
/// teacher on held-out attempts, and its calibrated verdict rule.
fn summary_lines(
    cfg: &CriticConfig,
    n_critiques: usize,
    steps: usize,
    wall: f64,
    last: &[(String, f64)],
    verdict: &VerdictCalibration,
) -> Vec<String> {
    let get = |k: &str| last.iter().find(|m| m.0 == k).map(|m| m.1);
    let mut summary = vec![format!(
        "critic (`{}` mode): {} critiques, {} training steps in {wall:.0}s; on held-out attempts its verdict agrees with the verifier {:.1}% of the time, its critique equals the teacher's {:.1}%",
        cfg.mode.name(),
        n_critiques,
        steps,
        100.0 * get("val_verdict_agreement").unwrap_or(f64::NAN),
        100.0 * get("val_exact_critique").unwrap_or(f64::NAN),
    )];
    summary.push(format!(
        "critic: verdict thresholds on P(\"Correct.\") ({:?} rule; the student fixes {} of wrong attempts after the teacher's feedback) {:?}: on held-out attempts it calls {:.1}% of the correct ones correct and {:.1}% of the wrong ones wrong",
        verdict.rule,
        verdict
            .fix_rates
            .iter()
            .map(|(d, f)| format!("{d} {:.0}%", 100.0 * f))
            .collect::<Vec<_>>()
            .join(", "),
        verdict.thresholds,
        100.0 * verdict.recall,
        100.0 * verdict.specificity
    ));
    summary
}

/// The critic's verdict rule, calibrated on the held-out attempts
/// (`val_contexts`, `val_rows`; the first ones alone under
/// `critic.calibrate_on = "first"`): one threshold on P("Correct.") per
/// domain under `cfg.verdict`, with the student's fix rates after the
/// teacher's feedback (from the train `rows`) as the `utility` rule's
/// stakes. Its calibration (ECE, Brier, AUROC) is measured on every held-out
/// attempt and on the first ones.
fn calibrate_verdict<B: TrainBackend>(
    critic_model: &Llama<B::InnerBackend>,
    tokenizer: &Tokenizer,
    cfg: &CriticConfig,
    val_contexts: &[(Vec<u32>, u32)],
    val_rows: &[CritiqueRow],
    rows: &[CritiqueRow],
    device: &B::Device,
) -> Result<VerdictCalibration> {
    let critic = Critic {
        model: critic_model,
        tokenizer,
        max_tokens: cfg.critique_tokens,
        oracle_stop: false,
        thresholds: Default::default(),
        default_threshold: 0.5,
        batch_size: 128,
        device: device.clone(),
    };
    let val_prompts: Vec<Vec<u32>> = val_contexts
        .iter()
        .map(|(ids, stop)| critic_prompt(tokenizer, ids, Some(*stop)))
        .collect::<didact_data::Result<_>>()?;
    let p = critic.p_correct(&val_prompts, &tokenizer.encode(CORRECT_MESSAGE)?);
    debug_assert_eq!(p.len(), val_rows.len(), "one score per held-out row");
    let scored: Vec<(f64, bool)> = p
        .iter()
        .zip(val_rows)
        .map(|(p, r)| (*p, r.verdict == "correct"))
        .collect();
    let counts = fix_counts(rows);
    let fix: BTreeMap<DomainKind, f64> = counts
        .iter()
        .map(|(d, (fixed, n))| (*d, *fixed as f64 / *n as f64))
        .collect();
    let (fixed, followed): (usize, usize) = counts
        .values()
        .fold((0, 0), |(a, b), (f, n)| (a + f, b + n));
    let pooled_fix = fixed as f64 / followed.max(1) as f64;
    let threshold = |of: &[(f64, bool)], fix_rate: f64| match cfg.verdict {
        VerdictRule::Recall => calibrate(of, cfg.min_recall),
        VerdictRule::Utility => (!of.is_empty()).then(|| calibrate_utility(of, fix_rate, 1.0)),
    };
    // The attempts the thresholds are set on (`critic.calibrate_on`).
    let calibrating = |r: &CritiqueRow| cfg.calibrate_on == CalibrateOn::All || r.turn == 1;
    let on = |domain| scores_where(&scored, val_rows, &calibrating, domain);
    let global = threshold(&on(None), pooled_fix).unwrap_or(0.5);
    // One threshold per domain: how sure the critic is differs by domain,
    // and so does what a missed wrong answer costs.
    let mut thresholds = BTreeMap::new();
    for domain in DomainKind::ALL.into_iter().chain(DomainKind::IMPORTED) {
        let of = on(Some(domain));
        if let Some(t) = threshold(&of, fix.get(&domain).copied().unwrap_or(0.0)) {
            thresholds.insert(domain.name().to_string(), t);
        }
    }
    let threshold_of = |d: DomainKind| thresholds.get(d.name()).copied().unwrap_or(global);
    let rate = |want: bool, judged: bool| {
        let of: Vec<(&(f64, bool), &CritiqueRow)> = scored
            .iter()
            .zip(val_rows)
            .filter(|(s, _)| s.1 == want)
            .collect();
        of.iter()
            .filter(|(s, r)| (s.0 >= threshold_of(r.domain)) == judged)
            .count() as f64
            / of.len().max(1) as f64
    };
    Ok(VerdictCalibration {
        thresholds: thresholds.clone(),
        default_threshold: global,
        rule: cfg.verdict,
        calibrated_on: cfg.calibrate_on,
        min_recall: cfg.min_recall,
        fix_rates: fix
            .iter()
            .map(|(d, f)| (d.name().to_string(), *f))
            .collect(),
        recall: rate(true, true),
        specificity: rate(false, false),
        held_out_attempts: scored.len(),
        calibration: calibration_by_domain(&scored, val_rows, &|_| true),
        calibration_first: calibration_by_domain(&scored, val_rows, &|r| r.turn == 1),
    })
}

/// The held-out (score, right) pairs of the rows `keep` selects in `domain`
/// (every domain with `None`).
fn scores_where(
    scored: &[(f64, bool)],
    val_rows: &[CritiqueRow],
    keep: &dyn Fn(&CritiqueRow) -> bool,
    domain: Option<DomainKind>,
) -> Vec<(f64, bool)> {
    scored
        .iter()
        .zip(val_rows)
        .filter(|(_, r)| keep(r) && domain.is_none_or(|d| r.domain == d))
        .map(|(s, _)| *s)
        .collect()
}

/// [`calibration`] of the held-out scores of the rows `keep` selects, per
/// domain and pooled (`all`).
fn calibration_by_domain(
    scored: &[(f64, bool)],
    val_rows: &[CritiqueRow],
    keep: &dyn Fn(&CritiqueRow) -> bool,
) -> BTreeMap<String, Calibration> {
    let of = |domain| scores_where(scored, val_rows, keep, domain);
    let mut out: BTreeMap<String, Calibration> = BTreeMap::new();
    for domain in DomainKind::ALL.into_iter().chain(DomainKind::IMPORTED) {
        if let Some(c) = calibration(&of(Some(domain))) {
            out.insert(domain.name().to_string(), c);
        }
    }
    if let Some(c) = calibration(&of(None)) {
        out.insert("all".into(), c);
    }
    out
}
