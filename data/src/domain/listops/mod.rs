//! `listops` (the paper's coding setting): write a small list program that
//! maps the shown inputs to the shown outputs; hidden tests decide whether it
//! is right, so a program fitted to the three examples alone can still fail.
//!
//! A program is one to sixteen steps joined by `|`, e.g.
//! `sort | rev | take 3 | map +2 | filter even`. Steps: `sort`, `rev`, `uniq`
//! (drops consecutive duplicates), `take K`, `drop K`, `filter >K`,
//! `filter <K` (K in 0..=9), `map +K`, `map -K`, `map *K` (K in 1..=9),
//! `filter even`, `filter odd`. The interpreter bounds program length, list
//! length, arithmetic and total work, so untrusted programs can neither panic
//! nor hang it.
//!
//! Difficulty `n` (1..=6) is the number of steps of the reference program,
//! and generation keeps only programs in which every step changes at least
//! one visible output, so none of the `n` steps is idle.
//! Feedback levels: verdict; an input on which the attempt fails (visible
//! examples first, then hidden tests); that input with the attempt's output
//! and the expected one. A syntax error gets its character position at every
//! level beyond retry.

use serde::{Deserialize, Serialize};

use super::contract::CritiqueReading;
use super::contract::{
    Domain, DomainKind, FeedbackLevel, Task, Verdict, WRONG_MESSAGE, common_feedback,
};
use super::contract::{Shard, Sharding};
use super::critique::{number, read_common};
use crate::error::{DataError, Result};
use crate::rng::{Rng, mix_seed};

mod lang;

use lang::*;

pub struct Listops;

/// Examples shown in the prompt.
const VISIBLE: usize = 3;
/// Tests only the verifier and the teacher see.
const HIDDEN: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    /// The examples shown in the prompt, in order.
    examples: Vec<Case>,
    /// Further tests the student never sees; the teacher's privileged
    /// information.
    hidden: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Case {
    input: Vec<i64>,
    output: Vec<i64>,
}

/// Drawn from ranges that keep outputs of 3..=7 digits informative: larger
/// `take`/`drop` constants and `map *1` would mostly be no-ops.
fn random_op(rng: &mut Rng) -> Op {
    let mut k = |lo: i64, hi: i64| rng.range(lo, hi) as u8;
    match k(0, 11) {
        0 => Op::Sort,
        1 => Op::Rev,
        2 => Op::Uniq,
        3 => Op::Take(k(1, 5)),
        4 => Op::Drop(k(1, 3)),
        5 => Op::Add(k(1, 9)),
        6 => Op::Sub(k(1, 9)),
        7 => Op::Mul(k(2, 5)),
        8 => Op::Even,
        9 => Op::Odd,
        10 => Op::Greater(k(1, 8)),
        _ => Op::Less(k(1, 8)),
    }
}

/// Every step the language has, constants included.
fn every_op() -> impl Iterator<Item = Op> {
    let fixed = [Op::Sort, Op::Rev, Op::Uniq, Op::Even, Op::Odd];
    let with_constant = (0..=9u8).flat_map(|k| {
        let zero_ok = [Op::Take(k), Op::Drop(k), Op::Greater(k), Op::Less(k)];
        let positive = [Op::Add(k), Op::Sub(k), Op::Mul(k)];
        zero_ok
            .into_iter()
            .chain(positive.into_iter().filter(move |_| k > 0))
    });
    fixed.into_iter().chain(with_constant)
}

/// A program of `len` steps in which no step follows one of its own
/// family, so that the length is the number of steps really needed.
fn random_program(rng: &mut Rng, len: usize) -> Vec<Op> {
    let mut program: Vec<Op> = Vec::with_capacity(len);
    while program.len() < len {
        let op = random_op(rng);
        if program
            .last()
            .is_none_or(|last| last.family() != op.family())
        {
            program.push(op);
        }
    }
    program
}

fn random_input(rng: &mut Rng) -> Vec<i64> {
    let len = rng.range(3, 7);
    (0..len).map(|_| rng.range(0, 9)).collect()
}

