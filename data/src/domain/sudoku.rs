//! `sudoku` (the paper's puzzle setting): 4×4 grids with 2×2 boxes and the
//! digits 1-4, shown as rows joined by `/` with blanks as `.`:
//! `12.4/3..2/.1.3/4..1` → `1234/3412/2143/4321`.
//!
//! Difficulty `n` (1..=12) is the number of blank cells: 1 leaves a single
//! forced digit, 12 leaves four givens and often several completions. The
//! verifier checks the rules rather than comparing with the stored grid, so
//! every valid completion that keeps the givens is correct.
//! Feedback levels: verdict; location (the first changed given in reading
//! order, else the first row, column or box that breaks a rule); location
//! plus the offending digit; mask (`Wrong cells: ..!./..../..../....`, the
//! cells in which the attempt differs from its nearest valid completion).
//! Feedback only ever names digits the student wrote or the prompt shows,
//! never the value of a blank.

use serde::{Deserialize, Serialize};

use super::contract::CritiqueReading;
use super::contract::{
    Domain, DomainKind, FeedbackLevel, Task, Verdict, WRONG_MESSAGE, bounded, common_feedback,
    render_mask,
};
use super::contract::{Shard, Sharding};
use super::critique::{is_mask, number, read_common, row_column};
use crate::error::{DataError, Result};
use crate::rng::{Rng, mix_seed};

pub struct Sudoku;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    /// The puzzle as shown, blanks as `.`, e.g. `12.4/3..2/.1.3/4..1`.
    givens: String,
    /// The full grid the blanks were cut from, e.g. `1234/3412/2143/4321`.
    solution: String,
}

/// Cells in reading order; 0 is a blank.
type Grid = [u8; 16];

/// Fewest and most blanks. Twelve leaves four givens; beyond that the puzzle
/// is barely constrained and says little about the student.
const BLANKS: (u32, u32) = (1, 12);

/// The two essentially different 4×4 grids: every valid grid is one of these
/// up to relabelling, row and column swaps within a band or stack, band and
/// stack swaps, and transposition. Their orbits hold 96 and 192 of the 288
/// grids, so drawing the second twice as often makes every grid equally likely.
const BASES: [Grid; 2] = [
    [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1],
    [1, 2, 3, 4, 3, 4, 1, 2, 2, 3, 4, 1, 4, 1, 2, 3],
];

const BOX_NAMES: [&str; 4] = ["top-left", "top-right", "bottom-left", "bottom-right"];

const MALFORMED_MESSAGE: &str =
    "Answer with the full grid: four rows of four digits 1-4 separated by /.";

/// A row, column or box, each numbered from 0 in reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Row(usize),
    Column(usize),
    Box(usize),
}

impl Unit {
    /// Every unit, in the order feedback looks for a broken rule.
    fn all() -> impl Iterator<Item = Unit> {
        (0..4)
            .map(Unit::Row)
            .chain((0..4).map(Unit::Column))
            .chain((0..4).map(Unit::Box))
    }

    fn cells(self) -> [usize; 4] {
        match self {
            Unit::Row(r) => [4 * r, 4 * r + 1, 4 * r + 2, 4 * r + 3],
            Unit::Column(c) => [c, 4 + c, 8 + c, 12 + c],
            Unit::Box(b) => {
                let top_left = 8 * (b / 2) + 2 * (b % 2);
                [top_left, top_left + 1, top_left + 4, top_left + 5]
            }
        }
    }

    /// The unit as the subject of a sentence, numbered from 1.
    fn name(self) -> String {
        match self {
            Unit::Row(r) => format!("Row {}", r + 1),
            Unit::Column(c) => format!("Column {}", c + 1),
            Unit::Box(b) => format!("The {} box", BOX_NAMES[b]),
        }
    }
}

/// What a sudoku critique says about a grid, as [`Sudoku::read_critique`]
/// reads it; `None` parts are those its feedback level leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// `You changed the given 4 in row 1, column 3.` (digit named) or
    /// `The given cell in row 1, column 3 was changed.`
    ChangedGiven { cell: usize, given: Option<u8> },
    /// `Row 2 contains the digit 3 twice; the 3 in row 2, column 4 must
    /// change.` or `Row 2 breaks a rule.`
    Repeat {
        unit: Unit,
        named: Option<RepeatNamed>,
    },
    /// `Wrong cells: ..../.!../..../....`
    Mask,
}

/// The explanation's account of a repeat: the digit, whether it occurs
/// exactly twice (`twice`) or more (`more than once`), and the cell named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RepeatNamed {
    digit: u8,
    twice: bool,
    cell: usize,
}

impl Claim {
    fn read(message: &str) -> Option<Claim> {
        let cell = |(r, c): (usize, usize)| (r <= 4 && c <= 4).then(|| 4 * (r - 1) + c - 1);
        let digit = |text: &str| {
            let d = number(text)?;
            (d <= 4).then_some(d as u8)
        };
        if let Some(rest) = message.strip_prefix("You changed the given ") {
            let (given, place) = rest.strip_suffix('.')?.split_once(" in ")?;
            return Some(Claim::ChangedGiven {
                cell: cell(row_column(place)?)?,
                given: Some(digit(given)?),
            });
        }
        if let Some(rest) = message.strip_prefix("The given cell in ") {
            let place = rest.strip_suffix(" was changed.")?;
            return Some(Claim::ChangedGiven {
                cell: cell(row_column(place)?)?,
                given: None,
            });
        }
        if let Some(rest) = message.strip_prefix("Wrong cells: ") {
            let rows: Vec<&str> = rest.split('/').collect();
            let ok = rows.len() == 4 && rows.iter().all(|r| r.len() == 4 && is_mask(r));
            return ok.then_some(Claim::Mask);
        }
        if let Some(name) = message.strip_suffix(" breaks a rule.") {
            return Some(Claim::Repeat {
                unit: Unit::all().find(|u| u.name() == name)?,
                named: None,
            });
        }
        let (name, rest) = message.split_once(" contains the digit ")?;
        let unit = Unit::all().find(|u| u.name() == name)?;
        let (d, rest) = rest.split_once(' ')?;
        let (times, rest) = rest.split_once("; the ")?;
        let twice = match times {
            "twice" => true,
            "more than once" => false,
            _ => return None,
        };
        let (d2, rest) = rest.split_once(" in ")?;
        let place = rest.strip_suffix(" must change.")?;
        let d = digit(d)?;
        (digit(d2)? == d).then_some(())?;
        Some(Claim::Repeat {
            unit,
            named: Some(RepeatNamed {
                digit: d,
                twice,
                cell: cell(row_column(place)?)?,
            }),
        })
    }

