//! The model layer of sleeptime: one small [`ModelBackend`] trait that every engine part is
//! written against, the request/usage types it speaks, and the portable backends.
//!
//! - [`scripted::ScriptedBackend`]: deterministic replies chosen by request content (tests).
//! - `openai::OpenAiBackend` (feature `openai`): any OpenAI-compatible HTTP server.
//! - `registry` / `fetch` (feature `fetch`): the named GGUF models and how their weights arrive.
//!
//! The embedded llama.cpp backend lives in its own crate (`sleeptime-llama`) so that only it
//! links llama.cpp.

mod backend;
pub mod cache;
mod error;
pub mod scripted;
mod types;

#[cfg(feature = "fetch")]
pub mod fetch;
#[cfg(feature = "openai")]
pub mod openai;
pub mod registry;

pub use backend::{ModelBackend, SharedBackend};
pub use error::{ModelError, ModelErrorKind};
pub use types::{
    ChatRequest, Completion, ContinuationScore, FinishReason, Interrupt, Message, ModelInfo,
    PrefixState, ReasoningEffort, Role, TextProtocol, ToolCall, ToolSpec, Usage,
};
