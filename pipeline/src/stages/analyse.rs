//! The `analyse` stage: from every training seed's `eval/turns.parquet`,
//! accuracy by turn, the SCoRe gains, paired contrasts against the controls
//! (retry, verdict, shuffled feedback) and between models, fix rates and
//! revision behaviour, the critic's verdicts and critiques, and the
//! teacher's leak rate. Every interval is a two-level bootstrap over
//! training seeds and tasks ([`crate::analysis::two_level_ci`]). Writes
//! `report/summary.parquet`, `gains.parquet`, `contrasts.parquet`,
//! `contrasts_by_seed.parquet`, `revisions.parquet`, PNG plots and
//! `report/report.md`, whose first section says which contrasts exclude
//! zero.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use didact_critic::respond::says_correct;
use didact_data::leak::normalise;
use didact_data::leak::teacher_message;
use didact_data::tables::{
    ContrastBySeedRecord, ContrastRecord, CriticMessageRecord, EvalTurnRow, GainRecord,
    RevisionRecord, SummaryRecord, Table, read_tasks,
};
use didact_data::{FeedbackLevel, Task};
use serde_json::json;

use super::common::{Stage, StageContext, StageOutput};
use super::verdict::read_verdict;
use crate::analysis::{
    SeedTaskValues, Trajectory, counts, excludes_zero, gains, mean_of, paired, revision_stats,
    seed_task_values, two_level_ci, two_level_ratio_ci, verdict_precision_recall,
};
use crate::config::Condition;
use crate::layout::{
    CONTRASTS_BY_SEED_FILE, CONTRASTS_FILE, CRITIC_DIR, CRITIC_MESSAGES_FILE, GAINS_FILE,
    GAINS_PLOT_FILE, MODELS, REPORT_DIR, REPORT_FILE, REVISIONS_FILE, SML_TURNS_FILE, SUMMARY_FILE,
    TASKS_FILE, TRANSFER_MATRIX_FILE, TRANSFER_TURNS_FILE, TURNS_FILE, VERDICT_FILE,
};
use crate::plot;
use crate::report;

const RESAMPLES: usize = 1000;

pub const STAGE: Stage = Stage {
    name: "analyse",
    per_seed: false,
    inputs: &[TASKS_FILE, TURNS_FILE, TRANSFER_TURNS_FILE, SML_TURNS_FILE],
    // The training seeds decide which tables are pooled.
    config_section: |c| json!({"seeds": c.run.seeds}),
    run,
};

/// The pairs of conditions compared within each model, `(a, b)` for
/// `a − b`: does feedback content help beyond resampling (retry), the
/// verdict, and the form of a critique (shuffled)?
pub const CONDITION_CONTRASTS: [(Condition, Condition); 8] = [
    (Condition::Teacher, Condition::Retry),
    (Condition::Teacher, Condition::Shuffled),
    (Condition::Teacher, Condition::Verdict),
    (Condition::Verdict, Condition::Retry),
    (Condition::Shuffled, Condition::Retry),
    (Condition::CriticOracleStop, Condition::Retry),
    (Condition::Critic, Condition::Single),
    (Condition::Retry, Condition::Single),
];

/// Models compared under one condition: RL²F against its starting point
/// and the baselines.
pub const MODEL_CONTRASTS: [(&str, &str); 3] = [
    ("rl2f", "base"),
    ("rl2f", "single_turn_rl"),
    ("rl2f", "offline_sft"),
];

/// Conditions under which the models of [`MODEL_CONTRASTS`] are compared.
const MODEL_CONTRAST_CONDITIONS: [Condition; 3] =
    [Condition::Teacher, Condition::Retry, Condition::Shuffled];

/// Conditions whose gain Δ(1, t) is compared between RL²F and the base
/// model (difference in differences).
const GAIN_CONTRAST_CONDITIONS: [Condition; 3] =
    [Condition::Teacher, Condition::Retry, Condition::Shuffled];

/// The contrasts the report's first section reads out, at turn K pooled
/// over domains: `{model}` stands for every model.
const HEADLINE_CONTRASTS: [&str; 11] = [
    "{model}:teacher-retry",
    "{model}:teacher-shuffled",
    "{model}:teacher-verdict",
    "{model}:verdict-retry",
    "{model}:critic_oracle_stop-retry",
    "{model}:critic-single",
    "rl2f-base:teacher",
    "rl2f-single_turn_rl:teacher",
    "rl2f-offline_sft:teacher",
    "rl2f-base:teacher:gain",
    "rl2f-base:retry:gain",
];

/// Every evaluated dialogue, by (model, condition, domain) with `all`
/// pooled, over every training seed.
struct Grid {
    cells: BTreeMap<(String, String, String), Vec<Trajectory>>,
    /// Task ids by the index trajectories carry.
    task_ids: Vec<String>,
    /// Domains in report order: `all` first.
    domains: Vec<String>,
    n_seeds: usize,
}

