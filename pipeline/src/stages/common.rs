//! What every stage shares: the context a stage runs in and what it hands
//! back, and the helpers several stages use (loading the tasks, SFT under a
//! progress bar, finishing a training run, saving a checkpoint, the seeded
//! subsets, the pretraining examples). Stage modules import this module and
//! [`crate::layout`], never each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use didact_data::FeedbackLevel;
use didact_data::dialogue::EncodedDialogue;
use didact_data::domain::CORRECT_MESSAGE;
use didact_data::rng::mix_seed;
use didact_data::tables::{EvalTurnRow, read_tasks};
use didact_data::{Dialogue, Role, Split, Task, Tokenizer};
use didact_student::generate::SamplingParams;
use didact_student::rollout::{DialogueParams, DialogueRun};
use didact_student::sft::Example;
use didact_student::{Llama, checkpoint};

use crate::config::{Condition, Config, EvalConfig};
use crate::layout::{
    CARRIED_FILES, CHECKPOINTS_DIR, RunLayout, TASKS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
    TRAIN_LOG_FILE, resumable_dir,
};

/// What a stage run needs.
pub struct StageContext<'a> {
    /// The configuration; for a per-seed stage, that training seed's.
    pub config: &'a Config,
    /// Where the stage writes: the training seed's directory for a
    /// per-seed stage, the run directory for a shared one.
    pub run_dir: &'a Path,
    /// The run directory, its shared files and its training seeds.
    pub layout: &'a RunLayout,
    /// Show progress bars (off with `-q`).
    pub progress: bool,
    /// Where models train and sample.
    pub device: crate::device::DeviceSpec,
}

impl StageContext<'_> {
    /// A file every training seed shares (tasks, tokenizer).
    pub fn shared(&self, file: &str) -> PathBuf {
        self.layout.shared(file)
    }
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
    /// Runs once per training seed (in the seed's directory) rather than
    /// once per run.
    pub per_seed: bool,
    /// Files the stage reads, relative to the directory it runs in; a
    /// shared file ([`crate::layout::SHARED_FILES`]) is read from the run
    /// directory, and a shared stage reads a per-seed file from every
    /// training seed's directory.
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
    didact_data::tables::replace_train_log(&run_dir.join(TRAIN_LOG_FILE), stage, &rows)?;
    let _ = std::fs::remove_dir_all(checkpoint);
    let _ = std::fs::remove_dir(run_dir.join(CHECKPOINTS_DIR));
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
    let ckpt = resumable_dir(ctx.run_dir, name);
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

/// Up to `n` tasks of each domain (all of them for `n` = 0), drawn by the
/// run's seeded shuffle stratified by difficulty
/// ([`didact_data::subset::stratified`]): every evaluated or validation
/// subset of every stage comes from here, so that all of them cover each
/// difficulty in proportion and the same tasks are drawn for every model
/// and training seed.
pub fn subset<'a>(config: &Config, tasks: &'a [Task], n: usize) -> Vec<&'a Task> {
    didact_data::subset::stratified(
        tasks,
        n,
        didact_data::rng::mix_seed(&[config.data.seed, SUBSET_SEED_TAG]),
    )
}

/// Mixed into `data.seed` for [`subset`].
const SUBSET_SEED_TAG: u64 = 0x5AB5E7;

/// The tokenizer, the train tasks and the validation tasks.
pub fn load_tasks(ctx: &StageContext) -> Result<(Tokenizer, Vec<Task>, Vec<Task>)> {
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let rows = read_tasks(&ctx.shared(TASKS_FILE))?;
    let train = rows
        .iter()
        .filter(|r| r.split == Split::Train)
        .map(|r| r.task.clone())
        .collect();
    let val = rows
        .iter()
        .filter(|r| r.split == Split::Val)
        .map(|r| r.task.clone())
        .collect();
    Ok((tokenizer, train, val))
}

