use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One chat message. Tool fields are empty unless the backend speaks tool calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A function the model may call (OpenAI tool-calling shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments, as a JSON string (kept as text so requests stay hashable).
    pub parameters_json: String,
}

/// A call the model made to one of the offered tools.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text, possibly malformed).
    pub arguments: String,
}

/// The provider's reasoning knob, passed through where it exists (the paper's AIME lever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    Low,
    Medium,
    High,
}

/// One chat completion request: everything that determines the reply.
///
/// Floats are stored as given; [`ChatRequest::cache_key`] hashes their bit patterns so a
/// request can key an on-disk call cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub max_tokens: u32,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Text the assistant's reply must continue from (budget forcing: "...\nThe answer is").
    #[serde(default)]
    pub assistant_prefix: Option<String>,
    #[serde(default)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// A cap on hidden reasoning tokens, for providers that take one.
    #[serde(default)]
    pub thinking_budget: Option<u32>,
    /// A stable key (e.g. the context id) so prefix-caching routers keep hitting one cache.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Whether stored prefix states may serve this request. Off only to measure what a
    /// cold prefill costs.
    #[serde(default = "default_true")]
    pub reuse_prefix: bool,
    /// Lets the caller stop generation early (sleep work yielding to a query). Backends that
    /// honour it end with [`FinishReason::Interrupted`] and the text so far; the caller may
    /// resume by sending that text as `assistant_prefix`. Not part of the request's identity.
    #[serde(skip)]
    pub interrupt: Option<Interrupt>,
}

/// A shared flag that asks a running generation to stop at the next token.
///
/// Compares equal to any other `Interrupt`: it changes when a reply ends, never what it says.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask generations holding this flag to stop.
    pub fn trigger(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// Clear the flag before a new generation.
    pub fn reset(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn is_triggered(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Interrupt {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

fn default_true() -> bool {
    true
}

impl ChatRequest {
    /// Greedy decoding, no stop strings, no tools.
    pub fn new(messages: Vec<Message>, max_tokens: u32) -> Self {
        Self {
            messages,
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            max_tokens,
            stop: Vec::new(),
            tools: Vec::new(),
            assistant_prefix: None,
            reasoning_effort: None,
            thinking_budget: None,
            routing_key: None,
            reuse_prefix: true,
            interrupt: None,
        }
    }

    pub fn with_sampling(mut self, temperature: f32, top_p: f32, seed: Option<u64>) -> Self {
        self.temperature = temperature;
        self.top_p = top_p;
        self.seed = seed;
        self
    }

    /// A hex SHA-256 over everything that determines the reply, for call caches.
    pub fn cache_key(&self, model_fingerprint: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(model_fingerprint.as_bytes());
        h.update([0]);
        let mut canonical = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = canonical.as_object_mut() {
            // f32 -> JSON can round; key on exact bits instead.
            obj.insert("temperature".into(), self.temperature.to_bits().into());
            obj.insert("top_p".into(), self.top_p.to_bits().into());
        }
        h.update(canonical.to_string().as_bytes());
        hex::encode(h.finalize())
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of turn or a stop string.
    Stop,
    /// The max-token cap cut it off.
    Length,
    /// The model called a tool.
    ToolCalls,
    /// The request's [`Interrupt`] stopped generation; the text so far is returned.
    Interrupted,
}

/// Tokens one call used. `cached_prompt_tokens` is the part of `prompt_tokens` served from a
/// stored prefix state (so not evaluated again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt tokens the backend actually had to evaluate for this call.
    pub fn evaluated_prompt_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_sub(self.cached_prompt_tokens)
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens + o.cached_prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

/// A finished completion with its usage and timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Time from the call to the first generated token.
    #[serde(with = "duration_secs")]
    pub time_to_first_token: Duration,
    /// Time from the call to the last token.
    #[serde(with = "duration_secs")]
    pub total_time: Duration,
}

/// Log-probability of a given continuation after a given prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationScore {
    /// Sum of natural-log probabilities over the continuation's tokens.
    pub logprob_sum: f64,
    /// Number of continuation tokens scored.
    pub tokens: u32,
}

impl ContinuationScore {
    /// Per-token mean log-probability (0 for an empty continuation).
    pub fn logprob_mean(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.logprob_sum / f64::from(self.tokens)
        }
    }
}

/// A prompt prefix whose KV state the backend keeps, so later requests that start with it
/// pay prefill only for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixState {
    /// Stable id: a hash of the model and the prefix's tokens.
    pub id: String,
    /// Number of tokens in the prefix.
    pub tokens: u32,
    /// True when this call evaluated the prefix; false when a stored state was reused.
    pub evaluated: bool,
    /// Where the state is kept on disk, when the backend persists it.
    pub path: Option<PathBuf>,
}

/// How a sleep-time program should ask this backend for structured actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextProtocol {
    /// Native tool calls (reliable on large hosted models).
    ToolCalls,
    /// Tagged plain-text sections (small local models call tools unreliably).
    Tagged,
}

/// What a backend is and can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Human-facing model name.
    pub name: String,
    /// Identifies the exact weights (file SHA-256 for GGUF, `base_url#model` for HTTP).
    pub fingerprint: String,
    /// Context window in tokens.
    pub context_window: u32,
    /// The protocol sleep programs should use with it.
    pub protocol: TextProtocol,
    /// Whether [`crate::ModelBackend::prepare_prefix`] keeps real KV state.
    pub prefix_state: bool,
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(Duration::try_from_secs_f64(secs).unwrap_or_default())
    }
}
