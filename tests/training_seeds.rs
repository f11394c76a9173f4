//! `run.seeds`: the seed-dependent stages run once per training seed into
//! `seed-<s>/` on shared tasks and tokenizer, `analyse` pools them, and
//! stage skipping and forced reruns work per seed.

use std::fs;

use didact_data::tables::{EvalTurnRow, Table, TrainLogRow, read_table};
use didact_e2e::{scratch, smoke_run};
use polars::prelude::SerReader;

#[test]
fn two_training_seeds_share_the_data_and_pool_in_the_report() {
    let dir = scratch();
    // The smoke budget, with fewer steps: this test is about the layout.
    // The head critic, so that a trained critic is covered end to end
    // beside the default `self` mode of the other pipeline tests.
    let sets = [
        "run.seeds=[0,1]",
        "student.iterations=2",
        "critic.mode=head",
        "critic.train.steps=4",
        "eval.conditions=[\"single\",\"retry\",\"teacher\",\"verdict\",\"shuffled\"]",
    ];
    let first = smoke_run(dir.path(), "pipeline", &sets).expect_ok();
    let run = dir.path().join("run");
    for shared in [
        "tasks.parquet",
        "tokenizer.json",
        "manifest.json",
        "report/report.md",
    ] {
        assert!(run.join(shared).exists(), "{shared}");
    }
    for seed in ["seed-0", "seed-1"] {
        for f in [
            "base/model.safetensors",
            "student/model.safetensors",
            "eval/turns.parquet",
            "config.toml",
        ] {
            assert!(run.join(seed).join(f).exists(), "{seed}/{f}");
        }
        assert!(
            !run.join(seed).join("tasks.parquet").exists(),
            "tasks are shared"
        );
    }
    // The head critic trained (a `self` critic would log no steps).
    let log = TrainLogRow::read(&run.join("seed-0/train_log.parquet")).unwrap();
    assert!(
        log.iter()
            .any(|r| r.stage == "critic" && r.metric == "train_loss"),
        "the head critic's training steps are logged"
    );
    // Different training seeds, different models, the same test tasks.
    let base0 = fs::read(run.join("seed-0/base/model.safetensors")).unwrap();
    let base1 = fs::read(run.join("seed-1/base/model.safetensors")).unwrap();
    assert_ne!(base0, base1);
    let tasks = |s: &str| {
        let mut t: Vec<String> = EvalTurnRow::read(&run.join(s).join("eval/turns.parquet"))
            .unwrap()
            .into_iter()
            .map(|r| r.task_id)
            .collect();
        t.sort();
        t.dedup();
        t
    };
    assert_eq!(tasks("seed-0"), tasks("seed-1"));
    let seed1_config = fs::read_to_string(run.join("seed-1/config.toml")).unwrap();
    assert!(seed1_config.contains("seed = 1"), "{seed1_config}");

    // The manifest keys per-seed stages by seed.
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    for key in ["data", "seed-0/pretrain", "seed-1/eval", "analyse"] {
        assert!(manifest["stages"][key].is_object(), "{key}");
    }
    assert_eq!(manifest["stages"]["analyse"]["metrics"]["n_seeds"], 2);

    // Every pooled row rests on both seeds.
    let report = run.join("report");
    for table in ["summary", "gains", "contrasts", "revisions"] {
        let df = polars::prelude::ParquetReader::new(
            fs::File::open(report.join(format!("{table}.parquet"))).unwrap(),
        )
        .finish()
        .unwrap();
        assert!(df.height() > 0, "{table}");
        let n = didact_data::tables::u32s(&df, "n_seeds").unwrap();
        if table == "revisions" {
            // A fix rate rests only on the seeds with a wrong answer there.
            assert!(
                n.iter().all(|v| *v <= 2) && n.contains(&2),
                "{table}: {n:?}"
            );
        } else {
            assert!(n.iter().all(|v| *v == 2), "{table}: n_seeds {n:?}");
        }
    }
    let by_seed = read_table(
        &report.join("contrasts_by_seed.parquet"),
        &didact_data::tables::CONTRASTS_BY_SEED,
    )
    .unwrap();
    assert!(by_seed.height() > 0);
    let md = fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("training seeds [0, 1]"), "{md}");
    assert!(md.contains("| seed 0 | seed 1 |"), "{md}");
    assert!(
        first.stdout().contains("rl2f:teacher-shuffled"),
        "{}",
        first.stdout()
    );

    // Everything is up to date: a second run trains nothing.
    let again = smoke_run(dir.path(), "pipeline", &sets).expect_ok();
    assert!(again.stdout().is_empty(), "{}", again.stdout());
    // A forced `eval` reruns both seeds; then only `analyse` is stale.
    let mut forced: Vec<&str> = sets.to_vec();
    forced.push("eval.max_new_tokens=12");
    smoke_run(dir.path(), "eval", &forced).expect_ok();
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let seq = |k: &str| manifest["stages"][k]["sequence"].as_u64().unwrap();
    assert!(seq("seed-0/eval") > seq("analyse") && seq("seed-1/eval") > seq("analyse"));
    let rerun = smoke_run(dir.path(), "pipeline", &forced).expect_ok();
    assert!(rerun.stdout().contains("analyse"), "{}", rerun.stdout());
    assert!(!rerun.stdout().contains("pretrain"), "{}", rerun.stdout());
}
