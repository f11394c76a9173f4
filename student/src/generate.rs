//! Batched sampling with a KV cache: greedy, temperature and top-p, stopping
//! per sequence on stop tokens (role tokens, `<|end|>`) or a token budget;
//! deterministic under a seed.

use burn::tensor::{Int, Tensor, TensorData};
use didact_data::rng::{Rng, mix_seed};

use crate::kernels::Kernels;
use crate::model::{KvCache, Llama};

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// reaches `top_p` (1.0 keeps all).
    pub top_p: f32,
    /// Most tokens generated per sequence.
    pub max_new_tokens: usize,
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            max_new_tokens,
        }
    }
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens, without the stop token.
    pub tokens: Vec<u32>,
    /// The stop token that ended it, or `None` if the budget ran out.
    pub stop: Option<u32>,
    /// Sum of log-probabilities (under the model at temperature 1) of the
    /// generated tokens, the stop token included.
    pub logprob: f32,
}

/// Picks a token from `logits` and returns it with its log-probability under
/// the untempered model.
pub fn sample(logits: &[f32], params: &SamplingParams, rng: &mut Rng) -> (u32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_z = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let token = if params.temperature <= 0.0 {
        argmax(logits)
    } else {
        let t = params.temperature;
        let mut probs: Vec<(usize, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i, ((l - max) / t).exp()))
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        if params.top_p < 1.0 {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p.1;
                if cumulative >= params.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        let mass: f32 = probs.iter().map(|p| p.1).sum();
        let mut u = rng.unit() as f32 * mass;
        let mut chosen = probs.last().map_or(0, |p| p.0);
        for (i, p) in &probs {
            if u < *p {
                chosen = *i;
                break;
            }
            u -= p;
        }
        chosen
    };
    (token as u32, logits[token] - log_z)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0
}

/// Logits of the last position, `[batch][vocab]`, copied to the host.
pub fn last_logits<B: Kernels>(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let [b, t, v] = logits.dims();
    let flat = logits
        .slice([0..b, t - 1..t, 0..v])
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits");
    flat.chunks(v).map(<[f32]>::to_vec).collect()
}

/// Continues every prompt. Prompts are left-padded with `pad_id` into one
/// batch (rotary attention depends only on relative positions, and padding
/// keys are masked, so padding does not change a sequence's logits). Each
/// sequence draws from its own generator seeded by `(seed, index)`.
pub fn generate<B: Kernels>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    stop_ids: &[u32],
    pad_id: u32,
    params: &SamplingParams,
    seed: u64,
    device: &B::Device,
) -> Vec<Generation> {
    let seeds: Vec<u64> = (0..prompts.len())
        .map(|i| mix_seed(&[seed, i as u64]))
        .collect();
    generate_seeded(model, prompts, stop_ids, pad_id, params, &seeds, device)
}

/// [`generate`] with one generator seed per prompt, so that a sequence's
/// sample does not depend on which batch it was drawn in.
pub fn generate_seeded<B: Kernels>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    stop_ids: &[u32],
    pad_id: u32,
    params: &SamplingParams,
    seeds: &[u64],
    device: &B::Device,
) -> Vec<Generation> {
    assert_eq!(seeds.len(), prompts.len(), "one seed per prompt");
    let batch = prompts.len();
    if batch == 0 {
        return Vec::new();
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut valid: Vec<Vec<bool>> = Vec::with_capacity(batch);
    let mut ids = Vec::with_capacity(batch * width);
    for p in prompts {
        let pad = width - p.len();
        valid.push((0..width).map(|i| i >= pad).collect());
        ids.extend(std::iter::repeat_n(pad_id as i64, pad));
        ids.extend(p.iter().map(|&t| t as i64));
    }
    let mut rngs: Vec<Rng> = seeds.iter().map(|&s| Rng::new(s)).collect();
    let mut out: Vec<Generation> = vec![
        Generation {
            tokens: Vec::new(),
            stop: None,
            logprob: 0.0,
        };
        batch
    ];
    if params.max_new_tokens == 0 {
        return out;
    }
    let mut cache = KvCache::new(model.config.num_hidden_layers);
    let flat = |valid: &Vec<Vec<bool>>| valid.iter().flatten().copied().collect::<Vec<bool>>();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, width]), device);
    let mut logits = last_logits(model.forward(input, Some(&flat(&valid)), Some(&mut cache)));
    // `rows[p]`: the prompt whose sequence is row `p` of the batch. Rows
    // that finish leave the batch (and the cache), so finished sequences
    // cost nothing while the others run on.
    let mut rows: Vec<usize> = (0..batch).collect();
    loop {
        let mut next = Vec::with_capacity(rows.len());
        let mut keep = Vec::with_capacity(rows.len());
        for (p, &i) in rows.iter().enumerate() {
            let (token, lp) = sample(&logits[p], params, &mut rngs[i]);
            out[i].logprob += lp;
            if stop_ids.contains(&token) {
                out[i].stop = Some(token);
                continue;
            }
            out[i].tokens.push(token);
            if out[i].tokens.len() < params.max_new_tokens {
                keep.push(p);
                next.push(token as i64);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < rows.len() {
            cache.retain_rows(&keep, device);
            valid = keep
                .iter()
                .map(|&p| std::mem::take(&mut valid[p]))
                .collect();
            rows = keep.iter().map(|&p| rows[p]).collect();
        }
        for v in valid.iter_mut() {
            v.push(true);
        }
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [rows.len(), 1]), device);
        logits = last_logits(model.forward(input, Some(&flat(&valid)), Some(&mut cache)));
    }
    out
}

