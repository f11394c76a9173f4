//! The critic's verdict rule as the `critic` stage calibrates it and saves
//! beside the critic ([`VERDICT_FILE`]), and as `eval` and `analyse` read it.

use std::collections::BTreeMap;

use anyhow::Result;
use didact_critic::calibration::Calibration;
use didact_critic::config::{CalibrateOn, VerdictRule};
use didact_data::DomainKind;

use crate::layout::VERDICT_FILE;

/// How the critic's verdict is decided, and how well it did on held-out
/// attempts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VerdictCalibration {
    /// Per domain: judged correct when P("Correct.") reaches this.
    pub thresholds: BTreeMap<String, f64>,
    /// For domains without held-out attempts to calibrate on.
    pub default_threshold: f64,
    /// How the thresholds were chosen.
    #[serde(default)]
    pub rule: VerdictRule,
    /// The held-out attempts the thresholds were set on; files from before
    /// the choice existed were set on all of them.
    #[serde(default = "calibrated_on_all")]
    pub calibrated_on: CalibrateOn,
    pub min_recall: f64,
    /// Per domain: the share of wrong attempts the student fixes at its
    /// next attempt after the teacher's feedback (the `utility` rule's
    /// worth of a "wrong" verdict).
    #[serde(default)]
    pub fix_rates: BTreeMap<String, f64>,
    /// Held-out correct attempts judged correct.
    pub recall: f64,
    /// Held-out wrong attempts judged wrong.
    pub specificity: f64,
    pub held_out_attempts: usize,
    /// Per domain, and `all` pooled: how P("Correct.") on the held-out
    /// attempts reads as a probability and whether it ranks right attempts
    /// above wrong ones. Empty in files from before it was measured.
    #[serde(default)]
    pub calibration: BTreeMap<String, Calibration>,
    /// The same on first attempts alone. A verdict learnt from dialogues
    /// in which "Correct." mostly follows a revision can rank by turn
    /// rather than by correctness; within one turn it cannot.
    #[serde(default)]
    pub calibration_first: BTreeMap<String, Calibration>,
}

fn calibrated_on_all() -> CalibrateOn {
    CalibrateOn::All
}

/// Reads the calibrated threshold saved by the critic stage.
pub fn read_verdict(dir: &std::path::Path) -> Result<VerdictCalibration> {
    let path = dir.join(VERDICT_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}; rerun the critic stage", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl VerdictCalibration {
    /// The thresholds as the critic responder takes them.
    pub fn by_domain(&self) -> BTreeMap<DomainKind, f64> {
        self.thresholds
            .iter()
            .filter_map(|(d, t)| Some((d.parse().ok()?, *t)))
            .collect()
    }
}
