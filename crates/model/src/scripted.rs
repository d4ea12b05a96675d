//! A deterministic backend for tests: replies are chosen by what the request contains.
//!
//! Rules are checked in order; the first whose needle occurs in the request's rendered text
//! answers. A rule may hold a sequence of replies, handed out one per matching call (the
//! last repeats). Tokens are counted as whitespace-separated words, so usage is predictable.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{
    ChatRequest, Completion, ContinuationScore, FinishReason, Message, ModelBackend, ModelError,
    ModelInfo, PrefixState, TextProtocol, ToolCall, Usage,
};

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Plain assistant text.
    Text(String),
    /// Tool calls, with optional text beside them.
    Tools(Vec<ToolCall>),
    /// The call fails with this error.
    Fail(ModelError),
}

impl From<&str> for Reply {
    fn from(s: &str) -> Self {
        Reply::Text(s.to_owned())
    }
}

impl From<String> for Reply {
    fn from(s: String) -> Self {
        Reply::Text(s)
    }
}

#[derive(Debug)]
struct Rule {
    needle: String,
    replies: Vec<Reply>,
    served: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    prefixes: Vec<Vec<String>>,
    calls: Vec<ChatRequest>,
    /// Replies cut short by an interrupt, by rendered messages: a request with the same
    /// messages whose `assistant_prefix` is the text so far continues them.
    interrupted: Vec<(Vec<String>, String)>,
    interruptions: usize,
}

/// A scripted, deterministic [`ModelBackend`].
#[derive(Debug, Clone)]
pub struct ScriptedBackend {
    state: Arc<Mutex<State>>,
    fallback: String,
    protocol: TextProtocol,
    delay: Duration,
    token_delay: Duration,
    /// Calls take turns, like one embedded model on one device.
    device: Option<Arc<tokio::sync::Mutex<()>>>,
    context_window: u32,
}

impl Default for ScriptedBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedBackend {
    /// A backend that answers "The answer is 0." to anything no rule matches.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            fallback: "The answer is 0.".into(),
            protocol: TextProtocol::Tagged,
            delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            device: None,
            context_window: 32_768,
        }
    }

    /// Answer requests containing `needle` with `reply`.
    pub fn on(self, needle: impl Into<String>, reply: impl Into<Reply>) -> Self {
        self.on_seq(needle, vec![reply.into()])
    }

    /// Answer successive requests containing `needle` with `replies` in turn; the last repeats.
    pub fn on_seq(self, needle: impl Into<String>, replies: Vec<Reply>) -> Self {
        self.lock().rules.push(Rule {
            needle: needle.into(),
            replies,
            served: 0,
        });
        self
    }

    /// The reply when no rule matches.
    pub fn fallback(mut self, text: impl Into<String>) -> Self {
        self.fallback = text.into();
        self
    }

    /// Which protocol the backend advertises to sleep programs.
    pub fn protocol(mut self, protocol: TextProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sleep this long in every call (to test timeouts and scheduling).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sleep this long per generated word, checking the request's interrupt between words
    /// (to test preemption).
    pub fn token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    /// Serve one call at a time, as an embedded model on one device does.
    pub fn one_at_a_time(mut self) -> Self {
        self.device = Some(Arc::default());
        self
    }

    /// How many replies an interrupt has cut short.
    pub fn interruptions(&self) -> usize {
        self.lock().interruptions
    }

    /// Context window in (word) tokens.
    pub fn context_window(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<ChatRequest> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in another test thread must not hide this one's calls.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ScriptedBackend {
    /// With a per-word delay, "generate" `text` word by word; an interrupt between words
    /// returns `Err` with the text so far (a byte prefix of `text`) and remembers the rest.
    async fn generate_slowly(
        &self,
        request: &ChatRequest,
        rendered: &[String],
        text: String,
    ) -> Result<String, String> {
        if self.token_delay.is_zero() {
            return Ok(text);
        }
        let ends: Vec<usize> = text
            .char_indices()
            .filter(|&(i, c)| {
                !c.is_whitespace()
                    && text[i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace)
            })
            .map(|(i, c)| i + c.len_utf8())
            .collect();
        for &end in &ends {
            tokio::time::sleep(self.token_delay).await;
            if end < text.len()
                && request
                    .interrupt
                    .as_ref()
                    .is_some_and(crate::Interrupt::is_triggered)
            {
                let prefix = request.assistant_prefix.as_deref().unwrap_or_default();
                let mut state = self.lock();
                state.interruptions += 1;
                // The resumed request's prefix is the old prefix plus the partial text.
                state
                    .interrupted
                    .push((rendered.to_vec(), format!("{prefix}{text}")));
                return Err(text[..end].to_owned());
            }
        }
        Ok(text)
    }
}

/// Word count: the scripted backend's notion of a token.
pub fn word_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn render(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| format!("{:?}: {}", m.role, m.content))
        .collect()
}

