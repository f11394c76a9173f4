//! The tokenizer: byte-level BPE trained with the `tokenizers` crate on the
//! generated corpus, saved as a Hugging Face `tokenizer.json`.
//!
//! Pre-tokenization keeps every character that is not a lower-case letter as
//! a piece of its own (digits, operators, grid cells, the move letters
//! U/D/L/R, brackets), with at most the one space before it, so arithmetic,
//! grids, lists and move strings are seen one symbol at a time (`[3 1 2]` is
//! `[`, `3`, ` 1`, ` 2`, `]`); BPE merges happen only inside lower-case words
//! of the teacher's language and between a space and the symbol after it. The role tokens are special tokens that swallow the
//! spaces around them, so a dialogue encodes turn by turn to the same ids as
//! its rendered text.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::chat::{ChatLayout, ChatTemplate, Piece};
use crate::dialogue::{
    Dialogue, END_TOKEN, EncodedDialogue, PAD_TOKEN, Role, TokenKind, special_tokens,
};
use crate::error::{DataError, Result};

const PIECES: &str = r" ?[a-z]+| ?[^a-z\s]|\s+";

fn encode_ids(inner: &tokenizers::Tokenizer, text: &str, post_process: bool) -> Result<Vec<u32>> {
    let enc = inner
        .encode(text, post_process)
        .map_err(|e| tok_err(Path::new("<encode>"), e))?;
    Ok(enc.get_ids().to_vec())
}

fn decode_ids(inner: &tokenizers::Tokenizer, ids: &[u32]) -> Result<String> {
    inner
        .decode(ids, false)
        .map_err(|e| tok_err(Path::new("<decode>"), e))
}

/// A tokenizer and the dialogue format its model was trained on.
///
/// Every stage speaks to the model through it: it encodes dialogues turn by
/// turn with each token's [`TokenKind`], opens a prompt for the next
/// speaker, knows which tokens end a generated turn, and hands a turn over.
/// Two formats sit behind the same calls: didact's role tokens, for models
/// trained from scratch, and a pretrained model's chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    format: Format,
    pad_id: u32,
}

enum Format {
    /// didact's role tokens and `<|end|>`, one token per boundary.
    Roles { role_ids: [u32; 4], end_id: u32 },
    /// A chat template: the text around messages, encoded once.
    Chat(Box<ChatFormat>),
}

struct ChatFormat {
    template: ChatTemplate,
    layout: ChatLayout,
    /// The layout's texts encoded, in [`Piece::ALL`] order.
    pieces: Vec<Vec<u32>>,
    /// End-of-sequence tokens (the tokenizer's, and those of
    /// `generation_config.json`), which also end a turn.
    eos_ids: Vec<u32>,
}

