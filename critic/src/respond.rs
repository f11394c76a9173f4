//! The critic in the teacher's seat: it reads the dialogue (task, attempts,
//! earlier critiques; never the privileged information), writes a
//! critique, and its critique of "Correct." is its verdict.

use burn::tensor::backend::Backend;
use didact_data::domain::CORRECT_MESSAGE;
use didact_data::leak::normalise;
use didact_data::{Role, Tokenizer};
use didact_student::Llama;
use didact_student::eval::stop_ids;
use didact_student::generate::{SamplingParams, generate};
use didact_student::parallel;
use didact_student::rollout::{Reply, Request, Responder};

/// Whether a critique is the verdict "correct".
pub fn says_correct(critique: &str) -> bool {
    normalise(critique) == normalise(CORRECT_MESSAGE)
}

/// Generates critiques greedily with the critic model.
pub struct Critic<'a, B: Backend> {
    pub model: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    /// Token budget of one critique.
    pub max_tokens: usize,
    /// `true`: the verifier ends dialogues (the critic only answers wrong
    /// attempts); `false`: the critic's verdict does.
    pub oracle_stop: bool,
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: Backend> Responder for Critic<'_, B> {
    fn oracle_stop(&self) -> bool {
        self.oracle_stop
    }

    fn respond(&mut self, requests: &[Request<'_>]) -> didact_student::Result<Vec<Reply>> {
        let teacher = self.tokenizer.role_id(Role::Teacher);
        let context = self.model.config.max_position_embeddings;
        let stops = stop_ids(self.tokenizer);
        let prompts: Vec<Vec<u32>> = requests
            .iter()
            .map(|r| {
                let mut p = r.context.to_vec();
                if r.stop != Some(teacher) {
                    p.push(teacher);
                }
                p
            })
            .collect();
        // Longest first, so that each batch's shared budget is set by
        // prompts of similar length.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(prompts[i].len()), i));
        let mut texts = vec![String::new(); prompts.len()];
        let chunks: Vec<&[usize]> = order.chunks(self.batch_size.max(1)).collect();
        // Batches run on parallel workers, one per core (see
        // `didact_student::parallel`).
        let workers = parallel::workers();
        let model = self.model;
        let device = &self.device;
        let pad = self.tokenizer.pad_id();
        let max_tokens = self.max_tokens;
        let jobs: Vec<&[usize]> = chunks
            .iter()
            .flat_map(|c| {
                // Split big batches so that every core has work.
                let size = c.len().div_ceil(workers.min(c.len()).max(1)).max(1);
                c.chunks(size).collect::<Vec<_>>()
            })
            .collect();
        let results = parallel::map_parts(&parallel::split(&jobs, workers), |part| {
            part.iter()
                .map(|chunk| {
                    let longest = chunk.iter().map(|&i| prompts[i].len()).max().unwrap_or(0);
                    let budget = max_tokens.min(context.saturating_sub(longest));
                    if budget == 0 {
                        return Vec::new();
                    }
                    let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
                    generate(
                        model,
                        &batch,
                        &stops,
                        pad,
                        &SamplingParams::greedy(budget),
                        0,
                        device,
                    )
                })
                .collect::<Vec<_>>()
        });
        for (chunk, gens) in parallel::split(&jobs, workers)
            .iter()
            .flatten()
            .zip(results.into_iter().flatten())
        {
            for (&i, g) in chunk.iter().zip(gens) {
                texts[i] = self.tokenizer.decode(&g.tokens)?.trim().to_string();
            }
        }
        Ok(texts
            .into_iter()
            .map(|message| Reply {
                judged_correct: says_correct(&message),
                message,
                leak_blocked: false,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_the_correct_message_however_written() {
        assert!(says_correct("Correct."));
        assert!(says_correct(" correct "));
        assert!(!says_correct("Incorrect."));
        assert!(!says_correct("Correct. But the tens digit is wrong."));
        assert!(!says_correct(""));
    }
}
