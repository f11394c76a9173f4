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

use std::fmt;

use serde::{Deserialize, Serialize};

use super::contract::{
    Domain, DomainKind, FeedbackLevel, Task, Verdict, WRONG_MESSAGE, bounded, common_feedback,
};
use super::contract::{Shard, Sharding};
use crate::error::{DataError, Result};
use crate::rng::{Rng, mix_seed};

pub struct Listops;

/// More steps than this cannot be needed to explain seven short lists.
const MAX_STEPS: usize = 16;
/// Longest program text, counted in characters after trimming.
const MAX_PROGRAM_CHARS: usize = 256;
/// Longest list the interpreter accepts; no step makes a list longer.
const MAX_LIST_LEN: usize = 64;
/// Element operations one run may spend. Sixteen sorts of a 64-element list
/// cost 7,168, so only a broken bound could ever reach it.
const STEP_BUDGET: usize = 10_000;
/// Examples shown in the prompt.
const VISIBLE: usize = 3;
/// Tests only the verifier and the teacher see.
const HIDDEN: usize = 4;
/// Longest slice of a student's token quoted back in an error message.
const MAX_QUOTE_CHARS: usize = 24;

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

/// One step of a program. Constants are kept as parsed (0..=9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Sort,
    Rev,
    Uniq,
    Take(u8),
    Drop(u8),
    Add(u8),
    Sub(u8),
    Mul(u8),
    Even,
    Odd,
    Greater(u8),
    Less(u8),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Sort => f.write_str("sort"),
            Op::Rev => f.write_str("rev"),
            Op::Uniq => f.write_str("uniq"),
            Op::Take(k) => write!(f, "take {k}"),
            Op::Drop(k) => write!(f, "drop {k}"),
            Op::Add(k) => write!(f, "map +{k}"),
            Op::Sub(k) => write!(f, "map -{k}"),
            Op::Mul(k) => write!(f, "map *{k}"),
            Op::Even => f.write_str("filter even"),
            Op::Odd => f.write_str("filter odd"),
            Op::Greater(k) => write!(f, "filter >{k}"),
            Op::Less(k) => write!(f, "filter <{k}"),
        }
    }
}

