//! The metrics of `didact analyse`, as pure functions of the evaluation
//! table so that each can be checked on a hand-made table with known
//! answers.
//!
//! A *trajectory* is one (model, condition, seed, task) dialogue: the
//! attempts in order and whether each was correct. Accuracy at turn t is
//! the correctness of the answer standing at t (the last attempt made by
//! then); with an oracle stop that is "solved at or before t".

use std::collections::BTreeMap;

use didact_data::rng::Rng;

/// One dialogue of the evaluation grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The training seed of the model that spoke (0 in a single-seed run).
    pub training_seed: u64,
    pub task: usize,
    pub attempts: Vec<String>,
    pub correct: Vec<bool>,
    /// The responder's verdict on each attempt, when it was asked.
    pub judged: Vec<Option<bool>>,
}

impl Trajectory {
    /// Whether the answer standing at turn `t` (1-based) is correct.
    pub fn correct_at(&self, t: usize) -> bool {
        correct_at(&self.correct, t)
    }
}

/// Whether the answer standing at turn `t` (the last of `attempts` made by
/// then) is correct. With an oracle stop this is "solved at or before t";
/// without one (the critic condition) a dialogue can move away from a
/// correct answer, and this counts the answer it ends up with.
pub fn correct_at(attempts: &[bool], t: usize) -> bool {
    let made = attempts.len().min(t);
    made > 0 && attempts[made - 1]
}

/// The SCoRe gains between turn 1 and turn `k`: Δ = acc@k − acc@1, Δi→c
/// (wrong at 1, right at k) and Δc→i (right at 1, wrong at k), as
/// fractions of all trajectories; Δ = Δi→c − Δc→i.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gains {
    pub delta: f64,
    pub i_to_c: f64,
    pub c_to_i: f64,
}

pub fn gains(trajectories: &[&Trajectory], k: usize) -> Gains {
    let n = trajectories.len().max(1) as f64;
    let (mut i_to_c, mut c_to_i) = (0usize, 0usize);
    for x in trajectories {
        match (x.correct_at(1), x.correct_at(k)) {
            (false, true) => i_to_c += 1,
            (true, false) => c_to_i += 1,
            _ => {}
        }
    }
    Gains {
        delta: (i_to_c as f64 - c_to_i as f64) / n,
        i_to_c: i_to_c as f64 / n,
        c_to_i: c_to_i as f64 / n,
    }
}

/// Mean normalised edit distance between consecutive attempts (0: the same
/// answer again, 1: nothing in common), and the rate of repeating the
/// previous answer exactly. `None` when no trajectory has two attempts.
pub fn revision_stats(trajectories: &[&Trajectory]) -> Option<(f64, f64)> {
    let (mut ratio, mut repeats, mut pairs) = (0.0, 0usize, 0usize);
    for x in trajectories {
        for w in x.attempts.windows(2) {
            let (a, b): (Vec<char>, Vec<char>) = (w[0].chars().collect(), w[1].chars().collect());
            let longest = a.len().max(b.len());
            ratio += if longest == 0 {
                0.0
            } else {
                levenshtein(&a, &b) as f64 / longest as f64
            };
            repeats += (w[0] == w[1]) as usize;
            pairs += 1;
        }
    }
    (pairs > 0).then(|| (ratio / pairs as f64, repeats as f64 / pairs as f64))
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != cb) as usize)
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Precision and recall of a responder's "correct" verdicts against the
/// verifier, over every attempt it judged: precision = P(correct | judged
/// correct), recall = P(judged correct | correct). `None` where undefined.
pub fn verdict_precision_recall(trajectories: &[&Trajectory]) -> (Option<f64>, Option<f64>) {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for x in trajectories {
        for (c, j) in x.correct.iter().zip(&x.judged) {
            match (c, j) {
                (true, Some(true)) => tp += 1,
                (false, Some(true)) => fp += 1,
                (true, Some(false)) => fn_ += 1,
                _ => {}
            }
        }
    }
    let ratio = |a: usize, b: usize| (a + b > 0).then(|| a as f64 / (a + b) as f64);
    (ratio(tp, fp), ratio(tp, fn_))
}

