use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    ChatRequest, Completion, ContinuationScore, Message, ModelError, ModelInfo, PrefixState,
};

/// A language model the engine can call. Small on purpose: chat completion, continuation
/// scoring, and prefix state. Every call reports usage.
#[async_trait]
pub trait ModelBackend: Send + Sync + std::fmt::Debug {
    /// What this backend is; the fingerprint binds learned contexts to exact weights.
    fn info(&self) -> ModelInfo;

    /// One chat completion.
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError>;

    /// One chat completion, calling `on_text` with each piece of text as it is generated.
    /// Backends without streaming deliver the whole text once.
    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<Completion, ModelError> {
        let completion = self.complete(request).await?;
        on_text(&completion.text);
        Ok(completion)
    }

    /// Log-probability of `continuation` right after the raw text `prefix` (no chat template).
    async fn score_continuation(
        &self,
        _prefix: &str,
        _continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        Err(ModelError::unsupported("continuation scoring"))
    }

    /// Evaluate the chat-rendered `messages` once and keep their KV state, so that later
    /// requests whose prompt starts with them pay prefill only for the rest. Idempotent:
    /// a stored state is reused (`evaluated == false`).
    async fn prepare_prefix(&self, _messages: &[Message]) -> Result<PrefixState, ModelError> {
        Err(ModelError::unsupported("prefix state"))
    }

    /// Number of tokens `text` takes with this model's tokenizer.
    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        // A rough fallback (about 4 characters per token) for backends without a tokenizer.
        Ok(u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX))
    }
}

/// The form backends are passed around in.
pub type SharedBackend = Arc<dyn ModelBackend>;
