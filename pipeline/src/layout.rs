//! Where a run's files live. A run directory holds what every training seed
//! shares (the `data` stage's tasks, synthetic dialogues and tokenizer, the
//! report, `manifest.json`) and, with `run.seeds` set, one directory per
//! training seed (`seed-<s>/`) holding that seed's checkpoints and tables.
//! Without `run.seeds` a run has one training seed and keeps everything in
//! the run directory itself, as before seeds existed.

use std::path::{Path, PathBuf};

use crate::stages::data::{
    CARRIED_FILES, SYNTHETIC_FILE, TASKS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};

/// Files written once per run and read by every training seed, besides a
/// pretrained model's [`CARRIED_FILES`].
pub const SHARED_FILES: [&str; 4] = [
    TASKS_FILE,
    SYNTHETIC_FILE,
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
];

/// Whether `file` (relative to the run directory) is shared by every
/// training seed rather than written once per seed.
pub fn is_shared(file: &str) -> bool {
    SHARED_FILES.contains(&file) || CARRIED_FILES.contains(&file)
}

/// The run directory and its training seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLayout {
    pub root: PathBuf,
    /// `run.seeds`; empty for a single-seed run kept in `root`.
    pub seeds: Vec<u64>,
}

impl RunLayout {
    pub fn new(root: &Path, seeds: &[u64]) -> Self {
        Self {
            root: root.to_path_buf(),
            seeds: seeds.to_vec(),
        }
    }

    /// The training seeds, each with its directory prefix relative to the
    /// run directory (`seed-<s>/`; empty in a single-seed run, whose seed
    /// is labelled 0).
    pub fn seed_prefixes(&self) -> Vec<(u64, String)> {
        if self.seeds.is_empty() {
            vec![(0, String::new())]
        } else {
            self.seeds
                .iter()
                .map(|&s| (s, format!("{}/", seed_dir_name(s))))
                .collect()
        }
    }

    /// Every training seed with its directory.
    pub fn seed_dirs(&self) -> Vec<(u64, PathBuf)> {
        self.seed_prefixes()
            .into_iter()
            .map(|(s, prefix)| (s, self.root.join(prefix)))
            .collect()
    }

    /// A shared file's path.
    pub fn shared(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }
}

/// `seed-<s>`.
pub fn seed_dir_name(seed: u64) -> String {
    format!("seed-{seed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_seed_runs_keep_everything_in_the_run_directory() {
        let l = RunLayout::new(Path::new("runs/x"), &[]);
        assert_eq!(l.seed_dirs(), vec![(0, PathBuf::from("runs/x/"))]);
        let l = RunLayout::new(Path::new("runs/x"), &[0, 5]);
        assert_eq!(
            l.seed_prefixes(),
            vec![(0, "seed-0/".to_string()), (5, "seed-5/".to_string())]
        );
        assert_eq!(l.seed_dirs()[1].1, PathBuf::from("runs/x/seed-5/"));
        assert_eq!(l.shared(TASKS_FILE), PathBuf::from("runs/x/tasks.parquet"));
        assert!(is_shared(TOKENIZER_FILE) && !is_shared("base/model.safetensors"));
    }
}
