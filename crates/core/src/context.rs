use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EngineError, EngineErrorKind};

/// Hex SHA-256 of a context's text: what a learned context is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContextHash(String);

impl ContextHash {
    pub fn of(text: &str) -> Self {
        Self(hex::encode(Sha256::digest(text.as_bytes())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for ContextHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text a model will later be asked about (a document, a situation, a chat history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    text: String,
    hash: ContextHash,
}

impl Context {
    /// A context from text; surrounding whitespace is trimmed and empty text is refused.
    pub fn new(text: impl Into<String>) -> Result<Self, EngineError> {
        let text = text.into().trim().to_owned();
        if text.is_empty() {
            return Err(EngineError::new(
                EngineErrorKind::EmptyContext,
                "the context is empty: sleep-time compute needs text to think about",
            ));
        }
        let hash = ContextHash::of(&text);
        Ok(Self { text, hash })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn hash(&self) -> &ContextHash {
        &self.hash
    }
}
