//! The resource API: contexts, versions, learned contexts, sleep jobs, ask, usage.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sleeptime_core::{parse, Answer, AnswerConfig, AnswerInput, Answerer};
use sleeptime_store::{
    now_ms, ChatMessage, ContextBody, ContextChangeKind, ContextRecord, ContextUpdate,
    ContextVersion, Enqueue, JobRecord, JobStatus, JobTrigger, LearnedRecord, NewContext, Page,
    PageRequest, StoreError, TokenUsage, UsageEntry, UsageKind,
};

use crate::error::{ApiError, MapStoreErr};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::scheduler::{answer_config, token_usage};
use crate::state::AppState;

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

fn secs(ms: i64) -> i64 {
    ms / 1000
}

fn usage_json(u: &TokenUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "cached_tokens": u.cached_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total(),
    })
}

fn body_fields(body: &ContextBody, out: &mut serde_json::Map<String, Value>) {
    match body {
        ContextBody::Text(t) => {
            out.insert("kind".into(), "text".into());
            out.insert("text".into(), t.clone().into());
        }
        ContextBody::Messages(m) => {
            out.insert("kind".into(), "messages".into());
            out.insert(
                "messages".into(),
                serde_json::to_value(m).unwrap_or_default(),
            );
        }
    }
}

pub(crate) fn context_view(c: &ContextRecord, with_body: bool) -> Value {
    let mut v = json!({
        "id": c.id,
        "object": "context",
        "name": c.name,
        "version": c.version,
        "hash": c.hash,
        "kind": c.body.kind(),
        "created_at": secs(c.created_at),
        "updated_at": secs(c.updated_at),
    });
    if with_body {
        if let Some(map) = v.as_object_mut() {
            body_fields(&c.body, map);
        }
    }
    v
}

fn version_view(v: &ContextVersion) -> Value {
    let mut out = json!({
        "object": "context.version",
        "context_id": v.context_id,
        "version": v.version,
        "hash": v.hash,
        "created_at": secs(v.created_at),
    });
    if let Some(map) = out.as_object_mut() {
        body_fields(&v.body, map);
    }
    out
}

pub(crate) fn job_view(j: &JobRecord) -> Value {
    json!({
        "id": j.id,
        "object": "sleep_job",
        "context_id": j.context_id,
        "context_version": j.context_version,
        "status": j.status,
        "trigger": j.trigger,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "due_at": secs(j.due_at),
        "created_at": secs(j.created_at),
        "started_at": j.started_at.map(secs),
        "finished_at": j.finished_at.map(secs),
        "usage": usage_json(&j.usage),
        "error": j.error,
        "learned_id": j.learned_id,
    })
}

pub(crate) fn learned_view(l: &LearnedRecord) -> Value {
    json!({
        "id": l.id,
        "object": "learned_context",
        "context_id": l.context_id,
        "version": l.version,
        "context_version": l.context_version,
        "context_hash": l.context_hash,
        "program": l.program,
        "model": {"name": l.model_name, "fingerprint": l.model_fingerprint},
        "status": l.status,
        "text": l.text,
        "usage": usage_json(&l.usage),
        "job_id": l.job_id,
        "created_at": secs(l.created_at),
    })
}

