//! `numeric`: imported question/answer tasks whose answer is a number
//! (GSM8K-style math word problems), judged by comparing numbers.
//!
//! Tasks of this domain come from `didact data import --kind numeric`; the
//! data stage never generates them (the domain is not in
//! [`DomainKind::ALL`]). [`Domain::generate`] makes small deterministic word
//! problems only so that the shared domain checks have tasks to run on.
//!
//! The final answer of a text is the first number after the last `####` if
//! the text has one (GSM8K's answer format), else the last number in the
//! text. A number is ASCII digits with an optional decimal part (`.5`,
//! `3.25`), thousands separators in groups of three (`1,234`), an optional
//! `$` and an optional sign (`-`, or the minus sign `−`) that is not a
//! hyphen inside a word or between numbers (`5-3` is two numbers). Trailing
//! `.`, `%` and units are ignored. Numbers compare exactly as decimals, so
//! `1,234`, `1234` and `1234.0` are the same answer. Fractions (`3/4`) and
//! exponents (`1e3`) are not understood: their last number is taken.
//!
//! The reference `solution` is the canonical form of the number (`1234`,
//! `-3.5`), written at import time; `metadata` keeps the original answer
//! text (for GSM8K, the worked solution) and where it came from.
//!
//! Feedback levels: verdict; direction (too high / too low); direction,
//! sign, number of digits before the decimal point, and whether the answer
//! is a whole number.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::contract::Sharding;
use super::contract::{Domain, DomainKind, FeedbackLevel, Task, Verdict, bounded, common_feedback};
use crate::error::{DataError, Result};
use crate::rng::{Rng, mix_seed};

pub struct Numeric;

/// Metadata of an imported task (shared by the `numeric` and `exact`
/// domains): the answer text as it was in the source, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMeta {
    /// File name of the source (`generated` for tasks of [`Domain::generate`]).
    pub source: String,
    /// Line (JSONL) or row (parquet), counted from 1; 0 for generated tasks.
    pub row: usize,
    /// The answer field as it was in the source.
    pub answer: String,
}

/// A decimal number in canonical form: no leading zeros in `int`, no
/// trailing zeros in `frac`, and zero is never negative. Two numbers are
/// equal exactly when their canonical forms are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Digits before the point, without leading zeros (empty for 0.x).
    int: String,
    /// Digits after the point, without trailing zeros.
    frac: String,
}

