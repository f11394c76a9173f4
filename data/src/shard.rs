//! Underspecified ("sharded") tasks for social meta-learning (SML, arXiv
//! 2602.16488): the first turn shows only part of a task, the teacher holds
//! the rest as shards, and the student may ask for them.
//!
//! A student turn is either an answer attempt or a *question*: a turn whose
//! text starts with [`QUESTION_MARK`], optionally followed by the name of
//! the shard it asks for (`? x`, `? row 2`, `? example 3`; a bare `?` is a
//! vague question). The teacher answers a question by revealing a shard
//! (the one named, else the next essential one not yet revealed) and never
//! the solution; an attempt gets the usual feedback on the full task.
//!
//! A shard is *essential* when the task's answer is not determined without
//! it, so an answer given before every essential shard is revealed is
//! *premature*: the behaviour SML trains away.

use crate::dialogue::{Dialogue, Role};
use crate::domain::{FeedbackLevel, Shard, Task};
use crate::error::Result;
use crate::leak::{self, teacher_message};
use crate::rng::Rng;

/// Opens a question turn.
pub const QUESTION_MARK: char = '?';
/// The teacher's reply to a question when nothing (else) is hidden.
pub const NOTHING_HIDDEN: &str = "Nothing else is hidden.";
/// The teacher's reply if a reveal ever failed the leak check. Sharding
/// rejects such shards up front, so this is a safety net that should never
/// be seen.
pub const CANNOT_SAY: &str = "I cannot tell you that.";
/// Suffix of a sharded task's id, which keeps it apart from the fully
/// specified task it was cut from.
pub const SHARDED_ID_SUFFIX: &str = "~sharded";

/// A task as the student first meets it, and the shards the teacher holds.
/// `task` keeps the full task's solution and privileged metadata, so the
/// verifier and the teacher judge attempts against the full task; only its
/// prompt (and id) differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedTask {
    pub task: Task,
    pub shards: Vec<Shard>,
}

impl ShardedTask {
    /// The sharded form of `task`, or `None` when its domain finds no way to
    /// withhold an essential shard without leaking the solution.
    pub fn new(task: &Task) -> Result<Option<Self>> {
        let Some(sharding) = task.domain.domain().shard(task)? else {
            return Ok(None);
        };
        let mut sharded = task.clone();
        sharded.prompt = sharding.prompt;
        sharded.task_id = format!("{}{SHARDED_ID_SUFFIX}", task.task_id);
        Ok(Some(Self {
            task: sharded,
            shards: sharding.shards,
        }))
    }
}

/// The id of the fully specified task a sharded task was cut from (any
/// other id unchanged).
pub fn full_task_id(id: &str) -> &str {
    id.strip_suffix(SHARDED_ID_SUFFIX).unwrap_or(id)
}

/// What a student turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move<'a> {
    Answer(&'a str),
    /// A question, with the name it asks for (`None`: a vague question).
    Question(Option<&'a str>),
}

impl Move<'_> {
    pub fn is_question(&self) -> bool {
        matches!(self, Move::Question(_))
    }
}

/// Reads a student turn. Never fails: anything that is not a question is an
/// answer attempt, for the verifier to judge.
pub fn parse_move(text: &str) -> Move<'_> {
    let text = text.trim();
    match text.strip_prefix(QUESTION_MARK) {
        Some(rest) => {
            let name = rest.trim();
            Move::Question((!name.is_empty()).then_some(name))
        }
        None => Move::Answer(text),
    }
}

/// The text of a question for `name` (vague for `None`).
pub fn question(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{QUESTION_MARK} {name}"),
        None => QUESTION_MARK.to_string(),
    }
}

/// Which shards the teacher's earlier messages revealed.
pub fn revealed<'a>(
    shards: &[Shard],
    teacher_messages: impl IntoIterator<Item = &'a str>,
) -> Vec<bool> {
    let mut known = vec![false; shards.len()];
    for message in teacher_messages {
        for (k, shard) in shards.iter().enumerate() {
            if message.trim() == shard.reveal {
                known[k] = true;
            }
        }
    }
    known
}

/// The shard a question gets: the one it names (case and spacing aside),
/// else the first essential shard not yet revealed, else the first shard
/// not yet revealed; `None` when nothing is left to reveal.
pub fn shard_for_question(shards: &[Shard], known: &[bool], name: Option<&str>) -> Option<usize> {
    let key = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    if let Some(name) = name
        && let Some(k) = shards.iter().position(|s| key(&s.name) == key(name))
    {
        return Some(k);
    }
    let unknown = |k: &usize| !known.get(*k).copied().unwrap_or(false);
    (0..shards.len())
        .filter(unknown)
        .find(|&k| shards[k].essential)
        .or_else(|| (0..shards.len()).find(unknown))
}

