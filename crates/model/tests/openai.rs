//! The OpenAI-compatible backend against a mock server on 127.0.0.1.
#![cfg(feature = "openai")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use sleeptime_model::openai::{OpenAiBackend, OpenAiConfig};
use sleeptime_model::{
    ChatRequest, FinishReason, Message, ModelBackend, ModelErrorKind, ReasoningEffort, ToolCall,
    ToolSpec,
};

/// What the mock server saw: headers and JSON body of each request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

impl Seen {
    fn push(&self, headers: HeaderMap, body: Value) {
        self.0.lock().expect("lock").push((headers, body));
    }
    fn all(&self) -> Vec<(HeaderMap, Value)> {
        self.0.lock().expect("lock").clone()
    }
    fn last(&self) -> (HeaderMap, Value) {
        self.all().pop().expect("a request was made")
    }
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}/v1")
}

fn config(base: &str) -> OpenAiConfig {
    OpenAiConfig {
        max_retries: 0,
        retry_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        ..OpenAiConfig::new(base, "test-model")
    }
}

/// A server answering every chat request with `reply`, recording what it got.
async fn fixed(reply: Value) -> (String, Seen) {
    let seen = Seen::default();
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State((seen, reply)): State<(Seen, Value)>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    seen.push(headers, body);
                    Json(reply)
                },
            ),
        )
        .with_state((seen.clone(), reply));
    (serve(router).await, seen)
}

fn text_reply(text: &str, finish: &str) -> Value {
    json!({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    })
}

#[tokio::test]
async fn request_shape_and_tool_call_reply() {
    let reply = json!({
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "rethink", "arguments": "{\"x\":1}"}}
            ]},
            "finish_reason": "tool_calls"
        }],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}}
    });
    let (base, seen) = fixed(reply).await;
    let backend = OpenAiBackend::new(OpenAiConfig {
        api_key: Some("sk-test".into()),
        ..config(&base)
    })
    .expect("backend");

    let mut assistant = Message::assistant("");
    assistant.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "look".into(),
        arguments: "{}".into(),
    }];
    let mut request = ChatRequest::new(
        vec![
            Message::system("sys"),
            Message::user("hi"),
            assistant,
            Message::tool("call_1", "result"),
        ],
        64,
    )
    .with_sampling(0.5, 0.9, Some(42));
    request.tools = vec![ToolSpec {
        name: "rethink".into(),
        description: "Rewrite memory".into(),
        parameters_json: r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#.into(),
    }];
    request.routing_key = Some("ctx-123".into());
    request.reasoning_effort = Some(ReasoningEffort::High);
    request.thinking_budget = Some(256);

    let completion = backend.complete(&request).await.expect("complete");
    assert_eq!(completion.text, "");
    assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        completion.tool_calls,
        vec![ToolCall {
            id: "call_9".into(),
            name: "rethink".into(),
            arguments: "{\"x\":1}".into()
        }]
    );
    assert_eq!(completion.usage.prompt_tokens, 100);
    assert_eq!(completion.usage.cached_prompt_tokens, 64);
    assert_eq!(completion.usage.completion_tokens, 7);
    assert_eq!(completion.time_to_first_token, completion.total_time);

    let (headers, body) = seen.last();
    assert_eq!(
        headers.get("x-session-id").and_then(|v| v.to_str().ok()),
        Some("ctx-123")
    );
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test")
    );
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["user"], "ctx-123");
    assert_eq!(body["seed"], 42);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert!(
        body.get("stop").is_none(),
        "empty stop list must be omitted: {body}"
    );
    assert!(body.get("stream").is_none());
    assert!(body.get("continue_final_message").is_none());
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(
        body["chat_template_kwargs"],
        json!({"thinking_budget": 256})
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ]},
            {"role": "tool", "content": "result", "tool_call_id": "call_1"},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {
            "name": "rethink", "description": "Rewrite memory",
            "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}
        }}])
    );
}

