//! OpenAI-compatible `/v1/chat/completions` and `/v1/models`. A request may name a context
//! (header `x-sleeptime-context` or body field `context_id`); its learned context and text
//! are then put first, as the byte-stable prefix the sleep job prepared, and the request's
//! routing key is the context id so prefix-caching routers keep hitting one cache.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sleeptime_core::{AnswerInput, Answerer};
use sleeptime_model::{ChatRequest, Completion, FinishReason, Message, Role, Usage};
use sleeptime_store::{UsageEntry, UsageKind};

use crate::error::{ApiError, MapStoreErr};
use crate::extract::{ApiJson, Caller};
use crate::scheduler::{answer_config, token_usage};
use crate::state::AppState;

pub const CONTEXT_HEADER: &str = "x-sleeptime-context";

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ContentIn {
    Text(String),
    Parts(Vec<PartIn>),
}

#[derive(Debug, Deserialize)]
struct PartIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageIn {
    role: String,
    #[serde(default)]
    content: Option<ContentIn>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopIn {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatIn {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<MessageIn>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<StopIn>,
    #[serde(default)]
    n: Option<u32>,
    /// sleeptime extension: the context to answer from.
    #[serde(default)]
    context_id: Option<String>,
}

fn role(r: &str, i: usize) -> Result<Role, ApiError> {
    Ok(match r {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::bad_request("invalid_value", format!("messages[{i}].role {other:?} is not one of system, developer, user, assistant, tool")))
        }
    })
}

fn convert_messages(input: Vec<MessageIn>) -> Result<Vec<Message>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_value",
            "messages must not be empty",
        ));
    }
    input
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let content = match m.content {
                None => String::new(),
                Some(ContentIn::Text(t)) => t,
                Some(ContentIn::Parts(parts)) => {
                    let mut out = Vec::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::bad_request(
                                "invalid_value",
                                format!("messages[{i}]: content parts of type {:?} are not supported (text only)", p.kind),
                            ));
                        }
                        out.push(p.text.unwrap_or_default());
                    }
                    out.join("\n")
                }
            };
            Ok(Message::new(role(&m.role, i)?, content))
        })
        .collect()
}

fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        // Queries carry no interrupt; a cut-short reply reads as truncated.
        FinishReason::Length | FinishReason::Interrupted => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
    })
}

fn new_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn unix_now() -> i64 {
    sleeptime_store::now_ms() / 1000
}

pub(crate) async fn models(State(state): State<Arc<AppState>>, Caller(_t): Caller) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model.name, "object": "model", "created": 0, "owned_by": "sleeptime"}],
    }))
}

struct Prepared {
    request: ChatRequest,
    context_id: Option<String>,
    mode: &'static str,
    learned_version: Option<i64>,
}

async fn prepare(
    state: &Arc<AppState>,
    tenant: &str,
    headers: &HeaderMap,
    req: ChatIn,
) -> Result<(Prepared, bool, bool), ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "only n = 1 is supported",
        ));
    }
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(state.config.answer.chat_max_tokens);
    if max_tokens == 0 || max_tokens > state.config.answer.max_budget {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("max_tokens must be 1 to {}", state.config.answer.max_budget),
        ));
    }
    let temperature = req.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "temperature must be 0 to 2",
        ));
    }
    let header_ctx = match headers.get(CONTEXT_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_value",
                        format!("the {CONTEXT_HEADER} header is not text"),
                    )
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let context_id = header_ctx.or(req.context_id).filter(|c| !c.is_empty());
    let client = convert_messages(req.messages)?;
    let _ = req.model;
    let mut messages = Vec::new();
    let mut mode = "none";
    let mut learned_version = None;
    if let Some(id) = &context_id {
        let ctx = state
            .store
            .get_context(tenant, id)
            .await
            .map_store_err("context", id)?;
        let learned = state
            .store
            .current_learned(tenant, id)
            .await
            .map_store_err("context", id)?;
        let text = ctx.body.to_text();
        let cfg = &state.config.answer;
        let (config, input) = match &learned {
            Some(l) => {
                mode = "learned";
                learned_version = Some(l.version);
                (
                    answer_config(cfg.verbosity, cfg.budget),
                    AnswerInput {
                        context: Some(&text),
                        learned: Some(&l.text),
                        question: None,
                    },
                )
            }
            None => {
                mode = "fallback";
                (
                    answer_config(cfg.fallback_verbosity, cfg.fallback_budget),
                    AnswerInput {
                        context: Some(&text),
                        learned: None,
                        question: None,
                    },
                )
            }
        };
        messages = Answerer::new(&*state.backend, config).prefix_messages(&input);
    }
    messages.extend(client);
    let mut request = ChatRequest::new(messages, max_tokens).with_sampling(
        temperature,
        req.top_p.unwrap_or(1.0),
        req.seed,
    );
    request.stop = match req.stop {
        None => Vec::new(),
        Some(StopIn::One(s)) => vec![s],
        Some(StopIn::Many(v)) => v,
    };
    request.routing_key = context_id.clone();
    let stream = req.stream.unwrap_or(false);
    let include_usage = req.stream_options.unwrap_or_default().include_usage;
    Ok((
        Prepared {
            request,
            context_id,
            mode,
            learned_version,
        },
        stream,
        include_usage,
    ))
}

