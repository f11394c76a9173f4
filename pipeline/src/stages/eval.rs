//! The `eval` stage: every model under every condition on the held-out test
//! tasks, up to K turns, greedy by default. Writes `eval/turns.parquet` (one
//! row per model, condition, seed, task and turn) and prints cumulative
//! accuracy by turn with paired 95% confidence intervals for the
//! comparisons the method is judged by.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use didact_critic::Critic;
use didact_data::tables::Table;
use didact_data::tables::{self, EvalTurnRow, read_tasks};
use didact_data::teaching::LeakTally;
use didact_data::{FeedbackLevel, Split, Task, Tokenizer};
use didact_student::Llama;
use didact_student::checkpoint;
use didact_student::kernels::TrainBackend;
use didact_student::rollout::{Responder, ShuffledTeacher, Teacher, run_dialogues_with};
use didact_student::teachers::{HttpTeacher, ModelTeacher, TeacherConfig, TeacherKind};
use serde_json::json;

use super::common::{
    Stage, StageContext, StageOutput, dialogue_params, dialogue_seed, subset, turn_rows,
};
use super::verdict::read_verdict;
use crate::analysis::{Outcomes, cumulative, mean_of, outcome_values, paired, two_level_ci};
use crate::config::{Condition, EvalConfig};
use crate::layout::{
    BASE_DIR, BASE_WEIGHTS, CRITIC_DIR, CRITIC_VERDICT_FILE, CRITIC_WEIGHTS, MODELS,
    OFFLINE_WEIGHTS, SINGLE_TURN_WEIGHTS, STUDENT_WEIGHTS, TASKS_FILE, TOKENIZER_FILE, TURNS_FILE,
};
use crate::progress;

/// Bootstrap resamples of the paired intervals printed by the stage.
const RESAMPLES: usize = 1000;

pub const STAGE: Stage = Stage {
    name: "eval",
    per_seed: true,
    inputs: &[
        TASKS_FILE,
        TOKENIZER_FILE,
        BASE_WEIGHTS,
        STUDENT_WEIGHTS,
        SINGLE_TURN_WEIGHTS,
        OFFLINE_WEIGHTS,
        CRITIC_WEIGHTS,
        CRITIC_VERDICT_FILE,
    ],
    config_section: |c| match c.teacher.kind {
        TeacherKind::Programmatic => json!({"eval": c.eval}),
        _ => json!({"eval": c.eval, "teacher": c.teacher}),
    },
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| run_on::<B>(ctx, &device))
}

