//! SML's section of the report, from `sml/turns.parquet`: the
//! premature-answer rate, questions per dialogue and accuracy by turn of each
//! model on sharded and fully specified tasks, with bootstrap intervals. The
//! `sml` stage writes it as `sml/report.md` and `sml/summary.parquet`;
//! `analyse` puts it in the run's report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use didact_data::tables::{SmlSummaryRow as SummaryRow, SmlTurnRow, Table};
use polars::prelude::*;

use crate::analysis::bootstrap_mean_ci;
use crate::layout::SML_TURNS_FILE;

/// Bootstrap resamples of the section's intervals.
const RESAMPLES: usize = 1000;

/// Per-dialogue facts the metrics are means of.
struct DialogueFacts {
    /// The fully specified task's id, which pairs dialogues across models.
    task: String,
    /// 1-based turn of the first correct answer.
    solved: Option<u32>,
    questions: usize,
    premature: bool,
}

type Key = (String, String, String);

/// Dialogues by (model, spec, domain), with `all` pooled; models in the
/// order base, rl2f, qprimed, sml.
fn dialogues(rows: &[SmlTurnRow]) -> Vec<(Key, Vec<DialogueFacts>)> {
    let mut by_dialogue: std::collections::BTreeMap<
        (String, String, String, String),
        Vec<&SmlTurnRow>,
    > = Default::default();
    for r in rows {
        by_dialogue
            .entry((
                r.model.clone(),
                r.spec.clone(),
                r.domain.clone(),
                r.task_id.clone(),
            ))
            .or_default()
            .push(r);
    }
    let mut cells: Vec<(Key, Vec<DialogueFacts>)> = Vec::new();
    for ((model, spec, domain, task), turns) in by_dialogue {
        for d in [domain.clone(), "all".to_string()] {
            let facts = DialogueFacts {
                task: task.clone(),
                solved: turns.iter().filter(|r| r.correct).map(|r| r.turn).min(),
                questions: turns.iter().filter(|r| r.question).count(),
                premature: turns.iter().any(|r| r.premature),
            };
            let key = (model.clone(), spec.clone(), d);
            match cells.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(facts),
                None => cells.push((key, vec![facts])),
            }
        }
    }
    let rank = |m: &str| {
        ["base", "rl2f", "qprimed", "sml"]
            .iter()
            .position(|x| *x == m)
            .unwrap_or(4)
    };
    cells.sort_by(|a, b| {
        (rank(&a.0.0), &a.0.1, a.0.2 != "all", &a.0.2).cmp(&(
            rank(&b.0.0),
            &b.0.1,
            b.0.2 != "all",
            &b.0.2,
        ))
    });
    cells
}

/// Accuracy at turn `k` of `ours` minus that of `base` on the tasks both
/// were evaluated on, with a bootstrap 95% interval of the paired mean.
fn paired_difference(ours: &[DialogueFacts], base: &[DialogueFacts], k: u32) -> (f64, f64, f64) {
    let solved = |f: &DialogueFacts| f.solved.is_some_and(|s| s <= k) as u8 as f64;
    let base: HashMap<&str, f64> = base.iter().map(|f| (f.task.as_str(), solved(f))).collect();
    let diffs: Vec<f64> = ours
        .iter()
        .filter_map(|f| base.get(f.task.as_str()).map(|b| solved(f) - b))
        .collect();
    mean_ci(&diffs, 0xD1FF)
}

/// A mean with its bootstrap 95% interval.
fn mean_ci(values: &[f64], seed: u64) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let (lo, hi) = bootstrap_mean_ci(values, RESAMPLES, seed);
    (mean, lo, hi)
}

/// Whether `r` is the summary row of this cell, metric and turn.
fn is(r: &SummaryRow, model: &str, spec: &str, domain: &str, metric: &str, turn: u32) -> bool {
    r.model == model && r.spec == spec && r.domain == domain && r.metric == metric && r.turn == turn
}

