//! Throughput of the student on the CPU (burn Flex): training steps
//! (forward, backward, AdamW), prefill, and batched KV-cache generation, at
//! two model shapes. `just bench` runs it, runs the same measurements in
//! PyTorch (`scripts/bench_torch.py`) when torch is installed, and writes
//! both with their ratio to `bench/results.md`.
//!
//! - The reference configuration (vocab 128, hidden 128, 4 layers, 4 heads,
//!   SwiGLU 512, about 1M parameters; training and prefill batch 32 x 128,
//!   generation 32 prompts of 16 tokens + 64 new), the size the pipeline
//!   trains from scratch. Its figures are the top-level keys of the output.
//! - The shape of SmolLM2-135M-Instruct (vocab 49152, hidden 576, 30 layers,
//!   9 heads / 3 KV heads, SwiGLU 1536, tied embeddings, 134.5M parameters)
//!   under the key `smollm2_135m`, because at 1M parameters the vocabulary
//!   projection, the optimizer and the per-operation overhead weigh very
//!   differently than at the size of a pretrained student. Random weights:
//!   throughput does not depend on them. Its batches are smaller (training
//!   4 x 64, prefill 16 x 128, generation 16 prompts of 16 tokens + 64 new)
//!   and its rounds fewer, so that it takes a few minutes on 2 cores.
//!
//! Output: `bench/didact.json` (or the path in `DIDACT_BENCH_OUT`).

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use didact_data::rng::Rng;
use didact_student::checkpoint::init_random;
use didact_student::generate::{SamplingParams, generate};
use didact_student::kernels::Kernels;
use didact_student::sft::{Example, make_batch, masked_nll};
use didact_student::{Llama, LlamaConfig};

/// Timed rounds per measurement of the reference configuration; each
/// reports its median round, so that one round slowed by another process on
/// the machine does not set the figure.
const ROUNDS: usize = 5;

/// Training: forward + backward + AdamW on `batch` x `seq` tokens.
struct Train {
    batch: usize,
    seq: usize,
    /// Steps per timed round.
    steps: usize,
    /// Untimed steps first: the first step allocates AdamW's moments.
    warmup_steps: usize,
    rounds: usize,
}

/// One forward pass over `batch` x `seq` tokens, all logits to the host.
struct Prefill {
    batch: usize,
    seq: usize,
    /// Forward passes per timed round.
    reps: usize,
    rounds: usize,
    /// Copy all logits to the host after each pass (the CPU figures always
    /// have). On a GPU that copy would time the PCIe link rather than the
    /// model, so there each pass ends at a device sync instead.
    logits_to_host: bool,
}

/// Greedy KV-cache generation of `new_tokens` after each of `batch`
/// prompts of `prompt` tokens, one generation per round.
struct Generate {
    batch: usize,
    prompt: usize,
    new_tokens: usize,
    /// New tokens of the untimed warm-up generation on two prompts.
    warmup_new_tokens: usize,
    rounds: usize,
}

/// Tokens per second of each measurement.
struct Rates {
    train: f64,
    prefill: f64,
    generate: f64,
}

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

fn tokens(rng: &mut Rng, vocab: usize, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| 8 + rng.below(vocab as u64 - 8) as u32)
        .collect()
}

/// Waits for the device's queued work, so that a timed round ends when its
/// kernels have run (a no-op on the CPU, where work runs when called).
fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("the device failed while running the benchmark");
}

