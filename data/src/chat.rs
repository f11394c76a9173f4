//! Chat templates of pretrained models. A pretrained instruction-tuned
//! model has learnt its own dialogue format, so didact's dialogues are
//! rendered through the model's Jinja template (the task and the teacher
//! speak as the user, the student is the assistant) rather than with
//! didact's role tokens.
//!
//! Templates are rendered with minijinja configured as transformers renders
//! them (`trim_blocks`, `lstrip_blocks`, Python string methods,
//! `raise_exception`). From a template, [`ChatLayout::derive`] finds the
//! text it puts around messages by rendering marker messages, so that a
//! dialogue can be encoded turn by turn with every token's role known: loss
//! masks still come from roles, whatever the template.

use std::path::Path;

use serde::Serialize;

use crate::dialogue::{Dialogue, Role};
use crate::error::{DataError, Result};

/// Who speaks a message in a chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Speaker {
    System,
    User,
    Assistant,
}

impl Speaker {
    /// The task, the teacher and the critic speak as the user; the student
    /// is the assistant.
    pub fn of(role: Role) -> Self {
        match role {
            Role::Student => Self::Assistant,
            Role::Task | Role::Teacher | Role::Critic => Self::User,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message as chat templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(speaker: Speaker, content: &str) -> Self {
        Self {
            role: speaker.name().to_string(),
            content: content.to_string(),
        }
    }
}

/// The key of a run's `tokenizer_config.json` that holds the system prompt
/// didact renders dialogues with (transformers ignores it).
pub const SYSTEM_PROMPT_KEY: &str = "didact_system_prompt";

/// A Jinja chat template and the special tokens it may refer to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// The token batches are padded with, when the model names one.
    pub pad_token: Option<String>,
    /// The system prompt a run recorded beside the template
    /// ([`SYSTEM_PROMPT_KEY`]).
    pub system_prompt: Option<String>,
}

/// Date given to templates that print today's date (Llama 3.1 and later),
/// fixed so that prompts do not change from one day to the next. It is the
/// date those templates use when none is given.
const TEMPLATE_DATE: (u32, u32, u32) = (2024, 7, 26);

fn template_err(what: impl std::fmt::Display) -> DataError {
    DataError::ChatTemplate(what.to_string())
}

/// A special token in `tokenizer_config.json`: a string, or an object with
/// its `content` (the serialised `AddedToken` form), or null.
fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// Reads the template of a model directory the way transformers does:
    /// `chat_template.jinja` if present, else the `chat_template` field of
    /// `tokenizer_config.json` (a string, or a list of named templates of
    /// which `default` is used). Special tokens come from
    /// `tokenizer_config.json`, and so does a run's recorded system prompt.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| DataError::Io {
            path: config_path.clone(),
            source: e,
        })?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| template_err(format!("{}: not valid JSON: {e}", config_path.display())))?;
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.exists() {
            std::fs::read_to_string(&jinja).map_err(|e| DataError::Io {
                path: jinja.clone(),
                source: e,
            })?
        } else {
            match config.get("chat_template") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        template_err(format!(
                            "{}: `chat_template` is a list without a `default` template",
                            config_path.display()
                        ))
                    })?,
                _ => {
                    return Err(template_err(format!(
                        "{}: no `chat_template` (and no chat_template.jinja beside it): \
                         the model has no chat format; use an instruction-tuned checkpoint",
                        config_path.display()
                    )));
                }
            }
        };
        Ok(Self {
            source,
            bos_token: special_token(&config, "bos_token").unwrap_or_default(),
            eos_token: special_token(&config, "eos_token").unwrap_or_default(),
            pad_token: special_token(&config, "pad_token"),
            system_prompt: config
                .get(SYSTEM_PROMPT_KEY)
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }

    /// Renders `messages` as transformers' `apply_chat_template(...,
    /// tokenize=False)` does.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("the template raised: {message}"),
                ))
            },
        );
        env.add_function("strftime_now", |format: String| strftime(&format));
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.source, ctx)
            .map_err(|e| template_err(format!("rendering failed: {e:#}")))
    }
}