#[tokio::test]
async fn text_reply_with_stop_and_no_seed() {
    let (base, seen) = fixed(text_reply("The answer is 4.", "length")).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let mut request = ChatRequest::new(vec![Message::user("2+2?")], 5);
    request.stop = vec!["\n\n".into()];
    let completion = backend.complete(&request).await.expect("complete");
    assert_eq!(completion.text, "The answer is 4.");
    assert_eq!(completion.finish_reason, FinishReason::Length);
    assert_eq!(completion.usage.cached_prompt_tokens, 0);
    assert_eq!(completion.usage.prompt_tokens, 12);
    let (headers, body) = seen.last();
    assert_eq!(body["stop"], json!(["\n\n"]));
    assert!(body.get("seed").is_none());
    assert!(body.get("tools").is_none());
    assert!(body.get("user").is_none());
    assert!(body.get("reasoning_effort").is_none());
    assert!(body.get("chat_template_kwargs").is_none());
    assert!(headers.get("x-session-id").is_none());
    assert!(headers.get("authorization").is_none());

    // An unknown finish reason reads as Stop.
    let (base, _) = fixed(text_reply("x", "eos_token")).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let completion = backend.complete(&request).await.expect("complete");
    assert_eq!(completion.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn assistant_prefix_uses_continue_final_message() {
    let (base, seen) = fixed(text_reply(" 42.", "stop")).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let mut request = ChatRequest::new(vec![Message::user("q")], 8);
    request.assistant_prefix = Some("Thinking done.\nThe answer is".into());
    request.thinking_budget = Some(0);
    let completion = backend.complete(&request).await.expect("complete");
    assert_eq!(completion.text, " 42.");
    let (_, body) = seen.last();
    assert_eq!(body["continue_final_message"], true);
    assert_eq!(body["add_generation_prompt"], false);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Thinking done.\nThe answer is"},
        ])
    );
    assert_eq!(
        body["chat_template_kwargs"],
        json!({"thinking_budget": 0, "enable_thinking": false})
    );
}

/// An SSE reply split into network chunks at awkward places.
fn sse_response(pieces: Vec<String>) -> Response {
    let stream = futures::stream::iter(pieces).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::io::Error>(Bytes::from(p))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "s", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

#[tokio::test]
async fn streaming_delivers_each_delta_and_final_usage() {
    let seen = Seen::default();
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    seen.push(headers, body);
                    let all = [
                    ": keep-alive\n\n".to_owned(),
                    chunk(json!({"role": "assistant", "content": ""}), None),
                    chunk(json!({"content": "Hel"}), None),
                    chunk(json!({"content": "lo"}), None),
                    chunk(json!({"content": " wörld"}), None),
                    chunk(json!({}), Some("stop")),
                    format!(
                        "data: {}\n\n",
                        json!({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 3,
                            "prompt_tokens_details": {"cached_tokens": 16}}})
                    ),
                    "data: [DONE]\n\n".to_owned(),
                ]
                .concat();
                    // Cut the bytes at odd places, including inside the multi-byte "ö".
                    let bytes = all.into_bytes();
                    let o = bytes.iter().position(|&b| b == 0xC3).expect("ö");
                    let pieces = vec![
                        bytes[..3].to_vec(),
                        bytes[3..o + 1].to_vec(),
                        bytes[o + 1..o + 9].to_vec(),
                        bytes[o + 9..].to_vec(),
                    ];
                    sse_bytes(pieces)
                },
            ),
        )
        .with_state(seen.clone());
    let base = serve(router).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let request = ChatRequest::new(vec![Message::user("hi")], 16);
    let mut deltas: Vec<String> = Vec::new();
    let completion = backend
        .complete_streaming(&request, &mut |t: &str| deltas.push(t.to_owned()))
        .await
        .expect("stream");
    assert_eq!(deltas, vec!["Hel", "lo", " wörld"]);
    assert_eq!(completion.text, "Hello wörld");
    assert_eq!(completion.finish_reason, FinishReason::Stop);
    assert_eq!(completion.usage.prompt_tokens, 20);
    assert_eq!(completion.usage.cached_prompt_tokens, 16);
    assert_eq!(completion.usage.completion_tokens, 3);
    assert!(completion.time_to_first_token <= completion.total_time);
    assert!(completion.time_to_first_token > Duration::ZERO);
    let (_, body) = seen.last();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