impl Op {
    /// The word a step starts with, which is what students misspell.
    fn name(self) -> &'static str {
        match self {
            Op::Sort => "sort",
            Op::Rev => "rev",
            Op::Uniq => "uniq",
            Op::Take(_) => "take",
            Op::Drop(_) => "drop",
            Op::Add(_) | Op::Sub(_) | Op::Mul(_) => "map",
            Op::Even | Op::Odd | Op::Greater(_) | Op::Less(_) => "filter",
        }
    }

    /// The constant and the range the parser allows for it.
    fn constant(self) -> Option<(u8, u8)> {
        match self {
            Op::Take(k) | Op::Drop(k) | Op::Greater(k) | Op::Less(k) => Some((k, 0)),
            Op::Add(k) | Op::Sub(k) | Op::Mul(k) => Some((k, 1)),
            _ => None,
        }
    }

    fn with_constant(self, k: u8) -> Op {
        match self {
            Op::Take(_) => Op::Take(k),
            Op::Drop(_) => Op::Drop(k),
            Op::Greater(_) => Op::Greater(k),
            Op::Less(_) => Op::Less(k),
            Op::Add(_) => Op::Add(k),
            Op::Sub(_) => Op::Sub(k),
            Op::Mul(_) => Op::Mul(k),
            other => other,
        }
    }

    /// The step a student confuses this one with.
    fn confusable(self) -> Op {
        match self {
            Op::Sort => Op::Rev,
            Op::Rev => Op::Sort,
            Op::Uniq => Op::Sort,
            Op::Take(k) => Op::Drop(k),
            Op::Drop(k) => Op::Take(k),
            Op::Add(k) => Op::Sub(k),
            Op::Sub(k) => Op::Add(k),
            Op::Mul(k) => Op::Add(k),
            Op::Even => Op::Odd,
            Op::Odd => Op::Even,
            Op::Greater(k) => Op::Less(k),
            Op::Less(k) => Op::Greater(k),
        }
    }

    /// Adjacent steps of one family collapse into a single step or into an
    /// empty list (`map +2 | map -5`, `take 4 | take 2`, `filter even |
    /// filter odd`), so a program stacking them is shorter than it looks.
    fn family(self) -> u8 {
        match self {
            Op::Sort => 0,
            Op::Rev => 1,
            Op::Uniq => 2,
            Op::Take(_) => 3,
            Op::Drop(_) => 4,
            Op::Add(_) | Op::Sub(_) => 5,
            Op::Mul(_) => 6,
            Op::Even | Op::Odd => 7,
            Op::Greater(_) => 8,
            Op::Less(_) => 9,
        }
    }

    /// Element operations the step spends on a list of `len` elements.
    fn cost(self, len: usize) -> usize {
        let len = len.max(1);
        match self {
            Op::Sort => len * (usize::BITS - len.leading_zeros()) as usize,
            _ => len,
        }
    }

    fn apply(self, mut list: Vec<i64>) -> Result<Vec<i64>, RunError> {
        fn map(list: &mut [i64], f: impl Fn(i64) -> Option<i64>) -> Result<(), RunError> {
            for x in list {
                *x = f(*x).ok_or(RunError::Overflow)?;
            }
            Ok(())
        }
        match self {
            Op::Sort => list.sort_unstable(),
            Op::Rev => list.reverse(),
            Op::Uniq => list.dedup(),
            Op::Take(k) => list.truncate(k as usize),
            Op::Drop(k) => {
                list.drain(..list.len().min(k as usize));
            }
            Op::Add(k) => map(&mut list, |x| x.checked_add(k as i64))?,
            Op::Sub(k) => map(&mut list, |x| x.checked_sub(k as i64))?,
            Op::Mul(k) => map(&mut list, |x| x.checked_mul(k as i64))?,
            Op::Even => list.retain(|x| x % 2 == 0),
            Op::Odd => list.retain(|x| x % 2 != 0),
            Op::Greater(k) => list.retain(|&x| x > k as i64),
            Op::Less(k) => list.retain(|&x| x < k as i64),
        }
        Ok(list)
    }
}

/// Why a run stopped; worded to complete "it stops with an error: …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunError {
    Overflow,
    ListTooLong,
    TooManySteps,
    OutOfBudget,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Overflow => f.write_str("arithmetic overflow"),
            RunError::ListTooLong => {
                write!(f, "the list has more than {MAX_LIST_LEN} elements")
            }
            RunError::TooManySteps => write!(f, "the program has more than {MAX_STEPS} steps"),
            RunError::OutOfBudget => f.write_str("the program runs too long"),
        }
    }
}

fn run(program: &[Op], input: &[i64]) -> Result<Vec<i64>, RunError> {
    run_with_budget(program, input, STEP_BUDGET)
}

fn run_with_budget(program: &[Op], input: &[i64], budget: usize) -> Result<Vec<i64>, RunError> {
    if program.len() > MAX_STEPS {
        return Err(RunError::TooManySteps);
    }
    if input.len() > MAX_LIST_LEN {
        return Err(RunError::ListTooLong);
    }
    let mut left = budget;
    let mut list = input.to_vec();
    for op in program {
        left = left
            .checked_sub(op.cost(list.len()))
            .ok_or(RunError::OutOfBudget)?;
        list = op.apply(list)?;
    }
    Ok(list)
}

fn render_list(list: &[i64]) -> String {
    let items: Vec<String> = list.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(" "))
}

fn render_program(program: &[Op]) -> String {
    let steps: Vec<String> = program.iter().map(Op::to_string).collect();
    steps.join(" | ")
}

/// A syntax error in a student's program.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyntaxError {
    /// 1-based character position in the text as the student wrote it.
    position: usize,
    /// What is wrong, quoting the student's offending token.
    detail: String,
    /// The same without the quote, for when the student's own token would
    /// spell out the solution.
    generic: String,
}