impl Grid {
    fn new(by_seed: &[(u64, Vec<EvalTurnRow>)]) -> Self {
        type Key = (u64, String, String, u64, String);
        let mut by_dialogue: BTreeMap<Key, Vec<&EvalTurnRow>> = BTreeMap::new();
        for (training_seed, rows) in by_seed {
            for r in rows {
                by_dialogue
                    .entry((
                        *training_seed,
                        r.model.clone(),
                        r.condition.clone(),
                        r.seed,
                        r.task_id.clone(),
                    ))
                    .or_default()
                    .push(r);
            }
        }
        let mut task_index: HashMap<String, usize> = HashMap::new();
        let mut task_ids = Vec::new();
        let mut cells: BTreeMap<(String, String, String), Vec<Trajectory>> = BTreeMap::new();
        for ((training_seed, model, condition, _, task_id), mut turns) in by_dialogue {
            turns.sort_by_key(|r| r.turn);
            let task = *task_index.entry(task_id.clone()).or_insert_with(|| {
                task_ids.push(task_id.clone());
                task_ids.len() - 1
            });
            let x = Trajectory {
                training_seed,
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
        let mut domains: Vec<String> = cells.keys().map(|c| c.2.clone()).collect();
        domains.sort();
        domains.dedup();
        domains.retain(|x| x != "all");
        domains.insert(0, "all".into());
        Self {
            cells,
            task_ids,
            domains,
            n_seeds: by_seed.len(),
        }
    }

    fn cell(&self, model: &str, condition: &str, domain: &str) -> Option<Vec<&Trajectory>> {
        self.cells
            .get(&(model.to_string(), condition.to_string(), domain.to_string()))
            .map(|xs| xs.iter().collect())
    }

    /// Correct at turn `t`, per (training seed, task).
    fn correct_at(
        &self,
        model: &str,
        condition: &str,
        domain: &str,
        t: usize,
    ) -> Option<SeedTaskValues> {
        let xs = self.cell(model, condition, domain)?;
        Some(seed_task_values(&xs, &|x| x.correct_at(t) as u8 as f64))
    }

    /// Δ(1, t) per (training seed, task).
    fn gain_at(
        &self,
        model: &str,
        condition: &str,
        domain: &str,
        t: usize,
    ) -> Option<SeedTaskValues> {
        let xs = self.cell(model, condition, domain)?;
        Some(seed_task_values(&xs, &|x| {
            x.correct_at(t) as u8 as f64 - x.correct_at(1) as u8 as f64
        }))
    }
}

/// An estimate with its interval and what it rests on.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    value: f64,
    lo: f64,
    hi: f64,
    n_tasks: usize,
    n_seeds: usize,
}

fn estimate(values: &SeedTaskValues, seed: u64) -> Estimate {
    let (lo, hi) = two_level_ci(values, RESAMPLES, seed);
    let (n_tasks, n_seeds) = counts(values);
    Estimate {
        value: mean_of(values),
        lo,
        hi,
        n_tasks,
        n_seeds,
    }
}

/// A bootstrap seed for a named statistic, so that every interval is
/// reproducible and none shares its resamples with another by accident.
fn stat_seed(parts: &[&str], turn: usize) -> u64 {
    let mut h = didact_data::rng::fnv1a(parts.join("|").as_bytes());
    h ^= turn as u64;
    h
}

fn turns_of(condition: &str, k: usize) -> usize {
    if condition == Condition::Single.name() {
        1
    } else {
        k
    }
}

struct SummaryRow {
    model: String,
    condition: String,
    domain: String,
    turn: usize,
    est: Estimate,
}

fn summary_rows(grid: &Grid, k: usize) -> Vec<SummaryRow> {
    let mut out = Vec::new();
    for (model, condition, domain) in grid.cells.keys() {
        for t in 1..=turns_of(condition, k) {
            let v = grid
                .correct_at(model, condition, domain, t)
                .expect("cell exists");
            out.push(SummaryRow {
                model: model.clone(),
                condition: condition.clone(),
                domain: domain.clone(),
                turn: t,
                est: estimate(&v, stat_seed(&[model, condition, domain], t)),
            });
        }
    }
    out
}

struct GainRow {
    model: String,
    condition: String,
    domain: String,
    est: Estimate,
    i_to_c: f64,
    c_to_i: f64,
    /// On critic rows: the critic's gain over the teacher's, with its
    /// interval (NaN bounds where the teacher's gain is not told apart
    /// from zero).
    recovered: Option<Estimate>,
}

fn gain_rows(grid: &Grid, k: usize) -> Vec<GainRow> {
    let mut out = Vec::new();
    for (model, condition, domain) in grid.cells.keys() {
        if condition == Condition::Single.name() {
            continue;
        }
        let xs = grid.cell(model, condition, domain).expect("cell exists");
        let g = gains(&xs, k);
        let v = grid
            .gain_at(model, condition, domain, k)
            .expect("cell exists");
        let recovered = if condition == Condition::Critic.name() {
            grid.gain_at(model, Condition::Teacher.name(), domain, k)
                .and_then(|teacher| {
                    recovered_fraction(&v, &teacher, &["recovered", model, domain], k)
                })
        } else {
            None
        };
        out.push(GainRow {
            model: model.clone(),
            condition: condition.clone(),
            domain: domain.clone(),
            est: estimate(&v, stat_seed(&["gain", model, condition, domain], k)),
            i_to_c: g.i_to_c,
            c_to_i: g.c_to_i,
            recovered,
        });
    }
    out
}

/// `a`'s values on the (training seed, task) units `b` has too.
fn restrict_to(a: &SeedTaskValues, b: &SeedTaskValues) -> SeedTaskValues {
    a.iter()
        .filter_map(|(s, ta)| {
            let tb = b.get(s)?;
            let kept: BTreeMap<usize, f64> = ta
                .iter()
                .filter(|(t, _)| tb.contains_key(t))
                .map(|(t, v)| (*t, *v))
                .collect();
            (!kept.is_empty()).then_some((*s, kept))
        })
        .collect()
}

/// The critic's gain over the teacher's, (acc_critic@K − acc_critic@1) /
/// (acc_teacher@K − acc_teacher@1) (the same first attempts where both
/// conditions sample them alike), on the (training seed, task) units both
/// conditions have, with its two-level bootstrap interval; None where the
/// teacher gains nothing on average.
fn recovered_fraction(
    critic: &SeedTaskValues,
    teacher: &SeedTaskValues,
    key: &[&str],
    k: usize,
) -> Option<Estimate> {
    let (num, den) = (restrict_to(critic, teacher), restrict_to(teacher, critic));
    let (n, d) = (mean_of(&num), mean_of(&den));
    if d.is_nan() || d.abs() <= 1e-12 {
        return None;
    }
    let (lo, hi) = two_level_ratio_ci(&num, &den, RESAMPLES, stat_seed(key, k));
    let (n_tasks, n_seeds) = counts(&num);
    Some(Estimate {
        value: n / d,
        lo,
        hi,
        n_tasks,
        n_seeds,
    })
}

struct ContrastRow {
    contrast: String,
    domain: String,
    turn: usize,
    est: Estimate,
    /// (training seed, estimate of that seed alone, tasks).
    by_seed: Vec<(u64, f64, usize)>,
}

fn contrast_row(name: &str, domain: &str, turn: usize, d: &SeedTaskValues) -> ContrastRow {
    ContrastRow {
        contrast: name.to_string(),
        domain: domain.to_string(),
        turn,
        est: estimate(d, stat_seed(&[name, domain], turn)),
        by_seed: d
            .iter()
            .map(|(s, tasks)| {
                let single = BTreeMap::from([(*s, tasks.clone())]);
                (*s, mean_of(&single), tasks.len())
            })
            .collect(),
    }
}

/// Every contrast the grid supports, per domain and turn.
fn contrast_rows(grid: &Grid, k: usize) -> Vec<ContrastRow> {
    let mut out = Vec::new();
    let models: Vec<&str> = MODELS.iter().map(|m| m.0).collect();
    for domain in &grid.domains {
        for model in &models {
            for (a, b) in CONDITION_CONTRASTS {
                let name = format!("{model}:{}-{}", a.name(), b.name());
                for t in 1..=k {
                    let (Some(va), Some(vb)) = (
                        grid.correct_at(model, a.name(), domain, t),
                        grid.correct_at(model, b.name(), domain, t),
                    ) else {
                        break;
                    };
                    out.push(contrast_row(&name, domain, t, &paired(&va, &vb)));
                }
            }
        }
        for (m1, m2) in MODEL_CONTRASTS {
            for c in MODEL_CONTRAST_CONDITIONS {
                let name = format!("{m1}-{m2}:{}", c.name());
                for t in 1..=k {
                    let (Some(v1), Some(v2)) = (
                        grid.correct_at(m1, c.name(), domain, t),
                        grid.correct_at(m2, c.name(), domain, t),
                    ) else {
                        break;
                    };
                    out.push(contrast_row(&name, domain, t, &paired(&v1, &v2)));
                }
            }
        }
        let (m1, m2) = MODEL_CONTRASTS[0];
        for c in GAIN_CONTRAST_CONDITIONS {
            let name = format!("{m1}-{m2}:{}:gain", c.name());
            for t in 2..=k {
                let (Some(v1), Some(v2)) = (
                    grid.gain_at(m1, c.name(), domain, t),
                    grid.gain_at(m2, c.name(), domain, t),
                ) else {
                    break;
                };
                out.push(contrast_row(&name, domain, t, &paired(&v1, &v2)));
            }
        }
    }
    out
}

struct RevisionRow {
    model: String,
    condition: String,
    domain: String,
    turn: usize,
    n_wrong: usize,
    fix: Estimate,
    n_revisions: usize,
    repeat_rate: f64,
    n_judged: usize,
    targeted_rate: f64,
}

fn revision_rows(grid: &Grid, tasks: &HashMap<String, Task>, k: usize) -> Vec<RevisionRow> {
    let mut out = Vec::new();
    for ((model, condition, domain), xs) in &grid.cells {
        if condition == Condition::Single.name() {
            continue;
        }
        for t in 1..k {
            let wrong: Vec<&Trajectory> = xs.iter().filter(|x| !x.correct_at(t)).collect();
            let fixes = seed_task_values(&wrong, &|x| x.correct_at(t + 1) as u8 as f64);
            let (mut revisions, mut repeats, mut judged, mut targeted) = (0, 0, 0, 0);
            for x in &wrong {
                let (Some(prev), Some(next)) = (x.attempts.get(t - 1), x.attempts.get(t)) else {
                    continue;
                };
                revisions += 1;
                repeats += (prev == next) as usize;
                let task = tasks.get(&grid.task_ids[x.task]);
                if let Some(verdict) =
                    task.and_then(|task| didact_data::revision::targeted_revision(task, prev, next))
                {
                    judged += 1;
                    targeted += verdict as usize;
                }
            }
            let rate = |a: usize, b: usize| {
                if b == 0 {
                    f64::NAN
                } else {
                    a as f64 / b as f64
                }
            };
            out.push(RevisionRow {
                model: model.clone(),
                condition: condition.clone(),
                domain: domain.clone(),
                turn: t,
                n_wrong: wrong.len(),
                fix: estimate(&fixes, stat_seed(&["fix", model, condition, domain], t)),
                n_revisions: revisions,
                repeat_rate: rate(repeats, revisions),
                n_judged: judged,
                targeted_rate: rate(targeted, judged),
            });
        }
    }
    out
}

/// A count as the tables store it.
fn n(x: usize) -> u32 {
    x as u32
}

fn write_summary(path: &Path, rows: &[SummaryRow]) -> Result<()> {
    let records: Vec<SummaryRecord> = rows
        .iter()
        .map(|r| SummaryRecord {
            model: r.model.clone(),
            condition: r.condition.clone(),
            domain: r.domain.clone(),
            turn: n(r.turn),
            cum_accuracy: r.est.value,
            ci_low: r.est.lo,
            ci_high: r.est.hi,
            n_tasks: n(r.est.n_tasks),
            n_seeds: n(r.est.n_seeds),
        })
        .collect();
    Ok(SummaryRecord::write(path, &records)?)
}

fn write_gains(path: &Path, rows: &[GainRow]) -> Result<()> {
    let records: Vec<GainRecord> = rows
        .iter()
        .map(|r| GainRecord {
            model: r.model.clone(),
            condition: r.condition.clone(),
            domain: r.domain.clone(),
            delta: r.est.value,
            delta_ci_low: r.est.lo,
            delta_ci_high: r.est.hi,
            delta_i_to_c: r.i_to_c,
            delta_c_to_i: r.c_to_i,
            recovered_fraction: r.recovered.map_or(f64::NAN, |e| e.value),
            recovered_ci_low: r.recovered.map_or(f64::NAN, |e| e.lo),
            recovered_ci_high: r.recovered.map_or(f64::NAN, |e| e.hi),
            n_tasks: n(r.est.n_tasks),
            n_seeds: n(r.est.n_seeds),
        })
        .collect();
    Ok(GainRecord::write(path, &records)?)
}

fn write_contrasts(dir: &Path, rows: &[ContrastRow]) -> Result<()> {
    let pooled: Vec<ContrastRecord> = rows
        .iter()
        .map(|r| ContrastRecord {
            contrast: r.contrast.clone(),
            domain: r.domain.clone(),
            turn: n(r.turn),
            estimate: r.est.value,
            ci_low: r.est.lo,
            ci_high: r.est.hi,
            n_tasks: n(r.est.n_tasks),
            n_seeds: n(r.est.n_seeds),
        })
        .collect();
    ContrastRecord::write(&dir.join(CONTRASTS_FILE), &pooled)?;
    let by_seed: Vec<ContrastBySeedRecord> = rows
        .iter()
        .flat_map(|r| {
            r.by_seed
                .iter()
                .map(move |&(seed, estimate, n_tasks)| ContrastBySeedRecord {
                    contrast: r.contrast.clone(),
                    domain: r.domain.clone(),
                    turn: n(r.turn),
                    training_seed: seed,
                    estimate,
                    n_tasks: n(n_tasks),
                })
        })
        .collect();
    Ok(ContrastBySeedRecord::write(
        &dir.join(CONTRASTS_BY_SEED_FILE),
        &by_seed,
    )?)
}

fn write_revisions(path: &Path, rows: &[RevisionRow]) -> Result<()> {
    let records: Vec<RevisionRecord> = rows
        .iter()
        .map(|r| RevisionRecord {
            model: r.model.clone(),
            condition: r.condition.clone(),
            domain: r.domain.clone(),
            turn: n(r.turn),
            n_wrong: n(r.n_wrong),
            fix_rate: r.fix.value,
            fix_ci_low: r.fix.lo,
            fix_ci_high: r.fix.hi,
            n_revisions: n(r.n_revisions),
            repeat_rate: r.repeat_rate,
            n_judged: n(r.n_judged),
            targeted_rate: r.targeted_rate,
            n_seeds: n(r.fix.n_seeds),
        })
        .collect();
    Ok(RevisionRecord::write(path, &records)?)
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}", 100.0 * x)
    } else {
        "–".into()
    }
}

