//! A disk cache in front of any backend: every completion and score is stored under a hash
//! of the full request and the model's fingerprint, so re-running an experiment costs
//! nothing and an interrupted run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    ChatRequest, Completion, ContinuationScore, Message, ModelBackend, ModelError, ModelInfo,
    PrefixState, SharedBackend,
};

/// A [`ModelBackend`] that answers repeated requests from disk.
#[derive(Debug)]
pub struct CachedBackend {
    inner: SharedBackend,
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CachedBackend {
    /// Cache `inner`'s calls under `dir` (created if missing).
    pub fn new(inner: SharedBackend, dir: impl Into<PathBuf>) -> Result<Self, ModelError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            ModelError::backend(format!("cannot create call cache {}: {e}", dir.display()))
        })?;
        Ok(Self {
            inner,
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Calls answered from disk so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Calls passed to the model so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        self.dir
            .join(kind)
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
        // An unreadable or half-written entry is a miss, never an error: it is recomputed.
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn write<T: Serialize>(path: &Path, value: &T) {
        let Some(parent) = path.parent() else { return };
        if std::fs::create_dir_all(parent).is_err() {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Ok(bytes) = serde_json::to_vec(value) {
            if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

#[async_trait]
impl ModelBackend for CachedBackend {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        let path = self.path(
            "complete",
            &request.cache_key(&self.inner.info().fingerprint),
        );
        if let Some(hit) = Self::read::<Completion>(&path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let completion = self.inner.complete(request).await?;
        // An interrupted reply is a fragment, not what this request yields.
        if completion.finish_reason != crate::FinishReason::Interrupted {
            Self::write(&path, &completion);
        }
        Ok(completion)
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        let mut h = Sha256::new();
        for part in [self.inner.info().fingerprint.as_str(), prefix, continuation] {
            h.update(part.len().to_le_bytes());
            h.update(part.as_bytes());
        }
        let path = self.path("score", &hex::encode(h.finalize()));
        if let Some(hit) = Self::read::<ContinuationScore>(&path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let score = self.inner.score_continuation(prefix, continuation).await?;
        Self::write(&path, &score);
        Ok(score)
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        self.inner.prepare_prefix(messages).await
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        self.inner.count_tokens(text).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scripted::ScriptedBackend;

    #[tokio::test]
    async fn repeated_requests_are_served_from_disk() {
        let dir = std::env::temp_dir().join(format!("sleeptime-cache-test-{}", std::process::id()));
        let scripted = ScriptedBackend::new().on("hello", "hi there");
        let cached = CachedBackend::new(Arc::new(scripted.clone()), &dir).expect("cache");
        let req = ChatRequest::new(vec![Message::user("hello")], 10);
        let first = cached.complete(&req).await.expect("call");
        let second = cached.complete(&req).await.expect("call");
        assert_eq!(first, second);
        assert_eq!((cached.hits(), cached.misses()), (1, 1));
        assert_eq!(scripted.calls().len(), 1);
        // A new process (a new cache object on the same dir) resumes from disk.
        let again = CachedBackend::new(Arc::new(scripted.clone()), &dir).expect("cache");
        again.complete(&req).await.expect("call");
        assert_eq!(scripted.calls().len(), 1);
        // Any change to the request is a different entry.
        let other = ChatRequest {
            seed: Some(1),
            ..req.clone()
        };
        again.complete(&other).await.expect("call");
        assert_eq!(scripted.calls().len(), 2);
        // A corrupt entry is recomputed, not an error.
        let path = again.path("complete", &req.cache_key("scripted"));
        std::fs::write(&path, b"{oops").expect("write");
        again.complete(&req).await.expect("call");
        assert_eq!(scripted.calls().len(), 3);
        let s1 = again.score_continuation("a b", "b").await.expect("score");
        let s2 = again.score_continuation("a b", "b").await.expect("score");
        assert_eq!(s1, s2);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