impl SyntaxError {
    fn new(position: usize, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            position,
            generic: detail.clone(),
            detail,
        }
    }

    fn quoting(position: usize, detail: String, generic: impl Into<String>) -> Self {
        Self {
            position,
            detail,
            generic: generic.into(),
        }
    }

    fn message(&self, quoting: bool) -> String {
        let what = if quoting { &self.detail } else { &self.generic };
        format!("Syntax error at character {}: {what}.", self.position)
    }
}

/// Shortens a token for quoting; tokens are letters, digits or one symbol,
/// so nothing in them can break the message.
fn quote(token: &str) -> String {
    let mut quoted: String = token.chars().take(MAX_QUOTE_CHARS).collect();
    if token.chars().nth(MAX_QUOTE_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}

/// Control and formatting characters (a right-to-left override, say) are
/// quoted as escapes so they cannot garble the message around them.
fn quote_char(c: char) -> String {
    if c.is_ascii_graphic() && c != '`' {
        c.to_string()
    } else {
        c.escape_unicode().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Number,
    Symbol,
    Pipe,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// 1-based character position of the token's first character.
    position: usize,
}

/// Splits into words (letters), numbers (ASCII digits), the symbols
/// `+ - * > <` and `|`, skipping whitespace anywhere, so `take3`,
/// `map + 2` and `filter>4` all read as intended.
fn lex(text: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().enumerate().peekable();
    while let Some((index, (start, c))) = chars.next() {
        let kind = match c {
            _ if c.is_whitespace() => continue,
            _ if c.is_alphabetic() => Kind::Word,
            '0'..='9' => Kind::Number,
            '+' | '-' | '*' | '>' | '<' => Kind::Symbol,
            '|' => Kind::Pipe,
            _ => {
                return Err(SyntaxError::new(
                    index + 1,
                    format!("unexpected character `{}`", quote_char(c)),
                ));
            }
        };
        let mut end = start + c.len_utf8();
        let same_kind = |c: char| match kind {
            Kind::Word => c.is_alphabetic(),
            Kind::Number => c.is_ascii_digit(),
            Kind::Symbol | Kind::Pipe => false,
        };
        while let Some(&(_, (next_start, next))) = chars.peek() {
            if !same_kind(next) {
                break;
            }
            end = next_start + next.len_utf8();
            chars.next();
        }
        tokens.push(Token {
            kind,
            text: &text[start..end],
            position: index + 1,
        });
    }
    Ok(tokens)
}

/// Parses untrusted text into a program. Errors quote the student's token but
/// never list the operations: a one-step reference program would otherwise
/// appear in every error message.
fn parse(text: &str) -> Result<Vec<Op>, SyntaxError> {
    let lead = text.chars().take_while(|c| c.is_whitespace()).count();
    if text.trim().chars().nth(MAX_PROGRAM_CHARS).is_some() {
        return Err(SyntaxError::new(
            lead + MAX_PROGRAM_CHARS + 1,
            format!("the program is longer than {MAX_PROGRAM_CHARS} characters"),
        ));
    }
    if bounded(text).is_none() {
        return Err(SyntaxError::new(1, "the answer is too long"));
    }
    let tokens = lex(text)?;
    let end = tokens
        .last()
        .map_or(1, |t| t.position + t.text.chars().count());
    Parser {
        tokens: &tokens,
        next: 0,
        end,
    }
    .program()
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    next: usize,
    /// Position just past the last token, where a missing token is reported.
    end: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    fn bump(&mut self) -> Option<Token<'a>> {
        let token = self.peek();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn program(&mut self) -> Result<Vec<Op>, SyntaxError> {
        let mut ops = Vec::new();
        let mut last_pipe = None;
        loop {
            let head = match (self.bump(), last_pipe) {
                (None, None) => return Err(SyntaxError::new(1, "empty program")),
                (None, Some(pipe)) => {
                    return Err(SyntaxError::new(pipe, "empty step after the last `|`"));
                }
                (Some(t), None) if t.kind == Kind::Pipe => {
                    return Err(SyntaxError::new(
                        t.position,
                        "empty step before the first `|`",
                    ));
                }
                (Some(t), Some(_)) if t.kind == Kind::Pipe => {
                    return Err(SyntaxError::new(t.position, "empty step between `|`"));
                }
                (Some(t), _) if ops.len() == MAX_STEPS => {
                    return Err(SyntaxError::new(
                        t.position,
                        format!("more than {MAX_STEPS} steps"),
                    ));
                }
                (Some(t), _) => t,
            };
            ops.push(self.step(head)?);
            match self.bump() {
                None => return Ok(ops),
                Some(t) if t.kind == Kind::Pipe => last_pipe = Some(t.position),
                Some(t) => {
                    return Err(SyntaxError::quoting(
                        t.position,
                        format!("unexpected `{}`; steps are separated by `|`", quote(t.text)),
                        "unexpected text; steps are separated by `|`",
                    ));
                }
            }
        }
    }

    fn step(&mut self, head: Token<'a>) -> Result<Op, SyntaxError> {
        if head.kind != Kind::Word {
            return Err(SyntaxError::quoting(
                head.position,
                format!("expected an operation, found `{}`", quote(head.text)),
                "expected an operation",
            ));
        }
        let op = match head.text.to_ascii_lowercase().as_str() {
            "sort" => Op::Sort,
            "rev" => Op::Rev,
            "uniq" => Op::Uniq,
            "take" => Op::Take(self.number(head, 0)?),
            "drop" => Op::Drop(self.number(head, 0)?),
            "map" => match self.peek() {
                Some(sign) if sign.kind == Kind::Symbol && "+-*".contains(sign.text) => {
                    self.next += 1;
                    let k = self.number(sign, 1)?;
                    match sign.text {
                        "+" => Op::Add(k),
                        "-" => Op::Sub(k),
                        _ => Op::Mul(k),
                    }
                }
                found => return Err(self.expected(found, head, "expected `+`, `-` or `*`")),
            },
            "filter" => match self.peek() {
                Some(word) if word.kind == Kind::Word => {
                    self.next += 1;
                    match word.text.to_ascii_lowercase().as_str() {
                        "even" => Op::Even,
                        "odd" => Op::Odd,
                        _ => {
                            return Err(SyntaxError::quoting(
                                word.position,
                                format!("unknown condition `{}`", quote(word.text)),
                                "unknown condition",
                            ));
                        }
                    }
                }
                Some(cmp) if cmp.kind == Kind::Symbol && "<>".contains(cmp.text) => {
                    self.next += 1;
                    let k = self.number(cmp, 0)?;
                    if cmp.text == ">" {
                        Op::Greater(k)
                    } else {
                        Op::Less(k)
                    }
                }
                found => return Err(self.expected(found, head, "expected a condition")),
            },
            _ => {
                return Err(SyntaxError::quoting(
                    head.position,
                    format!("unknown operation `{}`", quote(head.text)),
                    "unknown operation",
                ));
            }
        };
        Ok(op)
    }

    /// A constant after `after`, in `min..=9`.
    fn number(&mut self, after: Token<'a>, min: u8) -> Result<u8, SyntaxError> {
        match self.peek() {
            Some(n) if n.kind == Kind::Number => {
                self.next += 1;
                let value = n.text.bytes().try_fold(0u8, |acc, digit| {
                    acc.checked_mul(10)?.checked_add(digit - b'0')
                });
                match value {
                    Some(k) if (min..=9).contains(&k) => Ok(k),
                    _ => Err(SyntaxError::quoting(
                        n.position,
                        format!("number `{}` out of range ({min} to 9)", quote(n.text)),
                        format!("number out of range ({min} to 9)"),
                    )),
                }
            }
            found => Err(self.expected(found, after, "expected a number")),
        }
    }

    fn expected(&self, found: Option<Token<'a>>, after: Token<'a>, what: &str) -> SyntaxError {
        SyntaxError::quoting(
            found.map_or(self.end, |t| t.position),
            format!("{what} after `{}`", quote(after.text)),
            what,
        )
    }
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
