//! Where a run's files live. A run directory holds what every training seed
//! shares (the `data` stage's tasks, synthetic dialogues and tokenizer, the
//! report, `manifest.json`) and, with `run.seeds` set, one directory per
//! training seed (`seed-<s>/`) holding that seed's checkpoints and tables.
//! Without `run.seeds` a run has one training seed and keeps everything in
//! the run directory itself, as before seeds existed.
//!
//! Every path inside a run directory is declared here and nowhere else, so
//! that stages, `didact show` and the tests name a file by its constant and
//! no stage imports another to find where it writes.

use std::path::{Path, PathBuf};

// ---- shared by every training seed (written by the `data` stage) ----

/// `data`: every task with its split (`didact_data::tables::TASKS`).
pub const TASKS_FILE: &str = "tasks.parquet";
/// `data`: the synthetic teacher dialogues of pretraining
/// (`didact_data::tables::SYNTHETIC`).
pub const SYNTHETIC_FILE: &str = "synthetic_dialogues.parquet";
/// `data`: the tokenizer every model of the run uses.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// A pretrained model's chat template and special tokens, beside its
/// tokenizer.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// A pretrained model's end-of-sequence ids, when it has the file.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// The files beside a pretrained model's tokenizer that are carried as they
/// came into the run directory and into every checkpoint didact writes, so
/// that they load in transformers as the original did: the generation
/// config and the files in which transformers keeps chat templates and
/// special tokens (transformers 5 writes the template as
/// `chat_template.jinja`, not inside `tokenizer_config.json`).
pub const CARRIED_FILES: [&str; 4] = [
    GENERATION_CONFIG_FILE,
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
];

/// The resolved configuration of the run (and, with `run.seeds`, of each
/// training seed, in its directory).
pub const CONFIG_FILE: &str = "config.toml";
/// Per stage: config hash, inputs, outputs, wall time, metrics.
pub const MANIFEST_FILE: &str = "manifest.json";

// ---- per training seed ----

