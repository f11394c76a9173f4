//! The transfer section of the report, from `transfer/turns.parquet`: the
//! cross-domain matrix (each single-domain student, the base model and the
//! RL²F student on every domain), written as `report/transfer.parquet`.

use anyhow::Result;
use didact_data::tables::{self, MatrixCell, Table};

use crate::layout::{TRANSFER_MATRIX_FILE, TRANSFER_TURNS_FILE};

/// The matrix from the rows of `transfer/turns.parquet`: per model and
/// evaluated domain, outcomes of the answer standing at turns 1 and `k`,
/// compared within the model (gain) and with the base model on the same
/// tasks (transfer).
pub fn matrix(rows: &[tables::EvalTurnRow], k: usize, resamples: usize) -> Vec<MatrixCell> {
    use crate::analysis::{bootstrap_mean_ci, correct_at};
    use std::collections::BTreeMap;
    // (model, domain) → task → (turn, correct) of each attempt.
    type Attempts = Vec<(u32, bool)>;
    let mut dialogues: BTreeMap<(&str, &str), BTreeMap<&str, Attempts>> = BTreeMap::new();
    for r in rows {
        dialogues
            .entry((r.model.as_str(), r.domain.name()))
            .or_default()
            .entry(r.task_id.as_str())
            .or_default()
            .push((r.turn, r.correct));
    }
    // Each task's attempts in turn order, once.
    let dialogues: BTreeMap<(&str, &str), BTreeMap<&str, Vec<bool>>> = dialogues
        .into_iter()
        .map(|(key, tasks)| {
            let tasks = tasks
                .into_iter()
                .map(|(id, mut turns)| {
                    turns.sort_unstable();
                    (id, turns.into_iter().map(|t| t.1).collect())
                })
                .collect();
            (key, tasks)
        })
        .collect();
    let outcome = |correct: &Vec<bool>, t: usize| correct_at(correct, t) as u8 as f64;
    let mut cells = Vec::new();
    for (&(model, domain), tasks) in &dialogues {
        let base = dialogues.get(&("base", domain));
        let gain: Vec<f64> = tasks
            .values()
            .map(|x| outcome(x, k) - outcome(x, 1))
            .collect();
        let vs_base: Vec<f64> = tasks
            .iter()
            .filter_map(|(id, x)| {
                base.and_then(|b| b.get(id))
                    .map(|b| outcome(x, k) - outcome(b, k))
            })
            .collect();
        let n = tasks.len() as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let seed = didact_data::rng::mix_seed(&[model.len() as u64, domain.len() as u64, 0x7A]);
        let delta_ci = bootstrap_mean_ci(&gain, resamples, seed);
        let vs_base_ci = bootstrap_mean_ci(&vs_base, resamples, seed ^ 1);
        cells.push(MatrixCell {
            model: model.to_string(),
            trained_on: match model {
                "base" => "none".into(),
                "rl2f" => "all".into(),
                m => m.strip_prefix("rl2f_").unwrap_or(m).to_string(),
            },
            evaluated_on: domain.to_string(),
            acc_1: tasks.values().map(|x| outcome(x, 1)).sum::<f64>() / n,
            acc_k: tasks.values().map(|x| outcome(x, k)).sum::<f64>() / n,
            delta: mean(&gain),
            delta_ci_low: delta_ci.0,
            delta_ci_high: delta_ci.1,
            vs_base: mean(&vs_base),
            vs_base_ci_low: vs_base_ci.0,
            vs_base_ci_high: vs_base_ci.1,
            n_tasks: tasks.len() as u32,
        });
    }
    // Base first, then the all-domain student, then one row per domain.
    let rank = |m: &str| match m {
        "base" => 0,
        "rl2f" => 1,
        _ => 2,
    };
    cells.sort_by(|a, b| {
        (rank(&a.model), &a.model, &a.evaluated_on).cmp(&(
            rank(&b.model),
            &b.model,
            &b.evaluated_on,
        ))
    });
    cells
}