/// One page of a store list as the API's list object, each item shown by `view`.
fn list_view<T>(page: Page<T>, view: impl Fn(&T) -> Value) -> Json<Value> {
    let items: Vec<Value> = page.items.iter().map(view).collect();
    let next_cursor = page.next_cursor;
    Json(
        json!({"object": "list", "data": items, "has_more": next_cursor.is_some(), "next_cursor": next_cursor}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

impl ListQuery {
    fn page(&self) -> ApiResult<PageRequest> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("limit must be 1 to 100, got {limit}"),
            ));
        }
        Ok(PageRequest {
            limit,
            cursor: self.cursor.clone(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageIn {
    role: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    messages: Option<Vec<MessageIn>>,
    /// Schedule sleep-time work once the context goes quiet (default true).
    #[serde(default)]
    sleep: Option<bool>,
    /// Compare-and-swap: apply only at this version (replace and append).
    #[serde(default)]
    if_version: Option<i64>,
}

const ROLES: &[&str] = &["system", "user", "assistant", "tool"];
const MAX_NAME: usize = 200;

impl ContextIn {
    fn body(&mut self, allow_empty: bool) -> ApiResult<ContextBody> {
        let body = match (self.text.take(), self.messages.take()) {
            (Some(t), None) => ContextBody::Text(t),
            (None, Some(ms)) => {
                for (i, m) in ms.iter().enumerate() {
                    if !ROLES.contains(&m.role.as_str()) {
                        return Err(ApiError::unprocessable(
                            "invalid_value",
                            format!(
                                "messages[{i}].role must be one of {ROLES:?}, got {:?}",
                                m.role
                            ),
                        ));
                    }
                }
                ContextBody::Messages(
                    ms.into_iter()
                        .map(|m| ChatMessage {
                            role: m.role,
                            content: m.content,
                        })
                        .collect(),
                )
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::unprocessable(
                    "invalid_request",
                    "give either text or messages, not both",
                ))
            }
            (None, None) => {
                return Err(ApiError::unprocessable(
                    "invalid_request",
                    "missing field: give text or messages",
                ))
            }
        };
        if !allow_empty && body.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_value",
                "the context is empty: sleep-time compute needs text to think about",
            ));
        }
        if let Some(n) = &self.name {
            if n.chars().count() > MAX_NAME {
                return Err(ApiError::unprocessable(
                    "invalid_value",
                    format!("name is longer than {MAX_NAME} characters"),
                ));
            }
        }
        Ok(body)
    }
}

fn sleep_enqueue(state: &AppState, want: Option<bool>) -> Option<Enqueue> {
    want.unwrap_or(true).then(|| state.idle_enqueue())
}

/// Tell job-event subscribers a sleep job is queued, and wake the scheduler so it need not
/// wait for its next poll to see it.
fn announce_queued(state: &AppState, tenant: &str, job: &JobRecord, data: Value) {
    state.emit(&job.id, &job.context_id, tenant, "queued", data);
    state.wake.notify_one();
}

/// A created or changed context with the sleep job the change queued (`null` when none).
fn changed_context_view(context: &ContextRecord, job: Option<&JobRecord>) -> Value {
    let mut v = context_view(context, true);
    v["sleep_job"] = job.map(job_view).unwrap_or(Value::Null);
    v
}

pub(crate) async fn create_context(
    State(state): S,
    Caller(t): Caller,
    ApiJson(mut req): ApiJson<ContextIn>,
) -> ApiResult<Response> {
    if req.if_version.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "if_version applies to replace and append, not create",
        ));
    }
    let body = req.body(false)?;
    let change = state
        .store
        .create_context(
            &t.id,
            NewContext {
                name: req.name.take(),
                body,
            },
            sleep_enqueue(&state, req.sleep),
        )
        .await
        .map_store_err("context", "")?;
    if let Some(job) = &change.job {
        announce_queued(&state, &t.id, job, json!({"due_at": secs(job.due_at)}));
    }
    tracing::info!(context = %change.context.id, version = change.context.version, "context created");
    let v = changed_context_view(&change.context, change.job.as_ref());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub(crate) async fn list_contexts(
    State(state): S,
    Caller(t): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .store
        .list_contexts(&t.id, &q.page()?)
        .await
        .map_store_err("cursor", "")?;
    Ok(list_view(page, |c| context_view(c, false)))
}

pub(crate) async fn get_context(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = state
        .store
        .get_context(&t.id, &id)
        .await
        .map_store_err("context", &id)?;
    Ok(Json(context_view(&c, true)))
}

