//! The loop every training run shares: resume from a checkpoint of the same
//! config, take steps, log their metrics, validate and checkpoint on
//! schedule, stop when asked. SFT ([`crate::sft`]) and GRPO
//! ([`crate::grpo`]) differ only in what one step is, which each says as a
//! [`Procedure`].

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, Optimizer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kernels::TrainBackend;
use crate::model::Llama;
use crate::resume;

/// One row of a training run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub metric: String,
    pub value: f64,
}

/// The result of a finished (or stopped) run.
pub struct Trained<B: TrainBackend> {
    pub model: Llama<B>,
    pub log: Vec<LogRow>,
    /// Step the run resumed from (0 for a fresh run).
    pub resumed_from: usize,
    /// False when a hook stopped the run early.
    pub completed: bool,
}

/// When a run validates, checkpoints and ends, and how its optimizer decays
/// weights.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Steps of the whole run (SFT steps, GRPO iterations).
    pub steps: usize,
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub weight_decay: f32,
    /// Validate the starting model too, logged at step 0 (GRPO).
    pub evaluate_first: bool,
}

/// Metrics of one step, in the order they are logged.
pub type Metrics = Vec<(String, f64)>;

/// What one step of a run is, and what the caller wants told.
pub trait Procedure<B: TrainBackend> {
    /// The config a checkpoint must match to be resumed.
    type Config: Clone + PartialEq + Serialize + DeserializeOwned;

    /// Step `step` (0-based): updates `model` through `optim` and returns it
    /// with the metrics to log at `step + 1`, in order.
    fn step<O: Optimizer<Llama<B>, B>>(
        &mut self,
        model: Llama<B>,
        optim: &mut O,
        step: usize,
    ) -> Result<(Llama<B>, Metrics)>;

    /// Validation metrics of the current model.
    fn evaluate(&mut self, model: &Llama<B::InnerBackend>) -> Result<Metrics>;

    /// Asked after each step (and its checkpoint, if one was due): `true`
    /// stops the run there, as an interruption would.
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }

    /// Applied to the model before training starts and again after it is
    /// reloaded from a checkpoint (what a checkpoint does not record).
    fn prepare(&mut self, model: Llama<B>) -> Llama<B> {
        model
    }

    /// Files of the procedure's own saved beside a checkpoint in `dir`.
    fn save(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Restores what [`Procedure::save`] wrote, on resume.
    fn restore(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// What a checkpoint records besides weights and optimizer state.
#[derive(Serialize, Deserialize)]
struct LoopState<C> {
    /// Steps completed (`iteration` in GRPO checkpoints written before the
    /// loop was shared).
    #[serde(alias = "iteration")]
    step: usize,
    config: C,
    log: Vec<LogRow>,
}

/// Runs `procedure` from `model` under `schedule`. If `ckpt_dir` holds a
/// checkpoint of an interrupted run with the same `config`, the run resumes
/// from it exactly (weights, optimizer state and the procedure's own
/// state).
pub fn run<B: TrainBackend, P: Procedure<B>>(
    mut model: Llama<B>,
    procedure: &mut P,
    config: &P::Config,
    schedule: &Schedule,
    ckpt_dir: &Path,
    device: &B::Device,
) -> Result<Trained<B>> {
    let mut optim = AdamWConfig::new()
        .with_weight_decay(schedule.weight_decay)
        .init::<B, Llama<B>>();
    let mut state = LoopState {
        step: 0,
        config: config.clone(),
        log: Vec::new(),
    };
    if let Some(saved) = resume::read_state::<LoopState<P::Config>>(ckpt_dir)?
        && saved.config == *config
    {
        (model, optim) = resume::load(ckpt_dir, optim, device)?;
        procedure.restore(ckpt_dir)?;
        state = saved;
    }
    model = procedure.prepare(model);
    let resumed_from = state.step;
    if schedule.evaluate_first && state.step == 0 {
        // The starting point, for comparison with every later evaluation.
        let metrics = procedure.evaluate(&model.valid())?;
        log(&mut state.log, 0, metrics);
    }
    while state.step < schedule.steps {
        let (next, mut metrics) = procedure.step(model, &mut optim, state.step)?;
        model = next;
        state.step += 1;
        let last = state.step == schedule.steps;
        if state.step.is_multiple_of(schedule.eval_every) || last {
            metrics.extend(procedure.evaluate(&model.valid())?);
        }
        log(&mut state.log, state.step as u64, metrics);
        if state.step.is_multiple_of(schedule.checkpoint_every) || last {
            resume::save(ckpt_dir, &model, &optim, &state, &|dir| procedure.save(dir))?;
        }
        if !last && procedure.should_stop(state.step) {
            break;
        }
    }
    Ok(Trained {
        completed: state.step == schedule.steps,
        model,
        log: state.log,
        resumed_from,
    })
}

fn log(rows: &mut Vec<LogRow>, step: u64, metrics: Metrics) {
    rows.extend(metrics.into_iter().map(|(metric, value)| LogRow {
        step,
        metric,
        value,
    }));
}