impl Decimal {
    fn new(negative: bool, int: &str, frac: &str) -> Self {
        let int = int.trim_start_matches('0').to_string();
        let frac = frac.trim_end_matches('0').to_string();
        let zero = int.is_empty() && frac.is_empty();
        Self {
            negative: negative && !zero,
            int,
            frac,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.is_empty()
    }

    pub fn is_whole(&self) -> bool {
        self.frac.is_empty()
    }

    /// Digits before the decimal point (at least 1: `0.5` has one).
    pub fn int_digits(&self) -> usize {
        self.int.len().max(1)
    }

    fn negated(&self) -> Self {
        Self {
            negative: !self.negative && !self.is_zero(),
            ..self.clone()
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            // Without trailing zeros, comparing fraction digits as strings
            // compares their values.
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

fn is_minus(c: char) -> bool {
    c == '-' || c == '\u{2212}'
}

/// Every number in `text`, left to right (see the module docs for what a
/// number is). Linear in the length of the text.
pub fn numbers(text: &str) -> Vec<Decimal> {
    let c: Vec<char> = text.chars().collect();
    let digit = |i: usize| c.get(i).is_some_and(char::is_ascii_digit);
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let starts_int = digit(i);
        let starts_frac = c[i] == '.' && digit(i + 1) && !(i > 0 && digit(i - 1));
        if !(starts_int || starts_frac) {
            i += 1;
            continue;
        }
        let start = i;
        let mut int = String::new();
        while i < c.len() {
            if digit(i) {
                int.push(c[i]);
                i += 1;
            } else if c[i] == ','
                && !int.is_empty()
                && (1..=3).all(|k| digit(i + k))
                && !digit(i + 4)
            {
                i += 1;
            } else {
                break;
            }
        }
        let mut frac = String::new();
        if i < c.len() && c[i] == '.' && digit(i + 1) {
            i += 1;
            while digit(i) {
                frac.push(c[i]);
                i += 1;
            }
        }
        // A sign directly before the number (or before its `$`), unless the
        // minus is a hyphen or an operator after a word or number.
        let mut j = start;
        if j > 0 && c[j - 1] == '$' {
            j -= 1;
        }
        let negative = j > 0 && is_minus(c[j - 1]) && !(j > 1 && c[j - 2].is_alphanumeric());
        out.push(Decimal::new(negative, &int, &frac));
    }
    out
}

/// The final answer of a text: the first number after the last `####`, if
/// there is one, else the last number. `None` when there is no number
/// where one is expected.
pub fn final_number(text: &str) -> Option<Decimal> {
    match text.rfind("####") {
        Some(at) => numbers(&text[at + 4..]).into_iter().next(),
        None => numbers(text).pop(),
    }
}

impl Numeric {
    fn answer(&self, task: &Task) -> Result<Decimal> {
        final_number(&task.solution).ok_or_else(|| DataError::CorruptTask {
            task_id: task.task_id.clone(),
            reason: format!("solution `{}` is not a number", task.solution),
        })
    }
}

/// What a word problem of [`Numeric::generate`] asks, and its answer.
fn word_problem(rng: &mut Rng) -> (String, i64) {
    const NAMES: [&str; 6] = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima"];
    const ITEMS: [&str; 6] = ["apples", "books", "marbles", "pencils", "stamps", "shells"];
    let name = *rng.choose(&NAMES);
    let items = *rng.choose(&ITEMS);
    let (a, b) = (rng.range(2, 99), rng.range(2, 99));
    match rng.below(3) {
        0 => (
            format!(
                "{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?"
            ),
            a + b,
        ),
        1 => {
            let (hi, lo) = (a.max(b), a.min(b));
            (
                format!("{name} has {hi} {items} and gives away {lo}. How many {items} are left?"),
                hi - lo,
            )
        }
        _ => (
            format!("A box holds {a} {items}. How many {items} are in {b} boxes?"),
            a * b,
        ),
    }
}

impl Domain for Numeric {
    fn kind(&self) -> DomainKind {
        DomainKind::Numeric
    }

    fn difficulty_range(&self) -> (u32, u32) {
        (0, 0)
    }

    /// A one-step word problem; only for the shared domain checks, since
    /// numeric tasks are imported (see the module docs).
    fn generate(&self, seed: u64, _difficulty: u32) -> Task {
        let mut rng = Rng::new(mix_seed(&[seed, DomainKind::Numeric as u64]));
        let (prompt, value) = word_problem(&mut rng);
        let meta = ImportMeta {
            source: "generated".into(),
            row: 0,
            answer: format!("#### {value}"),
        };
        Task::new(
            DomainKind::Numeric,
            0,
            seed,
            prompt,
            value.to_string(),
            serde_json::to_string(&meta).expect("serialisable"),
        )
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let answer = self.answer(task)?;
        Ok(match bounded(attempt).and_then(final_number) {
            None => Verdict::Malformed,
            Some(v) if v == answer => Verdict::Correct,
            Some(_) => Verdict::Wrong,
        })
    }

    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String> {
        let verdict = self.verify(task, attempt)?;
        if let Some(message) = common_feedback(verdict, level) {
            return Ok(message);
        }
        let Some(value) = bounded(attempt).and_then(final_number) else {
            return Ok("End your answer with a number, e.g. after ####.".to_string());
        };
        let answer = self.answer(task)?;
        let mut message = if value > answer {
            "Your answer is too high.".to_string()
        } else {
            "Your answer is too low.".to_string()
        };
        if level == FeedbackLevel::Location {
            return Ok(message);
        }
        if value.negative != answer.negative && !value.is_zero() && !answer.is_zero() {
            message.push_str(" The sign is wrong.");
        }
        match value.int_digits().cmp(&answer.int_digits()) {
            Ordering::Greater => message.push_str(" It has too many digits before the point."),
            Ordering::Less => message.push_str(" It has too few digits before the point."),
            Ordering::Equal => {}
        }
        if answer.is_whole() && !value.is_whole() {
            message.push_str(" The answer is a whole number.");
        } else if !answer.is_whole() && value.is_whole() {
            message.push_str(" The answer is not a whole number.");
        }
        Ok(message)
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let answer = self.answer(task)?;
        for _ in 0..32 {
            let candidate = match rng.below(4) {
                // One digit off.
                0 => {
                    let mut digits: Vec<char> =
                        format!("{}{}", answer.int, answer.frac).chars().collect();
                    if digits.is_empty() {
                        digits.push('0');
                    }
                    let at = rng.below(digits.len() as u64) as usize;
                    let old = digits[at].to_digit(10).unwrap_or(0) as u64;
                    let new = (old + 1 + rng.below(9)) % 10;
                    digits[at] = char::from_digit(new as u32, 10).unwrap_or('1');
                    let digits: String = digits.into_iter().collect();
                    let split = digits.len() - answer.frac.len();
                    Decimal::new(answer.negative, &digits[..split], &digits[split..])
                }
                // Off by a small whole amount.
                1 => match answer.to_string().parse::<i64>() {
                    Ok(v) if answer.int.len() <= 15 => {
                        let k = rng.range(1, 9) * if rng.chance(0.5) { 1 } else { -1 };
                        final_number(&(v + k).to_string()).unwrap_or_else(|| answer.clone())
                    }
                    _ => continue,
                },
                // Sign slip.
                2 => answer.negated(),
                // Ten times too large.
                _ => Decimal::new(
                    answer.negative,
                    &format!(
                        "{}{}",
                        answer.int,
                        answer.frac.chars().next().unwrap_or('0')
                    ),
                    answer.frac.get(1..).unwrap_or(""),
                ),
            };
            if candidate != answer {
                return Ok(candidate.to_string());
            }
        }
        Ok(format!("{}1", answer))
    }

    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let answer = self.answer(task)?;
        let negated = answer.negated();
        let mentions_answer = numbers(message)
            .into_iter()
            .any(|n| n == answer || n == negated);
        Ok(mentions_answer.then(|| "states the answer as a number".to_string()))
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

    fn num(s: &str) -> String {
        final_number(s).map(|d| d.to_string()).unwrap_or_default()
    }

    fn task(solution: &str) -> Task {
        let meta = ImportMeta {
            source: "test".into(),
            row: 1,
            answer: solution.into(),
        };
        Task::new(
            DomainKind::Numeric,
            0,
            0,
            "How many?".into(),
            solution.into(),
            serde_json::to_string(&meta).unwrap(),
        )
    }

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(num("1,234"), "1234");
        assert_eq!(num("1234"), "1234");
        assert_eq!(num("1234.0"), "1234");
        assert_eq!(num("$1,234.50"), "1234.5");
        assert_eq!(num("72."), "72");
        assert_eq!(num("50%"), "50");
        assert_eq!(num("  007 "), "7");
        assert_eq!(num(".5"), "0.5");
        assert_eq!(num("-3"), "-3");
        assert_eq!(num("\u{2212}3"), "-3");
        assert_eq!(num("-$3"), "-3");
        assert_eq!(num("$-3"), "-3");
        assert_eq!(num("-0.0"), "0");
        assert_eq!(num("1,234,567"), "1234567");
        assert_eq!(
            num("1,2"),
            "2",
            "a comma not followed by three digits separates"
        );
        assert_eq!(num("12,3456"), "3456");
        assert_eq!(num("5-3"), "3", "a minus after a number is not a sign");
        assert_eq!(num("x-3"), "3", "a hyphen after a letter is not a sign");
        assert_eq!(num("It costs 5 - 3 = 2 dollars."), "2");
        assert_eq!(num("no number here"), "");
        assert_eq!(num(""), "");
    }

    #[test]
    fn the_final_answer_follows_the_last_marker() {
        let gsm = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n\
                   Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72";
        assert_eq!(num(gsm), "72");
        assert_eq!(num("first 10, then #### 1,000 (rounded from 999)"), "1000");
        assert_eq!(num("#### 3 #### 4 apples"), "4");
        assert_eq!(
            num("So 12 apples.\n#### "),
            "",
            "a marker with no number after it"
        );
        assert_eq!(
            num("The answer is 3, not 4."),
            "4",
            "without a marker, the last number"
        );
    }

    #[test]
    fn comparison_is_numeric() {
        let cmp = |a: &str, b: &str| final_number(a).unwrap().cmp(&final_number(b).unwrap());
        assert_eq!(cmp("10", "9"), Ordering::Greater);
        assert_eq!(cmp("0.51", "0.5"), Ordering::Greater);
        assert_eq!(cmp("0.6", "0.51"), Ordering::Greater);
        assert_eq!(cmp("-2", "-10"), Ordering::Greater);
        assert_eq!(cmp("-0.5", "0"), Ordering::Less);
        assert_eq!(cmp("1,000", "1000.00"), Ordering::Equal);
    }

    #[test]
    fn verdicts_on_model_style_answers() {
        let t = task("1234");
        for correct in [
            "1234",
            "1,234",
            "1234.0",
            "$1,234",
            "The total is 1,234 dollars.",
            "2 boxes of 617 make #### 1234",
            &format!("{}1234", "x".repeat(2000)),
        ] {
            assert_eq!(
                Numeric.verify(&t, correct).unwrap(),
                Verdict::Correct,
                "{correct}"
            );
        }
        assert_eq!(Numeric.verify(&t, "1233").unwrap(), Verdict::Wrong);
        assert_eq!(Numeric.verify(&t, "#### 1234.5").unwrap(), Verdict::Wrong);
        assert_eq!(Numeric.verify(&t, "-1234").unwrap(), Verdict::Wrong);
        assert_eq!(
            Numeric.verify(&t, "I don't know").unwrap(),
            Verdict::Malformed
        );
        assert_eq!(
            Numeric.verify(&t, &"1".repeat(5000)).unwrap(),
            Verdict::Malformed,
            "too long to judge"
        );
        assert_eq!(
            Numeric.verify(&task("-3"), "\u{2212}3").unwrap(),
            Verdict::Correct
        );
    }

    #[test]
    fn a_corrupt_solution_is_an_error() {
        let err = Numeric.verify(&task("seventy"), "70").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }

    #[test]
    fn feedback_levels_on_a_worked_example() {
        let t = task("72");
        let fb = |a: &str, l| Numeric.feedback(&t, a, l).unwrap();
        assert_eq!(fb("70", FeedbackLevel::Verdict), "Incorrect.");
        assert_eq!(fb("70", FeedbackLevel::Retry), "Try again.");
        assert_eq!(fb("72", FeedbackLevel::Explanation), "Correct.");
        assert_eq!(fb("70", FeedbackLevel::Location), "Your answer is too low.");
        assert_eq!(
            fb("720", FeedbackLevel::Explanation),
            "Your answer is too high. It has too many digits before the point."
        );
        assert_eq!(
            fb("-7.5", FeedbackLevel::Explanation),
            "Your answer is too low. The sign is wrong. It has too few digits before the point. \
             The answer is a whole number."
        );
        assert_eq!(
            fb("no idea", FeedbackLevel::Verdict),
            "End your answer with a number, e.g. after ####."
        );
        assert_eq!(
            Numeric
                .feedback(&task("2.5"), "2", FeedbackLevel::Explanation)
                .unwrap(),
            "Your answer is too low. The answer is not a whole number."
        );
    }

    #[test]
    fn leak_rule_catches_the_answer() {
        let t = task("1234");
        assert!(Numeric.leak_rule(&t, "It is 1,234.").unwrap().is_some());
        assert!(Numeric.leak_rule(&t, "Not -1234.0!").unwrap().is_some());
        assert!(Numeric.leak_rule(&t, "It is 1235.").unwrap().is_none());
        assert!(
            crate::leak::check(&task("7"), "Your answer is 7 too low.")
                .unwrap()
                .is_some(),
            "short answers are caught by the domain rule"
        );
    }

    #[test]
    fn wrong_attempts_are_wrong_and_never_leak_in_feedback() {
        for solution in [
            "72",
            "0",
            "-3",
            "2.5",
            "0.125",
            "1000000",
            "99999999999999999999",
        ] {
            let t = task(solution);
            for seed in 0..200 {
                let wrong = Numeric.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
                assert_eq!(
                    Numeric.verify(&t, &wrong).unwrap(),
                    Verdict::Wrong,
                    "{solution} {wrong}"
                );
                for level in FeedbackLevel::ALL {
                    let msg = Numeric.feedback(&t, &wrong, level).unwrap();
                    assert_eq!(crate::leak::check(&t, &msg).unwrap(), None, "{msg}");
                }
            }
        }
    }

    #[test]
    fn feedback_direction_is_true() {
        for i in 0..500u64 {
            let t = Numeric.generate(i, 0);
            let answer: i64 = t.solution.parse().unwrap();
            let wrong = Numeric.wrong_attempt(&t, &mut Rng::new(i)).unwrap();
            let value: f64 = wrong.parse().unwrap();
            let msg = Numeric
                .feedback(&t, &wrong, FeedbackLevel::Location)
                .unwrap();
            assert_eq!(
                msg.contains("too high"),
                value > answer as f64,
                "{t:?} {wrong}"
            );
            assert_eq!(
                msg.contains("too low"),
                value < answer as f64,
                "{t:?} {wrong}"
            );
        }
    }

    #[test]
    fn shared_domain_checks() {
        testkit::reference_solutions_verify(&Numeric, 50);
        testkit::garbage_never_panics(&Numeric);
        assert_eq!(Numeric.shard(&Numeric.generate(1, 0)).unwrap(), None);
    }

    fn judge(solution: &str, attempt: &str) -> Result<(), TestCaseError> {
        let t = task(solution);
        let verdict = Numeric.verify(&t, attempt).unwrap();
        for level in FeedbackLevel::ALL {
            let msg = Numeric.feedback(&t, attempt, level).unwrap();
            prop_assert!(!msg.is_empty());
            prop_assert_eq!(msg == crate::domain::CORRECT_MESSAGE, verdict.is_correct());
            prop_assert_eq!(crate::leak::check(&t, &msg).unwrap(), None);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn any_string_is_judged(s in any::<String>()) {
            judge("72", &s)?;
        }

        #[test]
        fn number_shaped_strings_are_judged(
            solution in "-?[0-9]{1,6}(\\.[0-9]{1,3})?",
            s in "[-−+ 0-9.,$%#]{0,60}",
        ) {
            let solution = num(&solution);
            judge(&solution, &s)?;
        }

        #[test]
        fn normalisation_agrees_with_floats(int in 0u64..10_000_000, frac in 0u32..1000) {
            let text = format!("{int}.{frac:03}");
            let grouped = {
                let digits = int.to_string();
                let mut out = String::new();
                for (i, ch) in digits.chars().enumerate() {
                    if i > 0 && (digits.len() - i).is_multiple_of(3) {
                        out.push(',');
                    }
                    out.push(ch);
                }
                format!("{out}.{frac:03}")
            };
            prop_assert_eq!(final_number(&text), final_number(&grouped));
            let parsed: f64 = num(&text).parse().unwrap();
            prop_assert!((parsed - text.parse::<f64>().unwrap()).abs() < 1e-9);
        }
    }
}