fn record(state: &Arc<AppState>, tenant: &str, p: &Prepared, c: &Completion, started: Instant) {
    let state2 = state.clone();
    let entry = UsageEntry {
        tenant_id: tenant.to_owned(),
        context_id: p.context_id.clone(),
        job_id: None,
        kind: UsageKind::Test,
        usage: token_usage(c.usage),
    };
    tokio::spawn(async move {
        if let Err(e) = state2.store.record_usage(entry).await {
            tracing::warn!(error = %e, "recording chat usage failed");
        }
    });
    state.metrics.query(
        p.mode == "fallback",
        started.elapsed().as_secs_f64(),
        c.usage.completion_tokens,
        c.usage.prompt_tokens + c.usage.completion_tokens,
        c.usage.cached_prompt_tokens,
        u64::from(state.config.answer.fallback_budget),
    );
}

fn sleeptime_headers(p: &Prepared, resp: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(p.mode) {
        resp.headers_mut().insert("x-sleeptime-mode", v);
    }
    if let Some(v) = p
        .learned_version
        .and_then(|v| HeaderValue::from_str(&v.to_string()).ok())
    {
        resp.headers_mut().insert("x-sleeptime-learned-version", v);
    }
}

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Caller(t): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatIn>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let guard = state.gate.enter();
    let (prepared, stream, include_usage) = prepare(&state, &t.id, &headers, req).await?;
    let model = state.model.name.clone();
    let id = new_id();
    let created = unix_now();
    let ext = json!({"context_id": prepared.context_id, "mode": prepared.mode, "learned_version": prepared.learned_version});
    if !stream {
        let completion = match tokio::time::timeout(
            state.config.answer.timeout,
            state.backend.complete(&prepared.request),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(ApiError::engine(&e.into())),
            Err(_) => return Err(ApiError::timeout("the model did not answer in time")),
        };
        drop(guard);
        record(&state, &t.id, &prepared, &completion, started);
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": finish(completion.finish_reason),
                "logprobs": null,
            }],
            "usage": usage_json(&completion.usage),
            "sleeptime": ext,
        });
        let mut resp = Json(body).into_response();
        sleeptime_headers(&prepared, &mut resp);
        return Ok(resp);
    }

    enum Piece {
        Text(String),
        Done(Completion),
        Failed(ApiError),
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
    let task_state = state.clone();
    let request = prepared.request.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let tx2 = tx.clone();
        let mut on_text = move |t: &str| {
            let _ = tx2.send(Piece::Text(t.to_owned()));
        };
        let call = task_state
            .backend
            .complete_streaming(&request, &mut on_text);
        let piece = match tokio::time::timeout(task_state.config.answer.timeout, call).await {
            Ok(Ok(c)) => Piece::Done(c),
            Ok(Err(e)) => Piece::Failed(ApiError::engine(&e.into())),
            Err(_) => Piece::Failed(ApiError::timeout("the model did not answer in time")),
        };
        let _ = tx.send(piece);
    });
    let chunk = {
        let id = id.clone();
        let model = model.clone();
        move |delta: Value, finish_reason: Option<&str>| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
            })
        }
    };
    let first =
        Event::default().data(chunk(json!({"role": "assistant", "content": ""}), None).to_string());
    struct St {
        rx: tokio::sync::mpsc::UnboundedReceiver<Piece>,
        queue: std::collections::VecDeque<Event>,
        finished: bool,
    }
    let mut queue = std::collections::VecDeque::new();
    queue.push_back(first);
    let st = St {
        rx,
        queue,
        finished: false,
    };
    let state2 = state.clone();
    let tenant = t.id.clone();
    let ext2 = ext.clone();
    let stream = futures::stream::unfold((st, prepared_meta(&prepared)), move |(mut st, meta)| {
        let chunk = chunk.clone();
        let state2 = state2.clone();
        let tenant = tenant.clone();
        let ext2 = ext2.clone();
        let id = id.clone();
        let model = model.clone();
        async move {
            loop {
                if let Some(ev) = st.queue.pop_front() {
                    return Some((Ok::<_, Infallible>(ev), (st, meta)));
                }
                if st.finished {
                    return None;
                }
                match st.rx.recv().await {
                    Some(Piece::Text(t)) if !t.is_empty() => {
                        st.queue.push_back(
                            Event::default().data(chunk(json!({"content": t}), None).to_string()),
                        );
                    }
                    Some(Piece::Text(_)) => {}
                    Some(Piece::Done(c)) => {
                        record(&state2, &tenant, &meta, &c, started);
                        let mut last = chunk(json!({}), Some(finish(c.finish_reason)));
                        last["sleeptime"] = ext2.clone();
                        st.queue.push_back(Event::default().data(last.to_string()));
                        if include_usage {
                            let u = json!({
                                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [], "usage": usage_json(&c.usage),
                            });
                            st.queue.push_back(Event::default().data(u.to_string()));
                        }
                        st.queue.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    Some(Piece::Failed(e)) => {
                        st.queue
                            .push_back(Event::default().data(e.body().to_string()));
                        st.queue.push_back(Event::default().data("[DONE]"));
                        st.finished = true;
                    }
                    None => st.finished = true,
                }
            }
        }
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    sleeptime_headers(&prepared, &mut resp);
    Ok(resp)
}

fn prepared_meta(p: &Prepared) -> Prepared {
    Prepared {
        request: ChatRequest::new(Vec::new(), 1),
        context_id: p.context_id.clone(),
        mode: p.mode,
        learned_version: p.learned_version,
    }
}
