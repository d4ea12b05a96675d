//! A backend for any OpenAI-compatible HTTP server: vLLM, SGLang, llama-server, Ollama,
//! OpenAI itself.
//!
//! # What is sent
//!
//! `POST {base_url}/chat/completions` with a JSON body holding:
//!
//! - `model`, `messages` (roles `system`/`user`/`assistant`/`tool`, with `tool_calls` and
//!   `tool_call_id` where present), `temperature`, `top_p`, `max_tokens`;
//! - `seed` when set, `stop` when not empty, `tools` (OpenAI function tools) when not empty;
//! - `reasoning_effort` (`"low"`/`"medium"`/`"high"`) when set: OpenAI's reasoning knob;
//! - `chat_template_kwargs: {"thinking_budget": N}` when a thinking budget is set (the vLLM /
//!   SGLang way of passing options to a chat template), plus `"enable_thinking": false` when
//!   the budget is 0. Servers that do not know the field may reject it, so it is only sent
//!   when asked for;
//! - `user` and the HTTP header `x-session-id` set to the request's routing key, so that
//!   prefix-caching routers keep sending one context to one cache;
//! - for an assistant prefix, a final assistant message holding it plus vLLM's
//!   `continue_final_message: true, add_generation_prompt: false`; the returned text is the
//!   continuation only;
//! - for streaming, `stream: true, stream_options: {"include_usage": true}`.
//!
//! `Authorization: Bearer <api_key>` is sent when a key is configured.
//!
//! # Errors
//!
//! Connection failures map to [`ModelErrorKind::Unreachable`] (with the URL), deadlines to
//! [`ModelErrorKind::Timeout`], context-length complaints to
//! [`ModelErrorKind::ContextOverflow`], other 4xx answers to
//! [`ModelErrorKind::InvalidRequest`] (with the server's message), unparsable replies to
//! [`ModelErrorKind::Protocol`]. 429, 5xx and connection failures are retried up to
//! `max_retries` times with exponential backoff (a `Retry-After` header is honoured, capped).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    ChatRequest, Completion, ContinuationScore, FinishReason, Message, ModelBackend, ModelError,
    ModelErrorKind, ModelInfo, PrefixState, ReasoningEffort, Role, TextProtocol, ToolCall, Usage,
};

/// The HTTP header that carries a request's routing key.
pub const ROUTING_HEADER: &str = "x-session-id";

/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How to reach an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// API root including the version, e.g. `http://localhost:8000/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// The `model` field of every request.
    pub model: String,
    /// Deadline for one non-streaming call; for streaming calls, the longest wait for the
    /// next piece of the reply.
    pub timeout: Duration,
    /// Context window in tokens (reported by [`ModelBackend::info`]).
    pub context_window: u32,
    /// The protocol sleep programs should use with this model.
    pub protocol: TextProtocol,
    /// Retries after a 429, a 5xx or a connection failure (0 = try once).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one (capped at 30 s).
    pub retry_backoff: Duration,
}

impl OpenAiConfig {
    /// Defaults: no key, 300 s timeout, 32k context, tool calls, 3 retries from 500 ms.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            timeout: Duration::from_secs(300),
            context_window: 32_768,
            protocol: TextProtocol::ToolCalls,
            max_retries: 3,
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// A [`ModelBackend`] that talks to an OpenAI-compatible server over HTTP.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    config: OpenAiConfig,
    base: String,
    client: reqwest::Client,
}