fn points(e: &Estimate) -> String {
    if e.value.is_finite() {
        format!(
            "{:+.1} [{:+.1}, {:+.1}]",
            100.0 * e.value,
            100.0 * e.lo,
            100.0 * e.hi
        )
    } else {
        "–".into()
    }
}

/// The contrast names of [`HEADLINE_CONTRASTS`], `{model}` expanded.
fn headline_names() -> Vec<String> {
    HEADLINE_CONTRASTS
        .iter()
        .flat_map(|c| {
            if c.contains("{model}") {
                MODELS
                    .iter()
                    .map(|(m, _)| c.replace("{model}", m))
                    .collect::<Vec<_>>()
            } else {
                vec![c.to_string()]
            }
        })
        .collect()
}

/// The report's first section: one line per headline contrast at turn K,
/// all domains pooled, saying whether its interval excludes zero.
fn findings_section(contrasts: &[ContrastRow], k: usize, n_seeds: usize) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "## Findings: which paired contrasts exclude zero (turn {k}, all domains, {n_seeds} training seed(s))\n"
    )?;
    writeln!(
        md,
        "Each line: the paired difference in cumulative accuracy (points) with its two-level \
         bootstrap 95% interval (training seeds, then tasks within each).\n"
    )?;
    let (mut excluded, mut total) = (0, 0);
    for name in headline_names() {
        let Some(r) = contrasts
            .iter()
            .find(|r| r.contrast == name && r.domain == "all" && r.turn == k)
        else {
            continue;
        };
        total += 1;
        let verdict = if excludes_zero(r.est.lo, r.est.hi) {
            excluded += 1;
            if r.est.value > 0.0 {
                "**excludes zero (positive)**"
            } else {
                "**excludes zero (negative)**"
            }
        } else {
            "includes zero"
        };
        writeln!(md, "- `{name}`: {} — {verdict}", points(&r.est))?;
    }
    writeln!(md, "\n{excluded} of {total} exclude zero.\n")?;
    Ok(md)
}

