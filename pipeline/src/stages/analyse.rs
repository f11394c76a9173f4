//! The `analyse` stage: from `eval/turns.parquet`, accuracy by turn with
//! bootstrap 95% intervals, the SCoRe gains, revision statistics, the
//! critic's verdicts against the verifier and its critiques against the
//! teacher's, the teacher's leak rate, and the recovered fraction; written
//! as `report/summary.parquet`, `report/gains.parquet`, PNG plots and
//! `report/report.md`, with the headline table printed at the end.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use didact_critic::respond::says_correct;
use didact_data::dataset::teacher_message;
use didact_data::leak::normalise;
use didact_data::tables::{self, EvalTurnRow, read_eval_turns, read_tasks};
use didact_data::{FeedbackLevel, Task};
use polars::prelude::*;
use serde_json::json;

use super::data::TASKS_FILE;
use super::eval::{MODELS, TURNS_FILE};
use super::sml::SML_TURNS_FILE;
use super::transfer::TRANSFER_TURNS_FILE;
use super::{Stage, StageContext, StageOutput};
use crate::analysis::{
    Trajectory, accuracy_by_turn, bootstrap_ci, gains, recovered_fraction, revision_stats,
    verdict_precision_recall,
};
use crate::config::Condition;
use crate::plot;

pub const REPORT_DIR: &str = "report";
const RESAMPLES: usize = 1000;

pub const STAGE: Stage = Stage {
    name: "analyse",
    inputs: &[TASKS_FILE, TURNS_FILE, TRANSFER_TURNS_FILE, SML_TURNS_FILE],
    config_section: |_| json!({}),
    run,
};

/// `report/summary.parquet`: accuracy by turn per model, condition and
/// domain (`all` pooled), with a bootstrap 95% interval.
pub const SUMMARY: tables::TableSchema = tables::TableSchema {
    name: "summary",
    columns: &[
        ("model", tables::ColumnType::Str),
        ("condition", tables::ColumnType::Str),
        ("domain", tables::ColumnType::Str),
        ("turn", tables::ColumnType::U32),
        ("cum_accuracy", tables::ColumnType::F64),
        ("ci_low", tables::ColumnType::F64),
        ("ci_high", tables::ColumnType::F64),
        ("n_tasks", tables::ColumnType::U32),
    ],
};

/// `report/gains.parquet`: Δ = acc@K − acc@1 with its interval, Δi→c,
/// Δc→i, and on critic rows the recovered fraction of the teacher's gain.
pub const GAINS: tables::TableSchema = tables::TableSchema {
    name: "gains",
    columns: &[
        ("model", tables::ColumnType::Str),
        ("condition", tables::ColumnType::Str),
        ("domain", tables::ColumnType::Str),
        ("delta", tables::ColumnType::F64),
        ("delta_ci_low", tables::ColumnType::F64),
        ("delta_ci_high", tables::ColumnType::F64),
        ("delta_i_to_c", tables::ColumnType::F64),
        ("delta_c_to_i", tables::ColumnType::F64),
        ("recovered_fraction", tables::ColumnType::F64),
    ],
};

/// (model, condition, domain, turn, accuracy, ci_low, ci_high, n_tasks).
type SummaryRow = (String, String, String, u32, f64, f64, f64, u32);

/// Trajectories keyed by (model, condition, domain), with `all` pooled.
type Cells = BTreeMap<(String, String, String), Vec<Trajectory>>;

fn trajectories(rows: &[EvalTurnRow]) -> Cells {
    let mut by_dialogue: BTreeMap<(String, String, u64, String), Vec<&EvalTurnRow>> =
        BTreeMap::new();
    for r in rows {
        by_dialogue
            .entry((
                r.model.clone(),
                r.condition.clone(),
                r.seed,
                r.task_id.clone(),
            ))
            .or_default()
            .push(r);
    }
    let mut task_index: HashMap<&str, usize> = HashMap::new();
    let mut cells = Cells::new();
    for ((model, condition, _, task_id), mut turns) in by_dialogue {
        turns.sort_by_key(|r| r.turn);
        let next = task_index.len();
        let task = *task_index.entry(&turns[0].task_id).or_insert(next);
        let _ = task_id;
        let x = Trajectory {
            task,
            attempts: turns.iter().map(|r| r.attempt.clone()).collect(),
            correct: turns.iter().map(|r| r.correct).collect(),
            judged: turns
                .iter()
                .map(|r| match r.judged.as_str() {
                    "correct" => Some(true),
                    "wrong" => Some(false),
                    _ => None,
                })
                .collect(),
        };
        let domain = turns[0].domain.name().to_string();
        for d in [domain, "all".to_string()] {
            cells
                .entry((model.clone(), condition.clone(), d))
                .or_default()
                .push(x.clone());
        }
    }
    cells
}

