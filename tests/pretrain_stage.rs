//! `didact pretrain` on configs/smoke.toml: a base checkpoint in Hugging Face
//! layout that loads back, a train log, and validation accuracy in the
//! manifest.

use std::fs;

use burn::backend::Flex;
use didact_data::tables::{Table, TrainLogRow};
use didact_e2e::{didact, scratch, smoke_config, smoke_run, smoke_stage};

#[test]
fn pretrain_writes_a_loadable_base_checkpoint_and_a_train_log() {
    let dir = scratch();
    let config = smoke_config();
    let config = config.to_str().unwrap();
    smoke_stage(dir.path(), "pipeline");
    let run = dir.path().join("run");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(run.join("base").join(f).exists(), "base/{f} missing");
    }
    assert!(
        !run.join("checkpoints/pretrain").exists(),
        "resume checkpoints are removed after a finished run"
    );

    let model =
        didact_student::checkpoint::load::<Flex>(&run.join("base"), &Default::default()).unwrap();
    let tokenizer = didact_data::Tokenizer::load(&run.join("base/tokenizer.json")).unwrap();
    assert_eq!(model.config().vocab_size, tokenizer.vocab_size());
    let hf: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("base/config.json")).unwrap()).unwrap();
    assert_eq!(hf["model_type"], "llama");
    assert_eq!(hf["num_key_value_heads"], 2);

    let log = TrainLogRow::read(&run.join("train_log.parquet")).unwrap();
    let losses: Vec<f64> = log
        .iter()
        .filter(|r| r.stage == "pretrain" && r.metric == "train_loss")
        .map(|r| r.value)
        .collect();
    assert_eq!(losses.len(), 30);
    let head: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = losses[25..].iter().sum::<f64>() / 5.0;
    assert!(tail < head, "training loss did not fall: {losses:?}");
    for domain in ["arith", "listops", "sudoku", "maze"] {
        for metric in [
            format!("val_accuracy_{domain}"),
            format!("val_after_teacher_accuracy_{domain}"),
            format!("val_after_retry_accuracy_{domain}"),
        ] {
            let values: Vec<f64> = log
                .iter()
                .filter(|r| r.metric == metric)
                .map(|r| r.value)
                .collect();
            assert_eq!(values.len(), 2, "{metric} at steps 15 and 30");
            assert!(
                values.iter().all(|v| (0.0..=1.0).contains(v)),
                "{metric}: {values:?}"
            );
        }
    }

    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let rec = &manifest["stages"]["pretrain"];
    assert!(rec["metrics"]["val_accuracy"]["all"].is_number());
    assert!(rec["metrics"]["tokens_per_s"].as_f64().unwrap() > 0.0);

    // Up to date now; a changed data setting must not train on stale tables.
    let again = didact(
        dir.path(),
        &["pretrain", "--config", config, "--run-dir", "run"],
    )
    .expect_ok();
    assert!(
        again.stderr().contains("pretrain: up to date"),
        "{}",
        again.stderr()
    );
    let line = didact(
        dir.path(),
        &[
            "pretrain",
            "--config",
            config,
            "--run-dir",
            "run",
            "--set",
            "data.seed=9",
        ],
    )
    .error_line();
    assert!(
        line.contains("stage data, which ran with another config")
            && line.contains("rerun data first"),
        "{line}"
    );
}

#[test]
fn the_own_mistakes_phase_trains_on_the_base_models_wrong_answers() {
    let dir = scratch();
    smoke_stage(dir.path(), "data");
    let sets = [
        "own_mistakes.tasks_per_domain=6",
        "own_mistakes.samples=2",
        "own_mistakes.steps=4",
    ];
    let run = smoke_run(dir.path(), "pretrain", &sets).expect_ok();
    let root = dir.path().join("run");
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    let own = &manifest["stages"]["pretrain"]["metrics"]["own_mistakes"];
    // 6 train tasks in each of the 4 domains, 2 answers each.
    assert_eq!(own["answers"], 48, "{own}");
    let wrong = own["wrong"].as_u64().unwrap();
    assert!(wrong > 0 && wrong <= 48, "{own}");
    let by_domain: u64 = own["wrong_by_domain"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_domain, wrong);
    // The second phase's steps follow the first phase's 30 in the log.
    let log = TrainLogRow::read(&root.join("train_log.parquet")).unwrap();
    let steps: Vec<u64> = log
        .iter()
        .filter(|r| r.stage == "pretrain" && r.metric == "train_loss")
        .map(|r| r.step)
        .collect();
    assert_eq!(steps.len(), 34, "{steps:?}");
    assert_eq!(steps.last(), Some(&34));
    assert!(!root.join("checkpoints").exists(), "{:?}", run.stderr());
    assert!(root.join("base/model.safetensors").exists());
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = scratch();
    let config = smoke_config();
    let config = config.to_str().unwrap();
    smoke_stage(dir.path(), "data");
    let line = didact(
        dir.path(),
        &[
            "pretrain",
            "--config",
            config,
            "--run-dir",
            "run",
            "--device",
            "cuda",
        ],
    )
    .error_line();
    assert!(
        line.contains("--device cuda:0") && line.contains("--features cuda"),
        "{line}"
    );
    let line = didact(
        dir.path(),
        &["pretrain", "--config", config, "--device", "tpu"],
    );
    assert!(
        !line.ok() && line.stderr().contains("`tpu` is not a device"),
        "{}",
        line.stderr()
    );
}