impl OpenAiBackend {
    /// Build the HTTP client. Fails only for an unusable configuration.
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                format!(
                    "base URL must start with http:// or https://, got {:?}",
                    config.base_url
                ),
            ));
        }
        if config.model.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "no model name given",
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .read_timeout(config.timeout)
            .user_agent(concat!("sleeptime/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ModelError::backend(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            config,
            base,
            client,
        })
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The JSON body [`ModelBackend::complete`] would send for `request` (streaming adds
    /// `stream` and `stream_options`).
    pub fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Value, ModelError> {
        let mut messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
        let mut body = Map::new();
        body.insert("model".into(), self.config.model.clone().into());
        if let Some(prefix) = &request.assistant_prefix {
            messages.push(json!({"role": "assistant", "content": prefix}));
        }
        body.insert("messages".into(), messages.into());
        body.insert("temperature".into(), f32_json(request.temperature));
        body.insert("top_p".into(), f32_json(request.top_p));
        if let Some(seed) = request.seed {
            body.insert("seed".into(), seed.into());
        }
        body.insert("max_tokens".into(), request.max_tokens.into());
        if !request.stop.is_empty() {
            body.insert("stop".into(), json!(request.stop));
        }
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(wire_tool)
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("tools".into(), tools.into());
        }
        if let Some(effort) = request.reasoning_effort {
            let effort = match effort {
                ReasoningEffort::Low => "low",
                ReasoningEffort::Medium => "medium",
                ReasoningEffort::High => "high",
            };
            body.insert("reasoning_effort".into(), effort.into());
        }
        if let Some(budget) = request.thinking_budget {
            let mut kwargs = json!({"thinking_budget": budget});
            if budget == 0 {
                kwargs["enable_thinking"] = false.into();
            }
            body.insert("chat_template_kwargs".into(), kwargs);
        }
        if let Some(key) = &request.routing_key {
            body.insert("user".into(), key.clone().into());
        }
        if request.assistant_prefix.is_some() {
            body.insert("continue_final_message".into(), true.into());
            body.insert("add_generation_prompt".into(), false.into());
        }
        if stream {
            body.insert("stream".into(), true.into());
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Ok(Value::Object(body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// POST `body` to `url`, retrying 429/5xx/connection failures. Returns a 2xx response.
    async fn post(
        &self,
        url: &str,
        body: &Value,
        routing_key: Option<&str>,
        streaming: bool,
    ) -> Result<reqwest::Response, HttpFailure> {
        let mut attempt = 0u32;
        loop {
            let mut builder = self.client.post(url).json(body);
            if !streaming {
                builder = builder.timeout(self.config.timeout);
            }
            if let Some(key) = &self.config.api_key {
                builder = builder.bearer_auth(key);
            }
            if let Some(key) = routing_key {
                builder = builder.header(ROUTING_HEADER, key);
            }
            let (failure, retry_after) = match builder.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await.unwrap_or_default();
                    (
                        HttpFailure::Status {
                            status,
                            message: server_message(&text),
                        },
                        retry_after,
                    )
                }
                Err(e) => (HttpFailure::Transport(transport_error(&e, url)), None),
            };
            if attempt >= self.config.max_retries || !failure.retryable() {
                return Err(failure);
            }
            let backoff = self
                .config
                .retry_backoff
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(MAX_BACKOFF);
            let wait = retry_after.map_or(backoff, |r| r.min(MAX_BACKOFF));
            attempt += 1;
            tracing::warn!(
                url,
                attempt,
                max = self.config.max_retries,
                "retrying in {wait:?} after: {}",
                failure.describe()
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ModelError> {
        let url = self.url("chat/completions");
        let body = self.request_body(request, stream)?;
        self.post(&url, &body, request.routing_key.as_deref(), stream)
            .await
            .map_err(|f| f.into_model_error(&url))
    }

    /// Read a whole JSON reply, mapping an `{"error": ...}` body to an error.
    async fn read_json(resp: reqwest::Response, url: &str) -> Result<Value, ModelError> {
        let bytes = resp.bytes().await.map_err(|e| transport_error(&e, url))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ModelError::protocol(format!(
                "reply from {url} is not JSON ({e}): {}",
                snippet(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        if value.get("choices").is_none() {
            if let Some(err) = value.get("error") {
                return Err(classify(None, &error_text(err), url));
            }
        }
        Ok(value)
    }
}

#[async_trait]
impl ModelBackend for OpenAiBackend {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.config.model.clone(),
            fingerprint: format!("{}#{}", self.config.base_url, self.config.model),
            context_window: self.config.context_window,
            protocol: self.config.protocol,
            prefix_state: false,
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        let start = Instant::now();
        let url = self.url("chat/completions");
        let resp = self.chat(request, false).await?;
        let value = Self::read_json(resp, &url).await?;
        let reply: WireResponse = serde_json::from_value(value)
            .map_err(|e| ModelError::protocol(format!("unexpected reply shape from {url}: {e}")))?;
        let choice = reply
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::protocol(format!("reply from {url} has no choices")))?;
        let message = choice.message.unwrap_or_default();
        let tool_calls: Vec<ToolCall> = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.into_tool_call(i))
            .collect();
        let total = start.elapsed();
        Ok(Completion {
            text: message.content.unwrap_or_default(),
            finish_reason: finish_reason(choice.finish_reason.as_deref(), !tool_calls.is_empty()),
            tool_calls,
            usage: reply.usage.map(WireUsage::into_usage).unwrap_or_default(),
            time_to_first_token: total,
            total_time: total,
        })
    }

    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<Completion, ModelError> {
        let start = Instant::now();
        let url = self.url("chat/completions");
        let resp = self.chat(request, true).await?;
        let mut acc = StreamAccumulator::default();
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut done = false;
        'read: while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_error(&e, &url))?;
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if acc.line(&line, &url, start, on_text)? {
                    done = true;
                    break 'read;
                }
            }
        }
        if !done && !buf.is_empty() {
            let line = std::mem::take(&mut buf);
            done = acc.line(&line, &url, start, on_text)?;
        }
        if !done && acc.finish_reason.is_none() {
            return Err(ModelError::protocol(format!(
                "stream from {url} ended before [DONE] and without a finish reason"
            )));
        }
        Ok(acc.finish(start.elapsed()))
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        let url = self.url("completions");
        let prompt = format!("{prefix}{continuation}");
        let body = json!({
            "model": self.config.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": true,
            "logprobs": 1,
        });
        let resp = match self.post(&url, &body, None, false).await {
            Ok(resp) => resp,
            Err(HttpFailure::Status { status, message })
                if matches!(status, 400 | 404 | 405 | 422 | 501)
                    && !is_context_overflow(&message) =>
            {
                return Err(ModelError::new(
                    ModelErrorKind::Unsupported,
                    format!(
                        "continuation scoring needs a legacy completions endpoint that echoes \
                         prompt log-probabilities (vLLM has one); {url} answered HTTP {status}: \
                         {message}"
                    ),
                ));
            }
            Err(f) => return Err(f.into_model_error(&url)),
        };
        let value = Self::read_json(resp, &url).await?;
        let reply: WireLogprobReply = serde_json::from_value(value)
            .map_err(|e| ModelError::protocol(format!("unexpected reply shape from {url}: {e}")))?;
        let logprobs = reply
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.logprobs)
            .ok_or_else(|| {
                ModelError::new(
                    ModelErrorKind::Unsupported,
                    format!("{url} returned no prompt log-probabilities for echo=true, logprobs=1"),
                )
            })?;
        score_from_logprobs(&logprobs, prefix.chars().count(), prompt.chars().count())
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        // Server-side automatic prefix caching: evaluating the prefix once leaves its KV
        // blocks in the server's cache, where later requests starting with it find them.
        let mut request = ChatRequest::new(messages.to_vec(), 1);
        request.temperature = 0.0;
        let completion = self.complete(&request).await?;
        let mut h = Sha256::new();
        h.update(self.info().fingerprint.as_bytes());
        h.update([0]);
        h.update(
            serde_json::to_string(messages)
                .unwrap_or_default()
                .as_bytes(),
        );
        Ok(PrefixState {
            id: hex::encode(h.finalize()),
            tokens: u32::try_from(completion.usage.prompt_tokens).unwrap_or(u32::MAX),
            evaluated: true,
            path: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Request pieces

fn wire_message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut obj = Map::new();
    obj.insert("role".into(), role.into());
    let content = if m.content.is_empty() && !m.tool_calls.is_empty() {
        Value::Null
    } else {
        m.content.clone().into()
    };
    obj.insert("content".into(), content);
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
        obj.insert("tool_calls".into(), calls.into());
    }
    if let Some(id) = &m.tool_call_id {
        obj.insert("tool_call_id".into(), id.clone().into());
    }
    Value::Object(obj)
}

/// An f32 as the JSON number it reads as (0.9, not 0.8999999761581421).
fn f32_json(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .map_or_else(|_| json!(x), |v| json!(v))
}

fn wire_tool(t: &crate::ToolSpec) -> Result<Value, ModelError> {
    let parameters: Value = if t.parameters_json.trim().is_empty() {
        json!({"type": "object", "properties": {}})
    } else {
        serde_json::from_str(&t.parameters_json).map_err(|e| {
            ModelError::new(
                ModelErrorKind::InvalidRequest,
                format!("tool {:?} has parameters that are not JSON: {e}", t.name),
            )
        })?
    };
    Ok(json!({
        "type": "function",
        "function": {"name": t.name, "description": t.description, "parameters": parameters},
    }))
}

// ---------------------------------------------------------------------------------------------
// Reply pieces

#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    delta: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// A JSON string per the spec; some servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

fn arguments_text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

impl WireToolCall {
    fn into_tool_call(self, position: usize) -> ToolCall {
        let (name, arguments) = match self.function {
            Some(f) => (f.name.unwrap_or_default(), arguments_text(f.arguments)),
            None => (String::new(), String::new()),
        };
        ToolCall {
            id: self.id.unwrap_or_else(|| format!("call_{position}")),
            name,
            arguments,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Debug, Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl WireUsage {
    fn into_usage(self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(self.prompt_tokens),
            completion_tokens: self.completion_tokens,
        }
    }
}

fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        // Some servers report "stop" next to tool calls; the calls are what matters.
        _ if has_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Builds a completion from streamed chunks.
#[derive(Debug, Default)]
struct StreamAccumulator {
    text: String,
    calls: Vec<(String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    first_token: Option<Duration>,
}

impl StreamAccumulator {
    /// Handle one SSE line. Returns true at `data: [DONE]`.
    fn line(
        &mut self,
        raw: &[u8],
        url: &str,
        start: Instant,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<bool, ModelError> {
        let line = std::str::from_utf8(raw)
            .map_err(|_| ModelError::protocol(format!("stream from {url} is not UTF-8")))?
            .trim_end_matches(['\r', '\n']);
        let Some(data) = line.strip_prefix("data:") else {
            // Blank separators, `event:`/`id:` fields and `:` keep-alive comments.
            return Ok(false);
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ModelError::protocol(format!(
                "stream chunk from {url} is not JSON ({e}): {}",
                snippet(data)
            ))
        })?;
        if value.get("choices").is_none() {
            if let Some(err) = value.get("error") {
                return Err(classify(None, &error_text(err), url));
            }
        }
        let chunk: WireResponse = serde_json::from_value(value).map_err(|e| {
            ModelError::protocol(format!("unexpected stream chunk shape from {url}: {e}"))
        })?;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into_usage());
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta.or(choice.message) {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    self.first_token.get_or_insert_with(|| start.elapsed());
                    on_text(&text);
                    self.text.push_str(&text);
                }
                for (pos, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    self.first_token.get_or_insert_with(|| start.elapsed());
                    let index = call.index.unwrap_or(pos);
                    if self.calls.len() <= index {
                        self.calls.resize_with(index + 1, Default::default);
                    }
                    let slot = &mut self.calls[index];
                    if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                        if slot.0.is_empty() {
                            slot.0 = id;
                        }
                    }
                    if let Some(f) = call.function {
                        if let Some(name) = f.name.filter(|n| !n.is_empty()) {
                            if slot.1.is_empty() {
                                slot.1 = name;
                            }
                        }
                        slot.2.push_str(&arguments_text(f.arguments));
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }

    fn finish(self, total: Duration) -> Completion {
        let tool_calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, (id, name, args))| !(id.is_empty() && name.is_empty() && args.is_empty()))
            .map(|(i, (id, name, arguments))| ToolCall {
                id: if id.is_empty() {
                    format!("call_{i}")
                } else {
                    id
                },
                name,
                arguments,
            })
            .collect();
        Completion {
            text: self.text,
            finish_reason: finish_reason(self.finish_reason.as_deref(), !tool_calls.is_empty()),
            tool_calls,
            usage: self.usage.unwrap_or_default(),
            time_to_first_token: self.first_token.unwrap_or(total),
            total_time: total,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireLogprobReply {
    #[serde(default)]
    choices: Vec<WireLogprobChoice>,
}

#[derive(Debug, Deserialize)]
struct WireLogprobChoice {
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    token_logprobs: Vec<Option<f64>>,
    #[serde(default)]
    text_offset: Vec<usize>,
}

/// Sum the log-probabilities of the echoed prompt tokens that start inside the continuation,
/// i.e. at a character offset in `[prefix_chars, prompt_chars)`. Tokens at or past the end
/// are generated ones, not part of the prompt.
fn score_from_logprobs(
    lp: &WireLogprobs,
    prefix_chars: usize,
    prompt_chars: usize,
) -> Result<ContinuationScore, ModelError> {
    if lp.token_logprobs.is_empty() {
        return Err(ModelError::new(
            ModelErrorKind::Unsupported,
            "the server echoed no prompt log-probabilities",
        ));
    }
    let offsets: Vec<usize> = if lp.text_offset.len() == lp.token_logprobs.len() {
        lp.text_offset.clone()
    } else if lp.tokens.len() == lp.token_logprobs.len() {
        // No offsets: rebuild them from the token texts.
        let mut at = 0;
        lp.tokens
            .iter()
            .map(|t| {
                let here = at;
                at += t.chars().count();
                here
            })
            .collect()
    } else {
        return Err(ModelError::protocol(
            "log-probability reply has neither text offsets nor tokens matching its log-probs",
        ));
    };
    let mut sum = 0.0;
    let mut tokens = 0u32;
    for (i, (offset, logprob)) in offsets.iter().zip(&lp.token_logprobs).enumerate() {
        // A BOS token the server put first spans no text (the next token starts where it
        // does); it is not part of the continuation.
        let zero_width_start = i == 0 && offsets.get(1) == Some(offset);
        if *offset >= prefix_chars && *offset < prompt_chars && !zero_width_start {
            match logprob {
                Some(v) => {
                    sum += v;
                    tokens += 1;
                }
                // The prompt's first token has nothing before it to be predicted from.
                None if i == 0 => {
                    return Err(ModelError::new(
                        ModelErrorKind::InvalidRequest,
                        "the server scores no first prompt token (its tokenizer adds no BOS \
                         token), so a continuation cannot be scored after an empty prefix",
                    ))
                }
                None => {
                    return Err(ModelError::protocol(format!(
                        "the server gave no log-probability for the continuation token at {offset}"
                    )))
                }
            }
        }
    }
    Ok(ContinuationScore {
        logprob_sum: sum,
        tokens,
    })
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a POST did not give a 2xx response.
#[derive(Debug)]
enum HttpFailure {
    Status { status: u16, message: String },
    Transport(ModelError),
}

impl HttpFailure {
    fn retryable(&self) -> bool {
        match self {
            HttpFailure::Status { status, .. } => *status == 429 || *status >= 500,
            HttpFailure::Transport(e) => e.kind() == ModelErrorKind::Unreachable,
        }
    }

    fn describe(&self) -> String {
        match self {
            HttpFailure::Status { status, message } => format!("HTTP {status}: {message}"),
            HttpFailure::Transport(e) => e.to_string(),
        }
    }

    fn into_model_error(self, url: &str) -> ModelError {
        match self {
            HttpFailure::Status { status, message } => classify(Some(status), &message, url),
            HttpFailure::Transport(e) => e,
        }
    }
}

fn is_context_overflow(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "context length",
        "maximum context",
        "context window",
        "context size",
        "context_length_exceeded",
        "too many tokens",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Map an HTTP status (or an in-body error without one) and the server's message.
fn classify(status: Option<u16>, message: &str, url: &str) -> ModelError {
    if is_context_overflow(message) {
        return ModelError::new(ModelErrorKind::ContextOverflow, format!("{url}: {message}"));
    }
    match status {
        Some(s @ 400..=499) if s != 408 && s != 429 => ModelError::new(
            ModelErrorKind::InvalidRequest,
            format!("{url} answered HTTP {s}: {message}"),
        ),
        Some(408) => ModelError::new(
            ModelErrorKind::Timeout,
            format!("{url} answered HTTP 408: {message}"),
        ),
        Some(s) => ModelError::backend(format!("{url} answered HTTP {s}: {message}")),
        None => ModelError::backend(format!("{url} reported an error: {message}")),
    }
}

fn transport_error(e: &reqwest::Error, url: &str) -> ModelError {
    // The innermost cause says most (e.g. "Connection refused").
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        ModelError::new(
            ModelErrorKind::Timeout,
            format!("no reply from {url} in time ({cause})"),
        )
    } else if e.is_connect() {
        ModelError::new(
            ModelErrorKind::Unreachable,
            format!("cannot connect to {url}: {cause}"),
        )
    } else if e.is_decode() || e.is_body() {
        ModelError::protocol(format!("reading the reply from {url} failed: {cause}"))
    } else if e.is_request() {
        ModelError::new(
            ModelErrorKind::Unreachable,
            format!("request to {url} failed: {cause}"),
        )
    } else {
        ModelError::backend(format!("request to {url} failed: {cause}"))
    }
}

/// The human part of an error body: `{"error": {"message": ..}}`, `{"error": ".."}`,
/// `{"message": ..}`, `{"detail": ..}`, or the text itself.
fn server_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            if let Some(err) = v.get("error") {
                return error_text(err);
            }
            for key in ["message", "detail"] {
                if let Some(m) = v.get(key) {
                    return m.as_str().map_or_else(|| m.to_string(), str::to_owned);
                }
            }
            snippet(body)
        }
        Err(_) if body.trim().is_empty() => "(empty body)".into(),
        Err(_) => snippet(body),
    }
}

fn error_text(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => err.to_string(),
        },
        other => other.to_string(),
    }
}

fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_are_chosen_by_offset() {
        // prompt "ab" + "cd": tokens "a"(0) "b"(1) "c"(2) "d"(3) then generated "e"(4).
        let lp = WireLogprobs {
            tokens: vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            token_logprobs: vec![None, Some(-1.0), Some(-0.5), Some(-0.25), Some(-9.0)],
            text_offset: vec![0, 1, 2, 3, 4],
        };
        let s = score_from_logprobs(&lp, 2, 4).expect("score");
        assert_eq!(s.tokens, 2);
        assert!((s.logprob_sum + 0.75).abs() < 1e-12);
        // Empty prefix on a server without BOS: the first token has no log-probability.
        let err = score_from_logprobs(&lp, 0, 4).expect_err("unscorable first token");
        assert_eq!(err.kind(), ModelErrorKind::InvalidRequest, "{err}");
        assert!(err.message().contains("empty prefix"), "{err}");
        let no_offsets = WireLogprobs {
            text_offset: vec![],
            ..lp
        };
        assert_eq!(
            score_from_logprobs(&no_offsets, 2, 4)
                .expect("score")
                .tokens,
            2
        );
        // With a BOS token echoed first (offset 0, empty text), every continuation token counts.
        let with_bos = WireLogprobs {
            tokens: vec!["".into(), "a".into(), "b".into()],
            token_logprobs: vec![None, Some(-1.0), Some(-2.0)],
            text_offset: vec![0, 0, 1],
        };
        let s = score_from_logprobs(&with_bos, 0, 2).expect("score after BOS");
        assert_eq!(s.tokens, 2);
        assert!((s.logprob_sum + 3.0).abs() < 1e-12);
    }

    #[test]
    fn error_bodies_are_read() {
        assert_eq!(server_message(r#"{"error":{"message":"bad"}}"#), "bad");
        assert_eq!(server_message(r#"{"error":"worse"}"#), "worse");
        assert_eq!(server_message(r#"{"detail":"nope"}"#), "nope");
        assert_eq!(server_message("plain"), "plain");
        let e = classify(
            Some(400),
            "This model's maximum context length is 8 tokens",
            "u",
        );
        assert_eq!(e.kind(), ModelErrorKind::ContextOverflow);
        assert_eq!(
            classify(Some(404), "x", "u").kind(),
            ModelErrorKind::InvalidRequest
        );
        assert_eq!(
            classify(Some(503), "x", "u").kind(),
            ModelErrorKind::Backend
        );
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason(Some("length"), false), FinishReason::Length);
        assert_eq!(
            finish_reason(Some("tool_calls"), true),
            FinishReason::ToolCalls
        );
        assert_eq!(finish_reason(Some("stop"), true), FinishReason::ToolCalls);
        assert_eq!(finish_reason(Some("eos"), false), FinishReason::Stop);
        assert_eq!(finish_reason(None, false), FinishReason::Stop);
    }
}
