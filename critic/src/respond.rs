//! The critic in the teacher's seat: it reads the dialogue (task, attempts,
//! earlier critiques; never the privileged information), judges the
//! attempt, and writes a critique.
//!
//! The verdict is the critic's probability of answering "Correct.",
//! compared with a threshold calibrated on held-out attempts, rather than
//! whatever greedy decoding happens to produce: correct attempts are a
//! minority of the critic's training data, so greedy critiques almost
//! never say "Correct.", and a critic that never says so talks the student
//! out of its right answers.

use std::collections::BTreeMap;

use didact_data::domain::{CORRECT_MESSAGE, WRONG_MESSAGE};
use didact_data::leak::normalise;
use didact_data::{DomainKind, Role, Tokenizer};
use didact_student::Llama;
use didact_student::generate::{SamplingParams, continuation_logprob, generate};
use didact_student::kernels::Kernels;
use didact_student::parallel;
use didact_student::rollout::{Reply, Request, Responder};

/// Whether a critique is the verdict "correct".
pub fn says_correct(critique: &str) -> bool {
    normalise(critique) == normalise(CORRECT_MESSAGE)
}

/// Generates critiques greedily with the critic model.
pub struct Critic<'a, B: Kernels> {
    pub model: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    /// Token budget of one critique.
    pub max_tokens: usize,
    /// `true`: the verifier ends dialogues (the critic only answers wrong
    /// attempts, always with its greedy critique); `false`: the critic's
    /// verdict does.
    pub oracle_stop: bool,
    /// An attempt is judged correct when P("Correct.") reaches its
    /// domain's threshold here (the domain shows in the prompt, so this
    /// uses nothing privileged), or `default_threshold` for other domains.
    pub thresholds: BTreeMap<DomainKind, f64>,
    pub default_threshold: f64,
    pub batch_size: usize,
    pub device: B::Device,
}

impl<B: Kernels> Responder for Critic<'_, B> {
    fn oracle_stop(&self) -> bool {
        self.oracle_stop
    }

    fn respond(&mut self, requests: &[Request<'_>]) -> didact_student::Result<Vec<Reply>> {
        let context = self.model.config.max_position_embeddings;
        let stops = self.tokenizer.stop_ids();
        // The critic learnt from dialogues rendered as "<|student|> attempt
        // <|teacher|>"; whatever token the student ended its turn with
        // (often `<|end|>`) is replaced by the teacher's, so that the critic
        // reads what it was trained on.
        let prompts: Vec<Vec<u32>> = requests
            .iter()
            .map(|r| critic_prompt(self.tokenizer, r.context, r.stop))
            .collect::<didact_data::Result<_>>()?;
        let correct = self.tokenizer.encode(CORRECT_MESSAGE)?;
        let p_correct = self.p_correct(&prompts, &correct);
        let judged: Vec<bool> = p_correct
            .iter()
            .zip(requests)
            .map(|(p, r)| *p >= self.threshold(r.task.domain))
            .collect();
        // Critiques are written for the attempts judged wrong and, with an
        // oracle stop (which asks only about wrong attempts, whatever the
        // verdict), for every attempt: there the critique is all the critic
        // contributes. Longest prompts first, so that each batch's budget
        // is set by similar ones.
        let written: Vec<bool> = judged.iter().map(|&j| self.oracle_stop || !j).collect();
        let mut order: Vec<usize> = (0..prompts.len()).filter(|&i| written[i]).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(prompts[i].len()), i));
        let mut texts: Vec<String> = written
            .iter()
            .map(|&w| {
                if w {
                    String::new()
                } else {
                    CORRECT_MESSAGE.to_string()
                }
            })
            .collect();
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
        let parts = parallel::split(&jobs, workers);
        let results = parallel::map_parts(&parts, |part| {
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
        for (chunk, gens) in parts.iter().flatten().zip(results.into_iter().flatten()) {
            for (&i, g) in chunk.iter().zip(gens) {
                texts[i] = self.tokenizer.decode(&g.tokens)?.trim().to_string();
            }
        }
        Ok(texts
            .into_iter()
            .zip(judged)
            .zip(written)
            .map(|((message, judged_correct), written)| {
                // Judged wrong yet greedily "Correct." (or nothing): the
                // verdict stands, said with the verdict-only message.
                let message = if written
                    && (message.is_empty() || (!judged_correct && says_correct(&message)))
                {
                    WRONG_MESSAGE.to_string()
                } else {
                    message
                };
                Reply {
                    judged_correct,
                    message,
                    leak_blocked: false,
                }
            })
            .collect())
    }
}

