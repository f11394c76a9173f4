//! Bad input gives one `error:` line naming the problem, and a non-zero exit.

use std::fs;

use didact_e2e::{didact, scratch, smoke_config, smoke_stage};

fn config_with(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("bad.toml");
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn typo_in_a_config_key_names_file_key_and_suggestion() {
    let dir = scratch();
    let cfg = config_with(dir.path(), "[data.arith]\ntrian = 10\n");
    let line = didact(dir.path(), &["data", "--config", &cfg]).error_line();
    assert!(
        line.contains("bad.toml: unknown key `data.arith.trian`, expected one of"),
        "{line}"
    );
    assert!(line.contains("did you mean `train`"), "{line}");
}

#[test]
fn wrong_type_names_the_key_and_expected_type() {
    let dir = scratch();
    let cfg = config_with(dir.path(), "[data]\nseed = \"seven\"\n");
    let line = didact(dir.path(), &["data", "--config", &cfg]).error_line();
    assert!(
        line.contains("bad.toml: `data.seed`: invalid type: string \"seven\", expected u64"),
        "{line}"
    );
}

#[test]
fn bad_override_is_named() {
    let dir = scratch();
    let smoke = smoke_config();
    let line = didact(
        dir.path(),
        &[
            "data",
            "--config",
            smoke.to_str().unwrap(),
            "--set",
            "data.arith.difficulties=[99]",
        ],
    )
    .error_line();
    assert!(
        line.contains("data.arith.difficulties: 99 is outside 1..=10"),
        "{line}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let dir = scratch();
    let line = didact(dir.path(), &["data", "--config", "configs/nope.toml"]).error_line();
    assert!(
        line.contains("configs/nope.toml: cannot read config"),
        "{line}"
    );
}

#[test]
fn truncated_parquet_and_missing_tables_are_named() {
    let dir = scratch();
    smoke_stage(dir.path(), "data");
    let tasks = dir.path().join("run/tasks.parquet");
    let bytes = fs::read(&tasks).unwrap();
    fs::write(&tasks, &bytes[..bytes.len() / 3]).unwrap();
    let line = didact(dir.path(), &["show", "--run-dir", "run"]).error_line();
    assert!(
        line.contains("tasks.parquet: not a readable parquet file"),
        "{line}"
    );
    let line = didact(dir.path(), &["show", "--run-dir", "elsewhere"]).error_line();
    assert!(line.contains("elsewhere/tasks.parquet"), "{line}");
}

#[test]
fn truncated_output_is_regenerated_by_the_stage() {
    let dir = scratch();
    smoke_stage(dir.path(), "data");
    fs::remove_file(dir.path().join("run/tokenizer.json")).unwrap();
    smoke_stage(dir.path(), "data");
    assert!(
        dir.path().join("run/tokenizer.json").exists(),
        "a missing output must make the stage rerun"
    );
}