/// The few `strftime` directives date-printing templates use, on the fixed
/// [`TEMPLATE_DATE`].
fn strftime(format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (y, m, d) = TEMPLATE_DATE;
    let month = MONTHS[m as usize - 1];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The text a chat template puts before, between and after messages.
/// A dialogue renders as `prefix`, then each turn's text joined by the
/// separator for its pair of speakers, then the closing text of its last
/// speaker; a prompt ends with the separator that opens the next speaker's
/// turn instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLayout {
    /// Before the first user message: a BOS token, the system prompt (the
    /// configured one or the template's default).
    pub prefix: String,
    pub user_to_assistant: String,
    pub assistant_to_user: String,
    /// After a final user message.
    pub user_end: String,
    /// After a final assistant message.
    pub assistant_end: String,
}

/// The texts of a [`ChatLayout`], by where they fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Prefix,
    UserToAssistant,
    AssistantToUser,
    UserEnd,
    AssistantEnd,
}

impl Piece {
    pub const ALL: [Piece; 5] = [
        Self::Prefix,
        Self::UserToAssistant,
        Self::AssistantToUser,
        Self::UserEnd,
        Self::AssistantEnd,
    ];
}

/// Marker contents: plain text that no template alters or produces.
fn marker(i: usize) -> String {
    format!("DIDACTMARKER{i}X")
}

/// `text` cut at each marker in turn: the pieces before, between and after.
fn split_at_markers(text: &str, n: usize) -> Result<Vec<String>> {
    let mut pieces = Vec::with_capacity(n + 1);
    let mut rest = text;
    for i in 0..n {
        let m = marker(i);
        let at = rest.find(&m).ok_or_else(|| {
            template_err(format!(
                "message {i} does not appear verbatim in the rendered text; \
                 didact needs a template that renders message contents as they are"
            ))
        })?;
        pieces.push(rest[..at].to_string());
        rest = &rest[at + m.len()..];
    }
    pieces.push(rest.to_string());
    Ok(pieces)
}

impl ChatLayout {
    /// Finds the layout by rendering alternating user and assistant
    /// markers, after an optional system prompt, and checks that the
    /// template renders every turn the same way wherever it falls (which
    /// turn-by-turn encoding relies on). A template that does not is
    /// refused with the reason.
    pub fn derive(template: &ChatTemplate, system: Option<&str>) -> Result<Self> {
        let head: Vec<Message> = system
            .map(|s| Message::new(Speaker::System, s))
            .into_iter()
            .collect();
        let messages = |n: usize| {
            let mut m = head.clone();
            m.extend((0..n).map(|i| {
                let speaker = if i % 2 == 0 {
                    Speaker::User
                } else {
                    Speaker::Assistant
                };
                Message::new(speaker, &marker(i))
            }));
            m
        };
        let four = split_at_markers(&template.render(&messages(4), false)?, 4)?;
        let three = split_at_markers(&template.render(&messages(3), false)?, 3)?;
        let prompt = split_at_markers(&template.render(&messages(1), true)?, 1)?;
        let layout = Self {
            prefix: four[0].clone(),
            user_to_assistant: four[1].clone(),
            assistant_to_user: four[2].clone(),
            user_end: three[3].clone(),
            assistant_end: four[4].clone(),
        };
        let irregular = |what: &str| {
            Err(template_err(format!(
                "the template is not supported: {what} (didact encodes dialogues turn by turn \
                 and needs every turn rendered the same way)"
            )))
        };
        if four[3] != layout.user_to_assistant {
            return irregular("the second user→assistant handover differs from the first");
        }
        if three[..3] != four[..3] {
            return irregular("a dialogue's rendering changes when a turn is added");
        }
        if prompt[0] != layout.prefix {
            return irregular("the prefix depends on the number of messages");
        }
        if prompt[1] != layout.user_to_assistant {
            return irregular(
                "the generation prompt differs from the opening of an assistant turn in a dialogue",
            );
        }
        for (name, text) in [
            ("user→assistant", &layout.user_to_assistant),
            ("assistant→user", &layout.assistant_to_user),
            ("end of an assistant turn", &layout.assistant_end),
        ] {
            if text.is_empty() {
                return irregular(&format!("nothing marks the {name}"));
            }
        }
        Ok(layout)
    }