impl<B: Kernels> Critic<'_, B> {
    /// The verdict threshold for a domain.
    pub fn threshold(&self, domain: DomainKind) -> f64 {
        self.thresholds
            .get(&domain)
            .copied()
            .unwrap_or(self.default_threshold)
    }

    /// P(the critique is "Correct.") for each prompt, batched on all cores.
    pub fn p_correct(&self, prompts: &[Vec<u32>], correct: &[u32]) -> Vec<f64> {
        // A prompt too long for the context keeps its most recent tokens.
        let limit = self
            .model
            .config
            .max_position_embeddings
            .saturating_sub(correct.len())
            .max(1);
        let prompts: Vec<&[u32]> = prompts
            .iter()
            .map(|p| &p[p.len().saturating_sub(limit)..])
            .collect();
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| (prompts[i].len(), i));
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        let scores = parallel::map_parts(&parallel::split(&chunks, parallel::workers()), |part| {
            part.iter()
                .map(|chunk| {
                    let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].to_vec()).collect();
                    continuation_logprob(
                        self.model,
                        &batch,
                        correct,
                        self.tokenizer.pad_id(),
                        &self.device,
                    )
                })
                .collect::<Vec<_>>()
        });
        let mut p = vec![0.0; prompts.len()];
        for (chunk, s) in chunks.iter().zip(scores.into_iter().flatten()) {
            for (&i, lp) in chunk.iter().zip(s) {
                p[i] = lp.exp();
            }
        }
        p
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

/// The critic's prompt for an attempt: the dialogue through the attempt
/// and its `stop` token, handed over to the teacher as in every dialogue the
/// critic learnt from (a stop other than the handover's is replaced).
pub fn critic_prompt(
    tokenizer: &Tokenizer,
    context: &[u32],
    stop: Option<u32>,
) -> didact_data::Result<Vec<u32>> {
    let mut p = context.to_vec();
    let mut mask = vec![false; p.len()];
    tokenizer.hand_over(&mut p, &mut mask, stop, Role::Student, Role::Teacher)?;
    Ok(p)
}

/// The verdict threshold: the largest one at which the critic still calls
/// at least `min_recall` of the correct attempts correct, from held-out
/// (P("Correct."), actually correct) pairs. A critic that calls a right
/// answer wrong talks the student out of it, so recall on correct answers
/// comes first. `None` without correct attempts.
pub fn calibrate(scored: &[(f64, bool)], min_recall: f64) -> Option<f64> {
    let mut positives: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    if positives.is_empty() {
        return None;
    }
    positives.sort_by(|a, b| b.total_cmp(a));
    let keep = ((min_recall * positives.len() as f64).ceil() as usize).clamp(1, positives.len());
    Some(positives[keep - 1])
}

