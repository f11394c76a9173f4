//! `maze` (the paper's navigation setting): walk from `S` to `G` through an
//! n×n grid of open cells `.` and walls `#`, shown as rows joined by `/`:
//! `S.#./..#./#.../..#G` → `DRDRRD`, one letter per move (U, D, L, R).
//!
//! Difficulty `n` (4..=8) is the side of the grid. About 30% of cells are
//! walls; start and goal are at least n apart (Manhattan) and the shortest
//! path has at least n-1 moves. The reference solution is the shortest path
//! breadth-first search finds trying U, D, L, R in that order, but every path
//! that stays on open cells and stops on `G` is correct.
//! Feedback levels: verdict; the first move that hits a wall or leaves the
//! grid, or that the path ends away from the goal; the same with the move's
//! letter and where it happened, or how far the goal is from where the path
//! ended; mask (`Moves: ..!`, one mark per move up to the failing one, or
//! every move marked kept and the goal's direction). The grid and the goal
//! are in the prompt, so positions tell the student nothing the teacher
//! alone knows; the moves still to make are never named.
//!
//! Solutions are strings over {u, d, l, r} once normalised, so the generic leak
//! check would fire on any word holding three such letters in a row ("could",
//! "during", "failure"). Every message here is worded to avoid such runs.

use std::collections::VecDeque;

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

pub struct Maze;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    /// Grid rows of `.` (open) and `#` (wall); start and goal are open cells.
    rows: Vec<String>,
    /// (row, column) of `S`, from 0.
    start: (usize, usize),
    /// (row, column) of `G`, from 0.
    goal: (usize, usize),
}

/// Smallest and largest side. Below 4 there is no room for a path worth
/// finding; above 8 the prompt outgrows a small student's context.
const SIDES: (u32, u32) = (4, 8);

const WALL_DENSITY: f64 = 0.3;

/// Deliberately avoids "the letters U, D, L and R", which normalises to a run
/// `udl` that the generic leak check would match against a path.
const MALFORMED_MESSAGE: &str =
    "Answer with moves, one letter each: U for up, D for down, L for left, R for right.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Up,
    Down,
    Left,
    Right,
}

impl Move {
    /// Also the order breadth-first search tries, which fixes the reference path.
    const ALL: [Move; 4] = [Move::Up, Move::Down, Move::Left, Move::Right];

    fn letter(self) -> char {
        match self {
            Move::Up => 'U',
            Move::Down => 'D',
            Move::Left => 'L',
            Move::Right => 'R',
        }
    }

    fn from_letter(c: char) -> Option<Move> {
        Move::ALL.into_iter().find(|m| m.letter() == c)
    }

    fn opposite(self) -> Move {
        match self {
            Move::Up => Move::Down,
            Move::Down => Move::Up,
            Move::Left => Move::Right,
            Move::Right => Move::Left,
        }
    }
}

fn format_moves(moves: &[Move]) -> String {
    moves.iter().map(|m| m.letter()).collect()
}

/// Reads an answer: whitespace and commas are ignored, letters may be in
/// either case, and at most `max_moves` moves are accepted so that a walk
/// never runs longer than the grid warrants.
fn parse_moves(text: &str, max_moves: usize) -> Option<Vec<Move>> {
    let mut moves = Vec::new();
    for c in bounded(text)?
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
    {
        moves.push(Move::from_letter(c.to_ascii_uppercase())?);
        if moves.len() > max_moves {
            return None;
        }
    }
    (!moves.is_empty()).then_some(moves)
}

type Cell = (usize, usize);

/// Where a walk goes wrong, if it does. Moves are numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Reaches,
    HitsWall { index: usize, mv: Move, wall: Cell },
    LeavesGrid { index: usize, mv: Move, from: Cell },
    EndsAway { at: Cell },
}

#[derive(Debug, Clone)]
struct Layout {
    side: usize,
    walls: Vec<bool>,
    start: Cell,
    goal: Cell,
}

impl Layout {
    fn from_meta(meta: &Meta) -> Option<Layout> {
        let side = meta.rows.len();
        let mut walls = Vec::with_capacity(side * side);
        for row in &meta.rows {
            if row.chars().count() != side {
                return None;
            }
            for c in row.chars() {
                walls.push(match c {
                    '.' => false,
                    '#' => true,
                    _ => return None,
                });
            }
        }
        let layout = Layout {
            side,
            walls,
            start: meta.start,
            goal: meta.goal,
        };
        let open = |(r, c): Cell| r < side && c < side && !layout.walls[r * side + c];
        (open(meta.start) && open(meta.goal)).then_some(layout)
    }

    fn is_wall(&self, (r, c): Cell) -> bool {
        self.walls[r * self.side + c]
    }

    /// The neighbouring cell in direction `mv`, or `None` off the grid.
    fn step(&self, (r, c): Cell, mv: Move) -> Option<Cell> {
        let next = match mv {
            Move::Up => (r.checked_sub(1)?, c),
            Move::Down => (r + 1, c),
            Move::Left => (r, c.checked_sub(1)?),
            Move::Right => (r, c + 1),
        };
        (next.0 < self.side && next.1 < self.side).then_some(next)
    }

