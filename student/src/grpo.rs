//! GRPO over whole episodes (the Social Meta-Learning recipe for RL²F): each
//! iteration samples a group of episodes per task with the current policy,
//! scores each episode with one conversation-level reward, normalises the
//! rewards within the group into advantages, and takes a clipped
//! policy-gradient step on the tokens the policy generated (the episode's
//! mask, derived from roles by the environment). Optional KL to a reference
//! model; inner epochs reuse the sampling policy's log-probabilities for the
//! importance ratio.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use didact_data::FeedbackLevel;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::grads::clip_global_norm;
use crate::kernels::{Kernels, TrainBackend};
use crate::model::Llama;
use crate::trainer::{self, Metrics, Procedure, Schedule, Trained};

/// Hyperparameters of online RL: the GRPO update and the dialogues it is
/// computed on. The same struct configures RL²F (`max_turns` > 1) and the
/// single-turn RL baseline (`max_turns` = 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Policy-update iterations; each samples a fresh batch of episodes.
    pub iterations: usize,
    /// Distinct train tasks per iteration.
    pub tasks_per_iteration: usize,
    /// Episodes per task (the GRPO group).
    pub group_size: usize,
    /// Student attempts per dialogue (T_max).
    pub max_turns: usize,
    /// Solving at turn t earns gamma^(t-1).
    pub gamma: f64,
    /// How the dialogue's reward reaches its student turns (see [`Credit`]).
    pub credit: Credit,
    /// Divide advantages by the group's standard deviation (GRPO); `false`
    /// keeps only the mean baseline (Dr. GRPO), so that a group in which
    /// one episode differs does not hand it an outsized advantage.
    pub scale_advantages: bool,
    /// How much the teacher says about a wrong attempt.
    pub feedback_level: FeedbackLevel,
    /// Share of each iteration's groups that are about correction: the
    /// group's dialogues all continue one sampled first attempt (and the
    /// teacher's reply to it), so they differ only in what the student does
    /// with that reply, and their advantages judge exactly that. A group
    /// whose shared first attempt is right teaches nothing and is skipped.
    /// 0: every dialogue samples its own first attempt.
    pub correction_groups: f64,
    /// Sampling temperature of the rollouts; the loss takes log-probabilities
    /// at the same temperature, so the update stays on-policy.
    pub temperature: f32,
    /// Nucleus of the rollouts; must be 1.0 (every token), since the
    /// policy gradient is taken under the whole tempered distribution.
    pub top_p: f32,
    /// Token budget of one attempt.
    pub max_new_tokens: usize,
    /// Optimizer steps per iteration, each over the whole batch, with the
    /// importance ratio against the sampling policy clipped to 1 ± clip_eps.
    pub inner_epochs: usize,
    pub clip_eps: f64,
    /// Weight of the KL penalty to the reference (base) model; 0 disables
    /// the penalty (the KL is still measured and logged).
    pub kl_beta: f64,
    /// Peak learning rate, reached after `warmup_steps` and then constant.
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f32,
    /// Gradients are clipped to this global L2 norm (0 disables).
    pub clip_norm: f32,
    /// Episodes per forward/backward pass (gradients are accumulated).
    pub micro_batch: usize,
    /// Longer episodes are truncated for the update.
    pub max_seq_len: usize,
    /// Validate every this many iterations (and at the end).
    pub eval_every: usize,
    /// Save a resumable checkpoint every this many iterations (and at the end).
    pub checkpoint_every: usize,
    /// Validation tasks per domain, solved greedily with the teacher.
    pub eval_tasks: usize,
    /// Seed of task order and sampling.
    pub seed: u64,
    /// Weight of a next-token loss on the teacher's turns of the rollouts
    /// (and a "Correct." turn after a right answer), beside the policy
    /// loss, so that the student learns to critique as the teacher does
    /// (`critic.mode = "self"`). Not a key of the config file (the pipeline
    /// refuses it there): the `student` stage sets it from
    /// `critic.self_weight`. Serialized where nonzero, so that a resumed
    /// run's checkpoint matches. 0: off.
    #[serde(skip_serializing_if = "is_zero")]
    pub critique_weight: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            iterations: 40,
            tasks_per_iteration: 16,
            group_size: 8,
            max_turns: 4,
            gamma: 0.7,
            credit: Credit::Turn,
            scale_advantages: false,
            feedback_level: FeedbackLevel::Explanation,
            correction_groups: 0.0,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 24,
            inner_epochs: 1,
            clip_eps: 0.2,
            kl_beta: 0.0,
            lr: 5e-4,
            warmup_steps: 3,
            weight_decay: 0.0,
            clip_norm: 1.0,
            micro_batch: 64,
            max_seq_len: 256,
            eval_every: 20,
            checkpoint_every: 10,
            eval_tasks: 50,
            seed: 0,
            critique_weight: 0.0,
        }
    }
}

impl RlConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("iterations", self.iterations),
            ("tasks_per_iteration", self.tasks_per_iteration),
            ("group_size", self.group_size),
            ("max_turns", self.max_turns),
            ("max_new_tokens", self.max_new_tokens),
            ("inner_epochs", self.inner_epochs),
            ("micro_batch", self.micro_batch),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name}: must be positive"));
            }
        }
        if self.group_size < 2 {
            return Err("group_size: GRPO needs at least 2 episodes per group".into());
        }
        if !(0.0..=1.0).contains(&self.correction_groups) {
            return Err(format!(
                "correction_groups: {} is outside 0..=1 (a share of each iteration's groups)",
                self.correction_groups
            ));
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(format!("gamma: {} is outside 0..=1", self.gamma));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr: {} must be positive", self.lr));
        }
        if self.clip_eps <= 0.0 || self.kl_beta < 0.0 {
            return Err("clip_eps must be positive and kl_beta non-negative".into());
        }
        if !(self.critique_weight >= 0.0 && self.critique_weight.is_finite()) {
            return Err(format!(
                "critique_weight: {} must be a non-negative number",
                self.critique_weight
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature: {} must be positive (the policy gradient is taken at \
                 the sampling temperature)",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p: {} is outside (0, 1]", self.top_p));
        }
        // The loss scores tokens under the full tempered distribution; a
        // nucleus would sample from a truncated one the loss never sees.
        if self.top_p < 1.0 {
            return Err(format!(
                "top_p: {} < 1 truncates the sampling distribution, so the policy \
                 gradient would be off-policy; use top_p = 1 and lower the \
                 temperature instead",
                self.top_p
            ));
        }
        Ok(())
    }

    /// Constant learning rate after a linear warmup.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            self.lr * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            self.lr
        }
    }
}