fn run_on<B: TrainBackend>(ctx: &StageContext, device: &B::Device) -> Result<StageOutput> {
    let cfg = &ctx.config.eval;
    let tokenizer = Tokenizer::load(&ctx.shared(TOKENIZER_FILE))?;
    let rows = read_tasks(&ctx.shared(TASKS_FILE))?;
    let test: Vec<Task> = rows
        .iter()
        .filter(|r| r.split == Split::Test)
        .map(|r| r.task.clone())
        .collect();
    let tasks = subset(ctx.config, &test, cfg.tasks_per_domain);
    anyhow::ensure!(!tasks.is_empty(), "eval: no test tasks in {TASKS_FILE}");
    let jobs = MODELS.len() * cfg.conditions.len() * cfg.seeds;
    tracing::info!(
        "eval: {} models × {} conditions × {} seeds on {} test tasks, up to {} turns",
        MODELS.len(),
        cfg.conditions.len(),
        cfg.seeds,
        tasks.len(),
        cfg.max_turns
    );
    let bar = progress::bar(ctx.progress, jobs as u64, "evaluating");
    let mut out_rows = Vec::new();
    let mut outcomes: BTreeMap<(&str, Condition), Outcomes> = BTreeMap::new();
    let needs_critic = cfg
        .conditions
        .iter()
        .any(|c| matches!(c, Condition::Critic | Condition::CriticOracleStop));
    let (critic, verdict) = if needs_critic {
        let dir = ctx.run_dir.join(CRITIC_DIR);
        let critic = checkpoint::load::<B::InnerBackend>(&dir, device)?;
        (Some(critic), Some(read_verdict(&dir)?))
    } else {
        (None, None)
    };
    // The `teacher` condition's teacher is the one the student learnt from.
    let teacher_cfg = &ctx.config.teacher;
    let asks_teacher = cfg.conditions.contains(&Condition::Teacher);
    let teacher_model = if asks_teacher && teacher_cfg.kind == TeacherKind::Model {
        Some(checkpoint::load::<B::InnerBackend>(
            &ctx.run_dir.join(BASE_DIR),
            device,
        )?)
    } else {
        None
    };
    let tally = Arc::new(Mutex::new(LeakTally::default()));
    // Wrong attempts the shuffled control answered, and how many of them
    // got the real critique because no other wrong answer drew a
    // different one.
    let mut shuffled_counts = (0usize, 0usize);
    for (name, dir) in MODELS {
        let model = checkpoint::load::<B::InnerBackend>(&ctx.run_dir.join(dir), device)?;
        for &condition in &cfg.conditions {
            let (max_turns, level, source) = condition_setup(cfg, condition);
            let mut teacher = Teacher(level);
            let mut shuffled = ShuffledTeacher::new(level, dialogue_seed(0));
            let mut configured = configured_teacher::<B>(
                condition,
                teacher_cfg,
                teacher_model.as_ref(),
                &tokenizer,
                &tally,
                device,
            );
            let mut critic_responder = critic.as_ref().map(|c| Critic {
                model: c,
                tokenizer: &tokenizer,
                max_tokens: cfg.critique_tokens,
                oracle_stop: condition == Condition::CriticOracleStop,
                thresholds: verdict.as_ref().map(|v| v.by_domain()).unwrap_or_default(),
                default_threshold: verdict.as_ref().map_or(0.5, |v| v.default_threshold),
                batch_size: cfg.batch_size,
                device: device.clone(),
            });
            let params = dialogue_params(cfg, max_turns, level, ctx.config.data.restate_task);
            for seed in 0..cfg.seeds {
                bar.set_message(format!("{name} · {}", condition.name()));
                let responder: &mut dyn Responder = match (condition, &mut critic_responder) {
                    (Condition::Critic | Condition::CriticOracleStop, Some(c)) => c,
                    (Condition::Shuffled, _) => &mut shuffled,
                    _ => match configured.as_deref_mut() {
                        Some(r) => r,
                        None => &mut teacher,
                    },
                };
                let runs = run_dialogues_with(
                    &model,
                    &tokenizer,
                    &tasks,
                    1,
                    &params,
                    responder,
                    dialogue_seed(seed),
                    device,
                )?;
                let entry = outcomes.entry((name, condition)).or_default();
                for run in &runs {
                    entry.insert(
                        (seed, run.task_index),
                        run.turns.iter().map(|t| t.verdict.is_correct()).collect(),
                    );
                    out_rows.extend(turn_rows(name, condition, seed, &tasks, run, source));
                }
                bar.inc(1);
            }
            if condition == Condition::Shuffled {
                shuffled_counts.0 += shuffled.answered;
                shuffled_counts.1 += shuffled.same_as_real;
            }
        }
    }
    bar.finish_and_clear();
    // The teacher's messages in the teacher condition, and how many of them
    // the leak check replaced.
    let teacher_leaks = out_rows
        .iter()
        .filter(|r| r.condition == Condition::Teacher.name() && r.feedback_source == "teacher")
        .fold((0, 0), |(n, l), r| (n + 1, l + r.leak_blocked as usize));
    write_turns(&ctx.run_dir.join(TURNS_FILE), &out_rows)?;

    let (summary, accuracy, comparisons) = summarise(cfg, tasks.len(), &outcomes);
    Ok(StageOutput {
        outputs: vec![TURNS_FILE.into()],
        metrics: json!({
            "tasks": tasks.len(),
            "seeds": cfg.seeds,
            "cumulative_accuracy": accuracy,
            "paired_differences": comparisons,
            "teacher": {
                "kind": teacher_cfg.kind,
                "leak_tally": *tally.lock().expect("tally"),
                "messages": teacher_leaks.0,
                "leak_blocked": teacher_leaks.1,
            },
            "shuffled": {
                "answered": shuffled_counts.0,
                "same_as_real": shuffled_counts.1,
            },
        }),
        summary,
    })
}

