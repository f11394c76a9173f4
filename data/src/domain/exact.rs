//! `exact`: imported question/answer tasks judged by exact match of the
//! answer text, for any dataset whose answers are short strings (a word, a
//! name, a multiple-choice letter).
//!
//! Tasks of this domain come from `didact data import --kind exact`; the
//! data stage never generates them (the domain is not in
//! [`DomainKind::ALL`]). [`Domain::generate`] makes small deterministic
//! string tasks only so that the shared domain checks have tasks to run on.
//!
//! Matching ignores case and whitespace at the ends, and treats any run of
//! whitespace inside as one space: `New  York` matches `new york`, but
//! `New-York` does not, and neither does `New York.`. An empty answer is
//! malformed. The reference `solution` is the answer with its whitespace
//! normalised (case kept); `metadata` keeps the original text.
//!
//! Feedback levels: verdict only. Location and explanation repeat the
//! verdict, since there is no structure in an arbitrary string to point at
//! without giving it away.

use super::contract::Sharding;
use super::contract::{
    Domain, DomainKind, FeedbackLevel, MAX_ANSWER_CHARS, Task, Verdict, WRONG_MESSAGE, bounded,
    common_feedback,
};
use super::numeric::ImportMeta;
use crate::error::{DataError, Result};
use crate::rng::{Rng, mix_seed};

pub struct Exact;

/// Trims, collapses inner whitespace to one space; case is kept.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The form answers are compared in: whitespace collapsed, lower case.
pub fn normalise(text: &str) -> String {
    collapse_whitespace(text).to_lowercase()
}

/// Lower-case alphanumeric words, for the leak rule.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Exact {
    fn answer(&self, task: &Task) -> Result<String> {
        let answer = normalise(&task.solution);
        if answer.is_empty() {
            return Err(DataError::CorruptTask {
                task_id: task.task_id.clone(),
                reason: "empty solution".into(),
            });
        }
        Ok(answer)
    }
}

impl Domain for Exact {
    fn kind(&self) -> DomainKind {
        DomainKind::Exact
    }

    fn difficulty_range(&self) -> (u32, u32) {
        (0, 0)
    }

    /// A word to reverse or two words to join; only for the shared domain
    /// checks, since exact-match tasks are imported (see the module docs).
    fn generate(&self, seed: u64, _difficulty: u32) -> Task {
        const WORDS: [&str; 8] = [
            "river", "lantern", "copper", "meadow", "orbit", "saddle", "thistle", "violet",
        ];
        let mut rng = Rng::new(mix_seed(&[seed, DomainKind::Exact as u64]));
        let (a, b) = (*rng.choose(&WORDS), *rng.choose(&WORDS));
        let (prompt, solution) = if rng.chance(0.5) {
            (
                format!("Write the word `{a}` backwards."),
                a.chars().rev().collect::<String>(),
            )
        } else {
            (
                format!("Join `{a}` and `{b}` with a hyphen."),
                format!("{a}-{b}"),
            )
        };
        let meta = ImportMeta {
            source: "generated".into(),
            row: 0,
            answer: solution.clone(),
        };
        Task::new(
            DomainKind::Exact,
            0,
            seed,
            prompt,
            solution,
            serde_json::to_string(&meta).expect("serialisable"),
        )
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let answer = self.answer(task)?;
        Ok(match bounded(attempt).map(normalise) {
            None => Verdict::Malformed,
            Some(a) if a.is_empty() => Verdict::Malformed,
            Some(a) if a == answer => Verdict::Correct,
            Some(_) => Verdict::Wrong,
        })
    }

    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String> {
        let verdict = self.verify(task, attempt)?;
        if let Some(message) = common_feedback(verdict, level) {
            return Ok(message);
        }
        Ok(match verdict {
            Verdict::Malformed if attempt.len() > MAX_ANSWER_CHARS => "Your answer is too long.",
            Verdict::Malformed => "Your answer is empty.",
            _ => WRONG_MESSAGE,
        }
        .to_string())
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let solution = collapse_whitespace(&task.solution);
        let chars: Vec<char> = solution.chars().collect();
        for _ in 0..32 {
            let mut c = chars.clone();
            let at = rng.below(c.len().max(1) as u64) as usize;
            match rng.below(4) {
                // A dropped character.
                0 if c.len() > 1 => {
                    c.remove(at);
                }
                // Two neighbours swapped.
                1 if at + 1 < c.len() => c.swap(at, at + 1),
                // A doubled character.
                2 if !c.is_empty() => c.insert(at, c[at]),
                // A wrong letter.
                _ => {
                    let letter = (b'a' + rng.below(26) as u8) as char;
                    if c.is_empty() {
                        c.push(letter);
                    } else {
                        c[at] = letter;
                    }
                }
            }
            let candidate: String = c.into_iter().collect();
            if self.verify(task, &candidate)? == Verdict::Wrong {
                return Ok(candidate);
            }
        }
        Ok(format!("not {solution}"))
    }