/// The verdict threshold that maximises the expected accuracy change on
/// held-out `(P("Correct."), actually correct)` pairs when an attempt
/// called wrong (P below the threshold) makes the student try again: a
/// wrong one is then fixed with probability `fix_rate`, a correct one is
/// lost. A threshold must be expected to win at least `min_gain` answers
/// on the held-out set: smaller gains are noise of a few attempts and did
/// not carry over to evaluation. Returns 0 (nothing is called wrong) when
/// no threshold gains enough, and a threshold above 1 when calling
/// everything wrong gains most.
pub fn calibrate_utility(scored: &[(f64, bool)], fix_rate: f64, min_gain: f64) -> f64 {
    let mut sorted: Vec<(f64, bool)> = scored.iter().copied().filter(|s| s.0.is_finite()).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut gain, mut best, mut threshold) = (0.0, min_gain.max(0.0) - 1e-9, 0.0);
    for (i, &(p, correct)) in sorted.iter().enumerate() {
        gain += if correct { -1.0 } else { fix_rate };
        let next = sorted.get(i + 1).map(|s| s.0);
        if next == Some(p) {
            // Equal probabilities are called the same way.
            continue;
        }
        if gain > best + 1e-12 {
            best = gain;
            threshold = next.map_or(p + 1.0, |n| 0.5 * (p + n));
        }
    }
    threshold
}

#[cfg(test)]
mod calibration_tests {
    use super::*;

    #[test]
    fn the_prompt_ends_with_the_teacher_token_whatever_the_student_stopped_with() {
        let tokenizer = Tokenizer::train(["1+1= 2 Correct."].into_iter(), 300).unwrap();
        let teacher = tokenizer
            .boundary(Some(Role::Student), Some(Role::Teacher))
            .unwrap()[0];
        let end = tokenizer.boundary(Some(Role::Student), None).unwrap()[0];
        let prompt = |context: &[u32], stop| critic_prompt(&tokenizer, context, stop).unwrap();
        assert_eq!(prompt(&[1, 7, 8, end], Some(end)), vec![1, 7, 8, teacher]);
        assert_eq!(
            prompt(&[1, 7, 8, teacher], Some(teacher)),
            vec![1, 7, 8, teacher]
        );
        assert_eq!(prompt(&[1, 7, 8], None), vec![1, 7, 8, teacher]);
    }

    #[test]
    fn the_utility_threshold_calls_wrong_only_where_it_pays() {
        // Sorted by P("Correct."): w w c w c c.
        let scored = [
            (0.1, false),
            (0.2, false),
            (0.3, true),
            (0.4, false),
            (0.8, true),
            (0.9, true),
        ];
        // Fixing a wrong attempt is worth as much as losing a right one:
        // calling the first two wrong gains 2; adding 0.3 and 0.4 gains 2
        // again, not more, so the smaller set is kept.
        assert_eq!(calibrate_utility(&scored, 1.0, 0.0), 0.25);
        // Fixes are rare: one lost right answer outweighs them all.
        assert_eq!(calibrate_utility(&scored[2..], 0.3, 0.0), 0.0);
        assert_eq!(calibrate_utility(&[], 0.5, 0.0), 0.0);
        // Every attempt wrong: calling all of them wrong is best.
        let wrong = [(0.5, false), (1.0, false)];
        assert!(calibrate_utility(&wrong, 0.5, 0.0) > 1.0);
        // ... unless the expected gain (1 answer) is below the margin.
        assert_eq!(calibrate_utility(&wrong, 0.5, 1.5), 0.0);
        assert_eq!(
            calibrate_utility(&scored, 1.0, 2.0),
            0.25,
            "a gain of 2 is enough"
        );
        // Ties cannot be split.
        assert_eq!(
            calibrate_utility(&[(0.5, false), (0.5, true)], 0.5, 0.0),
            0.0
        );
    }

    #[test]
    fn the_threshold_keeps_the_asked_recall() {
        let scored = [
            (0.9, true),
            (0.6, true),
            (0.3, true),
            (0.1, true),
            (0.5, false),
        ];
        assert_eq!(calibrate(&scored, 0.5), Some(0.6));
        assert_eq!(calibrate(&scored, 0.75), Some(0.3));
        assert_eq!(calibrate(&scored, 1.0), Some(0.1));
        assert_eq!(calibrate(&[(0.4, false)], 0.9), None);
    }
}
