//! `didact`: turn verifiable tasks into didactic dialogues, train on them, and
//! analyse self-correction. Each subcommand runs one stage of the pipeline
//! (or all of them) in a run directory.

mod analysis;
mod config;
mod device;
mod generate;
mod import;
mod import_model;
mod layout;
mod manifest;
mod plot;
mod progress;
mod report;
mod show;
mod stages;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::layout::RunLayout;
use crate::stages::{STAGES, run_stages};

#[derive(Debug, Parser)]
#[command(
    name = "didact",
    version,
    about = "Learning from language feedback: didactic dialogues, RL²F students, critics and self-correction",
    long_about = "didact turns single-turn verifiable tasks (arith, listops, sudoku, maze) into \
multi-turn didactic dialogues in which a teacher who knows the answer critiques the student's \
attempt without revealing it. Every stage reads and writes files in one run directory \
(default runs/<config name>/), records itself in manifest.json, and is skipped when its \
outputs are up to date."
)]
struct Cli {
    /// Run configuration (TOML).
    #[arg(long, short, global = true, default_value = "configs/default.toml")]
    config: PathBuf,
    /// Run directory [default: runs/<config file stem>].
    #[arg(long, global = true)]
    run_dir: Option<PathBuf>,
    /// Override a config value, e.g. `--set data.seed=7` or
    /// `--set data.maze.difficulties=[5,6]`. Repeatable.
    #[arg(long = "set", global = true, value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Training seeds, e.g. `--seeds 0,1,2` (the same as `--set
    /// run.seeds=[0,1,2]`): the stages from pretrain to sml run once per
    /// seed into seed-<s>/ of the run directory, on shared tasks and
    /// tokenizer, and `analyse` pools them.
    #[arg(long, global = true, value_delimiter = ',', value_name = "S,S,...")]
    seeds: Option<Vec<u64>>,
    /// Rerun stages even if their outputs are up to date.
    #[arg(long, global = true)]
    force: bool,
    /// Device for training and generation: cpu (burn Flex, all cores) or
    /// cuda[:N] (needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu")]
    device: device::DeviceSpec,
    /// More log output (-v debug, -vv trace).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate tasks (train/val/test per domain), the synthetic feedback
    /// dialogues and the tokenizer: tasks.parquet,
    /// synthetic_dialogues.parquet, tokenizer.json. `didact data import`
    /// reads tasks from a question/answer dataset instead.
    Data(import::DataArgs),
    /// Train the base student from scratch on single-turn examples and the
    /// synthetic feedback dialogues: base/ (Hugging Face layout),
    /// train_log.parquet.
    Pretrain,
    /// RL²F: GRPO over whole dialogues with the teacher, from the base
    /// model: student/, rollouts.parquet, train_log.parquet.
    Student,
    /// The baselines on the same budget as `student`: single-turn RL
    /// (baseline/single_turn_rl/) and offline SFT on the base model's
    /// successful dialogues (baseline/offline_sft/).
    Baseline,
    /// Train the critic on the RL²F student's attempts and the teacher's
    /// critiques of them: critic/, critiques.parquet.
    Critic,
    /// Every model under every condition (single attempt, retry, teacher,
    /// critic, critic with oracle stop) on the test tasks:
    /// eval/turns.parquet and accuracy-by-turn tables.
    Eval,
    /// The cross-domain matrix: one RL²F student per domain in
    /// `transfer.domains` (trained on that domain alone), each evaluated
    /// with the teacher on every domain: transfer/, transfer/turns.parquet.
    /// Skipped (an empty table) while `transfer.domains` is empty.
    Transfer,
    /// Social meta-learning beside RL²F: Q-priming SFT and GRPO on
    /// underspecified (sharded) tasks, whose student may ask the teacher
    /// for what is withheld; then base, RL²F and SML students on sharded
    /// and fully specified test tasks: sml/, sml/turns.parquet,
    /// sml/report.md (premature-answer rate, questions, accuracy by turn).
    /// Skipped (an empty table) unless `sml.enabled`; `just sml` runs it
    /// with configs/sml.toml.
    Sml,
    /// Accuracy by turn with bootstrap CIs, gains, critic precision and
    /// recall, recovered fraction: report/report.md, report/*.png,
    /// report/summary.parquet, report/gains.parquet.
    Analyse,
    /// Run every stage in order, skipping those that are up to date.
    Pipeline,
    /// Print tasks or dialogues from the run's tables.
    Show(show::ShowArgs),
    /// Convert a model file from another format into a Hugging Face
    /// checkpoint directory (`didact import gguf --input F.gguf --out DIR`).
    Import(import_model::ImportArgs),
    /// Continue a prompt with a checkpoint (didact's or one written by
    /// transformers) and print the continuation.
    Generate(generate::GenerateArgs),
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DIDACT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "didact={level},didact_data={level},didact_student={level},didact_critic={level}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .compact()
        .init();
}

fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    Path::new("runs").join(stem)
}

fn run(cli: &Cli) -> Result<()> {
    let run_dir = cli
        .run_dir
        .clone()
        .unwrap_or_else(|| default_run_dir(&cli.config));
    match &cli.command {
        Command::Show(args) => return show::show(&run_dir, args),
        Command::Generate(args) => return generate::run(args, cli.device),
        Command::Import(args) => return import_model::run(args, cli.force),
        Command::Data(import::DataArgs {
            action: Some(import::DataAction::Import(args)),
        }) => return import::run(args, cli.force),
        _ => {}
    }
    let mut overrides = cli.overrides.clone();
    if let Some(seeds) = &cli.seeds {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        overrides.push(format!("run.seeds=[{}]", list.join(",")));
    }
    let config = Config::load(&cli.config, &overrides)?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("{}: cannot create run directory", run_dir.display()))?;
    didact_data::atomic::write(
        &run_dir.join(crate::layout::CONFIG_FILE),
        config.to_toml().as_bytes(),
    )?;
    let layout = RunLayout::new(&run_dir, &config.run.seeds);
    let selected: Vec<&str> = match cli.command {
        Command::Data(_) => vec!["data"],
        Command::Pretrain => vec!["pretrain"],
        Command::Student => vec!["student"],
        Command::Baseline => vec!["baseline"],
        Command::Critic => vec!["critic"],
        Command::Eval => vec!["eval"],
        Command::Transfer => vec!["transfer"],
        Command::Sml => vec!["sml"],
        Command::Analyse => vec!["analyse"],
        Command::Pipeline => STAGES.iter().map(|s| s.name).collect(),
        Command::Show(_) | Command::Generate(_) | Command::Import(_) => {
            unreachable!("handled above")
        }
    };
    tracing::info!(
        "run directory {}{}",
        run_dir.display(),
        if layout.seeds.is_empty() {
            String::new()
        } else {
            format!(", training seeds {:?}", layout.seeds)
        }
    );
    run_stages(
        &selected, &config, &layout, !cli.quiet, cli.device, cli.force,
    )?;
    Ok(())
}

fn main() -> ExitCode {
    didact_student::alloc::keep_freed_memory();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