/// The teacher of the `teacher` condition when it is not the programmatic
/// one: the model teacher (the frozen base model) or the HTTP teacher.
fn configured_teacher<'a, B: TrainBackend>(
    condition: Condition,
    teacher_cfg: &'a TeacherConfig,
    teacher_model: Option<&'a Llama<B::InnerBackend>>,
    tokenizer: &'a Tokenizer,
    tally: &Arc<Mutex<LeakTally>>,
    device: &B::Device,
) -> Option<Box<dyn Responder + 'a>> {
    match (condition, teacher_cfg.kind, teacher_model) {
        (Condition::Teacher, TeacherKind::Model, Some(m)) => Some(Box::new(ModelTeacher::new(
            m,
            tokenizer,
            teacher_cfg,
            dialogue_seed(0),
            device.clone(),
            tally.clone(),
        ))),
        (Condition::Teacher, TeacherKind::Http, _) => {
            Some(Box::new(HttpTeacher::new(teacher_cfg, tally.clone())))
        }
        _ => None,
    }
}

/// Writes the turn rows (`eval/turns.parquet`).
fn write_turns(path: &std::path::Path, rows: &[EvalTurnRow]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    tables::EvalTurnRow::write(path, rows)?;
    Ok(())
}

/// The stage's summary lines: cumulative accuracy by turn per condition
/// and model, and the paired differences the method is judged by; with the
/// same numbers as JSON for the manifest.
fn summarise(
    cfg: &EvalConfig,
    n_tasks: usize,
    outcomes: &BTreeMap<(&str, Condition), Outcomes>,
) -> (
    Vec<String>,
    serde_json::Map<String, serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut summary = Vec::new();
    let mut accuracy = serde_json::Map::new();
    for &condition in &cfg.conditions {
        let turns = if condition == Condition::Single {
            1
        } else {
            cfg.max_turns
        };
        summary.push(format!(
            "eval · {} · cumulative accuracy by turn (n = {} tasks × {} seeds)",
            condition.name(),
            n_tasks,
            cfg.seeds
        ));
        for (name, _) in MODELS {
            let acc = cumulative(&outcomes[&(name, condition)], turns);
            summary.push(format!(
                "  {name:<15} {}",
                acc.iter()
                    .map(|a| format!("{:>6.1}%", 100.0 * a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            accuracy.insert(format!("{name}/{}", condition.name()), json!(acc));
        }
    }
    let mut comparisons = serde_json::Map::new();
    if cfg.conditions.contains(&Condition::Teacher) {
        let t = outcomes;
        let k = cfg.max_turns;
        for (a, b, turn) in [
            ("rl2f", "base", k),
            ("rl2f", "single_turn_rl", k),
            ("rl2f", "offline_sft", k),
            ("rl2f", "base", 1),
        ] {
            let d = paired(
                &outcome_values(&t[&(a, Condition::Teacher)], turn),
                &outcome_values(&t[&(b, Condition::Teacher)], turn),
            );
            let mean = mean_of(&d);
            let (lo, hi) = two_level_ci(&d, RESAMPLES, 7);
            summary.push(format!(
                "eval · teacher · {a} − {b} at turn {turn}: {:+.1} points (95% CI {:+.1} to {:+.1}, paired bootstrap over tasks)",
                100.0 * mean,
                100.0 * lo,
                100.0 * hi
            ));
            comparisons.insert(
                format!("{a}-{b}@{turn}"),
                json!({"difference": mean, "ci_low": lo, "ci_high": hi}),
            );
        }
    }
    (summary, accuracy, comparisons)
}

/// A condition's attempts at most, the feedback level its teacher answers
/// at, and the `feedback_source` its rows carry.
fn condition_setup(cfg: &EvalConfig, condition: Condition) -> (usize, FeedbackLevel, &'static str) {
    match condition {
        Condition::Single => (1, FeedbackLevel::Retry, ""),
        Condition::Retry => (cfg.max_turns, FeedbackLevel::Retry, "retry"),
        Condition::Teacher => (cfg.max_turns, cfg.feedback_level, "teacher"),
        Condition::Verdict => (cfg.max_turns, FeedbackLevel::Verdict, "verdict"),
        Condition::Shuffled => (cfg.max_turns, cfg.feedback_level, "shuffled"),
        Condition::Critic | Condition::CriticOracleStop => {
            (cfg.max_turns, cfg.feedback_level, "critic")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::correct_at;

    #[test]
    fn paired_differences_on_a_hand_made_grid() {
        // Four tasks: a solves 0 and 1 (turns 1 and 3), b solves 0 at turn 2.
        let grid = |rows: [Vec<bool>; 4]| -> Outcomes {
            rows.into_iter()
                .enumerate()
                .map(|(i, s)| ((0, i), s))
                .collect()
        };
        let a = grid([
            vec![true],
            vec![false, false, true],
            vec![false; 4],
            vec![false; 4],
        ]);
        let b = grid([
            vec![false, true],
            vec![false; 4],
            vec![false; 4],
            vec![false; 4],
        ]);
        assert_eq!(cumulative(&a, 3), vec![0.25, 0.25, 0.5]);
        let d1 = paired(&outcome_values(&a, 1), &outcome_values(&b, 1));
        assert!((mean_of(&d1) - 0.25).abs() < 1e-12);
        let d3 = paired(&outcome_values(&a, 3), &outcome_values(&b, 3));
        assert!((mean_of(&d3) - 0.25).abs() < 1e-12);
        // d = [0, 1, 0, 0]: a task resample has 0 to 4 ones; the interval
        // stays within [0, 1] and brackets the mean.
        let (lo, hi) = two_level_ci(&d3, 1000, 7);
        assert!(
            (0.0..0.25).contains(&lo) && hi > 0.25 && hi <= 1.0,
            "{lo} {hi}"
        );
    }

    #[test]
    fn sampling_seeds_of_one_task_are_one_unit_not_independent_pairs() {
        // Two sampling seeds of the same four tasks give the same interval
        // as one: a repeated task adds no information about other tasks.
        let one: Outcomes = (0..4).map(|i| ((0, i), vec![i % 2 == 0])).collect();
        let two: Outcomes = (0..2)
            .flat_map(|s| (0..4).map(move |i| ((s, i), vec![i % 2 == 0])))
            .collect();
        let none: Outcomes = (0..4).map(|i| ((0, i), vec![false])).collect();
        let d1 = paired(&outcome_values(&one, 1), &outcome_values(&none, 1));
        let d2 = paired(&outcome_values(&two, 1), &outcome_values(&none, 1));
        assert_eq!(d1, d2);
        assert_eq!(two_level_ci(&d1, 500, 3), two_level_ci(&d2, 500, 3));
    }

    #[test]
    fn without_an_oracle_the_standing_answer_counts() {
        // Right at turn 1, talked out of it at turn 2, stopped there.
        let flip = [true, false];
        assert!(correct_at(&flip, 1));
        assert!(!correct_at(&flip, 2));
        assert!(!correct_at(&flip, 4), "the final answer stands");
        assert!(!correct_at(&[], 1));
    }
}
