//! `arith` (the paper's math setting): integer expressions with k operands of
//! d digits and + − ×, evaluated with the usual precedence.
//!
//! Difficulty `n` (1..=10) sets `k = 2 + (n-1)/2` operands of `d = (n+2)/2`
//! digits: 1 → `3+5=`, 2 → `47-12=`, 3 → `31*4+56=` (k=3, d=2), …
//! Feedback levels: verdict; direction (too high / too low); direction plus
//! which digit positions are wrong; mask (direction, then the attempt's
//! digits marked right `.` or wrong `!`: `Wrong digits: .!.`).

use serde::{Deserialize, Serialize};

use super::contract::CritiqueReading;
use super::contract::{
    Domain, DomainKind, FeedbackLevel, Task, Verdict, bounded, common_feedback, render_mask,
};
use super::contract::{Shard, Sharding};
use super::critique::{is_mask, number, read_common};
use crate::error::Result;
use crate::rng::{Rng, mix_seed};

pub struct Arith;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    /// Operands in order, e.g. `[347, 589]`.
    operands: Vec<i64>,
    /// Operators between them, as `+`, `-`, `*`.
    operators: String,
}

/// Operand count and digit count for a difficulty.
fn shape(difficulty: u32) -> (usize, u32) {
    let n = difficulty.clamp(1, 10);
    (2 + (n as usize - 1) / 2, (n + 2) / 2)
}

/// Evaluates with × before + and −; `None` on overflow.
fn evaluate(operands: &[i64], operators: &[u8]) -> Option<i128> {
    let mut sum: i128 = 0;
    let mut term: i128 = *operands.first()? as i128;
    let mut sign: i128 = 1;
    for (op, &x) in operators.iter().zip(&operands[1..]) {
        match op {
            b'*' => term = term.checked_mul(x as i128)?,
            b'+' | b'-' => {
                sum = sum.checked_add(sign.checked_mul(term)?)?;
                sign = if *op == b'+' { 1 } else { -1 };
                term = x as i128;
            }
            _ => return None,
        }
    }
    sum.checked_add(sign.checked_mul(term)?)
}

/// Evaluates strictly left to right, the classic precedence mistake.
fn evaluate_left_to_right(operands: &[i64], operators: &[u8]) -> Option<i128> {
    let mut acc = *operands.first()? as i128;
    for (op, &x) in operators.iter().zip(&operands[1..]) {
        acc = match op {
            b'*' => acc.checked_mul(x as i128)?,
            b'+' => acc.checked_add(x as i128)?,
            _ => acc.checked_sub(x as i128)?,
        };
    }
    Some(acc)
}

/// Parses a model's answer: an optional sign and decimal digits, nothing else.
/// At most 38 digits, so it always fits an `i128`.
fn parse_answer(text: &str) -> Option<i128> {
    let s = bounded(text)?;
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || digits.len() > 38 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i128 = digits.parse().ok()?;
    Some(if negative { -value } else { value })
}

const MALFORMED_MESSAGE: &str = "Answer with a single integer and nothing else.";

const PLACE_NAMES: [&str; 10] = [
    "ones",
    "tens",
    "hundreds",
    "thousands",
    "ten-thousands",
    "hundred-thousands",
    "millions",
    "ten-millions",
    "hundred-millions",
    "billions",
];

fn place_name(position: usize) -> String {
    match PLACE_NAMES.get(position) {
        Some(name) => name.to_string(),
        None => format!("{}th-from-the-right", position + 1),
    }
}

fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

/// Whether `message` has the form of the arith teacher's critique of a
/// wrong answer: the direction, then in order the optional sign, length and
/// either the mask (`Wrong digits: .!.`) or the named wrong digits.
fn is_critique_form(message: &str) -> bool {
    let Some(mut rest) = message
        .strip_prefix("Your answer is too low.")
        .or_else(|| message.strip_prefix("Your answer is too high."))
    else {
        return false;
    };
    for optional in [
        &[" The sign is wrong."][..],
        &[" It has too many digits.", " It has too few digits."],
    ] {
        if let Some(after) = optional.iter().find_map(|s| rest.strip_prefix(s)) {
            rest = after;
        }
    }
    if rest.is_empty() {
        return true;
    }
    if let Some(mask) = rest.strip_prefix(" Wrong digits: ") {
        return is_mask(mask);
    }
    let Some(names) = rest.strip_prefix(" The ") else {
        return false;
    };
    let (names, one) = if let Some(n) = names.strip_suffix(" digit is wrong.") {
        (n, true)
    } else if let Some(n) = names.strip_suffix(" digits are wrong.") {
        (n, false)
    } else {
        return false;
    };
    let (init, last) = names.rsplit_once(" and ").unwrap_or(("", names));
    let mut all: Vec<&str> = if init.is_empty() {
        Vec::new()
    } else {
        init.split(", ").collect()
    };
    all.push(last);
    let is_place = |name: &&str| {
        PLACE_NAMES.contains(name)
            || name
                .strip_suffix("th-from-the-right")
                .and_then(number)
                .is_some_and(|n| n > PLACE_NAMES.len())
    };
    (all.len() == 1) == one && all.iter().all(is_place)
}

