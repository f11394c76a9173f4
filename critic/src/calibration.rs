//! How far the critic's P("Correct.") can be read as the probability that
//! an attempt is right, and whether it tells right from wrong at all: the
//! numbers behind a verdict rule, whatever threshold the rule then picks.

use serde::{Deserialize, Serialize};

/// Bins of P for the expected calibration error.
const BINS: usize = 10;

/// The critic's scores on held-out attempts of one domain, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub attempts: usize,
    /// Of them, right by the verifier.
    pub correct: usize,
    /// Mean P("Correct."): beside the share right, whether the critic is
    /// over- or under-confident overall.
    pub mean_p: f64,
    /// Expected calibration error: over 10 equal-width bins of P, the
    /// attempt-weighted mean of |mean P − share right|. 0 is calibrated.
    pub ece: f64,
    /// Mean of (P − right)², right as 0 or 1: calibration and sharpness
    /// together; always saying the base rate scores its variance.
    pub brier: f64,
    /// P(a right attempt scores above a wrong one), ties counting half.
    /// 0.5 is a critic that cannot tell them apart, whatever its threshold;
    /// `None` with attempts of one kind only.
    pub auroc: Option<f64>,
}

/// [`Calibration`] of `(P("Correct."), right)` pairs; `None` without any.
/// Non-finite scores are left out.
pub fn calibration(scored: &[(f64, bool)]) -> Option<Calibration> {
    let scored: Vec<(f64, bool)> = scored.iter().copied().filter(|s| s.0.is_finite()).collect();
    if scored.is_empty() {
        return None;
    }
    let n = scored.len() as f64;
    let mut bins = [(0.0f64, 0.0f64, 0usize); BINS];
    for &(p, right) in &scored {
        let b = ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        bins[b].0 += p;
        bins[b].1 += right as u8 as f64;
        bins[b].2 += 1;
    }
    let ece = bins
        .iter()
        .filter(|b| b.2 > 0)
        .map(|&(p, r, _)| (p - r).abs() / n)
        .sum();
    let brier = scored
        .iter()
        .map(|&(p, right)| (p - right as u8 as f64).powi(2))
        .sum::<f64>()
        / n;
    Some(Calibration {
        attempts: scored.len(),
        correct: scored.iter().filter(|s| s.1).count(),
        mean_p: scored.iter().map(|s| s.0).sum::<f64>() / n,
        ece,
        brier,
        auroc: auroc(&scored),
    })
}

/// The Mann–Whitney estimate of the area under the ROC curve, with tied
/// scores given their mean rank.
fn auroc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn a_perfect_separator_has_auroc_one_and_a_constant_has_one_half() {
        let sharp = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        let c = calibration(&sharp).unwrap();
        assert!(close(c.auroc.unwrap(), 1.0));
        assert_eq!((c.attempts, c.correct), (4, 2));
        assert!(close(c.mean_p, 0.5));
        let flat = [(0.5, true), (0.5, false), (0.5, false)];
        assert!(close(calibration(&flat).unwrap().auroc.unwrap(), 0.5));
        let inverted = [(0.1, true), (0.9, false)];
        assert!(close(calibration(&inverted).unwrap().auroc.unwrap(), 0.0));
    }

    #[test]
    fn calibration_error_and_brier_score_follow_their_definitions() {
        // Bin [0.2, 0.3): mean P 0.25, one of two right → |0.25 − 0.5|;
        // bin [0.9, 1]: P 0.95, right → |0.95 − 1|.
        let scored = [(0.2, true), (0.3 - 1e-9, false), (0.95, true)];
        let c = calibration(&scored).unwrap();
        let mean_p = (0.2 + 0.3 - 1e-9) / 2.0;
        let want = (2.0 * (mean_p - 0.5f64).abs() + 0.05) / 3.0;
        assert!((c.ece - want).abs() < 1e-9, "{} vs {want}", c.ece);
        let brier = (0.8f64.powi(2) + (0.3 - 1e-9f64).powi(2) + 0.05f64.powi(2)) / 3.0;
        assert!((c.brier - brier).abs() < 1e-9);
        // A calibrated critic: P equals the share right in its bin.
        let calibrated = [(0.5, true), (0.5, false), (0.0, false), (1.0, true)];
        let c = calibration(&calibrated).unwrap();
        assert!(close(c.ece, 0.0));
        // It survives a round trip through the JSON it is saved in.
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&text).unwrap(), c);
    }

    #[test]
    fn one_kind_of_attempt_has_no_auroc_and_nothing_has_no_calibration() {
        assert_eq!(calibration(&[(0.7, true)]).unwrap().auroc, None);
        assert_eq!(calibration(&[]), None);
        assert_eq!(calibration(&[(f64::NAN, true)]), None);
    }
}
