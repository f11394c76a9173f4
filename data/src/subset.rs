//! Evaluated subsets: every "n tasks per domain" a stage draws (the test
//! tasks of `eval`, validation during training, critic calibration, SML
//! and transfer evaluation) comes from [`stratified`], so that no subset
//! inherits the order of `tasks.parquet` (sorted by difficulty, where the
//! first n rows are the easiest tasks).

use std::collections::BTreeMap;

use crate::domain::{DomainKind, Task};
use crate::rng::{Rng, fnv1a, mix_seed};

/// Up to `per_domain` tasks of each domain (all of them for 0), drawn by a
/// seeded shuffle stratified by difficulty: each difficulty gets its share
/// of the domain's quota in proportion to its share of the domain's tasks
/// (largest remainders round), so a subset covers every difficulty as the
/// full table does. The same `tasks`, `per_domain` and `seed` give the
/// same subset; tasks keep their order in `tasks` within the result.
pub fn stratified(tasks: &[Task], per_domain: usize, seed: u64) -> Vec<&Task> {
    let mut strata: BTreeMap<DomainKind, BTreeMap<u32, Vec<usize>>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        strata
            .entry(t.domain)
            .or_default()
            .entry(t.difficulty)
            .or_default()
            .push(i);
    }
    let mut chosen = Vec::new();
    for (domain, by_difficulty) in strata {
        let total: usize = by_difficulty.values().map(Vec::len).sum();
        let n = if per_domain == 0 {
            total
        } else {
            per_domain.min(total)
        };
        let quota = quotas(&by_difficulty, n, total);
        for ((difficulty, mut indices), quota) in by_difficulty.into_iter().zip(quota) {
            let mut rng = Rng::new(mix_seed(&[
                seed,
                fnv1a(domain.name().as_bytes()),
                difficulty as u64,
            ]));
            rng.shuffle(&mut indices);
            indices.truncate(quota);
            chosen.extend(indices);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &tasks[i]).collect()
}

/// Proportional allocation of `n` among strata of the given sizes
/// (summing to `total`): floors first, then one more for the largest
/// remainders, never more than a stratum holds.
fn quotas(strata: &BTreeMap<u32, Vec<usize>>, n: usize, total: usize) -> Vec<usize> {
    let sizes: Vec<usize> = strata.values().map(Vec::len).collect();
    if total == 0 {
        return vec![0; sizes.len()];
    }
    let mut quota: Vec<usize> = sizes.iter().map(|&s| s * n / total).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // Largest remainder first; ties to the earlier (easier) difficulty.
    order.sort_by_key(|&i| std::cmp::Reverse((sizes[i] * n) % total));
    let mut left = n - quota.iter().sum::<usize>();
    for &i in order.iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if quota[i] < sizes[i] {
            quota[i] += 1;
            left -= 1;
        }
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(domain: DomainKind, difficulty: u32, i: usize) -> Task {
        Task::new(
            domain,
            difficulty,
            i as u64,
            format!("{domain} {difficulty} {i}"),
            "x".into(),
            "{}".into(),
        )
    }

    /// A table sorted by difficulty, as `tasks.parquet` is: 100 easy, 60
    /// medium and 40 hard tasks in each of two domains.
    fn sorted_table() -> Vec<Task> {
        let mut tasks = Vec::new();
        for domain in [DomainKind::Sudoku, DomainKind::Maze] {
            let mut i = 0;
            for (difficulty, count) in [(2, 100), (3, 60), (4, 40)] {
                for _ in 0..count {
                    tasks.push(task(domain, difficulty, i));
                    i += 1;
                }
            }
        }
        tasks
    }

    fn counts(subset: &[&Task], domain: DomainKind) -> BTreeMap<u32, usize> {
        let mut c = BTreeMap::new();
        for t in subset.iter().filter(|t| t.domain == domain) {
            *c.entry(t.difficulty).or_default() += 1;
        }
        c
    }

    #[test]
    fn every_difficulty_is_covered_in_proportion() {
        let tasks = sorted_table();
        let subset = stratified(&tasks, 50, 7);
        assert_eq!(subset.len(), 100);
        for domain in [DomainKind::Sudoku, DomainKind::Maze] {
            // 50 of 200: exactly a quarter of each difficulty.
            assert_eq!(
                counts(&subset, domain),
                BTreeMap::from([(2, 25), (3, 15), (4, 10)])
            );
        }
        // The first-n rule this replaces took only the easiest tasks.
        let first: Vec<&Task> = tasks.iter().take(50).collect();
        assert_eq!(
            counts(&first, DomainKind::Sudoku),
            BTreeMap::from([(2, 50)])
        );
    }

    #[test]
    fn quotas_round_by_largest_remainder_and_sum_to_n() {
        let tasks = sorted_table();
        for n in [1, 3, 7, 33, 199, 200, 500] {
            let subset = stratified(&tasks, n, 1);
            let c = counts(&subset, DomainKind::Maze);
            let got: usize = c.values().sum();
            assert_eq!(got, n.min(200), "n = {n}");
            for (d, size) in [(2, 100.0), (3, 60.0), (4, 40.0)] {
                let expected = size * n.min(200) as f64 / 200.0;
                let have = *c.get(&d).unwrap_or(&0) as f64;
                assert!(
                    (have - expected).abs() < 1.0,
                    "n {n}, difficulty {d}: {have} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn seeded_deterministic_and_zero_means_all() {
        let tasks = sorted_table();
        let ids = |s: Vec<&Task>| s.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(stratified(&tasks, 20, 3)),
            ids(stratified(&tasks, 20, 3))
        );
        assert_ne!(
            ids(stratified(&tasks, 20, 3)),
            ids(stratified(&tasks, 20, 4))
        );
        assert_eq!(stratified(&tasks, 0, 3).len(), tasks.len());
        assert_eq!(stratified(&[], 5, 3).len(), 0);
        // Not the first rows of each stratum.
        let subset = stratified(&tasks, 20, 3);
        assert!(subset.iter().any(|t| t.seed >= 10 && t.difficulty == 2));
    }
}
