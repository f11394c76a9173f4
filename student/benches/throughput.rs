//! Throughput of the student on the CPU (burn Flex): training steps
//! (forward, backward, AdamW), prefill, and batched KV-cache generation, at
//! the reference configuration of the benchmark (vocab 128, hidden 128,
//! 4 layers, 4 heads, SwiGLU 512, sequences of 128, batch 32). `just bench` runs it, runs
//! the same measurements in PyTorch (`scripts/bench_torch.py`) when torch is
//! installed, and writes both with their ratio to `bench/results.md`.
//!
//! Output: `bench/didact.json` (or the path in `DIDACT_BENCH_OUT`).

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use didact_data::rng::Rng;
use didact_student::checkpoint::init_random;
use didact_student::generate::{SamplingParams, generate};
use didact_student::sft::{Example, make_batch, masked_nll};
use didact_student::{Llama, LlamaConfig};

const VOCAB: usize = 128;
const BATCH: usize = 32;
const SEQ: usize = 128;
const PROMPT: usize = 16;
const NEW_TOKENS: usize = 64;

/// Timed rounds per measurement; each reports its median round, so that one
/// round slowed by another process on the machine does not set the figure.
const ROUNDS: usize = 5;

/// Median over `rounds` runs of `round` of tokens per second (`round`
/// returns how many tokens it processed).
fn median_rate(rounds: usize, mut round: impl FnMut() -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let tokens = round();
            tokens as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rounds / 2]
}

fn tokens(rng: &mut Rng, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| 8 + rng.below(VOCAB as u64 - 8) as u32)
        .collect()
}

fn main() {
    didact_student::alloc::keep_freed_memory();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut llama = LlamaConfig::small(VOCAB, 128, 4, 4, 4);
    llama.intermediate_size = 512;
    let device = Default::default();
    let mut rng = Rng::new(0);

    // Training: forward + backward + AdamW step on BATCH x SEQ tokens.
    type A = Autodiff<Flex>;
    let mut model: Llama<A> = init_random(&llama, 0, &device).unwrap();
    let mut optim = AdamWConfig::new().init::<A, Llama<A>>();
    let examples: Vec<Example> = (0..BATCH)
        .map(|_| Example {
            ids: tokens(&mut rng, SEQ + 1),
            mask: vec![true; SEQ + 1],
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let mut step = |model: Llama<A>| {
        let batch = make_batch::<A>(&refs, SEQ + 1, 0, &device);
        let loss = masked_nll(&model, &batch);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    for _ in 0..3 {
        model = step(model);
    }
    let train_steps = 4;
    let mut model = Some(model);
    let train_tps = median_rate(ROUNDS, || {
        for _ in 0..train_steps {
            model = Some(step(model.take().unwrap()));
        }
        train_steps * BATCH * SEQ
    });

    // Inference on the inner backend.
    let model: Llama<Flex> = init_random(&llama, 0, &device).unwrap();
    let ids: Vec<i64> = tokens(&mut rng, BATCH * SEQ)
        .into_iter()
        .map(i64::from)
        .collect();
    let input =
        || Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids.clone(), [BATCH, SEQ]), &device);
    let _ = model.forward(input(), None, None).into_data();
    let reps = 4;
    let prefill_tps = median_rate(ROUNDS, || {
        for _ in 0..reps {
            let _ = model.forward(input(), None, None).into_data();
        }
        reps * BATCH * SEQ
    });

    let prompts: Vec<Vec<u32>> = (0..BATCH).map(|_| tokens(&mut rng, PROMPT)).collect();
    let params = SamplingParams::greedy(NEW_TOKENS);
    let _ = generate(&model, &prompts[..2], &[], 0, &params, 0, &device);
    let gen_tps = median_rate(ROUNDS, || {
        let out = generate(&model, &prompts, &[], 0, &params, 0, &device);
        out.iter().map(|g| g.tokens.len()).sum()
    });

    let json = serde_json::json!({
        "implementation": "didact (burn 0.21, Flex backend)",
        "threads": threads,
        "rounds": ROUNDS,
        "parameters": llama.num_params(),
        "model": {"hidden_size": llama.hidden_size, "layers": llama.num_hidden_layers,
                  "heads": llama.num_attention_heads, "kv_heads": llama.kv_heads(),
                  "intermediate_size": llama.intermediate_size, "vocab_size": VOCAB},
        "train": {"batch": BATCH, "seq": SEQ, "steps": train_steps, "tokens_per_s": train_tps},
        "prefill": {"batch": BATCH, "seq": SEQ, "reps": reps, "tokens_per_s": prefill_tps},
        "generate": {"batch": BATCH, "prompt": PROMPT, "new_tokens": NEW_TOKENS, "tokens_per_s": gen_tps},
    });
    let out_path = std::env::var("DIDACT_BENCH_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/didact.json").to_string()
    });
    std::fs::write(&out_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&json).unwrap());
    eprintln!("wrote {out_path}");
}