/// Serve raw bytes as an SSE body, one network chunk per piece.
fn sse_bytes(pieces: Vec<Vec<u8>>) -> Response {
    let stream = futures::stream::iter(pieces).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, std::io::Error>(Bytes::from(p))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

#[tokio::test]
async fn streaming_accumulates_tool_call_deltas_by_index() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            sse_response(vec![
                chunk(json!({"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                    "function": {"name": "rethink", "arguments": ""}}]}), None),
                chunk(json!({"tool_calls": [{"index": 1, "id": "c1", "type": "function",
                    "function": {"name": "finish", "arguments": "{}"}}]}), None),
                chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"new_memory\":"}}]}), None),
                chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"m\"}"}}]}), None),
                chunk(json!({}), Some("tool_calls")),
                "data: [DONE]\n\n".to_owned(),
            ])
        }),
    );
    let base = serve(router).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let mut calls = 0;
    let completion = backend
        .complete_streaming(
            &ChatRequest::new(vec![Message::user("x")], 16),
            &mut |_: &str| calls += 1,
        )
        .await
        .expect("stream");
    assert_eq!(calls, 0);
    assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        completion.tool_calls,
        vec![
            ToolCall {
                id: "c0".into(),
                name: "rethink".into(),
                arguments: "{\"new_memory\": \"m\"}".into()
            },
            ToolCall {
                id: "c1".into(),
                name: "finish".into(),
                arguments: "{}".into()
            },
        ]
    );
    assert_eq!(completion.usage, Default::default());
}

#[tokio::test]
async fn retries_server_errors_then_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(calls): State<Arc<AtomicUsize>>| async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "overloaded").into_response()
                } else {
                    Json(text_reply("ok", "stop")).into_response()
                }
            }),
        )
        .with_state(calls.clone());
    let base = serve(router).await;
    let backend = OpenAiBackend::new(OpenAiConfig {
        max_retries: 2,
        ..config(&base)
    })
    .expect("backend");
    let completion = backend
        .complete(&ChatRequest::new(vec![Message::user("x")], 4))
        .await
        .expect("complete");
    assert_eq!(completion.text, "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Without retries the 500 is the answer.
    calls.store(0, Ordering::SeqCst);
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let err = backend
        .complete(&ChatRequest::new(vec![Message::user("x")], 4))
        .await
        .expect_err("500");
    assert_eq!(err.kind(), ModelErrorKind::Backend);
    assert!(
        err.message().contains("500") && err.message().contains("overloaded"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_429_and_gives_up_after_max() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(calls): State<Arc<AtomicUsize>>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error": {"message": "slow down"}})),
                )
            }),
        )
        .with_state(calls.clone());
    let base = serve(router).await;
    let backend = OpenAiBackend::new(OpenAiConfig {
        max_retries: 2,
        ..config(&base)
    })
    .expect("backend");
    let err = backend
        .complete(&ChatRequest::new(vec![Message::user("x")], 4))
        .await
        .expect_err("429");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(err.message().contains("slow down"), "{err}");
}

async fn failing(status: StatusCode, body: Value) -> String {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move || async move { (status, Json(body)) }),
    );
    serve(router).await
}

#[tokio::test]
async fn client_errors_map_to_kinds_with_the_server_message() {
    let request = ChatRequest::new(vec![Message::user("x")], 4);
    let base = failing(
        StatusCode::BAD_REQUEST,
        json!({"object": "error", "message": "temperature must be non-negative", "code": 400}),
    )
    .await;
    let err = OpenAiBackend::new(OpenAiConfig {
        max_retries: 3,
        ..config(&base)
    })
    .expect("backend")
    .complete(&request)
    .await
    .expect_err("400");
    assert_eq!(err.kind(), ModelErrorKind::InvalidRequest);
    assert!(
        err.message().contains("temperature must be non-negative"),
        "{err}"
    );

    let base = failing(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"message": "bad key"}}),
    )
    .await;
    let err = OpenAiBackend::new(config(&base))
        .expect("backend")
        .complete(&request)
        .await
        .expect_err("401");
    assert_eq!(err.kind(), ModelErrorKind::InvalidRequest);
    assert!(err.message().contains("bad key"));

    let base = failing(
        StatusCode::BAD_REQUEST,
        json!({"error": {"message": "This model's maximum context length is 2048 tokens. However, you requested 4000 tokens."}}),
    )
    .await;
    let err = OpenAiBackend::new(config(&base))
        .expect("backend")
        .complete(&request)
        .await
        .expect_err("ctx");
    assert_eq!(err.kind(), ModelErrorKind::ContextOverflow);

    let router = Router::new().route("/v1/chat/completions", post(|| async { "not json" }));
    let base = serve(router).await;
    let err = OpenAiBackend::new(config(&base))
        .expect("backend")
        .complete(&request)
        .await
        .expect_err("junk");
    assert_eq!(err.kind(), ModelErrorKind::Protocol);
}

