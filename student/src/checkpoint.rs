//! Checkpoints in the Hugging Face layout: `config.json` (Llama fields),
//! `model.safetensors` (or a sharded `model.safetensors.index.json`) with HF
//! tensor names, beside the run's `tokenizer.json`. This module and the
//! GGUF importer (`gguf`, which maps llama.cpp's names onto these) are the
//! ones that know HF tensor names.
//!
//! HF stores a linear layer's weight as `[out, in]`; burn's `Linear` holds
//! `[in, out]`, so weights are transposed on the way in and out.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::LlamaConfig;
use crate::error::{Result, StudentError};
use crate::model::{Attention, DecoderLayer, Llama, Mlp};
use didact_data::rng::Rng;

/// The Hugging Face tensor names of a Llama-family checkpoint, each written
/// once: random initialisation, loading and saving all spell them from here.
pub(crate) mod names {
    pub const EMBED: &str = "model.embed_tokens.weight";
    pub const NORM: &str = "model.norm.weight";
    /// The untied output projection (`lm_head.weight`).
    pub const LM_HEAD: &str = "lm_head";
    pub const LM_HEAD_WEIGHT: &str = "lm_head.weight";
    pub const Q: &str = "self_attn.q_proj";
    pub const K: &str = "self_attn.k_proj";
    pub const V: &str = "self_attn.v_proj";
    pub const O: &str = "self_attn.o_proj";
    pub const GATE: &str = "mlp.gate_proj";
    pub const UP: &str = "mlp.up_proj";
    pub const DOWN: &str = "mlp.down_proj";
    pub const INPUT_NORM: &str = "input_layernorm.weight";
    pub const POST_NORM: &str = "post_attention_layernorm.weight";

    /// The prefix of decoder layer `i`'s tensors.
    pub fn layer(i: usize) -> String {
        format!("model.layers.{i}")
    }
}

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

fn ckpt_err(path: &Path, reason: impl Into<String>) -> StudentError {
    StudentError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| StudentError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and validates `config.json`.
pub fn load_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = read(&path)?;
    let config: LlamaConfig = serde_json::from_slice(&text)
        .map_err(|e| ckpt_err(&path, format!("not a Llama-family config: {e}")))?;
    config
        .validate()
        .map_err(|e| ckpt_err(&path, e.to_string()))?;
    Ok(config)
}

/// A tensor read from a checkpoint, as f32 whatever its stored dtype.
struct Loaded {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// All tensors of a checkpoint directory, single-file or sharded.
fn load_tensors(dir: &Path) -> Result<HashMap<String, Loaded>> {
    let single = dir.join(WEIGHTS_FILE);
    let index = dir.join(INDEX_FILE);
    let files: Vec<std::path::PathBuf> = if single.exists() {
        vec![single]
    } else if index.exists() {
        let json: serde_json::Value = serde_json::from_slice(&read(&index)?)
            .map_err(|e| ckpt_err(&index, format!("not a safetensors index: {e}")))?;
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| ckpt_err(&index, "no `weight_map` object"))?;
        let mut shards: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else {
        return Err(ckpt_err(dir, format!("no {WEIGHTS_FILE} or {INDEX_FILE}")));
    };
    let mut out = HashMap::new();
    for file in files {
        let bytes = read(&file)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ckpt_err(&file, format!("not a safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(ckpt_err(
                        &file,
                        format!("tensor {name}: unsupported dtype {other:?}"),
                    ));
                }
            };
            out.insert(
                name,
                Loaded {
                    shape: view.shape().to_vec(),
                    values,
                },
            );
        }
    }
    Ok(out)
}

/// A parameter whose id derives from its HF name, so that optimizer state
/// saved beside a checkpoint finds its parameters again after a reload.
fn param<B: Backend, const D: usize>(name: &str, t: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::initialized(
        ParamId::from(didact_data::rng::fnv1a(name.as_bytes())),
        t.require_grad(),
    )
}

struct Source<'a, B: Backend> {
    tensors: HashMap<String, Loaded>,
    dir: &'a Path,
    device: &'a B::Device,
}