async fn change_context(
    state: &Arc<AppState>,
    tenant: &str,
    id: &str,
    mut req: ContextIn,
    append: bool,
) -> ApiResult<Json<Value>> {
    let body = req.body(append)?;
    let change = if append {
        ContextChangeKind::Append(body)
    } else {
        ContextChangeKind::Replace(body)
    };
    let update = ContextUpdate {
        change,
        name: req.name.take(),
        if_version: req.if_version,
    };
    let change = state
        .store
        .update_context(tenant, id, update, sleep_enqueue(state, req.sleep))
        .await
        .map_store_err("context", id)?;
    for job in &change.superseded {
        state.emit(
            job,
            id,
            tenant,
            "superseded",
            json!({"by_version": change.context.version}),
        );
    }
    if !change.superseded.is_empty() {
        state.cancel_context_work(id);
    }
    if let Some(job) = &change.job {
        announce_queued(state, tenant, job, json!({"due_at": secs(job.due_at)}));
    }
    tracing::info!(context = %id, version = change.context.version, superseded = change.superseded.len(), "context changed");
    let mut v = changed_context_view(&change.context, change.job.as_ref());
    v["superseded_jobs"] = json!(change.superseded);
    Ok(Json(v))
}

pub(crate) async fn replace_context(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContextIn>,
) -> ApiResult<Json<Value>> {
    change_context(&state, &t.id, &id, req, false).await
}

pub(crate) async fn append_context(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContextIn>,
) -> ApiResult<Json<Value>> {
    change_context(&state, &t.id, &id, req, true).await
}

pub(crate) async fn delete_context(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let cancelled = state
        .store
        .delete_context(&t.id, &id)
        .await
        .map_store_err("context", &id)?;
    for job in &cancelled {
        state.emit(
            job,
            &id,
            &t.id,
            "cancelled",
            json!({"reason": "context deleted"}),
        );
    }
    state.cancel_context_work(&id);
    Ok(Json(
        json!({"id": id, "object": "context.deleted", "deleted": true, "cancelled_jobs": cancelled}),
    ))
}

pub(crate) async fn list_versions(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .store
        .list_versions(&t.id, &id, &q.page()?)
        .await
        .map_store_err("context", &id)?;
    Ok(list_view(page, version_view))
}

pub(crate) async fn get_version(
    State(state): S,
    Caller(t): Caller,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v: i64 = version.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_value",
            format!("version must be an integer, got {version:?}"),
        )
    })?;
    let rec = state
        .store
        .get_version(&t.id, &id, v)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("context version", &format!("{id}@{v}")),
            e => ApiError::store(e, "context", &id),
        })?;
    Ok(Json(version_view(&rec)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitQuery {
    #[serde(default)]
    wait: Option<bool>,
    /// Longest wait in seconds (default 60, at most 600).
    #[serde(default)]
    timeout_s: Option<f64>,
}

impl WaitQuery {
    fn deadline(&self) -> ApiResult<Option<Duration>> {
        if !self.wait.unwrap_or(false) {
            return Ok(None);
        }
        let s = self.timeout_s.unwrap_or(60.0);
        if !(0.0..=600.0).contains(&s) || s.is_nan() {
            return Err(ApiError::bad_request(
                "invalid_value",
                "timeout_s must be 0 to 600",
            ));
        }
        Ok(Some(Duration::from_secs_f64(s)))
    }
}

/// Wait until the job is terminal or `timeout` passes; returns its latest state.
async fn wait_job(
    state: &Arc<AppState>,
    tenant: &str,
    job_id: &str,
    timeout: Duration,
) -> ApiResult<JobRecord> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = state.events.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        let job = state
            .store
            .get_job(tenant, job_id)
            .await
            .map_store_err("job", job_id)?;
        if job.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(job);
        }
        tokio::select! {
            _ = rx.recv() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => return Ok(job),
        }
    }
}