/// The report section and the summary table.
pub fn report(rows: &[SmlTurnRow], k: usize) -> (String, DataFrame) {
    let cells = dialogues(rows);
    let mut table: Vec<SummaryRow> = Vec::new();
    let mut md = String::from("## Social meta-learning: sharded tasks\n\n");
    let _ = writeln!(
        md,
        "The first turn withholds an essential part of each task; the teacher reveals a part when \
         the student asks (`? name`). An answer is *premature* when an essential part was still \
         unrevealed. Greedy decoding, up to {k} student turns (questions count as turns); the same \
         test tasks sharded and fully specified; percentages with bootstrap 95% CIs over tasks.\n"
    );
    md.push_str(&format!(
        "| model | spec | tasks | premature-answer rate | questions / dialogue | acc@1 | acc@{k} |\n|---|---|---:|---|---|---|---|\n"
    ));
    for (i, ((model, spec, domain), facts)) in cells.iter().enumerate() {
        let n = facts.len() as u32;
        let seed = i as u64;
        let premature: Vec<f64> = facts.iter().map(|f| f.premature as u8 as f64).collect();
        let questions: Vec<f64> = facts.iter().map(|f| f.questions as f64).collect();
        let p = mean_ci(&premature, seed);
        let q = mean_ci(&questions, seed + 1);
        let mut push = |metric: &'static str, turn: u32, v: (f64, f64, f64)| {
            table.push(SummaryRow {
                model: model.clone(),
                spec: spec.clone(),
                domain: domain.clone(),
                metric: metric.into(),
                turn,
                value: v.0,
                ci_low: v.1,
                ci_high: v.2,
                n_dialogues: n,
            });
        };
        push("premature_rate", 0, p);
        push("questions_per_dialogue", 0, q);
        let mut acc = Vec::new();
        for t in 1..=k as u32 {
            let solved: Vec<f64> = facts
                .iter()
                .map(|f| f.solved.is_some_and(|s| s <= t) as u8 as f64)
                .collect();
            let a = mean_ci(&solved, seed + 1 + t as u64);
            push("cum_accuracy", t, a);
            acc.push(a);
        }
        if domain == "all" {
            let pct = |v: (f64, f64, f64)| {
                format!(
                    "{:.1} [{:.1}, {:.1}]",
                    100.0 * v.0,
                    100.0 * v.1,
                    100.0 * v.2
                )
            };
            let _ = writeln!(
                md,
                "| {model} | {spec} | {n} | {} | {:.2} [{:.2}, {:.2}] | {} | {} |",
                if spec == "sharded" {
                    pct(p)
                } else {
                    "—".into()
                },
                q.0,
                q.1,
                q.2,
                pct(acc[0]),
                pct(acc[k - 1])
            );
        }
    }
    delta_section(&mut md, &mut table, &cells, k);
    turn_and_domain_sections(&mut md, &table, &cells, k);
    md.push('\n');
    (md, summary_frame(&table))
}

/// The report's dialogues, by (model, spec, domain).
type Cells = Vec<(Key, Vec<DialogueFacts>)>;

/// The difference from the base model at turn `k`, paired over tasks, as
/// a report table and as `delta_vs_base` rows.
fn delta_section(md: &mut String, table: &mut Vec<SummaryRow>, cells: &Cells, k: usize) {
    let _ = write!(
        md,
        "\nDifference from the base model in accuracy at turn {k} (points, paired over tasks, \
         bootstrap 95% CI):\n\n| model | sharded | full |\n|---|---|---|\n"
    );
    for model in ["rl2f", "qprimed", "sml"] {
        let mut line = format!("| {model} |");
        for spec in ["sharded", "full"] {
            let cell = |m: &str| {
                cells
                    .iter()
                    .find(|((cm, cs, cd), _)| cm == m && cs == spec && cd == "all")
                    .map(|(_, f)| f)
            };
            let (Some(ours), Some(base)) = (cell(model), cell("base")) else {
                line.push_str(" |");
                continue;
            };
            let d = paired_difference(ours, base, k as u32);
            table.push(SummaryRow {
                model: model.into(),
                spec: spec.into(),
                domain: "all".into(),
                metric: "delta_vs_base".into(),
                turn: k as u32,
                value: d.0,
                ci_low: d.1,
                ci_high: d.2,
                n_dialogues: ours.len() as u32,
            });
            line.push_str(&format!(
                " {:+.1} [{:+.1}, {:+.1}] |",
                100.0 * d.0,
                100.0 * d.1,
                100.0 * d.2
            ));
        }
        let _ = writeln!(md, "{line}");
    }
}

/// Accuracy by turn pooled over domains, and the sharded tasks by domain.
fn turn_and_domain_sections(md: &mut String, table: &[SummaryRow], cells: &Cells, k: usize) {
    md.push_str(
        "\nAccuracy by turn (cumulative, percent), all domains pooled:\n\n| model | spec |",
    );
    for t in 1..=k {
        md.push_str(&format!(" {t} |"));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(k));
    md.push('\n');
    for ((model, spec, domain), _) in cells {
        if domain != "all" {
            continue;
        }
        md.push_str(&format!("| {model} | {spec} |"));
        for t in 1..=k as u32 {
            let v = table
                .iter()
                .find(|r| is(r, model, spec, domain, "cum_accuracy", t))
                .map_or(f64::NAN, |r| r.value);
            md.push_str(&format!(" {:.1} |", 100.0 * v));
        }
        md.push('\n');
    }
    md.push_str("\nBy domain (sharded tasks): premature-answer rate, questions per dialogue, acc@K:\n\n| model | domain | premature | questions | acc@K |\n|---|---|---:|---:|---:|\n");
    for ((model, spec, domain), _) in cells {
        if domain == "all" || spec != "sharded" {
            continue;
        }
        let get = |metric: &str, turn: u32| {
            table
                .iter()
                .find(|r| is(r, model, spec, domain, metric, turn))
                .map_or(f64::NAN, |r| r.value)
        };
        md.push_str(&format!(
            "| {model} | {domain} | {:.1} | {:.2} | {:.1} |\n",
            100.0 * get("premature_rate", 0),
            get("questions_per_dialogue", 0),
            100.0 * get("cum_accuracy", k as u32)
        ));
    }
}

