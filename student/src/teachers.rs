//! Teachers that write their own critiques, in place of the domains'
//! programmatic teacher: the student's base model as its own teacher (the
//! papers' setting: the same model, the answer in its prompt, told not to
//! reveal it), and any OpenAI-compatible chat-completions endpoint. Both
//! vet every draft with the leak check ([`didact_data::teaching`]) and
//! count what they vetted in a shared [`LeakTally`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use didact_data::Tokenizer;
use didact_data::chat::Message;
use didact_data::rng::mix_seed;
use didact_data::teaching::{
    DEFAULT_INSTRUCTIONS, LeakTally, correct_reply, teacher_chat, vet_critiques,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::generate::{SamplingParams, generate_seeded};
use crate::kernels::Kernels;
use crate::model::Llama;
use crate::rollout::{Reply, Request, Responder};

/// Who answers the student's wrong attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherKind {
    /// The domain's programmatic teacher at the configured feedback level.
    #[default]
    Programmatic,
    /// The base model itself, with the answer in its prompt (needs a
    /// pretrained chat model).
    Model,
    /// An OpenAI-compatible chat-completions endpoint (`[teacher.http]`).
    Http,
}

/// The teacher of the RL²F stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherConfig {
    pub kind: TeacherKind,
    /// The system prompt of a model or HTTP teacher; the answer is appended.
    pub instructions: String,
    /// Longest critique, in tokens.
    pub max_new_tokens: usize,
    /// Sampling temperature of a critique (0: greedy; redrafts of a greedy
    /// model teacher would repeat themselves, so it samples at 0.7 then).
    pub temperature: f32,
    /// Redrafts of a leaking or empty critique before the verdict-only
    /// message replaces it.
    pub regenerate: usize,
    /// Critiques per batched generation of a model teacher.
    pub batch_size: usize,
    pub http: HttpConfig,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            kind: TeacherKind::Programmatic,
            instructions: DEFAULT_INSTRUCTIONS.to_string(),
            max_new_tokens: 96,
            temperature: 0.7,
            regenerate: 2,
            batch_size: 32,
            http: HttpConfig::default(),
        }
    }
}

/// An OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's server, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Up to and including the version, e.g. `https://api.openai.com/v1`;
    /// requests go to `<base_url>/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key, sent as a bearer
    /// token; no header when it is unset (local servers need none).
    pub api_key_env: String,
    /// Per request, connection included.
    pub timeout_s: f64,
    /// Retries of a request that timed out, failed to connect, or got
    /// 429 or a 5xx status; other statuses fail at once.
    pub retries: u32,
    /// Wait before the first retry, doubled before each next one.
    pub backoff_s: f64,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            timeout_s: 60.0,
            retries: 3,
            backoff_s: 1.0,
            concurrency: 8,
        }
    }
}

impl TeacherConfig {
    /// Checks every value, naming the offending key under `prefix`.
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("{prefix}.{key}: {why}"));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1");
        }
        if !(0.0..=5.0).contains(&self.temperature) {
            return bad("temperature", "must be between 0 and 5");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.kind == TeacherKind::Http {
            let h = &self.http;
            if !(h.base_url.starts_with("http://") || h.base_url.starts_with("https://")) {
                return bad("http.base_url", "must start with http:// or https://");
            }
            if h.model.trim().is_empty() {
                return bad("http.model", "must name the endpoint's model");
            }
            if !h.timeout_s.is_finite() || h.timeout_s <= 0.0 {
                return bad("http.timeout_s", "must be positive");
            }
            if !h.backoff_s.is_finite() || h.backoff_s < 0.0 {
                return bad("http.backoff_s", "must not be negative");
            }
            if h.concurrency == 0 {
                return bad("http.concurrency", "must be at least 1");
            }
        }
        Ok(())
    }
}

fn teacher_err(what: impl std::fmt::Display) -> StudentError {
    StudentError::Teacher(what.to_string())
}

