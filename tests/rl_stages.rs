//! `didact student`, `baseline` and `eval` on configs/smoke.toml: the RL²F
//! and baseline checkpoints, the rollout table and its invariants, the
//! per-iteration train log, reproducible rollouts, and the evaluation grid.

use std::collections::BTreeMap;
use std::fs;

use burn::backend::Flex;
use didact_data::tables::{self, EvalTurnRow, RolloutRow, Table, TrainLogRow, read_table};
use didact_e2e::{didact, scratch, smoke_config, smoke_stage};
use polars::prelude::SerReader;

#[test]
fn rl_stages_write_checkpoints_rollouts_logs_and_the_eval_grid() {
    let dir = scratch();
    smoke_stage(dir.path(), "pipeline");
    let run = dir.path().join("run");
    for d in ["student", "baseline/single_turn_rl", "baseline/offline_sft"] {
        didact_student::checkpoint::load::<Flex>(&run.join(d), &Default::default())
            .unwrap_or_else(|e| panic!("{d}: {e}"));
    }
    assert!(!run.join("checkpoints").exists(), "resume state is removed");

    // configs/smoke.toml: 4 iterations × 4 tasks × 4 members, 3 turns.
    let rows = RolloutRow::read(&run.join("rollouts.parquet")).unwrap();
    let mut dialogues: BTreeMap<(u64, String, u32), Vec<_>> = BTreeMap::new();
    for r in &rows {
        dialogues
            .entry((r.iteration, r.task_id.clone(), r.member))
            .or_default()
            .push(r);
    }
    assert_eq!(dialogues.len(), 4 * 4 * 4);
    for turns in dialogues.values() {
        let solved = turns.iter().position(|t| t.verdict == "correct");
        let expected = solved.map_or(0.0, |t| 0.7f64.powi(t as i32));
        for (i, t) in turns.iter().enumerate() {
            assert_eq!(t.turn as usize, i + 1);
            assert!((t.reward - expected).abs() < 1e-12);
            assert!(t.tokens >= 1 && t.logprob <= 0.0);
            // Feedback follows every wrong attempt but the last.
            let last = i + 1 == turns.len();
            assert_eq!(t.feedback.is_empty(), last, "{t:?}");
        }
        assert!(turns.len() <= 3);
        if solved.is_some() {
            assert_eq!(solved, Some(turns.len() - 1));
        }
    }

    let log = TrainLogRow::read(&run.join("train_log.parquet")).unwrap();
    let student = |metric: &str| {
        log.iter()
            .filter(|r| r.stage == "student" && r.metric == metric)
            .count()
    };
    for m in [
        "reward_mean",
        "solve_rate_turn_1",
        "turns_mean",
        "sample_tokens_per_s",
    ] {
        assert_eq!(student(m), 4, "{m}");
    }
    assert_eq!(
        student("val_accuracy_turn_3"),
        3,
        "validated before training, at 2 and at 4"
    );
    assert!(
        log.iter()
            .any(|r| r.stage == "baseline_single_turn_rl" && r.metric == "reward_mean")
    );

    let grid = EvalTurnRow::read(&run.join("eval/turns.parquet")).unwrap();
    let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &grid {
        assert!(r.turn >= 1 && r.turn <= 3);
        if r.condition == "single" {
            assert_eq!(r.turn, 1);
        }
        if r.condition == "retry" && !r.feedback.is_empty() {
            assert_eq!(r.feedback, "Try again.");
            assert_eq!(r.feedback_source, "retry");
        }
        if r.condition == "verdict" && !r.feedback.is_empty() {
            assert_eq!(r.feedback_source, "verdict");
        }
        if r.condition == "shuffled" && !r.feedback.is_empty() {
            assert_eq!(r.feedback_source, "shuffled");
            assert_ne!(r.feedback, "Try again.");
        }
        if r.condition == "critic" {
            // Without an oracle the critic judges every attempt.
            assert!(r.judged == "correct" || r.judged == "wrong", "{r:?}");
            assert!(r.feedback.is_empty() || r.feedback_source == "critic");
        }
        *cells
            .entry((r.model.clone(), r.condition.clone()))
            .or_default() += (r.turn == 1) as usize;
    }
    assert_eq!(cells.len(), 4 * 7, "{cells:?}");
    assert!(cells.values().all(|n| *n == 24), "6 test tasks × 4 domains");

    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let m = &manifest["stages"]["eval"]["metrics"];
    assert!(m["cumulative_accuracy"]["rl2f/teacher"].is_array());
    assert!(m["paired_differences"]["rl2f-base@3"]["ci_high"].is_number());
    assert!(m["shuffled"]["answered"].as_u64().unwrap() > 0);

    // The evaluated test tasks are a stratified draw: every difficulty of
    // each domain's test split is represented.
    let tasks = tables::read_tasks(&run.join("tasks.parquet")).unwrap();
    let mut in_split: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.split == didact_data::Split::Test) {
        in_split
            .entry(t.task.domain.name().to_string())
            .or_default()
            .insert(t.task.difficulty);
    }
    let mut evaluated: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for r in &grid {
        evaluated
            .entry(r.domain.name().to_string())
            .or_default()
            .insert(r.difficulty);
    }
    assert_eq!(evaluated, in_split);

    // `show eval` prints the evaluation dialogues it is asked for.
    let config = smoke_config();
    let out = didact(
        dir.path(),
        &[
            "show",
            "eval",
            "--run-dir",
            "run",
            "--model",
            "rl2f",
            "--condition",
            "teacher",
            "--domain",
            "maze",
            "-n",
            "2",
        ],
    )
    .expect_ok()
    .stdout();
    assert_eq!(out.matches("rl2f · teacher · maze-").count(), 2, "{out}");
    assert_eq!(out.matches("task │").count(), 2, "{out}");
    assert!(out.contains(" 1 student │ "), "{out}");

    // The critic and its data.
    didact_student::checkpoint::load::<Flex>(&run.join("critic"), &Default::default()).unwrap();
    let critiques = read_table(&run.join("critiques.parquet"), &tables::CRITIQUES).unwrap();
    assert!(critiques.height() > 0);

    // The report: one summary row per (model, condition, domain, turn),
    // `all` pooled; gains on every multi-turn condition.
    let report = run.join("report");
    for f in [
        "report.md",
        "summary.parquet",
        "gains.parquet",
        "gains.png",
        "accuracy_rl2f_all.png",
        "self_correction_rl2f.png",
        "self_correction_base.png",
    ] {
        assert!(report.join(f).exists(), "report/{f} missing");
    }
    let summary = polars::prelude::ParquetReader::new(
        fs::File::open(report.join("summary.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    for c in [
        "model",
        "condition",
        "domain",
        "turn",
        "cum_accuracy",
        "ci_low",
        "ci_high",
        "n_tasks",
    ] {
        assert!(summary.column(c).is_ok(), "summary lacks {c}");
    }
    assert!(summary.column("n_seeds").is_ok());
    // 4 models × (single: 1 turn + 6 conditions × 3 turns) × 5 domains.
    assert_eq!(summary.height(), 4 * 19 * 5);
    let gains =
        polars::prelude::ParquetReader::new(fs::File::open(report.join("gains.parquet")).unwrap())
            .finish()
            .unwrap();
    assert_eq!(gains.height(), 4 * 6 * 5);
    // The recovered fraction and its interval sit on critic rows alone, the
    // interval ordered where there is one.
    let records = tables::GainRecord::read(&report.join("gains.parquet")).unwrap();
    for r in &records {
        if r.condition != "critic" {
            assert!(
                r.recovered_fraction.is_nan() && r.recovered_ci_low.is_nan(),
                "{r:?}"
            );
        } else if !r.recovered_ci_low.is_nan() {
            assert!(r.recovered_ci_low <= r.recovered_ci_high, "{r:?}");
        }
    }
    // Paired contrasts: every required name at turn K, pooled.
    let contrasts = read_table(&report.join("contrasts.parquet"), &tables::CONTRASTS).unwrap();
    let names: std::collections::BTreeSet<String> = tables::strs(&contrasts, "contrast")
        .unwrap()
        .into_iter()
        .map(str::to_string)
        .collect();
    for model in ["base", "single_turn_rl", "offline_sft", "rl2f"] {
        for pair in [
            "teacher-retry",
            "teacher-shuffled",
            "teacher-verdict",
            "verdict-retry",
            "critic_oracle_stop-retry",
            "critic-single",
        ] {
            assert!(names.contains(&format!("{model}:{pair}")), "{model}:{pair}");
        }
    }
    for c in [
        "rl2f-base:teacher",
        "rl2f-single_turn_rl:teacher",
        "rl2f-offline_sft:teacher",
        "rl2f-base:teacher:gain",
        "rl2f-base:retry:gain",
    ] {
        assert!(names.contains(c), "{c}");
    }
    let revisions = polars::prelude::ParquetReader::new(
        fs::File::open(report.join("revisions.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    for c in ["fix_rate", "targeted_rate", "n_judged", "n_seeds"] {
        assert!(revisions.column(c).is_ok(), "revisions lacks {c}");
    }
    // The critic's messages read against the teacher's forms: a pooled row
    // per model and critic condition, shares within 0..=1 where defined.
    let messages =
        tables::CriticMessageRecord::read(&report.join("critic_messages.parquet")).unwrap();
    let pooled = messages
        .iter()
        .find(|r| r.model == "rl2f" && r.condition == "critic_oracle_stop" && r.domain == "all")
        .expect("a pooled row for the RL²F critic");
    assert!(pooled.n_messages > 0, "{pooled:?}");
    for r in &messages {
        for share in [r.well_formed, r.claims_true, r.precision, r.recall] {
            assert!(share.is_nan() || (0.0..=1.0).contains(&share), "{r:?}");
        }
        assert!(r.n_claims <= r.n_messages, "{r:?}");
    }
    let md = fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("well-formed %"), "{md}");
    // The verdict's calibration on held-out attempts, per domain, and the
    // attempts its threshold was set on (first ones, by default).
    let verdict: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("critic/verdict.json")).unwrap())
            .unwrap();
    assert_eq!(verdict["calibrated_on"], "first", "{verdict}");
    assert!(
        verdict["calibration"]["all"]["attempts"].as_u64().unwrap() > 0,
        "{verdict}"
    );
    assert!(md.contains("set on first held-out attempts"), "{md}");
    assert!(
        md.contains(
            "| domain | attempts | right % | mean P | ECE | Brier | AUROC | AUROC, first attempts |"
        ),
        "{md}"
    );
    assert!(
        md.contains("## Headline") && md.contains("| rl2f | critic |"),
        "{md}"
    );
    assert!(md.starts_with("# didact report\n"), "{md}");
    assert!(
        md.contains("## Findings: which paired contrasts exclude zero"),
        "{md}"
    );
    // The sml stage is off by default, and the report says how to run it.
    assert!(
        md.contains("## Social meta-learning\n\nNot run: `just sml`"),
        "{md}"
    );

    // Same seed, same rollouts: rerun the stage from scratch.
    let before = fs::read(run.join("rollouts.parquet")).unwrap();
    didact(
        dir.path(),
        &[
            "student",
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            "run",
            "--force",
        ],
    )
    .expect_ok();
    let again = RolloutRow::read(&run.join("rollouts.parquet")).unwrap();
    assert_eq!(again, rows);
    assert!(!before.is_empty());

    // The cross-domain matrix, with one student trained on maze alone. The
    // forced `student` rerun above makes every stage reading its
    // checkpoint stale, so the pipeline reruns them too.
    let finished = |stage: &str| {
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
        m["stages"][stage]["sequence"].as_u64().unwrap()
    };
    let eval_before = finished("eval");
    didact(
        dir.path(),
        &[
            "pipeline",
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            "run",
            "--set",
            "transfer.domains=[\"maze\"]",
            "--set",
            "transfer.iterations=2",
            "--set",
            "transfer.tasks_per_domain=6",
        ],
    )
    .expect_ok();
    assert!(finished("eval") > eval_before, "eval reran after student");
    didact_student::checkpoint::load::<Flex>(&run.join("transfer/maze"), &Default::default())
        .unwrap();
    let transfer = EvalTurnRow::read(&run.join("transfer/turns.parquet")).unwrap();
    let mut first_turns: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &transfer {
        assert_eq!(r.condition, "teacher");
        *first_turns.entry(r.model.as_str()).or_default() += (r.turn == 1) as usize;
    }
    assert_eq!(
        first_turns,
        BTreeMap::from([("base", 24), ("rl2f", 24), ("rl2f_maze", 24)])
    );
    let matrix = polars::prelude::ParquetReader::new(
        fs::File::open(report.join("transfer.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    assert_eq!(matrix.height(), 3 * 4, "3 models × 4 evaluated domains");
    let md = fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("## Cross-domain transfer") && md.contains("| maze |"),
        "{md}"
    );
}