fn measure<B: Kernels>(
    llama: &LlamaConfig,
    train: &Train,
    prefill: &Prefill,
    gen_plan: &Generate,
    device: &B::Device,
) -> Rates {
    let vocab = llama.vocab_size;
    let mut rng = Rng::new(0);

    // The training model and its optimizer state are dropped before the
    // inference model is built: at 135M parameters they hold about 2 GB.
    let train_tps = {
        let mut model: Llama<Autodiff<B>> = init_random(llama, 0, device).unwrap();
        let mut optim = AdamWConfig::new().init::<Autodiff<B>, Llama<Autodiff<B>>>();
        let examples: Vec<Example> = (0..train.batch)
            .map(|_| Example {
                ids: tokens(&mut rng, vocab, train.seq + 1),
                mask: vec![true; train.seq + 1],
            })
            .collect();
        let refs: Vec<&Example> = examples.iter().collect();
        let mut step = |model: Llama<Autodiff<B>>| {
            let batch = make_batch::<Autodiff<B>>(&refs, train.seq + 1, 0, device);
            let loss = masked_nll(&model, &batch);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            optim.step(1e-3, model, grads)
        };
        for _ in 0..train.warmup_steps {
            model = step(model);
        }
        sync::<B>(device);
        let mut model = Some(model);
        median_rate(train.rounds, || {
            for _ in 0..train.steps {
                model = Some(step(model.take().unwrap()));
            }
            sync::<B>(device);
            train.steps * train.batch * train.seq
        })
    };

    // Inference on the inner backend.
    let model: Llama<B> = init_random(llama, 0, device).unwrap();
    let ids: Vec<i64> = tokens(&mut rng, vocab, prefill.batch * prefill.seq)
        .into_iter()
        .map(i64::from)
        .collect();
    let input = || {
        Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids.clone(), [prefill.batch, prefill.seq]),
            device,
        )
    };
    let forward = || {
        let logits = model.forward(input(), None, None);
        if prefill.logits_to_host {
            let _ = logits.into_data();
        } else {
            sync::<B>(device);
        }
    };
    forward();
    let prefill_tps = median_rate(prefill.rounds, || {
        for _ in 0..prefill.reps {
            forward();
        }
        prefill.reps * prefill.batch * prefill.seq
    });

    let prompts: Vec<Vec<u32>> = (0..gen_plan.batch)
        .map(|_| tokens(&mut rng, vocab, gen_plan.prompt))
        .collect();
    let warmup = SamplingParams::greedy(gen_plan.warmup_new_tokens);
    let _ = generate(&model, &prompts[..2], &[], 0, &warmup, 0, device);
    let params = SamplingParams::greedy(gen_plan.new_tokens);
    let gen_tps = median_rate(gen_plan.rounds, || {
        let out = generate(&model, &prompts, &[], 0, &params, 0, device);
        out.iter().map(|g| g.tokens.len()).sum()
    });

    Rates {
        train: train_tps,
        prefill: prefill_tps,
        generate: gen_tps,
    }
}

/// One shape's section of the results: the model as the PyTorch side
/// rebuilds it (`scripts/bench_torch.py`), the plan, and the rates.
fn shape_json(
    llama: &LlamaConfig,
    train: &Train,
    prefill: &Prefill,
    gen_plan: &Generate,
    rates: &Rates,
) -> serde_json::Value {
    serde_json::json!({
        "parameters": llama.num_params(),
        "model": {"hidden_size": llama.hidden_size, "layers": llama.num_hidden_layers,
                  "heads": llama.num_attention_heads, "kv_heads": llama.kv_heads(),
                  "head_dim": llama.head_dim(), "intermediate_size": llama.intermediate_size,
                  "vocab_size": llama.vocab_size, "tie_word_embeddings": llama.tie_word_embeddings,
                  "attention_bias": llama.attention_bias, "model_type": llama.model_type,
                  "rms_norm_eps": llama.rms_norm_eps, "rope_theta": llama.rope_theta(),
                  "max_position_embeddings": llama.max_position_embeddings},
        "train": {"batch": train.batch, "seq": train.seq, "steps": train.steps,
                  "warmup_steps": train.warmup_steps, "rounds": train.rounds, "tokens_per_s": rates.train},
        "prefill": {"batch": prefill.batch, "seq": prefill.seq, "reps": prefill.reps,
                    "rounds": prefill.rounds, "tokens_per_s": rates.prefill},
        "generate": {"batch": gen_plan.batch, "prompt": gen_plan.prompt, "new_tokens": gen_plan.new_tokens,
                     "warmup_new_tokens": gen_plan.warmup_new_tokens, "rounds": gen_plan.rounds,
                     "tokens_per_s": rates.generate},
    })
}

/// The configuration the pipeline trains from scratch (about 1M parameters).
fn reference() -> LlamaConfig {
    let mut llama = LlamaConfig::small(128, 128, 4, 4, 4);
    llama.intermediate_size = 512;
    llama
}

