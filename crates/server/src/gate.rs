//! Queries first: sleep work waits between model calls while any query is in flight, and a
//! per-job meter enforces the sleep-time token budget.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sleeptime_model::{
    ChatRequest, Completion, ContinuationScore, Message, ModelBackend, ModelError, ModelErrorKind, ModelInfo,
    PrefixState, SharedBackend, Usage,
};
use tokio::sync::Notify;

/// Counts interactive queries in flight; sleep work waits for zero.
#[derive(Debug, Default)]
pub struct QueryGate {
    active: AtomicUsize,
    idle: Notify,
    /// Times a sleep step had to wait for queries.
    pub yields: AtomicU64,
}

/// Held by a query while it runs.
#[derive(Debug)]
pub struct QueryGuard {
    gate: Arc<QueryGate>,
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        if self.gate.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gate.idle.notify_waiters();
        }
    }
}

impl QueryGate {
    pub fn enter(self: &Arc<Self>) -> QueryGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        QueryGuard { gate: self.clone() }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Return once no query is in flight.
    pub async fn wait_idle(&self) {
        let mut counted = false;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            if !counted {
                self.yields.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            notified.await;
        }
    }
}

/// The backend a sleep job uses: waits for queries before each call, meters usage, and
/// refuses calls once the job's token allowance is spent.
#[derive(Debug)]
pub struct SleepBackend {
    inner: SharedBackend,
    gate: Arc<QueryGate>,
    used: Mutex<Usage>,
    allowance: Option<u64>,
}

impl SleepBackend {
    pub fn new(inner: SharedBackend, gate: Arc<QueryGate>, allowance: Option<u64>) -> Self {
        Self { inner, gate, used: Mutex::new(Usage::default()), allowance }
    }

    /// Tokens spent through this backend so far.
    pub fn used(&self) -> Usage {
        *self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, usage: Usage) {
        *self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += usage;
    }

    async fn before_call(&self) -> Result<(), ModelError> {
        self.gate.wait_idle().await;
        if let Some(allowance) = self.allowance {
            let used = self.used();
            if used.prompt_tokens + used.completion_tokens >= allowance {
                return Err(ModelError::new(
                    ModelErrorKind::InvalidRequest,
                    format!("sleep-time token budget exhausted ({allowance} tokens allowed for this job)"),
                ));
            }
        }
        Ok(())
    }
}

/// The message the scheduler looks for to tell a budget stop from other failures.
pub const BUDGET_EXHAUSTED: &str = "sleep-time token budget exhausted";

#[async_trait]
impl ModelBackend for SleepBackend {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        self.before_call().await?;
        let completion = self.inner.complete(request).await?;
        self.add(completion.usage);
        Ok(completion)
    }

    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<Completion, ModelError> {
        self.before_call().await?;
        let completion = self.inner.complete_streaming(request, on_text).await?;
        self.add(completion.usage);
        Ok(completion)
    }

    async fn score_continuation(&self, prefix: &str, continuation: &str) -> Result<ContinuationScore, ModelError> {
        self.before_call().await?;
        self.inner.score_continuation(prefix, continuation).await
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        self.gate.wait_idle().await;
        self.inner.prepare_prefix(messages).await
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        self.inner.count_tokens(text).await
    }
}
