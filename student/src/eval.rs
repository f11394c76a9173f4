//! Single-turn accuracy by greedy generation, scored with the domains'
//! verifiers: the validation metric of every training stage.

use std::collections::BTreeMap;

use didact_data::{Dialogue, DomainKind, Role, Task, Tokenizer};

use crate::error::Result;
use crate::generate::{SamplingParams, generate};
use crate::kernels::Kernels;
use crate::model::Llama;

/// The model's first attempts at `tasks`, decoded.
pub fn first_attempts<B: Kernels>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    tasks: &[&Task],
    max_new_tokens: usize,
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<String>> {
    let dialogues: Vec<Dialogue> = tasks
        .iter()
        .map(|t| Dialogue::from_task(&t.prompt))
        .collect();
    student_answers(
        model,
        tokenizer,
        &dialogues,
        max_new_tokens,
        batch_size,
        device,
    )
}

/// The model's greedy next student turn in each of `dialogues`, decoded.
pub fn student_answers<B: Kernels>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    dialogues: &[Dialogue],
    max_new_tokens: usize,
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<String>> {
    let stops = tokenizer.stop_ids();
    let mut out = Vec::with_capacity(dialogues.len());
    for chunk in dialogues.chunks(batch_size.max(1)) {
        let prompts = chunk
            .iter()
            .map(|d| tokenizer.encode_prompt(d, Role::Student))
            .collect::<didact_data::Result<Vec<_>>>()?;
        let gens = generate(
            model,
            &prompts,
            &stops,
            tokenizer.pad_id(),
            &SamplingParams::greedy(max_new_tokens),
            0,
            device,
        );
        for g in gens {
            out.push(tokenizer.decode(&g.tokens)?);
        }
    }
    Ok(out)
}

/// Correct and total first attempts per domain.
pub fn accuracy_by_domain<B: Kernels>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    tasks: &[&Task],
    max_new_tokens: usize,
    batch_size: usize,
    device: &B::Device,
) -> Result<BTreeMap<DomainKind, (usize, usize)>> {
    let attempts = first_attempts(model, tokenizer, tasks, max_new_tokens, batch_size, device)?;
    accuracy_of(tasks, &attempts)
}

/// Correct and total `answers` (one per task) per domain, by the verifiers.
pub fn accuracy_of(
    tasks: &[&Task],
    answers: &[String],
) -> Result<BTreeMap<DomainKind, (usize, usize)>> {
    let mut acc: BTreeMap<DomainKind, (usize, usize)> = BTreeMap::new();
    for (task, attempt) in tasks.iter().zip(answers) {
        let correct = task.domain.domain().verify(task, attempt)?.is_correct();
        let e = acc.entry(task.domain).or_default();
        e.0 += correct as usize;
        e.1 += 1;
    }
    Ok(acc)
}
