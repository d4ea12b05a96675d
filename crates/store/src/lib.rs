//! Persistence for the sleeptime service: tenants and API keys, versioned contexts, learned
//! contexts, the durable sleep-job queue, and the usage ledger.
//!
//! One small async trait, [`Store`], with one SQL implementation, [`SqlStore`], that runs on
//! SQLite (an embedded file in WAL mode, the zero-setup default) or PostgreSQL (several
//! processes sharing one queue through `FOR UPDATE SKIP LOCKED`).
//!
//! The invariants the server relies on:
//! - every change to a context bumps its version, and in the same transaction supersedes the
//!   pending or running sleep jobs of older versions, marks their learned contexts stale, and
//!   (optionally) enqueues the next job with a due time (the idle debounce);
//! - a learned context is written in the same transaction that finishes its job, and only if
//!   the job still holds its lease and the context is still at the job's version, so a
//!   half-written or stale `c'` is never visible as current;
//! - a job is claimed with a lease; a worker that dies stops heart-beating, the lease expires
//!   and another claim takes the job over with a new claim token, and the dead worker's late
//!   finish is refused ([`StoreError::LeaseLost`]), so no job is lost or completes twice;
//! - on PostgreSQL, every transaction that creates a pending job or makes one due earlier
//!   also notifies the `sleeptime_jobs` channel, and [`Store::queue_signal`] wakes the
//!   schedulers of every process sharing the database (the poll stays as the fallback).

mod sql;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

pub use sql::SqlStore;
pub use types::*;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such row for this tenant (other tenants' rows are reported the same way).
    #[error("not found")]
    NotFound,
    /// A compare-and-swap update named a version that is no longer current.
    #[error("version conflict: expected version {expected}, the context is at version {current}")]
    VersionConflict { expected: i64, current: i64 },
    /// The job's lease was taken over, or the job was superseded or cancelled.
    #[error("the job's lease was lost (it expired, or the job was superseded or cancelled)")]
    LeaseLost,
    /// The context changed while the job ran; the job is marked superseded.
    #[error("the context changed while the job ran; its result was discarded")]
    Superseded,
    /// The input cannot be stored (e.g. appending messages to a text context).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Database(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A subscription to "the job queue may have changed" signals from other processes sharing
/// the store (see [`Store::queue_signal`]). Each subscription remembers whether a signal came
/// since its last wait, so none is lost between two waits.
#[derive(Debug, Clone)]
pub struct QueueSignal {
    rx: Option<watch::Receiver<u64>>,
}

impl QueueSignal {
    /// A signal that never fires (stores that cannot tell: callers keep polling).
    pub fn never() -> Self {
        Self { rx: None }
    }

    pub(crate) fn from_receiver(mut rx: watch::Receiver<u64>) -> Self {
        // Only signals after subscribing count.
        rx.mark_unchanged();
        Self { rx: Some(rx) }
    }

    /// Return once a signal has come since the last call (or since subscribing). Never
    /// returns when the store cannot tell, or once its listener has stopped for good.
    pub async fn changed(&mut self) {
        if let Some(rx) = &mut self.rx {
            if rx.changed().await.is_ok() {
                return;
            }
            self.rx = None;
        }
        std::future::pending::<()>().await;
    }
}

/// A context, named by its tenant and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContextRef {
    pub tenant_id: String,
    pub context_id: String,
}

