//! The critic's messages in the eval, read the way the teacher writes
//! (`Domain::read_critique`): per model, condition and domain, how many are
//! one of the teacher's forms, how many of the claims they make about wrong
//! attempts hold where the task and the attempt settle them, and the
//! verdict's precision and recall against the verifier. A critic whose
//! messages are not sentences, or whose sentences are false, cannot help
//! the student however its verdict is calibrated; these numbers say which.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::Result;
use didact_data::Task;
use didact_data::tables::{CriticMessageRecord, EvalTurnRow};

/// Counts behind one [`CriticMessageRecord`].
#[derive(Default)]
struct Tally {
    messages: usize,
    well_formed: usize,
    claims: usize,
    claims_true: usize,
    judged: usize,
    judged_correct: usize,
    correct: usize,
    /// Correct attempts judged correct.
    both: usize,
    seeds: BTreeSet<u64>,
}

fn share(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// One record per (model, condition, domain) for every eval turn the critic
/// wrote a message on (`feedback_source == "critic"`) or judged in the
/// `critic` condition, and per (model, condition) with domain `all`. Rows of tasks missing from
/// `tasks` are skipped.
pub fn message_records(
    rows: &[&EvalTurnRow],
    tasks: &HashMap<String, Task>,
) -> Result<Vec<CriticMessageRecord>> {
    let mut tallies: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    // A critic's turn is a message, a verdict, or both: on the last
    // attempt of a dialogue it only judges. Its verdict decides only in the
    // `critic` condition (with the oracle stop, it only ever judges wrong
    // attempts), so only there is it scored.
    let wrote = |r: &EvalTurnRow| r.feedback_source == "critic";
    let decides = |r: &EvalTurnRow| r.condition == "critic" && !r.judged.is_empty();
    for r in rows.iter().filter(|r| wrote(r) || decides(r)) {
        let Some(task) = tasks.get(&r.task_id) else {
            continue;
        };
        let reading = if wrote(r) {
            task.domain
                .domain()
                .read_critique(task, &r.attempt, &r.feedback)?
        } else {
            None
        };
        for domain in [task.domain.name(), "all"] {
            let t = tallies
                .entry((r.model.clone(), r.condition.clone(), domain.to_string()))
                .or_default();
            t.seeds.insert(r.seed);
            if let Some(reading) = reading {
                t.messages += 1;
                t.well_formed += reading.well_formed as usize;
                if let (Some(holds), false) = (reading.claim, r.correct) {
                    t.claims += 1;
                    t.claims_true += holds as usize;
                }
            }
            if decides(r) {
                let judged_correct = r.judged == "correct";
                t.judged += 1;
                t.judged_correct += judged_correct as usize;
                t.correct += r.correct as usize;
                t.both += (judged_correct && r.correct) as usize;
            }
        }
    }
    Ok(tallies
        .into_iter()
        .map(|((model, condition, domain), t)| CriticMessageRecord {
            model,
            condition,
            domain,
            n_messages: t.messages as u32,
            well_formed: share(t.well_formed, t.messages),
            n_claims: t.claims as u32,
            claims_true: share(t.claims_true, t.claims),
            n_judged: t.judged as u32,
            precision: share(t.both, t.judged_correct),
            recall: share(t.both, t.correct),
            n_seeds: t.seeds.len() as u32,
        })
        .collect())
}

/// The report's table of [`message_records`]: every domain for `model`,
/// then the pooled row of each other model.
pub fn section(records: &[CriticMessageRecord], model: &str) -> Result<String> {
    let mut md = String::new();
    if records.is_empty() {
        return Ok(md);
    }
    writeln!(
        md,
        "Its messages read against the teacher's forms (`report/critic_messages.parquet`): \
         well-formed = one of the domain's teacher forms; true = of the claims about wrong \
         attempts that the task and the attempt settle (a move into a wall, a repeated digit, a \
         changed given, a syntax error), the share that hold. Arith's claims and listops' hidden \
         cases need the solution and are not judged.\n"
    )?;
    writeln!(
        md,
        "| student | condition | domain | messages | well-formed % | claims | true % | precision % | recall % |"
    )?;
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|")?;
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{:.1}", 100.0 * x)
        } else {
            "–".into()
        }
    };
    let shown = records.iter().filter(|r| r.model == model).chain(
        records
            .iter()
            .filter(|r| r.model != model && r.domain == "all"),
    );
    for r in shown {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.condition,
            r.domain,
            r.n_messages,
            pct(r.well_formed),
            r.n_claims,
            pct(r.claims_true),
            pct(r.precision),
            pct(r.recall)
        )?;
    }
    md.push('\n');
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use didact_data::{DomainKind, FeedbackLevel};

    fn row(task: &Task, attempt: &str, feedback: &str, judged: &str, seed: u64) -> EvalTurnRow {
        let domain = task.domain.domain();
        EvalTurnRow {
            model: "rl2f".into(),
            condition: "critic".into(),
            seed,
            task_id: task.task_id.clone(),
            domain: task.domain,
            difficulty: task.difficulty,
            turn: 1,
            attempt: attempt.into(),
            verdict: domain.verify(task, attempt).unwrap().name().into(),
            correct: domain.verify(task, attempt).unwrap().is_correct(),
            feedback: feedback.into(),
            feedback_source: "critic".into(),
            judged: judged.into(),
            leak_blocked: false,
        }
    }

    #[test]
    fn counts_forms_claims_and_verdicts_per_domain_and_pooled() {
        let maze = DomainKind::Maze.domain();
        let t = maze.generate(7, 4);
        let mut rng = didact_data::rng::Rng::new(1);
        let wrong = maze.wrong_attempt(&t, &mut rng).unwrap();
        let teacher = maze
            .feedback(&t, &wrong, FeedbackLevel::Explanation)
            .unwrap();
        let rows = [
            row(&t, &wrong, &teacher, "wrong", 0),
            row(&t, &wrong, "column column 3orrect", "correct", 0),
            row(&t, &t.solution, "Correct.", "correct", 1),
            // The teacher's critique of the wrong attempt, said of the
            // solution: well formed, but its claim is about a correct
            // attempt and so not counted among claims about wrong ones.
            row(&t, &t.solution, &teacher, "wrong", 1),
        ];
        // The last attempt: judged, no message.
        let mut last = row(&t, &t.solution, "", "wrong", 1);
        last.feedback_source = String::new();
        // A verdict with the oracle stop decides nothing: not scored.
        let mut oracle_stop = row(&t, &t.solution, "", "wrong", 0);
        oracle_stop.condition = "critic_oracle_stop".into();
        oracle_stop.feedback_source = String::new();
        let mut teacher_row = row(&t, &wrong, &teacher, "", 0);
        teacher_row.feedback_source = "teacher".into();
        let refs: Vec<&EvalTurnRow> = rows
            .iter()
            .chain([&teacher_row, &last, &oracle_stop])
            .collect();
        let tasks = HashMap::from([(t.task_id.clone(), t.clone())]);
        let records = message_records(&refs, &tasks).unwrap();
        assert_eq!(records.len(), 2);
        let all = records.iter().find(|r| r.domain == "all").unwrap();
        let maze_row = records.iter().find(|r| r.domain == "maze").unwrap();
        assert_eq!(all.n_messages, maze_row.n_messages);
        assert_eq!(all.n_messages, 4);
        assert_eq!(all.well_formed, 0.75);
        assert_eq!((all.n_claims, all.claims_true), (1, 1.0));
        assert_eq!(all.n_judged, 5);
        // Judged correct: the garbled one (wrong) and the solution.
        assert_eq!(all.precision, 0.5);
        // Correct attempts: the solution three times, judged correct once.
        assert_eq!(all.recall, 1.0 / 3.0);
        assert_eq!(all.n_seeds, 2);
        let md = section(&records, "rl2f").unwrap();
        assert!(
            md.contains("| rl2f | critic | maze | 4 | 75.0 | 1 | 100.0 | 50.0 | 33.3 |"),
            "{md}"
        );
    }
}
