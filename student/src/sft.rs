//! Supervised fine-tuning with role-derived loss masks: AdamW, linear warmup
//! then cosine decay, gradient clipping and accumulation, periodic
//! validation, checkpoints with optimizer state for exact resumption, and a
//! clear stop on a non-finite loss.

use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use didact_data::rng::{Rng, mix_seed};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::kernels::{Kernels, TrainBackend};
use crate::model::Llama;
use crate::trainer::{self, Metrics, Procedure, Schedule};

/// Optimisation hyperparameters of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup from 0 to `lr`.
    pub warmup_steps: usize,
    /// The cosine decay ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Gradients are clipped to this global L2 norm (0 disables).
    pub clip_norm: f32,
    /// Longer sequences are truncated.
    pub max_seq_len: usize,
    /// Validate every this many steps (and at the end).
    pub eval_every: usize,
    /// Save a resumable checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Validation tasks per domain scored by greedy generation.
    pub eval_tasks: usize,
    /// Token budget of one generated answer during validation.
    pub max_new_tokens: usize,
    /// Micro-batches per length-bucketing window (1 disables bucketing):
    /// larger windows waste less compute on padding but make each batch
    /// more uniform in length, and so in task type.
    pub bucket_window: usize,
    /// Seed of the data order.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 800,
            batch_size: 32,
            grad_accum: 1,
            lr: 3e-3,
            warmup_steps: 30,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            clip_norm: 1.0,
            max_seq_len: 160,
            eval_every: 400,
            checkpoint_every: 100,
            eval_tasks: 100,
            max_new_tokens: 24,
            bucket_window: 4,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// The learning rate at `step` (0-based): linear warmup, then cosine.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.steps == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return Err("steps, batch_size and grad_accum must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr: {} must be positive", self.lr));
        }
        if self.max_seq_len < 2 {
            return Err("max_seq_len: must be at least 2".into());
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 {
            return Err("eval_every and checkpoint_every must be positive".into());
        }
        Ok(())
    }
}

/// One training sequence and the positions it is trained on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// `mask[i]`: token `i` is a target (predicted from the tokens before it).
    pub mask: Vec<bool>,
}

/// A padded batch: inputs are `ids[..L-1]`, targets `ids[1..]`.
pub struct Batch<B: Kernels> {
    pub inputs: Tensor<B, 2, Int>,
    pub targets: Tensor<B, 2, Int>,
    pub weights: Tensor<B, 2>,
    /// Target tokens that count in the loss.
    pub n_targets: usize,
    /// Tokens fed, padding excluded.
    pub n_tokens: usize,
}

pub fn make_batch<B: Kernels>(
    examples: &[&Example],
    max_len: usize,
    pad: u32,
    device: &B::Device,
) -> Batch<B> {
    let len = examples
        .iter()
        .map(|e| e.ids.len().min(max_len))
        .max()
        .unwrap_or(2)
        .max(2);
    let t = len - 1;
    let b = examples.len();
    let (mut inputs, mut targets, mut weights) = (
        vec![pad as i64; b * t],
        vec![pad as i64; b * t],
        vec![0f32; b * t],
    );
    let (mut n_targets, mut n_tokens) = (0, 0);
    for (r, e) in examples.iter().enumerate() {
        let l = e.ids.len().min(max_len);
        n_tokens += l.saturating_sub(1);
        for i in 0..l.saturating_sub(1) {
            inputs[r * t + i] = e.ids[i] as i64;
            targets[r * t + i] = e.ids[i + 1] as i64;
            if e.mask[i + 1] {
                weights[r * t + i] = 1.0;
                n_targets += 1;
            }
        }
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b, t]), device),
        n_targets,
        n_tokens,
    }
}

