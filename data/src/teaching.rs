//! Teachers that are language models: what they are told, and how their
//! critiques are vetted. In the papers' setting the teacher is the same
//! base model as the student, given the privileged information (the
//! answer) in its prompt and told not to reveal it; a model does not always
//! obey, so every draft passes the leak check, a leaking draft is drafted
//! again, and one that still leaks is replaced by the verdict-only message.

use serde::{Deserialize, Serialize};

use crate::chat::{Message, Speaker};
use crate::domain::{CORRECT_MESSAGE, Task, Verdict, WRONG_MESSAGE};
use crate::error::DataError;
use crate::leak;

/// The system prompt of a model teacher, before the privileged answer.
pub const DEFAULT_INSTRUCTIONS: &str = "You are a teacher. A student is working on the task \
below and has just answered. You know the correct answer, but the student must find it \
themselves: never state the answer, any part of it, or a way to read it off. In one or two \
sentences, tell the student what is wrong with their answer and how to think about fixing it.";

/// The conversation a model teacher continues: instructions and the
/// privileged answer as the system prompt, the task and the student's
/// attempt as the user's message.
pub fn teacher_chat(
    task: &Task,
    attempt: &str,
    verdict: Verdict,
    instructions: &str,
) -> Vec<Message> {
    let judged = match verdict {
        Verdict::Correct => "correct",
        Verdict::Wrong => "wrong",
        Verdict::Malformed => "not an answer in the expected format",
    };
    vec![
        Message::new(
            Speaker::System,
            &format!(
                "{instructions}\n\nThe correct answer (never reveal it): {}",
                task.solution
            ),
        ),
        Message::new(
            Speaker::User,
            &format!(
                "Task:\n{}\n\nThe student's answer:\n{}\n\nThe answer is {judged}. Your feedback:",
                task.prompt,
                attempt.trim()
            ),
        ),
    ]
}

/// A vetted critique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vetted {
    pub message: String,
    /// Every draft leaked (or was empty), and the verdict-only message
    /// replaced the last.
    pub leak_blocked: bool,
}

/// Counts of a model teacher's drafts, for the leak rate a run reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakTally {
    /// Critiques asked for.
    pub critiques: usize,
    /// Drafts written, first ones and redrafts.
    pub drafts: usize,
    /// Drafts that failed the leak check.
    pub leaked_drafts: usize,
    /// Drafts that were empty.
    pub empty_drafts: usize,
    /// Critiques whose every draft leaked or was empty: replaced by the
    /// verdict-only message.
    pub redacted: usize,
}

impl LeakTally {
    /// Leaking drafts per draft: how often the teacher would have given the
    /// answer away, had its drafts not been vetted.
    pub fn draft_leak_rate(&self) -> f64 {
        self.leaked_drafts as f64 / self.drafts.max(1) as f64
    }

    pub fn add(&mut self, other: &LeakTally) {
        self.critiques += other.critiques;
        self.drafts += other.drafts;
        self.leaked_drafts += other.leaked_drafts;
        self.empty_drafts += other.empty_drafts;
        self.redacted += other.redacted;
    }
}