/// The teacher's reply to a student turn, given the teacher's earlier
/// messages in the dialogue: `(message, leak_blocked)`. A question gets a
/// reveal; an attempt gets the leak-checked feedback on the full task.
pub fn teacher_reply<'a>(
    task: &Task,
    shards: &[Shard],
    attempt: &str,
    level: FeedbackLevel,
    earlier: impl IntoIterator<Item = &'a str>,
) -> Result<(String, bool)> {
    match parse_move(attempt) {
        Move::Question(name) => {
            let known = revealed(shards, earlier);
            let Some(k) = shard_for_question(shards, &known, name) else {
                return Ok((NOTHING_HIDDEN.to_string(), false));
            };
            let reveal = &shards[k].reveal;
            Ok(match leak::check(task, reveal)? {
                Some(_) => (CANNOT_SAY.to_string(), true),
                None => (reveal.clone(), false),
            })
        }
        Move::Answer(_) => teacher_message(task, attempt, level),
    }
}

/// One student turn of a finished dialogue, as the premature-answer metric
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnKind {
    pub question: bool,
    /// An answer given while an essential shard was still unrevealed.
    pub premature: bool,
}

/// Classifies each student turn of a dialogue from the attempts and the
/// teacher's replies (`None` after the last turn). Only reveals in the
/// teacher's replies count as knowledge: a shard the student guessed is
/// still unknown to it.
pub fn classify_turns(shards: &[Shard], turns: &[(&str, Option<&str>)]) -> Vec<TurnKind> {
    let mut known = vec![false; shards.len()];
    turns
        .iter()
        .map(|&(attempt, reply)| {
            let question = parse_move(attempt).is_question();
            let missing = shards.iter().zip(&known).any(|(s, &k)| s.essential && !k);
            if let Some(reply) = reply {
                for (k, now) in revealed(shards, [reply]).into_iter().enumerate() {
                    known[k] |= now;
                }
            }
            TurnKind {
                question,
                premature: !question && missing,
            }
        })
        .collect()
}

/// Q-priming (SML's preliminary SFT stage): the probability that an
/// incorrect student turn at 1-based turn `t` is replaced by a question,
/// `base^t` (the paper's P_Q(t) = 0.75^t).
pub fn question_probability(base: f64, turn: usize) -> f64 {
    base.powi(turn.min(i32::MAX as usize) as i32)
}

