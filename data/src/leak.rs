//! The leak check every teacher message passes before it is shown: the
//! teacher knows the solution and must not reveal it (RL²F reports a leak
//! rate under 0.3%; didact's programmatic teachers aim for exactly 0).

use crate::domain::Task;
use crate::error::Result;

/// Lower-cases and drops everything but letters and digits, so that
/// `"R R D"` and `"rrd"` or `"1 2 3"` and `"123"` compare equal.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why a message was judged to leak the solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub reason: String,
}

/// Generic rule (the normalised solution appears in the normalised message)
/// plus the domain's own rule. Solutions shorter than three normalised
/// characters are left to the domain rule, since they occur in ordinary words.
pub fn check(task: &Task, message: &str) -> Result<Option<Leak>> {
    let solution = normalise(&task.solution);
    if solution.chars().count() >= 3 && normalise(message).contains(&solution) {
        return Ok(Some(Leak {
            reason: "contains the solution".to_string(),
        }));
    }
    Ok(task
        .domain
        .domain()
        .leak_rule(task, message)?
        .map(|reason| Leak { reason }))
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
