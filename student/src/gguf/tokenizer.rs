//! A GGUF file's tokenizer as Hugging Face files: `tokenizer.json`,
//! `tokenizer_config.json` and `chat_template.jinja`, in the form
//! transformers 5 writes them, so the imported directory loads in
//! transformers and in didact alike.
//!
//! Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is understood,
//! with the pre-tokenizers whose splitting is known exactly (see
//! [`pre_tokenizer`]); anything else is refused by name rather than
//! imported into a tokenizer that splits text differently from the one the
//! model was trained with.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use super::file::{GgufFile, Value};

/// ggml's token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// The tokenizer files of an imported checkpoint.
#[derive(Debug, Clone)]
pub struct TokenizerFiles {
    pub tokenizer_json: Json,
    pub tokenizer_config: Json,
    pub chat_template: Option<String>,
    /// `generation_config.json`'s special token ids.
    pub generation_config: Json,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>, String> {
    let items = file
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("`{key}` is missing or not an array"))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| format!("`{key}` holds a non-string"))
        })
        .collect()
}

fn id(file: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>, String> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(Some(id as u32)),
            _ => Err(format!("`{key}` = {v:?} is not a token id below {vocab}")),
        },
    }
}

/// The pre-tokenizer for `tokenizer.ggml.pre`. `smollm` is GPT-2's
/// byte-level split with every digit on its own (llama.cpp's SmolLM
/// pre-tokenizer, and the one in SmolLM2's own `tokenizer.json`).
fn pre_tokenizer(pre: &str) -> Result<Json, String> {
    let byte_level = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    match pre {
        "gpt2" | "default" => Ok(byte_level),
        "smollm" => Ok(json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level,
            ]
        })),
        other => Err(format!(
            "tokenizer.ggml.pre = \"{other}\" is not supported (gpt2, default and smollm are): \
             its text splitting is not implemented, and a guess would tokenize differently \
             from the model's training"
        )),
    }
}

/// Builds the Hugging Face tokenizer files from `file`'s metadata.
pub fn tokenizer_files(file: &GgufFile) -> Result<TokenizerFiles, String> {
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or("no `tokenizer.ggml.model`: the file has no tokenizer")?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer.ggml.model = \"{model}\" is not supported: only byte-level BPE (\"gpt2\") is"
        ));
    }
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre)?;
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let types: Vec<u64> = match file.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => v
            .as_array()
            .filter(|a| a.len() == tokens.len())
            .ok_or("`tokenizer.ggml.token_type` is not one integer per token")?
            .iter()
            .map(|t| {
                t.as_u64()
                    .ok_or("`tokenizer.ggml.token_type` holds a non-integer")
            })
            .collect::<Result<_, _>>()?,
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, &t) in tokens.iter().enumerate() {
        if let Some(first) = seen.insert(t, i) {
            return Err(format!("token {t:?} appears twice (ids {first} and {i})"));
        }
        vocab.insert(t.to_string(), json!(i));
    }
    let merges: Vec<Json> = merges
        .iter()
        .map(|m| match m.split(' ').collect::<Vec<_>>()[..] {
            [a, b] if seen.contains_key(a) && seen.contains_key(b) => Ok(json!([a, b])),
            _ => Err(format!("merge {m:?} is not two vocabulary tokens")),
        })
        .collect::<Result<_, _>>()?;
    let added: Vec<Json> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(i, &t)| {
            json!({
                "id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": t != TOKEN_CONTROL, "special": t == TOKEN_CONTROL
            })
        })
        .collect();

    let n = tokens.len();
    let bos_id = id(file, "tokenizer.ggml.bos_token_id", n)?;
    let eos_id = id(file, "tokenizer.ggml.eos_token_id", n)?;
    let pad_id = id(file, "tokenizer.ggml.padding_token_id", n)?;
    let unk_id = id(file, "tokenizer.ggml.unknown_token_id", n)?;
    let add_bos = file
        .get("tokenizer.ggml.add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let name = |id: Option<u32>| id.map(|i| tokens[i as usize]);
    let post_processor = match (add_bos, name(bos_id)) {
        (true, Some(bos)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
        }),
        _ => {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        }
    };
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges
        }
    });
    let context = file
        .get("llama.context_length")
        .and_then(Value::as_u64)
        .unwrap_or(2048);
    let mut config = serde_json::Map::new();
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("add_bos_token".into(), json!(add_bos));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    config.insert("model_max_length".into(), json!(context));
    for (key, id) in [
        ("bos_token", bos_id),
        ("eos_token", eos_id),
        ("pad_token", pad_id),
        ("unk_token", unk_id),
    ] {
        if let Some(token) = name(id) {
            config.insert(key.into(), json!(token));
        }
    }
    let chat_template = file
        .get("tokenizer.chat_template")
        .and_then(Value::as_str)
        .map(String::from);
    let mut generation = serde_json::Map::new();
    for (key, id) in [
        ("bos_token_id", bos_id),
        ("eos_token_id", eos_id),
        ("pad_token_id", pad_id),
    ] {
        if let Some(id) = id {
            generation.insert(key.into(), json!(id));
        }
    }
    Ok(TokenizerFiles {
        tokenizer_json,
        tokenizer_config: Json::Object(config),
        chat_template,
        generation_config: Json::Object(generation),
        bos_id,
        eos_id,
        pad_id,
    })
}
