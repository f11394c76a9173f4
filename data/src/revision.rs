//! Targeted revision: after the teacher's critique of an attempt, does the
//! student's next attempt change only what the critique pointed at? Where a
//! domain's teacher locates the error (maze, sudoku), the answer is a yes or
//! no for the evaluation report; elsewhere it is `None`.
//!
//! The rules read the critique at the location level, the first level that
//! points at anything, whatever level the student actually got; at `Retry`
//! and `Verdict` the teacher points at nothing, so callers should count only
//! revisions after `Location` or `Explanation` feedback.
//!
//! - maze, a move hits a wall or leaves the grid (the teacher names move k):
//!   targeted iff the next path starts with the k-1 moves before it; move k
//!   and everything after may change.
//! - maze, every move legal but the path ends away from the goal (the teacher
//!   names only where it ends): targeted iff one path is a prefix of the other,
//!   that is the revision only continues from the end or cuts moves off it;
//!   rerouting any earlier move is not targeted.
//! - sudoku (the teacher names the first changed given, else the first row,
//!   column or box that breaks a rule): targeted iff every cell outside the
//!   flagged given or unit keeps its digit.
//! - both: `None` when the earlier attempt is malformed or correct (nothing
//!   was located); `Some(false)` when the revision is malformed (it kept
//!   nothing the verifier can read). An unchanged attempt counts as targeted:
//!   the rule asks what was kept, not whether the error was fixed.
//! - every other domain: `None`.

use crate::domain::{DomainKind, Task, maze, sudoku};

/// Whether `next` (the student's attempt after feedback on `prev`) keeps
/// everything of `prev` that the teacher's critique did not point at.
/// `None` where the domain cannot tell (arith, listops, imported domains),
/// or where `prev` does not parse well enough to locate the error. Total on
/// untrusted text; the rules per domain are in the module docs.
pub fn targeted_revision(task: &Task, prev: &str, next: &str) -> Option<bool> {
    match task.domain {
        DomainKind::Maze => maze_revision(task, prev, next),
        DomainKind::Sudoku => sudoku_revision(task, prev, next),
        DomainKind::Arith | DomainKind::Listops | DomainKind::Numeric | DomainKind::Exact => None,
    }
}

fn maze_revision(task: &Task, prev: &str, next: &str) -> Option<bool> {
    let before = maze::read(task, prev)?;
    let critique = before.critique?;
    let Some(after) = maze::read(task, next) else {
        return Some(false);
    };
    // Moves are ASCII letters, so byte indices are move indices.
    let (old, new) = (before.moves.as_str(), after.moves.as_str());
    Some(match critique {
        maze::Critique::Move(index) => new.starts_with(&old[..index]),
        maze::Critique::End => new.starts_with(old) || old.starts_with(new),
    })
}

