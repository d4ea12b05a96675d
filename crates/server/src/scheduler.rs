//! The sleep worker: claims due jobs, runs the sleep program on them through a backend that
//! yields to queries, prepares the answer prefix, and publishes the learned context in the
//! job's finishing transaction.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sleeptime_core::{
    learn, AnswerConfig, AnswerInput, Answerer, Context, EngineError, LearnConfig, SleepBudget,
    SleepEvent, SleepProgress, Verbosity,
};
use sleeptime_model::{ModelErrorKind, Usage};
use sleeptime_store::{
    now_ms, ClaimedJob, Enqueue, JobTrigger, NewLearned, StoreError, TokenUsage, UsageEntry,
    UsageKind,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::gate::{SleepBackend, BUDGET_EXHAUSTED};
use crate::state::AppState;

pub(crate) fn token_usage(u: Usage) -> TokenUsage {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    TokenUsage {
        prompt_tokens: i(u.prompt_tokens),
        cached_tokens: i(u.cached_prompt_tokens),
        completion_tokens: i(u.completion_tokens),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The answer settings whose prefix is prepared at the end of sleep time (the ones `ask`
/// uses by default, so default queries hit the prepared state).
pub(crate) fn answer_config(verbosity: u8, budget: u32) -> AnswerConfig {
    AnswerConfig {
        verbosity: Verbosity::new(verbosity.min(Verbosity::MAX))
            .unwrap_or(AnswerConfig::default().verbosity),
        max_tokens: budget,
        ..AnswerConfig::default()
    }
}

/// Contexts looked at per query of a re-learning pass.
const RELEARN_BATCH: u32 = 100;

/// How often to look for contexts due for re-learning: often enough that a context is at
/// most a quarter period late, and never more than once a minute (nor in a tight loop).
fn relearn_interval(every: Duration) -> Duration {
    (every / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
}

/// Enqueue re-learning for the contexts whose learned context is older than `every`.
async fn relearn_pass(state: &AppState, every: Duration) {
    let learned_before = now_ms() - millis(every);
    loop {
        let due = match state.store.relearn_due(learned_before, RELEARN_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "looking for contexts to re-learn failed");
                return;
            }
        };
        let mut enqueued = 0;
        for context in &due {
            let sleep = Enqueue {
                due_at: now_ms(),
                trigger: JobTrigger::Schedule,
                max_attempts: state.config.scheduler.max_attempts,
            };
            match state
                .store
                .enqueue_relearn(context, learned_before, sleep)
                .await
            {
                Ok(Some(job)) => {
                    enqueued += 1;
                    tracing::info!(job = %job.id, context = %job.context_id, "scheduled re-learning");
                    state.emit(
                        &job.id,
                        &job.context_id,
                        &job.tenant_id,
                        "queued",
                        json!({"due_at": job.due_at / 1000, "trigger": "schedule"}),
                    );
                }
                // Another process got there first, or the context changed.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, context = %context.context_id, "enqueueing re-learning failed")
                }
            }
        }
        // A full batch may hide more; stop when one brings nothing new, so errors cannot spin.
        if due.len() < RELEARN_BATCH as usize || enqueued == 0 {
            return;
        }
    }
}

/// Run the scheduler until shutdown, then let running jobs finish within the grace period
/// and park (release) the rest.
pub async fn run(state: Arc<AppState>) {
    let cfg = state.config.scheduler.clone();
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut shutdown = state.shutdown.clone();
    let mut tasks = JoinSet::new();
    // Subscribed before the first claim, so a job another process enqueues from here on
    // either is claimed below or wakes the wait.
    let mut queue_changed = state.store.queue_signal();
    let mut next_relearn = Instant::now();
    tracing::info!(
        concurrency = cfg.concurrency,
        idle_s = cfg.idle.as_secs_f64(),
        relearn_every_s = cfg.relearn_every.map(|d| d.as_secs_f64()),
        "sleep scheduler started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        if let Some(every) = cfg.relearn_every {
            if Instant::now() >= next_relearn {
                relearn_pass(&state, every).await;
                next_relearn = Instant::now() + relearn_interval(every);
            }
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        match state.store.claim_job(cfg.lease).await {
            Ok(Some(claimed)) => {
                let state = state.clone();
                tasks.spawn(async move {
                    run_job(state, claimed).await;
                    drop(permit);
                });
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                tracing::warn!(error = %e, "claiming a sleep job failed");
                drop(permit);
            }
        }
        let mut wait = match state.store.next_wakeup().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(cfg.poll)
            }
            _ => cfg.poll,
        };
        if cfg.relearn_every.is_some() {
            wait = wait.min(next_relearn.saturating_duration_since(Instant::now()));
        }
        let wait = wait.max(Duration::from_millis(20));
        // The poll stays as the fallback for a lost notification or a store that cannot tell.
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.wake.notified() => {}
            () = queue_changed.changed() => {}
            _ = shutdown.changed() => break,
        }
    }
    if !tasks.is_empty() {
        tracing::info!(
            running = tasks.len(),
            "waiting for running sleep jobs to finish"
        );
        let drained = tokio::time::timeout(cfg.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            state.parking.store(true, Ordering::SeqCst);
            let switches: Vec<_> = state
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .map(|(_, n)| n.clone())
                .collect();
            for s in switches {
                s.notify_one();
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    tracing::info!("sleep scheduler stopped");
}

struct JobProgress {
    state: Arc<AppState>,
    job_id: String,
    context_id: String,
    tenant_id: String,
}

impl SleepProgress for JobProgress {
    fn event(&self, event: SleepEvent) {
        if let SleepEvent::StepFinished {
            draft,
            step,
            completion_tokens,
            action,
        } = event
        {
            self.state.emit(
                &self.job_id,
                &self.context_id,
                &self.tenant_id,
                "step",
                json!({"draft": draft, "step": step, "completion_tokens": completion_tokens, "action": action}),
            );
        }
    }
}

// A short-lived local value; boxing the result buys nothing.
#[allow(clippy::large_enum_variant)]
enum Stop {
    Done(
        Result<
            (
                sleeptime_core::LearnedContext,
                Option<sleeptime_model::PrefixState>,
            ),
            EngineError,
        >,
    ),
    LeaseLost,
    Cancelled,
    TimedOut,
}

/// Tokens this job may still spend under the per-context and global budgets.
async fn allowance(state: &AppState, context_id: &str) -> Result<Option<u64>, StoreError> {
    let cfg = &state.config.scheduler;
    let since = now_ms() - millis(cfg.budget_window);
    let mut left: Option<u64> = None;
    if let Some(limit) = cfg.context_budget_tokens {
        let spent = state
            .store
            .usage_totals(None, Some(context_id), since)
            .await?
            .sleep
            .total();
        left = Some(limit.saturating_sub(u64::try_from(spent).unwrap_or(0)));
    }
    if let Some(limit) = cfg.global_budget_tokens {
        let spent = state
            .store
            .usage_totals(None, None, since)
            .await?
            .sleep
            .total();
        let g = limit.saturating_sub(u64::try_from(spent).unwrap_or(0));
        left = Some(left.map_or(g, |l| l.min(g)));
    }
    Ok(left)
}

async fn run_job(state: Arc<AppState>, claimed: ClaimedJob) {
    let started = Instant::now();
    let job = &claimed.job;
    let emit = |event: &str, data: serde_json::Value| {
        state.emit(&job.id, &job.context_id, &job.tenant_id, event, data)
    };
    let cancel = Arc::new(Notify::new());
    state
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(job.id.clone(), (job.context_id.clone(), cancel.clone()));
    tracing::info!(job = %job.id, context = %job.context_id, version = job.context_version, attempt = job.attempts, "sleep job started");
    emit(
        "running",
        json!({"attempt": job.attempts, "context_version": job.context_version}),
    );

    let (outcome, tokens) = run_job_inner(&state, &claimed, cancel).await;
    state
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&job.id);
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.job_finished(
        outcome.0,
        seconds,
        u64::try_from(tokens.total()).unwrap_or(0),
    );
    tracing::info!(job = %job.id, outcome = outcome.0, seconds, tokens = tokens.total(), "sleep job ended");
    emit(outcome.0, outcome.1);
}

/// Returns (event name, event data) and the tokens spent.
async fn run_job_inner(
    state: &Arc<AppState>,
    claimed: &ClaimedJob,
    cancel: Arc<Notify>,
) -> ((&'static str, serde_json::Value), TokenUsage) {
    let job = &claimed.job;
    let lease = &claimed.lease;
    let cfg = &state.config.scheduler;
    let ctx = match state
        .store
        .get_context(&job.tenant_id, &job.context_id)
        .await
    {
        Ok(ctx) if ctx.version == job.context_version => ctx,
        Ok(_) | Err(StoreError::NotFound) => {
            return (
                (
                    "superseded",
                    json!({"reason": "the context changed or was deleted"}),
                ),
                TokenUsage::default(),
            )
        }
        Err(e) => {
            let _ = state.store.release_job(lease).await;
            return (
                ("released", json!({"reason": e.to_string()})),
                TokenUsage::default(),
            );
        }
    };
    let allowance = match allowance(state, &job.context_id).await {
        Ok(a) => a,
        Err(e) => {
            let _ = state.store.release_job(lease).await;
            return (
                ("released", json!({"reason": e.to_string()})),
                TokenUsage::default(),
            );
        }
    };
    if allowance == Some(0) {
        let msg = format!("{BUDGET_EXHAUSTED}: the per-context or global sleep-time budget for this window is spent");
        let _ = state
            .store
            .fail_job(lease, &msg, TokenUsage::default(), None)
            .await;
        return (("failed", json!({"error": msg})), TokenUsage::default());
    }
    let backend = Arc::new(SleepBackend::new(
        state.backend.clone(),
        state.gate.clone(),
        allowance,
    ));
    let progress = JobProgress {
        state: state.clone(),
        job_id: job.id.clone(),
        context_id: job.context_id.clone(),
        tenant_id: job.tenant_id.clone(),
    };
    let text = ctx.body.to_text();
    let sleep_cfg = state.config.sleep.clone();
    let answer_cfg = answer_config(state.config.answer.verbosity, state.config.answer.budget);
    let work = async {
        let context = Context::new(text.clone())?;
        let program = sleep_cfg.program.build(&sleep_cfg.settings);
        let learn_cfg = LearnConfig {
            k: sleep_cfg.k.max(1),
            combine: sleep_cfg.program.combine(),
            budget: SleepBudget {
                max_tokens_per_step: sleep_cfg.max_tokens_per_step,
                ..SleepBudget::default()
            },
            ..LearnConfig::default()
        };
        let learned = learn(program.as_ref(), &*backend, &context, &learn_cfg, &progress).await?;
        // Prefill c + c' now, so queries pay only for the question.
        let input = AnswerInput {
            context: Some(context.text()),
            learned: Some(&learned.text),
            question: None,
        };
        let prefix = match Answerer::new(&*backend, answer_cfg).prepare(&input).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(error = %e, "no prefix state prepared");
                None
            }
        };
        Ok((learned, prefix))
    };
    let heartbeat = async {
        let every = (cfg.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            match state.store.heartbeat(lease, cfg.lease).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost) => return,
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    };
    let stop = tokio::select! {
        r = work => Stop::Done(r),
        () = heartbeat => Stop::LeaseLost,
        () = cancel.notified() => Stop::Cancelled,
        () = tokio::time::sleep(cfg.job_timeout) => Stop::TimedOut,
    };
    let used = token_usage(backend.used());
    let record_spent = || async {
        if used != TokenUsage::default() {
            let entry = UsageEntry {
                tenant_id: job.tenant_id.clone(),
                context_id: Some(job.context_id.clone()),
                job_id: Some(job.id.clone()),
                kind: UsageKind::Sleep,
                usage: used,
            };
            if let Err(e) = state.store.record_usage(entry).await {
                tracing::warn!(error = %e, "recording sleep usage failed");
            }
        }
    };
    let retry_at = Some(now_ms() + millis(cfg.retry_delay));
    match stop {
        Stop::Done(Ok((learned, prefix))) => {
            let new = NewLearned {
                context_hash: learned.context_hash.to_string(),
                program: learned.program.to_string(),
                model_fingerprint: learned.model_fingerprint.clone(),
                model_name: learned.model_name.clone(),
                text: learned.text.clone(),
                detail: json!({"drafts": learned.drafts, "prefix": prefix}),
                usage: used,
            };
            match state.store.finish_job(lease, new).await {
                Ok(rec) => (
                    (
                        "succeeded",
                        json!({"learned_id": rec.id, "learned_version": rec.version, "tokens": used.total()}),
                    ),
                    used,
                ),
                Err(StoreError::Superseded) => {
                    (("superseded", json!({"tokens": used.total()})), used)
                }
                Err(StoreError::LeaseLost) => {
                    record_spent().await;
                    (("superseded", json!({"tokens": used.total()})), used)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing the learned context failed");
                    let _ = state
                        .store
                        .fail_job(
                            lease,
                            &format!("could not store the result: {e}"),
                            used,
                            retry_at,
                        )
                        .await;
                    (("failed", json!({"error": e.to_string()})), used)
                }
            }
        }
        Stop::Done(Err(err)) => {
            let message = err.to_string();
            let transient = !message.contains(BUDGET_EXHAUSTED)
                && matches!(
                    err.model_error().map(|m| m.kind()),
                    Some(
                        ModelErrorKind::Timeout
                            | ModelErrorKind::Unreachable
                            | ModelErrorKind::Backend
                    )
                );
            match state
                .store
                .fail_job(
                    lease,
                    &message,
                    used,
                    if transient { retry_at } else { None },
                )
                .await
            {
                Ok(j) if j.status == sleeptime_store::JobStatus::Pending => (
                    ("retrying", json!({"error": message, "retry_at": j.due_at})),
                    used,
                ),
                Ok(_) => (("failed", json!({"error": message})), used),
                Err(_) => {
                    record_spent().await;
                    (("superseded", json!({"tokens": used.total()})), used)
                }
            }
        }
        Stop::TimedOut => {
            let message = format!("the sleep job ran longer than {:?}", cfg.job_timeout);
            let _ = state.store.fail_job(lease, &message, used, retry_at).await;
            (("failed", json!({"error": message})), used)
        }
        Stop::LeaseLost | Stop::Cancelled => {
            record_spent().await;
            if state.parking.load(Ordering::SeqCst) && state.store.release_job(lease).await.is_ok()
            {
                (("released", json!({"reason": "shutdown"})), used)
            } else {
                (("superseded", json!({"tokens": used.total()})), used)
            }
        }
    }
}