/// Persistence of everything the service keeps. All methods that take a `tenant_id` only see
/// that tenant's rows; a row of another tenant is [`StoreError::NotFound`].
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // ---- tenants and API keys ----

    /// Create the tenant `id` if it does not exist; return it.
    async fn ensure_tenant(&self, id: &str, name: &str) -> StoreResult<Tenant>;
    /// Create a tenant with a fresh id.
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    /// Register `key` (only its SHA-256 is kept) for a tenant; idempotent.
    async fn add_api_key(&self, tenant_id: &str, key: &str, label: &str) -> StoreResult<()>;
    /// Make, register and return a fresh key (shown once).
    async fn create_api_key(&self, tenant_id: &str, label: &str) -> StoreResult<String>;
    /// The tenant a key belongs to.
    async fn tenant_for_key(&self, key: &str) -> StoreResult<Option<Tenant>>;

    // ---- contexts ----

    /// Create a context at version 1, optionally enqueueing its first sleep job.
    async fn create_context(
        &self,
        tenant_id: &str,
        new: NewContext,
        sleep: Option<Enqueue>,
    ) -> StoreResult<ContextChange>;
    async fn get_context(&self, tenant_id: &str, id: &str) -> StoreResult<ContextRecord>;
    /// Contexts in creation order.
    async fn list_contexts(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ContextRecord>>;
    /// Replace or append; bumps the version, supersedes older jobs, stales older learned
    /// contexts, and optionally enqueues a job for the new version, in one transaction.
    async fn update_context(
        &self,
        tenant_id: &str,
        id: &str,
        update: ContextUpdate,
        sleep: Option<Enqueue>,
    ) -> StoreResult<ContextChange>;
    /// Delete a context, its versions and learned contexts; cancel its jobs (returned).
    async fn delete_context(&self, tenant_id: &str, id: &str) -> StoreResult<Vec<String>>;
    /// Versions, newest first.
    async fn list_versions(
        &self,
        tenant_id: &str,
        id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ContextVersion>>;
    async fn get_version(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<ContextVersion>;

    // ---- learned contexts ----

    /// The newest ready learned context of the context's current version.
    async fn current_learned(
        &self,
        tenant_id: &str,
        context_id: &str,
    ) -> StoreResult<Option<LearnedRecord>>;
    /// Learned contexts, newest first.
    async fn list_learned(
        &self,
        tenant_id: &str,
        context_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<LearnedRecord>>;

    // ---- sleep jobs ----

    /// Ask for sleep work on the context's current version. An active (pending or running)
    /// job for that version is reused (a pending one becomes due no later than asked);
    /// otherwise a new job is created.
    async fn enqueue_job(
        &self,
        tenant_id: &str,
        context_id: &str,
        sleep: Enqueue,
    ) -> StoreResult<JobRecord>;
    async fn get_job(&self, tenant_id: &str, job_id: &str) -> StoreResult<JobRecord>;
    /// Jobs of a context, newest first.
    async fn list_jobs(
        &self,
        tenant_id: &str,
        context_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<JobRecord>>;
    /// Claim the most overdue job: a pending one whose due time has come, or a running one
    /// whose lease expired. Jobs whose lease expired `max_attempts` times are failed instead.
    async fn claim_job(&self, lease: Duration) -> StoreResult<Option<ClaimedJob>>;
    /// Extend the lease; [`StoreError::LeaseLost`] when the job is no longer this claim's.
    async fn heartbeat(&self, lease: &JobLease, duration: Duration) -> StoreResult<()>;
    /// Publish the learned context and finish the job, in one transaction.
    async fn finish_job(&self, lease: &JobLease, learned: NewLearned)
        -> StoreResult<LearnedRecord>;
    /// Fail the job (or, with `retry_at` and attempts left, put it back as pending), and
    /// record the tokens it spent.
    async fn fail_job(
        &self,
        lease: &JobLease,
        error: &str,
        usage: TokenUsage,
        retry_at: Option<i64>,
    ) -> StoreResult<JobRecord>;
    /// Give the job back unfinished (graceful shutdown): pending again, due now, with this
    /// attempt not counted.
    async fn release_job(&self, lease: &JobLease) -> StoreResult<()>;
    /// The earliest due time of a pending job or lease expiry of a running one.
    async fn next_wakeup(&self) -> StoreResult<Option<i64>>;
    async fn queue_depth(&self) -> StoreResult<QueueDepth>;
    /// Subscribe to signals that another process (or this one) created a pending job or made
    /// one due earlier. The default never fires: a store only one process uses (SQLite) has
    /// nothing to tell, and callers keep polling [`Store::next_wakeup`] either way.
    fn queue_signal(&self) -> QueueSignal {
        QueueSignal::never()
    }

    // ---- scheduled re-learning ----

    /// Up to `limit` contexts due for re-learning: their newest ready learned context (of
    /// the current version) was written before `learned_before` (ms since the epoch: now
    /// minus the period), they have no pending or running job, and no job of theirs was
    /// created since `learned_before` (so a failed re-learn, e.g. on a spent budget, waits
    /// for the next period). Contexts never learned are left to the idle trigger. Oldest
    /// learned first.
    async fn relearn_due(&self, learned_before: i64, limit: u32) -> StoreResult<Vec<ContextRef>>;
    /// Enqueue a fresh sleep job for `context` if it is still due for re-learning (the same
    /// test as [`Store::relearn_due`], made again under the context's row lock, so processes
    /// racing on one candidate create one job). `None` when it is no longer due.
    async fn enqueue_relearn(
        &self,
        context: &ContextRef,
        learned_before: i64,
        sleep: Enqueue,
    ) -> StoreResult<Option<JobRecord>>;

    // ---- usage ledger ----

    async fn record_usage(&self, entry: UsageEntry) -> StoreResult<()>;
    /// Token totals since `since_ms`, optionally for one tenant and/or one context.
    async fn usage_totals(
        &self,
        tenant_id: Option<&str>,
        context_id: Option<&str>,
        since_ms: i64,
    ) -> StoreResult<UsageTotals>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Helpers for tests of this crate and of the crates above it.
#[doc(hidden)]
pub mod testing {
    use sqlx::Connection;

    use crate::{StoreError, StoreResult};

    /// Create a fresh, empty database on the PostgreSQL server of `url` (whose role may
    /// create databases) and return its URL, so tests sharing one server do not share a queue.
    pub async fn fresh_postgres_database(url: &str) -> StoreResult<String> {
        sqlx::any::install_default_drivers();
        let name = format!("st_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let (base, query) = match url.find('?') {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, ""),
        };
        let slash = base
            .rfind('/')
            .filter(|&i| i > base.find("://").map_or(0, |s| s + 2))
            .ok_or_else(|| StoreError::Invalid(format!("no database name in {url}")))?;
        Ok(format!("{}/{name}{query}", &base[..slash]))
    }

    /// The PostgreSQL URL tests should use: `SLEEPTIME_TEST_POSTGRES_URL`, or `None` to skip.
    /// Under CI (`CI` set) a missing URL is an error, so PostgreSQL coverage cannot vanish.
    pub fn postgres_url() -> Option<String> {
        match std::env::var("SLEEPTIME_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!("CI is set but SLEEPTIME_TEST_POSTGRES_URL is not: start PostgreSQL with scripts/postgres-test.sh")
            }
            _ => None,
        }
    }
}