/// Replies to requests: correct attempts get [`correct_reply`], the others
/// a critique drafted by `draft(round, conversations)` from the teacher's
/// conversation about each ([`teacher_chat`]), vetted ([`vet_critiques`]),
/// and counted in `tally`.
fn reply_all(
    requests: &[Request<'_>],
    cfg: &TeacherConfig,
    tally: &Mutex<LeakTally>,
    mut draft: impl FnMut(usize, &[&Vec<Message>]) -> Result<Vec<String>>,
) -> Result<Vec<Reply>> {
    let wrong: Vec<&Request<'_>> = requests
        .iter()
        .filter(|r| !r.verdict.is_correct())
        .collect();
    let tasks: Vec<_> = wrong.iter().map(|r| r.task).collect();
    let chats: Vec<Vec<Message>> = wrong
        .iter()
        .map(|r| teacher_chat(r.task, r.attempt, r.verdict, &cfg.instructions))
        .collect();
    let mut counted = LeakTally::default();
    let vetted = vet_critiques(&tasks, cfg.regenerate, &mut counted, |round, which| {
        let batch: Vec<&Vec<Message>> = which.iter().map(|&i| &chats[i]).collect();
        draft(round, &batch)
    });
    tally.lock().expect("tally").add(&counted);
    let mut vetted = vetted?.into_iter();
    Ok(requests
        .iter()
        .map(|r| {
            let v = if r.verdict.is_correct() {
                correct_reply()
            } else {
                vetted.next().expect("one critique per wrong attempt")
            };
            Reply {
                message: v.message,
                leak_blocked: v.leak_blocked,
                judged_correct: r.verdict.is_correct(),
            }
        })
        .collect())
}

/// The student's base model as its own teacher.
pub struct ModelTeacher<'a, B: Kernels> {
    pub model: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    pub cfg: &'a TeacherConfig,
    pub seed: u64,
    pub device: B::Device,
    pub tally: Arc<Mutex<LeakTally>>,
    /// Calls so far: each call samples with its own seeds.
    calls: u64,
}

impl<'a, B: Kernels> ModelTeacher<'a, B> {
    pub fn new(
        model: &'a Llama<B>,
        tokenizer: &'a Tokenizer,
        cfg: &'a TeacherConfig,
        seed: u64,
        device: B::Device,
        tally: Arc<Mutex<LeakTally>>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            cfg,
            seed,
            device,
            tally,
            calls: 0,
        }
    }

    /// Drafts for `prompts`, batched; a prompt too long for the context
    /// gets an empty draft (and so, in the end, the verdict-only message).
    fn draft(&self, prompts: &[&Vec<u32>], round: usize, call: u64) -> Result<Vec<String>> {
        let context = self.model.config.max_position_embeddings;
        let temperature = if round > 0 && self.cfg.temperature == 0.0 {
            0.7
        } else {
            self.cfg.temperature
        };
        let stops = self.tokenizer.stop_ids();
        let mut out = vec![String::new(); prompts.len()];
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| prompts[i].len());
        for chunk in order.chunks(self.cfg.batch_size.max(1)) {
            let longest = chunk.iter().map(|&i| prompts[i].len()).max().unwrap_or(0);
            let budget = self.cfg.max_new_tokens.min(context.saturating_sub(longest));
            if budget == 0 {
                continue;
            }
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let seeds: Vec<u64> = chunk
                .iter()
                .map(|&i| mix_seed(&[self.seed, call, round as u64, i as u64]))
                .collect();
            let params = SamplingParams {
                temperature,
                top_p: 1.0,
                max_new_tokens: budget,
            };
            let gens = generate_seeded(
                self.model,
                &batch,
                &stops,
                self.tokenizer.pad_id(),
                &params,
                &seeds,
                &self.device,
            );
            for (&i, g) in chunk.iter().zip(gens) {
                out[i] = self.tokenizer.decode(&g.tokens)?;
            }
        }
        Ok(out)
    }
}

impl<B: Kernels> Responder for ModelTeacher<'_, B> {
    fn respond(&mut self, requests: &[Request<'_>]) -> Result<Vec<Reply>> {
        let call = self.calls;
        self.calls += 1;
        reply_all(requests, self.cfg, &self.tally, |round, chats| {
            let prompts = chats
                .iter()
                .map(|chat| self.tokenizer.encode_chat(chat))
                .collect::<didact_data::Result<Vec<_>>>()?;
            self.draft(&prompts.iter().collect::<Vec<_>>(), round, call)
        })
    }
}

/// A teacher behind an OpenAI-compatible chat-completions endpoint.
pub struct HttpTeacher {
    cfg: TeacherConfig,
    api_key: Option<String>,
    agent: ureq::Agent,
    pub tally: Arc<Mutex<LeakTally>>,
}

