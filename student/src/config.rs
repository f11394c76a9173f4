//! The model configuration, field for field the Hugging Face `LlamaConfig`
//! (and `Qwen2Config`), so a `config.json` deserialises straight into it.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// Architecture hyperparameters, named as in Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: key/value heads shared by
    /// `num_attention_heads / num_key_value_heads` query heads each.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Given explicitly by some checkpoints; otherwise hidden / heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// transformers < 5 writes it at the top level; transformers 5 nests it
    /// in `rope_parameters`. [`LlamaConfig::rope_theta`] reads either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (Qwen2 always has them; Llama reads
    /// `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    /// Llama 3.1 and later list several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<TokenIds>,
}

/// A special token id as `config.json` gives it: one id or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// transformers 5's `rope_parameters` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    2048
}
fn default_model_type() -> String {
    "llama".into()
}

impl LlamaConfig {
    /// A didact-trained model of the given size (Llama layout, untied head).
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size: hidden,
            intermediate_size: hidden * 8 / 3 / 8 * 8,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: Some(10_000.0),
            rope_parameters: None,
            max_position_embeddings: 512,
            tie_word_embeddings: false,
            attention_bias: false,
            model_type: "llama".into(),
            hidden_act: Some("silu".into()),
            architectures: Some(vec!["LlamaForCausalLM".into()]),
            torch_dtype: Some("float32".into()),
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(10_000.0)
    }

    /// Qwen2 has q/k/v biases whatever `attention_bias` says.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// Checks what the implementation supports, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(StudentError::Config(format!("{field}: {why}")));
        if !matches!(self.model_type.as_str(), "llama" | "qwen2") {
            return bad(
                "model_type",
                format!("`{}` is not supported (llama, qwen2)", self.model_type),
            );
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return bad("hidden_act", format!("`{act}` is not supported (silu)"));
        }
        if let Some(rope_type) = self
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.as_deref())
            && rope_type != "default"
        {
            return bad(
                "rope_parameters.rope_type",
                format!("`{rope_type}` scaling is not supported"),
            );
        }
        if self.num_attention_heads == 0
            || self.kv_heads() == 0
            || !self.num_attention_heads.is_multiple_of(self.kv_heads())
        {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} must divide num_attention_heads = {}",
                    self.kv_heads(),
                    self.num_attention_heads
                ),
            );
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() == 0 {
            return bad(
                "head_dim",
                format!(
                    "{} must be even and positive (rotary embedding)",
                    self.head_dim()
                ),
            );
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad(
                "vocab_size/hidden_size/num_hidden_layers",
                "must be positive".into(),
            );
        }
        Ok(())
    }

    /// Parameter count, for logs and FLOP estimates.
    pub fn num_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_attention_heads * self.head_dim(),
            self.kv_heads() * self.head_dim(),
        );
        let bias = if self.qkv_bias() { q + 2 * kv } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + bias + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_generations_of_rope_theta() {
        let old = r#"{"vocab_size":8,"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"rope_theta":500000.0}"#;
        let new = r#"{"vocab_size":8,"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"},"head_dim":4}"#;
        let old: LlamaConfig = serde_json::from_str(old).unwrap();
        let new: LlamaConfig = serde_json::from_str(new).unwrap();
        assert_eq!(old.rope_theta(), 500000.0);
        assert_eq!(old.head_dim(), 2);
        assert_eq!(old.kv_heads(), 2);
        assert_eq!(new.rope_theta(), 1000000.0);
        assert_eq!(new.head_dim(), 4);
        old.validate().unwrap();
        new.validate().unwrap();
    }

    #[test]
    fn unsupported_settings_are_named() {
        let mut c = LlamaConfig::small(16, 8, 1, 4, 3);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("num_key_value_heads")
        );
        c.num_key_value_heads = Some(2);
        c.model_type = "gpt2".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("model_type: `gpt2`")
        );
    }
}

/// Where the base student comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelSource {
    /// Trained from scratch by the `pretrain` stage, with didact's own
    /// tokenizer and role tokens.
    #[default]
    Scratch,
    /// A pretrained Hugging Face checkpoint directory (`config.json`,
    /// safetensors weights, `tokenizer.json`, `tokenizer_config.json` with
    /// a chat template): dialogues render through its chat template, and
    /// `pretrain` imports it instead of training.
    Pretrained(std::path::PathBuf),
}

impl ModelSource {
    pub fn is_scratch(&self) -> bool {
        *self == Self::Scratch
    }

    pub fn pretrained_dir(&self) -> Option<&std::path::Path> {
        match self {
            Self::Scratch => None,
            Self::Pretrained(dir) => Some(dir),
        }
    }
}

impl std::str::FromStr for ModelSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            _ if s == "scratch" => Ok(Self::Scratch),
            Some(("pretrained", dir)) if !dir.trim().is_empty() => {
                Ok(Self::Pretrained(dir.trim().into()))
            }
            _ => Err(format!(
                "`{s}` is not a model source: expected \"scratch\" or \"pretrained:<directory>\""
            )),
        }
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scratch => f.write_str("scratch"),
            Self::Pretrained(dir) => write!(f, "pretrained:{}", dir.display()),
        }
    }
}

impl Serialize for ModelSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ModelSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The base student: a pretrained checkpoint, or the size of a model
/// trained from scratch (whose vocabulary size comes from the run's
/// tokenizer; the size fields are unused for a pretrained one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `"scratch"` (the default) or `"pretrained:<dir>"`. Left out of the
    /// serialised config when scratch, so that stage hashes of runs from
    /// before it existed still match.
    #[serde(skip_serializing_if = "ModelSource::is_scratch")]
    pub source: ModelSource,
    /// The system prompt dialogues render with through a pretrained
    /// model's chat template; without one, the template's default (if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: fewer key/value heads than query heads.
    pub num_key_value_heads: usize,
    /// SwiGLU width; defaults to about 8/3 of `hidden_size`, a multiple of 8.
    pub intermediate_size: Option<usize>,
    /// Longest sequence the model is meant for.
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// Seed of the random initialisation.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            source: ModelSource::Scratch,
            system_prompt: None,
            hidden_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: None,
            max_position_embeddings: 256,
            rope_theta: 10_000.0,
            tie_word_embeddings: false,
            seed: 0,
        }
    }
}

impl ModelConfig {
    pub fn to_llama(&self, vocab_size: usize) -> LlamaConfig {
        let mut c = LlamaConfig::small(
            vocab_size,
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
        );
        if let Some(i) = self.intermediate_size {
            c.intermediate_size = i;
        }
        c.max_position_embeddings = self.max_position_embeddings;
        c.rope_theta = Some(self.rope_theta);
        c.tie_word_embeddings = self.tie_word_embeddings;
        c
    }
}
