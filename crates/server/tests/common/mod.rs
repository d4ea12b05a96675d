//! Shared harness: a real server on 127.0.0.1:0 with a scripted backend, and a small client.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};
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

/// A scripted model that rewrites its notes to `notes` at every sleep step and never
/// finishes on its own, so a sleep job takes all its steps; answers "1".
pub fn endless_rethinking(notes: &str) -> ScriptedBackend {
    ScriptedBackend::new()
        .on(
            "[trigger_rethink_memory]",
            format!("<rethink_memory>{notes}</rethink_memory>").as_str(),
        )
        .fallback("The answer is 1.")
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
        response(req).await
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
        response(req).await
    }

    pub async fn create(&self, key: &str, text: &str) -> Value {
        self.create_with(key, json!({"text": text})).await
    }

    /// Create a context from a full request body (e.g. `"sleep": false`); asserts 201.
    pub async fn create_with(&self, key: &str, body: Value) -> Value {
        let (s, v) = self
            .send("POST", "/v1/contexts", Some(key), Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn ask(&self, key: &str, id: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            "POST",
            &format!("/v1/contexts/{id}/ask"),
            Some(key),
            Some(body),
        )
        .await
    }

    /// Trigger a sleep job by hand and wait up to `timeout_s` for it to end.
    pub async fn sleep_and_wait(&self, key: &str, id: &str, timeout_s: u32) -> (StatusCode, Value) {
        let path = format!("/v1/contexts/{id}/sleep?wait=true&timeout_s={timeout_s}");
        self.send("POST", &path, Some(key), None).await
    }

    /// The job's current state (the response body, whatever the status).
    pub async fn job(&self, key: &str, job_id: &str) -> Value {
        self.send("GET", &format!("/v1/jobs/{job_id}"), Some(key), None)
            .await
            .1
    }

    /// Poll the job until a worker runs it; fails after `timeout`.
    pub async fn wait_until_running(&self, key: &str, job_id: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let j = self.job(key, job_id).await;
            if j["status"] == "running" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job never started: {j}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The context's learned contexts, newest first (the response body, whatever the status).
    pub async fn learned_history(&self, key: &str, id: &str) -> Value {
        self.send(
            "GET",
            &format!("/v1/contexts/{id}/learned/history"),
            Some(key),
            None,
        )
        .await
        .1
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
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

/// Send a request and read its status and body (JSON, or the text as a JSON string).
async fn response(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The value of an unlabelled counter or gauge in Prometheus text; panics when it is missing.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// A fresh database on the PostgreSQL server named by `SLEEPTIME_TEST_POSTGRES_URL`, or
/// `None` (with a note) when it is not set and the test should skip.
pub async fn fresh_postgres_database() -> Option<String> {
    let Some(url) = sleeptime_store::testing::postgres_url() else {
        eprintln!("skipped: SLEEPTIME_TEST_POSTGRES_URL is not set");
        return None;
    };
    let db = sleeptime_store::testing::fresh_postgres_database(&url)
        .await
        .expect("create test database");
    Some(db)
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
