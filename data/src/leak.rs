//! The leak check every teacher message passes before it is shown: the
//! teacher knows the solution and must not reveal it (RL²F reports a leak
//! rate under 0.3%; didact's programmatic teachers aim for exactly 0).

use crate::domain::{FeedbackLevel, Task, WRONG_MESSAGE};
use crate::error::Result;

pub use crate::domain::normalise;

/// Why a message was judged to leak the solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub reason: String,
}

/// The generic rule plus the domain's own
/// ([`crate::domain::Domain::leak`]).
pub fn check(task: &Task, message: &str) -> Result<Option<Leak>> {
    Ok(task
        .domain
        .domain()
        .leak(task, message)?
        .map(|reason| Leak { reason }))
}

/// The teacher's message after the leak check: `(message, leaked)`. A leaking
/// message is never shown; the verdict-only message replaces it.
pub fn teacher_message(task: &Task, attempt: &str, level: FeedbackLevel) -> Result<(String, bool)> {
    let message = task.domain.domain().feedback(task, attempt, level)?;
    Ok(match check(task, &message)? {
        Some(_) => (WRONG_MESSAGE.to_string(), true),
        None => (message, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Domain, arith::Arith};

    #[test]
    fn normalisation_ignores_case_spacing_and_punctuation() {
        assert_eq!(normalise("R R, d!"), "rrd");
        assert_eq!(normalise("[1 2 3]"), "123");
    }

    #[test]
    fn substring_and_domain_rules_fire() {
        let t = Arith.generate(1, 6);
        assert!(
            check(&t, &format!("the answer is {}", t.solution))
                .unwrap()
                .is_some()
        );
        assert!(check(&t, "Your answer is too low.").unwrap().is_none());
    }
}