impl HttpTeacher {
    /// The API key comes from the environment variable the config names.
    pub fn new(cfg: &TeacherConfig, tally: Arc<Mutex<LeakTally>>) -> Self {
        let key = std::env::var(&cfg.http.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        Self::with_key(cfg, key, tally)
    }

    pub fn with_key(
        cfg: &TeacherConfig,
        api_key: Option<String>,
        tally: Arc<Mutex<LeakTally>>,
    ) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs_f64(cfg.http.timeout_s))
            .build();
        Self {
            cfg: cfg.clone(),
            api_key,
            agent,
            tally,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.cfg.http.base_url.trim_end_matches('/')
        )
    }

    /// One completion, retried with backoff on timeouts, connection
    /// failures, 429 and 5xx.
    pub fn complete(&self, messages: &[Message]) -> Result<String> {
        let url = self.url();
        let body = serde_json::json!({
            "model": self.cfg.http.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_new_tokens,
        });
        let attempts = self.cfg.http.retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                let wait = self.cfg.http.backoff_s * 2f64.powi(attempt as i32 - 1);
                std::thread::sleep(Duration::from_secs_f64(wait));
            }
            let mut request = self.agent.post(&url);
            if let Some(key) = &self.api_key {
                request = request.set("Authorization", &format!("Bearer {key}"));
            }
            match request.send_json(&body) {
                Ok(response) => {
                    let text = response.into_string().map_err(|e| {
                        teacher_err(format!("{url}: cannot read the response: {e}"))
                    })?;
                    return content_of(&text)
                        .map_err(|why| teacher_err(format!("{url}: unexpected response: {why}")));
                }
                Err(ureq::Error::Status(code, response)) => {
                    let detail: String = response
                        .into_string()
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    last = format!("HTTP {code}: {}", detail.trim());
                    if code != 429 && code < 500 {
                        return Err(teacher_err(format!("{url}: {last}")));
                    }
                }
                Err(ureq::Error::Transport(t)) => last = t.to_string(),
            }
        }
        Err(teacher_err(format!(
            "{url}: {last} (gave up after {attempts} attempts)"
        )))
    }

    /// Completions for every conversation, `concurrency` at a time; the
    /// first failure (in request order) is the error.
    pub fn complete_all(&self, chats: &[Vec<Message>]) -> Result<Vec<String>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<String>>>> =
            Mutex::new((0..chats.len()).map(|_| None).collect());
        let workers = self.cfg.http.concurrency.clamp(1, chats.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= chats.len() {
                            break;
                        }
                        let result = self.complete(&chats[i]);
                        let failed = result.is_err();
                        results.lock().expect("results")[i] = Some(result);
                        if failed {
                            // Stop handing out work; requests in flight finish.
                            next.fetch_add(chats.len(), Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let results = results.into_inner().expect("results");
        let mut out = Vec::with_capacity(chats.len());
        for r in results {
            match r {
                Some(Ok(text)) => out.push(text),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(out)
    }
}

/// The text of the first choice of a chat-completions response.
fn content_of(body: &str) -> std::result::Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    value
        .pointer("/choices/0/message/content")
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            let shown: String = body.chars().take(200).collect();
            format!("no choices[0].message.content in {shown}")
        })
}