    /// Which text lies between a turn of `closes` and one of `opens`;
    /// `None` is the start (for `closes`) or the end (for `opens`) of the
    /// dialogue.
    pub fn piece(closes: Option<Role>, opens: Option<Role>) -> Result<Piece> {
        match (closes.map(Speaker::of), opens.map(Speaker::of)) {
            (None, Some(Speaker::User)) => Ok(Piece::Prefix),
            (Some(Speaker::User), Some(Speaker::Assistant)) => Ok(Piece::UserToAssistant),
            (Some(Speaker::Assistant), Some(Speaker::User)) => Ok(Piece::AssistantToUser),
            (Some(Speaker::User), None) => Ok(Piece::UserEnd),
            (Some(Speaker::Assistant), None) => Ok(Piece::AssistantEnd),
            (c, o) => Err(DataError::Dialogue(format!(
                "a chat template cannot render a turn of {} after {}: \
                 dialogues open with a user turn and alternate",
                o.map_or("nothing", Speaker::name),
                c.map_or("the start", Speaker::name),
            ))),
        }
    }

    pub fn text(&self, piece: Piece) -> &str {
        match piece {
            Piece::Prefix => &self.prefix,
            Piece::UserToAssistant => &self.user_to_assistant,
            Piece::AssistantToUser => &self.assistant_to_user,
            Piece::UserEnd => &self.user_end,
            Piece::AssistantEnd => &self.assistant_end,
        }
    }

    /// The text between a turn of `closes` and one of `opens`.
    pub fn between(&self, closes: Option<Role>, opens: Option<Role>) -> Result<&str> {
        Ok(self.text(Self::piece(closes, opens)?))
    }

    /// The finished dialogue as the template renders it.
    pub fn render(&self, dialogue: &Dialogue) -> Result<String> {
        let mut out = self.render_turns(dialogue)?;
        out.push_str(self.between(dialogue.turns.last().map(|t| t.role), None)?);
        Ok(out)
    }

    /// The dialogue so far, opened for `next` (the generation prompt when
    /// `next` is the student).
    pub fn render_prompt(&self, dialogue: &Dialogue, next: Role) -> Result<String> {
        let mut out = self.render_turns(dialogue)?;
        out.push_str(self.between(dialogue.turns.last().map(|t| t.role), Some(next))?);
        Ok(out)
    }

