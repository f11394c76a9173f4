//! The `data` stage: tasks for every enabled domain in disjoint splits, the
//! synthetic feedback dialogues, and the tokenizer trained on both (or,
//! for a pretrained model, the model's own tokenizer and chat template).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use didact_data::chat::SYSTEM_PROMPT_KEY;
use didact_data::dataset::{self, LeakStats};
use didact_data::tables::Table;
use didact_data::tables::{self, TASKS};
use didact_data::{DomainKind, Split, TaskRow, Tokenizer};
use serde_json::json;

use super::common::{Stage, StageContext, StageOutput};
use crate::layout::{
    CARRIED_FILES, SYNTHETIC_FILE, TASKS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};
use crate::progress;

pub const STAGE: Stage = Stage {
    name: "data",
    per_seed: false,
    inputs: &[],
    config_section: |c| match c.model.source.pretrained_dir() {
        None => serde_json::to_value(&c.data).expect("serialisable"),
        Some(_) => json!({
            "data": c.data,
            "tokenizer": c.model.source,
            "system_prompt": c.model.system_prompt,
        }),
    },
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    let cfg = &ctx.config.data;
    let domains = cfg.enabled();
    let total: usize = domains
        .iter()
        .map(|k| {
            let d = cfg.domain(*k);
            d.train + d.val + d.test
        })
        .sum();
    let bar = progress::bar(ctx.progress, total as u64, "generating tasks");
    let mut tasks: Vec<TaskRow> = Vec::with_capacity(total);
    for kind in &domains {
        bar.set_message(format!("generating {kind} tasks"));
        tasks.extend(dataset::generate_domain(cfg, *kind, &mut || bar.inc(1))?);
    }
    bar.finish_and_clear();
    if let Some(path) = &cfg.import {
        let imported = tables::read_tasks(path).with_context(|| {
            format!("data.import: cannot read imported tasks {}", path.display())
        })?;
        anyhow::ensure!(
            !imported.is_empty(),
            "data.import: {} holds no tasks",
            path.display()
        );
        tasks.extend(imported);
    }
    anyhow::ensure!(
        !tasks.is_empty(),
        "no tasks: every domain is disabled and data.import is not set"
    );

    let (dialogues, leaks) = dataset::synthetic_dialogues(cfg, &tasks)?;
    let tasks_path = ctx.run_dir.join(TASKS_FILE);
    tables::write_table(&tasks_path, &TASKS, &mut tables::tasks_frame(&tasks)?)?;
    let synthetic_path = ctx.run_dir.join(SYNTHETIC_FILE);
    tables::SyntheticDialogue::write(&synthetic_path, &dialogues)?;

    let mut outputs = vec![
        TASKS_FILE.into(),
        SYNTHETIC_FILE.into(),
        TOKENIZER_FILE.into(),
    ];
    let tokenizer = match ctx.config.model.source.pretrained_dir() {
        None => {
            let tokenizer = Tokenizer::train(
                dataset::tokenizer_corpus(&tasks, &dialogues),
                cfg.tokenizer.vocab_size,
            )?;
            tokenizer.save(&ctx.run_dir.join(TOKENIZER_FILE))?;
            tokenizer
        }
        Some(dir) => {
            outputs.push(TOKENIZER_CONFIG_FILE.into());
            let tokenizer =
                import_tokenizer(dir, ctx.config.model.system_prompt.as_deref(), ctx.run_dir)?;
            outputs.extend(
                CARRIED_FILES
                    .iter()
                    .filter(|f| ctx.run_dir.join(f).exists())
                    .map(|f| f.to_string()),
            );
            tokenizer
        }
    };
    let (texts, tokens) = check_round_trip(&tokenizer, &tasks, &dialogues)?;

    let counts = split_counts(&tasks);
    let summary = summary_lines(
        &counts,
        &leaks,
        dialogues.len(),
        tokenizer.vocab_size(),
        tokens as f64 / texts as f64,
    );
    let metrics = json!({
        "tasks": counts.iter().map(|(k, v)| (k.name(), v)).collect::<BTreeMap<_, _>>(),
        "synthetic_dialogues": dialogues.len(),
        "leaks": leaks.iter().map(|(k, s)| (k.name(), json!({"messages": s.messages, "leaks": s.leaks, "rate": s.rate()}))).collect::<BTreeMap<_, _>>(),
        "vocab_size": tokenizer.vocab_size(),
        "round_trip_texts": texts,
        "mean_tokens_per_text": tokens as f64 / texts.max(1) as f64,
    });
    Ok(StageOutput {
        outputs,
        metrics,
        summary,
    })
}

