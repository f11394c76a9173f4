//! `didact pipeline` with `sml.enabled` on configs/smoke.toml: the Q-primed
//! and SML checkpoints, the evaluation table on sharded and fully specified
//! tasks and its invariants, and the report sections.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use burn::backend::Flex;
use didact_data::tables::{SML_TURNS, bools, read_table, strs, u32s};
use didact_e2e::{scratch, smoke_run};

#[test]
fn sml_trains_asks_and_reports_premature_answers() {
    let dir = scratch();
    let run = smoke_run(dir.path(), "pipeline", &["sml.enabled=true"]).expect_ok();
    let stdout = run.stdout();
    for model in ["base", "rl2f", "sml"] {
        assert!(
            stdout.contains(&format!("{model} on sharded tasks: premature answers in")),
            "{stdout}"
        );
    }
    let run = dir.path().join("run");
    for d in ["sml/qprimed", "sml/student"] {
        didact_student::checkpoint::load::<Flex>(&run.join(d), &Default::default())
            .unwrap_or_else(|e| panic!("{d}: {e}"));
    }

    let df = read_table(&run.join("sml/turns.parquet"), &SML_TURNS).unwrap();
    let (model, spec, task) = (
        strs(&df, "model").unwrap(),
        strs(&df, "spec").unwrap(),
        strs(&df, "task_id").unwrap(),
    );
    let (attempt, feedback) = (
        strs(&df, "attempt").unwrap(),
        strs(&df, "feedback").unwrap(),
    );
    let turn = u32s(&df, "turn").unwrap();
    let (question, premature, correct) = (
        bools(&df, "question").unwrap(),
        bools(&df, "premature").unwrap(),
        bools(&df, "correct").unwrap(),
    );
    let mut dialogues: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
    for i in 0..df.height() {
        dialogues
            .entry((model[i], spec[i], task[i]))
            .or_default()
            .push(i);
    }
    // configs/smoke.toml: 4 test tasks per domain, each sharded and full.
    let cells: BTreeSet<(&str, &str)> = dialogues.keys().map(|k| (k.0, k.1)).collect();
    assert_eq!(cells.len(), 4 * 2, "{cells:?}");
    for cell in &cells {
        let n = dialogues.keys().filter(|k| (k.0, k.1) == *cell).count();
        assert_eq!(n, 16, "{cell:?}");
    }
    // Both specs hold the same tasks.
    let tasks = |s: &str| -> BTreeSet<&str> {
        dialogues.keys().filter(|k| k.1 == s).map(|k| k.2).collect()
    };
    assert_eq!(tasks("sharded"), tasks("full"));
    for ((_, s, _), rows) in &dialogues {
        for (j, &i) in rows.iter().enumerate() {
            assert_eq!(turn[i] as usize, j + 1);
            assert_eq!(question[i], attempt[i].trim_start().starts_with('?'));
            if question[i] {
                assert!(!premature[i] && !correct[i]);
            }
            if *s == "full" {
                assert!(!premature[i], "nothing is withheld on a full task");
            } else if j == 0 && !question[i] {
                assert!(
                    premature[i],
                    "an answer at turn 1 of a sharded task is premature"
                );
            }
            // The dialogue ends at the first correct answer (or the budget).
            let last = j + 1 == rows.len();
            assert_eq!(feedback[i].is_empty(), last || correct[i]);
            if correct[i] {
                assert!(last);
            }
        }
    }

    let sml_md = fs::read_to_string(run.join("sml/report.md")).unwrap();
    assert!(sml_md.contains("premature-answer rate"), "{sml_md}");
    for m in ["| base | sharded |", "| rl2f | sharded |", "| sml | full |"] {
        assert!(sml_md.contains(m), "{m} missing:\n{sml_md}");
    }
    let report = fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(
        report.contains("## Social meta-learning: sharded tasks"),
        "{report}"
    );
}

#[test]
fn sml_on_tasks_that_cannot_be_sharded_is_a_clear_error() {
    let dir = scratch();
    // Only sudoku with one blank: no row's givens are ever essential.
    let sets = [
        "sml.enabled=true",
        "data.sudoku.difficulties=[1]",
        "data.arith.enabled=false",
        "data.listops.enabled=false",
        "data.maze.enabled=false",
    ];
    let line = smoke_run(dir.path(), "pipeline", &sets).error_line();
    assert!(
        line.contains("stage sml") && line.contains("can be sharded"),
        "{line}"
    );
}
