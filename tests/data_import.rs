//! `didact data import` on small GSM8K-style files, as a user runs it, and
//! its errors on bad input.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use didact_data::domain::numeric::ImportMeta;
use didact_data::tables::read_tasks;
use didact_data::{DomainKind, Split};
use didact_e2e::{data_import, didact, scratch};
use polars::prelude::*;

/// A GSM8K-style row: a worked answer ending in `#### <n>`.
fn gsm_line(i: usize) -> String {
    let total = 1000 + 7 * i;
    serde_json::json!({
        "question": format!("A shop sells {i} boxes of 7 pencils and 1,000 loose ones. How many pencils?"),
        "answer": format!("{i}*7 = <<{i}*7={}>>{} pencils in boxes.\nIn all {total}.\n#### {}", 7 * i, 7 * i, group(total)),
    })
    .to_string()
}

/// `1234` as `1,234`, the way GSM8K writes large answers.
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn jsonl_import_normalises_answers_and_splits_by_seed() {
    let dir = scratch();
    let mut lines: Vec<String> = (0..40).map(gsm_line).collect();
    // The same question again (extra spaces), with another answer: dropped.
    lines.push(
        serde_json::json!({
            "question": "A shop sells 3 boxes of 7 pencils  and 1,000 loose ones. How many pencils?",
            "answer": "#### 5",
        })
        .to_string(),
    );
    write_lines(&dir.path().join("gsm.jsonl"), &lines);
    let run = data_import(
        dir.path(),
        &[
            "--input",
            "gsm.jsonl",
            "--kind",
            "numeric",
            "--out",
            "run",
            "--seed",
            "3",
        ],
    )
    .expect_ok();
    assert_eq!(
        run.stdout().trim(),
        "gsm.jsonl: read 41 rows, kept 40 numeric tasks (1 duplicate prompt dropped, 1 of them \
         with a different answer); train 32, val 4, test 4 (splits by seed 3) -> run/tasks.parquet"
    );

    let tasks = read_tasks(&dir.path().join("run/tasks.parquet")).unwrap();
    assert_eq!(tasks.len(), 40);
    let count = |s| tasks.iter().filter(|r| r.split == s).count();
    assert_eq!(
        (count(Split::Train), count(Split::Val), count(Split::Test)),
        (32, 4, 4)
    );
    let ids: HashSet<&str> = tasks.iter().map(|r| r.task.task_id.as_str()).collect();
    assert_eq!(ids.len(), 40, "one task per distinct prompt");
    for (i, r) in tasks.iter().enumerate() {
        let t = &r.task;
        assert_eq!(t.domain, DomainKind::Numeric);
        assert_eq!(t.seed, 3);
        assert_eq!(
            t.solution,
            (1000 + 7 * i).to_string(),
            "normalised: no comma"
        );
        assert!(t.prompt.starts_with(&format!("A shop sells {i} boxes")));
        let meta: ImportMeta = t.meta().unwrap();
        assert_eq!((meta.source.as_str(), meta.row), ("gsm.jsonl", i + 1));
        assert!(
            meta.answer
                .ends_with(&format!("#### {}", group(1000 + 7 * i)))
        );
        let domain = t.domain.domain();
        assert!(domain.verify(t, &t.solution).unwrap().is_correct());
        assert!(
            domain
                .verify(t, &format!("So the answer is ${}.", group(1000 + 7 * i)))
                .unwrap()
                .is_correct()
        );
        assert!(!domain.verify(t, "#### 1").unwrap().is_correct());
    }

    // The same seed gives the same table; another seed other splits.
    let again = data_import(
        dir.path(),
        &[
            "--input",
            "gsm.jsonl",
            "--kind",
            "numeric",
            "--out",
            "again.parquet",
            "--seed",
            "3",
        ],
    )
    .expect_ok();
    assert!(again.stdout().contains("-> again.parquet"));
    assert_eq!(
        read_tasks(&dir.path().join("again.parquet")).unwrap(),
        tasks
    );
    data_import(
        dir.path(),
        &[
            "--input",
            "gsm.jsonl",
            "--kind",
            "numeric",
            "--out",
            "other.parquet",
            "--seed",
            "4",
        ],
    )
    .expect_ok();
    let other = read_tasks(&dir.path().join("other.parquet")).unwrap();
    assert_ne!(
        other.iter().map(|r| r.split).collect::<Vec<_>>(),
        tasks.iter().map(|r| r.split).collect::<Vec<_>>()
    );

    // An existing table is replaced only with --force.
    let args = [
        "data",
        "import",
        "--input",
        "gsm.jsonl",
        "--kind",
        "numeric",
        "--out",
        "run",
        "--val-fraction",
        "0.5",
        "--test-fraction",
        "0",
    ];
    let line = didact(dir.path(), &args).error_line();
    assert!(
        line.contains("run/tasks.parquet: exists; pass --force to replace it"),
        "{line}"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    didact(dir.path(), &forced).expect_ok();
    let tasks = read_tasks(&dir.path().join("run/tasks.parquet")).unwrap();
    let count = |s| tasks.iter().filter(|r| r.split == s).count();
    assert_eq!(
        (count(Split::Train), count(Split::Val), count(Split::Test)),
        (20, 20, 0)
    );
}

#[test]
fn parquet_import_takes_splits_from_the_file() {
    let dir = scratch();
    let mut df = df!(
        "problem" => ["What is 2+2?", "Name the capital of France.", "What is 2+2?", "Spell cat."],
        "target" => ["4", "  Paris ", "four", "C A T"],
        "split" => ["train", "test", "test", "train"],
    )
    .unwrap();
    ParquetWriter::new(fs::File::create(dir.path().join("qa.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    let run = data_import(
        dir.path(),
        &[
            "--input",
            "qa.parquet",
            "--kind",
            "exact",
            "--out",
            "out/tasks.parquet",
            "--question-field",
            "problem",
            "--answer-field",
            "target",
        ],
    )
    .expect_ok();
    assert!(
        run.stdout().contains(
            "read 4 rows, kept 3 exact tasks (1 duplicate prompt dropped, 1 of them with a \
             different answer); train 1, val 0, test 2 (splits from field `split`)"
        ),
        "{}",
        run.stdout()
    );
    let tasks = read_tasks(&dir.path().join("out/tasks.parquet")).unwrap();
    let got: Vec<(&str, &str, Split)> = tasks
        .iter()
        .map(|r| (r.task.prompt.as_str(), r.task.solution.as_str(), r.split))
        .collect();
    assert_eq!(
        got,
        [
            // Also labelled test further down: the held-out split wins.
            ("What is 2+2?", "4", Split::Test),
            ("Name the capital of France.", "Paris", Split::Test),
            ("Spell cat.", "C A T", Split::Train),
        ]
    );
    let paris = &tasks[1].task;
    assert_eq!(paris.domain, DomainKind::Exact);
    assert!(
        paris
            .domain
            .domain()
            .verify(paris, " paris\n")
            .unwrap()
            .is_correct()
    );
    assert!(
        !paris
            .domain
            .domain()
            .verify(paris, "Paris.")
            .unwrap()
            .is_correct()
    );

    // Fractions contradict a split column.
    let line = data_import(
        dir.path(),
        &[
            "--input",
            "qa.parquet",
            "--kind",
            "exact",
            "--out",
            "x",
            "--question-field",
            "problem",
            "--answer-field",
            "target",
            "--test-fraction",
            "0.2",
        ],
    )
    .error_line();
    assert!(
        line.contains(
            "qa.parquet: rows have a `split` field, so val and test fractions do not apply"
        ),
        "{line}"
    );
}

#[test]
fn bad_input_names_the_file_the_line_and_the_field() {
    let dir = scratch();
    let good = gsm_line(1);
    let import = |file: &str, kind: &str| {
        data_import(
            dir.path(),
            &["--input", file, "--kind", kind, "--out", "run"],
        )
        .error_line()
    };
    let cases = [
        (
            vec![good.clone(), good.clone(), "{\"question\": \"x\",".into()],
            "bad.jsonl:3: not valid JSON",
        ),
        (
            vec![good.clone(), "{\"question\": \"x\"}".into()],
            "bad.jsonl:2: field `answer` is missing (the object has: question)",
        ),
        (
            vec!["{\"question\": [1], \"answer\": \"2\"}".into()],
            "bad.jsonl:1: field `question` is an array, expected a string",
        ),
        (
            vec![
                good.clone(),
                "{\"question\": \"x\", \"answer\": \"#### none\"}".into(),
            ],
            "bad.jsonl:2: field `answer`: no number in `#### none`",
        ),
        (vec![], "bad.jsonl: no rows"),
    ];
    for (lines, want) in cases {
        write_lines(&dir.path().join("bad.jsonl"), &lines);
        let line = import("bad.jsonl", "numeric");
        assert!(line.contains(want), "{line}\nwanted: {want}");
    }
    assert!(
        !dir.path().join("run/tasks.parquet").exists(),
        "nothing written"
    );

    fs::write(dir.path().join("data.csv"), "question,answer\n").unwrap();
    let line = import("data.csv", "numeric");
    assert!(
        line.contains("data.csv: unknown extension `.csv` (expected .jsonl or .parquet)"),
        "{line}"
    );
    let line = import("missing.jsonl", "exact");
    assert!(line.contains("missing.jsonl"), "{line}");
    fs::write(dir.path().join("broken.parquet"), b"PAR1 not really").unwrap();
    let line = import("broken.parquet", "exact");
    assert!(
        line.contains("broken.parquet: not a readable parquet file"),
        "{line}"
    );
}