/// The test cases for `program` on `inputs` (visible ones first), or `None`
/// when the task would be degenerate: a run errors, the visible examples
/// repeat, show only empty outputs or only unchanged inputs, or some step
/// could be dropped without changing any visible output.
fn cases(program: &[Op], inputs: &[Vec<i64>]) -> Option<Vec<Case>> {
    let cases = inputs
        .iter()
        .map(|input| {
            let output = run(program, input).ok()?;
            Some(Case {
                input: input.clone(),
                output,
            })
        })
        .collect::<Option<Vec<Case>>>()?;
    let visible = &cases[..VISIBLE];
    let repeated = (1..VISIBLE).any(|i| visible[..i].iter().any(|c| c.input == visible[i].input));
    let all_empty = visible.iter().all(|c| c.output.is_empty());
    let all_unchanged = visible.iter().all(|c| c.output == c.input);
    let idle_step = (0..program.len()).any(|skip| {
        let shorter: Vec<Op> = [&program[..skip], &program[skip + 1..]].concat();
        visible
            .iter()
            .all(|c| run(&shorter, &c.input).as_ref() == Ok(&c.output))
    });
    (!(repeated || all_empty || all_unchanged || idle_step)).then_some(cases)
}

/// The first case `program` gets wrong, visible examples first, with what the
/// program produced on it.
fn first_failure<'m>(
    program: &[Op],
    meta: &'m Meta,
) -> Option<(&'m Case, Result<Vec<i64>, RunError>)> {
    meta.examples.iter().chain(&meta.hidden).find_map(|case| {
        let got = run(program, &case.input);
        (got.as_ref() != Ok(&case.output)).then_some((case, got))
    })
}

/// One plausible mistake in a well-formed program; `None` when the mistake
/// chosen does not apply to the step chosen.
fn mutate(reference: &[Op], rng: &mut Rng) -> Option<Vec<Op>> {
    let mut program = reference.to_vec();
    let n = program.len();
    let i = rng.below(n as u64) as usize;
    match rng.below(4) {
        // A step forgotten.
        0 if n > 1 => {
            program.remove(i);
        }
        // Two steps in the wrong order.
        1 if n > 1 => program.swap(i.min(n - 2), i.min(n - 2) + 1),
        // A constant off by one, or misremembered.
        2 => {
            let (k, min) = program[i].constant()?;
            let new = if rng.chance(0.7) {
                if rng.chance(0.5) {
                    k.checked_sub(1)?
                } else {
                    k + 1
                }
            } else {
                rng.range(min as i64, 9) as u8
            };
            if new < min || new > 9 || new == k {
                return None;
            }
            program[i] = program[i].with_constant(new);
        }
        // A step confused with a similar one.
        3 => program[i] = program[i].confusable(),
        _ => return None,
    }
    Some(program)
}

/// A typo that makes the program unparsable.
fn syntax_slip(reference: &[Op], rng: &mut Rng) -> Option<String> {
    let mut steps: Vec<String> = reference.iter().map(Op::to_string).collect();
    let i = rng.below(steps.len() as u64) as usize;
    match rng.below(3) {
        // Two letters of the operation swapped.
        0 => {
            let name = reference[i].name();
            let mut letters: Vec<char> = name.chars().collect();
            let j = rng.below(letters.len() as u64 - 1) as usize;
            letters.swap(j, j + 1);
            let misspelt: String = letters.into_iter().collect();
            steps[i] = steps[i].replacen(name, &misspelt, 1);
        }
        // The constant forgotten.
        1 => {
            reference[i].constant()?;
            steps[i] = steps[i]
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .trim_end()
                .to_string();
        }
        // A dangling pipe.
        _ => steps.push(String::new()),
    }
    Some(steps.join(" | ").trim_end().to_string())
}

impl Listops {
    fn reference(&self, task: &Task) -> Result<Vec<Op>> {
        parse(&task.solution).map_err(|e| DataError::CorruptTask {
            task_id: task.task_id.clone(),
            reason: format!("reference program: {}", e.message(true)),
        })
    }

    /// Quotes the student's token unless the quote itself would trip the
    /// leak check (a student writing `reverse` when the answer is `rev`).
    fn syntax_message(&self, task: &Task, error: &SyntaxError) -> Result<String> {
        let message = error.message(true);
        if self.leak(task, &message)?.is_some() {
            Ok(error.message(false))
        } else {
            Ok(message)
        }
    }
}