/// Single-turn examples for train tasks, plus the retry turns of the
/// synthetic dialogues; masks come from roles.
///
/// With `critique` (`critic.mode = "self"`) the teacher's turns are trained
/// too, in the same examples: the critiques of the synthetic dialogues whose
/// level is `critique`, and a "Correct." turn appended after every right
/// answer (the single-turn solution, a dialogue's last answer), so that the
/// student learns to critique and to judge attempts as the teacher does.
pub fn pretrain_examples(
    tokenizer: &Tokenizer,
    tasks: &[&Task],
    synthetic: &[didact_data::tables::SyntheticDialogue],
    critique: Option<FeedbackLevel>,
) -> Result<Vec<Example>> {
    let mut examples = Vec::with_capacity(tasks.len() + synthetic.len());
    // The teacher's turns `keep` selects, added to the student's mask.
    let with_teacher =
        |mut mask: Vec<bool>, enc: &EncodedDialogue, keep: &dyn Fn(usize) -> bool| {
            let teacher = enc.loss_mask_turns(Role::Teacher, keep);
            mask.iter_mut().zip(teacher).for_each(|(m, t)| *m |= t);
            mask
        };
    for t in tasks {
        let mut d = Dialogue::from_task(&t.prompt);
        d.push(Role::Student, &t.solution);
        if critique.is_some() {
            d.push(Role::Teacher, CORRECT_MESSAGE);
        }
        let enc = tokenizer.encode_dialogue(&d)?;
        let mut mask = enc.loss_mask(Role::Student);
        if critique.is_some() {
            mask = with_teacher(mask, &enc, &|_| true);
        }
        examples.push(Example { mask, ids: enc.ids });
    }
    let by_id: HashMap<&str, &Task> = tasks.iter().map(|t| (t.task_id.as_str(), *t)).collect();
    for s in synthetic {
        let mut d = Dialogue::parse(&s.text)
            .with_context(|| format!("synthetic dialogue {}", s.dialogue_id))?;
        let critiques = d.turns.iter().filter(|t| t.role == Role::Teacher).count();
        // "Correct." only after an answer the verifier accepts.
        let right = match (critique, by_id.get(s.task_id.as_str())) {
            (Some(_), Some(task)) => task.domain.domain().verify(task, &s.answer)?.is_correct(),
            _ => false,
        };
        if right {
            d.push(Role::Teacher, CORRECT_MESSAGE);
        }
        let enc = tokenizer.encode_dialogue(&d)?;
        let mut mask = enc.loss_mask_turns(Role::Student, |k| k >= s.wrong_attempts as usize);
        if let Some(level) = critique {
            let at_level = s.feedback_level == level.name();
            mask = with_teacher(mask, &enc, &|k| {
                (at_level && k < critiques) || k == critiques
            });
        }
        examples.push(Example { mask, ids: enc.ids });
    }
    Ok(examples)
}