    fn render_turns(&self, dialogue: &Dialogue) -> Result<String> {
        let mut out = String::new();
        let mut previous = None;
        for turn in &dialogue.turns {
            out.push_str(self.between(previous, Some(turn.role))?);
            out.push_str(&turn.text);
            previous = Some(turn.role);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Family {
        family: String,
        chat_template: String,
        bos_token: Option<String>,
        eos_token: String,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        messages: Vec<CaseMessage>,
        add_generation_prompt: bool,
        expected: String,
    }

    #[derive(serde::Deserialize)]
    struct CaseMessage {
        role: String,
        content: String,
    }

    /// Rendered by transformers (scripts/make_chat_fixtures.py).
    fn families() -> Vec<Family> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn template(f: &Family) -> ChatTemplate {
        ChatTemplate {
            source: f.chat_template.clone(),
            bos_token: f.bos_token.clone().unwrap_or_default(),
            eos_token: f.eos_token.clone(),
            ..Default::default()
        }
    }

    #[test]
    fn templates_render_as_transformers_renders_them() {
        let families = families();
        assert_eq!(families.len(), 4);
        for f in &families {
            let t = template(f);
            for case in &f.cases {
                let messages: Vec<Message> = case
                    .messages
                    .iter()
                    .map(|m| Message {
                        role: m.role.clone(),
                        content: m.content.clone(),
                    })
                    .collect();
                assert_eq!(
                    t.render(&messages, case.add_generation_prompt).unwrap(),
                    case.expected,
                    "{}",
                    f.family
                );
            }
        }
    }

    /// The fixture's messages as a didact dialogue (user turns after the
    /// first are the teacher's), with the system prompt if there is one.
    fn dialogue(case: &Case) -> (Option<String>, Dialogue) {
        let system = case
            .messages
            .iter()
            .find(|m| m.role == "system")
            .map(|m| m.content.clone());
        let mut d = Dialogue::default();
        for m in case.messages.iter().filter(|m| m.role != "system") {
            let role = match (m.role.as_str(), d.turns.is_empty()) {
                ("user", true) => Role::Task,
                ("user", false) => Role::Teacher,
                _ => Role::Student,
            };
            d.push(role, &m.content);
        }
        (system, d)
    }

    #[test]
    fn layouts_render_dialogues_exactly_as_the_template_does() {
        for f in &families() {
            let t = template(f);
            for case in &f.cases {
                let (system, d) = dialogue(case);
                let layout = ChatLayout::derive(&t, system.as_deref()).unwrap();
                let text = if case.add_generation_prompt {
                    layout.render_prompt(&d, Role::Student).unwrap()
                } else {
                    layout.render(&d).unwrap()
                };
                assert_eq!(text, case.expected, "{}", f.family);
            }
        }
    }

    #[test]
    fn layouts_of_the_families_are_the_documented_ones() {
        let families = families();
        let layout = |name: &str| {
            let f = families.iter().find(|f| f.family == name).unwrap();
            ChatLayout::derive(&template(f), None).unwrap()
        };
        let qwen = layout("qwen2.5");
        assert!(
            qwen.prefix.contains("You are Qwen"),
            "default system prompt"
        );
        assert_eq!(
            qwen.user_to_assistant,
            "<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(qwen.assistant_end, "<|im_end|>\n");
        let llama = layout("llama3");
        assert_eq!(
            llama.prefix,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        );
        assert_eq!(llama.assistant_end, "<|eot_id|>");
        let tiny = layout("tinyllama");
        assert_eq!(tiny.assistant_to_user, "</s>\n<|user|>\n");
    }

    #[test]
    fn irregular_or_broken_templates_are_refused_with_a_reason() {
        let t = |source: &str| ChatTemplate {
            source: source.into(),
            ..Default::default()
        };
        // Numbers its turns: the handovers differ.
        let numbered = t(
            "{% for m in messages %}[{{ loop.index }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[{{ messages|length + 1 }}]{% endif %}",
        );
        let err = ChatLayout::derive(&numbered, None).unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
        let dropping = t("{% for m in messages %}{{ m.role }}{% endfor %}");
        let err = ChatLayout::derive(&dropping, None).unwrap_err().to_string();
        assert!(err.contains("verbatim"), "{err}");
        let raising = t("{{ raise_exception('Conversation roles must alternate') }}");
        let err = ChatLayout::derive(&raising, None).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        let syntax = t("{% for m in messages %}");
        assert!(ChatLayout::derive(&syntax, None).is_err());
    }

    #[test]
    fn a_dialogue_that_does_not_alternate_is_an_error() {
        let f = &families()[0];
        let layout = ChatLayout::derive(&template(f), None).unwrap();
        let mut d = Dialogue::from_task("1+1=");
        d.push(Role::Teacher, "Think.");
        let err = layout.render(&d).unwrap_err().to_string();
        assert!(err.contains("alternate"), "{err}");
    }

    #[test]
    fn dates_are_fixed_and_formatted() {
        assert_eq!(strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(strftime("%B %d, %y %%q"), "July 26, 24 %q");
    }

    #[test]
    fn loads_from_a_model_directory_in_either_form() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &config,
            r#"{"eos_token": {"content": "</s>"}, "bos_token": "<s>"}"#,
        )
        .unwrap();
        let err = ChatTemplate::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("no `chat_template`"),
            "{err}"
        );
        std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}").unwrap();
        let t = ChatTemplate::load(dir.path()).unwrap();
        assert_eq!(
            (t.bos_token.as_str(), t.eos_token.as_str()),
            ("<s>", "</s>")
        );
        assert_eq!(t.render(&[], false).unwrap(), "<s>");
        std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
        std::fs::write(
            &config,
            r#"{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "y"}]}"#,
        )
        .unwrap();
        assert_eq!(ChatTemplate::load(dir.path()).unwrap().source, "y");
        std::fs::write(&config, "{ nope").unwrap();
        let err = ChatTemplate::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
