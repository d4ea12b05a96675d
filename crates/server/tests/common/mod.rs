//! Shared harness: a real server on 127.0.0.1:0 with a scripted backend, and a small client.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;
use sleeptime_model::scripted::{Reply, ScriptedBackend};
use sleeptime_model::{
    ChatRequest, Completion, Message, ModelBackend, ModelError, ModelInfo, PrefixState,
    SharedBackend,
};
use sleeptime_server::{ApiKeyConfig, AuthConfig, Server, ServerConfig};
use sleeptime_store::{SqlStore, Store};

pub const ALICE: &str = "key-alice-0123456789";
pub const BOB: &str = "key-bob-0123456789";
pub const LEARNED_NOTES: &str = "Alice has 3 apples. Doubled: 3 * 2 = 6.";

/// What kind of model call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Sleep,
    Query,
}

#[derive(Debug, Clone)]
pub struct CallRecord {
    pub kind: CallKind,
    pub start: Instant,
    pub end: Instant,
    pub text: String,
}

/// The scripted backend plus per-kind delays, a "SLOW" needle that stalls, and a log of
/// every call's interval.
#[derive(Debug)]
pub struct TestBackend {
    pub inner: ScriptedBackend,
    pub sleep_delay: Duration,
    pub query_delay: Duration,
    pub log: Mutex<Vec<CallRecord>>,
}

impl TestBackend {
    pub fn calls(&self) -> Vec<CallRecord> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn rendered(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[async_trait]
impl ModelBackend for TestBackend {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        let text = rendered(&request.messages);
        let kind = if text.contains("[trigger_rethink_memory]") {
            CallKind::Sleep
        } else {
            CallKind::Query
        };
        let start = Instant::now();
        let delay = match kind {
            CallKind::Sleep => self.sleep_delay,
            CallKind::Query => self.query_delay,
        };
        if text.contains("SLOW") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        tokio::time::sleep(delay).await;
        let result = self.inner.complete(request).await;
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(CallRecord {
                kind,
                start,
                end: Instant::now(),
                text,
            });
        result
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        self.inner.prepare_prefix(messages).await
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        self.inner.count_tokens(text).await
    }
}

/// A scripted model that writes `LEARNED_NOTES` once, then finishes; answers "6".
pub fn scripted() -> ScriptedBackend {
    ScriptedBackend::new()
        .on(
            "EXPLODE",
            Reply::Fail(ModelError::backend("the GPU caught fire")),
        )
        .on("Memory block saved", "<finish_rethinking_memory/>")
        .on(
            "[trigger_rethink_memory]",
            format!("<rethink_memory>{LEARNED_NOTES}</rethink_memory>").as_str(),
        )
        .on("Memory block (rethink_memory_block)", "The answer is 6.")
        .fallback("Let me think step by step. 3 apples doubled is 6. The answer is 6.")
}

pub fn test_config() -> ServerConfig {
    let mut cfg = ServerConfig {
        auth: AuthConfig {
            require_keys: true,
            default_tenant: "default".into(),
            keys: vec![
                ApiKeyConfig {
                    tenant: "alice".into(),
                    key: ALICE.into(),
                },
                ApiKeyConfig {
                    tenant: "bob".into(),
                    key: BOB.into(),
                },
            ],
        },
        max_body_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    cfg.scheduler.idle = Duration::from_millis(150);
    cfg.scheduler.poll = Duration::from_millis(50);
    cfg.scheduler.lease = Duration::from_secs(2);
    cfg.scheduler.retry_delay = Duration::from_millis(100);
    cfg.scheduler.shutdown_grace = Duration::from_millis(200);
    cfg.answer.timeout = Duration::from_secs(2);
    cfg
}

pub struct Harness {
    pub server: Option<Server>,
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Arc<TestBackend>,
    pub store: Arc<SqlStore>,
    pub dir: tempfile::TempDir,
}

pub struct Options {
    pub config: ServerConfig,
    pub scripted: ScriptedBackend,
    pub sleep_delay: Duration,
    pub query_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: test_config(),
            scripted: scripted(),
            sleep_delay: Duration::ZERO,
            query_delay: Duration::ZERO,
        }
    }
}

pub async fn start(opts: Options) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqlStore::open_sqlite(&dir.path().join("sleeptime.db"))
            .await
            .expect("store"),
    );
    start_with_store(opts, store, dir).await
}

pub async fn start_with_store(
    opts: Options,
    store: Arc<SqlStore>,
    dir: tempfile::TempDir,
) -> Harness {
    let backend = Arc::new(TestBackend {
        inner: opts.scripted,
        sleep_delay: opts.sleep_delay,
        query_delay: opts.query_delay,
        log: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shared: SharedBackend = backend.clone();
    let dyn_store: Arc<dyn Store> = store.clone();
    let server = Server::start(opts.config, shared, dyn_store, listener)
        .await
        .expect("start");
    let base = format!("http://{}", server.addr);
    Harness {
        server: Some(server),
        base,
        client: reqwest::Client::new(),
        backend,
        store,
        dir,
    }
}

impl Harness {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn create(&self, key: &str, text: &str) -> Value {
        let (s, v) = self
            .send(
                "POST",
                "/v1/contexts",
                Some(key),
                Some(serde_json::json!({"text": text})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Wait for the context's learned state to settle (ready, failed, stale or none).
    pub async fn wait_learned(&self, key: &str, id: &str) -> Value {
        let (s, v) = self
            .send(
                "GET",
                &format!("/v1/contexts/{id}/learned?wait=true&timeout_s=15"),
                Some(key),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
    }
}

/// Assert an error response's shape, status and code.
pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "status for {body}");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message in {body}"
    );
    assert!(err["type"].as_str().is_some(), "error type in {body}");
    assert_eq!(
        err["code"].as_str(),
        Some(want_code),
        "error code in {body}"
    );
}
