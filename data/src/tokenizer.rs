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

/// A trained tokenizer and the ids of its special tokens.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    role_ids: [u32; 4],
    end_id: u32,
    pad_id: u32,
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
        let specials: Vec<AddedToken> = special_tokens()
            .into_iter()
            .map(|t| AddedToken::from(t, true).lstrip(true).rstrip(true))
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
        Self::from_inner(inner, here)
    }

    /// Loads a `tokenizer.json` and checks that it has didact's special tokens.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(tok_err(path, "file not found"));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        Self::from_inner(inner, path)
    }

    fn from_inner(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self> {
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| tok_err(path, format!("missing special token {t}")))
        };
        Ok(Self {
            role_ids: [
                id(Role::Task.token())?,
                id(Role::Student.token())?,
                id(Role::Teacher.token())?,
                id(Role::Critic.token())?,
            ],
            end_id: id(END_TOKEN)?,
            pad_id: id(PAD_TOKEN)?,
            inner,
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

    pub fn role_id(&self, role: Role) -> u32 {
        self.role_ids[Role::ALL
            .iter()
            .position(|r| *r == role)
            .expect("every role")]
    }

    pub fn end_id(&self) -> u32 {
        self.end_id
    }

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

    /// Encodes a finished dialogue turn by turn, labelling each token with its
    /// [`TokenKind`] so that loss masks can be derived from roles.
    pub fn encode_dialogue(&self, dialogue: &Dialogue) -> Result<EncodedDialogue> {
        let mut ids = Vec::new();
        let mut kinds = Vec::new();
        let mut previous: Option<Role> = None;
        for turn in &dialogue.turns {
            ids.push(self.role_id(turn.role));
            kinds.push(TokenKind::Boundary {
                closes: previous,
                opens: Some(turn.role),
            });
            let content = self.encode(&turn.text)?;
            kinds.extend(std::iter::repeat_n(
                TokenKind::Content(turn.role),
                content.len(),
            ));
            ids.extend(content);
            previous = Some(turn.role);
        }
        ids.push(self.end_id);
        kinds.push(TokenKind::Boundary {
            closes: previous,
            opens: None,
        });
        Ok(EncodedDialogue { ids, kinds })
    }
}

/// Any Hugging Face `tokenizer.json`, used as its authors configured it
/// (normaliser, pre-tokeniser, post-processor): for checkpoints not trained
/// by didact, whose vocabularies lack didact's role tokens.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl HfTokenizer {
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
        assert_eq!(tok.role_id(Role::Task), 1);
        assert_eq!(tok.end_id(), 5);
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
        let student: Vec<u32> = enc
            .ids
            .iter()
            .zip(enc.loss_mask(Role::Student))
            .filter(|(_, m)| *m)
            .map(|(id, _)| *id)
            .collect();
        let mut expected = tok.encode("926").unwrap();
        expected.push(tok.role_id(Role::Teacher));
        expected.extend(tok.encode("936").unwrap());
        expected.push(tok.end_id());
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
}