fn tok_err(path: &Path, e: impl ToString) -> DataError {
    DataError::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl Tokenizer {
    /// Trains byte-level BPE on `corpus` up to `vocab_size` entries (the 256
    /// byte symbols and the special tokens included).
    pub fn train<I, S>(corpus: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let inner = train_bpe(corpus, vocab_size, &special_tokens(), true)?;
        Self::with_roles(inner, Path::new("<training>"))
    }

    /// Loads a `tokenizer.json`. One with didact's special tokens renders
    /// dialogues with them; any other is a pretrained model's, and renders
    /// them through the chat template of the `tokenizer_config.json` beside
    /// it, with the system prompt stored there under
    /// [`crate::chat::SYSTEM_PROMPT_KEY`] (if any).
    pub fn load(path: &Path) -> Result<Self> {
        let inner = read_tokenizer(path)?;
        if inner.token_to_id(Role::Task.token()).is_some() {
            return Self::with_roles(inner, path);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = dir.join("tokenizer_config.json");
        if !config.exists() {
            return Err(tok_err(
                path,
                "has neither didact's role tokens nor a tokenizer_config.json beside it \
                 with a chat template",
            ));
        }
        let template = ChatTemplate::load(dir)?;
        let system = template.system_prompt.clone();
        Self::with_chat(inner, dir, template, system.as_deref())
    }

    /// Loads a pretrained model's tokenizer with its chat template from
    /// `dir` (`tokenizer.json`, `tokenizer_config.json`), rendering
    /// dialogues after `system` (or the template's default system prompt).
    pub fn load_chat(dir: &Path, system: Option<&str>) -> Result<Self> {
        let inner = read_tokenizer(&dir.join("tokenizer.json"))?;
        Self::with_chat(inner, dir, ChatTemplate::load(dir)?, system)
    }

    fn with_roles(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self> {
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| tok_err(path, format!("missing special token {t}")))
        };
        Ok(Self {
            format: Format::Roles {
                role_ids: [
                    id(Role::Task.token())?,
                    id(Role::Student.token())?,
                    id(Role::Teacher.token())?,
                    id(Role::Critic.token())?,
                ],
                end_id: id(END_TOKEN)?,
            },
            pad_id: id(PAD_TOKEN)?,
            inner,
        })
    }

    fn with_chat(
        inner: tokenizers::Tokenizer,
        dir: &Path,
        template: ChatTemplate,
        system: Option<&str>,
    ) -> Result<Self> {
        let layout = ChatLayout::derive(&template, system)
            .map_err(|e| tok_err(&dir.join("tokenizer_config.json"), e))?;
        let encode = |text: &str| encode_ids(&inner, text, false);
        let token = |t: &str| (!t.is_empty()).then(|| inner.token_to_id(t)).flatten();
        let eos_id = token(&template.eos_token);
        let pad_id = template
            .pad_token
            .as_deref()
            .and_then(token)
            .or(eos_id)
            .unwrap_or(0);
        let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
        let generation = dir.join("generation_config.json");
        if generation.exists() {
            match read_json(&generation)?.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => eos_ids.extend(n.as_u64().map(|n| n as u32)),
                Some(serde_json::Value::Array(list)) => {
                    eos_ids.extend(list.iter().filter_map(|n| n.as_u64()).map(|n| n as u32))
                }
                _ => {}
            }
        }
        let chat = ChatFormat {
            pieces: Piece::ALL
                .iter()
                .map(|&p| encode(layout.text(p)))
                .collect::<Result<_>>()?,
            eos_ids,
            layout,
            template,
        };
        Ok(Self {
            inner,
            format: Format::Chat(Box::new(chat)),
            pad_id,
        })
    }

    /// Saves as a Hugging Face `tokenizer.json`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(|e| tok_err(path, e))?;
        crate::atomic::write(path, json.as_bytes())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether dialogues render through a pretrained model's chat template.
    pub fn is_chat(&self) -> bool {
        matches!(self.format, Format::Chat(_))
    }

    /// Pads batches. Padding is masked, so a chat model may pad with its
    /// end-of-sequence token.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes text (special tokens in it are recognised; no post-processing).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_ids(&self.inner, text, false)
    }

    /// Decodes ids back to text, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode_ids(&self.inner, ids)
    }

    /// The tokens between a turn of `closes` and one of `opens` (`None`:
    /// the start or the end of the dialogue). With role tokens, one token:
    /// the role token of `opens`, or `<|end|>`. With a chat template, the
    /// template's text there (for example `<|im_end|>\n<|im_start|>user\n`),
    /// whose first token is the one that ends a turn of `closes`.
    pub fn boundary(&self, closes: Option<Role>, opens: Option<Role>) -> Result<Vec<u32>> {
        match &self.format {
            Format::Roles { role_ids, end_id } => Ok(vec![match opens {
                Some(r) => role_ids[role_index(r)],
                None => *end_id,
            }]),
            Format::Chat(chat) => {
                let piece = ChatLayout::piece(closes, opens)?;
                Ok(chat.pieces[piece as usize].clone())
            }
        }
    }

    /// Token ids that end a generated turn. With role tokens: every role
    /// token and `<|end|>`. With a chat template: the first token of each
    /// text that can follow a turn, and the end-of-sequence token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = match &self.format {
            Format::Roles { role_ids, end_id } => {
                let mut ids = role_ids.to_vec();
                ids.push(*end_id);
                ids
            }
            Format::Chat(chat) => chat.pieces[1..]
                .iter()
                .filter_map(|b| b.first().copied())
                .chain(chat.eos_ids.iter().copied())
                .collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Renders a whole conversation through the chat template, opened for
    /// the assistant, and encodes it: how a model that is its own teacher
    /// is prompted. Only a chat format has a template to render with.
    pub fn encode_chat(&self, messages: &[crate::chat::Message]) -> Result<Vec<u32>> {
        match &self.format {
            Format::Roles { .. } => Err(DataError::ChatTemplate(
                "didact's own tokenizer has no chat template: a model teacher needs a \
                 pretrained chat model (model.source = \"pretrained:<dir>\")"
                    .into(),
            )),
            Format::Chat(chat) => self.encode(&chat.template.render(messages, true)?),
        }
    }

    /// The text of a finished dialogue in this format.
    pub fn render(&self, dialogue: &Dialogue) -> Result<String> {
        match &self.format {
            Format::Roles { .. } => Ok(dialogue.render()),
            Format::Chat(chat) => chat.layout.render(dialogue),
        }
    }

    /// The text of a dialogue opened for `next` to speak.
    pub fn render_prompt(&self, dialogue: &Dialogue, next: Role) -> Result<String> {
        match &self.format {
            Format::Roles { .. } => Ok(dialogue.render_prompt(next)),
            Format::Chat(chat) => chat.layout.render_prompt(dialogue, next),
        }
    }

    /// Encodes a finished dialogue turn by turn, labelling each token with its
    /// [`TokenKind`] so that loss masks can be derived from roles.
    pub fn encode_dialogue(&self, dialogue: &Dialogue) -> Result<EncodedDialogue> {
        let mut enc = self.encode_turns(dialogue)?;
        let last = dialogue.turns.last().map(|t| t.role);
        self.push_boundary(&mut enc, last, None)?;
        Ok(enc)
    }

    /// The ids of a dialogue opened for `next` to speak: the prompt a model
    /// continues when generating `next`'s turn.
    pub fn encode_prompt(&self, dialogue: &Dialogue, next: Role) -> Result<Vec<u32>> {
        let mut enc = self.encode_turns(dialogue)?;
        let last = dialogue.turns.last().map(|t| t.role);
        self.push_boundary(&mut enc, last, Some(next))?;
        Ok(enc.ids)
    }

    fn encode_turns(&self, dialogue: &Dialogue) -> Result<EncodedDialogue> {
        let mut enc = EncodedDialogue {
            ids: Vec::new(),
            kinds: Vec::new(),
        };
        let mut previous: Option<Role> = None;
        for turn in &dialogue.turns {
            self.push_boundary(&mut enc, previous, Some(turn.role))?;
            let content = self.encode(&turn.text)?;
            enc.kinds.extend(std::iter::repeat_n(
                TokenKind::Content(turn.role),
                content.len(),
            ));
            enc.ids.extend(content);
            previous = Some(turn.role);
        }
        Ok(enc)
    }

    /// Appends a boundary: its first token closes and opens, the rest are
    /// the template's filler.
    fn push_boundary(
        &self,
        enc: &mut EncodedDialogue,
        closes: Option<Role>,
        opens: Option<Role>,
    ) -> Result<()> {
        let ids = self.boundary(closes, opens)?;
        for (i, id) in ids.into_iter().enumerate() {
            enc.ids.push(id);
            enc.kinds.push(if i == 0 {
                TokenKind::Boundary { closes, opens }
            } else {
                TokenKind::Filler
            });
        }
        Ok(())
    }

    /// Ends `from`'s generated turn and opens `to`'s, in place: `ids` ends
    /// with the turn's tokens and its `stop` token (`None` when its budget
    /// ran out). A stop that is the boundary's first token stays, and the
    /// rest of the boundary follows; any other stop (an end-of-sequence
    /// token, `<|end|>`, the wrong role token) ends the turn, not the
    /// dialogue, so it is replaced by the boundary, which the speaker did
    /// not choose: its `mask` entry becomes false. Left in place, such a
    /// token mid-dialogue is a context the model never saw, and what it
    /// writes next is often garbage. Appended tokens get `false` in `mask`.
    pub fn hand_over(
        &self,
        ids: &mut Vec<u32>,
        mask: &mut Vec<bool>,
        stop: Option<u32>,
        from: Role,
        to: Role,
    ) -> Result<()> {
        let boundary = self.boundary(Some(from), Some(to))?;
        let rest = match stop {
            Some(s) if Some(&s) == boundary.first() => &boundary[1..],
            Some(_) => {
                ids.pop();
                mask.pop();
                &boundary[..]
            }
            None => &boundary[..],
        };
        ids.extend_from_slice(rest);
        mask.extend(std::iter::repeat_n(false, rest.len()));
        Ok(())
    }

    /// The texts of `role`'s turns other than the first turn of a
    /// dialogue, read from its tokens: what follows each handover from the
    /// student to `role` up to the next token that ends a turn. Reads the
    /// tokens directly rather than parsing decoded text, which a student's
    /// stray special token would make unparsable. In a chat format the
    /// teacher and the critic both speak as the user, and their turns look
    /// alike.
    pub fn turn_texts(&self, ids: &[u32], role: Role) -> Result<Vec<String>> {
        self.turn_spans(ids, role)?
            .into_iter()
            .map(|(start, end)| Ok(self.decode(&ids[start..end])?.trim().to_string()))
            .collect()
    }

    /// `mask[i]`: token `i` belongs to one of `role`'s turns after a
    /// handover from the student, as [`Tokenizer::turn_texts`] reads them,
    /// or is the token that ends one: the loss mask of an objective that
    /// learns those turns from a sampled dialogue's tokens.
    pub fn turn_mask(&self, ids: &[u32], role: Role) -> Result<Vec<bool>> {
        let mut mask = vec![false; ids.len()];
        for (start, end) in self.turn_spans(ids, role)? {
            let through = (end + 1).min(ids.len());
            mask[start..through].iter_mut().for_each(|m| *m = true);
        }
        Ok(mask)
    }

    /// Each turn of `role` after a handover from the student, as the range
    /// of its tokens up to (not including) the token that ends it.
    fn turn_spans(&self, ids: &[u32], role: Role) -> Result<Vec<(usize, usize)>> {
        let opener = self.boundary(Some(Role::Student), Some(role))?;
        let stops = self.stop_ids();
        let mut spans = Vec::new();
        // The prefix may end as a handover does (a system prompt closed,
        // the task opened).
        let mut i = self.boundary(None, Some(Role::Task))?.len();
        while i + opener.len() <= ids.len() {
            if ids[i..i + opener.len()] != opener[..] {
                i += 1;
                continue;
            }
            let start = i + opener.len();
            let mut end = start;
            while end < ids.len() && !stops.contains(&ids[end]) {
                end += 1;
            }
            spans.push((start, end));
            i = end.max(start);
        }
        Ok(spans)
    }
}