/// The table of every contrast at turn K, pooled and per training seed.
fn contrasts_section(
    contrasts: &[ContrastRow],
    domains: &[String],
    k: usize,
    seeds: &[u64],
) -> Result<String> {
    let mut md = String::new();
    writeln!(md, "## Paired contrasts at turn {k}\n")?;
    writeln!(
        md,
        "`{{model}}:{{a}}-{{b}}`: conditions a and b of one model; `{{m1}}-{{m2}}:{{condition}}`: two \
         models under one condition; `…:gain`: difference of their Δ(turn 1, turn {k}). Pooled over \
         training seeds with a two-level bootstrap 95% interval; then each seed's own estimate. \
         `report/contrasts.parquet` has every turn.\n"
    )?;
    let seed_cols: String = seeds.iter().map(|s| format!(" seed {s} |")).collect();
    let seed_rule: String = seeds.iter().map(|_| "---:|").collect();
    for domain in domains {
        writeln!(md, "### {domain}\n")?;
        writeln!(md, "| contrast | pooled [95% CI] | n tasks |{seed_cols}")?;
        writeln!(md, "|---|---|---:|{seed_rule}")?;
        for r in contrasts
            .iter()
            .filter(|r| &r.domain == domain && r.turn == k)
        {
            let per_seed: String = seeds
                .iter()
                .map(|s| {
                    r.by_seed
                        .iter()
                        .find(|b| b.0 == *s)
                        .map_or(" – |".to_string(), |b| format!(" {:+.1} |", 100.0 * b.1))
                })
                .collect();
            writeln!(
                md,
                "| `{}` | {} | {} |{per_seed}",
                r.contrast,
                points(&r.est),
                r.est.n_tasks
            )?;
        }
        writeln!(md)?;
    }
    Ok(md)
}

/// Fix rates and revision behaviour, pooled over domains, and the share
/// of targeted revisions where a domain can tell.
fn revisions_section(revisions: &[RevisionRow], conditions: &[Condition]) -> Result<String> {
    let mut md = String::new();
    writeln!(md, "## Fix rate and revision behaviour\n")?;
    writeln!(
        md,
        "Fix rate: P(correct at t+1 | wrong at t), all domains pooled, with its two-level bootstrap \
         95% interval. Targeted: the share of revisions after a wrong answer that change only what \
         the feedback pointed at, where a domain can tell (maze: every move before the failing one \
         kept; sudoku: every cell outside the flagged unit kept), over `n judged` revisions; \
         under `retry`, `verdict` and `shuffled` the student was not told where its error is, so \
         there the share is the baseline a revision reaches by chance. \
         `report/revisions.parquet` has every domain.\n"
    )?;
    writeln!(
        md,
        "| model | condition | turn | n wrong | fix rate [95% CI] | repeat rate | targeted (n judged) |"
    )?;
    writeln!(md, "|---|---|---:|---:|---|---:|---|")?;
    for (model, _) in MODELS {
        for c in conditions {
            for r in revisions
                .iter()
                .filter(|r| r.model == model && r.condition == c.name() && r.domain == "all")
            {
                writeln!(
                    md,
                    "| {model} | {} | {} | {} | {} [{}, {}] | {} | {} ({}) |",
                    c.name(),
                    r.turn,
                    r.n_wrong,
                    pct(r.fix.value),
                    pct(r.fix.lo),
                    pct(r.fix.hi),
                    pct(r.repeat_rate),
                    pct(r.targeted_rate),
                    r.n_judged
                )?;
            }
        }
    }
    writeln!(md)?;
    Ok(md)
}