/// Mean negative log-likelihood of the masked targets. Unmasked positions
/// are multiplied by zero, so they receive exactly zero gradient.
pub fn masked_nll<B: Kernels>(model: &Llama<B>, batch: &Batch<B>) -> Tensor<B, 1> {
    let logits = model.forward(batch.inputs.clone(), None, None);
    let logp = log_softmax(logits, 2);
    let picked = logp
        .gather(2, batch.targets.clone().unsqueeze_dim(2))
        .squeeze_dim::<2>(2);
    let total = (picked * batch.weights.clone()).sum().neg();
    total / (batch.n_targets.max(1) as f64)
}

/// The order in which examples are visited: a fresh permutation per epoch,
/// a function of (seed, epoch) only, so a resumed run sees the same batches.
pub struct DataOrder {
    n: usize,
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
}

impl DataOrder {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Self {
            n,
            seed,
            epoch: usize::MAX,
            perm: Vec::new(),
        };
        s.set_epoch(0);
        s
    }

    fn set_epoch(&mut self, epoch: usize) {
        if epoch != self.epoch {
            self.perm = (0..self.n).collect();
            Rng::new(mix_seed(&[self.seed, epoch as u64])).shuffle(&mut self.perm);
            self.epoch = epoch;
        }
    }

    /// The example at global sample position `g`.
    pub fn at(&mut self, g: usize) -> usize {
        self.set_epoch(g / self.n);
        self.perm[g % self.n]
    }
}

/// Which examples form each micro-batch. Samples are drawn in [`DataOrder`]
/// order, a window of `window` batches at a time; a window is sorted
/// by length and cut into batches whose order is then shuffled. Batches of
/// similar lengths waste little compute on padding (dialogues here range
/// from ten to two hundred tokens), and every batch is still a function of
/// (seed, batch index) only, so a resumed run sees the same batches.
pub struct BatchPlan {
    order: DataOrder,
    batch_size: usize,
    seed: u64,
    window_len: usize,
    window: usize,
    batches: Vec<Vec<usize>>,
}

impl BatchPlan {
    pub fn new(n: usize, batch_size: usize, window_len: usize, seed: u64) -> Self {
        Self {
            order: DataOrder::new(n, seed),
            batch_size,
            seed,
            window_len: window_len.max(1),
            window: usize::MAX,
            batches: Vec::new(),
        }
    }

    /// Example indices of micro-batch `b` (counted from the start of training).
    pub fn batch(&mut self, b: usize, lengths: &dyn Fn(usize) -> usize) -> &[usize] {
        let window = b / self.window_len;
        if window != self.window {
            let first = window * self.window_len * self.batch_size;
            let mut samples: Vec<usize> = (first..first + self.window_len * self.batch_size)
                .map(|g| self.order.at(g))
                .collect();
            samples.sort_by_key(|&i| (lengths(i), i));
            self.batches = samples
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect();
            Rng::new(mix_seed(&[self.seed, window as u64, 0xB0C])).shuffle(&mut self.batches);
            self.window = window;
        }
        &self.batches[b % self.window_len]
    }
}

pub use crate::trainer::{LogRow, Trained};

/// What the caller sees while training runs.
pub trait TrainHooks<B: TrainBackend> {
    /// Applied to the model before training starts and again after it is
    /// reloaded from a checkpoint (e.g. to freeze layers, which a
    /// checkpoint does not record).
    fn prepare(&mut self, model: Llama<B>) -> Llama<B> {
        model
    }
    /// After each optimizer step.
    fn on_step(&mut self, _step: usize, _loss: f64, _lr: f64, _tokens_per_s: f64) {}
    /// Asked after each step (and its checkpoint, if one was due): `true`
    /// stops the run there, as an interruption would.
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }
    /// Validation metrics for the current model (e.g. accuracy by domain).
    fn evaluate(&mut self, _model: &Llama<B::InnerBackend>) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
}

