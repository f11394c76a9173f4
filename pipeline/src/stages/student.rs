//! The `student` stage: RL²F. Starting from the base model, GRPO over whole
//! dialogues with the teacher (group-normalised, turn-discounted rewards,
//! student tokens only). Writes the `student/` checkpoint, every sampled
//! turn to `rollouts.parquet`, and per-iteration metrics to the train log.
//! The RL runner is [`super::rl`], shared with the other RL stages.

use anyhow::Result;
use didact_data::tables;
use didact_data::tables::Table;
use didact_student::teachers::TeacherKind;
use serde_json::json;

use super::common::{Stage, StageContext, StageOutput};
use super::rl::run_rl;
use crate::layout::{BASE_WEIGHTS, ROLLOUTS_FILE, STUDENT_DIR, TASKS_FILE, TOKENIZER_FILE};

pub const STAGE: Stage = Stage {
    name: "student",
    per_seed: true,
    inputs: &[TASKS_FILE, TOKENIZER_FILE, BASE_WEIGHTS],
    config_section: |c| {
        let mut section = match c.teacher.kind {
            TeacherKind::Programmatic => json!({"student": c.student}),
            _ => json!({"student": c.student, "teacher": c.teacher}),
        };
        // In `self` mode RL²F also learns the teacher's turns.
        if c.critic.self_critique().is_some() {
            section["critique_weight"] = json!(c.critic.self_weight);
        }
        section
    },
    run,
};

fn run(ctx: &StageContext) -> Result<StageOutput> {
    crate::with_backend!(ctx.device, |B, device| {
        let mut cfg = ctx.config.student.clone();
        if ctx.config.critic.self_critique().is_some() {
            cfg.critique_weight = ctx.config.critic.self_weight;
        }
        let outcome = run_rl::<B>(ctx, &cfg, "student", STUDENT_DIR, None, &device)?;
        tables::RolloutRow::write(&ctx.run_dir.join(ROLLOUTS_FILE), &outcome.rollouts)?;
        let mut outputs = outcome.outputs;
        outputs.push(ROLLOUTS_FILE.into());
        Ok(StageOutput {
            outputs,
            metrics: outcome.metrics,
            summary: outcome.summary,
        })
    })
}