/// A word-level tokenizer.json over `t0 … t{n-1}`, as any HF tokenizer file.
fn word_level_tokenizer(n: usize) -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}
    })
    .to_string()
}

#[test]
fn generate_reproduces_transformers_logits_on_a_transformers_checkpoint() {
    let dir = scratch();
    let fixtures = didact_e2e::root().join("student/tests/fixtures");
    for name in ["tiny-llama", "tiny-qwen2"] {
        let ckpt = dir.path().join(name);
        fs::create_dir_all(&ckpt).unwrap();
        for f in ["config.json", "model.safetensors"] {
            fs::copy(fixtures.join(name).join(f), ckpt.join(f)).unwrap();
        }
        fs::write(ckpt.join("tokenizer.json"), word_level_tokenizer(64)).unwrap();
        let reference: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(fixtures.join(name).join("reference.json")).unwrap(),
        )
        .unwrap();
        let ids: Vec<u64> = serde_json::from_value(reference["input_ids"][0].clone()).unwrap();
        let all: Vec<f32> = serde_json::from_value(reference["logits"].clone()).unwrap();
        let (t, v) = (ids.len(), 64);
        let expected = &all[(t - 1) * v..t * v];
        let prompt = ids
            .iter()
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let out = dir.path().join(format!("{name}.json"));
        let run = didact(
            dir.path(),
            &[
                "generate",
                "--checkpoint",
                ckpt.to_str().unwrap(),
                "--prompt",
                &prompt,
                "--max-new",
                "5",
                "--logits-out",
                out.to_str().unwrap(),
            ],
        )
        .expect_ok();
        let got: Vec<f32> = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got.len(), v);
        let worst = got
            .iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: max |diff| {worst}");
        // Greedy: the first generated token is the argmax of those logits.
        let argmax = got
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let text = run.stdout();
        assert_eq!(
            text.split_whitespace().next(),
            Some(format!("t{argmax}").as_str()),
            "{text}"
        );
        assert_eq!(text.split_whitespace().count(), 5, "{text}");
    }
}

#[test]
fn generate_names_a_missing_checkpoint() {
    let dir = scratch();
    let line = didact(
        dir.path(),
        &["generate", "--checkpoint", "nowhere", "--prompt", "hi"],
    )
    .error_line();
    assert!(
        line.contains("nowhere/tokenizer.json") && line.contains("not found"),
        "{line}"
    );
}

#[test]
fn a_killed_pretrain_resumes_from_its_last_checkpoint() {
    let dir = scratch();
    let config = smoke_config();
    let config = config.to_str().unwrap();
    smoke_stage(dir.path(), "data");
    let args = [
        "pretrain",
        "--config",
        config,
        "--run-dir",
        "run",
        "--set",
        "pretrain.steps=200",
        "--set",
        "pretrain.checkpoint_every=5",
        "--set",
        "pretrain.eval_every=1000",
    ];
    let mut child = std::process::Command::new(didact_e2e::didact_bin())
        .args(args)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = dir
        .path()
        .join("run/checkpoints/pretrain/trainer_state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !state.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint written"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.path().join("run/base").exists(),
        "a killed run must not leave a final checkpoint"
    );
    let rerun = didact(dir.path(), &args).expect_ok();
    assert!(
        rerun.stderr().contains("pretrain: resumed from step"),
        "{}",
        rerun.stderr()
    );
    let log = TrainLogRow::read(&dir.path().join("run/train_log.parquet")).unwrap();
    let steps: Vec<u64> = log
        .iter()
        .filter(|r| r.metric == "train_loss")
        .map(|r| r.step)
        .collect();
    assert_eq!(
        steps,
        (1..=200).collect::<Vec<u64>>(),
        "the log covers every step exactly once"
    );
}
