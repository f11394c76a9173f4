//! `didact data` / `pipeline` / `show` on configs/smoke.toml, as a user runs them.

use std::collections::HashMap;
use std::fs;

use didact_data::tables::{SyntheticDialogue, Table, read_tasks};
use didact_data::{Dialogue, Split, Tokenizer};
use didact_e2e::{didact, scratch, smoke_config};

fn data(dir: &std::path::Path, run: &str, extra: &[&str]) -> didact_e2e::Run {
    let config = smoke_config();
    let mut args = vec![
        "data",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run,
    ];
    args.extend_from_slice(extra);
    didact(dir, &args)
}

#[test]
fn data_stage_writes_checked_tables_and_a_manifest() {
    let dir = scratch();
    data(dir.path(), "run", &[]).expect_ok();
    let run = dir.path().join("run");
    let tasks = read_tasks(&run.join("tasks.parquet")).unwrap();
    assert_eq!(tasks.len(), 4 * 72);
    for kind in didact_data::DomainKind::ALL {
        let count = |s| {
            tasks
                .iter()
                .filter(|r| r.task.domain == kind && r.split == s)
                .count()
        };
        assert_eq!(
            (count(Split::Train), count(Split::Val), count(Split::Test)),
            (48, 12, 12),
            "{kind}"
        );
    }
    for r in &tasks {
        let verdict = r
            .task
            .domain
            .domain()
            .verify(&r.task, &r.task.solution)
            .unwrap();
        assert!(verdict.is_correct(), "{}", r.task.task_id);
    }

    let dialogues = SyntheticDialogue::read(&run.join("synthetic_dialogues.parquet")).unwrap();
    assert_eq!(dialogues.len(), 4 * 48);
    assert!(dialogues.iter().all(|d| !d.leak_blocked));

    let tokenizer = Tokenizer::load(&run.join("tokenizer.json")).unwrap();
    for d in &dialogues {
        let parsed = Dialogue::parse(&d.text).unwrap();
        assert_eq!(parsed.render(), d.text);
        let ids = tokenizer.encode(&d.feedback).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), d.feedback);
    }

    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let rec = &manifest["stages"]["data"];
    assert_eq!(rec["config_hash"].as_str().unwrap().len(), 16);
    assert!(rec["wall_time_s"].as_f64().unwrap() > 0.0);
    assert!(rec["git_revision"].is_string());
    assert_eq!(rec["outputs"].as_array().unwrap().len(), 3);
    assert_eq!(rec["metrics"]["leaks"]["maze"]["leaks"], 0);
    assert!(run.join("config.toml").exists());
    let leftovers: Vec<_> = fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn up_to_date_stage_is_skipped_and_force_or_new_config_reruns_it() {
    let dir = scratch();
    data(dir.path(), "run", &[]).expect_ok();
    let manifest = || fs::read_to_string(dir.path().join("run/manifest.json")).unwrap();
    let first = manifest();
    let again = data(dir.path(), "run", &[]).expect_ok();
    assert!(again.stderr().contains("up to date"), "{}", again.stderr());
    assert_eq!(
        manifest(),
        first,
        "a skipped stage must not rewrite the manifest"
    );
    let forced = data(dir.path(), "run", &["--force"]).expect_ok();
    assert!(!forced.stderr().contains("up to date"));
    assert_ne!(manifest(), first);
    let changed = data(dir.path(), "run", &["--set", "data.seed=8"]).expect_ok();
    assert!(!changed.stderr().contains("up to date"));
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seed_other_tasks() {
    let dir = scratch();
    data(dir.path(), "a", &[]).expect_ok();
    data(dir.path(), "b", &[]).expect_ok();
    data(dir.path(), "c", &["--set", "data.seed=8"]).expect_ok();
    let bytes = |r: &str, f: &str| fs::read(dir.path().join(r).join(f)).unwrap();
    for f in [
        "tasks.parquet",
        "synthetic_dialogues.parquet",
        "tokenizer.json",
    ] {
        assert_eq!(
            bytes("a", f),
            bytes("b", f),
            "{f} differs between identical runs"
        );
    }
    let ta = read_tasks(&dir.path().join("a/tasks.parquet")).unwrap();
    let tc = read_tasks(&dir.path().join("c/tasks.parquet")).unwrap();
    let prompts =
        |t: &[didact_data::TaskRow]| t.iter().map(|r| r.task.prompt.clone()).collect::<Vec<_>>();
    assert_ne!(prompts(&ta), prompts(&tc));
}

#[test]
fn no_task_text_appears_in_two_splits() {
    let dir = scratch();
    data(dir.path(), "run", &[]).expect_ok();
    let tasks = read_tasks(&dir.path().join("run/tasks.parquet")).unwrap();
    let mut split_of: HashMap<(didact_data::DomainKind, String), Split> = HashMap::new();
    for r in &tasks {
        let normalised: String = r.task.prompt.split_whitespace().collect();
        if let Some(prev) = split_of.insert((r.task.domain, normalised), r.split) {
            panic!("{} is in {:?} and {:?}", r.task.prompt, prev, r.split);
        }
    }
}

#[test]
fn run_dir_defaults_to_runs_slash_config_stem_and_pipeline_runs_data() {
    let dir = scratch();
    fs::create_dir(dir.path().join("configs")).unwrap();
    fs::copy(smoke_config(), dir.path().join("configs/tiny.toml")).unwrap();
    didact(
        dir.path(),
        &["pipeline", "--config", "configs/tiny.toml", "-q"],
    )
    .expect_ok();
    assert!(dir.path().join("runs/tiny/tasks.parquet").exists());
    assert!(dir.path().join("runs/tiny/manifest.json").exists());
}

#[test]
fn show_filters_tasks_and_dialogues() {
    let dir = scratch();
    data(dir.path(), "run", &[]).expect_ok();
    let out = didact(
        dir.path(),
        &[
            "show",
            "--run-dir",
            "run",
            "--domain",
            "maze",
            "--split",
            "test",
            "-n",
            "3",
        ],
    )
    .expect_ok()
    .stdout();
    assert_eq!(out.matches("prompt:").count(), 3, "{out}");
    assert_eq!(out.matches("[maze · test").count(), 3, "{out}");
    let out = didact(
        dir.path(),
        &[
            "show",
            "dialogues",
            "--run-dir",
            "run",
            "--domain",
            "arith",
            "-n",
            "2",
        ],
    )
    .expect_ok()
    .stdout();
    // configs/smoke.toml: 1 to 3 wrong attempts, each answered, then the answer.
    let (teacher, student) = (
        out.matches("teacher │").count(),
        out.matches("student │").count(),
    );
    assert!((2..=6).contains(&teacher), "{out}");
    assert_eq!(student, teacher + 2, "{out}");
    let id = out
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches("-s0")
        .to_string();
    let one = didact(dir.path(), &["show", "--run-dir", "run", "--id", &id])
        .expect_ok()
        .stdout();
    assert_eq!(one.matches("prompt:").count(), 1, "{one}");
}

#[test]
fn help_explains_every_global_flag() {
    let dir = scratch();
    let help = didact(dir.path(), &["--help"]).expect_ok().stdout();
    for flag in [
        "--config",
        "--run-dir",
        "--set",
        "--force",
        "--verbose",
        "--quiet",
        "data",
        "pipeline",
        "show",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