/// Digit positions (0 = ones) where `attempt` and `answer` differ, comparing
/// magnitudes right-aligned, up to the length of the longer one.
fn wrong_positions(attempt: i128, answer: i128) -> Vec<usize> {
    let a: Vec<u8> = attempt.unsigned_abs().to_string().bytes().rev().collect();
    let b: Vec<u8> = answer.unsigned_abs().to_string().bytes().rev().collect();
    (0..a.len().max(b.len()))
        .filter(|&i| a.get(i) != b.get(i))
        .collect()
}

/// The attempt's digits as written, `.` where the digit matches the
/// answer's digit of the same place and `!` where it does not (or the answer
/// has no digit there): `156` against `166` is `.!.`.
fn digit_mask(attempt: i128, answer: i128) -> String {
    let wrong = wrong_positions(attempt, answer);
    let len = attempt.unsigned_abs().to_string().len();
    render_mask((0..len).rev().map(|place| wrong.contains(&place)))
}

impl Arith {
    fn answer(&self, task: &Task) -> Result<i128> {
        let meta: Meta = task.meta()?;
        evaluate(&meta.operands, meta.operators.as_bytes()).ok_or_else(|| {
            crate::DataError::CorruptTask {
                task_id: task.task_id.clone(),
                reason: "expression does not evaluate".into(),
            }
        })
    }
}

impl Domain for Arith {
    fn kind(&self) -> DomainKind {
        DomainKind::Arith
    }

    fn difficulty_range(&self) -> (u32, u32) {
        (1, 10)
    }