/// The learned-context state of a context: ready, pending, running, failed, stale or none.
async fn learned_status(state: &Arc<AppState>, tenant: &str, id: &str) -> ApiResult<Value> {
    let ctx = state
        .store
        .get_context(tenant, id)
        .await
        .map_store_err("context", id)?;
    let current = state
        .store
        .current_learned(tenant, id)
        .await
        .map_store_err("context", id)?;
    let jobs = state
        .store
        .list_jobs(tenant, id, &PageRequest::first(1))
        .await
        .map_store_err("context", id)?;
    let job = jobs
        .items
        .into_iter()
        .next()
        .filter(|j| j.context_version == ctx.version);
    let status = match (&current, &job) {
        (Some(_), _) => "ready",
        (None, Some(j)) if j.status == JobStatus::Pending => "pending",
        (None, Some(j)) if j.status == JobStatus::Running => "running",
        (None, Some(j)) if j.status == JobStatus::Failed => "failed",
        _ => {
            let any = state
                .store
                .list_learned(tenant, id, &PageRequest::first(1))
                .await
                .map_store_err("context", id)?;
            if any.items.is_empty() {
                "none"
            } else {
                "stale"
            }
        }
    };
    Ok(json!({
        "object": "learned_context.status",
        "context_id": id,
        "context_version": ctx.version,
        "status": status,
        "learned": current.as_ref().map(learned_view),
        "job": job.as_ref().map(job_view),
    }))
}

pub(crate) async fn get_learned(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<Value>> {
    let mut v = learned_status(&state, &t.id, &id).await?;
    if let Some(timeout) = q.deadline()? {
        let deadline = tokio::time::Instant::now() + timeout;
        while matches!(v["status"].as_str(), Some("pending" | "running"))
            && tokio::time::Instant::now() < deadline
        {
            if let Some(job_id) = v["job"]["id"].as_str() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                wait_job(&state, &t.id, job_id, left).await?;
            }
            v = learned_status(&state, &t.id, &id).await?;
        }
    }
    Ok(Json(v))
}

pub(crate) async fn learned_history(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .store
        .list_learned(&t.id, &id, &q.page()?)
        .await
        .map_store_err("context", &id)?;
    Ok(list_view(page, learned_view))
}

pub(crate) async fn trigger_sleep(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Response> {
    let wait = q.deadline()?;
    let enqueue = Enqueue {
        due_at: now_ms(),
        trigger: JobTrigger::Manual,
        max_attempts: state.config.scheduler.max_attempts,
    };
    let job = state
        .store
        .enqueue_job(&t.id, &id, enqueue)
        .await
        .map_store_err("context", &id)?;
    announce_queued(
        &state,
        &t.id,
        &job,
        json!({"due_at": secs(job.due_at), "trigger": "manual"}),
    );
    let job = match wait {
        Some(timeout) => wait_job(&state, &t.id, &job.id, timeout).await?,
        None => job,
    };
    let status = if job.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(job_view(&job))).into_response())
}

pub(crate) async fn list_jobs(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .store
        .list_jobs(&t.id, &id, &q.page()?)
        .await
        .map_store_err("context", &id)?;
    Ok(list_view(page, job_view))
}