/// Trains `model` on `examples`. If `ckpt_dir` holds a checkpoint of an
/// interrupted run with the same config, training resumes from it (model,
/// optimizer and data order exactly as they were).
pub fn train<B: TrainBackend>(
    model: Llama<B>,
    examples: &[Example],
    cfg: &TrainConfig,
    pad: u32,
    ckpt_dir: &Path,
    hooks: &mut dyn TrainHooks<B>,
    device: &B::Device,
) -> Result<Trained<B>> {
    cfg.validate().map_err(StudentError::Training)?;
    if examples.is_empty() {
        return Err(StudentError::Training("no training examples".into()));
    }
    let mut procedure = SftSteps {
        plan: BatchPlan::new(examples.len(), cfg.batch_size, cfg.bucket_window, cfg.seed),
        examples,
        cfg,
        pad,
        ckpt_dir,
        hooks,
        device,
        started: None,
        tokens_seen: 0,
    };
    let schedule = Schedule {
        steps: cfg.steps,
        eval_every: cfg.eval_every,
        checkpoint_every: cfg.checkpoint_every,
        weight_decay: cfg.weight_decay,
        evaluate_first: false,
    };
    trainer::run(model, &mut procedure, cfg, &schedule, ckpt_dir, device)
}

/// SFT as a [`Procedure`]: one step is `grad_accum` micro-batches of the
/// batch plan, one optimizer step.
struct SftSteps<'a, B: TrainBackend> {
    examples: &'a [Example],
    cfg: &'a TrainConfig,
    pad: u32,
    ckpt_dir: &'a Path,
    hooks: &'a mut dyn TrainHooks<B>,
    device: &'a B::Device,
    plan: BatchPlan,
    /// When the first step of this process started (tokens/s).
    started: Option<Instant>,
    tokens_seen: usize,
}