/// Writes the checkpoint and a copy of the tokenizer into a temporary
/// directory and swaps it in, so `base/` is always complete. A pretrained
/// model's tokenizer files beside `tokenizer` (`tokenizer_config.json` and
/// [`CARRIED_FILES`]: chat template, special tokens, generation config) are
/// copied too, so that the checkpoint renders dialogues as the run did and
/// loads in transformers with its chat template.
pub fn save_final<B: burn::tensor::backend::Backend>(
    model: &Llama<B>,
    dir: &Path,
    tokenizer: &Path,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    checkpoint::save(model, &tmp)?;
    std::fs::copy(tokenizer, tmp.join(TOKENIZER_FILE))
        .with_context(|| format!("{}: cannot copy", tokenizer.display()))?;
    let beside = tokenizer.parent().unwrap_or(Path::new("."));
    for file in std::iter::once(TOKENIZER_CONFIG_FILE).chain(CARRIED_FILES) {
        if beside.join(file).exists() {
            std::fs::copy(beside.join(file), tmp.join(file))
                .with_context(|| format!("{}: cannot copy", beside.join(file).display()))?;
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("{}: cannot replace", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("{}: cannot write", dir.display()))?;
    Ok(())
}

/// How evaluation dialogues are decoded: `cfg`'s sampling and batch size,
/// up to `max_turns` attempts answered at `level`, the task restated after
/// each reply where `restate_task`.
pub fn dialogue_params(
    cfg: &EvalConfig,
    max_turns: usize,
    level: FeedbackLevel,
    restate_task: bool,
) -> DialogueParams {
    DialogueParams {
        max_turns,
        feedback_level: level,
        sampling: SamplingParams {
            temperature: cfg.temperature,
            top_p: 1.0,
            max_new_tokens: cfg.max_new_tokens,
        },
        batch_size: cfg.batch_size,
        restate_task,
    }
}

/// The sampling seed of evaluation seed `seed`, the same for every model
/// and condition so that their dialogues are paired.
pub fn dialogue_seed(seed: usize) -> u64 {
    mix_seed(&[seed as u64, 0xE7A1])
}

/// The rows of one evaluated dialogue.
pub fn turn_rows(
    model: &str,
    condition: Condition,
    seed: usize,
    tasks: &[&Task],
    run: &DialogueRun,
    source: &str,
) -> Vec<EvalTurnRow> {
    let task = tasks[run.task_index];
    run.turns
        .iter()
        .map(|t| EvalTurnRow {
            model: model.into(),
            condition: condition.name().into(),
            seed: seed as u64,
            task_id: task.task_id.clone(),
            domain: task.domain,
            difficulty: task.difficulty,
            turn: t.turn as u32,
            attempt: t.attempt.clone(),
            verdict: t.verdict.name().into(),
            correct: t.verdict.is_correct(),
            feedback: t.feedback.clone().unwrap_or_default(),
            feedback_source: if t.feedback.is_some() {
                source.into()
            } else {
                String::new()
            },
            judged: match t.judged_correct {
                Some(true) => "correct".into(),
                Some(false) => "wrong".into(),
                None => String::new(),
            },
            leak_blocked: t.feedback.is_some() && t.leak_blocked,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use didact_data::dataset::{DataConfig, synthetic_dialogues};
    use didact_data::{DomainKind, Split, TaskRow};

    /// In `self` mode the same examples also train the teacher's turns: the
    /// critiques at the critic's level and a "Correct." after every right
    /// answer; otherwise only the student's.
    #[test]
    fn self_critique_adds_the_teachers_turns_to_the_loss() {
        let maze = DomainKind::Maze.domain();
        let rows: Vec<TaskRow> = (0..24)
            .map(|s| TaskRow {
                task: maze.generate(s, 4),
                split: Split::Train,
            })
            .collect();
        let mut cfg = DataConfig::default();
        cfg.synthetic.feedback_levels = vec![FeedbackLevel::Explanation, FeedbackLevel::Retry];
        let (synthetic, _) = synthetic_dialogues(&cfg, &rows).unwrap();
        let corpus: Vec<&str> = synthetic.iter().map(|s| s.text.as_str()).collect();
        let tokenizer = Tokenizer::train(corpus.into_iter(), 400).unwrap();
        let tasks: Vec<&Task> = rows.iter().map(|r| &r.task).collect();
        let plain = pretrain_examples(&tokenizer, &tasks, &synthetic, None).unwrap();
        let critic = pretrain_examples(
            &tokenizer,
            &tasks,
            &synthetic,
            Some(FeedbackLevel::Explanation),
        )
        .unwrap();
        assert_eq!(plain.len(), critic.len());
        let decoded = |e: &Example| {
            let ids: Vec<u32> = e
                .ids
                .iter()
                .zip(&e.mask)
                .filter(|p| *p.1)
                .map(|p| *p.0)
                .collect();
            tokenizer.decode(&ids).unwrap()
        };
        let (mut critiques, mut retries) = (0, 0);
        for (i, (p, c)) in plain.iter().zip(&critic).enumerate() {
            let trained = decoded(c);
            // Every example now ends on the teacher's "Correct.", trained.
            assert!(trained.contains(CORRECT_MESSAGE), "{trained:?}");
            assert!(!decoded(p).contains("Correct."));
            // What the student learned before, it still learns.
            let student: Vec<bool> = c.mask[..p.mask.len()].to_vec();
            assert!(p.mask.iter().zip(&student).all(|(a, b)| !a || *b));
            if let Some(s) = i.checked_sub(tasks.len()).map(|k| &synthetic[k]) {
                if s.feedback_level == "explanation" {
                    assert!(trained.contains(&s.feedback), "{trained:?} {s:?}");
                    critiques += 1;
                } else {
                    assert!(!trained.contains("Try again."), "{trained:?}");
                    retries += 1;
                }
            }
        }
        assert!(critiques > 0 && retries > 0, "{critiques} {retries}");
    }
}