/// A Q-primed dialogue on a sharded task. While an essential shard is
/// unrevealed, the student's turn is incorrect (a mistake from the domain's
/// error model, which cannot know what is hidden); at turn t it is replaced
/// by a question for the next unrevealed essential shard with probability
/// [`question_probability`], and the teacher reveals that shard; otherwise
/// the mistake stands and gets the teacher's feedback. Once every essential
/// shard is known the student answers correctly, after one more mistake
/// with probability `retry` (when a turn is left for the answer), so that a
/// wrong answer with everything known is followed by another answer, not by
/// a question. A dialogue that spends `max_turns` without that ends on its
/// last mistake.
pub fn qprimed_dialogue(
    sharded: &ShardedTask,
    level: FeedbackLevel,
    max_turns: usize,
    base: f64,
    retry: f64,
    rng: &mut Rng,
) -> Result<Dialogue> {
    let task = &sharded.task;
    let mut dialogue = Dialogue::from_task(&task.prompt);
    let mut known = vec![false; sharded.shards.len()];
    let mut retried = false;
    for turn in 1..=max_turns.max(1) {
        let next = (0..sharded.shards.len()).find(|&k| sharded.shards[k].essential && !known[k]);
        let student = match next {
            None if retried || turn >= max_turns || !rng.chance(retry) => {
                dialogue.push(Role::Student, &task.solution);
                return Ok(dialogue);
            }
            None => {
                retried = true;
                task.domain.domain().wrong_attempt(task, rng)?
            }
            Some(next) => {
                let mistake = task.domain.domain().wrong_attempt(task, rng)?;
                if rng.chance(question_probability(base, turn)) {
                    question(Some(&sharded.shards[next].name))
                } else {
                    mistake
                }
            }
        };
        dialogue.push(Role::Student, &student);
        if turn == max_turns {
            break;
        }
        let (reply, _) = teacher_reply(
            task,
            &sharded.shards,
            &student,
            level,
            dialogue.texts(Role::Teacher),
        )?;
        for (k, now) in revealed(&sharded.shards, [reply.as_str()])
            .into_iter()
            .enumerate()
        {
            known[k] |= now;
        }
        dialogue.push(Role::Teacher, &reply);
    }
    Ok(dialogue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DomainKind, Verdict};
    use crate::rng::mix_seed;

    fn shards() -> Vec<Shard> {
        vec![
            Shard {
                name: "example 2".into(),
                reveal: "example 2: [1] -> [2]".into(),
                essential: false,
            },
            Shard {
                name: "example 3".into(),
                reveal: "example 3: [3] -> [4]".into(),
                essential: true,
            },
        ]
    }

    #[test]
    fn questions_are_told_from_answers() {
        assert_eq!(parse_move("? row 2"), Move::Question(Some("row 2")));
        assert_eq!(parse_move("  ?  "), Move::Question(None));
        assert_eq!(parse_move("926"), Move::Answer("926"));
        assert_eq!(parse_move(""), Move::Answer(""));
        assert_eq!(parse_move(&question(Some("x"))), Move::Question(Some("x")));
        assert_eq!(parse_move(&question(None)), Move::Question(None));
    }

    #[test]
    fn a_question_gets_the_named_shard_else_the_next_essential_one() {
        let s = shards();
        assert_eq!(
            shard_for_question(&s, &[false, false], Some("Example  2")),
            Some(0)
        );
        assert_eq!(shard_for_question(&s, &[false, false], None), Some(1));
        assert_eq!(
            shard_for_question(&s, &[false, false], Some("row 9")),
            Some(1)
        );
        assert_eq!(shard_for_question(&s, &[false, true], None), Some(0));
        assert_eq!(shard_for_question(&s, &[true, true], None), None);
        assert_eq!(shard_for_question(&[], &[], Some("x")), None);
    }

    #[test]
    fn premature_answers_are_detected_on_hand_made_dialogues() {
        let s = shards();
        // Answers at once, then asks, then answers with everything known.
        let turns = [
            ("map +1", Some("Incorrect.")),
            ("? example 2", Some("example 2: [1] -> [2]")),
            ("map +1", Some("Incorrect.")),
            ("?", Some("example 3: [3] -> [4]")),
            ("map +1", None),
        ];
        let kinds = classify_turns(&s, &turns);
        let premature: Vec<bool> = kinds.iter().map(|k| k.premature).collect();
        let questions: Vec<bool> = kinds.iter().map(|k| k.question).collect();
        // The non-essential shard does not make an answer premature; the
        // essential one does until it is revealed.
        assert_eq!(premature, [true, false, true, false, false]);
        assert_eq!(questions, [false, true, false, true, false]);
        // A student that writes the reveal itself has not been told it.
        let guessed = [
            ("example 3: [3] -> [4]", Some("Incorrect.")),
            ("map +1", None),
        ];
        assert!(classify_turns(&s, &guessed).iter().all(|k| k.premature));
        // Nothing is premature on a fully specified task.
        assert!(classify_turns(&[], &turns).iter().all(|k| !k.premature));
    }

    #[test]
    fn question_probability_follows_the_schedule() {
        // Worked example: P_Q(t) = 0.75^t.
        let p: Vec<f64> = (1..=4).map(|t| question_probability(0.75, t)).collect();
        let expected = [0.75, 0.5625, 0.421875, 0.31640625];
        for (got, want) in p.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{p:?}");
        }
        // Empirically, over many seeded draws at turn 2.
        let mut rng = Rng::new(7);
        let hits = (0..100_000)
            .filter(|_| rng.chance(question_probability(0.75, 2)))
            .count();
        assert!((hits as f64 / 100_000.0 - 0.5625).abs() < 0.01, "{hits}");
    }

    #[test]
    fn every_domain_sharding_hides_an_essential_shard() {
        for kind in DomainKind::ALL {
            let domain = kind.domain();
            let (lo, hi) = domain.difficulty_range();
            let (mut total, mut sharded) = (0, 0);
            for seed in 0..200 {
                for d in lo..=hi {
                    let task = domain.generate(seed, d);
                    total += 1;
                    let Some(s) = ShardedTask::new(&task).unwrap() else {
                        continue;
                    };
                    sharded += 1;
                    assert!(s.shards.iter().any(|x| x.essential), "{kind}: {s:?}");
                    assert_ne!(s.task.prompt, task.prompt, "{kind}: nothing withheld");
                    assert_ne!(s.task.task_id, task.task_id);
                    // The sharded task is judged as the full task is.
                    assert_eq!(
                        domain.verify(&s.task, &task.solution).unwrap(),
                        Verdict::Correct
                    );
                    for shard in &s.shards {
                        assert!(
                            leak::check(&task, &shard.reveal).unwrap().is_none(),
                            "{kind}: {shard:?}"
                        );
                        // A question is never an answer.
                        let q = question(Some(&shard.name));
                        assert_ne!(domain.verify(&task, &q).unwrap(), Verdict::Correct);
                        let q = format!("{q} {}", task.solution);
                        assert_ne!(domain.verify(&task, &q).unwrap(), Verdict::Correct);
                    }
                }
            }
            // Most tasks can be sharded, so sharded sets are not a biased
            // sliver of the domain. (Sudoku with one to three blanks has
            // redundant givens: no single row is essential there.)
            assert!(
                sharded * 10 >= total * 6,
                "{kind}: {sharded} of {total} sharded"
            );
        }
    }

    /// Drives 10,000 dialogues per domain with random student moves (named,
    /// vague and bogus questions, the error model's mistakes, garbage) and
    /// checks every teacher message.
    #[test]
    fn the_teacher_never_reveals_the_solution() {
        for kind in DomainKind::ALL {
            let domain = kind.domain();
            let (lo, hi) = domain.difficulty_range();
            let (mut dialogues, mut messages, mut reveals) = (0, 0, 0);
            let mut seed = 0u64;
            while dialogues < 10_000 {
                seed += 1;
                let d = lo + (seed % (hi - lo + 1) as u64) as u32;
                let task = domain.generate(seed, d);
                let Some(s) = ShardedTask::new(&task).unwrap() else {
                    continue;
                };
                dialogues += 1;
                let mut rng = Rng::new(mix_seed(&[seed, 99]));
                let mut earlier: Vec<String> = Vec::new();
                for _ in 0..4 {
                    let attempt = match rng.below(5) {
                        0 => question(None),
                        1 => question(Some(&rng.choose(&s.shards).name)),
                        2 => question(Some("the answer")),
                        3 => domain.wrong_attempt(&task, &mut rng).unwrap(),
                        _ => "???".to_string(),
                    };
                    let level = *rng.choose(&FeedbackLevel::ALL);
                    let (reply, _) = teacher_reply(
                        &s.task,
                        &s.shards,
                        &attempt,
                        level,
                        earlier.iter().map(String::as_str),
                    )
                    .unwrap();
                    messages += 1;
                    reveals += s.shards.iter().any(|x| x.reveal == reply) as usize;
                    assert!(
                        leak::check(&task, &reply).unwrap().is_none(),
                        "{kind}: `{reply}` leaks {}",
                        task.solution
                    );
                    assert_ne!(reply, CANNOT_SAY);
                    earlier.push(reply);
                }
            }
            assert!(
                reveals * 4 > messages,
                "{kind}: only {reveals} reveals in {messages}"
            );
        }
    }

    #[test]
    fn qprimed_dialogues_ask_then_answer() {
        let domain = DomainKind::Arith.domain();
        let mut asked_first = 0;
        let n = 2000;
        for seed in 0..n {
            let task = domain.generate(seed, 3);
            let s = ShardedTask::new(&task).unwrap().expect("arith shards");
            let mut rng = Rng::new(seed);
            let d = qprimed_dialogue(&s, FeedbackLevel::Location, 4, 0.75, 0.0, &mut rng).unwrap();
            let student = d.texts(Role::Student);
            asked_first += parse_move(student[0]).is_question() as usize;
            // The last turn is the solution exactly when the essential shard
            // was asked for.
            let asked = student[..student.len() - 1]
                .iter()
                .any(|t| parse_move(t).is_question());
            assert_eq!(
                student.last() == Some(&task.solution.as_str()),
                asked,
                "{d}"
            );
            assert!(student.len() <= 4);
            // Every mistake before the reveal is premature.
            let replies = d.texts(Role::Teacher).into_iter().map(Some).chain([None]);
            let turns: Vec<(&str, Option<&str>)> = student.iter().copied().zip(replies).collect();
            let kinds = classify_turns(&s.shards, &turns);
            let before_question = kinds.iter().take_while(|k| !k.question).count();
            assert!(kinds[..before_question].iter().all(|k| k.premature));
        }
        // P_Q(1) = 0.75.
        let rate = asked_first as f64 / n as f64;
        assert!((rate - 0.75).abs() < 0.03, "{rate}");
    }

    #[test]
    fn qprimed_dialogues_retry_after_a_reveal_without_asking_again() {
        let domain = DomainKind::Arith.domain();
        let mut retried = 0;
        for seed in 0..500 {
            let task = domain.generate(seed, 3);
            let s = ShardedTask::new(&task).unwrap().expect("arith shards");
            let d = qprimed_dialogue(
                &s,
                FeedbackLevel::Verdict,
                4,
                0.75,
                1.0,
                &mut Rng::new(seed),
            )
            .unwrap();
            let student = d.texts(Role::Student);
            let Some(asked) = student.iter().position(|t| parse_move(t).is_question()) else {
                continue;
            };
            let after = &student[asked + 1..];
            assert!(after.iter().all(|t| !parse_move(t).is_question()), "{d}");
            if asked + 2 < 4 {
                // A mistake, then the solution.
                assert_eq!(after.len(), 2, "{d}");
                assert_ne!(after[0], task.solution);
                assert_eq!(after[1], task.solution);
                retried += 1;
            } else if let Some(last) = after.last() {
                assert_eq!(*last, task.solution, "{d}");
            }
        }
        assert!(retried > 100, "{retried}");
    }
}