/// Log-probability of `continuation` following each prompt, teacher-forced
/// in one batched forward pass (prompts left-padded, so every row's
/// continuation occupies the same final positions).
pub fn continuation_logprob<B: Kernels>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    continuation: &[u32],
    pad_id: u32,
    device: &B::Device,
) -> Vec<f64> {
    let (batch, m) = (prompts.len(), continuation.len());
    if batch == 0 || m == 0 {
        return vec![0.0; batch];
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0).max(1) + m;
    let mut ids = Vec::with_capacity(batch * width);
    let mut valid = Vec::with_capacity(batch * width);
    for p in prompts {
        let pad = width - p.len() - m;
        ids.extend(std::iter::repeat_n(pad_id as i64, pad));
        ids.extend(p.iter().chain(continuation).map(|&t| t as i64));
        valid.extend((0..width).map(|i| i >= pad));
    }
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, width]), device);
    let logits = model.forward(input, Some(&valid), None);
    let vocab = logits.dims()[2];
    // Positions width-m-1 .. width-1 predict the continuation's tokens.
    let tail = logits
        .slice([0..batch, width - m - 1..width - 1, 0..vocab])
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits");
    tail.chunks(m * vocab)
        .map(|row| {
            row.chunks(vocab)
                .zip(continuation)
                .map(|(l, &t)| {
                    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let log_z = max + l.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
                    (l[t as usize] - log_z) as f64
                })
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_random;
    use crate::config::LlamaConfig;
    use burn::backend::Flex;

    type B = Flex;

    fn model() -> Llama<B> {
        init_random::<B>(
            &LlamaConfig::small(48, 32, 2, 4, 2),
            11,
            &Default::default(),
        )
        .unwrap()
    }

    fn full_logits(model: &Llama<B>, ids: &[u32]) -> Vec<f32> {
        let t = ids.len();
        let x = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
            &Default::default(),
        );
        last_logits(model.forward(x, None, None)).remove(0)
    }

    #[test]
    fn cached_decoding_matches_full_recomputation() {
        let m = model();
        let device = Default::default();
        let mut cache = KvCache::new(2);
        let prompt = [3i64, 7, 1, 30];
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(prompt.to_vec(), [1, 4]), &device);
        let mut step = last_logits(m.forward(x, None, Some(&mut cache))).remove(0);
        let mut seq: Vec<u32> = prompt.iter().map(|&i| i as u32).collect();
        // Past 64 positions, so that the cache grows its buffers once.
        for _ in 0..66 {
            let full = full_logits(&m, &seq);
            let worst = full
                .iter()
                .zip(&step)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "cache diverges by {worst} at length {}",
                seq.len()
            );
            let next = argmax(&step) as u32;
            seq.push(next);
            let x =
                Tensor::<B, 2, Int>::from_data(TensorData::new(vec![next as i64], [1, 1]), &device);
            step = last_logits(m.forward(x, None, Some(&mut cache))).remove(0);
        }
    }

    #[test]
    fn left_padding_does_not_change_a_sequence() {
        let m = model();
        let params = SamplingParams::greedy(8);
        let alone = generate(
            &m,
            &[vec![5, 6, 7]],
            &[],
            0,
            &params,
            1,
            &Default::default(),
        );
        let batched = generate(
            &m,
            &[vec![5, 6, 7], vec![1, 2, 3, 4, 9, 9, 9]],
            &[],
            0,
            &params,
            1,
            &Default::default(),
        );
        assert_eq!(alone[0].tokens, batched[0].tokens);
        assert!((alone[0].logprob - batched[0].logprob).abs() < 1e-3);
    }

    #[test]
    fn sampling_is_deterministic_under_a_seed_and_stops_on_stop_tokens() {
        let m = model();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            max_new_tokens: 12,
        };
        let prompts = vec![vec![1, 2], vec![3, 4, 5], vec![6]];
        let a = generate(&m, &prompts, &[], 0, &params, 42, &Default::default());
        let b = generate(&m, &prompts, &[], 0, &params, 42, &Default::default());
        let c = generate(&m, &prompts, &[], 0, &params, 43, &Default::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|g| g.tokens.len() == 12 && g.stop.is_none()));
        // Stop on whatever the first sampled token was.
        let stop = a[0].tokens[0];
        let s = generate(
            &m,
            &prompts[..1],
            &[stop],
            0,
            &params,
            42,
            &Default::default(),
        );
        assert_eq!(s[0].stop, Some(stop));
        assert!(s[0].tokens.is_empty());
    }

    #[test]
    fn teacher_forced_scores_match_step_by_step_decoding() {
        let m = model();
        let prompts = vec![vec![5u32, 6, 7], vec![1, 2, 3, 4, 9]];
        let continuation = [11u32, 12, 13];
        let scores = continuation_logprob(&m, &prompts, &continuation, 0, &Default::default());
        for (p, score) in prompts.iter().zip(&scores) {
            let mut seq = p.clone();
            let mut expected = 0.0f64;
            for &t in &continuation {
                let l = full_logits(&m, &seq);
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_z = max + l.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
                expected += (l[t as usize] - log_z) as f64;
                seq.push(t);
            }
            assert!((score - expected).abs() < 1e-3, "{score} vs {expected}");
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let logits = [0.0f32, 10.0, 0.0, 9.0];
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            max_new_tokens: 1,
        };
        let mut rng = Rng::new(0);
        for _ in 0..200 {
            assert_eq!(sample(&logits, &params, &mut rng).0, 1);
        }
        let (t, lp) = sample(&logits, &SamplingParams::greedy(1), &mut rng);
        assert_eq!(t, 1);
        assert!(lp < 0.0 && lp > -1.0);
    }
}