/// Whether `message` has the form of a critique naming a failing case:
/// `It fails on input [..].`, `On input [..] it returns [..], but the
/// expected output is [..].` or `On input [..] it stops with an error: ...`.
fn is_case_critique(message: &str) -> bool {
    let is_list = |text: &str| {
        text.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .is_some_and(|items| {
                items.is_empty() || items.split(' ').all(|x| x.parse::<i64>().is_ok())
            })
    };
    if let Some(rest) = message.strip_prefix("It fails on input ") {
        return rest.strip_suffix('.').is_some_and(is_list);
    }
    let Some(rest) = message.strip_prefix("On input ") else {
        return false;
    };
    if let Some((input, rest)) = rest.split_once(" it returns ") {
        return rest
            .strip_suffix('.')
            .and_then(|r| r.split_once(", but the expected output is "))
            .is_some_and(|(got, want)| is_list(input) && is_list(got) && is_list(want));
    }
    rest.split_once(" it stops with an error: ")
        .is_some_and(|(input, error)| is_list(input) && error.len() > 1 && error.ends_with('.'))
}

impl Domain for Listops {
    fn kind(&self) -> DomainKind {
        DomainKind::Listops
    }

    fn difficulty_range(&self) -> (u32, u32) {
        (1, 6)
    }

    fn generate(&self, seed: u64, difficulty: u32) -> Task {
        let difficulty = difficulty.clamp(1, 6);
        for attempt in 0u64.. {
            let mut rng = Rng::new(mix_seed(&[seed, difficulty as u64, attempt]));
            let program = random_program(&mut rng, difficulty as usize);
            let inputs: Vec<Vec<i64>> = (0..VISIBLE + HIDDEN)
                .map(|_| random_input(&mut rng))
                .collect();
            let Some(mut examples) = cases(&program, &inputs) else {
                continue;
            };
            let hidden = examples.split_off(VISIBLE);
            let shown: Vec<String> = examples
                .iter()
                .map(|c| format!("{} -> {}", render_list(&c.input), render_list(&c.output)))
                .collect();
            let prompt = shown.join(" ; ");
            let metadata = serde_json::to_string(&Meta { examples, hidden }).expect("serialisable");
            return Task::new(
                DomainKind::Listops,
                difficulty,
                seed,
                prompt,
                render_program(&program),
                metadata,
            );
        }
        unreachable!("an unbounded loop either returns or runs forever")
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let meta: Meta = task.meta()?;
        Ok(match parse(attempt) {
            Err(_) => Verdict::Malformed,
            Ok(program) if first_failure(&program, &meta).is_none() => Verdict::Correct,
            Ok(_) => Verdict::Wrong,
        })
    }

    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String> {
        let verdict = self.verify(task, attempt)?;
        if let Some(message) = common_feedback(verdict, level) {
            return Ok(message);
        }
        let program = match parse(attempt) {
            Ok(program) => program,
            Err(error) => return self.syntax_message(task, &error),
        };
        let meta: Meta = task.meta()?;
        let Some((case, got)) = first_failure(&program, &meta) else {
            return Ok(WRONG_MESSAGE.to_string());
        };
        let input = render_list(&case.input);
        Ok(match (level, got) {
            (FeedbackLevel::Location, _) => format!("It fails on input {input}."),
            (_, Ok(output)) => format!(
                "On input {input} it returns {}, but the expected output is {}.",
                render_list(&output),
                render_list(&case.output)
            ),
            (_, Err(error)) => format!("On input {input} it stops with an error: {error}."),
        })
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let reference = self.reference(task)?;
        for _ in 0..32 {
            let candidate = if rng.chance(0.1) {
                syntax_slip(&reference, rng)
            } else {
                mutate(&reference, rng).map(|program| render_program(&program))
            };
            if let Some(candidate) = candidate
                && !self.verify(task, &candidate)?.is_correct()
            {
                return Ok(candidate);
            }
        }
        // Emptying every output is wrong whenever some visible output is
        // non-empty, which generation guarantees.
        let mut emptied = reference;
        emptied.push(Op::Take(0));
        let emptied = render_program(&emptied);
        if self.verify(task, &emptied)?.is_correct() {
            Ok(format!("{emptied} |"))
        } else {
            Ok(emptied)
        }
    }

