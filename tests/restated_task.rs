//! `didact pipeline` on configs/smoke.toml with `data.restate_task`: the
//! task's prompt follows every teacher message in the synthetic dialogues
//! and in the critic's contexts, and evaluation dialogues still run past
//! the first turn (the longer dialogues fit the raised lengths).

use std::collections::HashMap;

use didact_data::tables::{CritiqueRow, EvalTurnRow, SyntheticDialogue, Table, read_tasks};
use didact_data::{Dialogue, Role};
use didact_e2e::{scratch, smoke_run};

#[test]
fn a_restated_task_follows_every_message_in_every_stage() {
    let dir = scratch();
    smoke_run(
        dir.path(),
        "pipeline",
        &[
            "data.restate_task=true",
            "model.max_position_embeddings=256",
            "pretrain.max_seq_len=192",
            "student.max_seq_len=256",
            "critic.train.max_seq_len=256",
        ],
    )
    .expect_ok();
    let run = dir.path().join("run");
    let prompts: HashMap<String, String> = read_tasks(&run.join("tasks.parquet"))
        .unwrap()
        .into_iter()
        .map(|r| (r.task.task_id.clone(), r.task.prompt.clone()))
        .collect();

    let synthetic = SyntheticDialogue::read(&run.join("synthetic_dialogues.parquet")).unwrap();
    assert!(!synthetic.is_empty());
    for s in &synthetic {
        let d = Dialogue::parse(&s.text).unwrap();
        let teacher = d.turns.iter().filter(|t| t.role == Role::Teacher).count();
        assert!(teacher >= 1, "{}", s.text);
        for (i, t) in d.turns.iter().enumerate() {
            if t.role == Role::Teacher {
                assert_eq!(d.turns[i + 1].role, Role::Task, "{}", s.text);
                assert_eq!(d.turns[i + 1].text, prompts[&s.task_id], "{}", s.text);
            }
        }
    }

    // The critic's context for a second attempt holds the task twice.
    let critiques = CritiqueRow::read(&run.join("critiques.parquet")).unwrap();
    let later: Vec<&CritiqueRow> = critiques.iter().filter(|r| r.turn >= 2).collect();
    assert!(!later.is_empty(), "no second attempts in the critic's data");
    for r in later {
        let prompt = &prompts[&r.task_id];
        assert!(
            r.context.matches(prompt.as_str()).count() >= r.turn as usize,
            "{}",
            r.context
        );
    }

    let grid = EvalTurnRow::read(&run.join("eval/turns.parquet")).unwrap();
    assert!(
        grid.iter()
            .any(|r| r.condition == "teacher" && r.turn >= 2 && !r.attempt.is_empty()),
        "no evaluation dialogue went past its first attempt"
    );
}
