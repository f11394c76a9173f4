//! The `data` stage: tasks for every enabled domain in disjoint splits, the
//! synthetic feedback dialogues, and the tokenizer trained on both.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use didact_data::dataset::{self, LeakStats};
use didact_data::tables::{self, SYNTHETIC_DIALOGUES, TASKS};
use didact_data::{DomainKind, Split, TaskRow, Tokenizer};
use serde_json::json;

use super::{Stage, StageContext, StageOutput};
use crate::progress;

pub const TASKS_FILE: &str = "tasks.parquet";
pub const SYNTHETIC_FILE: &str = "synthetic_dialogues.parquet";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

pub const STAGE: Stage = Stage {
    name: "data",
    inputs: &[],
    config_section: |c| serde_json::to_value(&c.data).expect("serialisable"),
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

    let (dialogues, leaks) = dataset::synthetic_dialogues(cfg, &tasks)?;
    let tasks_path = ctx.run_dir.join(TASKS_FILE);
    tables::write_table(&tasks_path, &TASKS, &mut tables::tasks_frame(&tasks)?)?;
    let synthetic_path = ctx.run_dir.join(SYNTHETIC_FILE);
    tables::write_table(
        &synthetic_path,
        &SYNTHETIC_DIALOGUES,
        &mut tables::synthetic_frame(&dialogues)?,
    )?;

    let tokenizer = Tokenizer::train(
        dataset::tokenizer_corpus(&tasks, &dialogues),
        cfg.tokenizer.vocab_size,
    )?;
    let (texts, tokens) = check_round_trip(&tokenizer, &tasks, &dialogues)?;
    tokenizer.save(&ctx.run_dir.join(TOKENIZER_FILE))?;

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
        outputs: vec![
            TASKS_FILE.into(),
            SYNTHETIC_FILE.into(),
            TOKENIZER_FILE.into(),
        ],
        metrics,
        summary,
    })
}

/// Encodes and decodes every table text; the tokenizer must give each back
/// exactly. Returns (texts checked, tokens produced).
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
            back == text,
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