/// `sml/summary.parquet`'s frame.
fn summary_frame(table: &[SummaryRow]) -> DataFrame {
    SummaryRow::frame(table).expect("columns of equal length")
}

/// One line per model on sharded tasks, for the run's summary.
pub fn headline(rows: &[SmlTurnRow], k: usize) -> Vec<String> {
    dialogues(rows)
        .into_iter()
        .filter(|((_, spec, domain), _)| spec == "sharded" && domain == "all")
        .map(|((model, _, _), facts)| {
            let n = facts.len().max(1) as f64;
            let premature = facts.iter().filter(|f| f.premature).count() as f64 / n;
            let questions = facts.iter().map(|f| f.questions).sum::<usize>() as f64 / n;
            let acc = |t: u32| facts.iter().filter(|f| f.solved.is_some_and(|s| s <= t)).count() as f64 / n;
            format!(
                "sml: {model:>5} on sharded tasks: premature answers in {:.1}% of dialogues, {questions:.2} questions per dialogue, accuracy {:.1}% → {:.1}% (turn 1 → {k})",
                100.0 * premature,
                100.0 * acc(1),
                100.0 * acc(k as u32)
            )
        })
        .collect()
}

/// The section `analyse` adds to `report.md`: the SML stage's report, or
/// how to produce it.
pub fn report_section(run_dir: &Path) -> Result<String> {
    let path = run_dir.join(SML_TURNS_FILE);
    let rows = if path.exists() {
        SmlTurnRow::read(&path)?
    } else {
        Vec::new()
    };
    if rows.is_empty() {
        return Ok("## Social meta-learning\n\nNot run: `just sml` (configs/sml.toml) or `--set sml.enabled=true` adds it.\n\n".into());
    }
    let k = rows.iter().map(|r| r.turn as usize).max().unwrap_or(1);
    Ok(report(&rows, k).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        model: &str,
        task: &str,
        turn: u32,
        question: bool,
        premature: bool,
        correct: bool,
    ) -> SmlTurnRow {
        SmlTurnRow {
            model: model.into(),
            spec: "sharded".into(),
            domain: "arith".into(),
            task_id: task.into(),
            turn,
            attempt: if question { "? x".into() } else { "7".into() },
            feedback: String::new(),
            question,
            premature,
            correct,
        }
    }

    #[test]
    fn metrics_on_a_hand_made_table() {
        let rows = vec![
            // base answers at once, wrong then right by luck.
            row("base", "a", 1, false, true, false),
            row("base", "a", 2, false, true, true),
            row("base", "b", 1, false, true, false),
            // sml asks, then answers.
            row("sml", "a", 1, true, false, false),
            row("sml", "a", 2, false, false, true),
            row("sml", "b", 1, true, false, false),
            row("sml", "b", 2, false, false, true),
        ];
        let cells = dialogues(&rows);
        let get = |m: &str| {
            &cells
                .iter()
                .find(|(k, _)| k.0 == m && k.2 == "all")
                .unwrap()
                .1
        };
        let base = get("base");
        assert_eq!(base.len(), 2);
        assert!(base.iter().all(|f| f.premature && f.questions == 0));
        assert_eq!(
            base.iter().filter_map(|f| f.solved).collect::<Vec<_>>(),
            [2]
        );
        let sml = get("sml");
        assert!(sml.iter().all(|f| !f.premature && f.questions == 1));
        let (md, df) = report(&rows, 2);
        assert!(
            md.contains("| base | sharded | 2 | 100.0 [100.0, 100.0] | 0.00"),
            "{md}"
        );
        assert!(
            md.contains("| sml | sharded | 2 | 0.0 [0.0, 0.0] | 1.00"),
            "{md}"
        );
        // acc@2: base 50%, sml 100%, paired over the same two tasks.
        assert!(md.contains("| sml | +50.0 [+0.0, +100.0] | |"), "{md}");
        let acc: Vec<f64> = df
            .column("value")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        // 2 models × (arith, all) × (premature, questions, 2 turns), and
        // sml's difference from base.
        assert_eq!(df.height(), 2 * 2 * 4 + 1);
        assert!(acc.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
