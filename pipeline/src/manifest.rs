//! `manifest.json`: what each stage of a run did — its config hash, inputs,
//! outputs, wall time, git revision and headline metrics. The stage runner
//! reads it to skip stages whose outputs are up to date.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::MANIFEST_FILE as FILE;

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
    /// Position of this stage's run among the run directory's stage runs
    /// (1, 2, …). Staleness compares these rather than `finished_at`: two
    /// stages can finish within the same second. 0 in manifests written
    /// before this field existed.
    #[serde(default)]
    pub sequence: u64,
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

impl Manifest {
    /// The `sequence` for the next stage run to finish.
    pub fn next_sequence(&self) -> u64 {
        self.stages.values().map(|r| r.sequence).max().unwrap_or(0) + 1
    }

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

    /// True when `stage` finished with this config hash, all its outputs
    /// are still on disk, and no stage that wrote one of its `inputs` ran
    /// again after it (a forced rerun upstream makes it stale even though
    /// the config did not change).
    pub fn is_up_to_date(
        &self,
        stage: &str,
        config_hash: &str,
        inputs: &[&str],
        run_dir: &Path,
    ) -> bool {
        let Some(record) = self.stages.get(stage) else {
            return false;
        };
        let ran_after = |upstream: &StageRecord| {
            if upstream.sequence > 0 && record.sequence > 0 {
                upstream.sequence > record.sequence
            } else {
                upstream.finished_at > record.finished_at
            }
        };
        let newer_input = self.stages.iter().any(|(name, upstream)| {
            name != stage
                && ran_after(upstream)
                && upstream
                    .outputs
                    .iter()
                    .any(|o| inputs.contains(&o.path.as_str()))
        });
        record.config_hash == config_hash
            && !newer_input
            && record
                .outputs
                .iter()
                .all(|o| run_dir.join(&o.path).exists())
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

    fn record(hash: &str, output: &str, finished_at: u64) -> StageRecord {
        StageRecord {
            config_hash: hash.into(),
            inputs: vec![],
            outputs: vec![FileRecord {
                path: output.into(),
                bytes: 1,
            }],
            wall_time_s: 0.1,
            git_revision: "r".into(),
            finished_at,
            sequence: 0,
            metrics: serde_json::json!({}),
        }
    }

    #[test]
    fn up_to_date_needs_same_hash_and_existing_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.parquet"), b"x").unwrap();
        let mut m = Manifest::default();
        m.stages
            .insert("data".into(), record("h1", "a.parquet", 10));
        m.save(dir.path()).unwrap();
        let m = Manifest::load(dir.path()).unwrap();
        assert!(m.is_up_to_date("data", "h1", &[], dir.path()));
        assert!(!m.is_up_to_date("data", "h2", &[], dir.path()));
        assert!(!m.is_up_to_date("student", "h1", &[], dir.path()));
        std::fs::remove_file(dir.path().join("a.parquet")).unwrap();
        assert!(!m.is_up_to_date("data", "h1", &[], dir.path()));
    }

    #[test]
    fn a_stage_is_stale_once_the_stage_writing_its_input_ran_again() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.parquet", "b.parquet", "c.parquet"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let mut m = Manifest::default();
        m.stages
            .insert("data".into(), record("h1", "a.parquet", 10));
        m.stages
            .insert("student".into(), record("h2", "b.parquet", 20));
        m.stages
            .insert("other".into(), record("h3", "c.parquet", 30));
        // `other` ran after `student` but wrote nothing `student` reads.
        assert!(m.is_up_to_date("student", "h2", &["a.parquet"], dir.path()));
        // `data` ran again (forced) after `student` finished.
        m.stages.get_mut("data").unwrap().finished_at = 25;
        assert!(!m.is_up_to_date("student", "h2", &["a.parquet"], dir.path()));
        assert!(m.is_up_to_date("student", "h2", &["c2.parquet"], dir.path()));
    }

    #[test]
    fn stages_finishing_within_one_second_are_ordered_by_sequence() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.parquet", "b.parquet"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let mut m = Manifest::default();
        let mut data = record("h1", "a.parquet", 10);
        data.sequence = m.next_sequence();
        m.stages.insert("data".into(), data);
        let mut student = record("h2", "b.parquet", 10);
        student.sequence = m.next_sequence();
        m.stages.insert("student".into(), student);
        assert!(m.is_up_to_date("student", "h2", &["a.parquet"], dir.path()));
        // `data` reruns, forced, in the same second as `student` finished.
        let sequence = m.next_sequence();
        m.stages.get_mut("data").unwrap().sequence = sequence;
        assert_eq!(sequence, 3);
        assert!(!m.is_up_to_date("student", "h2", &["a.parquet"], dir.path()));
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