    /// Whether the claim is true of `grid` (a mask is judged by the
    /// caller, against the teacher's).
    fn holds(self, givens: &Grid, grid: &Grid) -> bool {
        match self {
            Claim::ChangedGiven { cell, given } => {
                givens[cell] != 0
                    && grid[cell] != givens[cell]
                    && given.is_none_or(|g| g == givens[cell])
            }
            Claim::Repeat { unit, named: None } => {
                let cells = unit.cells();
                (1..=4).any(|d| cells.iter().filter(|&&i| grid[i] == d).count() > 1)
            }
            Claim::Repeat {
                unit,
                named: Some(RepeatNamed { digit, twice, cell }),
            } => {
                let cells = unit.cells();
                let count = cells.iter().filter(|&&i| grid[i] == digit).count();
                let times = if twice { count == 2 } else { count > 2 };
                times && cells.contains(&cell) && grid[cell] == digit
            }
            Claim::Mask => false,
        }
    }
}

/// The first thing wrong with a complete grid, in the order feedback reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    ChangedGiven { cell: usize, given: u8 },
    Repeat { unit: Unit, digit: u8, count: usize },
}

/// The cell of a repeated `digit` in `unit` that the student should
/// change: one that is not a given and disagrees with the solution (there is
/// always one, since the solution holds `digit` once in the unit), else
/// the first that is not a given. Naming it states a position and the
/// student's own digit, never a value of the solution.
fn cell_to_change(givens: &Grid, solution: &Grid, grid: &Grid, unit: Unit, digit: u8) -> usize {
    let candidates: Vec<usize> = unit
        .cells()
        .into_iter()
        .filter(|&i| grid[i] == digit && givens[i] == 0)
        .collect();
    candidates
        .iter()
        .copied()
        .find(|&i| solution[i] != digit)
        .or(candidates.first().copied())
        .unwrap_or(unit.cells()[0])
}

fn first_problem(givens: &Grid, grid: &Grid) -> Option<Problem> {
    if let Some(cell) = (0..16).find(|&i| givens[i] != 0 && givens[i] != grid[i]) {
        return Some(Problem::ChangedGiven {
            cell,
            given: givens[cell],
        });
    }
    Unit::all().find_map(|unit| {
        let digits = unit.cells().map(|i| grid[i]);
        let count = |d: u8| digits.iter().filter(|&&x| x == d).count();
        digits
            .iter()
            .find(|&&d| count(d) > 1)
            .map(|&digit| Problem::Repeat {
                unit,
                digit,
                count: count(digit),
            })
    })
}

/// Whitespace and `/` are layout, so a grid may come on one line or four;
/// blanks (`.`) belong in the givens only, never in an answer.
fn read_cells(text: &str, allow_blanks: bool) -> Option<Grid> {
    let mut grid = [0u8; 16];
    let mut n = 0;
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '/') {
        let cell = match c {
            '1'..='4' => c as u8 - b'0',
            '.' if allow_blanks => 0,
            _ => return None,
        };
        *grid.get_mut(n)? = cell;
        n += 1;
    }
    (n == 16).then_some(grid)
}

fn parse_answer(text: &str) -> Option<Grid> {
    read_cells(bounded(text)?, false)
}

