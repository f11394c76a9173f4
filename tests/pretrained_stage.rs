//! The pipeline on a pretrained chat model (`model.source =
//! "pretrained:<dir>"`) with imported GSM8K-style tasks: a tiny random
//! Qwen2-style checkpoint (q/k/v biases, grouped-query attention, tied
//! embeddings) with a ChatML tokenizer and Qwen2.5's chat template stands in
//! for a Hugging Face download. Every stage runs, with the base model as
//! its own teacher; dialogues render through the chat template, not
//! didact's role tokens.

use std::fs;
use std::path::Path;

use burn::backend::Flex;
use didact_data::leak::teacher_message;
use didact_data::tables::{EvalTurnRow, RolloutRow, Table, read_tasks};
use didact_data::{Dialogue, DomainKind, FeedbackLevel, HfTokenizer, Role, Tokenizer};
use didact_e2e::{data_import, didact, root, scratch, smoke_run};
use didact_student::LlamaConfig;

/// Writes a stand-in for a pretrained instruction-tuned Qwen2 checkpoint:
/// `config.json`, `model.safetensors`, `tokenizer.json` (ChatML special
/// tokens, no didact role tokens), `tokenizer_config.json` (Qwen2.5's
/// chat template) and `generation_config.json`.
fn write_chat_model(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut corpus = Vec::new();
    for kind in DomainKind::ALL.into_iter().chain([DomainKind::Numeric]) {
        let domain = kind.domain();
        let (lo, hi) = domain.difficulty_range();
        for seed in 0..40 {
            let task = domain.generate(seed, lo + (seed as u32) % (hi - lo + 1));
            corpus.push(task.prompt.clone());
            corpus.push(task.solution.clone());
            let mut rng = didact_data::rng::Rng::new(seed);
            let wrong = domain.wrong_attempt(&task, &mut rng).unwrap();
            corpus.push(
                teacher_message(&task, &wrong, FeedbackLevel::Explanation)
                    .unwrap()
                    .0,
            );
        }
    }
    corpus.push("system user assistant Answer with the answer only.".into());
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let tokenizer = HfTokenizer::train(corpus.iter(), 600, &specials).unwrap();
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let fixtures = root().join("data/tests/fixtures/chat_templates.json");
    let families: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixtures).unwrap()).unwrap();
    assert_eq!(families[0]["family"], "qwen2.5");
    let config = serde_json::json!({
        "chat_template": families[0]["chat_template"],
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
    });
    fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .map(|t| tokenizer.token_to_id(t).unwrap())
        .collect();
    fs::write(
        dir.join("generation_config.json"),
        serde_json::json!({ "eos_token_id": ids }).to_string(),
    )
    .unwrap();
    let vocab = 640;
    let mut cfg = LlamaConfig::small(vocab, 32, 2, 4, 2);
    cfg.model_type = "qwen2".into();
    cfg.architectures = Some(vec!["Qwen2ForCausalLM".into()]);
    cfg.tie_word_embeddings = true;
    cfg.max_position_embeddings = 384;
    let model =
        didact_student::checkpoint::init_random::<Flex>(&cfg, 3, &Default::default()).unwrap();
    didact_student::checkpoint::save(&model, dir).unwrap();
}

/// Rewrites the checkpoint in `dir` as transformers 5's `save_pretrained`
/// writes it: the chat template in `chat_template.jinja` (not inside
/// `tokenizer_config.json`) and a `special_tokens_map.json`.
fn to_transformers_5_layout(dir: &Path) {
    let path = dir.join("tokenizer_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let template = config
        .as_object_mut()
        .unwrap()
        .remove("chat_template")
        .unwrap();
    fs::write(dir.join("chat_template.jinja"), template.as_str().unwrap()).unwrap();
    fs::write(&path, config.to_string()).unwrap();
    fs::write(
        dir.join("special_tokens_map.json"),
        r#"{"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}"#,
    )
    .unwrap();
}

#[test]
fn a_checkpoint_in_transformers_5_layout_is_carried_into_the_run_and_its_checkpoints() {
    let dir = scratch();
    let model = dir.path().join("tiny-qwen2-chat");
    write_chat_model(&model);
    to_transformers_5_layout(&model);
    let source = format!("model.source=\"pretrained:{}\"", model.display());
    for stage in ["data", "pretrain"] {
        smoke_run(dir.path(), stage, &[&source]).expect_ok();
    }
    let run = dir.path().join("run");
    for file in [
        "chat_template.jinja",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        let original = fs::read(model.join(file)).unwrap();
        assert_eq!(fs::read(run.join(file)).unwrap(), original, "run/{file}");
        assert_eq!(
            fs::read(run.join("base").join(file)).unwrap(),
            original,
            "base/{file}"
        );
    }
    // The template stays where transformers 5 put it.
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("base/tokenizer_config.json")).unwrap())
            .unwrap();
    assert!(config.get("chat_template").is_none(), "{config}");
    assert!(!run.join("chat_template.json").exists());
    // The saved base model renders dialogues through the carried template.
    let tokenizer = Tokenizer::load(&run.join("base/tokenizer.json")).unwrap();
    assert!(tokenizer.is_chat());
}