/// Reward of a dialogue solved at 1-based turn `t`: gamma^(t-1); 0 if unsolved.
pub fn discounted_reward(solved_turn: Option<usize>, gamma: f64) -> f64 {
    solved_turn.map_or(0.0, |t| gamma.powi(t.saturating_sub(1) as i32))
}

/// How a dialogue's reward is credited to the student's turns in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credit {
    /// Every student token gets the dialogue's advantage (the papers'
    /// conversation-level reward): a wrong first attempt and the fix after
    /// it share one sign.
    Dialogue,
    /// Student turn t of a dialogue solved at turn s earns gamma^(s-t)
    /// (0 if unsolved), compared with the same turn of the group's other
    /// episodes that reached it: a fix is judged among the attempts that
    /// needed one, and a wrong attempt gets less than a right one.
    Turn,
}

/// Group-normalised advantages (r - mean) / (std + eps), with the
/// population standard deviation of the group. A group whose rewards are all
/// equal gets advantage exactly 0 (no learning signal, no gradient).
pub fn group_advantages(rewards: &[f64], groups: &[usize]) -> Vec<f64> {
    centred_advantages(rewards, groups, true)
}

/// Advantages r - mean within each group, divided by (std + eps) when
/// `scale` holds; a group whose rewards are all equal gets exactly 0.
pub fn centred_advantages(rewards: &[f64], groups: &[usize], scale: bool) -> Vec<f64> {
    const EPS: f64 = 1e-4;
    let mut out = vec![0.0; rewards.len()];
    let mut ids: Vec<usize> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for g in ids {
        let members: Vec<usize> = (0..rewards.len()).filter(|&i| groups[i] == g).collect();
        let first = rewards[members[0]];
        if members.iter().all(|&i| rewards[i] == first) {
            continue;
        }
        let n = members.len() as f64;
        let mean = members.iter().map(|&i| rewards[i]).sum::<f64>() / n;
        let var = members
            .iter()
            .map(|&i| (rewards[i] - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = if scale { var.sqrt() + EPS } else { 1.0 };
        for &i in &members {
            out[i] = (rewards[i] - mean) / scale;
        }
    }
    out
}

/// Each episode's advantage per student turn (index 0 is the first
/// attempt), under `cfg.credit`.
pub fn turn_advantages(episodes: &[Episode], cfg: &RlConfig) -> Vec<Vec<f64>> {
    let groups: Vec<usize> = episodes.iter().map(|e| e.group).collect();
    match cfg.credit {
        Credit::Dialogue => {
            let rewards: Vec<f64> = episodes.iter().map(|e| e.reward).collect();
            centred_advantages(&rewards, &groups, cfg.scale_advantages)
                .into_iter()
                .zip(episodes)
                .map(|(a, e)| vec![a; e.turns.max(1)])
                .collect()
        }
        Credit::Turn => {
            let max_turns = episodes.iter().map(|e| e.turns).max().unwrap_or(0);
            // by_turn[t][i]: episode i's advantage at turn t (0 if it
            // stopped before).
            let by_turn: Vec<Vec<f64>> = (0..max_turns)
                .map(|t| {
                    let reached: Vec<usize> = (0..episodes.len())
                        .filter(|&i| episodes[i].turns > t)
                        .collect();
                    let returns: Vec<f64> = reached
                        .iter()
                        .map(|&i| match episodes[i].solved_turn {
                            Some(s) if s > t => cfg.gamma.powi((s - 1 - t) as i32),
                            _ => 0.0,
                        })
                        .collect();
                    let g: Vec<usize> = reached.iter().map(|&i| groups[i]).collect();
                    let mut full = vec![0.0; episodes.len()];
                    for (i, a) in
                        reached
                            .iter()
                            .zip(centred_advantages(&returns, &g, cfg.scale_advantages))
                    {
                        full[*i] = a;
                    }
                    full
                })
                .collect();
            episodes
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (0..e.turns.max(1))
                        .map(|t| by_turn.get(t).map_or(0.0, |a| a[i]))
                        .collect()
                })
                .collect()
        }
    }
}

/// The 0-based student turn of each token: each maximal run of generated
/// tokens (`mask`) is one turn; tokens before the first run count as turn 0.
pub fn token_turns(mask: &[bool]) -> Vec<usize> {
    let mut turn = 0usize;
    let mut seen_any = false;
    mask.iter()
        .enumerate()
        .map(|(i, &m)| {
            if m && i > 0 && !mask[i - 1] && seen_any {
                turn += 1;
            }
            seen_any |= m;
            turn
        })
        .collect()
}

/// One sampled episode, as the policy saw and produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Episodes with the same group id share a task.
    pub group: usize,
    pub ids: Vec<u32>,
    /// `mask[i]`: token `i` was generated by the policy (it is trained).
    pub mask: Vec<bool>,
    pub reward: f64,
    /// Attempts made.
    pub turns: usize,
    /// 1-based turn of the first correct attempt.
    pub solved_turn: Option<usize>,
    /// Tokens the policy generated.
    pub generated_tokens: usize,
    /// `critique[i]`: token `i` is the teacher's, learnt by the critique
    /// loss ([`RlConfig::critique_weight`]); empty where there is none.
    pub critique: Vec<bool>,
}

