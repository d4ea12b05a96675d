//! Backend layers the harness puts around the model.
//!
//! The stack, from the caller down: [`Meter`] (one per answer: adds up the calls it made,
//! with the timings each completion reports, so latencies survive the call cache) →
//! `CachedBackend` (disk cache keyed by the full request) → [`LazyPrefix`] (evaluates a
//! registered prompt prefix only when a request that starts with it reaches the model) →
//! the model.
//!
//! Why lazy: the harness registers the `[instructions + c' + c]` prefix of each condition
//! as sleep-time work, but evaluating it costs a prefill; when the answer comes from the
//! call cache (a rerun, a resumed run) that prefill would be wasted, so it happens only on
//! a cache miss. Its timing is kept on disk beside the call cache, so a rerun still knows
//! what the prefill cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sleeptime_model::cache::CachedBackend;
use sleeptime_model::{
    ChatRequest, Completion, ContinuationScore, Message, ModelBackend, ModelError, ModelInfo,
    PrefixState, SharedBackend, Usage,
};

/// What evaluating one prompt prefix cost (sleep-time work that makes answers fast).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixTiming {
    pub tokens: u32,
    pub seconds: f64,
}

#[derive(Debug, Default)]
struct LazyState {
    registered: HashMap<String, Vec<Message>>,
    prepared: HashMap<String, Option<PrefixTiming>>,
    /// State files this process created, to delete when their context is done.
    created: HashMap<String, PathBuf>,
}

/// Evaluates registered prefixes on demand (see the module docs).
#[derive(Debug)]
pub struct LazyPrefix {
    inner: SharedBackend,
    timing_dir: Option<PathBuf>,
    state: Mutex<LazyState>,
}

/// Id of a message prefix for one model.
pub fn prefix_key(fingerprint: &str, messages: &[Message]) -> String {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(messages).unwrap_or_default());
    hex::encode(h.finalize())
}