    /// The solution's words in order in the message, e.g. solution `B`
    /// in `The answer is b.` (the generic rule skips solutions this short).
    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let answer = self.answer(task)?;
        let solution_words = words(&answer);
        let leaks = if solution_words.is_empty() {
            normalise(message).contains(&answer)
        } else {
            words(message)
                .windows(solution_words.len())
                .any(|w| w == solution_words.as_slice())
        };
        Ok(leaks.then(|| "states the answer".to_string()))
    }

    fn shard(&self, _task: &Task) -> Result<Option<Sharding>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn task(solution: &str) -> Task {
        Task::new(
            DomainKind::Exact,
            0,
            0,
            "Capital of France?".into(),
            solution.into(),
            "{}".into(),
        )
    }

    #[test]
    fn matching_ignores_case_and_whitespace_only() {
        let t = task("New York");
        let v = |a: &str| Exact.verify(&t, a).unwrap();
        assert_eq!(v("New York"), Verdict::Correct);
        assert_eq!(v("  new\t\n york "), Verdict::Correct);
        assert_eq!(v("NEW YORK"), Verdict::Correct);
        assert_eq!(v("New-York"), Verdict::Wrong);
        assert_eq!(v("New York."), Verdict::Wrong);
        assert_eq!(v("NewYork"), Verdict::Wrong);
        assert_eq!(v(" \n "), Verdict::Malformed);
        assert_eq!(v(&"a".repeat(MAX_ANSWER_CHARS + 1)), Verdict::Malformed);
    }

    #[test]
    fn feedback_says_no_more_than_the_verdict() {
        let t = task("Paris");
        let fb = |a: &str, l| Exact.feedback(&t, a, l).unwrap();
        assert_eq!(fb("paris", FeedbackLevel::Explanation), "Correct.");
        assert_eq!(fb("Lyon", FeedbackLevel::Retry), "Try again.");
        for level in [
            FeedbackLevel::Verdict,
            FeedbackLevel::Location,
            FeedbackLevel::Explanation,
        ] {
            assert_eq!(fb("Lyon", level), "Incorrect.");
            assert_eq!(fb("", level), "Your answer is empty.");
        }
        assert_eq!(
            fb(&"x".repeat(5000), FeedbackLevel::Location),
            "Your answer is too long."
        );
    }

    #[test]
    fn leak_rule_catches_the_answer_as_words() {
        assert!(
            Exact
                .leak_rule(&task("B"), "The answer is b.")
                .unwrap()
                .is_some()
        );
        assert!(
            Exact
                .leak_rule(&task("B"), "Both are wrong.")
                .unwrap()
                .is_none()
        );
        let t = task("New York");
        assert!(
            Exact
                .leak_rule(&t, "Think of new  york.")
                .unwrap()
                .is_some()
        );
        assert!(Exact.leak_rule(&t, "Not York.").unwrap().is_none());
        assert!(
            Exact
                .leak_rule(&task("?!"), "What ?! no")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_corrupt_solution_is_an_error() {
        assert!(Exact.verify(&task("  "), "x").is_err());
    }

    #[test]
    fn wrong_attempts_are_wrong() {
        for solution in ["Paris", "B", "New York", "aa", "-"] {
            let t = task(solution);
            for seed in 0..100 {
                let wrong = Exact.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
                assert_eq!(Exact.verify(&t, &wrong).unwrap(), Verdict::Wrong, "{wrong}");
            }
        }
    }

    #[test]
    fn shared_domain_checks() {
        testkit::reference_solutions_verify(&Exact, 50);
        testkit::garbage_never_panics(&Exact);
        assert_eq!(Exact.shard(&Exact.generate(1, 0)).unwrap(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn any_string_is_judged(solution in "[A-Za-z]{1,3}( [A-Za-z]{1,5})?", s in any::<String>()) {
            let t = task(&solution);
            let verdict = Exact.verify(&t, &s).unwrap();
            for level in FeedbackLevel::ALL {
                let msg = Exact.feedback(&t, &s, level).unwrap();
                prop_assert!(!msg.is_empty());
                prop_assert_eq!(msg == crate::domain::CORRECT_MESSAGE, verdict.is_correct());
            }
            let padded = format!("  {}\t", solution.to_uppercase().replace(' ', "   "));
            prop_assert_eq!(Exact.verify(&t, &padded).unwrap(), Verdict::Correct);
        }
    }
}