    fn generate(&self, seed: u64, difficulty: u32) -> Task {
        let difficulty = difficulty.clamp(1, 10);
        let (k, d) = shape(difficulty);
        let lo = if d == 1 { 0 } else { 10i64.pow(d - 1) };
        let hi = 10i64.pow(d) - 1;
        for attempt in 0u64.. {
            let mut rng = Rng::new(mix_seed(&[seed, difficulty as u64, attempt]));
            let operands: Vec<i64> = (0..k).map(|_| rng.range(lo, hi)).collect();
            let operators: Vec<u8> = (1..k).map(|_| *rng.choose(b"+-*")).collect();
            if let Some(value) = evaluate(&operands, &operators) {
                let mut prompt = operands[0].to_string();
                for (op, x) in operators.iter().zip(&operands[1..]) {
                    prompt.push(*op as char);
                    prompt.push_str(&x.to_string());
                }
                prompt.push('=');
                let meta = Meta {
                    operands,
                    operators: String::from_utf8(operators).expect("ascii operators"),
                };
                let metadata = serde_json::to_string(&meta).expect("serialisable");
                return Task::new(
                    DomainKind::Arith,
                    difficulty,
                    seed,
                    prompt,
                    value.to_string(),
                    metadata,
                );
            }
        }
        unreachable!("an unbounded loop either returns or runs forever")
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let answer = self.answer(task)?;
        Ok(match parse_answer(attempt) {
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
        let Some(value) = parse_answer(attempt) else {
            return Ok(MALFORMED_MESSAGE.to_string());
        };
        let answer = self.answer(task)?;
        let direction = if value > answer {
            "Your answer is too high."
        } else {
            "Your answer is too low."
        };
        if level == FeedbackLevel::Location {
            return Ok(direction.to_string());
        }
        let mut message = direction.to_string();
        if (value < 0) != (answer < 0) {
            message.push_str(" The sign is wrong.");
        }
        let positions = wrong_positions(value, answer);
        let (a_len, b_len) = (
            value.unsigned_abs().to_string().len(),
            answer.unsigned_abs().to_string().len(),
        );
        if a_len > b_len {
            message.push_str(" It has too many digits.");
        } else if a_len < b_len {
            message.push_str(" It has too few digits.");
        }
        if level == FeedbackLevel::Mask {
            message.push_str(&format!(" Wrong digits: {}", digit_mask(value, answer)));
            return Ok(message);
        }
        if !positions.is_empty() {
            let names: Vec<String> = positions.iter().map(|&p| place_name(p)).collect();
            let noun = if names.len() == 1 {
                "digit is"
            } else {
                "digits are"
            };
            message.push_str(&format!(" The {} {noun} wrong.", join_names(&names)));
        }
        Ok(message)
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let meta: Meta = task.meta()?;
        let answer = self.answer(task)?;
        for _ in 0..32 {
            let candidate = match rng.below(5) {
                // One digit off.
                0 => {
                    let digits = answer.unsigned_abs().to_string().len() as u32;
                    let place = 10i128.pow(rng.below(digits as u64) as u32);
                    answer + place * if rng.chance(0.5) { 1 } else { -1 }
                }
                // A dropped or extra carry.
                1 => answer + 10 * if rng.chance(0.5) { 1 } else { -1 },
                // Ignoring precedence.
                2 => match evaluate_left_to_right(&meta.operands, meta.operators.as_bytes()) {
                    Some(v) => v,
                    None => continue,
                },
                // Sign slip.
                3 => -answer,
                // Off by a small amount.
                _ => answer + rng.range(-9, 9) as i128,
            };
            if candidate != answer {
                return Ok(candidate.to_string());
            }
        }
        Ok((answer + 1).to_string())
    }

    /// Every claim of an arith critique (too high or low, the sign, the
    /// number of digits, which digits) compares the attempt with the
    /// answer, so only the form is judged.
    fn read_critique(
        &self,
        task: &Task,
        attempt: &str,
        message: &str,
    ) -> Result<Option<CritiqueReading>> {
        let message = message.trim();
        let verdict = self.verify(task, attempt)?;
        Ok(Some(
            match read_common(message, Some(MALFORMED_MESSAGE), verdict) {
                Some(reading) => reading,
                None if is_critique_form(message) => CritiqueReading::UNCHECKABLE,
                None => CritiqueReading::GARBLED,
            },
        ))
    }

    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let answer = self.answer(task)?;
        let mentions_answer = message
            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .filter_map(parse_answer)
            .any(|n| n == answer || n == -answer);
        Ok(mentions_answer.then(|| "states the answer as a number".to_string()))
    }

    /// Hides one operand as `x` (`2+x=`, revealed as `x = 8`). The operand
    /// is essential when changing it changes the value (not under `0*x`);
    /// one equal to the answer would leak it and is not chosen.
    fn shard(&self, task: &Task) -> Result<Option<Sharding>> {
        let meta: Meta = task.meta()?;
        let operators = meta.operators.as_bytes();
        let value = evaluate(&meta.operands, operators);
        let mut order: Vec<usize> = (0..meta.operands.len()).collect();
        Rng::new(mix_seed(&[task.seed, 0x5AAD])).shuffle(&mut order);
        for i in order {
            let mut changed = meta.operands.clone();
            changed[i] += 1;
            if evaluate(&changed, operators) == value {
                continue;
            }
            let reveal = format!("x = {}", meta.operands[i]);
            if self.leak(task, &reveal)?.is_some() {
                continue;
            }
            let mut prompt = String::new();
            for (j, x) in meta.operands.iter().enumerate() {
                if j > 0 {
                    prompt.push(operators[j - 1] as char);
                }
                if j == i {
                    prompt.push('x');
                } else {
                    prompt.push_str(&x.to_string());
                }
            }
            prompt.push('=');
            return Ok(Some(Sharding {
                prompt,
                shards: vec![Shard {
                    name: "x".into(),
                    reveal,
                    essential: true,
                }],
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testkit;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn task(operands: Vec<i64>, operators: &str) -> Task {
        let value = evaluate(&operands, operators.as_bytes()).unwrap();
        let meta = serde_json::to_string(&Meta {
            operands,
            operators: operators.to_string(),
        })
        .unwrap();
        Task::new(
            DomainKind::Arith,
            1,
            0,
            "x=".into(),
            value.to_string(),
            meta,
        )
    }

    #[test]
    fn precedence_is_respected() {
        assert_eq!(evaluate(&[2, 3, 4], b"+*"), Some(14));
        assert_eq!(evaluate(&[2, 3, 4], b"*-"), Some(2));
        assert_eq!(evaluate(&[10, 2, 3, 4], b"-*+"), Some(8));
        assert_eq!(evaluate_left_to_right(&[2, 3, 4], b"+*"), Some(20));
    }

    #[test]
    fn difficulty_sets_operands_and_digits() {
        assert_eq!(shape(1), (2, 1));
        assert_eq!(shape(3), (3, 2));
        assert_eq!(shape(10), (6, 6));
        let t = Arith.generate(5, 4);
        let meta: Meta = t.meta().unwrap();
        assert_eq!(meta.operands.len(), 3);
        assert!(meta.operands.iter().all(|x| (100..1000).contains(x)));
    }

    #[test]
    fn answers_parse_strictly() {
        assert_eq!(parse_answer(" 926 "), Some(926));
        assert_eq!(parse_answer("-12"), Some(-12));
        assert_eq!(parse_answer("+7"), Some(7));
        assert_eq!(parse_answer("9 26"), None);
        assert_eq!(parse_answer("926."), None);
        assert_eq!(parse_answer(&"9".repeat(39)), None);
    }

    #[test]
    fn feedback_levels_on_a_worked_example() {
        let t = task(vec![347, 589], "+");
        assert_eq!(t.solution, "936");
        assert_eq!(
            Arith.feedback(&t, "926", FeedbackLevel::Verdict).unwrap(),
            "Incorrect."
        );
        assert_eq!(
            Arith.feedback(&t, "926", FeedbackLevel::Location).unwrap(),
            "Your answer is too low."
        );
        assert_eq!(
            Arith
                .feedback(&t, "926", FeedbackLevel::Explanation)
                .unwrap(),
            "Your answer is too low. The tens digit is wrong."
        );
        assert_eq!(
            Arith
                .feedback(&t, "1036", FeedbackLevel::Explanation)
                .unwrap(),
            "Your answer is too high. It has too many digits. The hundreds and thousands digits are wrong."
        );
        assert_eq!(
            Arith
                .feedback(&t, "936", FeedbackLevel::Explanation)
                .unwrap(),
            "Correct."
        );
        assert_eq!(
            Arith.feedback(&t, "926", FeedbackLevel::Retry).unwrap(),
            "Try again."
        );
    }

    #[test]
    fn masks_line_up_with_the_attempts_digits() {
        let t = task(vec![347, 589], "+");
        let mask = |attempt: &str| Arith.feedback(&t, attempt, FeedbackLevel::Mask).unwrap();
        assert_eq!(mask("926"), "Your answer is too low. Wrong digits: .!.");
        assert_eq!(
            mask("1036"),
            "Your answer is too high. It has too many digits. Wrong digits: !!.."
        );
        assert_eq!(
            mask("36"),
            "Your answer is too low. It has too few digits. Wrong digits: .."
        );
        assert_eq!(
            mask("-936"),
            "Your answer is too low. The sign is wrong. Wrong digits: ..."
        );
        assert_eq!(mask("936"), "Correct.");
    }

    #[test]
    fn leak_rule_catches_the_answer() {
        let t = task(vec![347, 589], "+");
        assert!(Arith.leak_rule(&t, "It is 936.").unwrap().is_some());
        assert!(
            Arith
                .leak_rule(&t, "The tens digit is wrong.")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn shared_domain_checks() {
        testkit::reference_solutions_verify(&Arith, 30);
        testkit::garbage_never_panics(&Arith);
    }

    #[test]
    fn critiques_are_read_for_their_form_only() {
        let (checked, _) = testkit::teacher_critiques_read_true(&Arith, 30);
        assert!(checked > 0);
        let t = task(vec![347, 589], "+");
        let read = |message: &str| Arith.read_critique(&t, "926", message).unwrap().unwrap();
        for form in [
            "Your answer is too low.",
            "Your answer is too high. The sign is wrong. It has too many digits. Wrong digits: !.!.",
            "Your answer is too low. The tens digit is wrong.",
            "Your answer is too low. The ones, tens and hundreds digits are wrong.",
            "Your answer is too low. The 12th-from-the-right digit is wrong.",
        ] {
            assert_eq!(read(form), CritiqueReading::UNCHECKABLE, "{form}");
        }
        for garbled in [
            "Your answer is too low. The tens and ones digit is wrong.",
            "Your answer is too low. The 3th-from-the-right digit is wrong.",
            "Your answer is too low. It has too few digits. The sign is wrong.",
            "Your answer is low.",
            "Your answer is too low. Wrong digits: 1.!",
        ] {
            assert_eq!(read(garbled), CritiqueReading::GARBLED, "{garbled}");
        }
        assert_eq!(read(MALFORMED_MESSAGE), CritiqueReading::claim(false));
    }

    #[test]
    fn feedback_is_true() {
        // Recompute each claim from the numbers, independently of the teacher.
        for i in 0..2_000u64 {
            let t = Arith.generate(i, 1 + (i % 10) as u32);
            let answer: i128 = t.solution.parse().unwrap();
            for j in 0..3 {
                let wrong = Arith.wrong_attempt(&t, &mut Rng::new(i * 7 + j)).unwrap();
                let value: i128 = wrong.parse().unwrap();
                let msg = Arith
                    .feedback(&t, &wrong, FeedbackLevel::Explanation)
                    .unwrap();
                assert_eq!(
                    msg.contains("too high"),
                    value > answer,
                    "{t:?} {wrong} {msg}"
                );
                assert_eq!(
                    msg.contains("too low"),
                    value < answer,
                    "{t:?} {wrong} {msg}"
                );
                assert_eq!(
                    msg.contains("sign is wrong"),
                    (value < 0) != (answer < 0),
                    "{msg}"
                );
                let (va, vb) = (
                    value.unsigned_abs().to_string(),
                    answer.unsigned_abs().to_string(),
                );
                let padded = |s: &str, n: usize| format!("{s:0>n$}");
                let n = va.len().max(vb.len());
                let (pa, pb) = (padded(&va, n), padded(&vb, n));
                for (pos, (a, b)) in pa.bytes().rev().zip(pb.bytes().rev()).enumerate() {
                    let beyond = pos >= va.len() || pos >= vb.len();
                    let named = msg.contains(&format!(" {}", place_name(pos)));
                    if pos < PLACE_NAMES.len() {
                        assert_eq!(
                            named,
                            a != b || beyond,
                            "position {pos}: {t:?} {wrong} {msg}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn leak_rate_is_zero_over_ten_thousand_dialogues() {
        let mut leaks = 0;
        for i in 0..10_000u64 {
            let t = Arith.generate(i, 1 + (i % 10) as u32);
            let wrong = Arith.wrong_attempt(&t, &mut Rng::new(i)).unwrap();
            for level in FeedbackLevel::ALL {
                let msg = Arith.feedback(&t, &wrong, level).unwrap();
                leaks += crate::leak::check(&t, &msg).unwrap().is_some() as usize;
            }
        }
        assert_eq!(leaks, 0);
    }

    fn judge(seed: u64, difficulty: u32, attempt: &str) -> Result<(), TestCaseError> {
        let t = Arith.generate(seed, difficulty);
        let verdict = Arith.verify(&t, attempt).unwrap();
        for level in FeedbackLevel::ALL {
            let msg = Arith.feedback(&t, attempt, level).unwrap();
            prop_assert!(!msg.is_empty());
            prop_assert_eq!(msg == crate::domain::CORRECT_MESSAGE, verdict.is_correct());
            prop_assert_eq!(crate::leak::check(&t, &msg).unwrap(), None);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn any_string_is_judged(seed in 0u64..500, d in 1u32..=10, s in any::<String>()) {
            judge(seed, d, &s)?;
        }

        #[test]
        fn number_shaped_strings_are_judged(seed in 0u64..500, d in 1u32..=10, s in "[-+ 0-9.,e]{0,60}") {
            judge(seed, d, &s)?;
        }

        #[test]
        fn near_misses_are_judged(
            seed in 0u64..500,
            d in 1u32..=10,
            edit in 0u8..3,
            at in any::<prop::sample::Index>(),
            c in prop_oneof![prop::sample::select(vec!['0', '9', '-', ' ', '\u{0}']), any::<char>()],
        ) {
            let attempt = testkit::near_miss(&Arith.generate(seed, d).solution, edit, at, c);
            judge(seed, d, &attempt)?;
        }
    }
}