fn format_grid(grid: &Grid) -> String {
    grid.chunks(4)
        .map(|row| {
            row.iter()
                .map(|&d| if d == 0 { '.' } else { (b'0' + d) as char })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A random order of the four rows (or columns) that keeps each band whole.
fn random_line_order(rng: &mut Rng) -> [usize; 4] {
    let mut order = [0, 1, 2, 3];
    if rng.chance(0.5) {
        order.swap(0, 1);
    }
    if rng.chance(0.5) {
        order.swap(2, 3);
    }
    if rng.chance(0.5) {
        order = [order[2], order[3], order[0], order[1]];
    }
    order
}

/// A uniformly random valid grid: a base grid under a uniformly random
/// symmetry, which is uniform over the base's orbit.
fn random_full_grid(rng: &mut Rng) -> Grid {
    let base = if rng.below(3) == 0 {
        BASES[0]
    } else {
        BASES[1]
    };
    let mut digits = [1u8, 2, 3, 4];
    rng.shuffle(&mut digits);
    let rows = random_line_order(rng);
    let columns = random_line_order(rng);
    let transpose = rng.chance(0.5);
    let mut grid = [0u8; 16];
    for (r, &from_r) in rows.iter().enumerate() {
        for (c, &from_c) in columns.iter().enumerate() {
            let (to_r, to_c) = if transpose { (c, r) } else { (r, c) };
            grid[4 * to_r + to_c] = digits[base[4 * from_r + from_c] as usize - 1];
        }
    }
    grid
}

/// A different digit from `d`, uniformly.
fn other_digit(rng: &mut Rng, d: u8) -> u8 {
    (d.wrapping_sub(1) % 4 + 1 + rng.below(3) as u8) % 4 + 1
}

impl Sudoku {
    /// The givens and the stored full grid.
    fn grids(&self, task: &Task) -> Result<(Grid, Grid)> {
        let meta: Meta = task.meta()?;
        let corrupt = |what: &str| DataError::CorruptTask {
            task_id: task.task_id.clone(),
            reason: format!("{what} is not a 4×4 grid"),
        };
        let givens = read_cells(&meta.givens, true).ok_or_else(|| corrupt("givens"))?;
        let solution = read_cells(&meta.solution, false).ok_or_else(|| corrupt("solution"))?;
        Ok((givens, solution))
    }
}

impl Domain for Sudoku {
    fn kind(&self) -> DomainKind {
        DomainKind::Sudoku
    }

    fn difficulty_range(&self) -> (u32, u32) {
        BLANKS
    }

    fn generate(&self, seed: u64, difficulty: u32) -> Task {
        let difficulty = difficulty.clamp(BLANKS.0, BLANKS.1);
        let mut rng = Rng::new(mix_seed(&[seed, difficulty as u64]));
        let solution = random_full_grid(&mut rng);
        let mut cells: Vec<usize> = (0..16).collect();
        rng.shuffle(&mut cells);
        let mut givens = solution;
        for &i in &cells[..difficulty as usize] {
            givens[i] = 0;
        }
        let meta = Meta {
            givens: format_grid(&givens),
            solution: format_grid(&solution),
        };
        let metadata = serde_json::to_string(&meta).expect("serialisable");
        Task::new(
            DomainKind::Sudoku,
            difficulty,
            seed,
            meta.givens,
            meta.solution,
            metadata,
        )
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let (givens, _) = self.grids(task)?;
        Ok(match parse_answer(attempt) {
            None => Verdict::Malformed,
            Some(grid) if first_problem(&givens, &grid).is_none() => Verdict::Correct,
            Some(_) => Verdict::Wrong,
        })
    }

    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String> {
        let verdict = self.verify(task, attempt)?;
        if let Some(message) = common_feedback(verdict, level) {
            return Ok(message);
        }
        let Some(grid) = parse_answer(attempt) else {
            return Ok(MALFORMED_MESSAGE.to_string());
        };
        let (givens, solution) = self.grids(task)?;
        let Some(problem) = first_problem(&givens, &grid) else {
            return Ok(WRONG_MESSAGE.to_string());
        };
        if level == FeedbackLevel::Mask {
            let closest = closest_completion(&givens, &grid).unwrap_or(solution);
            return Ok(format!("Wrong cells: {}", mask_grid(&grid, &closest)));
        }
        let explain = level == FeedbackLevel::Explanation;
        Ok(match problem {
            Problem::ChangedGiven { cell, given } => {
                let (r, c) = (cell / 4 + 1, cell % 4 + 1);
                if explain {
                    format!("You changed the given {given} in row {r}, column {c}.")
                } else {
                    format!("The given cell in row {r}, column {c} was changed.")
                }
            }
            Problem::Repeat { unit, digit, count } => {
                if explain {
                    let times = if count == 2 {
                        "twice"
                    } else {
                        "more than once"
                    };
                    let cell = cell_to_change(&givens, &solution, &grid, unit, digit);
                    let (r, c) = (cell / 4 + 1, cell % 4 + 1);
                    format!(
                        "{} contains the digit {digit} {times}; the {digit} in row {r}, column {c} must change.",
                        unit.name()
                    )
                } else {
                    format!("{} breaks a rule.", unit.name())
                }
            }
        })
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let (givens, solution) = self.grids(task)?;
        let blanks: Vec<usize> = (0..16).filter(|&i| givens[i] == 0).collect();
        let filled: Vec<usize> = (0..16).filter(|&i| givens[i] != 0).collect();
        let row_pairs: Vec<(usize, usize)> = blanks
            .iter()
            .flat_map(|&a| blanks.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a < b && a / 4 == b / 4)
            .collect();
        for _ in 0..32 {
            let mut grid = solution;
            match rng.below(3) {
                // A slip in one blank cell.
                0 if !blanks.is_empty() => {
                    let i = *rng.choose(&blanks);
                    grid[i] = other_digit(rng, grid[i]);
                }
                // The right digits for a row, in the wrong places.
                1 if !row_pairs.is_empty() => {
                    let (a, b) = *rng.choose(&row_pairs);
                    grid.swap(a, b);
                }
                // Overwriting a given.
                2 if !filled.is_empty() => {
                    let i = *rng.choose(&filled);
                    grid[i] = other_digit(rng, grid[i]);
                }
                _ => continue,
            }
            if first_problem(&givens, &grid).is_some() {
                return Ok(format_grid(&grid));
            }
        }
        // A repeated digit in the first row is wrong whatever the givens are.
        let mut grid = solution;
        grid[0] = grid[1];
        Ok(format_grid(&grid))
    }

    /// Changes only the cell the explanation names: a changed given is put
    /// back, the named cell of a repeated digit gets the solution's digit.
    /// Other mistakes stay for the next critique to name. After a mask,
    /// every flagged cell changes: the answer is the completion the mask
    /// was taken against.
    fn repair(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<Option<String>> {
        let (givens, solution) = self.grids(task)?;
        let Some(mut grid) = parse_answer(attempt) else {
            return Ok(None);
        };
        if level == FeedbackLevel::Mask {
            return Ok(first_problem(&givens, &grid)
                .map(|_| format_grid(&closest_completion(&givens, &grid).unwrap_or(solution))));
        }
        let cell = match first_problem(&givens, &grid) {
            None => return Ok(None),
            Some(Problem::ChangedGiven { cell, .. }) => cell,
            Some(Problem::Repeat { unit, digit, .. }) => {
                cell_to_change(&givens, &solution, &grid, unit, digit)
            }
        };
        grid[cell] = solution[cell];
        Ok(Some(format_grid(&grid)))
    }

    /// A changed given and a repeated digit are visible in the grid and
    /// the givens; the mask is too, since the completions of the givens
    /// are. Which of two repeated digits must change needs the solution,
    /// so that part of an explanation is not judged.
    fn read_critique(
        &self,
        task: &Task,
        attempt: &str,
        message: &str,
    ) -> Result<Option<CritiqueReading>> {
        let message = message.trim();
        let verdict = self.verify(task, attempt)?;
        if let Some(reading) = read_common(message, Some(MALFORMED_MESSAGE), verdict) {
            return Ok(Some(reading));
        }
        let Some(claim) = Claim::read(message) else {
            return Ok(Some(CritiqueReading::GARBLED));
        };
        let (givens, _) = self.grids(task)?;
        let holds = match (claim, parse_answer(attempt)) {
            (_, None) => false,
            (Claim::Mask, Some(_)) => self.feedback(task, attempt, FeedbackLevel::Mask)? == message,
            (claim, Some(grid)) => claim.holds(&givens, &grid),
        };
        Ok(Some(CritiqueReading::claim(holds)))
    }

    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let (givens, solution) = self.grids(task)?;
        let squeezed: String = message
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '/')
            .collect();
        let digits: String = format_grid(&solution).replace('/', "");
        if squeezed.contains(&digits) {
            return Ok(Some("states the solution grid".to_string()));
        }
        for r in 0..4 {
            let row = Unit::Row(r).cells();
            if row.iter().any(|&i| givens[i] == 0) && squeezed.contains(&digits[4 * r..4 * r + 4]) {
                return Ok(Some(format!("states row {} of the solution", r + 1)));
            }
        }
        Ok(None)
    }

    /// Withholds one row's givens: the prompt shows the row as `????` and
    /// the teacher reveals it as `row 2: 1..4`. A row is chosen only if it
    /// is essential: some valid completion of the remaining givens breaks
    /// one of the withheld ones.
    fn shard(&self, task: &Task) -> Result<Option<Sharding>> {
        let (givens, _) = self.grids(task)?;
        let mut rows = [0usize, 1, 2, 3];
        Rng::new(mix_seed(&[task.seed, 0x5AAD])).shuffle(&mut rows);
        for r in rows {
            let cells = Unit::Row(r).cells();
            if cells.iter().all(|&i| givens[i] == 0) {
                continue;
            }
            let mut rest = givens;
            cells.iter().for_each(|&i| rest[i] = 0);
            let mut breaks_a_given = false;
            for_each_completion(&mut rest, 0, &mut |grid| {
                breaks_a_given = cells
                    .iter()
                    .any(|&i| givens[i] != 0 && grid[i] != givens[i]);
                breaks_a_given
            });
            if !breaks_a_given {
                continue;
            }
            let shown = format_grid(&givens);
            let mut lines: Vec<&str> = shown.split('/').collect();
            let row_text = lines[r].to_string();
            lines[r] = "????";
            let reveal = format!("row {}: {row_text}", r + 1);
            if self.leak(task, &reveal)?.is_some() {
                continue;
            }
            return Ok(Some(Sharding {
                prompt: lines.join("/"),
                shards: vec![Shard {
                    name: format!("row {}", r + 1),
                    reveal,
                    essential: true,
                }],
            }));
        }
        Ok(None)
    }
}

/// An attempt as the verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The digits 1-4, cells in reading order (row by row).
    pub cells: [u8; 16],
    /// The cells (indices into `cells`) the teacher's location-level
    /// critique points at: the one changed given, or the four cells of the
    /// row, column or box that breaks a rule. `None` when the grid is correct.
    pub flagged: Option<Vec<usize>>,
}

/// Reads `attempt` exactly as [`Sudoku::verify`] and [`Sudoku::feedback`]
/// do. `None` when the verifier calls it malformed or the task is corrupt.
/// Total on untrusted text.
pub fn read(task: &Task, attempt: &str) -> Option<Reading> {
    let (givens, _) = Sudoku.grids(task).ok()?;
    let cells = parse_answer(attempt)?;
    let flagged = first_problem(&givens, &cells).map(|problem| match problem {
        Problem::ChangedGiven { cell, .. } => vec![cell],
        Problem::Repeat { unit, .. } => unit.cells().to_vec(),
    });
    Some(Reading { cells, flagged })
}

/// The valid completion of `givens` that differs from `grid` in the fewest
/// cells (the first such in search order): what a wrong answer was
/// closest to, so its mask flags as few cells as the puzzle allows. `None`
/// only for givens with no completion, which generation never makes.
fn closest_completion(givens: &Grid, grid: &Grid) -> Option<Grid> {
    let mut best: Option<(usize, Grid)> = None;
    let mut search = *givens;
    for_each_completion(&mut search, 0, &mut |done| {
        let differences = (0..16).filter(|&i| done[i] != grid[i]).count();
        if best.is_none_or(|(fewest, _)| differences < fewest) {
            best = Some((differences, *done));
        }
        false
    });
    best.map(|(_, done)| done)
}

/// `grid`'s mask against `closest`, laid out as grids are written:
/// `..../..!!/...!/....`.
fn mask_grid(grid: &Grid, closest: &Grid) -> String {
    let mask = render_mask((0..16).map(|i| grid[i] != closest[i]));
    let rows: Vec<&str> = (0..4).map(|r| &mask[4 * r..4 * r + 4]).collect();
    rows.join("/")
}

/// Calls `visit` on every valid grid that keeps the non-blank cells of
/// `grid` (filled from `from` on), until `visit` returns true. A 4×4 grid
/// has at most 288 completions, so the search is tiny.
fn for_each_completion(grid: &mut Grid, from: usize, visit: &mut dyn FnMut(&Grid) -> bool) -> bool {
    let Some(cell) = (from..16).find(|&i| grid[i] == 0) else {
        return first_problem(&[0; 16], grid).is_none() && visit(grid);
    };
    for d in 1..=4 {
        let clashes = Unit::all()
            .filter(|u| u.cells().contains(&cell))
            .any(|u| u.cells().iter().any(|&i| grid[i] == d));
        if clashes {
            continue;
        }
        grid[cell] = d;
        if for_each_completion(grid, cell + 1, visit) {
            grid[cell] = 0;
            return true;
        }
    }
    grid[cell] = 0;
    false
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::{CORRECT_MESSAGE, testkit};
    use crate::leak;
    use crate::rng::Rng;

    fn task(givens: &str, solution: &str) -> Task {
        let meta = serde_json::to_string(&Meta {
            givens: givens.to_string(),
            solution: solution.to_string(),
        })
        .unwrap();
        let blanks = givens.matches('.').count() as u32;
        Task::new(
            DomainKind::Sudoku,
            blanks,
            0,
            givens.into(),
            solution.into(),
            meta,
        )
    }

    fn is_valid_grid(grid: &Grid) -> bool {
        first_problem(&[0; 16], grid).is_none()
    }

    #[test]
    fn difficulty_is_the_number_of_blanks() {
        for d in 1..=12 {
            let t = Sudoku.generate(9, d);
            assert_eq!(t.difficulty, d);
            assert_eq!(t.prompt.matches('.').count(), d as usize, "{}", t.prompt);
            assert_eq!(t.prompt.len(), 19);
            let (givens, solution) = Sudoku.grids(&t).unwrap();
            assert!(is_valid_grid(&solution));
            assert!((0..16).all(|i| givens[i] == 0 || givens[i] == solution[i]));
            assert_eq!(format_grid(&givens), t.prompt);
            assert_eq!(format_grid(&solution), t.solution);
        }
        assert_eq!(Sudoku.generate(1, 0).difficulty, 1);
        assert_eq!(Sudoku.generate(1, 99).difficulty, 12);
    }

    #[test]
    fn random_grids_reach_all_288_valid_grids() {
        let mut rng = Rng::new(4);
        let seen: HashSet<Grid> = (0..20_000).map(|_| random_full_grid(&mut rng)).collect();
        assert!(seen.iter().all(is_valid_grid));
        assert_eq!(seen.len(), 288);
    }

    #[test]
    fn units_cover_the_grid() {
        assert_eq!(Unit::Box(0).cells(), [0, 1, 4, 5]);
        assert_eq!(Unit::Box(3).cells(), [10, 11, 14, 15]);
        assert_eq!(Unit::Column(2).cells(), [2, 6, 10, 14]);
        for unit in [Unit::Row(0), Unit::Column(0), Unit::Box(0)] {
            let kind = |u: &Unit| std::mem::discriminant(u) == std::mem::discriminant(&unit);
            let cells: HashSet<usize> = Unit::all().filter(kind).flat_map(|u| u.cells()).collect();
            assert_eq!(cells.len(), 16);
        }
    }

    #[test]
    fn answers_parse_with_or_without_separators() {
        let t = task("12.4/3..2/.1.3/4..1", "1234/3412/2143/4321");
        for ok in [
            "1234/3412/2143/4321",
            "1234341221434321",
            " 1234 / 3412\n2143 4321 ",
        ] {
            assert_eq!(Sudoku.verify(&t, ok).unwrap(), Verdict::Correct, "{ok}");
        }
        for bad in [
            "12.4/3412/2143/4321",
            "1234/3412/2143/432",
            "1234/3412/2143/43211",
            "5234/3412/2143/4321",
            "",
        ] {
            assert_eq!(Sudoku.verify(&t, bad).unwrap(), Verdict::Malformed, "{bad}");
        }
    }

    #[test]
    fn another_valid_completion_is_correct() {
        // The four blanks form a rectangle over two boxes whose digits can be
        // swapped: two solutions, and the stored one is only one of them.
        let t = task("1234/3412/.1.3/.3.1", "1234/3412/2143/4321");
        assert_eq!(
            Sudoku.verify(&t, "1234/3412/2143/4321").unwrap(),
            Verdict::Correct
        );
        assert_eq!(
            Sudoku.verify(&t, "1234/3412/4123/2341").unwrap(),
            Verdict::Correct
        );
        assert_eq!(
            Sudoku.verify(&t, "1234/3412/4123/2314").unwrap(),
            Verdict::Wrong
        );
        // A valid grid that overwrites givens is still wrong.
        assert_eq!(
            Sudoku.verify(&t, "2143/4321/1234/3412").unwrap(),
            Verdict::Wrong
        );
    }

    #[test]
    fn repairs_change_only_the_named_cell() {
        let t = task("12.4/3..2/.1.3/4..1", "1234/3412/2143/4321");
        let repair = |a: &str| Sudoku.repair(&t, a, FeedbackLevel::Explanation).unwrap();
        // The explanation names row 1, column 3.
        assert_eq!(
            repair("1244/3412/2143/4321").as_deref(),
            Some("1234/3412/2143/4321")
        );
        // A changed given is put back.
        assert_eq!(
            repair("2234/3412/2143/4321").as_deref(),
            Some("1234/3412/2143/4321")
        );
        // Two blanks of row 2 swapped: the named cell is fixed, the other
        // stays wrong for the next critique.
        let once = repair("1234/3142/2143/4321").unwrap();
        assert_eq!(once, "1234/3442/2143/4321");
        assert_eq!(Sudoku.verify(&t, &once).unwrap(), Verdict::Wrong);
        assert_eq!(repair(&once).as_deref(), Some("1234/3412/2143/4321"));
        assert_eq!(repair("1234/3412/2143/4321"), None);
        assert_eq!(repair("garbage"), None);
        for seed in 0..300u64 {
            let t = Sudoku.generate(seed, 1 + (seed % 12) as u32);
            let wrong = Sudoku.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
            let fixed = Sudoku
                .repair(&t, &wrong, FeedbackLevel::Explanation)
                .unwrap()
                .unwrap();
            let differs = wrong
                .chars()
                .zip(fixed.chars())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differs, 1, "{wrong} -> {fixed}");
        }
    }

    #[test]
    fn masks_flag_the_cells_to_change_and_the_repair_changes_them() {
        let t = task("12.4/3..2/.1.3/4..1", "1234/3412/2143/4321");
        let mask = |attempt: &str| Sudoku.feedback(&t, attempt, FeedbackLevel::Mask).unwrap();
        // A slip in a blank, an overwritten given, two blanks swapped.
        assert_eq!(
            mask("1244/3412/2143/4321"),
            "Wrong cells: ..!./..../..../...."
        );
        assert_eq!(
            mask("2234/3412/2143/4321"),
            "Wrong cells: !.../..../..../...."
        );
        assert_eq!(
            mask("1234/3142/2143/4321"),
            "Wrong cells: ..../.!!./..../...."
        );
        assert_eq!(mask("1234/3412/2143/4321"), "Correct.");
        assert_eq!(mask("12.4/3..2/.1.3/4..1"), MALFORMED_MESSAGE);
        // With several completions the mask is taken against the nearest.
        let open = task("..../..../..../....", "1234/3412/2143/4321");
        let grid = "1234/3412/2143/4312";
        let message = Sudoku.feedback(&open, grid, FeedbackLevel::Mask).unwrap();
        assert_eq!(message, "Wrong cells: ..../..../..../..!!");
        for seed in 0..300u64 {
            let t = Sudoku.generate(seed, 1 + (seed % 12) as u32);
            let wrong = Sudoku.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
            let message = Sudoku.feedback(&t, &wrong, FeedbackLevel::Mask).unwrap();
            let marks: Vec<char> = message
                .trim_start_matches("Wrong cells: ")
                .chars()
                .filter(|&c| c != '/')
                .collect();
            let fixed = Sudoku
                .repair(&t, &wrong, FeedbackLevel::Mask)
                .unwrap()
                .unwrap();
            assert!(
                Sudoku.verify(&t, &fixed).unwrap().is_correct(),
                "{wrong} -> {fixed}"
            );
            let (before, after) = (parse_answer(&wrong).unwrap(), parse_answer(&fixed).unwrap());
            for i in 0..16 {
                assert_eq!(
                    marks[i] == '!',
                    before[i] != after[i],
                    "{wrong} {message} {fixed}"
                );
            }
        }
    }

    #[test]
    fn feedback_levels_on_worked_examples() {
        let t = task("12.4/3..2/.1.3/4..1", "1234/3412/2143/4321");
        let say = |attempt: &str, level| Sudoku.feedback(&t, attempt, level).unwrap();
        use FeedbackLevel::{Explanation, Location, Retry};

        assert_eq!(say("1234/3412/2143/4321", Explanation), "Correct.");
        assert_eq!(say("1244/3412/2143/4321", Retry), "Try again.");
        assert_eq!(
            say("1244/3412/2143/4321", FeedbackLevel::Verdict),
            "Incorrect."
        );

        // Overwrote the given 1 (and thereby also broke row 1).
        assert_eq!(
            say("2234/3412/2143/4321", Location),
            "The given cell in row 1, column 1 was changed."
        );
        assert_eq!(
            say("2234/3412/2143/4321", Explanation),
            "You changed the given 1 in row 1, column 1."
        );
        // A slip in a blank.
        assert_eq!(say("1244/3412/2143/4321", Location), "Row 1 breaks a rule.");
        assert_eq!(
            say("1244/3412/2143/4321", Explanation),
            "Row 1 contains the digit 4 twice; the 4 in row 1, column 3 must change."
        );
        // Two blanks of row 2 swapped: the row is fine, column 2 is not.
        assert_eq!(
            say("1234/3142/2143/4321", Location),
            "Column 2 breaks a rule."
        );
        assert_eq!(
            say("1234/3142/2143/4321", Explanation),
            "Column 2 contains the digit 1 twice; the 1 in row 2, column 2 must change."
        );
        // Malformed answers get the format reminder at every informative level.
        for level in [FeedbackLevel::Verdict, Location, Explanation] {
            assert_eq!(say("12.4/3..2/.1.3/4..1", level), MALFORMED_MESSAGE);
        }
        assert_eq!(say("12.4/3..2/.1.3/4..1", Retry), "Try again.");

        // A Latin square whose rows and columns are fine but whose boxes are not.
        let open = task("..../..../..../....", "1234/3412/2143/4321");
        let say = |attempt: &str, level| Sudoku.feedback(&open, attempt, level).unwrap();
        assert_eq!(
            say("1234/2341/3412/4123", Location),
            "The top-left box breaks a rule."
        );
        assert_eq!(
            say("1234/2341/3412/4123", Explanation),
            "The top-left box contains the digit 2 twice; the 2 in row 2, column 1 must change."
        );
        assert_eq!(
            say("1111/2341/3412/4123", Explanation),
            "Row 1 contains the digit 1 more than once; the 1 in row 1, column 2 must change."
        );
    }

    #[test]
    fn leak_rule_catches_the_grid_and_unsolved_rows() {
        let t = task("12.4/3412/2143/4321", "1234/3412/2143/4321");
        assert!(
            Sudoku
                .leak_rule(&t, "It is 1234/3412/2143/4321.")
                .unwrap()
                .is_some()
        );
        assert!(
            Sudoku
                .leak_rule(&t, "It is 1234 3412 2143 4321.")
                .unwrap()
                .is_some()
        );
        assert!(
            Sudoku
                .leak_rule(&t, "Row 1 should read 12 34.")
                .unwrap()
                .is_some()
        );
        // Row 2 has no blank, so restating it gives nothing away.
        assert!(Sudoku.leak_rule(&t, "Row 2 is 3412.").unwrap().is_none());
        assert!(
            Sudoku
                .leak_rule(&t, "Row 1 contains the digit 4 twice.")
                .unwrap()
                .is_none()
        );
    }

    /// What a feedback message claims, read back from its text.
    fn numbers(message: &str) -> Vec<usize> {
        message
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    /// Checks a Location or Explanation message against the grids directly,
    /// without going through `first_problem`.
    fn assert_feedback_is_true(prompt: &str, attempt: &str, message: &str, level: FeedbackLevel) {
        let cells = |text: &str| -> Vec<u8> {
            text.chars()
                .filter(|&c| c != '/')
                .map(|c| c.to_digit(10).unwrap_or(0) as u8)
                .collect()
        };
        let (givens, grid) = (cells(prompt), cells(attempt));
        let at = |r: usize, c: usize| grid[4 * (r - 1) + (c - 1)];
        let context = format!("{prompt} {attempt} {message}");
        let no_given_changed = (0..16).all(|i| givens[i] == 0 || givens[i] == grid[i]);
        let unit_digits: Option<Vec<u8>> = if let Some(rest) = message.strip_prefix("Row ") {
            let r = numbers(rest)[0];
            Some((1..=4).map(|c| at(r, c)).collect())
        } else if let Some(rest) = message.strip_prefix("Column ") {
            let c = numbers(rest)[0];
            Some((1..=4).map(|r| at(r, c)).collect())
        } else if message.contains(" box ") {
            let b = BOX_NAMES.iter().position(|n| message.contains(n)).unwrap();
            let (r0, c0) = (1 + 2 * (b / 2), 1 + 2 * (b % 2));
            Some(vec![
                at(r0, c0),
                at(r0, c0 + 1),
                at(r0 + 1, c0),
                at(r0 + 1, c0 + 1),
            ])
        } else {
            None
        };
        match unit_digits {
            Some(digits) => {
                assert!(no_given_changed, "{context}");
                let mut sorted = digits.clone();
                sorted.sort();
                assert_ne!(sorted, [1, 2, 3, 4], "{context}");
                if level == FeedbackLevel::Explanation {
                    // "<unit> contains the digit d twice; the d in row r,
                    // column c must change." names a non-given cell of the
                    // unit holding d.
                    let (claim, named) = message.split_once("; ").expect("two clauses");
                    let d = *numbers(claim).last().unwrap() as u8;
                    let count = digits.iter().filter(|&&x| x == d).count();
                    if claim.ends_with(" twice") {
                        assert_eq!(count, 2, "{context}");
                    } else {
                        assert!(claim.ends_with(" more than once"), "{context}");
                        assert!(count > 2, "{context}");
                    }
                    let ns = numbers(named);
                    assert_eq!(ns[0] as u8, d, "{context}");
                    let (r, c) = (ns[1], ns[2]);
                    assert_eq!(at(r, c), d, "{context}");
                    assert_eq!(givens[4 * (r - 1) + (c - 1)], 0, "{context}");
                }
            }
            None => {
                let ns = numbers(message);
                let (given, r, c) = if level == FeedbackLevel::Explanation {
                    assert!(message.starts_with("You changed the given "), "{context}");
                    (Some(ns[0] as u8), ns[1], ns[2])
                } else {
                    assert!(message.starts_with("The given cell in row "), "{context}");
                    (None, ns[0], ns[1])
                };
                let i = 4 * (r - 1) + (c - 1);
                assert_ne!(givens[i], 0, "{context}");
                assert_ne!(givens[i], grid[i], "{context}");
                assert!(
                    (0..i).all(|j| givens[j] == 0 || givens[j] == grid[j]),
                    "{context}"
                );
                if let Some(g) = given {
                    assert_eq!(g, givens[i], "{context}");
                }
            }
        }
    }

    #[test]
    fn feedback_is_true() {
        for seed in 0..2_000u64 {
            let t = Sudoku.generate(seed, 1 + (seed % 12) as u32);
            let mut rng = Rng::new(seed);
            for _ in 0..3 {
                let wrong = Sudoku.wrong_attempt(&t, &mut rng).unwrap();
                assert_eq!(Sudoku.verify(&t, &wrong).unwrap(), Verdict::Wrong);
                for level in [FeedbackLevel::Location, FeedbackLevel::Explanation] {
                    let message = Sudoku.feedback(&t, &wrong, level).unwrap();
                    assert_feedback_is_true(&t.prompt, &wrong, &message, level);
                }
            }
        }
    }

    #[test]
    fn wrong_attempts_cover_every_kind_of_mistake() {
        let mut kinds = HashSet::new();
        for seed in 0..300u64 {
            let t = Sudoku.generate(seed, 6);
            let wrong = Sudoku.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
            let message = Sudoku
                .feedback(&t, &wrong, FeedbackLevel::Location)
                .unwrap();
            let kind = ["given", "Row", "Column", "box"]
                .into_iter()
                .find(|k| message.contains(k));
            kinds.insert(kind.unwrap());
        }
        for kind in ["given", "Row", "Column"] {
            assert!(kinds.contains(kind), "{kinds:?}");
        }
    }

    #[test]
    fn leak_rate_is_zero() {
        for i in 0..10_000u64 {
            let t = Sudoku.generate(i, 1 + (i % 12) as u32);
            let wrong = Sudoku.wrong_attempt(&t, &mut Rng::new(i ^ 0x5eed)).unwrap();
            for attempt in [wrong.as_str(), "12.4/3..2/.1.3/4..1"] {
                for level in FeedbackLevel::ALL {
                    let message = Sudoku.feedback(&t, attempt, level).unwrap();
                    assert_eq!(
                        leak::check(&t, &message).unwrap(),
                        None,
                        "{t:?} {attempt} {message}"
                    );
                }
            }
        }
    }

    #[test]
    fn shared_domain_checks() {
        testkit::reference_solutions_verify(&Sudoku, 30);
        testkit::garbage_never_panics(&Sudoku);
    }

    #[test]
    fn critiques_are_read_against_the_grid_and_the_givens() {
        let (checked, refuted) = testkit::teacher_critiques_read_true(&Sudoku, 30);
        assert!(checked > 300 && refuted > 30, "{checked} {refuted}");
        // Givens: a 1 in row 1, column 1 and in row 4, column 4.
        let t = task("1.../..../..../...1", "1234/3412/2143/4321");
        let read = |attempt: &str, message: &str| {
            Sudoku.read_critique(&t, attempt, message).unwrap().unwrap()
        };
        let repeat = "Row 1 contains the digit 2 twice; the 2 in row 1, column 3 must change.";
        assert_eq!(
            read("1224/3412/2143/4321", repeat),
            CritiqueReading::claim(true)
        );
        // The other 2 of the pair is as true a claim: which one must change
        // needs the solution and is not judged.
        assert_eq!(
            read(
                "1224/3412/2143/4321",
                "Row 1 contains the digit 2 twice; the 2 in row 1, column 2 must change."
            ),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read("1234/3412/2143/4321", repeat),
            CritiqueReading::claim(false)
        );
        assert_eq!(
            read("1222/3412/2143/4321", repeat),
            CritiqueReading::claim(false)
        );
        assert_eq!(
            read(
                "1222/3412/2143/4321",
                "Row 1 contains the digit 2 more than once; the 2 in row 1, column 4 must change."
            ),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read(
                "1224/3412/2143/4321",
                "Row 1 contains the digit 2 twice; the 3 in row 1, column 3 must change."
            ),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read("1224/3412/2143/4321", "Row 1 breaks a rule."),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read("1224/3412/2143/4321", "Row 2 breaks a rule."),
            CritiqueReading::claim(false)
        );
        let given = "You changed the given 1 in row 4, column 4.";
        assert_eq!(
            read("1234/3412/2143/4322", given),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read("1224/3412/2143/4321", given),
            CritiqueReading::claim(false)
        );
        assert_eq!(
            read(
                "1234/3412/2143/4322",
                "You changed the given 3 in row 4, column 4."
            ),
            CritiqueReading::claim(false)
        );
        assert_eq!(
            read(
                "1234/3412/2143/4322",
                "The given cell in row 4, column 4 was changed."
            ),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read(
                "1234/3412/2143/4322",
                "You changed the given 1 in row 5, column 4."
            ),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read(
                "1224/3412/2143/4321",
                repeat.replace("twice", "thrice").as_str()
            ),
            CritiqueReading::GARBLED
        );
        assert_eq!(read("1224/34", repeat), CritiqueReading::claim(false));
        assert_eq!(
            read("1224/34", MALFORMED_MESSAGE),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read("1224/3412/2143/4321", "Wrong cells: ..../..!./..../...."),
            CritiqueReading::claim(false)
        );
        assert_eq!(
            read("1224/3412/2143/4321", "Wrong cells: ..../..!./..../..."),
            CritiqueReading::GARBLED
        );
    }

    /// Verify and feedback are total on untrusted text, and what they say is
    /// consistent and leak-free.
    fn judge(seed: u64, difficulty: u32, attempt: &str) -> std::result::Result<(), TestCaseError> {
        let t = Sudoku.generate(seed, difficulty);
        let verdict = Sudoku.verify(&t, attempt);
        prop_assert!(verdict.is_ok());
        for level in FeedbackLevel::ALL {
            let message = Sudoku.feedback(&t, attempt, level);
            prop_assert!(message.is_ok());
            let message = message.unwrap();
            prop_assert!(!message.is_empty());
            prop_assert_eq!(
                message == CORRECT_MESSAGE,
                verdict.as_ref().unwrap().is_correct()
            );
            prop_assert_eq!(leak::check(&t, &message).unwrap(), None);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn any_string_is_judged(seed in 0u64..500, d in 1u32..=12, s in any::<String>()) {
            judge(seed, d, &s)?;
        }

        #[test]
        fn any_printable_string_is_judged(seed in 0u64..500, d in 1u32..=12, s in "\\PC*") {
            judge(seed, d, &s)?;
        }

        #[test]
        fn grid_shaped_strings_are_judged(seed in 0u64..500, d in 1u32..=12, s in "[1-4/. ]{0,40}") {
            judge(seed, d, &s)?;
        }

        #[test]
        fn near_misses_are_judged(
            seed in 0u64..500,
            d in 1u32..=12,
            edit in 0u8..3,
            at in any::<prop::sample::Index>(),
            c in prop_oneof![prop::char::range('0', '5'), Just('/'), Just('.'), any::<char>()],
        ) {
            let attempt = testkit::near_miss(&Sudoku.generate(seed, d).solution, edit, at, c);
            judge(seed, d, &attempt)?;
        }
    }
}
