//! `manifest.json`: what each stage of a run did — its config hash, inputs,
//! outputs, wall time, git revision and headline metrics. The stage runner
//! reads it to skip stages whose outputs are up to date.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One stage's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub config_hash: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<FileRecord>,
    pub wall_time_s: f64,
    pub git_revision: String,
    /// Seconds since the Unix epoch when the stage finished.
    pub finished_at: u64,
    pub metrics: serde_json::Value,
}

/// An output file, relative to the run directory, with its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub stages: BTreeMap<String, StageRecord>,
}

pub const FILE: &str = "manifest.json";

impl Manifest {
    /// Reads the run's manifest, or an empty one for a new run directory.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a didact manifest (delete it, or the run directory, to start over)",
                path.display()
            )
        })
    }

    pub fn save(&self, run_dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        didact_data::atomic::write(&run_dir.join(FILE), json.as_bytes())?;
        Ok(())
    }

    /// True when `stage` finished with this config hash and all its outputs
    /// are still on disk.
    pub fn is_up_to_date(&self, stage: &str, config_hash: &str, run_dir: &Path) -> bool {
        self.stages.get(stage).is_some_and(|r| {
            r.config_hash == config_hash && r.outputs.iter().all(|o| run_dir.join(&o.path).exists())
        })
    }
}

/// The git revision of the working tree (`-dirty` when it has changes), or
/// `unknown` outside a repository.
pub fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_to_date_needs_same_hash_and_existing_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.parquet"), b"x").unwrap();
        let mut m = Manifest::default();
        m.stages.insert(
            "data".into(),
            StageRecord {
                config_hash: "h1".into(),
                inputs: vec![],
                outputs: vec![FileRecord {
                    path: "a.parquet".into(),
                    bytes: 1,
                }],
                wall_time_s: 0.1,
                git_revision: "r".into(),
                finished_at: 0,
                metrics: serde_json::json!({}),
            },
        );
        m.save(dir.path()).unwrap();
        let m = Manifest::load(dir.path()).unwrap();
        assert!(m.is_up_to_date("data", "h1", dir.path()));
        assert!(!m.is_up_to_date("data", "h2", dir.path()));
        assert!(!m.is_up_to_date("student", "h1", dir.path()));
        std::fs::remove_file(dir.path().join("a.parquet")).unwrap();
        assert!(!m.is_up_to_date("data", "h1", dir.path()));
    }

    #[test]
    fn corrupt_manifest_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{ nope").unwrap();
        let err = format!("{:#}", Manifest::load(dir.path()).unwrap_err());
        assert!(
            err.contains("manifest.json: not a didact manifest"),
            "{err}"
        );
    }
}