/// SmolLM2-135M-Instruct's `config.json`, field for field where it shapes
/// the computation.
fn smollm2_135m() -> LlamaConfig {
    let mut llama = LlamaConfig::small(49_152, 576, 30, 9, 3);
    llama.intermediate_size = 1536;
    llama.tie_word_embeddings = true;
    llama.rms_norm_eps = 1e-5;
    llama.rope_theta = Some(100_000.0);
    llama.max_position_embeddings = 8192;
    llama
}

#[cfg(feature = "cuda")]
#[path = "throughput/gpu.rs"]
mod gpu;

fn main() {
    if let Ok(device) = std::env::var("DIDACT_BENCH_DEVICE")
        && device != "cpu"
    {
        #[cfg(feature = "cuda")]
        return gpu::main(&device);
        #[cfg(not(feature = "cuda"))]
        panic!("DIDACT_BENCH_DEVICE={device} needs `cargo bench --features cuda`");
    }
    didact_student::alloc::keep_freed_memory();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The reference configuration, measured exactly as before the second
    // shape existed, so its figures stay comparable with earlier runs.
    let llama = reference();
    let (train, prefill, gen_plan) = (
        Train {
            batch: 32,
            seq: 128,
            steps: 4,
            warmup_steps: 3,
            rounds: ROUNDS,
        },
        Prefill {
            batch: 32,
            seq: 128,
            reps: 4,
            rounds: ROUNDS,
            logits_to_host: true,
        },
        Generate {
            batch: 32,
            prompt: 16,
            new_tokens: 64,
            warmup_new_tokens: 64,
            rounds: ROUNDS,
        },
    );
    let rates = measure::<Flex>(&llama, &train, &prefill, &gen_plan, &Default::default());
    let mut json = serde_json::json!({
        "implementation": "didact (burn 0.21, Flex backend)",
        "threads": threads,
        "rounds": ROUNDS,
        "parameters": llama.num_params(),
        "model": {"hidden_size": llama.hidden_size, "layers": llama.num_hidden_layers,
                  "heads": llama.num_attention_heads, "kv_heads": llama.kv_heads(),
                  "intermediate_size": llama.intermediate_size, "vocab_size": llama.vocab_size},
        "train": {"batch": train.batch, "seq": train.seq, "steps": train.steps, "tokens_per_s": rates.train},
        "prefill": {"batch": prefill.batch, "seq": prefill.seq, "reps": prefill.reps, "tokens_per_s": rates.prefill},
        "generate": {"batch": gen_plan.batch, "prompt": gen_plan.prompt, "new_tokens": gen_plan.new_tokens,
                     "tokens_per_s": rates.generate},
    });
    eprintln!(
        "reference shape: train {:.0}, prefill {:.0}, generate {:.0} tokens/s",
        rates.train, rates.prefill, rates.generate
    );

    // One step of 4 x 64 tokens is about 0.2 TFLOP and one prefill of
    // 16 x 128 about 0.55 TFLOP at this size: 3 rounds of one each, and 3
    // generations, keep this part to a few minutes on 2 cores.
    let started = Instant::now();
    let llama = smollm2_135m();
    let (train, prefill, gen_plan) = (
        Train {
            batch: 4,
            seq: 64,
            steps: 1,
            warmup_steps: 1,
            rounds: 3,
        },
        Prefill {
            batch: 16,
            seq: 128,
            reps: 1,
            rounds: 3,
            logits_to_host: true,
        },
        Generate {
            batch: 16,
            prompt: 16,
            new_tokens: 64,
            warmup_new_tokens: 4,
            rounds: 3,
        },
    );
    let rates = measure::<Flex>(&llama, &train, &prefill, &gen_plan, &Default::default());
    let mut section = shape_json(&llama, &train, &prefill, &gen_plan, &rates);
    section["name"] = "SmolLM2-135M-Instruct shape, random weights".into();
    section["seconds"] = started.elapsed().as_secs_f64().into();
    json["smollm2_135m"] = section;
    eprintln!(
        "smollm2-135m shape: train {:.0}, prefill {:.0}, generate {:.0} tokens/s ({:.0} s)",
        rates.train,
        rates.prefill,
        rates.generate,
        started.elapsed().as_secs_f64()
    );

    let out_path = std::env::var("DIDACT_BENCH_OUT").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/didact.json").to_string()
    });
    std::fs::write(&out_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&json).unwrap());
    eprintln!("wrote {out_path}");
}