/// Cut `text` to at most `max` words, reporting whether it was cut.
fn truncate_words(text: &str, max: u32) -> (String, bool) {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() as u64 <= u64::from(max) {
        (text.to_owned(), false)
    } else {
        (words[..max as usize].join(" "), true)
    }
}

#[async_trait]
impl ModelBackend for ScriptedBackend {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "scripted".into(),
            fingerprint: "scripted".into(),
            context_window: self.context_window,
            protocol: self.protocol,
            prefix_state: true,
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        let started = Instant::now();
        let _device = match &self.device {
            Some(d) => Some(d.clone().lock_owned().await),
            None => None,
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let rendered = render(&request.messages);
        let haystack = format!(
            "{}\n{}",
            rendered.join("\n"),
            request.assistant_prefix.as_deref().unwrap_or_default()
        );
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| word_tokens(&m.content))
            .sum();
        if prompt_tokens > u64::from(self.context_window) {
            return Err(ModelError::new(
                crate::ModelErrorKind::ContextOverflow,
                format!("{prompt_tokens} tokens > window {}", self.context_window),
            ));
        }
        let (reply, cached) = {
            let mut state = self.lock();
            state.calls.push(request.clone());
            let cached = state
                .prefixes
                .iter()
                .filter(|p| request.reuse_prefix && rendered.starts_with(p))
                .map(|p| p.len())
                .max()
                .map(|n| {
                    request.messages[..n]
                        .iter()
                        .map(|m| word_tokens(&m.content))
                        .sum()
                })
                .unwrap_or(0);
            let resumed = request.assistant_prefix.as_deref().and_then(|prefix| {
                let i = state
                    .interrupted
                    .iter()
                    .position(|(m, full)| *m == rendered && full.starts_with(prefix))?;
                let (_, full) = state.interrupted.remove(i);
                Some(Reply::Text(full[prefix.len()..].to_owned()))
            });
            let reply = resumed
                .or_else(|| {
                    state
                        .rules
                        .iter_mut()
                        .find(|r| haystack.contains(&r.needle))
                        .map(|rule| {
                            let i = rule.served.min(rule.replies.len().saturating_sub(1));
                            rule.served += 1;
                            rule.replies
                                .get(i)
                                .cloned()
                                .unwrap_or(Reply::Text(String::new()))
                        })
                })
                .unwrap_or_else(|| Reply::Text(self.fallback.clone()));
            (reply, cached)
        };
        let (text, tool_calls, finish_reason) = match reply {
            Reply::Fail(err) => return Err(err),
            Reply::Tools(calls) => (String::new(), calls, FinishReason::ToolCalls),
            Reply::Text(text) => {
                let (text, cut) = truncate_words(&text, request.max_tokens);
                let cut_at_stop = request
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                    .map(|i| text[..i].to_owned());
                let finish = if cut {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                let text = cut_at_stop.unwrap_or(text);
                match self.generate_slowly(request, &rendered, text).await {
                    Ok(text) => (text, Vec::new(), finish),
                    Err(partial) => (partial, Vec::new(), FinishReason::Interrupted),
                }
            }
        };
        let completion_tokens = word_tokens(&text)
            + tool_calls
                .iter()
                .map(|c| word_tokens(&c.arguments))
                .sum::<u64>();
        let elapsed = started.elapsed();
        Ok(Completion {
            text,
            tool_calls,
            finish_reason,
            usage: Usage {
                prompt_tokens,
                cached_prompt_tokens: cached,
                completion_tokens,
            },
            time_to_first_token: elapsed,
            total_time: elapsed,
        })
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        // Deterministic stand-in: words of the continuation already seen in the prefix are
        // "likely" (-0.5 each), new words are not (-5.0 each).
        let seen: std::collections::HashSet<&str> = prefix.split_whitespace().collect();
        let mut sum = 0.0;
        let mut tokens = 0;
        for w in continuation.split_whitespace() {
            sum += if seen.contains(w) { -0.5 } else { -5.0 };
            tokens += 1;
        }
        Ok(ContinuationScore {
            logprob_sum: sum,
            tokens,
        })
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        let rendered = render(messages);
        let tokens: u64 = messages.iter().map(|m| word_tokens(&m.content)).sum();
        let mut state = self.lock();
        let evaluated = !state.prefixes.contains(&rendered);
        if evaluated {
            state.prefixes.push(rendered.clone());
        }
        use sha2::{Digest, Sha256};
        let id = hex::encode(Sha256::digest(rendered.join("\n").as_bytes()));
        Ok(PrefixState {
            id,
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            evaluated,
            path: None,
        })
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        Ok(u32::try_from(word_tokens(text)).unwrap_or(u32::MAX))
    }
}