pub(crate) async fn get_job(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<Value>> {
    let job = match q.deadline()? {
        Some(timeout) => wait_job(&state, &t.id, &id, timeout).await?,
        None => state
            .store
            .get_job(&t.id, &id)
            .await
            .map_store_err("job", &id)?,
    };
    Ok(Json(job_view(&job)))
}

struct EventStream {
    state: Arc<AppState>,
    tenant: String,
    job_id: String,
    rx: tokio::sync::broadcast::Receiver<crate::state::JobEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    last: Option<JobStatus>,
    done: bool,
}

impl EventStream {
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if self.last.is_some() {
                tokio::select! {
                    ev = self.rx.recv() => match ev {
                        Ok(ev) if ev.job_id == self.job_id => {
                            let data = json!({"job_id": ev.job_id, "context_id": ev.context_id, "event": ev.event, "data": ev.data});
                            if ev.event == "step" || ev.event == "queued" {
                                return Some(Event::default().event(ev.event).data(data.to_string()));
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    },
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = self.shutdown.changed() => return None,
                }
            }
            let job = self
                .state
                .store
                .get_job(&self.tenant, &self.job_id)
                .await
                .ok()?;
            if self.last != Some(job.status) {
                self.last = Some(job.status);
                self.done = job.status.is_terminal();
                return Some(
                    Event::default()
                        .event(job.status.as_str())
                        .data(job_view(&job).to_string()),
                );
            }
        }
    }
}

/// Server-sent events of one job: its state on connect, every status change (`pending`,
/// `running`, `succeeded`, `failed`, `superseded`, `cancelled`, each with the job), and
/// `step` progress while it runs here. The stream ends when the job does.
pub(crate) async fn job_events(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state
        .store
        .get_job(&t.id, &id)
        .await
        .map_store_err("job", &id)?;
    let rx = state.events.subscribe();
    let shutdown = state.shutdown.clone();
    let es = EventStream {
        state: state.clone(),
        tenant: t.id.clone(),
        job_id: id,
        rx,
        shutdown,
        last: None,
        done: false,
    };
    let stream = futures::stream::unfold(es, |mut es| async move {
        es.next().await.map(|ev| (Ok::<_, Infallible>(ev), es))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskIn {
    question: String,
    /// Most completion tokens for the answer.
    #[serde(default)]
    budget: Option<u32>,
    /// 0 (one sentence) to 4 (step by step).
    #[serde(default)]
    verbosity: Option<u8>,
    /// Answer again with full reasoning when the learned context does not back the answer
    /// from it (its number is not written in `c'`); default: the server's setting.
    #[serde(default)]
    escalate: Option<bool>,
}

pub(crate) async fn ask(
    State(state): S,
    Caller(t): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AskIn>,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    if req.question.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_value",
            "question is empty",
        ));
    }
    let cfg = &state.config.answer;
    if let Some(b) = req.budget {
        if b == 0 || b > cfg.max_budget {
            return Err(ApiError::unprocessable(
                "invalid_value",
                format!("budget must be 1 to {}, got {b}", cfg.max_budget),
            ));
        }
    }
    if let Some(v) = req.verbosity {
        if v > 4 {
            return Err(ApiError::unprocessable(
                "invalid_value",
                format!("verbosity must be 0 to 4, got {v}"),
            ));
        }
    }
    let _guard = state.gate.enter();
    let ctx = state
        .store
        .get_context(&t.id, &id)
        .await
        .map_store_err("context", &id)?;
    let learned = state
        .store
        .current_learned(&t.id, &id)
        .await
        .map_store_err("context", &id)?;
    let text = ctx.body.to_text();
    // Full reasoning over the context: the fallback without `c'`, and the escalation.
    let from_context = AnswerInput {
        context: Some(text.as_str()),
        learned: None,
        question: Some(req.question.as_str()),
    };
    let (config, input) = match &learned {
        Some(l) => (
            answer_config(
                req.verbosity.unwrap_or(cfg.verbosity),
                req.budget.unwrap_or(cfg.budget),
            ),
            AnswerInput {
                learned: Some(l.text.as_str()),
                ..from_context
            },
        ),
        None => (
            answer_config(
                req.verbosity.unwrap_or(cfg.fallback_verbosity),
                req.budget.unwrap_or(cfg.fallback_budget),
            ),
            from_context,
        ),
    };
    let mut answer = answer_within(&state, &id, config, &input, cfg.timeout).await?;
    // An answer c' does not back was not read off the notes: answer again from the context
    // with full reasoning, within what is left of the timeout, and count both calls.
    let unbacked_number = match &learned {
        Some(l) if req.escalate.unwrap_or(cfg.escalate_unbacked) => match answer.number {
            Some(n) if parse::backed_by(&l.text, n) => None,
            other => Some(other),
        },
        _ => None,
    };
    if unbacked_number.is_some() {
        let config = answer_config(cfg.fallback_verbosity, cfg.fallback_budget);
        let left = cfg.timeout.saturating_sub(started.elapsed());
        let first_usage = answer.usage;
        answer = answer_within(&state, &id, config, &from_context, left).await?;
        answer.usage += first_usage;
    }
    let escalated = unbacked_number.is_some();
    let usage = token_usage(answer.usage);
    if let Err(e) = state
        .store
        .record_usage(UsageEntry {
            tenant_id: t.id.clone(),
            context_id: Some(id.clone()),
            job_id: None,
            kind: UsageKind::Test,
            usage,
        })
        .await
    {
        tracing::warn!(error = %e, "recording query usage failed");
    }
    let fallback = learned.is_none();
    let latency = started.elapsed().as_secs_f64();
    let saved = state.metrics.query(
        fallback,
        latency,
        answer.usage.completion_tokens,
        answer.usage.prompt_tokens + answer.usage.completion_tokens,
        answer.usage.cached_prompt_tokens,
        u64::from(cfg.fallback_budget),
    );
    if escalated {
        state
            .metrics
            .queries_escalated
            .fetch_add(1, Ordering::Relaxed);
    }
    let mode = if fallback {
        "fallback"
    } else if escalated {
        "escalated"
    } else {
        "learned"
    };
    let note = if fallback {
        Some("no learned context is ready for this context version; answered with full reasoning over the context")
    } else if escalated {
        Some("the learned context did not back the answer from it (its number is not in the learned context); answered again with full reasoning over the context")
    } else {
        None
    };
    tracing::info!(context = %id, mode, latency, tokens = usage.total(), "answered");
    Ok(Json(json!({
        "object": "answer",
        "context_id": id,
        "context_version": ctx.version,
        "mode": mode,
        "note": note,
        "unbacked_number": unbacked_number.flatten(),
        "learned": learned.as_ref().map(|l| json!({"id": l.id, "version": l.version, "context_version": l.context_version})),
        "answer": answer.text,
        "number": answer.number,
        "usage": usage_json(&usage),
        "estimated_tokens_saved": saved,
        "latency_s": latency,
        "time_to_first_token_s": answer.time_to_first_token,
        "hit_cap": answer.hit_cap,
        "forced": answer.forced,
    })))
}

/// One answer within `timeout` (what is left of the query's time limit), with the API's
/// errors for failures and timeouts.
async fn answer_within(
    state: &AppState,
    context_id: &str,
    config: AnswerConfig,
    input: &AnswerInput<'_>,
    timeout: Duration,
) -> ApiResult<Answer> {
    let limit = state.config.answer.timeout;
    let answerer = Answerer::new(&*state.backend, config);
    match tokio::time::timeout(timeout, answerer.answer(input)).await {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            tracing::warn!(context = %context_id, error = %e, "answering failed");
            Err(ApiError::engine(&e))
        }
        // `timeout` is what was left of the query's limit; the message names the limit.
        Err(_) => Err(ApiError::timeout(format!(
            "the model did not answer within {limit:?}"
        ))),
    }
}

pub(crate) async fn usage(State(state): S, Caller(t): Caller) -> ApiResult<Json<Value>> {
    let totals = state
        .store
        .usage_totals(Some(&t.id), None, 0)
        .await
        .map_store_err("usage", "")?;
    Ok(Json(json!({
        "object": "usage",
        "sleep": usage_json(&totals.sleep),
        "test": usage_json(&totals.test),
        "sleep_jobs": totals.sleep_entries,
        "queries": totals.test_entries,
    })))
}

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn ready(State(state): S) -> Response {
    match state.store.ping().await {
        Ok(()) if !*state.shutdown.borrow() => Json(json!({"status": "ready"})).into_response(),
        Ok(()) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down",
        )
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "store_unavailable",
                "the database is unavailable",
            )
            .into_response()
        }
    }
}

pub(crate) async fn metrics(State(state): S) -> Response {
    let depth = state.store.queue_depth().await.ok();
    let gate = &state.gate;
    let text = state.metrics.render(
        depth,
        gate.active(),
        gate.yields.load(Ordering::Relaxed),
        gate.preemptions.load(Ordering::Relaxed),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "unknown_route",
        "no such endpoint",
    )
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
