//! The little language of `listops`: its steps, a lexer and parser that
//! point at the character a student got wrong, and a bounded interpreter,
//! so that untrusted programs can neither panic nor hang it. The domain
//! (generation, the verifier and the teacher) is in the parent module.

use std::fmt;

use crate::domain::contract::bounded;

/// More steps than this cannot be needed to explain seven short lists.
pub(super) const MAX_STEPS: usize = 16;
/// Longest program text, counted in characters after trimming.
pub(super) const MAX_PROGRAM_CHARS: usize = 256;
/// Longest list the interpreter accepts; no step makes a list longer.
pub(super) const MAX_LIST_LEN: usize = 64;
/// Element operations one run may spend. Sixteen sorts of a 64-element list
/// cost 7,168, so only a broken bound could ever reach it.
pub(super) const STEP_BUDGET: usize = 10_000;
/// Longest slice of a student's token quoted back in an error message.
pub(super) const MAX_QUOTE_CHARS: usize = 24;

/// One step of a program. Constants are kept as parsed (0..=9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
    pub(super) fn name(self) -> &'static str {
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
    pub(super) fn constant(self) -> Option<(u8, u8)> {
        match self {
            Op::Take(k) | Op::Drop(k) | Op::Greater(k) | Op::Less(k) => Some((k, 0)),
            Op::Add(k) | Op::Sub(k) | Op::Mul(k) => Some((k, 1)),
            _ => None,
        }
    }

    pub(super) fn with_constant(self, k: u8) -> Op {
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
    pub(super) fn confusable(self) -> Op {
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
    pub(super) fn family(self) -> u8 {
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
    pub(super) fn cost(self, len: usize) -> usize {
        let len = len.max(1);
        match self {
            Op::Sort => len * (usize::BITS - len.leading_zeros()) as usize,
            _ => len,
        }
    }

    pub(super) fn apply(self, mut list: Vec<i64>) -> Result<Vec<i64>, RunError> {
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
pub(super) enum RunError {
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

pub(super) fn run(program: &[Op], input: &[i64]) -> Result<Vec<i64>, RunError> {
    run_with_budget(program, input, STEP_BUDGET)
}

pub(super) fn run_with_budget(
    program: &[Op],
    input: &[i64],
    budget: usize,
) -> Result<Vec<i64>, RunError> {
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

pub(super) fn render_list(list: &[i64]) -> String {
    let items: Vec<String> = list.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(" "))
}

pub(super) fn render_program(program: &[Op]) -> String {
    let steps: Vec<String> = program.iter().map(Op::to_string).collect();
    steps.join(" | ")
}

/// A syntax error in a student's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    /// 1-based character position in the text as the student wrote it.
    pub(super) position: usize,
    /// What is wrong, quoting the student's offending token.
    pub(super) detail: String,
    /// The same without the quote, for when the student's own token would
    /// spell out the solution.
    pub(super) generic: String,
}

impl SyntaxError {
    pub(super) fn new(position: usize, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            position,
            generic: detail.clone(),
            detail,
        }
    }

    pub(super) fn quoting(position: usize, detail: String, generic: impl Into<String>) -> Self {
        Self {
            position,
            detail,
            generic: generic.into(),
        }
    }

    pub(super) fn message(&self, quoting: bool) -> String {
        let what = if quoting { &self.detail } else { &self.generic };
        format!("Syntax error at character {}: {what}.", self.position)
    }
}

/// Shortens a token for quoting; tokens are letters, digits or one symbol,
/// so nothing in them can break the message.
pub(super) fn quote(token: &str) -> String {
    let mut quoted: String = token.chars().take(MAX_QUOTE_CHARS).collect();
    if token.chars().nth(MAX_QUOTE_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}

/// Control and formatting characters (a right-to-left override, say) are
/// quoted as escapes so they cannot garble the message around them.
pub(super) fn quote_char(c: char) -> String {
    if c.is_ascii_graphic() && c != '`' {
        c.to_string()
    } else {
        c.escape_unicode().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    Number,
    Symbol,
    Pipe,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// 1-based character position of the token's first character.
    position: usize,
}

/// Splits into words (letters), numbers (ASCII digits), the symbols
/// `+ - * > <` and `|`, skipping whitespace anywhere, so `take3`,
/// `map + 2` and `filter>4` all read as intended.
pub(super) fn lex(text: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
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
pub(super) fn parse(text: &str) -> Result<Vec<Op>, SyntaxError> {
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

pub(super) struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    next: usize,
    /// Position just past the last token, where a missing token is reported.
    end: usize,
}

impl<'a> Parser<'_, 'a> {
    pub(super) fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    pub(super) fn bump(&mut self) -> Option<Token<'a>> {
        let token = self.peek();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    pub(super) fn program(&mut self) -> Result<Vec<Op>, SyntaxError> {
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

    pub(super) fn step(&mut self, head: Token<'a>) -> Result<Op, SyntaxError> {
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
    pub(super) fn number(&mut self, after: Token<'a>, min: u8) -> Result<u8, SyntaxError> {
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

    pub(super) fn expected(
        &self,
        found: Option<Token<'a>>,
        after: Token<'a>,
        what: &str,
    ) -> SyntaxError {
        SyntaxError::quoting(
            found.map_or(self.end, |t| t.position),
            format!("{what} after `{}`", quote(after.text)),
            what,
        )
    }
}