    fn walk(&self, moves: &[Move]) -> Outcome {
        let mut at = self.start;
        for (index, &mv) in moves.iter().enumerate() {
            match self.step(at, mv) {
                None => {
                    return Outcome::LeavesGrid {
                        index,
                        mv,
                        from: at,
                    };
                }
                Some(next) if self.is_wall(next) => {
                    return Outcome::HitsWall {
                        index,
                        mv,
                        wall: next,
                    };
                }
                Some(next) => at = next,
            }
        }
        if at == self.goal {
            Outcome::Reaches
        } else {
            Outcome::EndsAway { at }
        }
    }

    fn shortest_path(&self) -> Option<Vec<Move>> {
        self.shortest_path_from(self.start)
    }

    /// Breadth-first search from `from` to the goal.
    fn shortest_path_from(&self, from: Cell) -> Option<Vec<Move>> {
        let index = |(r, c): Cell| r * self.side + c;
        let mut came_from: Vec<Option<(Cell, Move)>> = vec![None; self.walls.len()];
        let mut seen = vec![false; self.walls.len()];
        let mut queue = VecDeque::from([from]);
        seen[index(from)] = true;
        while let Some(at) = queue.pop_front() {
            if at == self.goal {
                let mut path = Vec::new();
                let mut cell = at;
                while let Some((previous, mv)) = came_from[index(cell)] {
                    path.push(mv);
                    cell = previous;
                }
                path.reverse();
                return Some(path);
            }
            for mv in Move::ALL {
                if let Some(next) = self.step(at, mv)
                    && !self.is_wall(next)
                    && !seen[index(next)]
                {
                    seen[index(next)] = true;
                    came_from[index(next)] = Some((at, mv));
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Longest answer worth simulating: enough to visit every cell from every
    /// direction.
    fn max_moves(&self) -> usize {
        4 * self.side * self.side
    }

    /// The grid as shown to the student.
    fn prompt(&self) -> String {
        (0..self.side)
            .map(|r| {
                (0..self.side)
                    .map(|c| match (r, c) {
                        cell if cell == self.start => 'S',
                        cell if cell == self.goal => 'G',
                        cell if self.is_wall(cell) => '#',
                        _ => '.',
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn meta(&self) -> Meta {
        let rows = self
            .walls
            .chunks(self.side)
            .map(|row| row.iter().map(|&w| if w { '#' } else { '.' }).collect())
            .collect();
        Meta {
            rows,
            start: self.start,
            goal: self.goal,
        }
    }
}

fn manhattan(a: Cell, b: Cell) -> usize {
    a.0.abs_diff(b.0) + a.1.abs_diff(b.1)
}

/// The `Mask`-level critique: one symbol per move up to the first that
/// fails (`.` kept, `!` the failing one), or every move kept and where the
/// path ends when it ends away from the goal.
fn mask_message(moves: &[Move], outcome: Outcome, goal: Cell) -> String {
    match outcome {
        Outcome::Reaches => WRONG_MESSAGE.to_string(),
        Outcome::HitsWall { index, .. } | Outcome::LeavesGrid { index, .. } => {
            format!("Moves: {}", render_mask((0..=index).map(|i| i == index)))
        }
        Outcome::EndsAway { at } => format!(
            "Moves: {} The goal is {}.",
            render_mask(moves.iter().map(|_| false)),
            direction(at, goal)
        ),
    }
}

/// "2 rows down and 1 column left": where `to` lies as seen from `from`.
fn direction(from: Cell, to: Cell) -> String {
    let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if to.0 != from.0 {
        let way = if to.0 > from.0 { "down" } else { "up" };
        parts.push(format!("{} {way}", count(to.0.abs_diff(from.0), "row")));
    }
    if to.1 != from.1 {
        let way = if to.1 > from.1 { "right" } else { "left" };
        parts.push(format!("{} {way}", count(to.1.abs_diff(from.1), "column")));
    }
    parts.join(" and ")
}

/// The feedback level whose form `message` has (`Move 2 (R) hits a wall at
/// row 1, column 3.` is `Explanation`), `None` for none of the maze
/// teacher's own forms.
fn critique_level(message: &str) -> Option<FeedbackLevel> {
    if message == "The path ends away from the goal." {
        return Some(FeedbackLevel::Location);
    }
    if let Some(rest) = message.strip_prefix("Move ") {
        let (k, rest) = rest.split_once(' ')?;
        number(k)?;
        if rest == "hits a wall." || rest == "leaves the grid." {
            return Some(FeedbackLevel::Location);
        }
        let (letter, rest) = rest.strip_prefix('(')?.split_once(") ")?;
        let mut letters = letter.chars();
        Move::from_letter(letters.next()?)?;
        let place = rest
            .strip_prefix("hits a wall at ")
            .or_else(|| rest.strip_prefix("leaves the grid from "))?;
        (letters.next().is_none() && row_column(place.strip_suffix('.')?).is_some())
            .then_some(FeedbackLevel::Explanation)
    } else if let Some(rest) = message.strip_prefix("The path ends at ") {
        let (place, way) = rest.split_once("; the goal is ")?;
        (row_column(place).is_some() && is_direction(way.strip_suffix('.')?))
            .then_some(FeedbackLevel::Explanation)
    } else if let Some(rest) = message.strip_prefix("Moves: ") {
        let ok = match rest.split_once(" The goal is ") {
            Some((dots, way)) => {
                is_mask(dots) && !dots.contains('!') && is_direction(way.strip_suffix('.')?)
            }
            // One `!`, under the move that fails, and the walk stops there.
            None => is_mask(rest) && rest.find('!') == Some(rest.len() - 1),
        };
        ok.then_some(FeedbackLevel::Mask)
    } else {
        None
    }
}

/// Whether `text` is a [`direction`]: `2 rows down`, `1 column left`, or
/// both joined by ` and `, rows first.
fn is_direction(text: &str) -> bool {
    let part = |p: &str, axis: &str, ways: [&str; 2]| {
        let words: Vec<&str> = p.split(' ').collect();
        let [n, noun, way] = words[..] else {
            return false;
        };
        let Some(n) = number(n) else {
            return false;
        };
        let plural = if n == 1 { "" } else { "s" };
        noun == format!("{axis}{plural}") && ways.contains(&way)
    };
    let rows = |p: &str| part(p, "row", ["up", "down"]);
    let columns = |p: &str| part(p, "column", ["left", "right"]);
    match text.split_once(" and ") {
        Some((r, c)) => rows(r) && columns(c),
        None => rows(text) || columns(text),
    }
}

impl Maze {
    fn layout(&self, task: &Task) -> Result<Layout> {
        let meta: Meta = task.meta()?;
        Layout::from_meta(&meta).ok_or_else(|| DataError::CorruptTask {
            task_id: task.task_id.clone(),
            reason: "maze rows are not a square grid of `.` and `#` with open start and goal"
                .into(),
        })
    }
}

impl Domain for Maze {
    fn kind(&self) -> DomainKind {
        DomainKind::Maze
    }

    fn difficulty_range(&self) -> (u32, u32) {
        SIDES
    }

    fn generate(&self, seed: u64, difficulty: u32) -> Task {
        let difficulty = difficulty.clamp(SIDES.0, SIDES.1);
        let side = difficulty as usize;
        for attempt in 0u64.. {
            let mut rng = Rng::new(mix_seed(&[seed, difficulty as u64, attempt]));
            let walls: Vec<bool> = (0..side * side).map(|_| rng.chance(WALL_DENSITY)).collect();
            let open: Vec<Cell> = (0..side * side)
                .filter(|&i| !walls[i])
                .map(|i| (i / side, i % side))
                .collect();
            if open.is_empty() {
                continue;
            }
            let start = *rng.choose(&open);
            let far: Vec<Cell> = open
                .iter()
                .copied()
                .filter(|&g| manhattan(start, g) >= side)
                .collect();
            if far.is_empty() {
                continue;
            }
            let goal = *rng.choose(&far);
            let layout = Layout {
                side,
                walls,
                start,
                goal,
            };
            match layout.shortest_path() {
                Some(path) if path.len() + 1 >= side => {
                    let metadata = serde_json::to_string(&layout.meta()).expect("serialisable");
                    return Task::new(
                        DomainKind::Maze,
                        difficulty,
                        seed,
                        layout.prompt(),
                        format_moves(&path),
                        metadata,
                    );
                }
                _ => continue,
            }
        }
        unreachable!("an unbounded loop either returns or runs forever")
    }

    fn verify(&self, task: &Task, attempt: &str) -> Result<Verdict> {
        let layout = self.layout(task)?;
        Ok(match parse_moves(attempt, layout.max_moves()) {
            None => Verdict::Malformed,
            Some(moves) if layout.walk(&moves) == Outcome::Reaches => Verdict::Correct,
            Some(_) => Verdict::Wrong,
        })
    }

    fn feedback(&self, task: &Task, attempt: &str, level: FeedbackLevel) -> Result<String> {
        let verdict = self.verify(task, attempt)?;
        if let Some(message) = common_feedback(verdict, level) {
            return Ok(message);
        }
        let layout = self.layout(task)?;
        let Some(moves) = parse_moves(attempt, layout.max_moves()) else {
            return Ok(MALFORMED_MESSAGE.to_string());
        };
        let outcome = layout.walk(&moves);
        if level == FeedbackLevel::Mask {
            return Ok(mask_message(&moves, outcome, layout.goal));
        }
        let explain = level == FeedbackLevel::Explanation;
        Ok(match outcome {
            Outcome::Reaches => WRONG_MESSAGE.to_string(),
            Outcome::HitsWall { index, mv, wall } => {
                let k = index + 1;
                if explain {
                    let (r, c) = (wall.0 + 1, wall.1 + 1);
                    format!(
                        "Move {k} ({}) hits a wall at row {r}, column {c}.",
                        mv.letter()
                    )
                } else {
                    format!("Move {k} hits a wall.")
                }
            }
            Outcome::LeavesGrid { index, mv, from } => {
                let k = index + 1;
                if explain {
                    let (r, c) = (from.0 + 1, from.1 + 1);
                    format!(
                        "Move {k} ({}) leaves the grid from row {r}, column {c}.",
                        mv.letter()
                    )
                } else {
                    format!("Move {k} leaves the grid.")
                }
            }
            Outcome::EndsAway { at } => {
                if explain {
                    let (r, c) = (at.0 + 1, at.1 + 1);
                    let way = direction(at, layout.goal);
                    format!("The path ends at row {r}, column {c}; the goal is {way}.")
                } else {
                    "The path ends away from the goal.".to_string()
                }
            }
        })
    }

    fn wrong_attempt(&self, task: &Task, rng: &mut Rng) -> Result<String> {
        let layout = self.layout(task)?;
        let path = parse_moves(&task.solution, layout.max_moves()).unwrap_or_default();
        for _ in 0..32 {
            let mut moves = path.clone();
            let len = moves.len();
            match rng.below(6) {
                // A forgotten move.
                0 if len > 1 => {
                    moves.remove(rng.below(len as u64) as usize);
                }
                // One turn taken the wrong way.
                1 if len > 0 => {
                    let i = rng.below(len as u64) as usize;
                    let others: Vec<Move> =
                        Move::ALL.into_iter().filter(|&m| m != moves[i]).collect();
                    moves[i] = *rng.choose(&others);
                }
                // Two moves in the wrong order.
                2 if len > 1 => {
                    let i = rng.below(len as u64 - 1) as usize;
                    moves.swap(i, i + 1);
                }
                // Stopping one move short.
                3 if len > 1 => {
                    moves.pop();
                }
                // A detour: one extra step somewhere along the way.
                4 => {
                    let i = rng.below(len as u64 + 1) as usize;
                    moves.insert(i, *rng.choose(&Move::ALL));
                }
                // Walking on past the goal.
                5 => moves.push(*rng.choose(&Move::ALL)),
                _ => continue,
            }
            if layout.walk(&moves) != Outcome::Reaches {
                return Ok(format_moves(&moves));
            }
        }
        // One step back off the goal changes the path's parity, and every path
        // from start to goal has the same parity: this never reaches the goal.
        let mut moves = path;
        moves.push(moves.last().map_or(Move::Up, |m| m.opposite()));
        Ok(format_moves(&moves))
    }

    /// Keeps the moves before the first one that fails (all of them when
    /// the path ends away from the goal) and searches on from where they
    /// lead: the answer a student gives who acts on the critique. The same
    /// at every located level: a mask marks the same failing move.
    fn repair(&self, task: &Task, attempt: &str, _level: FeedbackLevel) -> Result<Option<String>> {
        let layout = self.layout(task)?;
        let Some(moves) = parse_moves(attempt, layout.max_moves()) else {
            return Ok(None);
        };
        let (kept, from) = match layout.walk(&moves) {
            Outcome::Reaches => return Ok(None),
            Outcome::HitsWall { index, .. } | Outcome::LeavesGrid { index, .. } => {
                let kept = &moves[..index];
                let mut at = layout.start;
                for &mv in kept {
                    at = layout
                        .step(at, mv)
                        .expect("a prefix before the failing move stays on the grid");
                }
                (kept.to_vec(), at)
            }
            Outcome::EndsAway { at } => (moves.clone(), at),
        };
        let Some(rest) = layout.shortest_path_from(from) else {
            return Ok(None);
        };
        let mut repaired = kept;
        repaired.extend(rest);
        Ok(
            (repaired.len() <= layout.max_moves() && layout.walk(&repaired) == Outcome::Reaches)
                .then(|| format_moves(&repaired)),
        )
    }

    /// Every maze critique is a fact about the walk through the maze the
    /// prompt shows (where it first fails, where it ends, which way the
    /// goal lies), so a well-formed one holds exactly when it is what the
    /// teacher says at the level of its form.
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
        Ok(Some(match critique_level(message) {
            Some(level) => CritiqueReading::claim(self.feedback(task, attempt, level)? == message),
            None => CritiqueReading::GARBLED,
        }))
    }

    fn leak_rule(&self, task: &Task, message: &str) -> Result<Option<String>> {
        let solution = task.solution.as_str();
        let mut words = message.split(|c: char| !c.is_alphanumeric());
        if !solution.is_empty() && words.any(|word| word == solution) {
            return Ok(Some("states the path".to_string()));
        }
        let part_of_path = message
            .split(|c: char| !matches!(c, 'U' | 'D' | 'L' | 'R'))
            .flat_map(|run| run.as_bytes().windows(3))
            .any(|window| solution.as_bytes().windows(3).any(|w| w == window));
        Ok(part_of_path.then(|| "states part of the path".to_string()))
    }

    /// Withholds the goal's row (or, when start and goal share a row, the
    /// goal's column): the prompt shows it as `?` cells and the teacher
    /// reveals it as `row 3: .#G.` (`column 3:` reads top to bottom).
    /// Without it the goal is nowhere on the map, so it is essential.
    fn shard(&self, task: &Task) -> Result<Option<Sharding>> {
        let layout = self.layout(task)?;
        let n = layout.side;
        let mut grid: Vec<Vec<char>> = layout
            .prompt()
            .split('/')
            .map(|r| r.chars().collect())
            .collect();
        let (r, c) = layout.goal;
        let (name, line) = if r != layout.start.0 {
            let line: String = grid[r].iter().collect();
            grid[r] = vec!['?'; n];
            (format!("row {}", r + 1), line)
        } else {
            let line: String = (0..n).map(|row| grid[row][c]).collect();
            (0..n).for_each(|row| grid[row][c] = '?');
            (format!("column {}", c + 1), line)
        };
        let reveal = format!("{name}: {line}");
        if self.leak(task, &reveal)?.is_some() {
            return Ok(None);
        }
        let prompt = grid
            .iter()
            .map(|r| r.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("/");
        Ok(Some(Sharding {
            prompt,
            shards: vec![Shard {
                name,
                reveal,
                essential: true,
            }],
        }))
    }
}

/// What the maze teacher's location-level critique of a wrong path points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Critique {
    /// The move at this index (from 0; the message says "Move {index + 1}")
    /// hits a wall or leaves the grid.
    Move(usize),
    /// Every move is legal but the path stops away from the goal: the
    /// message names only where it ends.
    End,
}

/// An attempt as the verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The moves, one upper-case letter each from `UDLR`, whatever case and
    /// separators the attempt used.
    pub moves: String,
    /// What the teacher's critique points at; `None` when the path reaches
    /// the goal.
    pub critique: Option<Critique>,
}

/// Reads `attempt` exactly as [`Maze::verify`] and [`Maze::feedback`] do.
/// `None` when the verifier calls it malformed or the task is corrupt.
/// Total on untrusted text.
pub fn read(task: &Task, attempt: &str) -> Option<Reading> {
    let layout = Maze.layout(task).ok()?;
    let moves = parse_moves(attempt, layout.max_moves())?;
    let critique = match layout.walk(&moves) {
        Outcome::Reaches => None,
        Outcome::HitsWall { index, .. } | Outcome::LeavesGrid { index, .. } => {
            Some(Critique::Move(index))
        }
        Outcome::EndsAway { .. } => Some(Critique::End),
    };
    Some(Reading {
        moves: format_moves(&moves),
        critique,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::{CORRECT_MESSAGE, testkit};
    use crate::leak;
    use crate::rng::Rng;

    /// A task from a drawn grid, with the reference path from the search.
    fn task(prompt: &str) -> Task {
        let mut start = (0, 0);
        let mut goal = (0, 0);
        let rows: Vec<String> = prompt
            .split('/')
            .enumerate()
            .map(|(r, row)| {
                row.chars()
                    .enumerate()
                    .map(|(c, ch)| match ch {
                        'S' => {
                            start = (r, c);
                            '.'
                        }
                        'G' => {
                            goal = (r, c);
                            '.'
                        }
                        other => other,
                    })
                    .collect()
            })
            .collect();
        let meta = Meta { rows, start, goal };
        let layout = Layout::from_meta(&meta).unwrap();
        assert_eq!(layout.prompt(), prompt);
        let path = format_moves(&layout.shortest_path().unwrap());
        let side = layout.side as u32;
        Task::new(
            DomainKind::Maze,
            side,
            0,
            prompt.into(),
            path,
            serde_json::to_string(&meta).unwrap(),
        )
    }

    const EXAMPLE: &str = "S.#./..#./#.../..#G";

    /// Longest run of letters from {u, d, l, r} in the normalised text: a run
    /// of three could spell part of some path.
    fn longest_move_letter_run(message: &str) -> usize {
        leak::normalise(message)
            .split(|c| !matches!(c, 'u' | 'd' | 'l' | 'r'))
            .map(str::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn search_finds_the_first_shortest_path_in_move_order() {
        let t = task(EXAMPLE);
        assert_eq!(t.solution, "DRDRRD");
        assert_eq!(Maze.verify(&t, "DRDRRD").unwrap(), Verdict::Correct);
        // Another shortest path is just as correct.
        assert_eq!(Maze.verify(&t, "RDDRRD").unwrap(), Verdict::Correct);
    }

    #[test]
    fn generated_mazes_meet_their_guarantees() {
        let mut walls = 0usize;
        let mut cells = 0usize;
        for seed in 0..200 {
            for n in 4..=8u32 {
                let t = Maze.generate(seed, n);
                let layout = Maze.layout(&t).unwrap();
                let side = n as usize;
                assert_eq!(t.difficulty, n);
                assert_eq!(layout.side, side);
                assert_eq!(t.prompt, layout.prompt());
                assert_eq!(t.prompt.matches('S').count(), 1);
                assert_eq!(t.prompt.matches('G').count(), 1);
                assert!(manhattan(layout.start, layout.goal) >= side);
                let path = layout.shortest_path().unwrap();
                assert!(path.len() + 1 >= side);
                assert_eq!(format_moves(&path), t.solution);
                walls += layout.walls.iter().filter(|&&w| w).count();
                cells += layout.walls.len();
            }
        }
        let density = walls as f64 / cells as f64;
        assert!((0.2..0.35).contains(&density), "{density}");
        assert_eq!(Maze.generate(1, 0).difficulty, 4);
        assert_eq!(Maze.generate(1, 99).difficulty, 8);
    }

    #[test]
    fn masks_mark_the_moves_up_to_the_first_that_fails() {
        let t = task(EXAMPLE);
        let mask = |attempt: &str| Maze.feedback(&t, attempt, FeedbackLevel::Mask).unwrap();
        assert_eq!(mask("DRRD"), "Moves: ..!");
        assert_eq!(mask("UDRDRRD"), "Moves: !");
        assert_eq!(mask("DRDRR"), "Moves: ..... The goal is 1 row down.");
        assert_eq!(mask("DRDRRD"), CORRECT_MESSAGE);
        // The repair after a mask is the one after a located critique.
        assert_eq!(
            Maze.repair(&t, "DRRD", FeedbackLevel::Mask).unwrap(),
            Maze.repair(&t, "DRRD", FeedbackLevel::Location).unwrap()
        );
    }

    #[test]
    fn answers_parse_leniently_but_only_as_moves() {
        let t = task(EXAMPLE);
        for ok in ["DRDRRD", "drdrrd", "D, R, D, R, R, D", " D R\nD R R D "] {
            assert_eq!(Maze.verify(&t, ok).unwrap(), Verdict::Correct, "{ok}");
        }
        for bad in ["", " , ", "DRDRRDX", "D-R-D-R-R-D", "DOWN", "ＤＲＤＲＲＤ"] {
            assert_eq!(Maze.verify(&t, bad).unwrap(), Verdict::Malformed, "{bad}");
        }
        // 4·4·4 = 64 moves is the limit.
        assert_eq!(Maze.verify(&t, &"UD".repeat(32)).unwrap(), Verdict::Wrong);
        assert_eq!(
            Maze.verify(&t, &format!("{}DRDRRD", "DU".repeat(29)))
                .unwrap(),
            Verdict::Correct
        );
        assert_eq!(
            Maze.verify(&t, &"UD".repeat(33)).unwrap(),
            Verdict::Malformed
        );
    }

    #[test]
    fn only_ending_on_the_goal_counts() {
        let t = task(EXAMPLE);
        // Over the goal and off it again.
        assert_eq!(Maze.verify(&t, "DRDRRDU").unwrap(), Verdict::Wrong);
        // A longer path that ends on the goal.
        assert_eq!(Maze.verify(&t, "DRDRRUDD").unwrap(), Verdict::Correct);
        assert_eq!(Maze.verify(&t, "DRDRRDUD").unwrap(), Verdict::Correct);
    }

    #[test]
    fn feedback_levels_on_worked_examples() {
        let t = task(EXAMPLE);
        let say = |attempt: &str, level| Maze.feedback(&t, attempt, level).unwrap();
        use FeedbackLevel::{Explanation, Location, Retry};

        assert_eq!(say("DRDRRD", Explanation), "Correct.");
        assert_eq!(say("RR", Retry), "Try again.");
        assert_eq!(say("RR", FeedbackLevel::Verdict), "Incorrect.");

        assert_eq!(say("RRDD", Location), "Move 2 hits a wall.");
        assert_eq!(
            say("RRDD", Explanation),
            "Move 2 (R) hits a wall at row 1, column 3."
        );
        assert_eq!(
            say("DDR", Explanation),
            "Move 2 (D) hits a wall at row 3, column 1."
        );
        assert_eq!(say("DL", Location), "Move 2 leaves the grid.");
        assert_eq!(
            say("DL", Explanation),
            "Move 2 (L) leaves the grid from row 2, column 1."
        );
        assert_eq!(
            say("U", Explanation),
            "Move 1 (U) leaves the grid from row 1, column 1."
        );
        assert_eq!(say("DR", Location), "The path ends away from the goal.");
        assert_eq!(
            say("DR", Explanation),
            "The path ends at row 2, column 2; the goal is 2 rows down and 2 columns right."
        );
        assert_eq!(
            say("DRDRRDU", Explanation),
            "The path ends at row 3, column 4; the goal is 1 row down."
        );
        assert_eq!(
            say("DRDD", Explanation),
            "The path ends at row 4, column 2; the goal is 2 columns right."
        );
        assert_eq!(
            say("DRDRRDL", Explanation),
            "Move 7 (L) hits a wall at row 4, column 3."
        );
        for level in [FeedbackLevel::Verdict, Location, Explanation] {
            assert_eq!(say("DRX", level), MALFORMED_MESSAGE);
        }
        assert_eq!(say("DRX", Retry), "Try again.");
    }

    #[test]
    fn direction_names_both_axes() {
        assert_eq!(direction((3, 3), (0, 0)), "3 rows up and 3 columns left");
        assert_eq!(direction((0, 2), (0, 1)), "1 column left");
        assert_eq!(direction((0, 0), (1, 0)), "1 row down");
    }

    #[test]
    fn leak_rule_catches_the_path_and_pieces_of_it() {
        let t = task(EXAMPLE);
        assert!(Maze.leak_rule(&t, "Try DRDRRD.").unwrap().is_some());
        assert!(
            Maze.leak_rule(&t, "Start with RDR, then see.")
                .unwrap()
                .is_some()
        );
        assert!(Maze.leak_rule(&t, "Go D R D.").unwrap().is_none());
        assert!(
            Maze.leak_rule(&t, "Move 2 (R) hits a wall.")
                .unwrap()
                .is_none()
        );
        assert!(Maze.leak_rule(&t, MALFORMED_MESSAGE).unwrap().is_none());
        // The generic rule catches the path however it is spelled.
        assert!(leak::check(&t, "go d, r, d, r, r, d").unwrap().is_some());
    }

    #[test]
    fn no_message_holds_three_move_letters_in_a_row() {
        assert!(longest_move_letter_run("It could fail") >= 3);
        assert!(longest_move_letter_run(MALFORMED_MESSAGE) <= 2);
        let templates = [
            "Try again.",
            "Incorrect.",
            "hits a wall.",
            "hits a wall at",
            "leaves the grid.",
            "leaves the grid from",
            "ends away from",
            "ends at",
        ];
        let mut seen: HashSet<&str> = HashSet::new();
        for seed in 0..2_000u64 {
            let t = Maze.generate(seed, 4 + (seed % 5) as u32);
            let mut rng = Rng::new(seed);
            for _ in 0..4 {
                let wrong = Maze.wrong_attempt(&t, &mut rng).unwrap();
                for level in FeedbackLevel::ALL {
                    let message = Maze.feedback(&t, &wrong, level).unwrap();
                    assert!(longest_move_letter_run(&message) <= 2, "{message}");
                    seen.extend(templates.iter().filter(|p| message.contains(*p)));
                }
            }
        }
        assert_eq!(seen.len(), templates.len(), "{seen:?}");
    }

    /// How a walk over the prompt's own drawing fails, worked out
    /// independently of `Layout`. Cells are 1-based, as in messages.
    #[derive(Debug, PartialEq)]
    enum Walk {
        OffGrid {
            k: usize,
            letter: char,
            from: (i64, i64),
        },
        IntoWall {
            k: usize,
            letter: char,
            wall: (i64, i64),
        },
        Ends {
            at: (i64, i64),
            goal: (i64, i64),
        },
    }

    fn simulate(prompt: &str, attempt: &str) -> Walk {
        let grid: Vec<Vec<char>> = prompt.split('/').map(|r| r.chars().collect()).collect();
        let find = |ch: char| {
            let r = grid.iter().position(|row| row.contains(&ch)).unwrap();
            let c = grid[r].iter().position(|&x| x == ch).unwrap();
            (r as i64 + 1, c as i64 + 1)
        };
        let (mut at, goal) = (find('S'), find('G'));
        let n = grid.len() as i64;
        for (i, letter) in attempt.chars().enumerate() {
            let (dr, dc) = match letter {
                'U' => (-1, 0),
                'D' => (1, 0),
                'L' => (0, -1),
                _ => (0, 1),
            };
            let next = (at.0 + dr, at.1 + dc);
            if next.0 < 1 || next.1 < 1 || next.0 > n || next.1 > n {
                return Walk::OffGrid {
                    k: i + 1,
                    letter,
                    from: at,
                };
            }
            if grid[next.0 as usize - 1][next.1 as usize - 1] == '#' {
                return Walk::IntoWall {
                    k: i + 1,
                    letter,
                    wall: next,
                };
            }
            at = next;
        }
        Walk::Ends { at, goal }
    }

    fn numbers(message: &str) -> Vec<i64> {
        message
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn repairs_keep_the_moves_before_the_failure_and_reach_the_goal() {
        let mut kept_some = 0;
        for seed in 0..500u64 {
            let t = Maze.generate(seed, 4 + (seed % 5) as u32);
            let mut rng = Rng::new(seed);
            let wrong = Maze.wrong_attempt(&t, &mut rng).unwrap();
            let repair = Maze
                .repair(&t, &wrong, FeedbackLevel::Location)
                .unwrap()
                .expect("a maze attempt has a repair");
            assert_eq!(
                Maze.verify(&t, &repair).unwrap(),
                Verdict::Correct,
                "{wrong} -> {repair}"
            );
            let kept = match simulate(&t.prompt, &wrong) {
                Walk::OffGrid { k, .. } | Walk::IntoWall { k, .. } => k - 1,
                _ => wrong.len(),
            };
            assert_eq!(&repair[..kept], &wrong[..kept], "{wrong} -> {repair}");
            kept_some += (kept > 0) as usize;
        }
        assert!(kept_some > 100, "{kept_some}");
        let t = Maze.generate(3, 5);
        assert_eq!(
            Maze.repair(&t, &t.solution, FeedbackLevel::Location)
                .unwrap(),
            None
        );
        assert_eq!(
            Maze.repair(&t, "not moves", FeedbackLevel::Location)
                .unwrap(),
            None
        );
    }

    #[test]
    fn feedback_is_true() {
        for seed in 0..2_000u64 {
            let t = Maze.generate(seed, 4 + (seed % 5) as u32);
            let mut rng = Rng::new(seed);
            for _ in 0..3 {
                let wrong = Maze.wrong_attempt(&t, &mut rng).unwrap();
                assert_eq!(Maze.verify(&t, &wrong).unwrap(), Verdict::Wrong);
                let location = Maze.feedback(&t, &wrong, FeedbackLevel::Location).unwrap();
                let explanation = Maze
                    .feedback(&t, &wrong, FeedbackLevel::Explanation)
                    .unwrap();
                let context = format!("{} {wrong} {location} {explanation}", t.prompt);
                match simulate(&t.prompt, &wrong) {
                    Walk::OffGrid {
                        k,
                        letter,
                        from: (r, c),
                    } => {
                        assert_eq!(location, format!("Move {k} leaves the grid."), "{context}");
                        let expected = format!(
                            "Move {k} ({letter}) leaves the grid from row {r}, column {c}."
                        );
                        assert_eq!(explanation, expected, "{context}");
                    }
                    Walk::IntoWall {
                        k,
                        letter,
                        wall: (r, c),
                    } => {
                        assert_eq!(location, format!("Move {k} hits a wall."), "{context}");
                        let expected =
                            format!("Move {k} ({letter}) hits a wall at row {r}, column {c}.");
                        assert_eq!(explanation, expected, "{context}");
                    }
                    Walk::Ends { at, goal } => {
                        assert_ne!(at, goal, "{context}");
                        assert_eq!(location, "The path ends away from the goal.", "{context}");
                        let ns = numbers(&explanation);
                        assert_eq!((ns[0], ns[1]), at, "{context}");
                        let (dr, dc) = (goal.0 - at.0, goal.1 - at.1);
                        let mut rest = ns[2..].iter();
                        if dr != 0 {
                            assert_eq!(rest.next(), Some(&dr.abs()), "{context}");
                            let noun = if dr.abs() == 1 { "row" } else { "rows" };
                            let way = if dr > 0 { "down" } else { "up" };
                            let phrase = format!("the goal is {} {noun} {way}", dr.abs());
                            assert!(explanation.contains(&phrase), "{context}");
                        }
                        if dc != 0 {
                            assert_eq!(rest.next(), Some(&dc.abs()), "{context}");
                            let noun = if dc.abs() == 1 { "column" } else { "columns" };
                            let way = if dc > 0 { "right" } else { "left" };
                            assert!(
                                explanation.ends_with(&format!(" {} {noun} {way}.", dc.abs())),
                                "{context}"
                            );
                        }
                        assert_eq!(rest.next(), None, "{context}");
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_attempts_cover_every_kind_of_mistake() {
        let mut kinds = HashSet::new();
        for seed in 0..300u64 {
            let t = Maze.generate(seed, 6);
            let wrong = Maze.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
            let message = Maze.feedback(&t, &wrong, FeedbackLevel::Location).unwrap();
            let kind = ["wall", "grid", "ends"]
                .into_iter()
                .find(|k| message.contains(k));
            kinds.insert(kind.unwrap());
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    #[test]
    fn leak_rate_is_zero() {
        for i in 0..10_000u64 {
            let t = Maze.generate(i, 4 + (i % 5) as u32);
            let wrong = Maze.wrong_attempt(&t, &mut Rng::new(i ^ 0x5eed)).unwrap();
            for attempt in [wrong.as_str(), "DRX"] {
                for level in FeedbackLevel::ALL {
                    let message = Maze.feedback(&t, attempt, level).unwrap();
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
        testkit::reference_solutions_verify(&Maze, 30);
        testkit::garbage_never_panics(&Maze);
    }

    #[test]
    fn critiques_are_read_against_the_walk() {
        let (checked, refuted) = testkit::teacher_critiques_read_true(&Maze, 30);
        assert!(checked > 300 && refuted > 30, "{checked} {refuted}");
        let t = task(EXAMPLE);
        let read = |attempt: &str, message: &str| {
            Maze.read_critique(&t, attempt, message).unwrap().unwrap()
        };
        let wall = "Move 2 (R) hits a wall at row 1, column 3.";
        assert_eq!(read("RRDD", wall), CritiqueReading::claim(true));
        assert_eq!(read("DDR", wall), CritiqueReading::claim(false));
        assert_eq!(read("DRDRRD", wall), CritiqueReading::claim(false));
        assert_eq!(
            read("RRDD", "Move 2 hits a wall."),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read("DDR", "  Move 2 hits a wall.\n"),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read(
                "DR",
                "The path ends at row 2, column 2; the goal is 2 rows down and 2 columns right."
            ),
            CritiqueReading::claim(true)
        );
        assert_eq!(
            read(
                "DR",
                "The path ends at row 2, column 2; the goal is 2 columns right and 2 rows down."
            ),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read(
                "DR",
                "The path ends at row 2, column 2; the goal is 1 rows down."
            ),
            CritiqueReading::GARBLED
        );
        assert_eq!(read("RRDD", "Moves: .!"), CritiqueReading::claim(true));
        assert_eq!(read("RRDD", "Moves: !."), CritiqueReading::GARBLED);
        assert_eq!(
            read("RRDD", "Move 2 (Q) hits a wall at row 1, column 3."),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read("RRDD", "Move 2 (RR) hits a wall at row 1, column 3."),
            CritiqueReading::GARBLED
        );
        assert_eq!(
            read("RRDD", MALFORMED_MESSAGE),
            CritiqueReading::claim(false)
        );
        assert_eq!(read("RRDD", "Incorrect."), CritiqueReading::UNCHECKABLE);
    }

    /// Verify and feedback are total on untrusted text, and what they say is
    /// consistent and leak-free.
    fn judge(seed: u64, side: u32, attempt: &str) -> std::result::Result<(), TestCaseError> {
        let t = Maze.generate(seed, side);
        let verdict = Maze.verify(&t, attempt);
        prop_assert!(verdict.is_ok());
        for level in FeedbackLevel::ALL {
            let message = Maze.feedback(&t, attempt, level);
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
        fn any_string_is_judged(seed in 0u64..500, n in 4u32..=8, s in any::<String>()) {
            judge(seed, n, &s)?;
        }

        #[test]
        fn any_printable_string_is_judged(seed in 0u64..500, n in 4u32..=8, s in "\\PC*") {
            judge(seed, n, &s)?;
        }

        #[test]
        fn move_shaped_strings_are_judged(seed in 0u64..500, n in 4u32..=8, s in "[UDLRudlr, ]{0,200}") {
            judge(seed, n, &s)?;
        }

        #[test]
        fn near_misses_are_judged(
            seed in 0u64..500,
            n in 4u32..=8,
            edit in 0u8..3,
            at in any::<prop::sample::Index>(),
            c in prop_oneof![prop::sample::select(vec!['U', 'D', 'L', 'R', 'u', ',', ' ']), any::<char>()],
        ) {
            let attempt = testkit::near_miss(&Maze.generate(seed, n).solution, edit, at, c);
            judge(seed, n, &attempt)?;
        }
    }
}