fn sudoku_revision(task: &Task, prev: &str, next: &str) -> Option<bool> {
    let before = sudoku::read(task, prev)?;
    let flagged = before.flagged?;
    let Some(after) = sudoku::read(task, next) else {
        return Some(false);
    };
    Some(
        (0..16)
            .filter(|i| !flagged.contains(i))
            .all(|i| before.cells[i] == after.cells[i]),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{Domain, FeedbackLevel};
    use crate::rng::Rng;

    /// `S.#./..#./#.../..#G`, whose shortest path is `DRDRRD`.
    fn maze_task() -> Task {
        let meta = r##"{"rows":["..#.","..#.","#...","..#."],"start":[0,0],"goal":[3,3]}"##;
        Task::new(
            DomainKind::Maze,
            4,
            0,
            "S.#./..#./#.../..#G".into(),
            "DRDRRD".into(),
            meta.into(),
        )
    }

    fn sudoku_task() -> Task {
        let meta = r#"{"givens":"12.4/3..2/.1.3/4..1","solution":"1234/3412/2143/4321"}"#;
        Task::new(
            DomainKind::Sudoku,
            6,
            0,
            "12.4/3..2/.1.3/4..1".into(),
            "1234/3412/2143/4321".into(),
            meta.into(),
        )
    }

    fn location(task: &Task, attempt: &str) -> String {
        task.domain
            .domain()
            .feedback(task, attempt, FeedbackLevel::Location)
            .unwrap()
    }

    #[test]
    fn maze_fix_after_the_named_move_is_targeted() {
        let t = maze_task();
        // D, R, then R into the wall: move 3 is named, "DR" must stay.
        assert_eq!(location(&t, "DRRD"), "Move 3 hits a wall.");
        assert_eq!(targeted_revision(&t, "DRRD", "DRDRRD"), Some(true));
        assert_eq!(
            targeted_revision(&t, "DRRD", "d, r, d, r, r, d"),
            Some(true)
        );
        assert_eq!(targeted_revision(&t, "DRRD", "DR"), Some(true));
        assert_eq!(targeted_revision(&t, "DRRD", "DRRD"), Some(true));
    }

    #[test]
    fn maze_rewrite_of_an_earlier_move_is_not_targeted() {
        let t = maze_task();
        // Correct, but move 1 changed though only move 3 was named.
        assert_eq!(targeted_revision(&t, "DRRD", "RDDRRD"), Some(false));
        assert_eq!(targeted_revision(&t, "DRRD", "D"), Some(false));
        assert_eq!(targeted_revision(&t, "DRRD", "DRX"), Some(false));
    }

    #[test]
    fn maze_first_move_off_the_grid_leaves_nothing_to_keep() {
        let t = maze_task();
        assert_eq!(location(&t, "UDRDRRD"), "Move 1 leaves the grid.");
        assert_eq!(targeted_revision(&t, "UDRDRRD", "RDDRRD"), Some(true));
        assert_eq!(targeted_revision(&t, "UDRDRRD", "not moves"), Some(false));
    }

    #[test]
    fn maze_path_ending_away_may_only_change_at_its_end() {
        let t = maze_task();
        assert_eq!(location(&t, "DRDRR"), "The path ends away from the goal.");
        // Stopping short: continuing is targeted, rerouting is not.
        assert_eq!(targeted_revision(&t, "DRDRR", "DRDRRD"), Some(true));
        assert_eq!(targeted_revision(&t, "DRDRR", "RDDRRD"), Some(false));
        // Walking past the goal: cutting back is targeted too.
        assert_eq!(location(&t, "DRDRRDU"), "The path ends away from the goal.");
        assert_eq!(targeted_revision(&t, "DRDRRDU", "DRDRRD"), Some(true));
        assert_eq!(targeted_revision(&t, "DRDRRDU", "DRDRRDUD"), Some(true));
        // Cutting back and taking a new way from there reroutes.
        assert_eq!(targeted_revision(&t, "DRDRRDU", "DRDRRUDD"), Some(false));
    }

    #[test]
    fn maze_needs_a_located_error() {
        let t = maze_task();
        assert_eq!(targeted_revision(&t, "DRX", "DRDRRD"), None);
        assert_eq!(targeted_revision(&t, "DRDRRD", "DRDRRD"), None);
        assert_eq!(targeted_revision(&t, "", "DRDRRD"), None);
    }

    #[test]
    fn sudoku_fix_inside_the_flagged_unit_is_targeted() {
        let t = sudoku_task();
        // A slip in the blank at row 1, column 3.
        let prev = "1224/3412/2143/4321";
        assert_eq!(location(&t, prev), "Row 1 breaks a rule.");
        assert_eq!(
            targeted_revision(&t, prev, "1234/3412/2143/4321"),
            Some(true)
        );
        // Still wrong, but changed only inside row 1.
        assert_eq!(
            targeted_revision(&t, prev, "1244/3412/2143/4321"),
            Some(true)
        );
        assert_eq!(targeted_revision(&t, prev, prev), Some(true));
    }

    #[test]
    fn sudoku_change_outside_the_flagged_unit_is_not_targeted() {
        let t = sudoku_task();
        let prev = "1224/3412/2143/4321";
        // Row 1 fixed, but row 4 (a blank there) changed as well.
        assert_eq!(
            targeted_revision(&t, prev, "1234/3412/2143/4231"),
            Some(false)
        );
        assert_eq!(targeted_revision(&t, prev, "1234/3412"), Some(false));
    }

    #[test]
    fn sudoku_changed_given_flags_that_cell_only() {
        let t = sudoku_task();
        let prev = "2234/3412/2143/4321";
        assert_eq!(
            location(&t, prev),
            "The given cell in row 1, column 1 was changed."
        );
        assert_eq!(
            targeted_revision(&t, prev, "1234/3412/2143/4321"),
            Some(true)
        );
        // The rest of row 1 was not pointed at.
        assert_eq!(
            targeted_revision(&t, prev, "1324/3412/2143/4321"),
            Some(false)
        );
    }

    #[test]
    fn sudoku_needs_a_located_error() {
        let t = sudoku_task();
        assert_eq!(
            targeted_revision(&t, "12.4/3..2/.1.3/4..1", "1234/3412/2143/4321"),
            None
        );
        assert_eq!(
            targeted_revision(&t, "1234/3412/2143/4321", "1234/3412/2143/4321"),
            None
        );
    }

    #[test]
    fn other_domains_cannot_tell() {
        for kind in [
            DomainKind::Arith,
            DomainKind::Listops,
            DomainKind::Numeric,
            DomainKind::Exact,
        ] {
            let domain = kind.domain();
            let t = domain.generate(7, domain.difficulty_range().0);
            let wrong = domain.wrong_attempt(&t, &mut Rng::new(7)).unwrap();
            assert_eq!(targeted_revision(&t, &wrong, &t.solution), None, "{kind}");
        }
    }

    /// The helpers locate exactly what the teacher names, on the error
    /// model's wrong attempts; an unchanged attempt keeps everything, and
    /// the reference solution is targeted exactly when the rule says so.
    #[test]
    fn rules_follow_the_teacher_on_generated_tasks() {
        for seed in 0..2_000u64 {
            let t = maze::Maze.generate(seed, 4 + (seed % 5) as u32);
            let wrong = maze::Maze.wrong_attempt(&t, &mut Rng::new(seed)).unwrap();
            let reading = maze::read(&t, &wrong).unwrap();
            let message = location(&t, &wrong);
            match reading.critique.unwrap() {
                maze::Critique::Move(i) => {
                    assert!(
                        message.starts_with(&format!("Move {} ", i + 1)),
                        "{message}"
                    );
                    let kept = t.solution.starts_with(&reading.moves[..i]);
                    assert_eq!(targeted_revision(&t, &wrong, &t.solution), Some(kept));
                }
                maze::Critique::End => {
                    assert_eq!(message, "The path ends away from the goal.");
                    let kept = t.solution.starts_with(&reading.moves)
                        || reading.moves.starts_with(&t.solution);
                    assert_eq!(targeted_revision(&t, &wrong, &t.solution), Some(kept));
                }
            }
            assert_eq!(targeted_revision(&t, &wrong, &wrong), Some(true));

            let t = sudoku::Sudoku.generate(seed, 1 + (seed % 12) as u32);
            let wrong = sudoku::Sudoku
                .wrong_attempt(&t, &mut Rng::new(seed))
                .unwrap();
            let reading = sudoku::read(&t, &wrong).unwrap();
            let flagged = reading.flagged.unwrap();
            let message = location(&t, &wrong);
            let named = |cell: usize| format!("row {}, column {}", cell / 4 + 1, cell % 4 + 1);
            if message.starts_with("The given cell") {
                assert_eq!(flagged.len(), 1);
                assert!(message.contains(&named(flagged[0])), "{message}");
            } else {
                assert_eq!(flagged.len(), 4, "{message}");
            }
            // The error model changes one or two cells of the solution; fixing
            // them touches only the flagged unit iff they all lie in it.
            let solution = sudoku::read(&t, &t.solution).unwrap().cells;
            let changed: Vec<usize> = (0..16)
                .filter(|&i| solution[i] != reading.cells[i])
                .collect();
            let kept = changed.iter().all(|i| flagged.contains(i));
            assert_eq!(targeted_revision(&t, &wrong, &t.solution), Some(kept));
            assert_eq!(targeted_revision(&t, &wrong, &wrong), Some(true));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let long_moves = "U".repeat(100_000);
        let long_digits = "1".repeat(100_000);
        let garbage = [
            "",
            " ",
            "\0",
            "\u{202e}٣٤",
            "////",
            ",,,,",
            "ＤＲＤＲＲＤ",
            "DRDRRDX",
            "UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU",
            "1234/3412/2143/43211",
            "12.4/3..2/.1.3/4..1",
            "5234/3412/2143/4321",
            long_moves.as_str(),
            long_digits.as_str(),
        ];
        let mut tasks = vec![maze_task(), sudoku_task()];
        for kind in DomainKind::ALL.into_iter().chain(DomainKind::IMPORTED) {
            let domain = kind.domain();
            tasks.push(domain.generate(3, domain.difficulty_range().1));
        }
        let mut corrupt = maze_task();
        corrupt.metadata = "{not json".into();
        tasks.push(corrupt);
        let mut corrupt = sudoku_task();
        corrupt.metadata = r#"{"givens":"1","solution":"2"}"#.into();
        tasks.push(corrupt);
        for t in &tasks {
            let wrong = t.domain.domain().wrong_attempt(t, &mut Rng::new(1));
            let known = [t.solution.clone(), wrong.unwrap_or_default()];
            let texts: Vec<&str> = garbage
                .iter()
                .copied()
                .chain(known.iter().map(String::as_str))
                .collect();
            for prev in &texts {
                for next in &texts {
                    let _ = targeted_revision(t, prev, next);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_pair_of_strings_is_judged(seed in 0u64..200, prev in any::<String>(), next in any::<String>()) {
            for t in [maze::Maze.generate(seed, 4 + (seed % 5) as u32), sudoku::Sudoku.generate(seed, 1 + (seed % 12) as u32)] {
                let _ = targeted_revision(&t, &prev, &next);
            }
        }

        #[test]
        fn move_shaped_pairs_are_judged(seed in 0u64..200, prev in "[UDLRudlr, ]{0,80}", next in "[UDLRudlr, ]{0,80}") {
            let t = maze::Maze.generate(seed, 4 + (seed % 5) as u32);
            let verdict = targeted_revision(&t, &prev, &next);
            // An unchanged wrong path always keeps what it had.
            if verdict.is_some() {
                prop_assert_eq!(targeted_revision(&t, &prev, &prev), Some(true));
            }
        }

        #[test]
        fn grid_shaped_pairs_are_judged(seed in 0u64..200, prev in "[1-4]{16}", next in "[1-4]{16}") {
            let t = sudoku::Sudoku.generate(seed, 1 + (seed % 12) as u32);
            let verdict = targeted_revision(&t, &prev, &next);
            if verdict.is_some() {
                prop_assert_eq!(targeted_revision(&t, &prev, &prev), Some(true));
            }
        }
    }
}
