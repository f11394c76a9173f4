//! Reading a critic's message the way the teacher writes: is it one of the
//! domain's teacher forms, and is the claim it makes about the attempt
//! true, where the task and the attempt alone can settle it? A critic sees
//! no privileged information, so that part of a critique is the fair test
//! of it; the rest (which digit of the answer is wrong, what a hidden case
//! should return) needs the solution and is not judged here.

use super::contract::{CORRECT_MESSAGE, CritiqueReading, RETRY_MESSAGE, Verdict, WRONG_MESSAGE};

/// The messages every teacher shares, and the domain's own message for an
/// answer it cannot read, where it has one (whose claim, that the attempt
/// is not in the domain's format, the verifier settles). `None`: none of
/// them.
pub(crate) fn read_common(
    message: &str,
    malformed_message: Option<&str>,
    verdict: Verdict,
) -> Option<CritiqueReading> {
    if [CORRECT_MESSAGE, WRONG_MESSAGE, RETRY_MESSAGE].contains(&message) {
        Some(CritiqueReading::UNCHECKABLE)
    } else if Some(message) == malformed_message {
        Some(CritiqueReading::claim(verdict == Verdict::Malformed))
    } else {
        None
    }
}

/// A positive decimal number as teachers write them (no sign, no leading
/// zero, at most six digits).
pub(crate) fn number(text: &str) -> Option<usize> {
    let ok = (1..=6).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    ok.then(|| text.parse().ok()).flatten()
}

/// `row R, column C` (1-based, as written) as 1-based `(R, C)`.
pub(crate) fn row_column(text: &str) -> Option<(usize, usize)> {
    let (row, column) = text.strip_prefix("row ")?.split_once(", column ")?;
    Some((number(row)?, number(column)?))
}

/// A mask of `.` (right) and `!` (wrong), at least one character long.
pub(crate) fn is_mask(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c == '.' || c == '!')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_positive_decimals() {
        assert_eq!(number("12"), Some(12));
        for bad in ["", "0", "012", "-3", "1a", "1234567", " 1"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn places_read_row_then_column() {
        assert_eq!(row_column("row 2, column 13"), Some((2, 13)));
        assert_eq!(row_column("row 2 column 1"), None);
        assert_eq!(row_column("column 2, row 1"), None);
    }

    #[test]
    fn common_messages_are_forms_and_only_the_format_claim_is_checked() {
        let malformed = Some("Answer with an integer.");
        assert_eq!(
            read_common("Correct.", malformed, Verdict::Wrong),
            Some(CritiqueReading::UNCHECKABLE)
        );
        assert_eq!(
            read_common("Answer with an integer.", malformed, Verdict::Wrong),
            Some(CritiqueReading::claim(false))
        );
        assert_eq!(
            read_common("Answer with an integer.", malformed, Verdict::Malformed),
            Some(CritiqueReading::claim(true))
        );
        assert_eq!(read_common("Correct", malformed, Verdict::Wrong), None);
    }
}