/// Vets one critique per task. `draft(round, which)` writes a draft for
/// each index in `which` (round 0 for every task, later rounds for those
/// whose drafts leaked or were empty), in order. After `regenerate` redrafts
/// a critique that still leaks is replaced by [`WRONG_MESSAGE`]. A task the
/// verifier judged correct needs no teacher: pass [`CORRECT_MESSAGE`]
/// yourself instead.
pub fn vet_critiques<E: From<DataError>>(
    tasks: &[&Task],
    regenerate: usize,
    tally: &mut LeakTally,
    mut draft: impl FnMut(usize, &[usize]) -> std::result::Result<Vec<String>, E>,
) -> std::result::Result<Vec<Vetted>, E> {
    tally.critiques += tasks.len();
    let mut out: Vec<Option<Vetted>> = vec![None; tasks.len()];
    let mut pending: Vec<usize> = (0..tasks.len()).collect();
    for round in 0..=regenerate {
        if pending.is_empty() {
            break;
        }
        let drafts = draft(round, &pending)?;
        if drafts.len() != pending.len() {
            return Err(DataError::Generation(format!(
                "teacher: {} drafts for {} critiques",
                drafts.len(),
                pending.len()
            ))
            .into());
        }
        let mut again = Vec::new();
        for (&i, text) in pending.iter().zip(drafts) {
            tally.drafts += 1;
            let text = crate::dialogue::sanitise(&text);
            if text.is_empty() {
                tally.empty_drafts += 1;
                again.push(i);
            } else if leak::check(tasks[i], &text)?.is_some() {
                tally.leaked_drafts += 1;
                again.push(i);
            } else {
                out[i] = Some(Vetted {
                    message: text,
                    leak_blocked: false,
                });
            }
        }
        pending = again;
    }
    tally.redacted += pending.len();
    Ok(out
        .into_iter()
        .map(|v| {
            v.unwrap_or_else(|| Vetted {
                message: WRONG_MESSAGE.to_string(),
                leak_blocked: true,
            })
        })
        .collect())
}

/// What a teacher says to a correct attempt, whoever the teacher is.
pub fn correct_reply() -> Vetted {
    Vetted {
        message: CORRECT_MESSAGE.to_string(),
        leak_blocked: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Domain, arith::Arith};

    #[test]
    fn the_prompt_holds_the_answer_only_in_the_system_message() {
        let task = Arith.generate(3, 2);
        let chat = teacher_chat(&task, "12", Verdict::Wrong, DEFAULT_INSTRUCTIONS);
        assert_eq!(chat[0].role, "system");
        assert!(chat[0].content.ends_with(&task.solution));
        assert!(chat[0].content.contains("never reveal"));
        assert_eq!(chat[1].role, "user");
        assert!(chat[1].content.contains(&task.prompt) && chat[1].content.contains("wrong"));
        assert!(!chat[1].content.contains(&task.solution) || task.prompt.contains(&task.solution));
    }

    #[test]
    fn leaking_drafts_are_redrafted_then_redacted() {
        let tasks: Vec<Task> = (0..3).map(|s| Arith.generate(s, 2)).collect();
        let refs: Vec<&Task> = tasks.iter().collect();
        let mut tally = LeakTally::default();
        let mut calls = Vec::new();
        // Task 0 is fine at once; task 1 leaks, then is fine; task 2 always
        // leaks (and once comes back empty).
        let vetted = vet_critiques::<DataError>(&refs, 2, &mut tally, |round, which| {
            calls.push((round, which.to_vec()));
            Ok(which
                .iter()
                .map(|&i| match (i, round) {
                    (0, _) | (1, 1..) => "Check the carries.".to_string(),
                    (2, 1) => "  ".to_string(),
                    _ => format!("The answer is {}.", tasks[i].solution),
                })
                .collect())
        })
        .unwrap();
        assert_eq!(
            calls,
            vec![(0, vec![0, 1, 2]), (1, vec![1, 2]), (2, vec![2])]
        );
        assert_eq!(vetted[0].message, "Check the carries.");
        assert_eq!(vetted[1].message, "Check the carries.");
        assert!(!vetted[0].leak_blocked && !vetted[1].leak_blocked);
        assert_eq!(vetted[2].message, WRONG_MESSAGE);
        assert!(vetted[2].leak_blocked);
        assert_eq!(
            tally,
            LeakTally {
                critiques: 3,
                drafts: 6,
                leaked_drafts: 3,
                empty_drafts: 1,
                redacted: 1,
            }
        );
        assert!((tally.draft_leak_rate() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_drafter_that_loses_drafts_is_an_error() {
        let tasks = [Arith.generate(1, 1)];
        let refs: Vec<&Task> = tasks.iter().collect();
        let err =
            vet_critiques::<DataError>(&refs, 0, &mut LeakTally::default(), |_, _| Ok(Vec::new()))
                .unwrap_err();
        assert!(err.to_string().contains("0 drafts for 1"), "{err}");
    }
}
