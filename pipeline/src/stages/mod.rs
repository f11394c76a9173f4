//! The stage runner. Each stage is one module with one `run`; the order of
//! stages lives in [`STAGES`] and nowhere else.

pub mod analyse;
pub mod baseline;
pub mod common;
pub mod critic;
pub mod data;
pub mod eval;
pub mod pretrain;
pub mod rl;
pub mod sml;
pub mod student;
pub mod transfer;
pub mod verdict;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::layout::{RunLayout, is_shared};
use crate::manifest::{FileRecord, Manifest, StageRecord, git_revision};
pub use common::{Stage, StageContext};

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

/// One run of a stage: its key in the manifest (`seed-<s>/<stage>` for a
/// per-seed stage of a multi-seed run), the prefix of its files relative
/// to the run directory, and its configuration.
struct Instance {
    key: String,
    prefix: String,
    config: Config,
}

fn instances(stage: &Stage, config: &Config, layout: &RunLayout) -> Vec<Instance> {
    if !stage.per_seed || layout.seeds.is_empty() {
        return vec![Instance {
            key: stage.name.to_string(),
            prefix: String::new(),
            config: config.clone(),
        }];
    }
    layout
        .seed_prefixes()
        .into_iter()
        .map(|(seed, prefix)| Instance {
            key: format!("{prefix}{}", stage.name),
            prefix,
            config: config.for_training_seed(seed),
        })
        .collect()
}

/// `stage`'s inputs relative to the run directory, for the instance with
/// files under `prefix`.
fn resolve_inputs(stage: &Stage, prefix: &str, layout: &RunLayout) -> Vec<String> {
    let mut out = Vec::new();
    for input in stage.inputs {
        if is_shared(input) {
            out.push(input.to_string());
        } else if stage.per_seed {
            out.push(format!("{prefix}{input}"));
        } else {
            out.extend(
                layout
                    .seed_prefixes()
                    .into_iter()
                    .map(|(_, p)| format!("{p}{input}")),
            );
        }
    }
    out
}

/// Runs `names` (in pipeline order) for every training seed of `layout`:
/// a shared stage once, each stretch of per-seed stages seed by seed, so
/// that one seed's models are complete before the next seed's start.
pub fn run_stages(
    names: &[&str],
    config: &Config,
    layout: &RunLayout,
    progress: bool,
    device: crate::device::DeviceSpec,
    force: bool,
) -> Result<()> {
    let selected: Vec<&Stage> = STAGES.iter().filter(|s| names.contains(&s.name)).collect();
    let mut i = 0;
    while i < selected.len() {
        if !selected[i].per_seed {
            run_stage(selected[i], config, layout, None, progress, device, force)?;
            i += 1;
            continue;
        }
        let stretch: Vec<&Stage> = selected[i..]
            .iter()
            .take_while(|s| s.per_seed)
            .copied()
            .collect();
        let seeds: Vec<Option<usize>> = if layout.seeds.is_empty() {
            vec![None]
        } else {
            (0..layout.seeds.len()).map(Some).collect()
        };
        for seed in seeds {
            for stage in &stretch {
                run_stage(stage, config, layout, seed, progress, device, force)?;
            }
        }
        i += stretch.len();
    }
    Ok(())
}

/// Runs one stage (for the training seed at index `seed` of
/// `layout.seeds`, for a per-seed stage of a multi-seed run) unless its
/// outputs are up to date, and records it in the run's manifest.
pub fn run_stage(
    stage: &Stage,
    config: &Config,
    layout: &RunLayout,
    seed: Option<usize>,
    progress: bool,
    device: crate::device::DeviceSpec,
    force: bool,
) -> Result<Outcome> {
    let all = instances(stage, config, layout);
    let instance = match seed {
        Some(i) if stage.per_seed => &all[i],
        _ => &all[0],
    };
    let label = &instance.key;
    let hash = config_hash(stage, &instance.config);
    let inputs = resolve_inputs(stage, &instance.prefix, layout);
    let input_refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let root = layout.root.as_path();
    let manifest = Manifest::load(root)?;
    if !force && manifest.is_up_to_date(label, &hash, &input_refs, root) {
        tracing::info!("{label}: up to date (config {hash}), skipped; --force reruns it");
        return Ok(Outcome::Skipped);
    }
    for upstream in STAGES.iter().take_while(|s| s.name != stage.name) {
        let upstream_instances = instances(upstream, config, layout);
        for u in &upstream_instances {
            // A per-seed stage depends on its own seed's upstream stages.
            if stage.per_seed && upstream.per_seed && u.prefix != instance.prefix {
                continue;
            }
            let Some(record) = manifest.stages.get(&u.key) else {
                continue;
            };
            let current = config_hash(upstream, &u.config);
            anyhow::ensure!(
                record.config_hash == current,
                "{label}: its inputs come from stage {}, which ran with another config ({} != {current}); \
                 rerun {} first (or `didact pipeline`)",
                u.key,
                record.config_hash,
                upstream.name
            );
        }
    }
    for input in &inputs {
        let path = root.join(input);
        anyhow::ensure!(
            path.exists(),
            "{label}: input {} is missing; run the stage that writes it first (or `didact pipeline`)",
            path.display()
        );
    }
    let run_dir = root.join(&instance.prefix);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("{}: cannot create", run_dir.display()))?;
    if !instance.prefix.is_empty() {
        didact_data::atomic::write(
            &run_dir.join(crate::layout::CONFIG_FILE),
            instance.config.to_toml().as_bytes(),
        )?;
    }
    let ctx = StageContext {
        config: &instance.config,
        run_dir: &run_dir,
        layout,
        progress,
        device,
    };
    tracing::info!("{label}: running (config {hash})");
    let start = Instant::now();
    let output = (stage.run)(&ctx).with_context(|| format!("stage {label}"))?;
    let wall_time_s = start.elapsed().as_secs_f64();
    let outputs = output
        .outputs
        .iter()
        .map(|p| {
            let full: PathBuf = run_dir.join(p);
            let bytes = std::fs::metadata(&full)
                .with_context(|| format!("{}: stage {label} did not write it", full.display()))?
                .len();
            Ok(FileRecord {
                path: format!("{}{p}", instance.prefix),
                bytes,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Reload: nothing else writes the manifest while a stage runs, but the
    // stage itself may have taken minutes.
    let mut manifest = Manifest::load(root)?;
    let sequence = manifest.next_sequence();
    manifest.stages.insert(
        label.to_string(),
        StageRecord {
            config_hash: hash,
            inputs,
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
    manifest.save(root)?;
    for line in &output.summary {
        println!("{line}");
    }
    tracing::info!("{label}: done in {wall_time_s:.1}s");
    Ok(Outcome::Ran)
}
