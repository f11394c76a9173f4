//! `didact import gguf` as a user runs it: the tiny GGUF file written by
//! llama.cpp's `gguf` package (student/tests/fixtures/tiny-gguf, made by
//! scripts/make_gguf_fixture.py) becomes a checkpoint that `generate`,
//! `data` and `pretrain` take, and a damaged file is one error line.

use std::fs;

use didact_e2e::{data_import, didact, root, scratch, smoke_run};

fn fixture() -> std::path::PathBuf {
    root().join("student/tests/fixtures/tiny-gguf/tiny.gguf")
}

#[test]
fn an_imported_gguf_model_runs_the_first_stages() {
    let dir = scratch();
    let gguf = fixture();
    let out = dir.path().join("tiny");
    let args = [
        "import",
        "gguf",
        "--input",
        gguf.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let line = didact(dir.path(), &args).expect_ok().stdout();
    assert!(line.contains("(tiny)"), "{line}");
    assert!(
        line.contains("2 BF16, 2 F16, 5 F32, 4 Q4_0, 4 Q4_1, 3 Q8_0"),
        "{line}"
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Importing again over it needs --force.
    let line = didact(dir.path(), &args).error_line();
    assert!(line.contains("--force"), "{line}");
    let mut forced = args.to_vec();
    forced.push("--force");
    didact(dir.path(), &forced).expect_ok();

    let reply = didact(
        dir.path(),
        &[
            "generate",
            "--checkpoint",
            out.to_str().unwrap(),
            "--chat",
            "--prompt",
            "Ana has 7 apples.",
            "--max-new",
            "4",
        ],
    );
    reply.expect_ok();

    let rows: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({"question": format!("Ana has {i} apples and gets 5 more. How many?"),
                               "answer": format!("{}", i + 5)})
            .to_string()
        })
        .collect();
    fs::write(dir.path().join("tasks.jsonl"), rows.join("\n") + "\n").unwrap();
    data_import(
        dir.path(),
        &[
            "--input",
            "tasks.jsonl",
            "--kind",
            "numeric",
            "--out",
            "tasks.parquet",
        ],
    )
    .expect_ok();
    let source = format!("model.source=\"pretrained:{}\"", out.display());
    for stage in ["data", "pretrain"] {
        smoke_run(
            dir.path(),
            stage,
            &[
                &source,
                "data.import=\"tasks.parquet\"",
                "data.arith.enabled=false",
                "data.listops.enabled=false",
                "data.sudoku.enabled=false",
                "data.maze.enabled=false",
            ],
        )
        .expect_ok();
    }
    let base = dir.path().join("run/base");
    assert!(base.join("model.safetensors").exists());
    assert_eq!(
        fs::read(base.join("chat_template.jinja")).unwrap(),
        fs::read(out.join("chat_template.jinja")).unwrap()
    );
}

#[test]
fn a_damaged_gguf_file_is_one_error_line_naming_it() {
    let dir = scratch();
    let bytes = fs::read(fixture()).unwrap();
    let cut = dir.path().join("cut.gguf");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let line = didact(
        dir.path(),
        &[
            "import",
            "gguf",
            "--input",
            cut.to_str().unwrap(),
            "--out",
            "m",
        ],
    )
    .error_line();
    assert!(line.contains("cut.gguf"), "{line}");
    assert!(line.contains("the file ends inside tensor"), "{line}");
    assert!(!dir.path().join("m/model.safetensors").exists());

    let text = dir.path().join("notes.gguf");
    fs::write(&text, "not a model").unwrap();
    let line = didact(
        dir.path(),
        &[
            "import",
            "gguf",
            "--input",
            text.to_str().unwrap(),
            "--out",
            "m",
        ],
    )
    .error_line();
    assert!(line.contains("not a GGUF file"), "{line}");
}