/// Accuracy at turns 1 and K, Δ, Δi→c, Δc→i and the recovered fraction,
/// one table per domain (`all` first).
fn accuracy_section(
    grid: &Grid,
    summary: &[SummaryRow],
    gain_rows: &[GainRow],
    conditions: &[Condition],
    k: usize,
) -> Result<String> {
    let mut md = String::new();
    for domain in &grid.domains {
        if domain == "all" {
            writeln!(md, "## Headline (all domains pooled)\n")?;
        } else {
            writeln!(md, "### {domain}\n")?;
        }
        writeln!(
            md,
            "| model | condition | acc@1 | acc@{k} [95% CI] | Δ [95% CI] | Δi→c | Δc→i | recovered |"
        )?;
        writeln!(md, "|---|---|---:|---|---|---:|---:|---:|")?;
        for (model, _) in MODELS {
            for c in conditions {
                let acc_at = |t: usize| {
                    summary.iter().find(|r| {
                        r.model == model
                            && r.condition == c.name()
                            && &r.domain == domain
                            && r.turn == t
                    })
                };
                let (Some(first), Some(last)) = (acc_at(1), acc_at(turns_of(c.name(), k))) else {
                    continue;
                };
                let g = gain_rows
                    .iter()
                    .find(|r| r.model == model && r.condition == c.name() && &r.domain == domain);
                writeln!(
                    md,
                    "| {model} | {} | {} | {} [{}, {}] | {} | {} | {} | {} |",
                    c.name(),
                    pct(first.est.value),
                    pct(last.est.value),
                    pct(last.est.lo),
                    pct(last.est.hi),
                    g.map_or(String::new(), |g| points(&g.est)),
                    g.map_or(String::new(), |g| pct(g.i_to_c)),
                    g.map_or(String::new(), |g| pct(g.c_to_i)),
                    g.and_then(|g| g.recovered).map_or(String::new(), |r| {
                        if r.lo.is_nan() {
                            format!("{:.2} [teacher gain ≈ 0]", r.value)
                        } else {
                            format!("{:.2} [{:.2}, {:.2}]", r.value, r.lo, r.hi)
                        }
                    }),
                )?;
            }
        }
        writeln!(md)?;
        if domain == "all" {
            writeln!(
                md,
                "acc@{k} under `teacher` is the paper's headline metric (cumulative accuracy at turn K \
                 with the teacher). `recovered` = (acc_critic@K − acc@1) / (acc_teacher@K − acc@1) [95% CI]: the \
                 share of the teacher's gain the critic recovers without any oracle, on the (training \
                 seed, task) units both conditions have, its interval from the same two-level \
                 bootstrap with the critic's and the teacher's gain drawn together.\n"
            )?;
            writeln!(md, "## By domain\n")?;
            writeln!(
                md,
                "Checking an answer is as hard as producing it in `arith` (a critic of the student's \
                 size is not expected to help there); it is local in `maze` and `sudoku`, where a \
                 critic should pay.\n"
            )?;
        }
    }
    Ok(md)
}

/// Whether an AUROC says the critic ranks right attempts above wrong ones.
/// The cut-offs are the usual reading of a ranking's worth (0.5 is chance;
/// under 0.6 a threshold separates little more than chance does, from 0.75
/// it separates most pairs), not a test: the table gives the number.
fn tells_apart(auroc: Option<f64>) -> &'static str {
    let Some(auroc) = auroc else {
        return "only right or only wrong attempts";
    };
    if auroc < 0.6 {
        "no: it cannot tell right from wrong"
    } else if auroc < 0.75 {
        "weakly"
    } else {
        "yes"
    }
}

