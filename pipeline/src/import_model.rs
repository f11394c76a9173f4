//! `didact import gguf`: a llama.cpp model file as a Hugging Face
//! checkpoint directory. The work is [`didact_student::gguf`]; this is the
//! command line around it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use didact_student::gguf;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub format: ImportFormat,
}

#[derive(Debug, Subcommand)]
pub enum ImportFormat {
    /// A GGUF file (llama.cpp's format; Llama architecture, byte-level BPE
    /// tokenizer) as config.json, model.safetensors (f32; F32, F16, BF16,
    /// Q4_0, Q4_1 and Q8_0 tensors are dequantized), tokenizer.json,
    /// tokenizer_config.json, chat_template.jinja and
    /// generation_config.json: a directory `model.source =
    /// "pretrained:<dir>"` and transformers' `from_pretrained` both read.
    /// Prints one summary line.
    Gguf(GgufArgs),
}

#[derive(Debug, Args)]
pub struct GgufArgs {
    /// The .gguf file.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The checkpoint directory to write [default: models/<file stem>].
    /// An existing checkpoint there is replaced only with --force.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ImportArgs, force: bool) -> Result<()> {
    match &args.format {
        ImportFormat::Gguf(a) => {
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| gguf::default_out_dir(&a.input));
            let started = std::time::Instant::now();
            let s = gguf::import(&a.input, &out, force)
                .with_context(|| format!("importing {}", a.input.display()))?;
            let types: Vec<String> = s
                .tensor_types
                .iter()
                .map(|(t, n)| format!("{n} {t}"))
                .collect();
            println!(
                "imported {}{} into {}: {} parameters ({} tensors), vocabulary {}, {}chat template, {:.1} s",
                a.input.display(),
                s.name.map(|n| format!(" ({n})")).unwrap_or_default(),
                out.display(),
                s.parameters,
                types.join(", "),
                s.vocab_size,
                if s.has_chat_template { "" } else { "no " },
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
