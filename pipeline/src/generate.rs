//! `didact generate`: continue a prompt with any checkpoint in Hugging Face
//! layout (didact's own or one written by transformers).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use didact_data::dialogue::special_tokens;
use didact_data::{Dialogue, HfTokenizer, Role, Tokenizer};
use didact_student::checkpoint;
use didact_student::generate::{SamplingParams, generate, last_logits};
use didact_student::kernels::Kernels;

use crate::device::DeviceSpec;

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Checkpoint directory: config.json, model.safetensors (or a sharded
    /// index) and tokenizer.json.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prompt text, encoded exactly as the checkpoint's tokenizer.json
    /// encodes it (with its own post-processing; nothing is added).
    #[arg(long)]
    pub prompt: String,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold (with a temperature above 0).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the next-token logits at the last prompt position here, as a
    /// JSON array of floats.
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Send the prompt as the user's message through the checkpoint's chat
    /// template (tokenizer_config.json) and answer as the assistant, as a
    /// run with `model.source = "pretrained:<dir>"` prompts the student.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: the system prompt (else the template's default).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
}

pub fn run(args: &GenerateArgs, device: DeviceSpec) -> Result<()> {
    crate::with_backend!(device, |B, device| run_on::<
        <B as burn::tensor::backend::AutodiffBackend>::InnerBackend,
    >(args, &device))
}

fn run_on<B: Kernels>(args: &GenerateArgs, device: &B::Device) -> Result<()> {
    let tokenizer_path = args.checkpoint.join("tokenizer.json");
    let tokenizer = HfTokenizer::load(&tokenizer_path)?;
    let model = checkpoint::load::<B>(&args.checkpoint, device)?;
    let chat = if args.chat {
        Some(Tokenizer::load_chat(
            &args.checkpoint,
            args.system.as_deref(),
        )?)
    } else {
        None
    };
    let ids = match &chat {
        Some(chat) => chat.encode_prompt(&Dialogue::from_task(&args.prompt), Role::Student)?,
        None => tokenizer.encode(&args.prompt)?,
    };
    anyhow::ensure!(!ids.is_empty(), "--prompt encodes to no tokens");
    let vocab = model.config().vocab_size;
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        anyhow::bail!(
            "{}: token id {bad} is outside the model's vocabulary ({vocab})",
            tokenizer_path.display()
        );
    }
    if let Some(path) = &args.logits_out {
        let x = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                [1, ids.len()],
            ),
            device,
        );
        let last = last_logits(model.forward(x, None, None)).remove(0);
        didact_data::atomic::write(path, serde_json::to_string(&last)?.as_bytes())
            .with_context(|| format!("{}: cannot write logits", path.display()))?;
    }
    // Stop on the model's end-of-sequence token and on didact's turn tokens
    // when the vocabulary has them.
    let mut stops: Vec<u32> = model
        .config()
        .eos_token_id
        .as_ref()
        .map_or_else(Vec::new, |e| e.ids());
    stops.extend(
        special_tokens()
            .into_iter()
            .filter_map(|t| tokenizer.token_to_id(t)),
    );
    if let Some(chat) = &chat {
        stops.extend(chat.stop_ids());
    }
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        max_new_tokens: args.max_new,
    };
    let pad = model
        .config()
        .pad_token_id
        .as_ref()
        .and_then(|p| p.ids().first().copied())
        .unwrap_or(0);
    let out = generate(&model, &[ids], &stops, pad, &params, args.seed, device);
    println!("{}", tokenizer.decode(&out[0].tokens)?);
    Ok(())
}