impl<B: Backend> Source<'_, B> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ckpt_err(self.dir, format!("missing tensor {name}")))?;
        if t.shape != shape {
            return Err(ckpt_err(
                self.dir,
                format!(
                    "tensor {name} has shape {:?}, config expects {shape:?}",
                    t.shape
                ),
            ));
        }
        Ok(t.values)
    }

    fn vector(&mut self, name: &str, n: usize) -> Result<Param<Tensor<B, 1>>> {
        let v = self.take(name, &[n])?;
        Ok(param(
            name,
            Tensor::from_data(TensorData::new(v, [n]), self.device),
        ))
    }

    /// HF `[out, in]` weight (and optional bias) into a burn `Linear`.
    fn linear(
        &mut self,
        prefix: &str,
        input: usize,
        output: usize,
        bias: bool,
    ) -> Result<Linear<B>> {
        let name = format!("{prefix}.weight");
        let w = self.take(&name, &[output, input])?;
        // Transposed here, on the host, into contiguous `[in, out]` memory:
        // a transposed view on the device would make every matrix product
        // with the weight read it against its layout (on the CPU, half of
        // generation's time went to repacking such weights).
        let mut wt = vec![0f32; w.len()];
        for (o, row) in w.chunks_exact(input).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                wt[i * output + o] = v;
            }
        }
        let w: Tensor<B, 2> = Tensor::from_data(TensorData::new(wt, [input, output]), self.device);
        let bias = if bias {
            Some(self.vector(&format!("{prefix}.bias"), output)?)
        } else {
            None
        };
        Ok(Linear {
            weight: param(&name, w),
            bias,
        })
    }

    fn norm(&mut self, name: &str, n: usize, eps: f64) -> Result<RmsNorm<B>> {
        Ok(RmsNorm {
            gamma: self.vector(name, n)?,
            epsilon: eps,
        })
    }
}

/// Loads a checkpoint directory into a model on `device`.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<Llama<B>> {
    let config = load_config(dir)?;
    build(config, load_tensors(dir)?, dir, device)
}

/// A randomly initialised model: every weight normal with std 0.02 (as
/// Hugging Face initialises Llama), norms at 1. Drawn from didact's own
/// generator, so the same seed gives the same weights on every device.
pub fn init_random<B: Backend>(
    config: &LlamaConfig,
    seed: u64,
    device: &B::Device,
) -> Result<Llama<B>> {
    config.validate()?;
    let mut rng = Rng::new(seed);
    let mut normal = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Box–Muller.
                let u1 = rng.unit().max(f64::MIN_POSITIVE);
                let u2 = rng.unit();
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    };
    let mut tensors = HashMap::new();
    let mut add = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        tensors.insert(name, Loaded { shape, values });
    };
    let (hs, hd, v) = (config.hidden_size, config.head_dim(), config.vocab_size);
    let (q, kv, inter) = (
        config.num_attention_heads * hd,
        config.kv_heads() * hd,
        config.intermediate_size,
    );
    add(names::EMBED.into(), vec![v, hs], normal(v * hs));
    for i in 0..config.num_hidden_layers {
        let p = names::layer(i);
        for (name, out, inp) in [
            (names::Q, q, hs),
            (names::K, kv, hs),
            (names::V, kv, hs),
            (names::O, hs, q),
            (names::GATE, inter, hs),
            (names::UP, inter, hs),
            (names::DOWN, hs, inter),
        ] {
            add(
                format!("{p}.{name}.weight"),
                vec![out, inp],
                normal(out * inp),
            );
            if config.qkv_bias() && [names::Q, names::K, names::V].contains(&name) {
                add(format!("{p}.{name}.bias"), vec![out], vec![0.0; out]);
            }
        }
        add(
            format!("{p}.{}", names::INPUT_NORM),
            vec![hs],
            vec![1.0; hs],
        );
        add(format!("{p}.{}", names::POST_NORM), vec![hs], vec![1.0; hs]);
    }
    add(names::NORM.into(), vec![hs], vec![1.0; hs]);
    if !config.tie_word_embeddings {
        add(names::LM_HEAD_WEIGHT.into(), vec![v, hs], normal(v * hs));
    }
    build(config.clone(), tensors, Path::new("<random init>"), device)
}

