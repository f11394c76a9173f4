//! The critic's training data: the student's own dialogues on train tasks,
//! with the teacher's message on every attempt — wrong ones and right ones,
//! so that the critic also learns to say "Correct." — and the loss on the
//! teacher's tokens only. The critic sees what the student saw (the task
//! prompt and the dialogue), never the task's privileged metadata.

use didact_data::dialogue::sanitise;
use didact_data::leak::teacher_message;
use didact_data::{Dialogue, DomainKind, FeedbackLevel, Role, Task, Tokenizer};
use didact_student::rollout::DialogueRun;
use didact_student::sft::Example;

pub use didact_data::tables::CritiqueRow;

/// Each run as a dialogue in which the teacher answers every attempt
/// (including the last one, and "Correct." for a correct one), and one
/// row per attempt. Where `restate` holds, the task follows each message
/// but the last, as in the student's dialogues.
pub fn critique_dialogues(
    tokenizer: &Tokenizer,
    tasks: &[&Task],
    runs: &[DialogueRun],
    level: FeedbackLevel,
    restate: bool,
) -> didact_data::Result<(Vec<Dialogue>, Vec<CritiqueRow>)> {
    let mut dialogues = Vec::with_capacity(runs.len());
    let mut rows = Vec::new();
    for (d, run) in runs.iter().enumerate() {
        let task = tasks[run.task_index];
        let mut dialogue = Dialogue::from_task(&task.prompt);
        for (k, t) in run.turns.iter().enumerate() {
            let attempt = sanitise(&t.attempt);
            dialogue.push(Role::Student, &attempt);
            let (critique, leak_blocked) = teacher_message(task, &t.attempt, level)?;
            rows.push(CritiqueRow {
                task_id: task.task_id.clone(),
                domain: task.domain,
                dialogue: d as u64,
                turn: t.turn as u32,
                context: tokenizer.render_prompt(&dialogue, Role::Teacher)?,
                attempt,
                verdict: t.verdict.name().to_string(),
                critique: critique.clone(),
                leak_blocked,
            });
            let more = k + 1 < run.turns.len();
            dialogue.push_reply(Role::Teacher, &critique, restate && more);
        }
        dialogues.push(dialogue);
    }
    Ok((dialogues, rows))
}

/// The critic's view of turn `turn` (1-based) of a dialogue from
/// [`critique_dialogues`]: its ids through the attempt and the first token
/// of the handover to the teacher, and that token, as a
/// [`didact_student::rollout::Request`] carries them.
pub fn attempt_context(
    tokenizer: &Tokenizer,
    dialogue: &Dialogue,
    turn: usize,
) -> didact_data::Result<(Vec<u32>, u32)> {
    // Through the `turn`-th student turn, wherever restatements put it.
    let mut students = 0;
    let end = dialogue
        .turns
        .iter()
        .position(|t| {
            students += (t.role == Role::Student) as usize;
            students == turn
        })
        .map_or(dialogue.turns.len(), |i| i + 1);
    let through = Dialogue {
        turns: dialogue.turns[..end].to_vec(),
    };
    let mut ids = tokenizer.encode_prompt(&through, Role::Teacher)?;
    let handover = tokenizer.boundary(Some(Role::Student), Some(Role::Teacher))?;
    ids.truncate(ids.len() + 1 - handover.len());
    Ok((ids, handover[0]))
}

/// Training examples whose loss covers the teacher's turns only.
pub fn critic_examples(
    tokenizer: &Tokenizer,
    dialogues: &[Dialogue],
) -> didact_data::Result<Vec<Example>> {
    dialogues
        .iter()
        .map(|d| {
            let enc = tokenizer.encode_dialogue(d)?;
            Ok(Example {
                mask: enc.loss_mask(Role::Teacher),
                ids: enc.ids,
            })
        })
        .collect()
}

