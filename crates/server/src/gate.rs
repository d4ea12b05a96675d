//! Queries first: sleep work waits between model calls while any query is in flight, a query
//! that arrives mid-call interrupts the sleep generation (which resumes from its text so far
//! once queries are done), and a per-job meter enforces the sleep-time token budget.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use sleeptime_model::{
    ChatRequest, Completion, ContinuationScore, FinishReason, Interrupt, Message, ModelBackend,
    ModelError, ModelErrorKind, ModelInfo, PrefixState, SharedBackend, Usage,
};
use tokio::sync::Notify;

/// Counts interactive queries in flight; sleep work waits for zero, and (with preemption on)
/// a query's arrival interrupts the sleep generation running on the model.
#[derive(Debug)]
pub struct QueryGate {
    active: AtomicUsize,
    idle: Notify,
    /// Shared by all sleep calls: at most one runs on an embedded model at a time, and every
    /// one of them must yield when a query arrives.
    interrupt: Interrupt,
    preempt: AtomicBool,
    /// Times a sleep step had to wait for queries.
    pub yields: AtomicU64,
    /// Times a query interrupted a sleep generation mid-call.
    pub preemptions: AtomicU64,
}

impl Default for QueryGate {
    fn default() -> Self {
        Self::new(true)
    }
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
    /// `preempt`: whether a query interrupts a sleep generation mid-call (otherwise sleep
    /// work yields only between calls).
    pub fn new(preempt: bool) -> Self {
        Self {
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            interrupt: Interrupt::new(),
            preempt: AtomicBool::new(preempt),
            yields: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
        }
    }

    pub fn enter(self: &Arc<Self>) -> QueryGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        // After the count: a sleep call armed before this sees the flag; one armed after
        // sees the count and waits.
        self.interrupt.trigger();
        QueryGuard { gate: self.clone() }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    pub fn preempts(&self) -> bool {
        self.preempt.load(Ordering::SeqCst)
    }

    pub fn set_preempt(&self, on: bool) {
        self.preempt.store(on, Ordering::SeqCst);
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

    /// Wait until no query is in flight, then hand out the interrupt a sleep call should
    /// carry (none when preemption is off). A query entering after this triggers it.
    async fn arm(&self) -> Option<Interrupt> {
        loop {
            self.wait_idle().await;
            if !self.preempts() {
                return None;
            }
            self.interrupt.reset();
            // A query that entered between the wait and the reset set the flag before we
            // cleared it; the count still shows it.
            if self.active() == 0 {
                return Some(self.interrupt.clone());
            }
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
        Self {
            inner,
            gate,
            used: Mutex::new(Usage::default()),
            allowance,
        }
    }

    /// Tokens spent through this backend so far.
    pub fn used(&self) -> Usage {
        *self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, usage: Usage) {
        *self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += usage;
    }

    /// Refuse a call once the job's allowance is spent.
    fn check_allowance(&self) -> Result<(), ModelError> {
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

    /// One completion that yields to queries: wait for them to finish, run with the gate's
    /// interrupt, and when a query interrupts, wait again and continue from the text so far
    /// (sent as the assistant prefix, with the token cap reduced by what was generated).
    async fn complete_yielding(
        &self,
        request: &ChatRequest,
        mut on_text: Option<&mut (dyn for<'t> FnMut(&'t str) + Send)>,
    ) -> Result<Completion, ModelError> {
        let started = Instant::now();
        let mut text = String::new();
        let mut usage = Usage::default();
        let mut first_token = None;
        loop {
            let interrupt = self.gate.arm().await;
            self.check_allowance()?;
            let mut call = request.clone();
            call.interrupt = interrupt;
            if !text.is_empty() {
                call.assistant_prefix = Some(format!(
                    "{}{text}",
                    request.assistant_prefix.as_deref().unwrap_or_default()
                ));
                let spent = u32::try_from(usage.completion_tokens).unwrap_or(u32::MAX);
                call.max_tokens = request.max_tokens.saturating_sub(spent).max(1);
            }
            let completion = match on_text.as_deref_mut() {
                Some(f) => self.inner.complete_streaming(&call, f).await?,
                None => self.inner.complete(&call).await?,
            };
            self.add(completion.usage);
            usage += completion.usage;
            if !completion.text.is_empty() || completion.usage.completion_tokens > 0 {
                first_token.get_or_insert(completion.time_to_first_token);
            }
            text.push_str(&completion.text);
            if completion.finish_reason == FinishReason::Interrupted {
                self.gate.preemptions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    tokens = usage.completion_tokens,
                    "sleep generation yielded to a query"
                );
                continue;
            }
            let mut finish = completion.finish_reason;
            // A stop string may straddle a resume point, where neither call saw it whole.
            if let Some(at) = request
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(at);
                finish = FinishReason::Stop;
            }
            return Ok(Completion {
                text,
                tool_calls: completion.tool_calls,
                finish_reason: finish,
                usage,
                time_to_first_token: first_token.unwrap_or(completion.time_to_first_token),
                total_time: started.elapsed(),
            });
        }
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
        self.complete_yielding(request, None).await
    }

    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<Completion, ModelError> {
        self.complete_yielding(request, Some(on_text)).await
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        self.gate.wait_idle().await;
        self.check_allowance()?;
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