/// GSM8K-style rows: a worked answer ending in `#### <n>`.
fn write_gsm(path: &Path, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "question": format!("Tom has {i} apples and buys 3 more. How many apples?"),
                "answer": format!("{i}+3 = <<{i}+3={}>>{}\n#### {}", i + 3, i + 3, i + 3),
            })
            .to_string()
        })
        .collect();
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn the_pipeline_runs_on_a_pretrained_chat_model_with_imported_tasks() {
    let dir = scratch();
    let model = dir.path().join("tiny-qwen2-chat");
    write_chat_model(&model);
    write_gsm(&dir.path().join("gsm.jsonl"), 60);
    data_import(
        dir.path(),
        &[
            "--input",
            "gsm.jsonl",
            "--kind",
            "numeric",
            "--out",
            "gsm.parquet",
        ],
    )
    .expect_ok();
    let source = format!("model.source=\"pretrained:{}\"", model.display());
    smoke_run(
        dir.path(),
        "pipeline",
        &[
            &source,
            "model.system_prompt=\"Answer with the answer only.\"",
            "data.import=\"gsm.parquet\"",
            "teacher.kind=\"model\"",
            "teacher.max_new_tokens=16",
        ],
    )
    .expect_ok();
    let run = dir.path().join("run");

    // The run's tokenizer is the model's, rendering through its template
    // with the configured system prompt.
    let tokenizer = Tokenizer::load(&run.join("tokenizer.json")).unwrap();
    assert!(tokenizer.is_chat());
    let text = tokenizer
        .render_prompt(&Dialogue::from_task("1+1="), Role::Student)
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nAnswer with the answer only.<|im_end|>\n\
         <|im_start|>user\n1+1=<|im_end|>\n<|im_start|>assistant\n"
    );
    // `didact generate --chat` prompts a checkpoint as the run does: the
    // same next-token logits as the rendered prompt given verbatim.
    let base = run.join("base");
    let logits = |extra: &[&str], out: &str| {
        let mut args = vec![
            "generate",
            "--checkpoint",
            base.to_str().unwrap(),
            "--max-new",
            "3",
        ];
        args.extend(extra);
        args.extend(["--logits-out", out]);
        didact(dir.path(), &args).expect_ok();
        fs::read_to_string(dir.path().join(out)).unwrap()
    };
    let chat = logits(
        &[
            "--chat",
            "--system",
            "Answer with the answer only.",
            "--prompt",
            "1+1=",
        ],
        "chat.json",
    );
    assert_eq!(chat, logits(&["--prompt", &text], "plain.json"));

    // Imported tasks joined the generated ones.
    let tasks = read_tasks(&run.join("tasks.parquet")).unwrap();
    let numeric = tasks
        .iter()
        .filter(|r| r.task.domain == DomainKind::Numeric)
        .count();
    assert_eq!(numeric, 60);

    // pretrain imported the checkpoint instead of training it.
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let pretrain = &manifest["stages"]["pretrain"]["metrics"];
    assert_eq!(pretrain["imported_from"], model.display().to_string());
    assert!(
        pretrain["val_accuracy"]["numeric"].is_number(),
        "{pretrain}"
    );
    // Every checkpoint carries the chat template and loads.
    for d in ["base", "student", "baseline/single_turn_rl", "critic"] {
        assert!(run.join(d).join("tokenizer_config.json").exists(), "{d}");
        let m = didact_student::checkpoint::load::<Flex>(&run.join(d), &Default::default())
            .unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(m.config.model_type, "qwen2");
        assert!(
            Tokenizer::load(&run.join(d).join("tokenizer.json"))
                .unwrap()
                .is_chat()
        );
    }

    // The base model was its own teacher, every draft vetted.
    let teacher = &manifest["stages"]["student"]["metrics"]["teacher"];
    assert_eq!(teacher["kind"], "model");
    let critiques = teacher["critiques"].as_u64().unwrap();
    assert!(critiques > 0);
    assert!(teacher["drafts"].as_u64().unwrap() >= critiques);
    // So it was in evaluation's `teacher` condition.
    let eval = &manifest["stages"]["eval"]["metrics"]["teacher"];
    assert_eq!(eval["kind"], "model");
    assert!(
        eval["leak_tally"]["critiques"].as_u64().unwrap() > 0,
        "{eval}"
    );

    // RL²F ran multi-turn dialogues with the teacher in the user's seat.
    let rollouts = RolloutRow::read(&run.join("rollouts.parquet")).unwrap();
    assert!(!rollouts.is_empty());
    assert!(
        rollouts.iter().any(|r| r.turn > 1),
        "feedback turns happened"
    );
    assert!(rollouts.iter().any(|r| r.domain == DomainKind::Numeric));
    let grid = EvalTurnRow::read(&run.join("eval/turns.parquet")).unwrap();
    assert!(grid.iter().any(|r| r.domain == DomainKind::Numeric));
    assert!(run.join("report/report.md").exists());
}

#[test]
fn a_bad_pretrained_source_is_named() {
    let dir = scratch();
    let data = |set: &str| smoke_run(dir.path(), "data", &[set]);
    let run = |source: &str| data(&format!("model.source=\"{source}\""));
    let err = run("pretrained:nowhere").error_line();
    assert!(
        err.contains("model.source") && err.contains("nowhere") && err.contains("does not exist"),
        "{err}"
    );
    let err = run("hub:Qwen/Qwen2.5-0.5B").error_line();
    assert!(
        err.contains("model.source") && err.contains("pretrained:<directory>"),
        "{err}"
    );
    // A model teacher needs a model that follows instructions.
    let err = data("teacher.kind=\"model\"").error_line();
    assert!(
        err.contains("teacher.kind") && err.contains("pretrained"),
        "{err}"
    );
    // A base model without a chat template.
    let model = dir.path().join("base-model");
    write_chat_model(&model);
    fs::write(
        model.join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let err = run(&format!("pretrained:{}", model.display())).error_line();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("chat_template"),
        "{err}"
    );
}