/// Where episodes come from: dialogues with a teacher, or a toy task in tests.
pub trait Environment<B: Kernels> {
    /// Samples the episodes of `iteration` with `policy`. Must be a function
    /// of (policy, iteration) only, so that a resumed run samples the same.
    fn sample(&mut self, policy: &Llama<B>, iteration: usize) -> Result<Vec<Episode>>;
    /// Writes the environment's records into a checkpoint directory.
    fn save(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Reads them back when a run resumes from `dir`.
    fn restore(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// What the caller sees while RL runs.
pub trait RlHooks<B: TrainBackend> {
    /// After each iteration, with that iteration's metrics.
    fn on_iteration(&mut self, _iteration: usize, _metrics: &[(String, f64)]) {}
    /// `true` stops the run after this iteration, as an interruption would.
    fn should_stop(&mut self, _iteration: usize) -> bool {
        false
    }
    /// Validation metrics for the current policy.
    fn evaluate(&mut self, _model: &Llama<B::InnerBackend>) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
}

/// Episodes of one forward/backward pass, padded on the right.
pub struct PolicyBatch<B: Kernels> {
    pub inputs: Tensor<B, 2, Int>,
    pub targets: Tensor<B, 2, Int>,
    /// 1 where the target token was generated by the policy.
    pub mask: Tensor<B, 2>,
    /// The advantage of the token's turn at trained positions, 0 elsewhere.
    pub advantages: Tensor<B, 2>,
    /// 1 / (trained tokens of the episode) at trained positions, 0
    /// elsewhere: each episode weighs the same whatever its length.
    pub weights: Tensor<B, 2>,
    /// 1 where the target token is the teacher's, learnt by the critique
    /// loss; 0 elsewhere.
    pub critique: Tensor<B, 2>,
    pub n_trained: usize,
    pub n_critique: usize,
    pub n_tokens: usize,
}

pub fn policy_batch<B: Kernels>(
    episodes: &[&Episode],
    advantages: &[Vec<f64>],
    max_len: usize,
    pad: u32,
    device: &B::Device,
) -> PolicyBatch<B> {
    let len = episodes
        .iter()
        .map(|e| e.ids.len().min(max_len))
        .max()
        .unwrap_or(2)
        .max(2);
    let (b, t) = (episodes.len(), len - 1);
    let mut inputs = vec![pad as i64; b * t];
    let mut targets = vec![pad as i64; b * t];
    let mut mask = vec![0f32; b * t];
    let mut adv = vec![0f32; b * t];
    let mut weights = vec![0f32; b * t];
    let mut critique = vec![0f32; b * t];
    let (mut n_trained, mut n_critique, mut n_tokens) = (0, 0, 0);
    for (r, (e, a)) in episodes.iter().zip(advantages).enumerate() {
        let l = e.ids.len().min(max_len);
        n_tokens += l.saturating_sub(1);
        let own = e.mask[1..l.max(1)].iter().filter(|m| **m).count().max(1);
        let turns = token_turns(&e.mask);
        for i in 0..l.saturating_sub(1) {
            inputs[r * t + i] = e.ids[i] as i64;
            targets[r * t + i] = e.ids[i + 1] as i64;
            if e.mask[i + 1] {
                mask[r * t + i] = 1.0;
                let turn = turns[i + 1].min(a.len().saturating_sub(1));
                adv[r * t + i] = a.get(turn).copied().unwrap_or(0.0) as f32;
                weights[r * t + i] = 1.0 / own as f32;
                n_trained += 1;
            }
            if e.critique.get(i + 1).copied().unwrap_or(false) {
                critique[r * t + i] = 1.0;
                n_critique += 1;
            }
        }
    }
    PolicyBatch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, t]), device),
        advantages: Tensor::from_data(TensorData::new(adv, [b, t]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b, t]), device),
        critique: Tensor::from_data(TensorData::new(critique, [b, t]), device),
        n_trained,
        n_critique,
        n_tokens,
    }
}

/// The teacher's tokens of `episode` that a policy update over
/// `max_seq_len` tokens sees: the critique loss's share of one episode.
fn critique_tokens(episode: &Episode, max_seq_len: usize) -> usize {
    let l = episode.ids.len().min(max_seq_len);
    episode
        .critique
        .iter()
        .take(l)
        .skip(1)
        .filter(|c| **c)
        .count()
}

/// The pieces of one micro-batch's objective.
pub struct PolicyLoss<B: Kernels> {
    /// Clipped surrogate (plus the KL penalty): the mean over each
    /// episode's trained tokens, summed over episodes and divided by
    /// `normaliser` (the iteration's episode count).
    pub loss: Tensor<B, 1>,
    /// Log-probabilities of the targets, detached: the "old" policy of
    /// later inner epochs.
    pub logp: Tensor<B, 2>,
    /// Summed entropy of the (tempered) sampling distribution over trained
    /// positions.
    pub entropy_sum: f64,
    /// Summed KL estimate to the reference over trained positions.
    pub kl_sum: Option<f64>,
    /// Summed negative log-likelihood of the teacher's tokens (detached),
    /// where the critique loss is on.
    pub critique_nll_sum: Option<f64>,
}

/// Log-probabilities `[b, t, v]` under the distribution the rollouts were
/// sampled from, `log_softmax(logits / temperature)`: the sampler divides
/// the logits by the temperature, so the importance ratio and the gradient
/// must too, or the update is off-policy. The reference's log-probabilities
/// for the KL are taken at the same temperature.
pub fn sampling_log_softmax<B: Backend>(logits: Tensor<B, 3>, temperature: f32) -> Tensor<B, 3> {
    if temperature == 1.0 {
        log_softmax(logits, 2)
    } else {
        log_softmax(logits.div_scalar(temperature), 2)
    }
}

/// The log-probability `[b, t]` of each target token, from `[b, t, v]`.
fn target_logp<B: Backend>(logp_all: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    logp_all
        .gather(2, targets.unsqueeze_dim(2))
        .squeeze_dim::<2>(2)
}

/// The clipped GRPO surrogate from logits, taken at the sampling
/// temperature `cfg.temperature` and clipped at `cfg.clip_eps`. Untrained
/// positions have weight 0 and advantage 0, so they receive exactly zero
/// gradient. `old_logp` is the sampling policy's log-probability of each
/// target (`None`: the current policy, i.e. the first inner epoch, where
/// the ratio is 1). `ref_logp` (at the same temperature) enables the k3 KL
/// estimate exp(ref - new) - (ref - new) - 1, weighted by `cfg.kl_beta`.
/// With `cfg.critique_weight` > 0 the teacher's tokens add their negative
/// log-likelihood (at temperature 1, as a language model learns), summed
/// and divided by `critique_normaliser` (the iteration's teacher tokens),
/// times the weight.
pub fn policy_loss<B: Kernels>(
    logits: Tensor<B, 3>,
    batch: &PolicyBatch<B>,
    old_logp: Option<Tensor<B, 2>>,
    ref_logp: Option<Tensor<B, 2>>,
    cfg: &RlConfig,
    normaliser: f64,
    critique_normaliser: f64,
) -> PolicyLoss<B> {
    let (clip_eps, kl_beta) = (cfg.clip_eps, cfg.kl_beta);
    let learns_critique = cfg.critique_weight > 0.0 && batch.n_critique > 0;
    let plain_logits = (learns_critique && cfg.temperature != 1.0).then(|| logits.clone());
    let logp_all = sampling_log_softmax(logits, cfg.temperature);
    let entropy = logp_all
        .clone()
        .detach()
        .exp()
        .mul(logp_all.clone().detach())
        .sum_dim(2)
        .squeeze_dim::<2>(2)
        .neg();
    let entropy_sum: f64 = (entropy * batch.mask.clone()).sum().into_scalar().elem();
    let critique_logp = learns_critique.then(|| match plain_logits {
        Some(l) => target_logp(log_softmax(l, 2), batch.targets.clone()),
        None => target_logp(logp_all.clone(), batch.targets.clone()),
    });
    let logp = target_logp(logp_all, batch.targets.clone());
    let old = old_logp.unwrap_or_else(|| logp.clone().detach());
    let ratio = (logp.clone() - old).exp();
    let unclipped = ratio.clone() * batch.advantages.clone();
    let clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * batch.advantages.clone();
    let mut per_token = unclipped.min_pair(clipped).neg();
    let mut kl_sum = None;
    if let Some(reference) = ref_logp {
        let diff = reference - logp.clone();
        let k3 = diff.clone().exp() - diff - 1.0;
        let s: f64 = (k3.clone().detach() * batch.mask.clone())
            .sum()
            .into_scalar()
            .elem();
        kl_sum = Some(s);
        if kl_beta > 0.0 {
            per_token = per_token + k3 * kl_beta;
        }
    }
    let mut loss = (per_token * batch.weights.clone()).sum() / normaliser.max(1.0);
    let mut critique_nll_sum = None;
    if let Some(critique_logp) = critique_logp {
        let nll = (critique_logp * batch.critique.clone()).sum().neg();
        critique_nll_sum = Some(nll.clone().detach().into_scalar().elem());
        loss = loss + nll * (cfg.critique_weight / critique_normaliser.max(1.0));
    }
    PolicyLoss {
        loss,
        logp: logp.detach(),
        entropy_sum,
        kl_sum,
        critique_nll_sum,
    }
}

