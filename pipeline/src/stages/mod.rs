//! The stage runner. Each stage is one module with one `run`; the order of
//! stages lives in [`STAGES`] and nowhere else.

pub mod analyse;
pub mod baseline;
pub mod critic;
pub mod data;
pub mod eval;
pub mod pretrain;
pub mod sml;
pub mod student;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::manifest::{FileRecord, Manifest, StageRecord, git_revision};

/// What a stage run needs.
pub struct StageContext<'a> {
    pub config: &'a Config,
    pub run_dir: &'a Path,
    /// Show progress bars (off with `-q`).
    pub progress: bool,
    /// Where models train and sample.
    pub device: crate::device::DeviceSpec,
}

/// What a stage produced: files relative to the run directory, metrics for
/// the manifest, and the lines it contributes to the run's summary.
pub struct StageOutput {
    pub outputs: Vec<String>,
    pub metrics: serde_json::Value,
    pub summary: Vec<String>,
}

/// A pipeline stage.
pub struct Stage {
    pub name: &'static str,
    /// Files (relative to the run directory) the stage reads.
    pub inputs: &'static [&'static str],
    /// The part of the config the stage depends on, as JSON; its hash decides
    /// whether the stage's outputs are up to date.
    pub config_section: fn(&Config) -> serde_json::Value,
    pub run: fn(&StageContext) -> Result<StageOutput>,
}

/// Replaces `stage`'s rows of the run's train log with `log`, then removes
/// the resumable checkpoint of the finished run (and `checkpoints/` when
/// no other stage keeps one there).
pub fn finish_training(
    run_dir: &Path,
    stage: &str,
    log: &[didact_student::sft::LogRow],
    checkpoint: &Path,
) -> Result<()> {
    let rows: Vec<didact_data::tables::TrainLogRow> = log
        .iter()
        .map(|r| didact_data::tables::TrainLogRow {
            stage: stage.into(),
            step: r.step,
            metric: r.metric.clone(),
            value: r.value,
        })
        .collect();
    didact_data::tables::replace_train_log(&run_dir.join(pretrain::TRAIN_LOG_FILE), stage, &rows)?;
    let _ = std::fs::remove_dir_all(checkpoint);
    let _ = std::fs::remove_dir(run_dir.join("checkpoints"));
    Ok(())
}

/// Shows an SFT run's loss and throughput on a progress bar.
struct SftBar(indicatif::ProgressBar);

impl<B: didact_student::kernels::TrainBackend> didact_student::sft::TrainHooks<B> for SftBar {
    fn on_step(&mut self, step: usize, loss: f64, _lr: f64, tokens_per_s: f64) {
        self.0.set_position(step as u64);
        self.0
            .set_message(format!("loss {loss:.3} · {tokens_per_s:.0} tok/s"));
    }
}

/// SFT of `model` on `examples` inside a stage, under a progress bar
/// labelled `label`: resumable from `checkpoints/<name>`, logged to the
/// train log as stage `name`.
#[allow(clippy::too_many_arguments)]
pub fn run_sft<B: didact_student::kernels::TrainBackend>(
    ctx: &StageContext,
    name: &str,
    label: &str,
    model: didact_student::Llama<B>,
    examples: &[didact_student::sft::Example],
    cfg: &didact_student::sft::TrainConfig,
    pad: u32,
    device: &B::Device,
) -> Result<didact_student::Llama<B>> {
    let bar = crate::progress::bar(ctx.progress, cfg.steps as u64, label);
    let ckpt = ctx.run_dir.join("checkpoints").join(name);
    let trained = didact_student::sft::train(
        model,
        examples,
        cfg,
        pad,
        &ckpt,
        &mut SftBar(bar.clone()),
        device,
    )?;
    bar.finish_and_clear();
    finish_training(ctx.run_dir, name, &trained.log, &ckpt)?;
    Ok(trained.model)
}

/// Every stage, in pipeline order.
pub const STAGES: &[Stage] = &[
    data::STAGE,
    pretrain::STAGE,
    student::STAGE,
    baseline::STAGE,
    critic::STAGE,
    eval::STAGE,
    transfer::STAGE,
    sml::STAGE,
    analyse::STAGE,
];

pub fn find(name: &str) -> Option<&'static Stage> {
    STAGES.iter().find(|s| s.name == name)
}

/// Hash of the stage's config section and of the hashes of the stages before
/// it, so that changing an upstream stage invalidates everything after it.
pub fn config_hash(stage: &Stage, config: &Config) -> String {
    let mut hasher = Sha256::new();
    for s in STAGES {
        hasher.update(s.name.as_bytes());
        hasher.update((s.config_section)(config).to_string().as_bytes());
        if s.name == stage.name {
            break;
        }
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a stage run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Skipped,
}

/// Runs one stage unless its outputs are up to date, and records it.
pub fn run_stage(stage: &Stage, ctx: &StageContext, force: bool) -> Result<Outcome> {
    let hash = config_hash(stage, ctx.config);
    let mut manifest = Manifest::load(ctx.run_dir)?;
    if !force && manifest.is_up_to_date(stage.name, &hash, stage.inputs, ctx.run_dir) {
        tracing::info!(
            "{}: up to date (config {hash}), skipped; --force reruns it",
            stage.name
        );
        return Ok(Outcome::Skipped);
    }
    for upstream in STAGES.iter().take_while(|s| s.name != stage.name) {
        if let Some(record) = manifest.stages.get(upstream.name) {
            let current = config_hash(upstream, ctx.config);
            anyhow::ensure!(
                record.config_hash == current,
                "{}: its inputs come from stage {}, which ran with another config ({} != {current}); \
                 rerun {} first (or `didact pipeline`)",
                stage.name,
                upstream.name,
                record.config_hash,
                upstream.name
            );
        }
    }
    for input in stage.inputs {
        let path = ctx.run_dir.join(input);
        anyhow::ensure!(
            path.exists(),
            "{}: input {} is missing; run the stage that writes it first (or `didact pipeline`)",
            stage.name,
            path.display()
        );
    }
    tracing::info!("{}: running (config {hash})", stage.name);
    let start = Instant::now();
    let output = (stage.run)(ctx).with_context(|| format!("stage {}", stage.name))?;
    let wall_time_s = start.elapsed().as_secs_f64();
    let outputs = output
        .outputs
        .iter()
        .map(|p| {
            let full: PathBuf = ctx.run_dir.join(p);
            let bytes = std::fs::metadata(&full)
                .with_context(|| {
                    format!("{}: stage {} did not write it", full.display(), stage.name)
                })?
                .len();
            Ok(FileRecord {
                path: p.clone(),
                bytes,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sequence = manifest.next_sequence();
    manifest.stages.insert(
        stage.name.to_string(),
        StageRecord {
            config_hash: hash,
            inputs: stage.inputs.iter().map(|s| s.to_string()).collect(),
            outputs,
            wall_time_s,
            git_revision: git_revision(),
            finished_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            sequence,
            metrics: output.metrics,
        },
    );
    manifest.save(ctx.run_dir)?;
    for line in &output.summary {
        println!("{line}");
    }
    tracing::info!("{}: done in {wall_time_s:.1}s", stage.name);
    Ok(Outcome::Ran)
}
