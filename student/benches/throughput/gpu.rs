//! The same measurements on a CUDA GPU (`DIDACT_BENCH_DEVICE=cuda[:N]`,
//! built with `--features cuda`), one model shape per process so that the
//! GPU memory a caller samples while it runs belongs to that shape alone.
//!
//! `DIDACT_BENCH_SHAPE` picks the shape: `reference`, `smollm2_135m` or
//! `qwen2.5_0.5b` (Qwen2.5-0.5B-Instruct's shape: vocab 151936, hidden 896,
//! 24 layers, 14 heads / 2 KV heads, SwiGLU 4864, q/k/v biases, tied
//! embeddings; random weights, fp32). Batches are larger than on the CPU,
//! since a GPU is idle at 2-core sizes. Output: one JSON object with the
//! shape's section (`DIDACT_BENCH_OUT`, default `bench/gpu/didact-SHAPE.json`).

use std::time::Instant;

use burn::backend::Cuda;
use burn::backend::cuda::CudaDevice;
use didact_student::LlamaConfig;

use super::{Generate, Prefill, Train, measure, reference, shape_json, smollm2_135m};

/// Qwen2.5-0.5B-Instruct's `config.json`, field for field where it shapes
/// the computation.
fn qwen2_5_0_5b() -> LlamaConfig {
    let mut llama = LlamaConfig::small(151_936, 896, 24, 14, 2);
    llama.intermediate_size = 4864;
    llama.tie_word_embeddings = true;
    llama.attention_bias = true;
    llama.rms_norm_eps = 1e-6;
    llama.rope_theta = Some(1_000_000.0);
    llama.max_position_embeddings = 32_768;
    llama.model_type = "qwen2".into();
    llama
}

/// The shape and the batches it is measured at.
fn plan(shape: &str) -> (LlamaConfig, Train, Prefill, Generate) {
    let (llama, train_batch, seq, prefill_batch, gen_batch, prompt, new_tokens, rounds) =
        match shape {
            "reference" => (reference(), 32, 128, 32, 32, 16, 64, 5),
            "smollm2_135m" => (smollm2_135m(), 16, 256, 32, 32, 32, 64, 3),
            "qwen2.5_0.5b" => (qwen2_5_0_5b(), 8, 512, 16, 16, 32, 64, 3),
            other => panic!(
                "DIDACT_BENCH_SHAPE={other}: expected reference, smollm2_135m or qwen2.5_0.5b"
            ),
        };
    (
        llama,
        Train {
            batch: train_batch,
            seq,
            steps: 2,
            warmup_steps: 2,
            rounds,
        },
        Prefill {
            batch: prefill_batch,
            seq,
            reps: 2,
            rounds,
            logits_to_host: false,
        },
        Generate {
            batch: gen_batch,
            prompt,
            new_tokens,
            warmup_new_tokens: 8,
            rounds,
        },
    )
}

pub fn main(device: &str) {
    let index = match device {
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("DIDACT_BENCH_DEVICE={other}: expected cpu, cuda or cuda:N")),
    };
    let shape = std::env::var("DIDACT_BENCH_SHAPE").unwrap_or_else(|_| "reference".into());
    let (llama, train, prefill, gen_plan) = plan(&shape);
    let device = CudaDevice::new(index);
    let started = Instant::now();
    let rates = measure::<Cuda>(&llama, &train, &prefill, &gen_plan, &device);
    let seconds = started.elapsed().as_secs_f64();
    let mut json = shape_json(&llama, &train, &prefill, &gen_plan, &rates);
    json["implementation"] = "didact (burn 0.21, CUDA backend, fp32)".into();
    json["device"] = device_name(index).into();
    json["shape"] = shape.clone().into();
    json["seconds"] = seconds.into();
    eprintln!(
        "{shape} on cuda:{index}: train {:.0}, prefill {:.0}, generate {:.0} tokens/s ({seconds:.0} s)",
        rates.train, rates.prefill, rates.generate
    );
    let out_path = std::env::var("DIDACT_BENCH_OUT").unwrap_or_else(|_| {
        format!(
            "{}/../bench/gpu/didact-{shape}.json",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    eprintln!("wrote {out_path}");
}

/// GPU `index`'s name as `nvidia-smi` gives it, for the results file.
fn device_name(index: usize) -> String {
    std::process::Command::new("nvidia-smi")
        .args([
            "-i",
            &index.to_string(),
            "--query-gpu=name",
            "--format=csv,noheader",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown GPU".into())
}