/// Byte-level BPE with didact's pre-tokenisation and `specials` as special
/// tokens, which swallow the whitespace around them if `strip`.
fn train_bpe<I, S>(
    corpus: I,
    vocab_size: usize,
    specials: &[&str],
    strip: bool,
) -> Result<tokenizers::Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let here = Path::new("<training>");
    let split = Split::new(
        SplitPattern::Regex(PIECES.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| tok_err(here, e))?;
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]);
    let mut inner = tokenizers::Tokenizer::new(BPE::default());
    inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(*t, true).lstrip(strip).rstrip(strip))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    inner
        .train(&mut trainer, corpus)
        .map_err(|e| tok_err(here, e))?;
    Ok(inner)
}

fn role_index(role: Role) -> usize {
    Role::ALL
        .iter()
        .position(|r| *r == role)
        .expect("every role")
}

fn read_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    if !path.exists() {
        return Err(tok_err(path, "file not found"));
    }
    tokenizers::Tokenizer::from_file(path).map_err(|e| tok_err(path, e))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| tok_err(path, format!("not valid JSON: {e}")))
}

/// Any Hugging Face `tokenizer.json`, used as its authors configured it
/// (normaliser, pre-tokeniser, post-processor): for checkpoints not trained
/// by didact, whose vocabularies lack didact's role tokens.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl HfTokenizer {
    /// Trains a byte-level BPE tokenizer with the given special tokens and
    /// no others: how test fixtures stand in for a pretrained model's
    /// tokenizer.
    pub fn train<I, S>(corpus: I, vocab_size: usize, specials: &[&str]) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        Ok(Self {
            inner: train_bpe(corpus, vocab_size, specials, false)?,
        })
    }

    /// Saves as a Hugging Face `tokenizer.json`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(|e| tok_err(path, e))?;
        crate::atomic::write(path, json.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(tok_err(path, "file not found"));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        Ok(Self { inner })
    }

    /// Encodes with the tokenizer's own post-processing (special tokens it
    /// adds, such as a BOS token, are added; nothing else is).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_ids(&self.inner, text, true)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode_ids(&self.inner, ids)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::SYSTEM_PROMPT_KEY;

    /// The ids a loss mask keeps.
    fn masked(enc: &EncodedDialogue, mask: &[bool]) -> Vec<u32> {
        enc.ids
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect()
    }

    fn corpus() -> Vec<String> {
        let mut d = Dialogue::from_task("347+589=");
        d.push(Role::Student, "926")
            .push(
                Role::Teacher,
                "Your answer is too low. The tens digit is wrong.",
            )
            .push(Role::Student, "936");
        let mut v = vec![d.render()];
        v.extend(
            [
                "[3 1 2] -> [1 2 3]",
                "sort | rev | take 3",
                "S.#./..#G",
                "RRDDLU",
                "12.4/3..1",
            ]
            .map(String::from),
        );
        v.extend(std::iter::repeat_n(
            "the tens digit is wrong".to_string(),
            20,
        ));
        v
    }

    #[test]
    fn special_tokens_have_fixed_ids_and_digits_stay_single() {
        let tok = Tokenizer::train(corpus().into_iter(), 300).unwrap();
        assert_eq!(tok.pad_id(), 0);
        assert_eq!(tok.boundary(None, Some(Role::Task)).unwrap(), [1]);
        assert_eq!(tok.boundary(Some(Role::Student), None).unwrap(), [5]);
        let ids = tok.encode("12345").unwrap();
        assert_eq!(ids.len(), 5, "digits must not merge");
        assert_eq!(tok.encode("RRDD").unwrap().len(), 4, "moves must not merge");
        assert!(tok.encode("tens").unwrap().len() < 4, "words should merge");
    }

    #[test]
    fn encode_decode_round_trips_any_text() {
        let tok = Tokenizer::train(corpus().into_iter(), 300).unwrap();
        for text in [
            "347+589=",
            "Your answer is too low.",
            "ünïcödé ✓ 🙂",
            "  two  spaces\n",
            "[3 1 2] -> []",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn turn_by_turn_encoding_equals_encoding_the_rendered_text() {
        let tok = Tokenizer::train(corpus().into_iter(), 300).unwrap();
        let mut d = Dialogue::from_task("347+589=");
        d.push(Role::Student, "926")
            .push(Role::Teacher, "The tens digit is wrong.")
            .push(Role::Student, "936");
        let enc = tok.encode_dialogue(&d).unwrap();
        assert_eq!(enc.ids, tok.encode(&d.render()).unwrap());
        let student = masked(&enc, &enc.loss_mask(Role::Student));
        let mut expected = tok.encode("926").unwrap();
        expected.extend(
            tok.boundary(Some(Role::Student), Some(Role::Teacher))
                .unwrap(),
        );
        expected.extend(tok.encode("936").unwrap());
        expected.extend(tok.boundary(Some(Role::Student), None).unwrap());
        assert_eq!(student, expected);
    }

    #[test]
    fn save_and_load_round_trip_and_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let tok = Tokenizer::train(corpus().into_iter(), 300).unwrap();
        tok.save(&path).unwrap();
        let back = Tokenizer::load(&path).unwrap();
        assert_eq!(
            back.encode("936 wrong").unwrap(),
            tok.encode("936 wrong").unwrap()
        );
        let err = Tokenizer::load(&dir.path().join("nope.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("nope.json") && err.contains("not found"),
            "{err}"
        );
        std::fs::write(&path, "{ truncated").unwrap();
        let err = Tokenizer::load(&path).err().unwrap().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    /// A stand-in for a pretrained Qwen2.5 tokenizer: ChatML special
    /// tokens and Qwen2.5's chat template, with a system prompt set.
    fn chat_tokenizer(dir: &Path, system: Option<&str>) -> Tokenizer {
        let tok = HfTokenizer::train(
            corpus().into_iter(),
            300,
            &["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        )
        .unwrap();
        tok.save(&dir.join("tokenizer.json")).unwrap();
        let fixtures =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json");
        let families: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures).unwrap()).unwrap();
        let template = families[0]["chat_template"].as_str().unwrap();
        let mut config = serde_json::json!({
            "chat_template": template,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        });
        if let Some(s) = system {
            config[SYSTEM_PROMPT_KEY] = s.into();
        }
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
        let ids = [
            tok.token_to_id("<|im_end|>"),
            tok.token_to_id("<|endoftext|>"),
        ];
        std::fs::write(
            dir.join("generation_config.json"),
            serde_json::json!({ "eos_token_id": ids }).to_string(),
        )
        .unwrap();
        Tokenizer::load(&dir.join("tokenizer.json")).unwrap()
    }

    #[test]
    fn chat_dialogues_encode_as_the_template_renders_them_with_masks_from_roles() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chat_tokenizer(dir.path(), Some("Answer briefly."));
        assert!(tok.is_chat());
        let mut d = Dialogue::from_task("347+589=");
        d.push(Role::Student, "926")
            .push(Role::Teacher, "The tens digit is wrong.")
            .push(Role::Student, "936");
        let rendered = tok.render(&d).unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n347+589=<|im_end|>\n\
             <|im_start|>assistant\n926<|im_end|>\n<|im_start|>user\nThe tens digit is wrong.<|im_end|>\n\
             <|im_start|>assistant\n936<|im_end|>\n"
        );
        let enc = tok.encode_dialogue(&d).unwrap();
        assert_eq!(enc.ids, tok.encode(&rendered).unwrap());
        assert_eq!(tok.decode(&enc.ids).unwrap(), rendered);
        // The student objective: each answer and the <|im_end|> after it.
        let im_end = tok.encode("<|im_end|>").unwrap();
        let student = masked(&enc, &enc.loss_mask(Role::Student));
        let mut expected = tok.encode("926").unwrap();
        expected.extend(&im_end);
        expected.extend(tok.encode("936").unwrap());
        expected.extend(&im_end);
        assert_eq!(student, expected);
        let teacher = enc.loss_mask(Role::Teacher).iter().filter(|m| **m).count();
        assert_eq!(
            teacher,
            tok.encode("The tens digit is wrong.").unwrap().len() + 1
        );
        // Q-priming's per-turn masks count turns, not template tokens.
        let second_only = enc.loss_mask_turns(Role::Student, |k| k == 1);
        let trained = masked(&enc, &second_only);
        let mut last = tok.encode("936").unwrap();
        last.extend(&im_end);
        assert_eq!(trained, last);
        let prompt = tok
            .encode_prompt(&Dialogue::from_task("1+1="), Role::Student)
            .unwrap();
        assert!(
            tok.decode(&prompt)
                .unwrap()
                .ends_with("1+1=<|im_end|>\n<|im_start|>assistant\n")
        );
    }

    #[test]
    fn chat_turns_hand_over_and_read_back_from_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let tok = chat_tokenizer(dir.path(), None);
        let im_end = tok.encode("<|im_end|>").unwrap()[0];
        let eos = tok.encode("<|endoftext|>").unwrap()[0];
        assert!(tok.stop_ids().contains(&im_end) && tok.stop_ids().contains(&eos));
        assert_eq!(tok.pad_id(), eos);
        let mut ids = tok
            .encode_prompt(&Dialogue::from_task("1+1="), Role::Student)
            .unwrap();
        assert!(
            tok.decode(&ids).unwrap().contains("You are Qwen"),
            "default system prompt"
        );
        let mut mask = vec![false; ids.len()];
        // An attempt that stopped on <|endoftext|>: replaced, untrained.
        let attempt = tok.encode("3").unwrap();
        ids.extend(&attempt);
        ids.push(eos);
        mask.extend(vec![true; attempt.len() + 1]);
        tok.hand_over(&mut ids, &mut mask, Some(eos), Role::Student, Role::Teacher)
            .unwrap();
        assert_eq!(ids.len(), mask.len());
        ids.extend(tok.encode("Too high.").unwrap());
        mask.resize(ids.len(), false);
        tok.hand_over(&mut ids, &mut mask, None, Role::Teacher, Role::Student)
            .unwrap();
        let mut d = Dialogue::from_task("1+1=");
        d.push(Role::Student, "3").push(Role::Teacher, "Too high.");
        assert_eq!(ids, tok.encode_prompt(&d, Role::Student).unwrap());
        let trained: Vec<u32> = ids
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(trained, attempt, "the replaced stop is not the student's");
        // A stop that is the boundary's first token stays, trained.
        let mut ids2 = tok
            .encode_prompt(&Dialogue::from_task("1+1="), Role::Student)
            .unwrap();
        let mut mask2 = vec![false; ids2.len()];
        ids2.extend(&attempt);
        ids2.push(im_end);
        mask2.extend(vec![true; attempt.len() + 1]);
        tok.hand_over(
            &mut ids2,
            &mut mask2,
            Some(im_end),
            Role::Student,
            Role::Teacher,
        )
        .unwrap();
        assert_eq!(mask2.iter().filter(|m| **m).count(), attempt.len() + 1);
        ids.extend(tok.encode("2").unwrap());
        ids.push(im_end);
        assert_eq!(tok.turn_texts(&ids, Role::Teacher).unwrap(), ["Too high."]);
        // The teacher's turn as a loss mask: its tokens and the one that ends it.
        let mask = tok.turn_mask(&ids, Role::Teacher).unwrap();
        let marked: Vec<u32> = ids
            .iter()
            .zip(&mask)
            .filter(|p| *p.1)
            .map(|p| *p.0)
            .collect();
        let mut turn = tok.encode("Too high.").unwrap();
        turn.push(im_end);
        assert_eq!(marked, turn);
    }

    #[test]
    fn a_tokenizer_without_role_tokens_or_template_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let tok = HfTokenizer::train(corpus().into_iter(), 300, &["<|endoftext|>"]).unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let err = Tokenizer::load(&path).err().unwrap().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("chat template"),
            "{err}"
        );
        std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
        let err = Tokenizer::load(&path).err().unwrap().to_string();
        assert!(err.contains("no `chat_template`"), "{err}");
    }

    /// For every family of the fixtures, a tokenizer with the family's
    /// special tokens and chat template: dialogues encode to the text
    /// transformers renders, and the student's mask covers its answers and
    /// the token that ends each, whatever that token is.
    #[test]
    fn every_family_encodes_as_rendered_with_student_masks_from_roles() {
        let fixtures =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json");
        let families: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures).unwrap()).unwrap();
        let specials = |family: &str| -> (Vec<&'static str>, &'static str) {
            match family {
                "qwen2.5" | "smollm2" => (vec!["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
                "llama3" => (
                    vec![
                        "<|begin_of_text|>",
                        "<|start_header_id|>",
                        "<|end_header_id|>",
                        "<|eot_id|>",
                    ],
                    "<|eot_id|>",
                ),
                "tinyllama" => (
                    vec!["<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"],
                    "</s>",
                ),
                other => panic!("no specials for {other}"),
            }
        };
        for family in families.as_array().unwrap() {
            let name = family["family"].as_str().unwrap();
            let (tokens, closer) = specials(name);
            let dir = tempfile::tempdir().unwrap();
            let mut text = corpus();
            text.push("system user assistant Incorrect.".into());
            HfTokenizer::train(text.into_iter(), 320, &tokens)
                .unwrap()
                .save(&dir.path().join("tokenizer.json"))
                .unwrap();
            let config = serde_json::json!({
                "chat_template": family["chat_template"],
                "bos_token": family["bos_token"],
                "eos_token": family["eos_token"],
            });
            std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
            let tok = Tokenizer::load(&dir.path().join("tokenizer.json")).unwrap();
            // Case 2 of each family: the four-turn dialogue, no system
            // prompt, no generation prompt.
            let case = &family["cases"][2];
            assert_eq!(case["messages"].as_array().unwrap().len(), 4);
            let mut d = Dialogue::from_task("347+589=");
            d.push(Role::Student, "926")
                .push(Role::Teacher, "Incorrect. The tens digit is wrong.")
                .push(Role::Student, "936");
            let enc = tok.encode_dialogue(&d).unwrap();
            assert_eq!(
                tok.decode(&enc.ids).unwrap(),
                case["expected"].as_str().unwrap(),
                "{name}"
            );
            let close = tok.encode(closer).unwrap();
            assert_eq!(close.len(), 1, "{name}");
            let student = masked(&enc, &enc.loss_mask(Role::Student));
            let mut expected = tok.encode("926").unwrap();
            expected.extend(&close);
            expected.extend(tok.encode("936").unwrap());
            expected.extend(&close);
            assert_eq!(student, expected, "{name}");
            assert!(tok.stop_ids().contains(&close[0]), "{name}");
        }
    }
}
