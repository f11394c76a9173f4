//! Task domains: generators, verifiers for untrusted text, programmatic teachers
//! with privileged access to the solution, and error models.
//!
//! Each domain mirrors one of the paper's settings: `arith` (math), `listops`
//! (coding, checked by hidden tests), `sudoku` (puzzle) and `maze`
//! (navigation). A domain's privileged information (hidden tests, the
//! solution grid, the maze layout) lives in the task's JSON `metadata`; only
//! the verifier and the teacher read it.
//!
//! Two more domains hold tasks imported from question/answer datasets
//! (`didact data import`): `numeric` (GSM8K-style numeric answers) and
//! `exact` (exact match of a short answer). The data stage never generates
//! them; see [`DomainKind::IMPORTED`].

pub mod arith;
pub mod exact;
pub mod listops;
pub mod maze;
pub mod numeric;
pub mod sudoku;

mod contract;
mod critique;

pub use contract::*;

impl DomainKind {
    /// The domain implementation for this kind.
    pub fn domain(self) -> &'static dyn Domain {
        match self {
            Self::Arith => &arith::Arith,
            Self::Listops => &listops::Listops,
            Self::Sudoku => &sudoku::Sudoku,
            Self::Maze => &maze::Maze,
            Self::Numeric => &numeric::Numeric,
            Self::Exact => &exact::Exact,
        }
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Checks every domain must pass: determinism, correct reference
    //! solutions, wrong attempts that are wrong, no panics on garbage.

    use super::*;
    use crate::rng::Rng;

    pub fn reference_solutions_verify(domain: &dyn Domain, n: u64) {
        let (lo, hi) = domain.difficulty_range();
        for seed in 0..n {
            for d in lo..=hi {
                let t = domain.generate(seed, d);
                assert_eq!(
                    domain.verify(&t, &t.solution).unwrap(),
                    Verdict::Correct,
                    "{t:?}"
                );
                assert_eq!(
                    domain.generate(seed, d),
                    t,
                    "generation must be deterministic"
                );
                let mut rng = Rng::new(seed);
                let wrong = domain.wrong_attempt(&t, &mut rng).unwrap();
                assert_ne!(
                    domain.verify(&t, &wrong).unwrap(),
                    Verdict::Correct,
                    "{t:?} {wrong}"
                );
            }
        }
    }

    /// `solution` with one edit: 0 replaces, 1 inserts, 2 deletes the
    /// character at `at` (the near misses verifiers must judge calmly).
    pub fn near_miss(solution: &str, edit: u8, at: proptest::sample::Index, c: char) -> String {
        let mut chars: Vec<char> = solution.chars().collect();
        let len = chars.len();
        match edit {
            0 => chars[at.index(len)] = c,
            1 => chars.insert(at.index(len + 1), c),
            _ => {
                chars.remove(at.index(len));
            }
        }
        chars.into_iter().collect()
    }

    /// The teacher's own critiques, at every level, of wrong attempts and
    /// of garbage, read as well formed and never as false; the same
    /// critique read against another wrong attempt to the same task is
    /// sometimes false. Returns (claims checked, claims refuted against
    /// the other attempt), for the domain's test to require that the
    /// reader checks something and can say no.
    pub fn teacher_critiques_read_true(domain: &dyn Domain, n: u64) -> (usize, usize) {
        let (lo, hi) = domain.difficulty_range();
        let (mut checked, mut refuted) = (0, 0);
        for seed in 0..n {
            for d in lo..=hi {
                let t = domain.generate(seed, d);
                let mut rng = Rng::new(seed);
                let wrong = domain.wrong_attempt(&t, &mut rng).unwrap();
                let other = domain.wrong_attempt(&t, &mut rng).unwrap();
                for attempt in [wrong.as_str(), "#?", t.solution.as_str()] {
                    for level in FeedbackLevel::ALL {
                        let message = domain.feedback(&t, attempt, level).unwrap();
                        let read = domain.read_critique(&t, attempt, &message).unwrap();
                        let read = read.expect("the domain reads critiques");
                        assert!(read.well_formed, "{t:?} {attempt:?} {message:?}");
                        assert_ne!(read.claim, Some(false), "{t:?} {attempt:?} {message:?}");
                        checked += read.claim.is_some() as usize;
                        if attempt == wrong && other != wrong {
                            let read = domain.read_critique(&t, &other, &message).unwrap();
                            refuted += (read.unwrap().claim == Some(false)) as usize;
                        }
                    }
                }
                for garbled in [
                    "",
                    "column column column 3orrect column",
                    "C",
                    "Correct. Correct.",
                    "Move",
                    "Row 9 breaks a rule.",
                    "The path ends at row 1; the goal is up.",
                    "Your answer is too low. The tens digits are wrong.",
                    "On input [1 2 it returns [3].",
                ] {
                    let read = domain.read_critique(&t, &wrong, garbled).unwrap().unwrap();
                    assert_eq!(read, CritiqueReading::GARBLED, "{garbled:?}");
                }
            }
        }
        (checked, refuted)
    }

    pub fn garbage_never_panics(domain: &dyn Domain) {
        let t = domain.generate(3, domain.difficulty_range().1);
        for s in [
            "",
            " ",
            "\0",
            "\u{202e}٣٤",
            "-",
            "--1",
            "99999999999999999999999999999999999999999999999",
            "[",
            "[1 2",
            "]]]]",
            "|||",
            "sort |",
            "map +",
            "take -1",
            "////",
            "UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU",
            &"x".repeat(100_000),
        ] {
            let v = domain.verify(&t, s).unwrap();
            for level in FeedbackLevel::ALL {
                let msg = domain.feedback(&t, s, level).unwrap();
                assert!(!msg.is_empty());
                if v != Verdict::Correct {
                    assert_ne!(msg, CORRECT_MESSAGE);
                }
                domain.read_critique(&t, s, &msg).unwrap();
                domain.read_critique(&t, &t.solution, s).unwrap();
            }
        }
    }
}