/// The critic's calibration (per training seed), its verdicts against the
/// verifier and its critiques against the teacher's; the teacher's leak
/// rate as counted where it spoke.
fn critic_section(
    ctx: &StageContext,
    grid: &Grid,
    rows: &[(u64, Vec<EvalTurnRow>)],
    tasks: &HashMap<String, Task>,
) -> Result<(String, serde_json::Value)> {
    let cfg = &ctx.config.eval;
    let mut md = String::from("## The critic\n\n");
    for (seed, dir) in ctx.layout.seed_dirs() {
        let verdict_dir = dir.join(CRITIC_DIR);
        if !verdict_dir.join(VERDICT_FILE).exists() {
            continue;
        }
        let v = read_verdict(&verdict_dir)?;
        let per_domain = |m: &BTreeMap<String, f64>, f: &dyn Fn(f64) -> String| {
            m.iter()
                .map(|(d, x)| format!("{d} {}", f(*x)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            md,
            "Training seed {seed}. Verdict: P(\"Correct.\") against a per-domain threshold ({} rule, \
             set on {} held-out attempts; {}). After the teacher's feedback the student fixed a wrong attempt at its next attempt \
             at these rates in the critic's training dialogues: {}. On held-out attempts the critic \
             called {}% of the correct ones correct and {}% of the wrong ones wrong.\n",
            match v.rule {
                didact_critic::config::VerdictRule::Utility => "`utility`",
                didact_critic::config::VerdictRule::Recall => "`recall`",
            },
            match v.calibrated_on {
                didact_critic::config::CalibrateOn::First => "first",
                didact_critic::config::CalibrateOn::All => "all",
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
        if !v.calibration.is_empty() {
            writeln!(
                md,
                "Its P(\"Correct.\") on the held-out attempts (training seed {seed}): ECE = expected \
                 calibration error over 10 bins, Brier = mean (P − right)², AUROC = P(a right attempt \
                 scores above a wrong one), 0.5 for a critic that cannot tell them apart.\n"
            )?;
            writeln!(
                md,
                "| domain | attempts | right % | mean P | ECE | Brier | AUROC | AUROC, first attempts | can it tell? |"
            )?;
            writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
            let auroc = |a: Option<f64>| a.map_or("–".into(), |a| format!("{a:.2}"));
            for (domain, c) in &v.calibration {
                let first = v.calibration_first.get(domain).and_then(|c| c.auroc);
                writeln!(
                    md,
                    "| {domain} | {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
                    c.attempts,
                    pct(c.correct as f64 / c.attempts.max(1) as f64),
                    pct(c.mean_p),
                    c.ece,
                    c.brier,
                    auroc(c.auroc),
                    auroc(first),
                    // First attempts, where the turn cannot stand in for
                    // correctness, where there are both kinds.
                    tells_apart(first.or(c.auroc)),
                )?;
            }
            writeln!(md)?;
        }
    }
    writeln!(
        md,
        "Its verdicts against the verifier in the `critic` condition, all training seeds \
         (precision = P(correct | judged correct), recall = P(judged correct | correct)):\n"
    )?;
    writeln!(md, "| student | precision | recall |")?;
    writeln!(md, "|---|---:|---:|")?;
    for (model, _) in MODELS {
        if let Some(xs) = grid.cell(model, Condition::Critic.name(), "all") {
            let (p, r) = verdict_precision_recall(&xs);
            writeln!(
                md,
                "| {model} | {} | {} |",
                p.map_or("–".into(), pct),
                r.map_or("–".into(), pct)
            )?;
        }
    }
    let (mut compared, mut same_text, mut same_verdict) = (0usize, 0usize, 0usize);
    let (mut teacher_messages, mut leaks) = (0usize, 0usize);
    for r in rows.iter().flat_map(|(_, rows)| rows) {
        if r.condition == Condition::Critic.name() && r.feedback_source == "critic" {
            let Some(task) = tasks.get(&r.task_id) else {
                continue;
            };
            let (teacher, _) = teacher_message(task, &r.attempt, cfg.feedback_level)?;
            compared += 1;
            same_text += (normalise(&teacher) == normalise(&r.feedback)) as usize;
            same_verdict += (says_correct(&teacher) == says_correct(&r.feedback)) as usize;
        }
        if r.condition == Condition::Teacher.name() && r.feedback_source == "teacher" {
            teacher_messages += 1;
            leaks += r.leak_blocked as usize;
        }
    }
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    writeln!(
        md,
        "\nOn the {compared} attempts the critic answered, its critique equals the teacher's \
         (normalised text) {}% of the time and agrees with the teacher's verdict {}% of the time.\n",
        pct(ratio(same_text, compared)),
        pct(ratio(same_verdict, compared))
    )?;
    writeln!(
        md,
        "Teacher leak rate in the `teacher` condition ({} teacher, counted where it spoke): \
         {leaks} of {teacher_messages} messages ({}%) failed the leak check and were replaced by \
         the verdict.\n",
        serde_json::to_value(ctx.config.teacher.kind)?
            .as_str()
            .unwrap_or("configured"),
        pct(ratio(leaks, teacher_messages))
    )?;
    Ok((
        md,
        json!({
            "teacher_leak_rate": ratio(leaks, teacher_messages),
            "critic_teacher_agreement": ratio(same_text, compared),
        }),
    ))
}

/// Accuracy-by-turn and fix-rate plots for RL²F and the base model, and
/// the gains bar chart; returns the file names.
fn plots(
    out: &Path,
    grid: &Grid,
    summary: &[SummaryRow],
    gain_rows: &[GainRow],
    revisions: &[RevisionRow],
    conditions: &[Condition],
    k: usize,
) -> Result<Vec<String>> {
    // Accuracy by turn of `model` in `domain` under each of `conditions`.
    let accuracy = |model: &str, domain: &str, conditions: &[Condition]| -> Vec<plot::Series> {
        conditions
            .iter()
            .filter_map(|c| {
                let rows: Vec<&SummaryRow> = summary
                    .iter()
                    .filter(|r| r.model == model && r.condition == c.name() && r.domain == domain)
                    .collect();
                (!rows.is_empty()).then(|| plot::Series {
                    name: c.name().to_string(),
                    values: rows.iter().map(|r| r.est.value).collect(),
                    band: rows.iter().map(|r| (r.est.lo, r.est.hi)).collect(),
                })
            })
            .collect()
    };
    let mut files = Vec::new();
    for model in ["rl2f", "base"] {
        // Self-correction side by side: the teacher, the critic with its own
        // stop and with the oracle's, and "Try again.", pooled.
        let side_by_side = [
            Condition::Teacher,
            Condition::Critic,
            Condition::CriticOracleStop,
            Condition::Retry,
        ];
        let shown: Vec<Condition> = side_by_side
            .into_iter()
            .filter(|c| conditions.contains(c))
            .collect();
        if shown.contains(&Condition::Critic) {
            let file = format!("self_correction_{model}.png");
            plot::rate_by_turn(
                &out.join(&file),
                &format!(
                    "{model} · all: {}",
                    shown
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "accuracy (%)",
                &accuracy(model, "all", &shown),
                k,
            )?;
            files.push(file);
        }
        for domain in &grid.domains {
            let series = accuracy(model, domain, conditions);
            let file = format!("accuracy_{model}_{domain}.png");
            plot::rate_by_turn(
                &out.join(&file),
                &format!("{model} · {domain}: accuracy by turn"),
                "accuracy (%)",
                &series,
                k,
            )?;
            files.push(file);
        }
        if k > 1 {
            let series: Vec<plot::Series> = conditions
                .iter()
                .filter_map(|c| {
                    let rows: Vec<&RevisionRow> = revisions
                        .iter()
                        .filter(|r| {
                            r.model == model && r.condition == c.name() && r.domain == "all"
                        })
                        .collect();
                    (!rows.is_empty()).then(|| plot::Series {
                        name: c.name().to_string(),
                        values: rows.iter().map(|r| r.fix.value).collect(),
                        band: rows.iter().map(|r| (r.fix.lo, r.fix.hi)).collect(),
                    })
                })
                .collect();
            let file = format!("fix_rate_{model}.png");
            plot::rate_by_turn(
                &out.join(&file),
                &format!("{model} · all: P(correct at t+1 | wrong at t) by turn t"),
                "fix rate (%)",
                &series,
                k - 1,
            )?;
            files.push(file);
        }
    }
    let bars: Vec<plot::Bar> = gain_rows
        .iter()
        .filter(|r| r.domain == "all")
        .map(|r| plot::Bar {
            label: format!("{} {}", r.model, short(&r.condition)),
            value: r.est.value,
            low: r.est.lo,
            high: r.est.hi,
        })
        .collect();
    plot::gain_bars(
        &out.join(GAINS_PLOT_FILE),
        &format!("Δ accuracy, turn {k} − turn 1 (95% bootstrap CI)"),
        &bars,
    )?;
    files.push(GAINS_PLOT_FILE.into());
    Ok(files)
}

/// The report's title and the paragraph that says what was run and how
/// accuracy and intervals are taken.
fn intro_section(ctx: &StageContext, n_tasks: usize, seeds: &[u64]) -> Result<String> {
    let cfg = &ctx.config.eval;
    let k = cfg.max_turns;
    let mut md = String::new();
    writeln!(md, "# didact report\n")?;
    writeln!(
        md,
        "Run `{}`: {} models × {} conditions on {n_tasks} held-out test tasks, up to K = {k} \
         attempts, training seeds {seeds:?}, {} sampling seed(s) each, decoding temperature {}. \
         Accuracy at turn t is the correctness of the answer standing at t (the last attempt made \
         by then): with an oracle stop (teacher, verdict, shuffled, retry, critic_oracle_stop) that \
         is \"solved at or before t\"; in the `critic` condition nothing but the critic decides \
         when to stop. Percentages; intervals are two-level percentile bootstrap 95% \
         ({RESAMPLES} resamples: training seeds, then tasks within each seed).\n",
        ctx.run_dir.display(),
        MODELS.len(),
        cfg.conditions.len(),
        cfg.seeds,
        cfg.temperature
    )?;
    Ok(md)
}

/// How much the student changes its answer between attempts.
fn change_section(grid: &Grid, conditions: &[Condition]) -> Result<String> {
    let mut md = String::new();
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
        for c in conditions {
            if let Some(xs) = grid.cell(model, c.name(), "all")
                && let Some((ratio, repeat)) = revision_stats(&xs)
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
    writeln!(md)?;
    Ok(md)
}

/// The transfer and SML sections: one per training seed that ran them, or
/// the one "not run" note; the transfer matrices written go to `outputs`.
fn seed_sections(
    ctx: &StageContext,
    out: &Path,
    k: usize,
    outputs: &mut Vec<String>,
) -> Result<String> {
    let mut extra: Vec<String> = Vec::new();
    for (seed, dir) in ctx.layout.seed_dirs() {
        let (sub, label) = if ctx.layout.seeds.is_empty() {
            (String::new(), String::new())
        } else {
            (
                format!("{}/", crate::layout::seed_dir_name(seed)),
                format!(" (training seed {seed})"),
            )
        };
        let seed_out = out.join(&sub);
        std::fs::create_dir_all(&seed_out)?;
        let mut section = crate::report::transfer::report_section(&dir, &seed_out, k)?;
        if seed_out.join(TRANSFER_MATRIX_FILE).exists() {
            outputs.push(format!("{REPORT_DIR}/{sub}{TRANSFER_MATRIX_FILE}"));
            section = section.replacen(")\n", &format!("){label}\n"), 1);
        }
        let mut sml = crate::report::sml::report_section(&dir)?;
        if !sml.contains("Not run:") {
            sml = sml.replacen(
                "## Social meta-learning",
                &format!("## Social meta-learning{label}"),
                1,
            );
        }
        for s in [section, sml] {
            if !extra.contains(&s) {
                extra.push(s);
            }
        }
    }
    Ok(extra.concat())
}

/// The stage's summary: the headline contrasts at turn `k`, pooled.
fn headline_lines(contrasts: &[ContrastRow], k: usize, n_seeds: usize, out: &Path) -> Vec<String> {
    let mut lines = vec![format!(
        "analyse · paired contrasts at turn {k}, all domains, {n_seeds} training seed(s)"
    )];
    for name in headline_names() {
        if let Some(r) = contrasts
            .iter()
            .find(|r| r.contrast == name && r.domain == "all" && r.turn == k)
        {
            lines.push(format!(
                "  {name:<40} {}{}",
                points(&r.est),
                if excludes_zero(r.est.lo, r.est.hi) {
                    "  *"
                } else {
                    ""
                }
            ));
        }
    }
    lines.push("  (* the 95% interval excludes zero)".into());
    lines.push(format!("report: {}", out.join(REPORT_FILE).display()));
    lines
}

/// The manifest's metrics: recovered fractions, the headline contrasts and
/// the critic's.
fn stage_metrics(
    gains: &[GainRow],
    contrasts: &[ContrastRow],
    k: usize,
    n_seeds: usize,
    critic_metrics: &serde_json::Value,
) -> serde_json::Value {
    let rec: BTreeMap<String, serde_json::Value> = gains
        .iter()
        .filter(|r| r.domain == "all" && r.condition == Condition::Critic.name())
        .map(|r| {
            let v = r.recovered.map_or(
                json!(null),
                |e| json!({"estimate": e.value, "ci_low": e.lo, "ci_high": e.hi}),
            );
            (r.model.clone(), v)
        })
        .collect();
    let headline: BTreeMap<String, serde_json::Value> = headline_names()
        .into_iter()
        .filter_map(|name| {
            let r = contrasts
                .iter()
                .find(|r| r.contrast == name && r.domain == "all" && r.turn == k)?;
            Some((
                name,
                json!({"estimate": r.est.value, "ci_low": r.est.lo, "ci_high": r.est.hi}),
            ))
        })
        .collect();
    let mut metrics = json!({
        "recovered_fraction": rec,
        "n_seeds": n_seeds,
        "contrasts": headline,
    });
    if let (Some(m), Some(c)) = (metrics.as_object_mut(), critic_metrics.as_object()) {
        m.extend(c.clone());
    }
    metrics
}

fn run(ctx: &StageContext) -> Result<StageOutput> {
    let cfg = &ctx.config.eval;
    let k = cfg.max_turns;
    let mut by_seed = Vec::new();
    for (seed, dir) in ctx.layout.seed_dirs() {
        let path = dir.join(TURNS_FILE);
        let rows = EvalTurnRow::read(&path)?;
        anyhow::ensure!(!rows.is_empty(), "analyse: {} has no rows", path.display());
        by_seed.push((seed, rows));
    }
    let seeds: Vec<u64> = by_seed.iter().map(|s| s.0).collect();
    let tasks: HashMap<String, Task> = read_tasks(&ctx.shared(TASKS_FILE))?
        .into_iter()
        .map(|r| (r.task.task_id.clone(), r.task))
        .collect();
    let grid = Grid::new(&by_seed);
    let n_seeds = grid.n_seeds;
    let out = ctx.run_dir.join(REPORT_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;

    let summary = summary_rows(&grid, k);
    write_summary(&out.join(SUMMARY_FILE), &summary)?;
    let gains = gain_rows(&grid, k);
    write_gains(&out.join(GAINS_FILE), &gains)?;
    let contrasts = contrast_rows(&grid, k);
    write_contrasts(&out, &contrasts)?;
    let revisions = revision_rows(&grid, &tasks, k);
    write_revisions(&out.join(REVISIONS_FILE), &revisions)?;
    let plot_files = plots(
        &out,
        &grid,
        &summary,
        &gains,
        &revisions,
        &cfg.conditions,
        k,
    )?;
    let (mut critic_md, critic_metrics) = critic_section(ctx, &grid, &by_seed, &tasks)?;
    let eval_rows: Vec<&EvalTurnRow> = by_seed.iter().flat_map(|(_, rows)| rows).collect();
    let critic_messages = report::critic::message_records(&eval_rows, &tasks)?;
    CriticMessageRecord::write(&out.join(CRITIC_MESSAGES_FILE), &critic_messages)?;
    critic_md.push_str(&report::critic::section(&critic_messages, "rl2f")?);

    let n_tasks = counts(
        &grid
            .correct_at("base", cfg.conditions[0].name(), "all", 1)
            .unwrap_or_default(),
    )
    .0;
    let mut md = intro_section(ctx, n_tasks, &seeds)?;
    md.push_str(&findings_section(&contrasts, k, n_seeds)?);
    md.push_str(&accuracy_section(
        &grid,
        &summary,
        &gains,
        &cfg.conditions,
        k,
    )?);
    md.push_str(&contrasts_section(&contrasts, &grid.domains, k, &seeds)?);
    md.push_str(&revisions_section(&revisions, &cfg.conditions)?);
    md.push_str(&change_section(&grid, &cfg.conditions)?);
    md.push_str(&critic_md);
    writeln!(md, "## Plots\n")?;
    for p in &plot_files {
        writeln!(md, "![{p}]({p})\n")?;
    }
    let mut outputs = vec![
        format!("{REPORT_DIR}/{REPORT_FILE}"),
        format!("{REPORT_DIR}/{SUMMARY_FILE}"),
        format!("{REPORT_DIR}/{GAINS_FILE}"),
        format!("{REPORT_DIR}/{CONTRASTS_FILE}"),
        format!("{REPORT_DIR}/{CONTRASTS_BY_SEED_FILE}"),
        format!("{REPORT_DIR}/{REVISIONS_FILE}"),
        format!("{REPORT_DIR}/{CRITIC_MESSAGES_FILE}"),
    ];
    outputs.extend(plot_files.iter().map(|p| format!("{REPORT_DIR}/{p}")));
    md.push_str(&seed_sections(ctx, &out, k, &mut outputs)?);
    if cfg.feedback_level != FeedbackLevel::Explanation {
        writeln!(
            md,
            "Teacher feedback level: {}.\n",
            cfg.feedback_level.name()
        )?;
    }
    didact_data::atomic::write(&out.join(REPORT_FILE), md.as_bytes())?;

    let lines = headline_lines(&contrasts, k, n_seeds, &out);
    let metrics = stage_metrics(&gains, &contrasts, k, n_seeds, &critic_metrics);
    Ok(StageOutput {
        outputs,
        metrics,
        summary: lines,
    })
}

fn short(condition: &str) -> &str {
    match condition {
        "critic_oracle_stop" => "critic+stop",
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use didact_data::DomainKind;

    fn row(
        seed: u64,
        model: &str,
        condition: &str,
        task: &str,
        turn: u32,
        correct: bool,
    ) -> EvalTurnRow {
        EvalTurnRow {
            model: model.into(),
            condition: condition.into(),
            seed: 0,
            task_id: task.into(),
            domain: if task.starts_with('m') {
                DomainKind::Maze
            } else {
                DomainKind::Arith
            },
            difficulty: 1,
            turn,
            attempt: format!("{seed}{turn}"),
            verdict: if correct { "correct" } else { "wrong" }.into(),
            correct,
            feedback: String::new(),
            feedback_source: String::new(),
            judged: String::new(),
            leak_blocked: false,
        }
    }

    /// A dialogue solved at `solved` (1-based) or never, up to 3 turns.
    fn dialogue(
        seed: u64,
        model: &str,
        condition: &str,
        task: &str,
        solved: Option<u32>,
    ) -> Vec<EvalTurnRow> {
        let last = solved.unwrap_or(3);
        (1..=last)
            .map(|t| row(seed, model, condition, task, t, Some(t) == solved))
            .collect()
    }

    #[test]
    fn contrasts_are_paired_per_seed_and_task_on_a_hand_made_grid() {
        // Two training seeds, four tasks (two maze, two arith). rl2f with
        // the teacher solves every task at turn 2; with retry only m1 (at
        // turn 3). base solves nothing with either.
        let mut by_seed = Vec::new();
        for seed in [0u64, 1] {
            let mut rows = Vec::new();
            for task in ["m1", "m2", "a1", "a2"] {
                rows.extend(dialogue(seed, "rl2f", "teacher", task, Some(2)));
                rows.extend(dialogue(
                    seed,
                    "rl2f",
                    "retry",
                    task,
                    (task == "m1").then_some(3),
                ));
                rows.extend(dialogue(seed, "base", "teacher", task, None));
                rows.extend(dialogue(seed, "base", "retry", task, None));
            }
            by_seed.push((seed, rows));
        }
        let grid = Grid::new(&by_seed);
        assert_eq!(grid.domains, vec!["all", "arith", "maze"]);
        let rows = contrast_rows(&grid, 3);
        let find = |name: &str, domain: &str, turn: usize| {
            rows.iter()
                .find(|r| r.contrast == name && r.domain == domain && r.turn == turn)
                .unwrap_or_else(|| panic!("{name} {domain} {turn}"))
        };
        let r = find("rl2f:teacher-retry", "all", 3);
        assert!((r.est.value - 0.75).abs() < 1e-12, "{}", r.est.value);
        assert_eq!((r.est.n_tasks, r.est.n_seeds), (4, 2));
        assert_eq!(r.by_seed.len(), 2);
        assert!(excludes_zero(r.est.lo, r.est.hi));
        assert_eq!(find("rl2f:teacher-retry", "all", 1).est.value, 0.0);
        assert!((find("rl2f:teacher-retry", "maze", 3).est.value - 0.5).abs() < 1e-12);
        // Between models: rl2f − base under the teacher at turn 3 is +1
        // everywhere; the difference in gains too (base gains nothing).
        assert_eq!(find("rl2f-base:teacher", "all", 3).est.value, 1.0);
        assert_eq!(find("rl2f-base:teacher:gain", "all", 3).est.value, 1.0);
        assert_eq!(find("rl2f-base:retry:gain", "arith", 3).est.value, 0.0);
        // Contrasts with a condition that was not evaluated are absent.
        assert!(!rows.iter().any(|r| r.contrast == "rl2f:teacher-shuffled"));
        let md = findings_section(&rows, 3, 2).unwrap();
        assert!(md.contains("`rl2f:teacher-retry`: +75.0"), "{md}");
        assert!(
            md.contains("`base:teacher-retry`: +0.0 [+0.0, +0.0] — includes zero"),
            "{md}"
        );
    }

    #[test]
    fn fix_rates_count_wrong_answers_fixed_at_the_next_turn() {
        // Task m1 solved at turn 2, m2 at turn 3, a1 never: at turn 1 all
        // three are wrong and one is fixed; at turn 2 two are wrong and
        // one is fixed.
        let mut rows = dialogue(0, "rl2f", "teacher", "m1", Some(2));
        rows.extend(dialogue(0, "rl2f", "teacher", "m2", Some(3)));
        rows.extend(dialogue(0, "rl2f", "teacher", "a1", None));
        let grid = Grid::new(&[(0, rows)]);
        let revisions = revision_rows(&grid, &HashMap::new(), 3);
        let at = |t: usize| {
            revisions
                .iter()
                .find(|r| r.domain == "all" && r.turn == t)
                .unwrap()
        };
        assert_eq!(at(1).n_wrong, 3);
        assert!((at(1).fix.value - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(at(2).n_wrong, 2);
        assert!((at(2).fix.value - 0.5).abs() < 1e-12);
        assert_eq!(at(1).n_revisions, 3);
        // No task table: nothing is judged.
        assert_eq!(at(1).n_judged, 0);
        assert!(at(1).targeted_rate.is_nan());
    }
}