/// Copies a pretrained model's tokenizer into the run: `tokenizer.json`,
/// `tokenizer_config.json` with the configured system prompt recorded under
/// [`SYSTEM_PROMPT_KEY`], and each of [`CARRIED_FILES`] the model has. Checks first that the chat template renders didact's dialogues.
fn import_tokenizer(dir: &Path, system: Option<&str>, run_dir: &Path) -> Result<Tokenizer> {
    anyhow::ensure!(
        dir.is_dir(),
        "model.source: pretrained model directory {} does not exist",
        dir.display()
    );
    for file in [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE] {
        anyhow::ensure!(
            dir.join(file).exists(),
            "model.source: {} has no {file} (a pretrained model needs its tokenizer and \
             chat template)",
            dir.display()
        );
    }
    Tokenizer::load_chat(dir, system)
        .with_context(|| format!("model.source: the tokenizer of {}", dir.display()))?;
    let copy = |file: &str| -> Result<()> {
        let bytes = std::fs::read(dir.join(file))
            .with_context(|| format!("{}: cannot read", dir.join(file).display()))?;
        Ok(didact_data::atomic::write(&run_dir.join(file), &bytes)?)
    };
    copy(TOKENIZER_FILE)?;
    let config_path = dir.join(TOKENIZER_CONFIG_FILE);
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let object = config
        .as_object_mut()
        .with_context(|| format!("{}: not a JSON object", config_path.display()))?;
    match system {
        Some(s) => object.insert(SYSTEM_PROMPT_KEY.into(), s.into()),
        None => object.remove(SYSTEM_PROMPT_KEY),
    };
    didact_data::atomic::write(
        &run_dir.join(TOKENIZER_CONFIG_FILE),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    for file in CARRIED_FILES {
        if dir.join(file).exists() {
            copy(file)?;
        } else {
            let _ = std::fs::remove_file(run_dir.join(file));
        }
    }
    Ok(Tokenizer::load(&run_dir.join(TOKENIZER_FILE))?)
}

/// Encodes and decodes every table text; the tokenizer must give each back
/// (exactly for didact's own; up to surrounding whitespace for a pretrained
/// one, whose normaliser may add a leading space). Returns (texts checked,
/// tokens produced).
fn check_round_trip(
    tokenizer: &Tokenizer,
    tasks: &[TaskRow],
    dialogues: &[tables::SyntheticDialogue],
) -> Result<(usize, usize)> {
    let mut texts = 0;
    let mut tokens = 0;
    let mut check = |text: &str| -> Result<()> {
        let ids = tokenizer.encode(text)?;
        let back = tokenizer.decode(&ids)?;
        anyhow::ensure!(
            back == text || (tokenizer.is_chat() && back.trim() == text.trim()),
            "tokenizer does not round-trip {text:?} (got {back:?})"
        );
        texts += 1;
        tokens += ids.len();
        Ok(())
    };
    for r in tasks {
        check(&r.task.prompt)?;
        check(&r.task.solution)?;
    }
    for d in dialogues {
        check(&d.attempt).with_context(|| format!("dialogue {}", d.dialogue_id))?;
        check(&d.feedback).with_context(|| format!("dialogue {}", d.dialogue_id))?;
    }
    Ok((texts, tokens))
}

fn split_counts(tasks: &[TaskRow]) -> BTreeMap<DomainKind, BTreeMap<&'static str, usize>> {
    let mut counts: BTreeMap<DomainKind, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for r in tasks {
        let per = counts.entry(r.task.domain).or_default();
        for s in Split::ALL {
            per.entry(s.name()).or_default();
        }
        *per.entry(r.split.name()).or_default() += 1;
    }
    counts
}

fn summary_lines(
    counts: &BTreeMap<DomainKind, BTreeMap<&'static str, usize>>,
    leaks: &BTreeMap<DomainKind, LeakStats>,
    dialogues: usize,
    vocab: usize,
    tokens_per_text: f64,
) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<8} {:>7} {:>6} {:>6} {:>22}",
        "domain", "train", "val", "test", "teacher leaks"
    )];
    for (kind, per) in counts {
        let l = leaks.get(kind).copied().unwrap_or_default();
        lines.push(format!(
            "{:<8} {:>7} {:>6} {:>6} {:>22}",
            kind.name(),
            per["train"],
            per["val"],
            per["test"],
            format!("{}/{} ({:.2}%)", l.leaks, l.messages, 100.0 * l.rate())
        ));
    }
    lines.push(format!(
        "{dialogues} synthetic dialogues; tokenizer: {vocab} tokens, {tokens_per_text:.1} tokens per text on average"
    ));
    lines
}