impl<B: TrainBackend> Procedure<B> for SftSteps<'_, B> {
    type Config = TrainConfig;

    fn step<O: Optimizer<Llama<B>, B>>(
        &mut self,
        model: Llama<B>,
        optim: &mut O,
        step: usize,
    ) -> Result<(Llama<B>, Metrics)> {
        let (cfg, examples) = (self.cfg, self.examples);
        let started = *self.started.get_or_insert_with(Instant::now);
        let lengths = |i: usize| examples[i].ids.len().min(cfg.max_seq_len);
        let lr = cfg.lr_at(step);
        let mut accumulator = GradientsAccumulator::<Llama<B>>::new();
        let mut loss_sum = 0.0;
        for micro in 0..cfg.grad_accum {
            let picked: Vec<&Example> = self
                .plan
                .batch(step * cfg.grad_accum + micro, &lengths)
                .iter()
                .map(|&i| &examples[i])
                .collect();
            let batch = make_batch::<B>(&picked, cfg.max_seq_len, self.pad, self.device);
            self.tokens_seen += batch.n_tokens;
            let loss = masked_nll(&model, &batch);
            let value: f64 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(StudentError::Training(format!(
                    "loss is {value} at step {step}; stopped (the last checkpoint in {} is intact). \
                     Lower the learning rate or raise warmup_steps.",
                    self.ckpt_dir.display()
                )));
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let grad_norm = crate::grads::clip_global_norm(&model, &mut grads, cfg.clip_norm);
        let model = optim.step(lr, model, grads);
        let loss = loss_sum / cfg.grad_accum as f64;
        let tps = self.tokens_seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
        self.hooks.on_step(step + 1, loss, lr, tps);
        let metrics = vec![
            ("train_loss".into(), loss),
            ("lr".into(), lr),
            ("tokens_per_s".into(), tps),
            ("grad_norm".into(), grad_norm),
        ];
        Ok((model, metrics))
    }

    fn evaluate(&mut self, model: &Llama<B::InnerBackend>) -> Result<Vec<(String, f64)>> {
        self.hooks.evaluate(model)
    }

    fn should_stop(&mut self, step: usize) -> bool {
        self.hooks.should_stop(step)
    }

    fn prepare(&mut self, model: Llama<B>) -> Llama<B> {
        self.hooks.prepare(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_random;
    use crate::config::LlamaConfig;
    use burn::backend::{Autodiff, Flex};

    type A = Autodiff<Flex>;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig {
            steps: 100,
            warmup_steps: 10,
            lr: 1.0,
            min_lr_ratio: 0.1,
            ..TrainConfig::default()
        };
        assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(55) - 0.55).abs() < 1e-9);
        assert!((cfg.lr_at(100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn masked_positions_get_exactly_zero_gradient() {
        let device = Default::default();
        let model = init_random::<A>(&LlamaConfig::small(32, 16, 1, 2, 2), 5, &device).unwrap();
        // Only the last target is trained: the gradient of the loss with
        // respect to the embedding row of a token that appears nowhere but
        // as an unmasked *target* must be zero.
        let ex = Example {
            ids: vec![1, 2, 3, 30, 4],
            mask: vec![false, false, false, false, true],
        };
        let batch = make_batch::<A>(&[&ex], 64, 0, &device);
        let loss = masked_nll(&model, &batch);
        let grads = loss.backward();
        let head = model.lm_head.as_ref().unwrap().weight.grad(&grads).unwrap();
        // lm_head is [hidden, vocab]: column 30 is the logit of token 30,
        // which is never a masked-in target, but still gets gradient through
        // the softmax of the trained position. Token 4's column must get the
        // (negative) target gradient.
        let g = head.into_data().to_vec::<f32>().unwrap();
        let col = |c: usize| (0..16).map(|r| g[r * 32 + c].abs()).sum::<f32>();
        assert!(col(4) > 0.0);
        // Now mask everything: every gradient is exactly zero.
        let none = Example {
            ids: ex.ids.clone(),
            mask: vec![false; 5],
        };
        let batch = make_batch::<A>(&[&none], 64, 0, &device);
        let grads = masked_nll(&model, &batch).backward();
        let g = model.lm_head.as_ref().unwrap().weight.grad(&grads).unwrap();
        assert!(
            g.into_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|x| *x == 0.0)
        );
    }

    #[test]
    fn length_buckets_cover_each_window_once_and_are_reproducible() {
        let lengths = |i: usize| (i * 37) % 101;
        let mut a = BatchPlan::new(1000, 8, 16, 5);
        let mut b = BatchPlan::new(1000, 8, 16, 5);
        let mut seen: Vec<usize> = (0..16)
            .flat_map(|k| a.batch(k, &lengths).to_vec())
            .collect();
        let spread = |batch: &[usize]| {
            let l: Vec<usize> = batch.iter().map(|&i| lengths(i)).collect();
            l.iter().max().unwrap() - l.iter().min().unwrap()
        };
        assert!(
            spread(a.batch(3, &lengths)) < 30,
            "a batch should hold similar lengths"
        );
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 16 * 8, "a window visits distinct samples");
        assert_eq!(
            a.batch(40, &lengths).to_vec(),
            b.batch(40, &lengths).to_vec()
        );
    }

    #[test]
    fn a_diverging_run_stops_with_a_clear_error() {
        let device = Default::default();
        let cfg = TrainConfig {
            steps: 50,
            batch_size: 8,
            lr: 1e30,
            warmup_steps: 1,
            clip_norm: 0.0,
            checkpoint_every: 1000,
            eval_every: 1000,
            ..TrainConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let model = init_random::<A>(&LlamaConfig::small(24, 16, 1, 2, 2), 1, &device).unwrap();
        let err = train(
            model,
            &toy_examples(),
            &cfg,
            0,
            &dir.path().join("c"),
            &mut NoHooks,
            &device,
        )
        .err()
        .expect("a learning rate of 1e30 must diverge")
        .to_string();
        assert!(
            err.contains("training: loss is") && err.contains("Lower the learning rate"),
            "{err}"
        );
    }

    #[test]
    fn data_order_is_a_permutation_per_epoch_and_reproducible() {
        let mut a = DataOrder::new(7, 3);
        let mut b = DataOrder::new(7, 3);
        let first: Vec<usize> = (0..7).map(|g| a.at(g)).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        let second: Vec<usize> = (7..14).map(|g| a.at(g)).collect();
        assert_ne!(first, second);
        assert_eq!((7..14).map(|g| b.at(g)).collect::<Vec<_>>(), second);
    }

    fn toy_examples() -> Vec<Example> {
        // Learn to copy: "a b SEP a b".
        (0..64u32)
            .map(|i| {
                let (x, y) = (2 + i % 8, 2 + (i / 8) % 8);
                Example {
                    ids: vec![1, x, y, 20, x, y],
                    mask: vec![false, false, false, false, true, true],
                }
            })
            .collect()
    }

    struct NoHooks;
    impl TrainHooks<A> for NoHooks {}

    #[test]
    fn loss_falls_and_an_interrupted_run_resumes_exactly() {
        let device = Default::default();
        let config = LlamaConfig::small(24, 32, 2, 4, 2);
        let cfg = TrainConfig {
            steps: 40,
            batch_size: 16,
            lr: 1e-2,
            warmup_steps: 5,
            eval_every: 100,
            checkpoint_every: 20,
            ..TrainConfig::default()
        };
        let examples = toy_examples();
        let straight_dir = tempfile::tempdir().unwrap();
        let straight = train(
            init_random::<A>(&config, 1, &device).unwrap(),
            &examples,
            &cfg,
            0,
            &straight_dir.path().join("ckpt"),
            &mut NoHooks,
            &device,
        )
        .unwrap();
        let losses: Vec<f64> = straight
            .log
            .iter()
            .filter(|r| r.metric == "train_loss")
            .map(|r| r.value)
            .collect();
        assert!(losses[losses.len() - 1] < 0.5 * losses[0], "{losses:?}");

        // Interrupt the same run after step 20 (a checkpoint is due), then
        // start it again: it resumes at 20 and continues identically.
        struct StopAt(usize);
        impl TrainHooks<A> for StopAt {
            fn should_stop(&mut self, step: usize) -> bool {
                step == self.0
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        let first = train(
            init_random::<A>(&config, 1, &device).unwrap(),
            &examples,
            &cfg,
            0,
            &ckpt,
            &mut StopAt(20),
            &device,
        )
        .unwrap();
        assert!(!first.completed);
        let resumed = train(
            init_random::<A>(&config, 99, &device).unwrap(),
            &examples,
            &cfg,
            0,
            &ckpt,
            &mut NoHooks,
            &device,
        )
        .unwrap();
        assert!(resumed.completed);
        assert_eq!(resumed.resumed_from, 20);
        let tail = |log: &[LogRow]| -> Vec<f64> {
            log.iter()
                .filter(|r| r.metric == "train_loss" && r.step > 20)
                .map(|r| r.value)
                .collect()
        };
        let (a, b) = (tail(&straight.log), tail(&resumed.log));
        assert_eq!(a.len(), 20);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "resumed run diverges: {a:?} vs {b:?}");
        }
        // And it ends with the same weights.
        let weights = |m: &Llama<A>| -> Vec<f32> {
            let flat = |t: Tensor<A, 2>| t.into_data().to_vec::<f32>().unwrap();
            let mut w = flat(m.embed_tokens.weight.val());
            for layer in &m.layers {
                w.extend(flat(layer.mlp.down_proj.weight.val()));
                w.extend(flat(layer.self_attn.q_proj.weight.val()));
            }
            w.extend(flat(m.lm_head.as_ref().unwrap().weight.val()));
            w
        };
        let (wa, wb) = (weights(&straight.model), weights(&resumed.model));
        let worst = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "final weights differ by {worst}");
    }
}