impl Responder for HttpTeacher {
    fn respond(&mut self, requests: &[Request<'_>]) -> Result<Vec<Reply>> {
        reply_all(requests, &self.cfg, &self.tally, |_, chats| {
            let batch: Vec<Vec<Message>> = chats.iter().map(|c| (*c).clone()).collect();
            self.complete_all(&batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use didact_data::domain::{Domain, arith::Arith};
    use didact_data::{Task, Verdict};

    /// What the loopback server does with its n-th request (0-based).
    #[derive(Clone)]
    enum Answer {
        Ok(String),
        Status(u16),
        Sleep(Duration),
        Garbage,
    }

    /// Each request's Authorization header and body, as the server saw them.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// An OpenAI-compatible server on loopback answering by `script`; it
    /// records each request's Authorization header and body.
    fn serve(script: impl Fn(usize) -> Answer + Send + 'static) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut auth, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = line["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock()
                    .unwrap()
                    .push((auth, String::from_utf8_lossy(&body).into_owned()));
                let (status, text) = match script(n) {
                    Answer::Ok(content) => (
                        200,
                        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
                            .to_string(),
                    ),
                    Answer::Status(code) => (code, "{\"error\": \"overloaded\"}".to_string()),
                    Answer::Sleep(d) => {
                        std::thread::sleep(d);
                        continue;
                    }
                    Answer::Garbage => (200, "<html>".to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (url, seen)
    }

    fn config(url: &str) -> TeacherConfig {
        let mut cfg = TeacherConfig {
            kind: TeacherKind::Http,
            ..Default::default()
        };
        cfg.http.base_url = url.to_string();
        cfg.http.model = "teacher-model".into();
        cfg.http.timeout_s = 0.5;
        cfg.http.retries = 2;
        cfg.http.backoff_s = 0.01;
        cfg.http.concurrency = 2;
        cfg.validate("teacher").unwrap();
        cfg
    }

    fn tasks() -> Vec<Task> {
        (0..3).map(|s| Arith.generate(s, 2)).collect()
    }

    fn requests<'a>(tasks: &'a [Task], attempts: &'a [String]) -> Vec<Request<'a>> {
        tasks
            .iter()
            .zip(attempts)
            .map(|(t, a)| Request {
                task: t,
                attempt: a,
                verdict: Arith.verify(t, a).unwrap(),
                context: &[],
                stop: None,
            })
            .collect()
    }

    #[test]
    fn http_critiques_are_vetted_and_the_key_is_sent() {
        let tasks = tasks();
        let leak = format!("It is {}.", tasks[1].solution);
        // Request 1 (the second wrong attempt's first draft) leaks.
        let (url, seen) = serve(move |n| {
            Answer::Ok(if n == 1 {
                leak.clone()
            } else {
                "Check the carries.".into()
            })
        });
        let tally = Arc::new(Mutex::new(LeakTally::default()));
        let mut cfg = config(&url);
        cfg.http.concurrency = 1;
        let mut teacher = HttpTeacher::with_key(&cfg, Some("sk-test".into()), tally.clone());
        let attempts: Vec<String> = vec!["0".into(), "1".into(), tasks[2].solution.clone()];
        let replies = teacher.respond(&requests(&tasks, &attempts)).unwrap();
        assert_eq!(replies[0].message, "Check the carries.");
        assert_eq!(replies[1].message, "Check the carries.", "redrafted");
        assert_eq!(
            replies[2].message, "Correct.",
            "no request for a correct attempt"
        );
        assert!(replies[2].judged_correct && !replies[0].judged_correct);
        let t = *tally.lock().unwrap();
        assert_eq!(
            (t.critiques, t.drafts, t.leaked_drafts, t.redacted),
            (2, 3, 1, 0)
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, "Bearer sk-test");
        let body: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
        assert_eq!(body["model"], "teacher-model");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains(&tasks[0].solution)
        );
        assert!(
            body["messages"][1]["content"]
                .as_str()
                .unwrap()
                .contains(&tasks[0].prompt)
        );
    }

    #[test]
    fn overloaded_servers_are_retried_with_backoff() {
        let (url, seen) = serve(|n| {
            if n < 2 {
                Answer::Status(503)
            } else {
                Answer::Ok("Look at the last digit.".into())
            }
        });
        let teacher = HttpTeacher::with_key(&config(&url), None, Default::default());
        let text = teacher
            .complete(&[Message::new(didact_data::chat::Speaker::User, "hi")])
            .unwrap();
        assert_eq!(text, "Look at the last digit.");
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(seen.lock().unwrap()[0].0, "", "no key, no header");
    }

    #[test]
    fn failures_and_timeouts_are_clear_errors() {
        let hi = [Message::new(didact_data::chat::Speaker::User, "hi")];
        let (url, _) = serve(|_| Answer::Status(500));
        let err = HttpTeacher::with_key(&config(&url), None, Default::default())
            .complete(&hi)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&url) && err.contains("HTTP 500") && err.contains("after 3 attempts"),
            "{err}"
        );
        let (url, seen) = serve(|_| Answer::Status(401));
        let err = HttpTeacher::with_key(&config(&url), None, Default::default())
            .complete(&hi)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 401"), "{err}");
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "a client error is not retried"
        );
        let (url, _) = serve(|_| Answer::Sleep(Duration::from_secs(3)));
        let started = std::time::Instant::now();
        let err = HttpTeacher::with_key(&config(&url), None, Default::default())
            .complete(&hi)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("timed out") && err.contains("after 3 attempts"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the timeout applies"
        );
        let (url, _) = serve(|_| Answer::Garbage);
        let err = HttpTeacher::with_key(&config(&url), None, Default::default())
            .complete(&hi)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unexpected response") && err.contains("not JSON"),
            "{err}"
        );
        // Nothing listens here.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = HttpTeacher::with_key(
            &config(&format!("http://{closed}/v1")),
            None,
            Default::default(),
        )
        .complete(&hi)
        .unwrap_err()
        .to_string();
        assert!(err.contains("after 3 attempts"), "{err}");
    }

    #[test]
    fn one_failed_request_fails_the_batch() {
        let (url, _) = serve(|n| {
            if n == 1 {
                Answer::Status(400)
            } else {
                Answer::Ok("Hint.".into())
            }
        });
        let teacher = HttpTeacher::with_key(&config(&url), None, Default::default());
        let chats: Vec<Vec<Message>> = (0..4)
            .map(|i| {
                vec![Message::new(
                    didact_data::chat::Speaker::User,
                    &i.to_string(),
                )]
            })
            .collect();
        let err = teacher.complete_all(&chats).unwrap_err().to_string();
        assert!(err.contains("HTTP 400"), "{err}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut cfg = config("http://127.0.0.1:1/v1");
        cfg.http.model = " ".into();
        assert!(
            cfg.validate("teacher")
                .unwrap_err()
                .contains("teacher.http.model")
        );
        cfg.http.model = "m".into();
        cfg.http.base_url = "ftp://x".into();
        assert!(
            cfg.validate("teacher")
                .unwrap_err()
                .contains("teacher.http.base_url")
        );
    }

    #[test]
    fn a_model_teacher_needs_a_chat_template() {
        let tasks = tasks();
        let tokenizer = Tokenizer::train(["1+1= 2"].into_iter(), 300).unwrap();
        let chat = teacher_chat(&tasks[0], "1", Verdict::Wrong, DEFAULT_INSTRUCTIONS);
        let err = tokenizer.encode_chat(&chat).unwrap_err().to_string();
        assert!(err.contains("pretrained chat model"), "{err}");
    }

    #[test]
    fn the_base_model_teaches_itself_with_vetted_critiques() {
        use burn::backend::Flex;
        let dir = tempfile::tempdir().unwrap();
        let tasks = tasks();
        let mut corpus: Vec<String> = tasks
            .iter()
            .flat_map(|t| [t.prompt.clone(), t.solution.clone()])
            .collect();
        corpus.push(DEFAULT_INSTRUCTIONS.into());
        corpus
            .push("system user assistant Task: The student's answer: wrong. Your feedback:".into());
        let hf =
            didact_data::HfTokenizer::train(corpus.iter(), 400, &["<|im_start|>", "<|im_end|>"])
                .unwrap();
        hf.save(&dir.path().join("tokenizer.json")).unwrap();
        let template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        let config = serde_json::json!({"chat_template": template, "eos_token": "<|im_end|>"});
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        let tokenizer = Tokenizer::load_chat(dir.path(), None).unwrap();
        let mut llama = crate::LlamaConfig::small(tokenizer.vocab_size(), 32, 2, 4, 2);
        llama.max_position_embeddings = 1024;
        let model = crate::checkpoint::init_random::<Flex>(&llama, 5, &Default::default()).unwrap();
        let cfg = TeacherConfig {
            kind: TeacherKind::Model,
            max_new_tokens: 12,
            ..Default::default()
        };
        let attempts: Vec<String> = vec!["0".into(), "1".into(), tasks[2].solution.clone()];
        let ask = |seed| {
            let tally = Arc::new(Mutex::new(LeakTally::default()));
            let mut teacher = ModelTeacher::new(
                &model,
                &tokenizer,
                &cfg,
                seed,
                Default::default(),
                tally.clone(),
            );
            let replies = teacher.respond(&requests(&tasks, &attempts)).unwrap();
            let t = *tally.lock().unwrap();
            (replies, t)
        };
        let (replies, tally) = ask(1);
        assert_eq!(replies[2].message, "Correct.");
        for (r, task) in replies[..2].iter().zip(&tasks) {
            assert!(!r.message.is_empty() && !r.judged_correct);
            assert!(
                didact_data::leak::check(task, &r.message)
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(tally.critiques, 2);
        assert!(tally.drafts >= 2);
        assert_eq!(ask(1).0, replies, "same seed, same critiques");
        // The prompt: the chat template, the answer in the system message,
        // opened for the assistant.
        let chat = teacher_chat(&tasks[0], "0", Verdict::Wrong, DEFAULT_INSTRUCTIONS);
        let text = tokenizer
            .decode(&tokenizer.encode_chat(&chat).unwrap())
            .unwrap();
        assert!(text.starts_with("<|im_start|>system\n"), "{text}");
        assert!(
            text.ends_with("<|im_end|>\n<|im_start|>assistant\n"),
            "{text}"
        );
    }
}