/// Declares a checkpoint directory and the path of its weights file
/// (`<dir>/model.safetensors`, [`didact_student::checkpoint::WEIGHTS_FILE`]),
/// which stages list as inputs.
macro_rules! checkpoint_dir {
    ($(#[$doc:meta])* $dir:ident, $weights:ident, $path:literal) => {
        $(#[$doc])*
        pub const $dir: &str = $path;
        #[doc = concat!("`", $path, "/model.safetensors`: the weights in [`", stringify!($dir), "`].")]
        pub const $weights: &str = concat!($path, "/model.safetensors");
    };
}

checkpoint_dir!(
    /// `pretrain`: the base model.
    BASE_DIR, BASE_WEIGHTS, "base"
);
checkpoint_dir!(
    /// `student`: the RL²F student.
    STUDENT_DIR, STUDENT_WEIGHTS, "student"
);
checkpoint_dir!(
    /// `baseline`: single-turn RL on the same budget.
    SINGLE_TURN_DIR, SINGLE_TURN_WEIGHTS, "baseline/single_turn_rl"
);
checkpoint_dir!(
    /// `baseline`: offline SFT on the student's successful dialogues.
    OFFLINE_DIR, OFFLINE_WEIGHTS, "baseline/offline_sft"
);
checkpoint_dir!(
    /// `critic`: the critic (and its calibrated verdict, [`VERDICT_FILE`]).
    CRITIC_DIR, CRITIC_WEIGHTS, "critic"
);
checkpoint_dir!(
    /// `sml`: the Q-primed SFT model, where SML's GRPO starts.
    QPRIMED_DIR, QPRIMED_WEIGHTS, "sml/qprimed"
);

/// `sml`: the stage's directory, where its tables and report go.
pub const SML_DIR: &str = "sml";
/// `sml`: the SML student.
pub const SML_STUDENT_DIR: &str = "sml/student";
/// Every training stage's loss and validation rows
/// (`didact_data::tables::TRAIN_LOG`).
pub const TRAIN_LOG_FILE: &str = "train_log.parquet";
/// Resumable checkpoints of unfinished training runs, one directory per
/// training run (`checkpoints/<name>`); removed when the run finishes.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// `student`: the RL²F rollouts (`didact_data::tables::ROLLOUTS`).
pub const ROLLOUTS_FILE: &str = "rollouts.parquet";
/// `critic`: the critic's critiques of held-out attempts.
pub const CRITIQUES_FILE: &str = "critiques.parquet";
/// `critic`: the critic's calibrated verdict threshold, in the critic's
/// checkpoint directory (a directory `didact_critic` loads may hold one).
pub const VERDICT_FILE: &str = "verdict.json";
/// [`VERDICT_FILE`] in [`CRITIC_DIR`], as stages list it among inputs.
pub const CRITIC_VERDICT_FILE: &str = "critic/verdict.json";
/// `eval`: one row per student turn of every evaluation dialogue.
pub const TURNS_FILE: &str = "eval/turns.parquet";
/// `transfer`: one row per student turn of the cross-domain matrix.
pub const TRANSFER_TURNS_FILE: &str = "transfer/turns.parquet";
/// `transfer`: the matrix itself, in the seed's `report/` directory.
pub const TRANSFER_MATRIX_FILE: &str = "transfer.parquet";
/// `sml`: one row per student turn of SML's evaluation dialogues.
pub const SML_TURNS_FILE: &str = "sml/turns.parquet";
/// `sml`: SML's summary table.
pub const SML_SUMMARY_FILE: &str = "sml/summary.parquet";
/// `sml`: SML's report.
pub const SML_REPORT_FILE: &str = "sml/report.md";

/// The files every saved model directory `dir` holds (config, weights,
/// tokenizer), as a stage lists them among its outputs.
pub fn checkpoint_files(dir: &str) -> Vec<String> {
    [
        didact_student::checkpoint::CONFIG_FILE,
        didact_student::checkpoint::WEIGHTS_FILE,
        TOKENIZER_FILE,
    ]
    .iter()
    .map(|f| format!("{dir}/{f}"))
    .collect()
}

/// The resumable checkpoint directory of training run `name`
/// (`checkpoints/<name>`).
pub fn resumable_dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(CHECKPOINTS_DIR).join(name)
}

/// The models of the evaluation grid: (name in the tables, checkpoint
/// directory).
pub const MODELS: [(&str, &str); 4] = [
    ("base", BASE_DIR),
    ("single_turn_rl", SINGLE_TURN_DIR),
    ("offline_sft", OFFLINE_DIR),
    ("rl2f", STUDENT_DIR),
];

// ---- the report (the `analyse` stage, in the run directory) ----

/// `analyse`: the report directory.
pub const REPORT_DIR: &str = "report";
/// In [`REPORT_DIR`]: accuracy by turn per model, condition and domain.
pub const SUMMARY_FILE: &str = "summary.parquet";
/// In [`REPORT_DIR`]: gains between turns.
pub const GAINS_FILE: &str = "gains.parquet";
/// In [`REPORT_DIR`]: paired contrasts, pooled over training seeds.
pub const CONTRASTS_FILE: &str = "contrasts.parquet";
/// In [`REPORT_DIR`]: paired contrasts per training seed.
pub const CONTRASTS_BY_SEED_FILE: &str = "contrasts_by_seed.parquet";
/// In [`REPORT_DIR`]: what the student changes between turns.
pub const REVISIONS_FILE: &str = "revisions.parquet";
/// In [`REPORT_DIR`]: the critic's messages read against the teacher's forms.
pub const CRITIC_MESSAGES_FILE: &str = "critic_messages.parquet";
/// In [`REPORT_DIR`]: the report itself.
pub const REPORT_FILE: &str = "report.md";
/// In [`REPORT_DIR`]: the plot of gains.
pub const GAINS_PLOT_FILE: &str = "gains.png";

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
    fn weights_paths_name_the_checkpoint_weights_file() {
        for (dir, weights) in [
            (BASE_DIR, BASE_WEIGHTS),
            (STUDENT_DIR, STUDENT_WEIGHTS),
            (SINGLE_TURN_DIR, SINGLE_TURN_WEIGHTS),
            (OFFLINE_DIR, OFFLINE_WEIGHTS),
            (CRITIC_DIR, CRITIC_WEIGHTS),
            (QPRIMED_DIR, QPRIMED_WEIGHTS),
        ] {
            let want = format!("{dir}/{}", didact_student::checkpoint::WEIGHTS_FILE);
            assert_eq!(weights, want);
        }
        assert_eq!(CRITIC_VERDICT_FILE, format!("{CRITIC_DIR}/{VERDICT_FILE}"));
        for file in [
            SML_TURNS_FILE,
            SML_SUMMARY_FILE,
            SML_REPORT_FILE,
            SML_STUDENT_DIR,
            QPRIMED_DIR,
        ] {
            assert!(file.starts_with(&format!("{SML_DIR}/")), "{file}");
        }
    }

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