    /// A syntax error is a fact about the attempt's text; what the
    /// program does on a hidden case, the critic cannot see, so only the
    /// form of those critiques is judged.
    fn read_critique(
        &self,
        task: &Task,
        attempt: &str,
        message: &str,
    ) -> Result<Option<CritiqueReading>> {
        let message = message.trim();
        let verdict = self.verify(task, attempt)?;
        if let Some(reading) = read_common(message, None, verdict) {
            return Ok(Some(reading));
        }
        if let Some(rest) = message.strip_prefix("Syntax error at character ") {
            let well_formed = rest.split_once(": ").is_some_and(|(at, what)| {
                number(at).is_some() && what.len() > 1 && what.ends_with('.')
            });
            return Ok(Some(if well_formed {
                CritiqueReading::claim(
                    self.feedback(task, attempt, FeedbackLevel::Explanation)? == message,
                )
            } else {
                CritiqueReading::GARBLED
            }));
        }
        Ok(Some(if is_case_critique(message) {
            CritiqueReading::UNCHECKABLE
        } else {
            CritiqueReading::GARBLED
        }))
    }

    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        let message = squash(message);
        let steps: Vec<String> = self
            .reference(task)?
            .iter()
            .map(|op| squash(&op.to_string()))
            .collect();
        if message.contains(&steps.join("|")) {
            return Ok(Some("contains the reference program".to_string()));
        }
        let pair = steps
            .windows(2)
            .any(|w| message.contains(&format!("{}|{}", w[0], w[1])));
        Ok(pair.then(|| "contains two consecutive steps of the reference program".to_string()))
    }

    /// Withholds the second and third examples: the prompt shows
    /// `example 2: ?` and `example 3: ?` in their place, and the teacher
    /// reveals them as `example 2: [7 9 5] -> [0 2 -2]`. An example is
    /// essential when a plausible wrong program (one of the error model's
    /// mistakes) fits everything else shown but not that example. Tasks
    /// where neither is essential are not sharded.
    fn shard(&self, task: &Task) -> Result<Option<Sharding>> {
        let meta: Meta = task.meta()?;
        let reference = self.reference(task)?;
        let mut rng = Rng::new(mix_seed(&[task.seed, 0x5AAD]));
        // Plausible wrong programs: the error model's mistakes (one or two),
        // every one-step program, and the reference with a step too many.
        let mut witnesses: Vec<Vec<Op>> = (0..64)
            .filter_map(|_| mutate(&reference, &mut rng))
            .collect();
        for _ in 0..64 {
            if let Some(once) = mutate(&reference, &mut rng)
                && let Some(twice) = mutate(&once, &mut rng)
            {
                witnesses.push(twice);
            }
        }
        for op in every_op() {
            witnesses.push(vec![op]);
            witnesses.push([reference.as_slice(), &[op]].concat());
        }
        let fits =
            |program: &[Op], case: &Case| run(program, &case.input).as_ref() == Ok(&case.output);
        let show = |c: &Case| format!("{} -> {}", render_list(&c.input), render_list(&c.output));
        let mut prompt = vec![show(&meta.examples[0])];
        let mut shards = Vec::new();
        for k in 1..meta.examples.len() {
            let others: Vec<&Case> = (0..meta.examples.len())
                .filter(|&j| j != k)
                .map(|j| &meta.examples[j])
                .collect();
            let essential = witnesses
                .iter()
                .any(|w| others.iter().all(|c| fits(w, c)) && !fits(w, &meta.examples[k]));
            let name = format!("example {}", k + 1);
            prompt.push(format!("{name}: ?"));
            let reveal = format!("{name}: {}", show(&meta.examples[k]));
            if self.leak(task, &reveal)?.is_some() {
                return Ok(None);
            }
            shards.push(Shard {
                name,
                reveal,
                essential,
            });
        }
        Ok(shards.iter().any(|s| s.essential).then(|| Sharding {
            prompt: prompt.join(" ; "),
            shards,
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::testkit;
    // Proptest's prelude exports a `Rng` trait too; ours is the one meant.
    use crate::rng::Rng;

    /// A task with hand-picked inputs; outputs come from the reference.
    fn task(solution: &str, visible: &[&[i64]], hidden: &[&[i64]]) -> Task {
        let program = parse(solution).unwrap();
        let case = |input: &&[i64]| Case {
            input: input.to_vec(),
            output: run(&program, input).unwrap(),
        };
        let meta = Meta {
            examples: visible.iter().map(case).collect(),
            hidden: hidden.iter().map(case).collect(),
        };
        let metadata = serde_json::to_string(&meta).unwrap();
        Task::new(
            DomainKind::Listops,
            1,
            0,
            "x".into(),
            solution.into(),
            metadata,
        )
    }

    fn run_text(program: &str, input: &[i64]) -> Result<Vec<i64>, RunError> {
        run(&parse(program).unwrap(), input)
    }

    fn error_at(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.position, e.detail)
    }

    /// Every bracketed list in a message, in order.
    fn quoted_lists(message: &str) -> Vec<Vec<i64>> {
        message
            .split('[')
            .skip(1)
            .map(|rest| {
                let inner = &rest[..rest.find(']').unwrap()];
                inner
                    .split_whitespace()
                    .map(|x| x.parse().unwrap())
                    .collect()
            })
            .collect()
    }

    /// Tasks across all difficulties, `per_difficulty` seeds each.
    fn tasks(per_difficulty: u64) -> impl Iterator<Item = Task> {
        (0..per_difficulty).flat_map(|seed| (1..=6).map(move |d| Listops.generate(seed, d)))
    }

    #[test]
    fn parser_accepts_valid_programs() {
        assert_eq!(parse("sort").unwrap(), vec![Op::Sort]);
        assert_eq!(
            parse("sort | rev | take 3 | map +2 | filter even").unwrap(),
            vec![Op::Sort, Op::Rev, Op::Take(3), Op::Add(2), Op::Even]
        );
        assert_eq!(
            parse("  Uniq|drop0|map - 9|map*1 | filter>0|filter <9 | FILTER Odd\n").unwrap(),
            vec![
                Op::Uniq,
                Op::Drop(0),
                Op::Sub(9),
                Op::Mul(1),
                Op::Greater(0),
                Op::Less(9),
                Op::Odd
            ]
        );
        assert_eq!(parse(&vec!["rev"; 16].join("|")).unwrap().len(), 16);
        for task in tasks(20) {
            let program = parse(&task.solution).unwrap();
            assert_eq!(render_program(&program), task.solution);
            assert_eq!(program.len() as u32, task.difficulty);
            assert!(program.windows(2).all(|w| w[0].family() != w[1].family()));
        }
    }

    #[test]
    fn parser_reports_positions() {
        let e = |s: &str, p: usize, d: &str| assert_eq!(error_at(s), (p, d.to_string()), "{s:?}");
        e("", 1, "empty program");
        e("   ", 1, "empty program");
        e("sort | foo", 8, "unknown operation `foo`");
        e("  sort | Foo", 10, "unknown operation `Foo`");
        e("take", 5, "expected a number after `take`");
        e("take -1", 6, "expected a number after `take`");
        e("take | rev", 6, "expected a number after `take`");
        e("take 12", 6, "number `12` out of range (0 to 9)");
        e("map +0", 6, "number `0` out of range (1 to 9)");
        e("map +", 6, "expected a number after `+`");
        e("map 3", 5, "expected `+`, `-` or `*` after `map`");
        e("filter", 7, "expected a condition after `filter`");
        e("filter big", 8, "unknown condition `big`");
        e("sort || rev", 7, "empty step between `|`");
        e("| sort", 1, "empty step before the first `|`");
        e("sort |", 6, "empty step after the last `|`");
        e(
            "sort rev",
            6,
            "unexpected `rev`; steps are separated by `|`",
        );
        e("3 | sort", 1, "expected an operation, found `3`");
        e("map /2", 5, "unexpected character `/`");
        e("é\u{202e}", 2, "unexpected character `\\u{202e}`");
        e(&vec!["rev"; 17].join(" | "), 97, "more than 16 steps");
        e(
            &format!("  {}", "x".repeat(300)),
            259,
            "the program is longer than 256 characters",
        );
        e(
            &format!("sort{}", " ".repeat(5000)),
            1,
            "the answer is too long",
        );
    }

    #[test]
    fn syntax_errors_never_name_an_operation() {
        let names = [
            "sort", "rev", "uniq", "take", "drop", "map", "filter", "even", "odd",
        ];
        for text in [
            "", "x", "3", "|", "sort |", "map", "filter", "filter x", "take 99", "sort x",
        ] {
            let e = parse(text).unwrap_err();
            let generic = e.generic.to_lowercase();
            assert!(names.iter().all(|n| !generic.contains(n)), "{generic}");
        }
    }

    #[test]
    fn each_operation_on_hand_examples() {
        let input = [3, 1, 4, 1, 5, 9, 2, 6, 6];
        let cases: [(&str, &[i64]); 13] = [
            ("sort", &[1, 1, 2, 3, 4, 5, 6, 6, 9]),
            ("rev", &[6, 6, 2, 9, 5, 1, 4, 1, 3]),
            ("uniq", &[3, 1, 4, 1, 5, 9, 2, 6]),
            ("sort | uniq", &[1, 2, 3, 4, 5, 6, 9]),
            ("take 3", &[3, 1, 4]),
            ("drop 7", &[6, 6]),
            ("map +2", &[5, 3, 6, 3, 7, 11, 4, 8, 8]),
            ("map -4", &[-1, -3, 0, -3, 1, 5, -2, 2, 2]),
            ("map *3", &[9, 3, 12, 3, 15, 27, 6, 18, 18]),
            ("filter even", &[4, 2, 6, 6]),
            ("filter odd", &[3, 1, 1, 5, 9]),
            ("filter >4", &[5, 9, 6, 6]),
            ("filter <3", &[1, 1, 2]),
        ];
        for (program, expected) in cases {
            assert_eq!(run_text(program, &input).unwrap(), expected, "{program}");
        }
        assert_eq!(run_text("take 9", &[1, 2]).unwrap(), [1, 2]);
        assert_eq!(run_text("drop 9", &[1, 2]).unwrap(), Vec::<i64>::new());
        assert_eq!(run_text("map -5 | filter odd", &[2, 4]).unwrap(), [-3, -1]);
        assert_eq!(run_text("map -5 | filter even", &[1, 2]).unwrap(), [-4]);
        assert_eq!(run_text("uniq", &[]).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn overflow_and_huge_inputs_are_errors() {
        assert_eq!(run_text("map +1", &[i64::MAX]), Err(RunError::Overflow));
        assert_eq!(run_text("map -1", &[i64::MIN]), Err(RunError::Overflow));
        assert_eq!(
            run_text("map *2", &[i64::MIN / 2 - 1]),
            Err(RunError::Overflow)
        );
        let many = vec!["map *9"; 16].join(" | ");
        assert_eq!(run_text(&many, &[9]), Ok(vec![9i64.pow(17)]));
        assert_eq!(run_text(&many, &[10_000]), Err(RunError::Overflow));
        assert_eq!(run_text("sort", &[0; 65]), Err(RunError::ListTooLong));
        assert_eq!(run(&[Op::Rev; 17], &[1]), Err(RunError::TooManySteps));
        let input: Vec<i64> = (0..64).rev().collect();
        assert!(
            run(&[Op::Sort; 16], &input).is_ok(),
            "legal programs fit the budget"
        );
        assert_eq!(
            run_with_budget(&[Op::Sort; 2], &input, 500),
            Err(RunError::OutOfBudget)
        );
    }

    #[test]
    fn generated_tasks_have_the_documented_shape() {
        for task in tasks(50) {
            let meta: Meta = task.meta().unwrap();
            assert_eq!((meta.examples.len(), meta.hidden.len()), (VISIBLE, HIDDEN));
            for case in meta.examples.iter().chain(&meta.hidden) {
                assert!((3..=7).contains(&case.input.len()));
                assert!(case.input.iter().all(|x| (0..=9).contains(x)));
            }
            let shown: Vec<String> = meta
                .examples
                .iter()
                .map(|c| format!("{} -> {}", render_list(&c.input), render_list(&c.output)))
                .collect();
            assert_eq!(task.prompt, shown.join(" ; "));
            let program = parse(&task.solution).unwrap();
            for skip in 0..program.len() {
                let shorter = [&program[..skip], &program[skip + 1..]].concat();
                let changes = |c: &Case| run(&shorter, &c.input).as_ref() != Ok(&c.output);
                assert!(
                    meta.examples.iter().any(changes),
                    "idle step {skip} in {task:?}"
                );
            }
            assert!(!task.prompt.to_lowercase().contains(&task.solution));
        }
        assert_eq!(Listops.generate(1, 0).difficulty, 1);
        assert_eq!(Listops.generate(1, 99).difficulty, 6);
        let prompts: std::collections::HashSet<String> = tasks(100).map(|t| t.prompt).collect();
        assert!(
            prompts.len() > 590,
            "only {} distinct prompts",
            prompts.len()
        );
    }

    #[test]
    fn feedback_on_a_worked_example() {
        let t = task(
            "sort | take 2",
            &[&[3, 1, 4], &[2, 1, 9], &[0, 7, 7]],
            &[&[9, 2, 5], &[5, 5, 1, 0]],
        );
        let fb = |attempt: &str, level| Listops.feedback(&t, attempt, level).unwrap();
        assert_eq!(Listops.verify(&t, "sort|take 2").unwrap(), Verdict::Correct);
        assert_eq!(
            Listops.verify(&t, "sort | rev | rev | take 2").unwrap(),
            Verdict::Correct
        );
        assert_eq!(fb("sort | take 2", FeedbackLevel::Explanation), "Correct.");
        assert_eq!(fb("sort | take 3", FeedbackLevel::Retry), "Try again.");
        assert_eq!(fb("sort | take 3", FeedbackLevel::Verdict), "Incorrect.");
        assert_eq!(
            fb("sort | take 3", FeedbackLevel::Location),
            "It fails on input [3 1 4]."
        );
        assert_eq!(
            fb("sort | take 3", FeedbackLevel::Explanation),
            "On input [3 1 4] it returns [1 3 4], but the expected output is [1 3]."
        );
        // Right on every visible example, caught by a hidden test.
        assert_eq!(
            fb("take 2 | sort", FeedbackLevel::Location),
            "It fails on input [9 2 5]."
        );
        assert_eq!(
            fb("take 2 | sort", FeedbackLevel::Explanation),
            "On input [9 2 5] it returns [2 9], but the expected output is [2 5]."
        );
        for level in [
            FeedbackLevel::Verdict,
            FeedbackLevel::Location,
            FeedbackLevel::Explanation,
        ] {
            assert_eq!(
                fb("sort | tkae 2", level),
                "Syntax error at character 8: unknown operation `tkae`."
            );
        }
        assert_eq!(fb("sort | tkae 2", FeedbackLevel::Retry), "Try again.");
        assert_eq!(
            Listops.verify(&t, "sort | tkae 2").unwrap(),
            Verdict::Malformed
        );

        let big = task("rev", &[&[i64::MAX, 1]], &[]);
        assert_eq!(
            Listops
                .feedback(&big, "map +1", FeedbackLevel::Explanation)
                .unwrap(),
            "On input [9223372036854775807 1] it stops with an error: arithmetic overflow."
        );
    }

    #[test]
    fn quotes_that_would_leak_are_dropped() {
        let t = task("rev", &[&[1, 2, 3]], &[]);
        let msg = Listops
            .feedback(&t, "reverse", FeedbackLevel::Explanation)
            .unwrap();
        assert_eq!(msg, "Syntax error at character 1: unknown operation.");
        let t = task("sort", &[&[2, 1, 3]], &[]);
        let msg = Listops
            .feedback(&t, "reverse", FeedbackLevel::Explanation)
            .unwrap();
        assert_eq!(
            msg,
            "Syntax error at character 1: unknown operation `reverse`."
        );
    }

    #[test]
    fn leak_rule_catches_the_program_and_adjacent_steps() {
        let t = task("sort | rev | take 3", &[&[1, 2, 3, 4]], &[]);
        let leaks = |m: &str| Listops.leak_rule(&t, m).unwrap().is_some();
        assert!(leaks("Try SORT|rev|take 3."));
        assert!(leaks("it starts with sort | rev"));
        assert!(leaks("rev |take3"));
        assert!(!leaks("sort then rev"));
        assert!(!leaks("take 3 | rev"));
        assert!(!leaks("It fails on input [3 1 4]."));
    }

    #[test]
    fn wrong_attempts_are_wrong_and_varied() {
        let mut malformed = 0;
        let mut wrong = 0;
        for task in tasks(100) {
            let mut rng = Rng::new(task.seed ^ 0x5eed);
            for _ in 0..3 {
                let attempt = Listops.wrong_attempt(&task, &mut rng).unwrap();
                match Listops.verify(&task, &attempt).unwrap() {
                    Verdict::Correct => panic!("{task:?} {attempt}"),
                    Verdict::Wrong => wrong += 1,
                    Verdict::Malformed => malformed += 1,
                }
            }
        }
        assert!(
            malformed > 0 && malformed * 5 < wrong,
            "{malformed} malformed, {wrong} wrong"
        );
    }

    #[test]
    fn feedback_is_true() {
        let mut checked = 0;
        for task in tasks(334).take(2_000) {
            let reference = parse(&task.solution).unwrap();
            let mut rng = Rng::new(task.seed.wrapping_add(task.difficulty as u64));
            for _ in 0..3 {
                let attempt = Listops.wrong_attempt(&task, &mut rng).unwrap();
                let Ok(program) = parse(&attempt) else {
                    continue;
                };
                let location = Listops
                    .feedback(&task, &attempt, FeedbackLevel::Location)
                    .unwrap();
                let explanation = Listops
                    .feedback(&task, &attempt, FeedbackLevel::Explanation)
                    .unwrap();
                let input = &quoted_lists(&location)[0];
                let expected = run(&reference, input).unwrap();
                let got = run(&program, input);
                assert_ne!(got.as_ref(), Ok(&expected), "{task:?} {attempt} {location}");
                let lists = quoted_lists(&explanation);
                assert_eq!(&lists[0], input, "{explanation}");
                match got {
                    Ok(output) => assert_eq!(lists[1..], [output, expected], "{explanation}"),
                    Err(e) => assert!(explanation.ends_with(&format!("error: {e}."))),
                }
                checked += 1;
            }
        }
        assert!(checked > 4_000, "only {checked} well-formed wrong attempts");
    }

    #[test]
    fn leak_rate_is_zero() {
        let mut pairs = 0;
        for task in tasks(1_667) {
            let mut rng = Rng::new(
                task.seed
                    .wrapping_mul(31)
                    .wrapping_add(task.difficulty as u64),
            );
            let attempt = Listops.wrong_attempt(&task, &mut rng).unwrap();
            for level in FeedbackLevel::ALL {
                let msg = Listops.feedback(&task, &attempt, level).unwrap();
                let leak = crate::leak::check(&task, &msg).unwrap();
                assert!(leak.is_none(), "{task:?} {attempt} {msg} {leak:?}");
            }
            pairs += 1;
        }
        assert!(pairs >= 10_000);
    }

    #[test]
    fn shared_domain_checks() {
        testkit::reference_solutions_verify(&Listops, 30);
        testkit::garbage_never_panics(&Listops);
    }

    #[test]
    fn critiques_are_read_for_form_and_syntax() {
        let (checked, _) = testkit::teacher_critiques_read_true(&Listops, 30);
        assert!(checked > 0);
        let t = Listops.generate(4, 1);
        let read = |attempt: &str, message: &str| {
            Listops
                .read_critique(&t, attempt, message)
                .unwrap()
                .unwrap()
        };
        for form in [
            "It fails on input [3 -1 0].",
            "On input [] it returns [1], but the expected output is [].",
            "On input [2 2] it stops with an error: division by zero.",
        ] {
            assert_eq!(read("sort", form), CritiqueReading::UNCHECKABLE, "{form}");
        }
        let syntax = Listops
            .feedback(&t, "sort |", FeedbackLevel::Explanation)
            .unwrap();
        assert!(syntax.starts_with("Syntax error"), "{syntax}");
        assert_eq!(read("sort |", &syntax), CritiqueReading::claim(true));
        assert_eq!(read("sort", &syntax), CritiqueReading::claim(false));
        assert_eq!(
            read("sort", "It fails on input [3 x]."),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read("sort", "Syntax error at character 0: x."),
            CritiqueReading::GARBLED
        );
    }

    fn judge_anything(
        text: &str,
        seed: u64,
        difficulty: u32,
    ) -> std::result::Result<(), TestCaseError> {
        let t = Listops.generate(seed, difficulty);
        let verdict = Listops.verify(&t, text);
        prop_assert!(verdict.is_ok());
        for level in FeedbackLevel::ALL {
            let msg = Listops.feedback(&t, text, level);
            prop_assert!(matches!(&msg, Ok(m) if !m.is_empty()));
            prop_assert!(crate::leak::check(&t, &msg.unwrap()).unwrap().is_none());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn any_string_is_judged(text in any::<String>(), seed in 0u64..20, d in 1u32..=6) {
            judge_anything(&text, seed, d)?;
        }

        #[test]
        fn printable_text_is_judged(text in "\\PC*", seed in 0u64..20, d in 1u32..=6) {
            judge_anything(&text, seed, d)?;
        }

        #[test]
        fn dsl_like_text_is_judged(
            text in "(sort|rev|uniq|take|drop|map|filter|even|odd|[0-9]|\\+|-|\\*|>|<|\\| ){0,40}",
            seed in 0u64..20,
            d in 1u32..=6,
        ) {
            judge_anything(&text, seed, d)?;
        }
    }
}