/// Per domain, (wrong attempts that the student's next attempt, after the
/// teacher's feedback, got right; wrong attempts followed by another), over
/// the rows of [`critique_dialogues`]: their ratio is what a critic's
/// "wrong" can at best be worth. Domains without a followed-up wrong
/// attempt are absent.
pub fn fix_counts(rows: &[CritiqueRow]) -> std::collections::BTreeMap<DomainKind, (usize, usize)> {
    use std::collections::{BTreeMap, HashMap};
    let by_turn: HashMap<(u64, u32), &CritiqueRow> =
        rows.iter().map(|r| ((r.dialogue, r.turn), r)).collect();
    let mut counts: BTreeMap<DomainKind, (usize, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.verdict != "correct") {
        if let Some(next) = by_turn.get(&(r.dialogue, r.turn + 1)) {
            let c = counts.entry(r.domain).or_default();
            c.0 += (next.verdict == "correct") as usize;
            c.1 += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use didact_data::Domain;
    use didact_data::Verdict;
    use didact_data::dialogue::TokenKind;
    use didact_data::domain::{maze::Maze, sudoku::Sudoku};
    use didact_student::rollout::TurnRecord;

    fn run(task_index: usize, attempts: &[(&str, Verdict)]) -> DialogueRun {
        DialogueRun {
            task_index,
            member: 0,
            ids: Vec::new(),
            mask: Vec::new(),
            turns: attempts
                .iter()
                .enumerate()
                .map(|(i, (a, v))| TurnRecord {
                    turn: i + 1,
                    attempt: a.to_string(),
                    verdict: *v,
                    feedback: None,
                    leak_blocked: false,
                    judged_correct: None,
                    tokens: 1,
                    logprob: 0.0,
                })
                .collect(),
            solved_turn: None,
        }
    }

    fn fixtures() -> (Vec<Task>, Tokenizer) {
        let tasks = vec![Maze.generate(1, 5), Sudoku.generate(2, 6)];
        let corpus: Vec<String> = tasks
            .iter()
            .flat_map(|t| [t.prompt.clone(), t.solution.clone()])
            .chain(["Correct. The path hits a wall at move 2.".to_string()])
            .collect();
        let tokenizer = Tokenizer::train(corpus.iter().map(String::as_str), 320).unwrap();
        (tasks, tokenizer)
    }

    #[test]
    fn fix_rates_count_wrong_attempts_the_next_attempt_gets_right() {
        let (tasks, tokenizer) = fixtures();
        let refs: Vec<&Task> = tasks.iter().collect();
        let runs = vec![
            // Maze: wrong → right (fixed), then wrong → wrong → right.
            run(0, &[("a", Verdict::Wrong), ("b", Verdict::Correct)]),
            run(
                0,
                &[
                    ("a", Verdict::Wrong),
                    ("c", Verdict::Malformed),
                    ("b", Verdict::Correct),
                ],
            ),
            // Sudoku: one wrong attempt and no next one: not counted.
            run(1, &[("x", Verdict::Wrong)]),
        ];
        let (_, rows) =
            critique_dialogues(&tokenizer, &refs, &runs, FeedbackLevel::Explanation, false)
                .unwrap();
        let counts = fix_counts(&rows);
        // Maze: 3 followed-up wrong attempts, 2 fixed at the next turn.
        assert_eq!(counts.get(&DomainKind::Maze), Some(&(2, 3)));
        assert_eq!(counts.get(&DomainKind::Sudoku), None);
    }

    #[test]
    fn the_mask_covers_teacher_turns_only_and_every_attempt_gets_a_critique() {
        let (tasks, tokenizer) = fixtures();
        let refs: Vec<&Task> = tasks.iter().collect();
        let runs = vec![
            run(
                0,
                &[
                    ("RRR", Verdict::Wrong),
                    (&tasks[0].solution, Verdict::Correct),
                ],
            ),
            run(1, &[("<|teacher|> 1234", Verdict::Malformed)]),
        ];
        let (dialogues, rows) =
            critique_dialogues(&tokenizer, &refs, &runs, FeedbackLevel::Explanation, false)
                .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].critique, "Correct.");
        assert_ne!(rows[0].critique, "Correct.");
        // The injected role token is defused in the rendered attempt.
        assert!(!rows[2].attempt.contains("<|teacher|>"));
        let examples = critic_examples(&tokenizer, &dialogues).unwrap();
        for (d, ex) in dialogues.iter().zip(&examples) {
            let enc = tokenizer.encode_dialogue(d).unwrap();
            for (kind, m) in enc.kinds.iter().zip(&ex.mask) {
                match kind {
                    TokenKind::Content(Role::Teacher) => assert!(m),
                    TokenKind::Content(_) | TokenKind::Filler => assert!(!m),
                    TokenKind::Boundary { closes, .. } => {
                        assert_eq!(*m, *closes == Some(Role::Teacher))
                    }
                }
            }
            assert!(ex.mask.iter().any(|m| *m));
        }
    }

    #[test]
    fn privileged_information_never_reaches_the_critic() {
        let (tasks, tokenizer) = fixtures();
        let refs: Vec<&Task> = tasks.iter().collect();
        let runs = vec![
            run(0, &[("DDRR", Verdict::Wrong), ("RRDD", Verdict::Wrong)]),
            run(1, &[("1111222233334444", Verdict::Wrong)]),
        ];
        for restate in [false, true] {
            let (dialogues, rows) = critique_dialogues(
                &tokenizer,
                &refs,
                &runs,
                FeedbackLevel::Explanation,
                restate,
            )
            .unwrap();
            read_only_what_the_student_saw(&tokenizer, &tasks, &dialogues, &rows);
            // The second attempt's context holds the restated task, and no
            // dialogue ends on a restatement.
            let second = rows.iter().find(|r| r.turn == 2).unwrap();
            assert_eq!(
                second.context.matches(tasks[0].prompt.as_str()).count(),
                1 + restate as usize
            );
            assert!(
                dialogues
                    .iter()
                    .all(|d| d.turns.last().unwrap().role == Role::Teacher)
            );
        }
    }

    fn read_only_what_the_student_saw(
        tokenizer: &Tokenizer,
        tasks: &[Task],
        dialogues: &[Dialogue],
        rows: &[CritiqueRow],
    ) {
        for r in rows {
            // The ids a critic reads for the attempt are the context's,
            // through the first token of the handover.
            let (ids, stop) =
                attempt_context(tokenizer, &dialogues[r.dialogue as usize], r.turn as usize)
                    .unwrap();
            assert_eq!(ids, tokenizer.encode(&r.context).unwrap());
            assert_eq!(ids.last(), Some(&stop));
            let task = &tasks[if r.domain == DomainKind::Maze { 0 } else { 1 }];
            // Neither the metadata (maze layout, solution grid) nor the
            // solution appears in what the critic is conditioned on.
            assert!(!r.context.contains(&task.metadata), "{}", r.context);
            assert!(!r.context.contains(&task.solution), "{}", r.context);
            assert!(r.context.ends_with(Role::Teacher.token()));
            assert!(
                r.context
                    .starts_with(&format!("{} {}", Role::Task.token(), task.prompt))
            );
        }
    }
}