/// Runs GRPO. `reference` (the base model) is used for the KL penalty and
/// the logged KL; without it neither is computed. If `ckpt_dir` holds a
/// checkpoint of an interrupted run with the same config, the run resumes
/// from it exactly.
#[allow(clippy::too_many_arguments)]
pub fn train<B: TrainBackend>(
    policy: Llama<B>,
    reference: Option<&Llama<B::InnerBackend>>,
    env: &mut dyn Environment<B::InnerBackend>,
    cfg: &RlConfig,
    pad: u32,
    ckpt_dir: &Path,
    hooks: &mut dyn RlHooks<B>,
    device: &B::Device,
) -> Result<Trained<B>> {
    cfg.validate().map_err(StudentError::Training)?;
    let mut procedure = Iterations {
        reference,
        env,
        cfg,
        pad,
        ckpt_dir,
        hooks,
        device,
    };
    let schedule = Schedule {
        steps: cfg.iterations,
        eval_every: cfg.eval_every,
        checkpoint_every: cfg.checkpoint_every,
        weight_decay: cfg.weight_decay,
        evaluate_first: true,
    };
    trainer::run(policy, &mut procedure, cfg, &schedule, ckpt_dir, device)
}

/// GRPO as a [`Procedure`]: one step is an iteration (sample episodes, then
/// `inner_epochs` optimizer steps over them).
struct Iterations<'a, B: TrainBackend> {
    reference: Option<&'a Llama<B::InnerBackend>>,
    env: &'a mut dyn Environment<B::InnerBackend>,
    cfg: &'a RlConfig,
    pad: u32,
    ckpt_dir: &'a Path,
    hooks: &'a mut dyn RlHooks<B>,
    device: &'a B::Device,
}