/// The report's section on the matrix, and `report/transfer.parquet` when
/// the stage computed one.
pub fn report_section(
    run_dir: &std::path::Path,
    out_dir: &std::path::Path,
    k: usize,
) -> Result<String> {
    let path = run_dir.join(TRANSFER_TURNS_FILE);
    let rows = if path.exists() {
        didact_data::tables::EvalTurnRow::read(&path)?
    } else {
        Vec::new()
    };
    let mut md = String::from("## Cross-domain transfer (trained on X, evaluated on Y)\n\n");
    if rows.is_empty() {
        // A matrix from an earlier run would no longer match the report.
        let _ = std::fs::remove_file(out_dir.join(TRANSFER_MATRIX_FILE));
        md.push_str(
            "Not computed in this run: it trains one RL²F student per domain. `just transfer` \
             (or `--set 'transfer.domains=[\"arith\",\"listops\",\"sudoku\",\"maze\"]'`) adds it.\n\n",
        );
        return Ok(md);
    }
    let cells = matrix(&rows, k, 1000);
    let domains: Vec<String> = {
        let mut d: Vec<String> = cells.iter().map(|c| c.evaluated_on.clone()).collect();
        d.sort();
        d.dedup();
        d
    };
    let mut models: Vec<(&str, &str)> = Vec::new();
    for c in &cells {
        if !models.iter().any(|m| m.0 == c.model) {
            models.push((&c.model, &c.trained_on));
        }
    }
    let cell = |m: &str, d: &str| cells.iter().find(|c| c.model == m && c.evaluated_on == d);
    let header = |md: &mut String| {
        md.push_str("| trained on |");
        for d in &domains {
            md.push_str(&format!(" {d} |"));
        }
        md.push_str("\n|---|");
        for _ in &domains {
            md.push_str("---|");
        }
        md.push('\n');
    };
    md.push_str(&format!(
        "Accuracy with the teacher, turn 1 → turn {k} (percent; {} test tasks per domain; `none` is the base model, `all` the RL²F student of the `student` stage):\n\n",
        cells.first().map_or(0, |c| c.n_tasks as usize)
    ));
    header(&mut md);
    for (m, trained_on) in &models {
        md.push_str(&format!("| {trained_on} |"));
        for d in &domains {
            match cell(m, d) {
                Some(c) => md.push_str(&format!(
                    " {:.1} → {:.1} |",
                    100.0 * c.acc_1,
                    100.0 * c.acc_k
                )),
                None => md.push_str(" |"),
            }
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\nDifference from the base model at turn {k} (points, paired over tasks, bootstrap 95% CI); the diagonal is in-domain, the rest is transfer:\n\n"
    ));
    header(&mut md);
    for (m, trained_on) in models.iter().filter(|m| m.0 != "base") {
        md.push_str(&format!("| {trained_on} |"));
        for d in &domains {
            match cell(m, d) {
                Some(c) => md.push_str(&format!(
                    " {:+.1} [{:+.1}, {:+.1}] |",
                    100.0 * c.vs_base,
                    100.0 * c.vs_base_ci_low,
                    100.0 * c.vs_base_ci_high
                )),
                None => md.push_str(" |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    MatrixCell::write(&out_dir.join(TRANSFER_MATRIX_FILE), &cells)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use didact_data::DomainKind;
    use didact_data::tables::EvalTurnRow;

    fn row(model: &str, domain: DomainKind, task: &str, turn: u32, correct: bool) -> EvalTurnRow {
        EvalTurnRow {
            model: model.into(),
            condition: "teacher".into(),
            seed: 0,
            task_id: task.into(),
            domain,
            difficulty: 1,
            turn,
            attempt: String::new(),
            verdict: if correct { "correct" } else { "wrong" }.into(),
            correct,
            feedback: String::new(),
            feedback_source: String::new(),
            judged: String::new(),
            leak_blocked: false,
        }
    }

    #[test]
    fn the_matrix_on_a_hand_made_table() {
        use DomainKind::{Arith, Maze};
        // Two maze tasks and one arith task. Base: maze m1 solved at turn
        // 2, m2 never; arith a1 at turn 1. rl2f_maze: m1 and m2 at turn 1,
        // a1 never.
        let rows = vec![
            row("base", Maze, "m1", 1, false),
            row("base", Maze, "m1", 2, true),
            row("base", Maze, "m2", 1, false),
            row("base", Maze, "m2", 2, false),
            row("base", Arith, "a1", 1, true),
            row("rl2f_maze", Maze, "m1", 1, true),
            row("rl2f_maze", Maze, "m2", 1, true),
            row("rl2f_maze", Arith, "a1", 1, false),
            row("rl2f_maze", Arith, "a1", 2, false),
        ];
        let cells = matrix(&rows, 2, 100);
        let get = |m: &str, d: &str| {
            cells
                .iter()
                .find(|c| c.model == m && c.evaluated_on == d)
                .unwrap()
                .clone()
        };
        let base_maze = get("base", "maze");
        assert_eq!(
            (base_maze.acc_1, base_maze.acc_k, base_maze.delta),
            (0.0, 0.5, 0.5)
        );
        assert_eq!(base_maze.trained_on, "none");
        assert_eq!(base_maze.vs_base, 0.0);
        let maze = get("rl2f_maze", "maze");
        assert_eq!(maze.trained_on, "maze");
        assert_eq!((maze.acc_1, maze.acc_k, maze.delta), (1.0, 1.0, 0.0));
        assert_eq!(maze.vs_base, 0.5, "m2 is solved, m1 was already");
        let arith = get("rl2f_maze", "arith");
        assert_eq!((arith.acc_k, arith.vs_base), (0.0, -1.0));
        assert_eq!(cells[0].model, "base");
    }
}