#[tokio::test]
async fn unreachable_server_names_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}/v1");
    let backend = OpenAiBackend::new(OpenAiConfig {
        max_retries: 1,
        ..config(&base)
    })
    .expect("backend");
    let err = backend
        .complete(&ChatRequest::new(vec![Message::user("x")], 4))
        .await
        .expect_err("down");
    assert_eq!(err.kind(), ModelErrorKind::Unreachable);
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(text_reply("late", "stop"))
        }),
    );
    let base = serve(router).await;
    let backend = OpenAiBackend::new(OpenAiConfig {
        timeout: Duration::from_millis(200),
        max_retries: 2,
        ..config(&base)
    })
    .expect("backend");
    let started = std::time::Instant::now();
    let request = ChatRequest::new(vec![Message::user("x")], 4);
    let err = backend.complete(&request).await.expect_err("timeout");
    assert_eq!(err.kind(), ModelErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeouts are not retried"
    );
    let err = backend
        .complete_streaming(&request, &mut |_: &str| {})
        .await
        .expect_err("timeout");
    assert_eq!(err.kind(), ModelErrorKind::Timeout);
}

#[tokio::test]
async fn score_continuation_sums_echoed_continuation_logprobs() {
    let seen = Seen::default();
    let router = Router::new()
        .route(
            "/v1/completions",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    seen.push(headers, body);
                    // prompt "The sky is" + " blue": tokens The| sky| is| blue, then generated "."
                    Json(
                        json!({"choices": [{"index": 0, "text": "The sky is blue.", "logprobs": {
                    "tokens": ["The", " sky", " is", " blue", "."],
                    "token_logprobs": [null, -2.0, -0.5, -0.25, -1.0],
                    "text_offset": [0, 3, 7, 10, 15],
                    "top_logprobs": null
                }, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 4, "completion_tokens": 1}}),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let base = serve(router).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let score = backend
        .score_continuation("The sky is", " blue")
        .await
        .expect("score");
    assert_eq!(score.tokens, 1);
    assert!((score.logprob_sum + 0.25).abs() < 1e-12);
    let score = backend
        .score_continuation("The", " sky is blue")
        .await
        .expect("score");
    assert_eq!(score.tokens, 3);
    assert!((score.logprob_sum + 2.75).abs() < 1e-12);
    let (_, body) = seen.last();
    assert_eq!(body["prompt"], "The sky is blue");
    assert_eq!(body["echo"], true);
    assert_eq!(body["logprobs"], 1);
    assert_eq!(body["model"], "test-model");

    // A server without the legacy endpoint says so clearly.
    let (base, _) = fixed(text_reply("x", "stop")).await;
    let err = OpenAiBackend::new(config(&base))
        .expect("backend")
        .score_continuation("a", "b")
        .await
        .expect_err("no endpoint");
    assert_eq!(err.kind(), ModelErrorKind::Unsupported);
    assert!(err.message().contains("completions"), "{err}");
}

#[tokio::test]
async fn prepare_prefix_warms_the_server_cache() {
    let (base, seen) = fixed(text_reply("x", "length")).await;
    let backend = OpenAiBackend::new(config(&base)).expect("backend");
    let prefix = vec![Message::system("s"), Message::user("long context")];
    let a = backend.prepare_prefix(&prefix).await.expect("prefix");
    let b = backend.prepare_prefix(&prefix).await.expect("prefix");
    let c = backend.prepare_prefix(&prefix[..1]).await.expect("prefix");
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
    assert_eq!(a.id.len(), 64);
    assert_eq!(a.tokens, 12);
    assert!(a.evaluated);
    assert!(a.path.is_none());
    let (_, body) = seen.all().into_iter().next().expect("request");
    assert_eq!(body["max_tokens"], 1);
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));

    let info = backend.info();
    assert_eq!(info.fingerprint, format!("{base}#test-model"));
    assert!(!info.prefix_state);
    assert_eq!(info.name, "test-model");
}