impl<B: TrainBackend> Procedure<B> for Iterations<'_, B> {
    type Config = RlConfig;

    fn step<O: Optimizer<Llama<B>, B>>(
        &mut self,
        policy: Llama<B>,
        optim: &mut O,
        it: usize,
    ) -> Result<(Llama<B>, Metrics)> {
        let cfg = self.cfg;
        let mut policy = policy;
        let started = Instant::now();
        let episodes = self.env.sample(&policy.valid(), it)?;
        let sample_s = started.elapsed().as_secs_f64();
        if episodes.is_empty() {
            return Err(StudentError::Training(format!(
                "iteration {it}: the environment returned no episodes"
            )));
        }
        let rewards: Vec<f64> = episodes.iter().map(|e| e.reward).collect();
        let advantages = turn_advantages(&episodes, cfg);
        let normaliser = episodes.len();
        let critique_counts: Vec<usize> = episodes
            .iter()
            .map(|e| {
                if cfg.critique_weight > 0.0 {
                    critique_tokens(e, cfg.max_seq_len)
                } else {
                    0
                }
            })
            .collect();
        let critique_normaliser: usize = critique_counts.iter().sum();
        // Episodes with zero advantage contribute nothing unless the KL
        // penalty is on or the critique loss has tokens of theirs; skipping
        // them saves their forward and backward.
        let mut trained: Vec<usize> = (0..episodes.len())
            .filter(|&i| {
                advantages[i].iter().any(|a| *a != 0.0)
                    || cfg.kl_beta > 0.0
                    || critique_counts[i] > 0
            })
            .collect();
        trained.sort_by_key(|&i| (episodes[i].ids.len(), i));
        let chunks: Vec<Vec<usize>> = trained
            .chunks(cfg.micro_batch)
            .map(<[usize]>::to_vec)
            .collect();

        let train_started = Instant::now();
        let mut old_logp: Vec<Option<Tensor<B, 2>>> = vec![None; chunks.len()];
        // The reference is frozen and each chunk's tokens are the same in
        // every epoch, so its log-probabilities are too: computed once per
        // chunk in the first epoch and reused (a [b, t] tensor each) rather
        // than paying a reference forward per chunk per epoch.
        let mut ref_logp: Vec<Option<Tensor<B, 2>>> = vec![None; chunks.len()];
        let mut last_epoch_loss = 0.0;
        let (mut entropy_sum, mut kl_sum, mut trained_tokens) = (0.0, 0.0, 0usize);
        let mut critique_nll_sum = None;
        let mut loss_value = 0.0;
        let mut grad_norm = None;
        let mut tokens_fed = 0usize;
        for epoch in 0..cfg.inner_epochs {
            if chunks.is_empty() {
                break;
            }
            let mut accumulator = GradientsAccumulator::<Llama<B>>::new();
            let mut epoch_loss = 0.0;
            for (c, chunk) in chunks.iter().enumerate() {
                let eps: Vec<&Episode> = chunk.iter().map(|&i| &episodes[i]).collect();
                let adv: Vec<Vec<f64>> = chunk.iter().map(|&i| advantages[i].clone()).collect();
                let batch = policy_batch::<B>(&eps, &adv, cfg.max_seq_len, self.pad, self.device);
                tokens_fed += batch.n_tokens;
                if let (None, Some(r)) = (&ref_logp[c], self.reference) {
                    let logits = r.forward(batch.inputs.clone().inner(), None, None);
                    let lp = target_logp(
                        sampling_log_softmax(logits, cfg.temperature),
                        batch.targets.clone().inner(),
                    );
                    ref_logp[c] = Some(Tensor::<B, 2>::from_inner(lp));
                }
                let logits = policy.forward(batch.inputs.clone(), None, None);
                let parts = policy_loss(
                    logits,
                    &batch,
                    old_logp[c].clone(),
                    ref_logp[c].clone(),
                    cfg,
                    normaliser as f64,
                    critique_normaliser as f64,
                );
                if epoch == 0 {
                    old_logp[c] = Some(parts.logp);
                    entropy_sum += parts.entropy_sum;
                    kl_sum += parts.kl_sum.unwrap_or(0.0);
                    trained_tokens += batch.n_trained;
                    if let Some(nll) = parts.critique_nll_sum {
                        *critique_nll_sum.get_or_insert(0.0) += nll;
                    }
                }
                let value: f64 = parts.loss.clone().into_scalar().elem();
                if !value.is_finite() {
                    return Err(StudentError::Training(format!(
                        "policy loss is {value} at iteration {it}; stopped (the last checkpoint in {} is intact). \
                     Lower the learning rate.",
                        self.ckpt_dir.display()
                    )));
                }
                epoch_loss += value;
                let grads = GradientsParams::from_grads(parts.loss.backward(), &policy);
                accumulator.accumulate(&policy, grads);
            }
            let mut grads = accumulator.grads();
            let norm = clip_global_norm(&policy, &mut grads, cfg.clip_norm);
            grad_norm.get_or_insert(norm);
            policy = optim.step(cfg.lr_at(it), policy, grads);
            if epoch == 0 {
                loss_value = epoch_loss;
            }
            last_epoch_loss = epoch_loss;
        }
        let train_s = train_started.elapsed().as_secs_f64();

        let n = episodes.len() as f64;
        let mut metrics: Vec<(String, f64)> = vec![
            ("reward_mean".into(), rewards.iter().sum::<f64>() / n),
            (
                "turns_mean".into(),
                episodes.iter().map(|e| e.turns as f64).sum::<f64>() / n,
            ),
            (
                "informative_fraction".into(),
                advantages
                    .iter()
                    .filter(|a| a.iter().any(|x| *x != 0.0))
                    .count() as f64
                    / n,
            ),
            ("policy_loss".into(), loss_value),
            ("lr".into(), cfg.lr_at(it)),
            (
                "sample_tokens_per_s".into(),
                episodes.iter().map(|e| e.generated_tokens).sum::<usize>() as f64
                    / sample_s.max(1e-9),
            ),
            (
                "train_tokens_per_s".into(),
                tokens_fed as f64 / train_s.max(1e-9),
            ),
        ];
        let max_turns = episodes.iter().map(|e| e.turns).max().unwrap_or(1);
        for t in 1..=max_turns {
            let solved = episodes
                .iter()
                .filter(|e| e.solved_turn.is_some_and(|s| s <= t))
                .count();
            metrics.push((format!("solve_rate_turn_{t}"), solved as f64 / n));
        }
        if trained_tokens > 0 {
            metrics.push(("entropy".into(), entropy_sum / trained_tokens as f64));
            if self.reference.is_some() {
                metrics.push(("kl_to_base".into(), kl_sum / trained_tokens as f64));
            }
        }
        if let Some(norm) = grad_norm {
            metrics.push(("grad_norm".into(), norm));
        }
        if let Some(nll) = critique_nll_sum {
            // Per teacher token, before this iteration's update.
            metrics.push((
                "critique_nll".into(),
                nll / critique_normaliser.max(1) as f64,
            ));
        }
        if cfg.inner_epochs > 1 {
            // The objective as the last inner epoch saw it (KL penalty
            // included), against `policy_loss` of the first.
            metrics.push(("policy_loss_last_epoch".into(), last_epoch_loss));
        }
        self.hooks.on_iteration(it + 1, &metrics);
        Ok((policy, metrics))
    }

    fn evaluate(&mut self, model: &Llama<B::InnerBackend>) -> Result<Vec<(String, f64)>> {
        self.hooks.evaluate(model)
    }

    fn should_stop(&mut self, iteration: usize) -> bool {
        self.hooks.should_stop(iteration)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.env.save(dir)
    }

    fn restore(&mut self, dir: &Path) -> Result<()> {
        self.env.restore(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_random;
    use crate::config::LlamaConfig;
    use crate::generate::{SamplingParams, generate_seeded};
    use crate::trainer::LogRow;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use didact_data::rng::mix_seed;

    type A = Autodiff<Flex>;

    #[test]
    fn discounted_rewards_follow_the_turn() {
        assert_eq!(discounted_reward(Some(1), 0.7), 1.0);
        assert!((discounted_reward(Some(2), 0.7) - 0.7).abs() < 1e-12);
        assert!((discounted_reward(Some(4), 0.7) - 0.343).abs() < 1e-12);
        assert_eq!(discounted_reward(None, 0.7), 0.0);
    }

    #[test]
    fn advantages_are_normalised_within_each_group() {
        // Group 0: one success at turn 1, one at turn 2, two failures.
        // Group 1: all solved at turn 2 (identical rewards).
        let rewards = [1.0, 0.7, 0.0, 0.0, 0.7, 0.7, 0.7, 0.7];
        let groups = [0, 0, 0, 0, 1, 1, 1, 1];
        let a = group_advantages(&rewards, &groups);
        let mean: f64 = 1.7 / 4.0;
        let var = ((1.0f64 - mean).powi(2) + (0.7f64 - mean).powi(2) + 2.0 * mean * mean) / 4.0;
        let std = var.sqrt();
        assert!((a[0] - (1.0 - mean) / (std + 1e-4)).abs() < 1e-9, "{a:?}");
        assert!((a[2] - (0.0 - mean) / (std + 1e-4)).abs() < 1e-9);
        assert!(a[0] > a[1] && a[1] > 0.0 && a[2] < 0.0 && a[2] == a[3]);
        assert!(a[..4].iter().sum::<f64>().abs() < 1e-9);
        assert_eq!(&a[4..], &[0.0; 4], "identical rewards: exactly zero");
    }

    /// [`policy_loss`] of one row of two positions over a vocabulary of 3
    /// (`logits` flat), normaliser 1, and the loss's gradient with respect
    /// to the logits.
    fn loss_and_grad(
        logits: &[f32],
        batch: &PolicyBatch<A>,
        cfg: &RlConfig,
        critique_normaliser: f64,
    ) -> (PolicyLoss<A>, Vec<f32>) {
        let device = Default::default();
        let logits =
            Tensor::<A, 3>::from_data(TensorData::new(logits.to_vec(), [1, 2, 3]), &device)
                .require_grad();
        let parts = policy_loss(
            logits.clone(),
            batch,
            None,
            None,
            cfg,
            1.0,
            critique_normaliser,
        );
        let grad = logits
            .grad(&parts.loss.backward())
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        (parts, grad)
    }

    fn episode(ids: Vec<u32>, mask: Vec<bool>, group: usize, reward: f64) -> Episode {
        Episode {
            group,
            generated_tokens: mask.iter().filter(|m| **m).count(),
            ids,
            mask,
            reward,
            turns: 1,
            solved_turn: (reward > 0.0).then_some(1),
            critique: Vec::new(),
        }
    }

    /// Gradient of the loss with respect to the logits, `[b][t][v]` flattened.
    fn logit_grads(episodes: &[&Episode], advantages: &[f64]) -> (Vec<f32>, usize, usize) {
        let device = Default::default();
        let model = init_random::<A>(&LlamaConfig::small(24, 16, 1, 2, 2), 3, &device).unwrap();
        let per_turn: Vec<Vec<f64>> = advantages.iter().map(|a| vec![*a]).collect();
        let batch = policy_batch::<A>(episodes, &per_turn, 64, 0, &device);
        let logits = model
            .forward(batch.inputs.clone(), None, None)
            .detach()
            .require_grad();
        let parts = policy_loss(
            logits.clone(),
            &batch,
            None,
            None,
            &RlConfig::default(),
            10.0,
            1.0,
        );
        let grads = parts.loss.backward();
        let [_, t, v] = logits.dims();
        let g = logits
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        (g, t, v)
    }

    #[test]
    fn turn_credit_judges_each_turn_among_the_episodes_that_reached_it() {
        let ep = |group, turns, solved_turn| Episode {
            group,
            ids: vec![],
            mask: vec![],
            reward: discounted_reward(solved_turn, 0.5),
            turns,
            solved_turn,
            generated_tokens: 0,
            critique: Vec::new(),
        };
        // Right at once; wrong then fixed; wrong twice.
        let episodes = [ep(0, 1, Some(1)), ep(0, 2, Some(2)), ep(0, 2, None)];
        let cfg = RlConfig {
            gamma: 0.5,
            credit: Credit::Turn,
            scale_advantages: false,
            ..RlConfig::default()
        };
        let a = turn_advantages(&episodes, &cfg);
        // Turn 1 returns 1, 0.5, 0 (mean 0.5); turn 2 returns 1, 0 (mean 0.5).
        assert_eq!(a, vec![vec![0.5], vec![0.0, 0.5], vec![-0.5, -0.5]]);
        // The conversation-level credit gives the fix's wrong first
        // attempt the same sign as the fix.
        let dialogue = turn_advantages(
            &episodes,
            &RlConfig {
                credit: Credit::Dialogue,
                ..cfg.clone()
            },
        );
        assert_eq!(dialogue[1], vec![0.0, 0.0]);
        assert!((dialogue[0][0] - 0.5).abs() < 1e-12 && (dialogue[2][0] + 0.5).abs() < 1e-12);
        // Scaling divides by the group's standard deviation.
        let scaled = turn_advantages(
            &episodes,
            &RlConfig {
                scale_advantages: true,
                ..cfg
            },
        );
        assert!(
            (scaled[1][1] - 0.5 / (0.5 + 1e-4)).abs() < 1e-9,
            "{scaled:?}"
        );
    }

    #[test]
    fn tokens_belong_to_the_turn_of_their_run_of_generated_tokens() {
        let mask = [false, true, true, false, false, true, false, true];
        assert_eq!(token_turns(&mask), vec![0, 0, 0, 0, 0, 1, 1, 2]);
        // A second turn's tokens get the second turn's advantage.
        let e = episode(vec![1, 2, 3, 4, 5, 6, 7, 8], mask.to_vec(), 0, 1.0);
        let batch = policy_batch::<A>(&[&e], &[vec![1.0, -2.0, 3.0]], 64, 0, &Default::default());
        let adv = batch.advantages.into_data().to_vec::<f32>().unwrap();
        assert_eq!(adv, vec![1.0, 1.0, 0.0, 0.0, -2.0, 0.0, 3.0]);
    }

    #[test]
    fn only_generated_tokens_receive_gradient() {
        // Positions 3, 4 and 6 were generated; the rest is task and teacher.
        let mask = vec![false, false, false, true, true, false, true];
        let e = episode(vec![1, 5, 6, 7, 8, 9, 10], mask.clone(), 0, 1.0);
        let (g, t, v) = logit_grads(&[&e], &[1.5]);
        for pos in 0..t {
            let row = &g[pos * v..(pos + 1) * v];
            // Logits at `pos` predict token `pos + 1`.
            if mask[pos + 1] {
                assert!(row.iter().any(|x| *x != 0.0), "position {pos}");
            } else {
                assert!(row.iter().all(|x| *x == 0.0), "position {pos}: {row:?}");
            }
        }
    }

    #[test]
    fn a_group_with_identical_rewards_contributes_no_gradient() {
        let a = episode(vec![1, 5, 6, 7], vec![false, true, true, true], 0, 0.7);
        let b = episode(vec![1, 5, 9, 7], vec![false, true, true, true], 0, 0.7);
        let adv = group_advantages(&[a.reward, b.reward], &[0, 0]);
        let (g, _, _) = logit_grads(&[&a, &b], &adv);
        assert!(g.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn the_loss_scores_tokens_at_the_sampling_temperature() {
        // One episode, three tokens; positions 0 and 1 predict tokens 2
        // and 0, both generated. Hand-made logits over a vocabulary of 3.
        let device = Default::default();
        let e = episode(vec![1, 2, 0], vec![false, true, true], 0, 1.0);
        let batch = policy_batch::<A>(&[&e], &[vec![1.5]], 64, 0, &device);
        let z = [[0.5f64, -1.0, 2.0], [1.0, 0.2, -0.3]];
        let targets = [2usize, 0];
        let flat: Vec<f32> = z.iter().flatten().map(|x| *x as f32).collect();
        let run = |temperature: f32| {
            let cfg = RlConfig {
                temperature,
                ..RlConfig::default()
            };
            let (parts, grad) = loss_and_grad(&flat, &batch, &cfg, 1.0);
            let logp = parts.logp.into_data().to_vec::<f32>().unwrap();
            (logp, grad, parts.entropy_sum)
        };
        for t in [1.0f32, 0.5] {
            let (logp, grad, entropy) = run(t);
            let mut expected_entropy = 0.0;
            for (pos, (row, &y)) in z.iter().zip(&targets).enumerate() {
                // p = softmax(z / T); the sampler draws from exactly this.
                let scaled: Vec<f64> = row.iter().map(|x| x / t as f64).collect();
                let log_z = scaled.iter().map(|x| x.exp()).sum::<f64>().ln();
                let p: Vec<f64> = scaled.iter().map(|x| (x - log_z).exp()).collect();
                let want = scaled[y] - log_z;
                assert!(
                    (logp[pos] as f64 - want).abs() < 1e-5,
                    "T={t} pos {pos}: {logp:?}"
                );
                expected_entropy -= p.iter().map(|q| q * q.ln()).sum::<f64>();
                // At ratio 1 the loss is -A·w·logp (w = 1/2, two trained
                // tokens); d logp / dz = (onehot(y) - p) / T.
                for k in 0..3 {
                    let onehot = (k == y) as u8 as f64;
                    let want = -1.5 * 0.5 * (onehot - p[k]) / t as f64;
                    let got = grad[pos * 3 + k] as f64;
                    assert!((got - want).abs() < 1e-5, "T={t} pos {pos} k {k}: {grad:?}");
                }
            }
            assert!(
                (entropy - expected_entropy).abs() < 1e-4,
                "T={t}: {entropy}"
            );
        }
        // Temperature 0.5 sharpens: the likeliest target (z = 2.0) gains.
        assert!(run(0.5).0[0] > run(1.0).0[0]);
    }

    /// The critique loss adds weight × the teacher tokens' negative
    /// log-likelihood at temperature 1, divided by the iteration's teacher
    /// tokens; it touches no other position and is off at weight 0.
    #[test]
    fn the_critique_loss_learns_the_teachers_tokens_only() {
        let device = Default::default();
        // Positions 0 and 1 predict tokens 2 (the student's) and 0 (the
        // teacher's); the student's advantage is 0.
        let mut e = episode(vec![1, 2, 0], vec![false, true, false], 0, 1.0);
        e.critique = vec![false, false, true];
        let batch = policy_batch::<A>(&[&e], &[vec![0.0]], 64, 0, &device);
        assert_eq!((batch.n_trained, batch.n_critique), (1, 1));
        let z = [[0.5f32, -1.0, 2.0, 1.0, 0.2, -0.3]];
        let run = |weight: f64, temperature: f32| {
            let cfg = RlConfig {
                critique_weight: weight,
                temperature,
                ..RlConfig::default()
            };
            let (parts, grad) = loss_and_grad(&z.concat(), &batch, &cfg, 4.0);
            let loss: f32 = parts.loss.into_scalar().elem();
            (loss as f64, grad, parts.critique_nll_sum)
        };
        // Softmax of position 1 at temperature 1, whatever the sampling one.
        let row = [1.0f64, 0.2, -0.3];
        let log_z = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        let p: Vec<f64> = row.iter().map(|x| (x - log_z).exp()).collect();
        for temperature in [1.0f32, 0.5] {
            let (loss, grad, nll) = run(0.5, temperature);
            let want_nll = log_z - row[0];
            assert!((nll.unwrap() - want_nll).abs() < 1e-5, "{nll:?}");
            assert!((loss - 0.5 * want_nll / 4.0).abs() < 1e-5, "{loss}");
            // Position 0 (the student's token, advantage 0) gets nothing.
            assert!(grad[..3].iter().all(|g| *g == 0.0), "{grad:?}");
            for k in 0..3 {
                let want = 0.5 / 4.0 * (p[k] - (k == 0) as u8 as f64);
                assert!(
                    (grad[3 + k] as f64 - want).abs() < 1e-5,
                    "T={temperature}: {grad:?}"
                );
            }
        }
        let (loss, grad, nll) = run(0.0, 1.0);
        assert_eq!((loss, nll), (0.0, None));
        assert!(grad.iter().all(|g| *g == 0.0));
    }

    /// A checkpoint records the weight the stage set, so a resumed run
    /// matches it; at 0 the config serialises as before the weight existed.
    #[test]
    fn the_critique_weight_round_trips_and_is_absent_at_zero() {
        let off = serde_json::to_value(RlConfig::default()).unwrap();
        assert!(off.get("critique_weight").is_none(), "{off}");
        let on = RlConfig {
            critique_weight: 0.05,
            ..RlConfig::default()
        };
        let back: RlConfig = serde_json::from_value(serde_json::to_value(&on).unwrap()).unwrap();
        assert_eq!(back, on);
        let bad = RlConfig {
            critique_weight: -0.1,
            ..RlConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("critique_weight:"));
    }

    #[test]
    fn validate_rejects_a_nucleus_because_it_makes_the_update_off_policy() {
        assert_eq!(RlConfig::default().validate(), Ok(()));
        let err = RlConfig {
            top_p: 0.9,
            ..RlConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.starts_with("top_p: 0.9") && err.contains("off-policy"),
            "{err}"
        );
        for top_p in [0.0, 1.5, f32::NAN] {
            let cfg = RlConfig {
                top_p,
                ..RlConfig::default()
            };
            assert!(cfg.validate().unwrap_err().starts_with("top_p:"), "{top_p}");
        }
        let cold = RlConfig {
            temperature: 0.0,
            ..RlConfig::default()
        };
        assert!(cold.validate().unwrap_err().starts_with("temperature:"));
        for share in [-0.1, 1.5, f64::NAN] {
            let cfg = RlConfig {
                correction_groups: share,
                ..RlConfig::default()
            };
            assert!(
                cfg.validate()
                    .unwrap_err()
                    .starts_with("correction_groups:"),
                "{share}"
            );
        }
    }

    /// A toy environment: the prompt is one token, the policy writes up to
    /// two tokens, and the reward is 1 when the first is even. A random
    /// model starts near 50%.
    struct EvenFirst {
        prompts: usize,
        group: usize,
        seed: u64,
    }

    impl<B: Kernels> Environment<B> for EvenFirst {
        fn sample(&mut self, policy: &Llama<B>, iteration: usize) -> Result<Vec<Episode>> {
            let mut prompts = Vec::new();
            let mut seeds = Vec::new();
            for p in 0..self.prompts {
                for m in 0..self.group {
                    prompts.push(vec![1 + (iteration * self.prompts + p) as u32 % 20]);
                    seeds.push(mix_seed(&[self.seed, iteration as u64, p as u64, m as u64]));
                }
            }
            let params = SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                max_new_tokens: 2,
            };
            let gens = generate_seeded(
                policy,
                &prompts,
                &[],
                0,
                &params,
                &seeds,
                &policy.devices()[0],
            );
            Ok(gens
                .into_iter()
                .zip(prompts)
                .enumerate()
                .map(|(i, (g, p))| {
                    let reward = (g.tokens[0] % 2 == 0) as u8 as f64;
                    let mut ids = p;
                    ids.extend(&g.tokens);
                    let mut mask = vec![false];
                    mask.extend(vec![true; g.tokens.len()]);
                    Episode {
                        group: i / self.group,
                        generated_tokens: g.tokens.len(),
                        ids,
                        mask,
                        reward,
                        turns: 1,
                        solved_turn: (reward > 0.0).then_some(1),
                        critique: Vec::new(),
                    }
                })
                .collect())
        }
    }

    struct NoHooks;
    impl RlHooks<A> for NoHooks {}

    fn toy_config() -> RlConfig {
        RlConfig {
            iterations: 30,
            lr: 3e-3,
            warmup_steps: 1,
            eval_every: 1000,
            checkpoint_every: 10,
            micro_batch: 64,
            ..RlConfig::default()
        }
    }

    fn run_toy(
        cfg: &RlConfig,
        dir: &Path,
        hooks: &mut dyn RlHooks<A>,
        with_reference: bool,
    ) -> Trained<A> {
        let device = Default::default();
        let model = init_random::<A>(&LlamaConfig::small(24, 32, 2, 4, 2), 7, &device).unwrap();
        let reference = model.valid();
        let mut env = EvenFirst {
            prompts: 8,
            group: 8,
            seed: 3,
        };
        train(
            model,
            with_reference.then_some(&reference),
            &mut env,
            cfg,
            0,
            dir,
            hooks,
            &device,
        )
        .unwrap()
    }

    fn series(log: &[LogRow], metric: &str) -> Vec<f64> {
        log.iter()
            .filter(|r| r.metric == metric)
            .map(|r| r.value)
            .collect()
    }

    #[test]
    fn grpo_raises_the_reward_of_a_policy_that_starts_near_half() {
        let dir = tempfile::tempdir().unwrap();
        let trained = run_toy(&toy_config(), &dir.path().join("c"), &mut NoHooks, true);
        let reward = series(&trained.log, "reward_mean");
        let first: f64 = reward[..3].iter().sum::<f64>() / 3.0;
        let last: f64 = reward[reward.len() - 3..].iter().sum::<f64>() / 3.0;
        assert!(
            (0.3..0.7).contains(&first),
            "a random policy starts near 50%: {reward:?}"
        );
        assert!(last > first + 0.25, "reward should rise: {reward:?}");
        let kl = series(&trained.log, "kl_to_base");
        assert!(kl[0] < 1e-6 && kl[kl.len() - 1] > kl[0], "{kl:?}");
    }

    /// Every episode of `EvenFirst` earns the same reward: all advantages
    /// are 0, so the KL penalty is the whole objective.
    struct SameReward(EvenFirst);

    impl<B: Kernels> Environment<B> for SameReward {
        fn sample(&mut self, policy: &Llama<B>, iteration: usize) -> Result<Vec<Episode>> {
            let mut episodes = self.0.sample(policy, iteration)?;
            for e in &mut episodes {
                e.reward = 1.0;
                e.solved_turn = Some(1);
            }
            Ok(episodes)
        }
    }

    #[test]
    fn the_kl_penalty_applies_in_every_inner_epoch() {
        let cfg = RlConfig {
            iterations: 2,
            inner_epochs: 3,
            kl_beta: 0.5,
            ..toy_config()
        };
        let device = Default::default();
        let config = LlamaConfig::small(24, 32, 2, 4, 2);
        let policy = init_random::<A>(&config, 7, &device).unwrap();
        // A reference unlike the policy: the KL is positive from the start.
        let reference = init_random::<A>(&config, 8, &device).unwrap().valid();
        let mut env = SameReward(EvenFirst {
            prompts: 4,
            group: 4,
            seed: 3,
        });
        let dir = tempfile::tempdir().unwrap();
        let trained = train(
            policy,
            Some(&reference),
            &mut env,
            &cfg,
            0,
            &dir.path().join("c"),
            &mut NoHooks,
            &device,
        )
        .unwrap();
        let kl = series(&trained.log, "kl_to_base");
        let first = series(&trained.log, "policy_loss");
        let last = series(&trained.log, "policy_loss_last_epoch");
        assert_eq!((kl.len(), first.len(), last.len()), (2, 2, 2));
        for i in 0..2 {
            assert!(kl[i] > 0.0 && first[i] > 0.0, "{kl:?} {first:?}");
            // The surrogate is exactly 0 here; without the penalty the last
            // epoch's loss would be exactly 0 too. With it, the earlier
            // epochs' steps have pulled the policy towards the reference.
            assert!(last[i] > 0.0 && last[i] < first[i], "{first:?} {last:?}");
        }
    }

    #[test]
    fn an_interrupted_rl_run_resumes_exactly() {
        let cfg = RlConfig {
            iterations: 12,
            checkpoint_every: 6,
            inner_epochs: 2,
            ..toy_config()
        };
        let a = tempfile::tempdir().unwrap();
        let straight = run_toy(&cfg, &a.path().join("c"), &mut NoHooks, false);
        struct StopAt(usize);
        impl RlHooks<A> for StopAt {
            fn should_stop(&mut self, it: usize) -> bool {
                it == self.0
            }
        }
        let b = tempfile::tempdir().unwrap();
        let first = run_toy(&cfg, &b.path().join("c"), &mut StopAt(6), false);
        assert!(!first.completed);
        let resumed = run_toy(&cfg, &b.path().join("c"), &mut NoHooks, false);
        assert_eq!(resumed.resumed_from, 6);
        let tail = |t: &Trained<A>| -> Vec<f64> {
            t.log
                .iter()
                .filter(|r| r.metric == "reward_mean" && r.step > 6)
                .map(|r| r.value)
                .collect()
        };
        assert_eq!(tail(&straight).len(), 6);
        assert_eq!(tail(&straight), tail(&resumed));
    }
}