impl LazyPrefix {
    /// Wrap `inner`; prefix timings are kept under `timing_dir` when given.
    pub fn new(inner: SharedBackend, timing_dir: Option<PathBuf>) -> Self {
        Self {
            inner,
            timing_dir,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LazyState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn timing_path(&self, key: &str) -> Option<PathBuf> {
        self.timing_dir
            .as_ref()
            .map(|d| d.join(&key[..2]).join(format!("{key}.json")))
    }

    /// Register `messages` as a prefix to evaluate before the first request that starts with
    /// it; returns its key.
    pub fn register(&self, messages: &[Message]) -> String {
        let key = prefix_key(&self.inner.info().fingerprint, messages);
        self.lock()
            .registered
            .entry(key.clone())
            .or_insert_with(|| messages.to_vec());
        key
    }

    /// What evaluating the prefix `key` cost, from this process or an earlier one.
    pub fn timing(&self, key: &str) -> Option<PrefixTiming> {
        if let Some(Some(t)) = self.lock().prepared.get(key) {
            return Some(*t);
        }
        let path = self.timing_path(key)?;
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Delete the prefix state files this process created for `keys` (they can be large:
    /// megabytes per prefix) and forget the registrations.
    pub fn release(&self, keys: &[String]) {
        let mut state = self.lock();
        for key in keys {
            state.registered.remove(key);
            if let Some(path) = state.created.remove(key) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Delete every prefix state file this process created.
    pub fn release_all(&self) {
        let keys: Vec<String> = self.lock().created.keys().cloned().collect();
        self.release(&keys);
    }

    /// Evaluate the longest registered prefix of `messages` if not done yet.
    async fn ensure_prefix(&self, messages: &[Message]) {
        let fingerprint = self.inner.info().fingerprint;
        let found = (1..messages.len()).rev().find_map(|n| {
            let key = prefix_key(&fingerprint, &messages[..n]);
            let state = self.lock();
            (state.registered.contains_key(&key) && !state.prepared.contains_key(&key))
                .then_some((key, n))
        });
        let Some((key, n)) = found else { return };
        let started = Instant::now();
        let result = self.inner.prepare_prefix(&messages[..n]).await;
        let seconds = started.elapsed().as_secs_f64();
        let mut state = self.lock();
        match result {
            Ok(prefix) => {
                let timing = if prefix.evaluated {
                    let t = PrefixTiming {
                        tokens: prefix.tokens,
                        seconds,
                    };
                    if let Some(path) = self.timing_path(&key) {
                        if let Some(parent) = path.parent() {
                            let _ = std::fs::create_dir_all(parent);
                        }
                        let _ = std::fs::write(&path, serde_json::to_vec(&t).unwrap_or_default());
                    }
                    if let Some(p) = prefix.path {
                        state.created.insert(key.clone(), p);
                    }
                    Some(t)
                } else {
                    None
                };
                state.prepared.insert(key, timing);
            }
            Err(e) => {
                tracing::debug!("prefix state unavailable: {e}");
                state.prepared.insert(key, None);
            }
        }
    }
}

#[async_trait]
impl ModelBackend for LazyPrefix {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        if request.reuse_prefix && self.inner.info().prefix_state {
            self.ensure_prefix(&request.messages).await;
        }
        self.inner.complete(request).await
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        self.inner.score_continuation(prefix, continuation).await
    }

    /// Registers the prefix; it is evaluated when first needed.
    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        let id = self.register(messages);
        Ok(PrefixState {
            id,
            tokens: 0,
            evaluated: false,
            path: None,
        })
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        self.inner.count_tokens(text).await
    }
}

/// One model call as a [`Meter`] saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallLog {
    pub usage: Usage,
    pub seconds: f64,
    pub time_to_first_token: f64,
}

/// Counts the calls made through it and adds up the timings the completions report (which
/// the call cache keeps, so a rerun reports the original latencies).
#[derive(Debug)]
pub struct Meter {
    inner: SharedBackend,
    calls: Mutex<Vec<CallLog>>,
    prefixes: Mutex<Vec<String>>,
}

impl Meter {
    pub fn new(inner: SharedBackend) -> Self {
        Self {
            inner,
            calls: Mutex::default(),
            prefixes: Mutex::default(),
        }
    }

    /// Every completion so far.
    pub fn calls(&self) -> Vec<CallLog> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Prefix ids registered through this meter.
    pub fn prefixes(&self) -> Vec<String> {
        self.prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Usage summed over all completions.
    pub fn usage(&self) -> Usage {
        self.calls()
            .iter()
            .fold(Usage::default(), |acc, c| acc + c.usage)
    }

    /// Seconds summed over all completions (the model's own timings).
    pub fn seconds(&self) -> f64 {
        self.calls().iter().map(|c| c.seconds).sum()
    }

    /// Time to the first token of the first completion.
    pub fn time_to_first_token(&self) -> f64 {
        self.calls().first().map_or(0.0, |c| c.time_to_first_token)
    }
}

#[async_trait]
impl ModelBackend for Meter {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        let completion = self.inner.complete(request).await?;
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(CallLog {
                usage: completion.usage,
                seconds: completion.total_time.as_secs_f64(),
                time_to_first_token: completion.time_to_first_token.as_secs_f64(),
            });
        Ok(completion)
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        self.inner.score_continuation(prefix, continuation).await
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        let state = self.inner.prepare_prefix(messages).await?;
        self.prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(state.id.clone());
        Ok(state)
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        self.inner.count_tokens(text).await
    }
}

/// Build the harness's stack on `model`: lazy prefixes and the call cache under `cache_dir`.
/// Returns the cached backend to call and the lazy layer (for prefix timings and cleanup).
pub fn stack(
    model: SharedBackend,
    cache_dir: &Path,
) -> crate::Result<(std::sync::Arc<CachedBackend>, std::sync::Arc<LazyPrefix>)> {
    let lazy = std::sync::Arc::new(LazyPrefix::new(
        model,
        Some(cache_dir.join("prefix-timing")),
    ));
    let cached = CachedBackend::new(lazy.clone(), cache_dir.join("calls"))?;
    Ok((std::sync::Arc::new(cached), lazy))
}