/// One value per (training seed, task): the unit every interval of the
/// report resamples. Trajectories of the same task and training seed
/// (several sampling seeds) are averaged into one value first.
pub type SeedTaskValues = BTreeMap<u64, BTreeMap<usize, f64>>;

/// `f` of each trajectory, averaged per (training seed, task).
pub fn seed_task_values(
    trajectories: &[&Trajectory],
    f: &dyn Fn(&Trajectory) -> f64,
) -> SeedTaskValues {
    let mut sums: BTreeMap<u64, BTreeMap<usize, (f64, usize)>> = BTreeMap::new();
    for x in trajectories {
        let e = sums
            .entry(x.training_seed)
            .or_default()
            .entry(x.task)
            .or_default();
        e.0 += f(x);
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(s, tasks)| {
            (
                s,
                tasks
                    .into_iter()
                    .map(|(t, (sum, n))| (t, sum / n as f64))
                    .collect(),
            )
        })
        .collect()
}

/// `a − b` on the (training seed, task) pairs both have: a paired
/// difference.
pub fn paired(a: &SeedTaskValues, b: &SeedTaskValues) -> SeedTaskValues {
    a.iter()
        .filter_map(|(s, ta)| {
            let tb = b.get(s)?;
            let d: BTreeMap<usize, f64> = ta
                .iter()
                .filter_map(|(t, va)| tb.get(t).map(|vb| (*t, va - vb)))
                .collect();
            (!d.is_empty()).then_some((*s, d))
        })
        .collect()
}

/// The mean over every (training seed, task) value: with the same tasks
/// for every seed, the mean of the per-seed means.
pub fn mean_of(values: &SeedTaskValues) -> f64 {
    let (sum, n) = values
        .values()
        .flat_map(|t| t.values())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Distinct tasks and training seeds behind `values`.
pub fn counts(values: &SeedTaskValues) -> (usize, usize) {
    let mut tasks: Vec<usize> = values.values().flat_map(|t| t.keys().copied()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    (tasks.len(), values.len())
}

/// A two-level percentile bootstrap 95% interval of [`mean_of`]: each
/// resample draws the training seeds with replacement, then, within each
/// drawn seed, its tasks with replacement. Both sources of variation are
/// in the interval: which tasks were evaluated and which training run
/// produced the models. With one training seed it is the task bootstrap.
/// Deterministic under `seed`; NaN bounds without values.
pub fn two_level_ci(values: &SeedTaskValues, resamples: usize, seed: u64) -> (f64, f64) {
    let seeds: Vec<Vec<f64>> = values
        .values()
        .map(|t| t.values().copied().collect::<Vec<f64>>())
        .filter(|v| !v.is_empty())
        .collect();
    if seeds.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut sum, mut n) = (0.0, 0usize);
            for _ in 0..seeds.len() {
                let tasks = &seeds[rng.below(seeds.len() as u64) as usize];
                for _ in 0..tasks.len() {
                    sum += tasks[rng.below(tasks.len() as u64) as usize];
                }
                n += tasks.len();
            }
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

/// A two-level percentile bootstrap 95% interval of `mean(num) / mean(den)`
/// over the (training seed, task) units both have, each resample drawing
/// the same units for both (seeds, then tasks within each): the interval of
/// a ratio of two paired means, such as the critic's gain over the
/// teacher's. Where more than 2.5% of resamples give a denominator of the
/// other sign than the whole sample's, or zero, the denominator's own
/// interval holds zero: the ratio is unbounded there, and the bounds are NaN
/// rather than an interval that hides it. Deterministic under `seed`.
pub fn two_level_ratio_ci(
    num: &SeedTaskValues,
    den: &SeedTaskValues,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    let seeds: Vec<Vec<(f64, f64)>> = num
        .iter()
        .filter_map(|(s, tn)| {
            let td = den.get(s)?;
            let pairs: Vec<(f64, f64)> = tn
                .iter()
                .filter_map(|(t, n)| td.get(t).map(|d| (*n, *d)))
                .collect();
            (!pairs.is_empty()).then_some(pairs)
        })
        .collect();
    if seeds.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let sign = seeds.iter().flatten().map(|p| p.1).sum::<f64>().signum();
    let mut rng = Rng::new(seed);
    let mut ratios: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let (mut n, mut d) = (0.0, 0.0);
            for _ in 0..seeds.len() {
                let pairs = &seeds[rng.below(seeds.len() as u64) as usize];
                for _ in 0..pairs.len() {
                    let (a, b) = pairs[rng.below(pairs.len() as u64) as usize];
                    n += a;
                    d += b;
                }
            }
            (d * sign > 1e-12).then(|| n / d)
        })
        .collect();
    if (ratios.len() as f64) < 0.975 * resamples as f64 {
        return (f64::NAN, f64::NAN);
    }
    ratios.sort_by(f64::total_cmp);
    let m = ratios.len();
    let at = |q: f64| ratios[((q * (m - 1) as f64).round() as usize).min(m - 1)];
    (at(0.025), at(0.975))
}