fn build<B: Backend>(
    config: LlamaConfig,
    tensors: HashMap<String, Loaded>,
    dir: &Path,
    device: &B::Device,
) -> Result<Llama<B>> {
    let mut src = Source::<B> {
        tensors,
        dir,
        device,
    };
    let (hs, hd, eps) = (config.hidden_size, config.head_dim(), config.rms_norm_eps);
    let (h, kv, inter) = (
        config.num_attention_heads,
        config.kv_heads(),
        config.intermediate_size,
    );
    let embed = src.take(names::EMBED, &[config.vocab_size, hs])?;
    let embed_tokens = Embedding {
        weight: param(
            names::EMBED,
            Tensor::from_data(TensorData::new(embed, [config.vocab_size, hs]), device),
        ),
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = names::layer(i);
        let bias = config.qkv_bias();
        layers.push(DecoderLayer {
            self_attn: Attention {
                q_proj: src.linear(&format!("{p}.{}", names::Q), hs, h * hd, bias)?,
                k_proj: src.linear(&format!("{p}.{}", names::K), hs, kv * hd, bias)?,
                v_proj: src.linear(&format!("{p}.{}", names::V), hs, kv * hd, bias)?,
                o_proj: src.linear(&format!("{p}.{}", names::O), h * hd, hs, false)?,
                n_heads: h,
                n_kv_heads: kv,
                head_dim: hd,
            },
            mlp: Mlp {
                gate_proj: src.linear(&format!("{p}.{}", names::GATE), hs, inter, false)?,
                up_proj: src.linear(&format!("{p}.{}", names::UP), hs, inter, false)?,
                down_proj: src.linear(&format!("{p}.{}", names::DOWN), inter, hs, false)?,
            },
            input_layernorm: src.norm(&format!("{p}.{}", names::INPUT_NORM), hs, eps)?,
            post_attention_layernorm: src.norm(&format!("{p}.{}", names::POST_NORM), hs, eps)?,
        });
    }
    let norm = src.norm(names::NORM, hs, eps)?;
    let lm_head = if config.tie_word_embeddings {
        src.tensors.remove(names::LM_HEAD_WEIGHT);
        None
    } else {
        Some(src.linear(names::LM_HEAD, hs, config.vocab_size, false)?)
    };
    if let Some(extra) = src
        .tensors
        .keys()
        .find(|k| !k.ends_with("rotary_emb.inv_freq"))
    {
        return Err(ckpt_err(
            dir,
            format!("unexpected tensor {extra} (not a Llama/Qwen2 weight)"),
        ));
    }
    Ok(Llama {
        embed_tokens,
        layers,
        norm,
        lm_head,
        config,
    })
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// Saves `model` as `config.json` + `model.safetensors` (f32) in `dir`,
/// each written atomically.
pub fn save<B: Backend>(model: &Llama<B>, dir: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut linear = |name: String, l: &Linear<B>| {
        let w = l.weight.val().transpose();
        let shape = w.dims().to_vec();
        tensors.push((format!("{name}.weight"), shape, values(w)));
        if let Some(b) = &l.bias {
            let b = b.val();
            tensors.push((format!("{name}.bias"), b.dims().to_vec(), values(b)));
        }
    };
    for (i, layer) in model.layers.iter().enumerate() {
        let p = names::layer(i);
        linear(format!("{p}.{}", names::Q), &layer.self_attn.q_proj);
        linear(format!("{p}.{}", names::K), &layer.self_attn.k_proj);
        linear(format!("{p}.{}", names::V), &layer.self_attn.v_proj);
        linear(format!("{p}.{}", names::O), &layer.self_attn.o_proj);
        linear(format!("{p}.{}", names::GATE), &layer.mlp.gate_proj);
        linear(format!("{p}.{}", names::UP), &layer.mlp.up_proj);
        linear(format!("{p}.{}", names::DOWN), &layer.mlp.down_proj);
    }
    if let Some(head) = &model.lm_head {
        linear(names::LM_HEAD.into(), head);
    }
    let mut vector =
        |name: String, t: Tensor<B, 1>| tensors.push((name, t.dims().to_vec(), values(t)));
    for (i, layer) in model.layers.iter().enumerate() {
        let p = names::layer(i);
        vector(
            format!("{p}.{}", names::INPUT_NORM),
            layer.input_layernorm.gamma.val(),
        );
        vector(
            format!("{p}.{}", names::POST_NORM),
            layer.post_attention_layernorm.gamma.val(),
        );
    }
    vector(names::NORM.into(), model.norm.gamma.val());
    let e = model.embed_tokens.weight.val();
    tensors.push((names::EMBED.into(), e.dims().to_vec(), values(e)));

    write_weights(dir, tensors)?;
    let config = serde_json::to_vec_pretty(&model.config).expect("config serialises");
    didact_data::atomic::write(&dir.join(CONFIG_FILE), &config)?;
    Ok(())
}

/// Writes named f32 tensors (row-major, Hugging Face names and shapes) as
/// `dir/model.safetensors`, atomically.
pub fn write_weights(dir: &Path, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ckpt_err(dir, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| ckpt_err(dir, e.to_string()))?;
    didact_data::atomic::write(&dir.join(WEIGHTS_FILE), &serialized)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Int;

    type B = Flex;

    fn logits(model: &Llama<B>, ids: &[Vec<i64>]) -> Vec<f32> {
        let (b, t) = (ids.len(), ids[0].len());
        let flat: Vec<i64> = ids.iter().flatten().copied().collect();
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, t]), &Default::default());
        model
            .forward(x, None, None)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn save_then_load_gives_the_same_logits() {
        let dir = tempfile::tempdir().unwrap();
        for tied in [false, true] {
            let mut config = LlamaConfig::small(40, 16, 2, 4, 2);
            config.tie_word_embeddings = tied;
            let model = init_random::<B>(&config, 1, &Default::default()).unwrap();
            save(&model, dir.path()).unwrap();
            let back = load::<B>(dir.path(), &Default::default()).unwrap();
            let ids = vec![vec![1, 5, 9, 3], vec![2, 2, 7, 39]];
            assert_eq!(logits(&model, &ids), logits(&back, &ids));
        }
    }

    #[test]
    fn same_seed_same_weights() {
        let config = LlamaConfig::small(40, 16, 1, 2, 2);
        let a = init_random::<B>(&config, 3, &Default::default()).unwrap();
        let b = init_random::<B>(&config, 3, &Default::default()).unwrap();
        let c = init_random::<B>(&config, 4, &Default::default()).unwrap();
        let ids = vec![vec![1, 2, 3]];
        assert_eq!(logits(&a, &ids), logits(&b, &ids));
        assert_ne!(logits(&a, &ids), logits(&c, &ids));
    }

    #[test]
    fn missing_files_and_tensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = load::<B>(dir.path(), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        let model =
            init_random::<B>(&LlamaConfig::small(40, 16, 1, 2, 2), 1, &Default::default()).unwrap();
        save(&model, dir.path()).unwrap();
        let mut config = model.config.clone();
        config.num_hidden_layers = 2;
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        let err = load::<B>(dir.path(), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing tensor model.layers.1."), "{err}");
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"garbage").unwrap();
        let err = load::<B>(dir.path(), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors: not a safetensors file"),
            "{err}"
        );
    }

    /// Logits of Hugging Face transformers on the committed fixtures
    /// (`scripts/make_parity_fixture.py`), matched to 1e-4.
    #[test]
    fn matches_transformers_logits() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["tiny-llama", "tiny-qwen2"] {
            let dir = root.join(name);
            let reference: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap())
                    .unwrap();
            let ids: Vec<Vec<i64>> =
                serde_json::from_value(reference["input_ids"].clone()).unwrap();
            let expected: Vec<f32> = serde_json::from_value(reference["logits"].clone()).unwrap();
            let model = load::<B>(&dir, &Default::default()).unwrap();
            let got = logits(&model, &ids);
            assert_eq!(got.len(), expected.len(), "{name}");
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{name}: max |diff| = {worst}");
        }
    }
}