fn run(ctx: &StageContext) -> Result<StageOutput> {
    let cfg = &ctx.config.eval;
    let k = cfg.max_turns;
    let rows = read_eval_turns(&ctx.run_dir.join(TURNS_FILE))?;
    anyhow::ensure!(!rows.is_empty(), "analyse: {TURNS_FILE} has no rows");
    let tasks: HashMap<String, Task> = read_tasks(&ctx.run_dir.join(TASKS_FILE))?
        .into_iter()
        .map(|r| (r.task.task_id.clone(), r.task))
        .collect();
    let cells = trajectories(&rows);
    let out = ctx.run_dir.join(REPORT_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;

    // Accuracy by turn with intervals.
    let mut summary: Vec<SummaryRow> = Vec::new();
    let mut acc: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for ((model, condition, domain), xs) in &cells {
        let refs: Vec<&Trajectory> = xs.iter().collect();
        let turns = xs.iter().map(|x| x.correct.len()).max().unwrap_or(1).max(
            if condition == Condition::Single.name() {
                1
            } else {
                k
            },
        );
        let a = accuracy_by_turn(&refs, turns);
        let n_tasks = {
            let mut t: Vec<usize> = xs.iter().map(|x| x.task).collect();
            t.sort_unstable();
            t.dedup();
            t.len() as u32
        };
        for (t, value) in a.iter().enumerate() {
            let (lo, hi) = bootstrap_ci(&refs, RESAMPLES, t as u64, &|s| {
                accuracy_by_turn(s, t + 1)[t]
            });
            summary.push((
                model.clone(),
                condition.clone(),
                domain.clone(),
                t as u32 + 1,
                *value,
                lo,
                hi,
                n_tasks,
            ));
        }
        acc.insert((model.clone(), condition.clone(), domain.clone()), a);
    }
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "model".into(),
            summary.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "condition".into(),
            summary.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "domain".into(),
            summary.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "turn".into(),
            summary.iter().map(|r| r.3).collect::<Vec<u32>>(),
        ),
        Column::new(
            "cum_accuracy".into(),
            summary.iter().map(|r| r.4).collect::<Vec<f64>>(),
        ),
        Column::new(
            "ci_low".into(),
            summary.iter().map(|r| r.5).collect::<Vec<f64>>(),
        ),
        Column::new(
            "ci_high".into(),
            summary.iter().map(|r| r.6).collect::<Vec<f64>>(),
        ),
        Column::new(
            "n_tasks".into(),
            summary.iter().map(|r| r.7).collect::<Vec<u32>>(),
        ),
    ])?;
    tables::write_table(&out.join("summary.parquet"), &SUMMARY, &mut df)?;

    // Gains between turn 1 and K.
    struct GainRow {
        model: String,
        condition: String,
        domain: String,
        delta: f64,
        lo: f64,
        hi: f64,
        i_to_c: f64,
        c_to_i: f64,
        recovered: Option<f64>,
    }
    let mut gain_rows = Vec::new();
    for ((model, condition, domain), xs) in &cells {
        if condition == Condition::Single.name() {
            continue;
        }
        let refs: Vec<&Trajectory> = xs.iter().collect();
        let g = gains(&refs, k);
        let (lo, hi) = bootstrap_ci(&refs, RESAMPLES, 7, &|s| gains(s, k).delta);
        let recovered = (condition == Condition::Critic.name()).then(|| {
            let teacher = acc.get(&(
                model.clone(),
                Condition::Teacher.name().to_string(),
                domain.clone(),
            ))?;
            let critic = &acc[&(model.clone(), condition.clone(), domain.clone())];
            recovered_fraction(critic[0], critic[k.min(critic.len()) - 1], *teacher.last()?)
        });
        gain_rows.push(GainRow {
            model: model.clone(),
            condition: condition.clone(),
            domain: domain.clone(),
            delta: g.delta,
            lo,
            hi,
            i_to_c: g.i_to_c,
            c_to_i: g.c_to_i,
            recovered: recovered.flatten(),
        });
    }
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "model".into(),
            gain_rows
                .iter()
                .map(|r| r.model.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "condition".into(),
            gain_rows
                .iter()
                .map(|r| r.condition.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "domain".into(),
            gain_rows
                .iter()
                .map(|r| r.domain.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "delta".into(),
            gain_rows.iter().map(|r| r.delta).collect::<Vec<_>>(),
        ),
        Column::new(
            "delta_ci_low".into(),
            gain_rows.iter().map(|r| r.lo).collect::<Vec<_>>(),
        ),
        Column::new(
            "delta_ci_high".into(),
            gain_rows.iter().map(|r| r.hi).collect::<Vec<_>>(),
        ),
        Column::new(
            "delta_i_to_c".into(),
            gain_rows.iter().map(|r| r.i_to_c).collect::<Vec<_>>(),
        ),
        Column::new(
            "delta_c_to_i".into(),
            gain_rows.iter().map(|r| r.c_to_i).collect::<Vec<_>>(),
        ),
        Column::new(
            "recovered_fraction".into(),
            gain_rows
                .iter()
                .map(|r| r.recovered.unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        ),
    ])?;
    tables::write_table(&out.join("gains.parquet"), &GAINS, &mut df)?;

    // The critic against the verifier and against the teacher; the
    // teacher's leak rate.
    let mut critic_lines = Vec::new();
    for (model, _) in MODELS {
        let key = (
            model.to_string(),
            Condition::Critic.name().to_string(),
            "all".to_string(),
        );
        if let Some(xs) = cells.get(&key) {
            let refs: Vec<&Trajectory> = xs.iter().collect();
            let (p, r) = verdict_precision_recall(&refs);
            critic_lines.push((model, p, r));
        }
    }
    let (mut compared, mut same_text, mut same_verdict) = (0usize, 0usize, 0usize);
    let (mut teacher_messages, mut leaks) = (0usize, 0usize);
    for r in &rows {
        let Some(task) = tasks.get(&r.task_id) else {
            continue;
        };
        if r.condition == Condition::Critic.name() && r.feedback_source == "critic" {
            let (teacher, _) = teacher_message(task, &r.attempt, cfg.feedback_level)?;
            compared += 1;
            same_text += (normalise(&teacher) == normalise(&r.feedback)) as usize;
            same_verdict += (says_correct(&teacher) == says_correct(&r.feedback)) as usize;
        }
        if r.condition == Condition::Teacher.name() && r.feedback_source == "teacher" {
            let (_, leaked) = teacher_message(task, &r.attempt, cfg.feedback_level)?;
            teacher_messages += 1;
            leaks += leaked as usize;
        }
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };

    // Plots.
    let mut plots = Vec::new();
    let domains: Vec<String> = {
        let mut d: Vec<String> = cells.keys().map(|c| c.2.clone()).collect();
        d.sort();
        d.dedup();
        d.retain(|x| x != "all");
        d.insert(0, "all".into());
        d
    };
    for model in ["rl2f", "base"] {
        for domain in &domains {
            let series: Vec<plot::Series> = cfg
                .conditions
                .iter()
                .filter_map(|c| {
                    let key = (model.to_string(), c.name().to_string(), domain.clone());
                    let a = acc.get(&key)?;
                    let band: Vec<(f64, f64)> = summary
                        .iter()
                        .filter(|r| r.0 == key.0 && r.1 == key.1 && r.2 == key.2)
                        .map(|r| (r.5, r.6))
                        .collect();
                    Some(plot::Series {
                        name: c.name().to_string(),
                        values: a.clone(),
                        band,
                    })
                })
                .collect();
            let file = format!("accuracy_{model}_{domain}.png");
            plot::accuracy_by_turn(
                &out.join(&file),
                &format!("{model} · {domain}: accuracy by turn"),
                &series,
                k,
            )?;
            plots.push(file);
        }
    }
    let bars: Vec<plot::Bar> = gain_rows
        .iter()
        .filter(|r| r.domain == "all")
        .map(|r| plot::Bar {
            label: format!("{} {}", r.model, short(&r.condition)),
            value: r.delta,
            low: r.lo,
            high: r.hi,
        })
        .collect();
    plot::gain_bars(
        &out.join("gains.png"),
        &format!("Δ accuracy, turn {k} − turn 1 (95% bootstrap CI)"),
        &bars,
    )?;
    plots.push("gains.png".into());

    // The report.
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{:.1}", 100.0 * x)
        } else {
            "–".into()
        }
    };
    let gain_of = |m: &str, c: &str, d: &str| {
        gain_rows
            .iter()
            .find(|r| r.model == m && r.condition == c && r.domain == d)
    };
    let mut headline = String::new();
    writeln!(
        headline,
        "| model | condition | acc@1 | acc@{k} | Δ [95% CI] | Δi→c | Δc→i | recovered |"
    )?;
    writeln!(headline, "|---|---|---:|---:|---|---:|---:|---:|")?;
    for (model, _) in MODELS {
        for c in &cfg.conditions {
            let Some(a) = acc.get(&(model.to_string(), c.name().to_string(), "all".into())) else {
                continue;
            };
            let last = *a.last().unwrap_or(&f64::NAN);
            let (delta, ic, ci, rec) = match gain_of(model, c.name(), "all") {
                Some(g) => (
                    format!(
                        "{:+.1} [{:+.1}, {:+.1}]",
                        100.0 * g.delta,
                        100.0 * g.lo,
                        100.0 * g.hi
                    ),
                    pct(g.i_to_c),
                    pct(g.c_to_i),
                    g.recovered.map_or("".into(), |r| format!("{r:.2}")),
                ),
                None => ("".into(), "".into(), "".into(), "".into()),
            };
            writeln!(
                headline,
                "| {model} | {} | {} | {} | {delta} | {ic} | {ci} | {rec} |",
                c.name(),
                pct(a[0]),
                pct(last)
            )?;
        }
    }
    let mut md = String::new();
    writeln!(md, "# didact report\n")?;
    writeln!(
        md,
        "Run `{}`: {} models × {} conditions on the held-out test tasks, up to K = {k} attempts, \
         {} seed(s), decoding temperature {}. Accuracy at turn t is the correctness of the answer \
         standing at t (the last attempt made by then): with an oracle stop (teacher, retry, \
         critic_oracle_stop) that is \"solved at or before t\"; in the `critic` condition nothing \
         but the critic decides when to stop. Percentages; intervals are percentile bootstrap 95% \
         over tasks ({RESAMPLES} resamples).\n",
        ctx.run_dir.display(),
        MODELS.len(),
        cfg.conditions.len(),
        cfg.seeds,
        cfg.temperature
    )?;
    writeln!(md, "## Headline (all domains pooled)\n\n{headline}")?;
    writeln!(
        md,
        "`recovered` = (acc_critic@K − acc@1) / (acc_teacher@K − acc@1): the share of the \
         teacher's gain the critic recovers without any oracle.\n"
    )?;
    writeln!(md, "## By domain\n")?;
    writeln!(
        md,
        "Checking an answer is as hard as producing it in `arith` (a critic of the student's size \
         is not expected to help there); it is local in `maze` and `sudoku`, where a critic \
         should pay.\n"
    )?;
    for domain in domains.iter().filter(|d| *d != "all") {
        writeln!(md, "### {domain}\n")?;
        writeln!(
            md,
            "| model | condition | acc@1 | acc@{k} | Δ [95% CI] | Δi→c | Δc→i | recovered |"
        )?;
        writeln!(md, "|---|---|---:|---:|---|---:|---:|---:|")?;
        for (model, _) in MODELS {
            for c in &cfg.conditions {
                let Some(a) = acc.get(&(model.to_string(), c.name().to_string(), domain.clone()))
                else {
                    continue;
                };
                let g = gain_of(model, c.name(), domain);
                writeln!(
                    md,
                    "| {model} | {} | {} | {} | {} | {} | {} | {} |",
                    c.name(),
                    pct(a[0]),
                    pct(*a.last().unwrap_or(&f64::NAN)),
                    g.map_or("".into(), |g| format!(
                        "{:+.1} [{:+.1}, {:+.1}]",
                        100.0 * g.delta,
                        100.0 * g.lo,
                        100.0 * g.hi
                    )),
                    g.map_or("".into(), |g| pct(g.i_to_c)),
                    g.map_or("".into(), |g| pct(g.c_to_i)),
                    g.and_then(|g| g.recovered)
                        .map_or("".into(), |r| format!("{r:.2}")),
                )?;
            }
        }
        writeln!(md)?;
    }
    writeln!(md, "## Does the student change its answer?\n")?;
    writeln!(
        md,
        "Mean normalised edit distance between consecutive attempts (0 = the same answer again) \
         and the rate of repeating the previous answer exactly.\n"
    )?;
    writeln!(
        md,
        "| model | condition | edit-distance ratio | repeat rate |"
    )?;
    writeln!(md, "|---|---|---:|---:|")?;
    for (model, _) in MODELS {
        for c in &cfg.conditions {
            if let Some(xs) = cells.get(&(model.to_string(), c.name().to_string(), "all".into()))
                && let Some((ratio, repeat)) = revision_stats(&xs.iter().collect::<Vec<_>>())
            {
                writeln!(
                    md,
                    "| {model} | {} | {ratio:.3} | {} |",
                    c.name(),
                    pct(repeat)
                )?;
            }
        }
    }
    writeln!(md, "\n## The critic\n")?;
    let verdict_dir = ctx.run_dir.join(super::critic::CRITIC_DIR);
    if verdict_dir.join(super::critic::VERDICT_FILE).exists() {
        let v = super::critic::read_verdict(&verdict_dir)?;
        let per_domain = |m: &BTreeMap<String, f64>, f: &dyn Fn(f64) -> String| {
            m.iter()
                .map(|(d, x)| format!("{d} {}", f(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            md,
            "Verdict: P(\"Correct.\") against a per-domain threshold ({} rule; {}). After the \
             teacher's feedback the student fixed a wrong attempt at its next attempt at these \
             rates in the critic's training dialogues: {}. On held-out attempts the critic called \
             {}% of the correct ones correct and {}% of the wrong ones wrong.\n",
            match v.rule {
                didact_critic::config::VerdictRule::Utility => "`utility`",
                didact_critic::config::VerdictRule::Recall => "`recall`",
            },
            per_domain(&v.thresholds, &|t| {
                if t <= 0.0 {
                    "0 (calls nothing wrong)".into()
                } else if t > 1.0 {
                    "above 1 (calls everything wrong)".into()
                } else {
                    format!("{t:.2e}")
                }
            }),
            per_domain(&v.fix_rates, &|f| format!("{:.1}%", 100.0 * f)),
            pct(v.recall),
            pct(v.specificity)
        )?;
    }
    writeln!(
        md,
        "Its verdicts against the verifier in the `critic` condition (precision = P(correct | \
         judged correct), recall = P(judged correct | correct)):\n"
    )?;
    writeln!(md, "| student | precision | recall |")?;
    writeln!(md, "|---|---:|---:|")?;
    for (model, p, r) in &critic_lines {
        writeln!(
            md,
            "| {model} | {} | {} |",
            p.map_or("–".into(), pct),
            r.map_or("–".into(), pct)
        )?;
    }
    writeln!(
        md,
        "\nOn the {compared} attempts the critic answered, its critique equals the teacher's \
         (normalised text) {}% of the time and agrees with the teacher's verdict {}% of the time.\n",
        pct(ratio(same_text, compared)),
        pct(ratio(same_verdict, compared))
    )?;
    writeln!(
        md,
        "Teacher leak rate in the `teacher` condition: {leaks} of {teacher_messages} messages \
         ({}%) failed the leak check and were replaced by the verdict.\n",
        pct(ratio(leaks, teacher_messages))
    )?;
    writeln!(md, "## Plots\n")?;
    for p in &plots {
        writeln!(md, "![{p}]({p})\n")?;
    }
    md.push_str(&super::transfer::report_section(ctx.run_dir, &out, k)?);
    md.push_str(&super::sml::report_section(ctx.run_dir)?);
    if cfg.feedback_level != FeedbackLevel::Explanation {
        writeln!(
            md,
            "Teacher feedback level: {}.\n",
            cfg.feedback_level.name()
        )?;
    }
    didact_data::atomic::write(&out.join("report.md"), md.as_bytes())?;

    let mut lines = vec![format!("analyse · headline (all domains pooled, K = {k})")];
    lines.extend(headline.lines().map(str::to_string));
    lines.push(format!("report: {}", out.join("report.md").display()));
    let mut outputs = vec![
        format!("{REPORT_DIR}/report.md"),
        format!("{REPORT_DIR}/summary.parquet"),
        format!("{REPORT_DIR}/gains.parquet"),
    ];
    outputs.extend(plots.iter().map(|p| format!("{REPORT_DIR}/{p}")));
    if out.join("transfer.parquet").exists() {
        outputs.push(format!("{REPORT_DIR}/transfer.parquet"));
    }
    let rec: BTreeMap<String, Option<f64>> = gain_rows
        .iter()
        .filter(|r| r.domain == "all" && r.condition == Condition::Critic.name())
        .map(|r| (r.model.clone(), r.recovered))
        .collect();
    Ok(StageOutput {
        outputs,
        metrics: json!({
            "recovered_fraction": rec,
            "teacher_leak_rate": ratio(leaks, teacher_messages),
            "critic_teacher_agreement": ratio(same_text, compared),
        }),
        summary: lines,
    })
}

fn short(condition: &str) -> &str {
    match condition {
        "critic_oracle_stop" => "critic+stop",
        c => c,
    }
}