/// Whether a 95% interval lies entirely on one side of zero.
pub fn excludes_zero(lo: f64, hi: f64) -> bool {
    (lo > 0.0 && hi > 0.0) || (lo < 0.0 && hi < 0.0)
}

/// A percentile bootstrap 95% interval of the mean of `values` (one per
/// task, e.g. a paired difference between two models on the same task).
/// Deterministic under `seed`; NaN bounds without values.
pub fn bootstrap_mean_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if values.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len();
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| values[rng.below(n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

/// Per (sampling seed, task index), the correctness of each attempt made,
/// in order: one model under one condition in `eval`.
pub type Outcomes = BTreeMap<(usize, usize), Vec<bool>>;

/// Accuracy of the answer standing at turns `1..=turns` over `dialogues`,
/// each the correctness of its attempts in order ([`correct_at`]).
pub fn accuracy_by_turn<'a>(
    dialogues: impl Iterator<Item = &'a [bool]> + Clone,
    turns: usize,
) -> Vec<f64> {
    let n = dialogues.clone().count().max(1) as f64;
    (1..=turns)
        .map(|t| dialogues.clone().filter(|a| correct_at(a, t)).count() as f64 / n)
        .collect()
}

/// Accuracy by turn of dialogues that stop when solved (an oracle stop, as
/// in training validation): the share solved at or before each turn.
pub fn solved_by_turn(solved_turns: &[Option<usize>], turns: usize) -> Vec<f64> {
    let n = solved_turns.len().max(1) as f64;
    (1..=turns)
        .map(|t| {
            solved_turns
                .iter()
                .filter(|s| s.is_some_and(|s| s <= t))
                .count() as f64
                / n
        })
        .collect()
}

/// Accuracy of the answer standing at turns `1..=turns`.
pub fn cumulative(outcomes: &Outcomes, turns: usize) -> Vec<f64> {
    accuracy_by_turn(outcomes.values().map(Vec::as_slice), turns)
}

/// Correct at `turn` per task, averaged over sampling seeds, as the
/// report's statistics take it (one training seed, labelled 0).
pub fn outcome_values(outcomes: &Outcomes, turn: usize) -> SeedTaskValues {
    let trajectories: Vec<Trajectory> = outcomes
        .iter()
        .map(|(&(_, task), correct)| Trajectory {
            training_seed: 0,
            task,
            attempts: Vec::new(),
            correct: correct.clone(),
            judged: Vec::new(),
        })
        .collect();
    let refs: Vec<&Trajectory> = trajectories.iter().collect();
    seed_task_values(&refs, &|x| x.correct_at(turn) as u8 as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(task: usize, attempts: &[(&str, bool)]) -> Trajectory {
        Trajectory {
            training_seed: 0,
            task,
            attempts: attempts.iter().map(|a| a.0.to_string()).collect(),
            correct: attempts.iter().map(|a| a.1).collect(),
            judged: vec![None; attempts.len()],
        }
    }

    /// The worked example: five tasks, K = 3.
    /// 1: right at once.            2: wrong, wrong, right (i→c).
    /// 3: right, then talked out of it (c→i).   4: never right.
    /// 5: wrong, right (i→c, stops at turn 2).
    fn worked() -> Vec<Trajectory> {
        vec![
            t(1, &[("7", true)]),
            t(2, &[("5", false), ("5", false), ("9", true)]),
            t(3, &[("4", true), ("40", false)]),
            t(4, &[("1", false), ("2", false), ("3", false)]),
            t(5, &[("12", false), ("13", true)]),
        ]
    }

    #[test]
    fn accuracy_and_gains_on_the_worked_example() {
        let w = worked();
        let refs: Vec<&Trajectory> = w.iter().collect();
        let acc: Vec<f64> = (1..=3)
            .map(|t| mean_of(&seed_task_values(&refs, &|x| x.correct_at(t) as u8 as f64)))
            .collect();
        assert_eq!(acc, vec![0.4, 0.4, 0.6]);
        let g = gains(&refs, 3);
        assert!((g.i_to_c - 0.4).abs() < 1e-12);
        assert!((g.c_to_i - 0.2).abs() < 1e-12);
        assert!((g.delta - 0.2).abs() < 1e-12);
    }

    #[test]
    fn revisions_count_repeats_and_edit_distance() {
        let w = worked();
        let refs: Vec<&Trajectory> = w.iter().collect();
        let (ratio, repeat) = revision_stats(&refs).unwrap();
        // Pairs: (5,5) 0, (5,9) 1, (4,40) 1/2, (1,2) 1, (2,3) 1, (12,13) 1/2.
        assert!((repeat - 1.0 / 6.0).abs() < 1e-12);
        assert!((ratio - 4.0 / 6.0).abs() < 1e-12, "{ratio}");
        assert_eq!(revision_stats(&refs[..1]), None);
    }

    #[test]
    fn verdicts_against_the_verifier() {
        let mut x = t(1, &[("a", false), ("b", true), ("c", true), ("d", false)]);
        x.judged = vec![Some(true), Some(true), Some(false), None];
        let (p, r) = verdict_precision_recall(&[&x]);
        assert_eq!(p, Some(0.5));
        assert_eq!(r, Some(0.5));
        assert_eq!(
            verdict_precision_recall(&[&t(1, &[("a", true)])]),
            (None, None)
        );
    }

    #[test]
    fn seed_task_values_average_sampling_seeds_and_pair_by_seed_and_task() {
        let mut xs = [
            t(1, &[("a", true)]),
            t(1, &[("a", false)]),
            t(2, &[("b", false)]),
        ];
        xs[2].training_seed = 5;
        let refs: Vec<&Trajectory> = xs.iter().collect();
        let v = seed_task_values(&refs, &|x| x.correct_at(1) as u8 as f64);
        assert_eq!(v[&0][&1], 0.5);
        assert_eq!(v[&5][&2], 0.0);
        assert_eq!(counts(&v), (2, 2));
        let ones: SeedTaskValues = BTreeMap::from([
            (0, BTreeMap::from([(1, 1.0), (9, 1.0)])),
            (5, BTreeMap::from([(2, 1.0)])),
        ]);
        let d = paired(&ones, &v);
        // Task 9 has no partner; (0,1): 1 - 0.5, (5,2): 1 - 0.
        assert_eq!(d[&0], BTreeMap::from([(1, 0.5)]));
        assert_eq!(mean_of(&d), 0.75);
        assert!(excludes_zero(0.1, 0.2) && excludes_zero(-0.2, -0.1));
        assert!(!excludes_zero(-0.1, 0.2) && !excludes_zero(0.0, 0.2));
    }

    #[test]
    fn the_two_level_bootstrap_widens_with_disagreeing_seeds() {
        // Two seeds, 200 tasks each. Same within-seed spread; in one case
        // the seeds agree (means 0.3 and 0.3), in the other they do not
        // (0.1 and 0.5): the second interval must be much wider, since the
        // training runs themselves disagree.
        let seeded = |means: [f64; 2]| -> SeedTaskValues {
            let mut rng = Rng::new(3);
            means
                .iter()
                .enumerate()
                .map(|(s, &m)| {
                    (
                        s as u64,
                        (0..200)
                            .map(|i| (i, (rng.unit() < m) as u8 as f64))
                            .collect(),
                    )
                })
                .collect()
        };
        let agree = seeded([0.3, 0.3]);
        let disagree = seeded([0.1, 0.5]);
        let (a_lo, a_hi) = two_level_ci(&agree, 1000, 1);
        let (d_lo, d_hi) = two_level_ci(&disagree, 1000, 1);
        assert!(a_lo < mean_of(&agree) && mean_of(&agree) < a_hi);
        assert!(
            d_hi - d_lo > 2.0 * (a_hi - a_lo),
            "{d_lo} {d_hi} vs {a_lo} {a_hi}"
        );
        // One seed: the task bootstrap, which covers the true rate about
        // 95% of the time.
        let mut rng = Rng::new(11);
        let mut covered = 0;
        for rep in 0..200 {
            let v: SeedTaskValues = BTreeMap::from([(
                0,
                (0..200)
                    .map(|i| (i, (rng.unit() < 0.3) as u8 as f64))
                    .collect(),
            )]);
            let (lo, hi) = two_level_ci(&v, 400, rep);
            covered += (lo <= 0.3 && 0.3 <= hi) as usize;
        }
        assert!((180..=198).contains(&covered), "coverage {covered} of 200");
        assert!(two_level_ci(&BTreeMap::new(), 10, 1).0.is_nan());
    }

    #[test]
    fn ratio_interval_covers_the_ratio_and_refuses_a_zero_denominator() {
        // Critic gains half the teacher's on every unit, over two seeds.
        let unit = |v: f64| -> SeedTaskValues {
            (0..2u64)
                .map(|s| {
                    (
                        s,
                        (0..40usize).map(|t| (t, v * (1 + t % 3) as f64)).collect(),
                    )
                })
                .collect()
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let (lo, hi) = two_level_ratio_ci(&unit(0.1), &unit(0.2), 500, 3);
        assert!(close(lo, 0.5) && close(hi, 0.5), "[{lo}, {hi}]");
        // Noisy numerator: the interval has width and holds the point ratio.
        let mut num = unit(0.1);
        for (i, v) in num.get_mut(&0).unwrap().values_mut().enumerate() {
            *v += if i % 2 == 0 { 0.3 } else { -0.3 };
        }
        let den = unit(0.2);
        let point = mean_of(&num) / mean_of(&den);
        let (lo, hi) = two_level_ratio_ci(&num, &den, 500, 3);
        assert!(
            lo < point && point < hi && hi - lo > 0.01,
            "{point} in [{lo}, {hi}]"
        );
        // A denominator of zeros has no ratio at all.
        let zero = unit(0.0);
        let (lo, hi) = two_level_ratio_ci(&num, &zero, 500, 3);
        assert!(lo.is_nan() && hi.is_nan());
        // Nor has one whose mean is nonzero but not told apart from zero:
        // resamples flip its sign.
        let mut noisy = unit(0.0);
        for (i, v) in noisy.get_mut(&1).unwrap().values_mut().enumerate() {
            *v = if i % 2 == 0 { 1.0 } else { -0.9 };
        }
        assert!(mean_of(&noisy) > 0.0);
        let (lo, hi) = two_level_ratio_ci(&num, &noisy, 500, 3);
        assert!(lo.is_nan() && hi.is_nan(), "[{lo}, {hi}]");
    }

    #[test]
    fn paired_bootstrap_brackets_the_mean_and_collapses_without_spread() {
        assert_eq!(bootstrap_mean_ci(&[0.5; 10], 200, 1), (0.5, 0.5));
        // 30 of 100 paired differences are +1, 10 are -1: mean 0.2.
        let d: Vec<f64> = (0..100)
            .map(|i| {
                if i < 30 {
                    1.0
                } else if i < 40 {
                    -1.0
                } else {
                    0.0
                }
            })
            .collect();
        let (lo, hi) = bootstrap_mean_ci(&d, 1000, 7);
        assert!(lo < 0.2 && 0.2 < hi && lo > 0.05 && hi < 0.35, "{lo} {hi}");
        assert!(bootstrap_mean_ci(&[], 10, 1).0.is_nan());
    }
}
