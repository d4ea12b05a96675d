use std::fmt;

/// What went wrong in a model call, coarse enough for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// The backend could not be reached (connection refused, DNS, TLS).
    Unreachable,
    /// The call took longer than its deadline.
    Timeout,
    /// The request was rejected as invalid (bad parameters, unknown model, auth).
    InvalidRequest,
    /// The prompt does not fit in the model's context window.
    ContextOverflow,
    /// A model file is missing, truncated, or does not match its pinned hash.
    ModelFile,
    /// The backend answered with something that could not be understood.
    Protocol,
    /// The capability is not offered by this backend.
    Unsupported,
    /// Anything else inside the backend.
    Backend,
}

/// An error from a model backend: a [`ModelErrorKind`] plus a human-readable message.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ModelError {
    kind: ModelErrorKind,
    message: String,
}

impl ModelError {
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn kind(&self) -> ModelErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn unsupported(what: &str) -> Self {
        Self::new(
            ModelErrorKind::Unsupported,
            format!("{what} is not supported by this backend"),
        )
    }
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ModelErrorKind::Backend, message)
    }
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ModelErrorKind::Protocol, message)
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ModelErrorKind::Unreachable => "model backend unreachable",
            ModelErrorKind::Timeout => "model call timed out",
            ModelErrorKind::InvalidRequest => "invalid model request",
            ModelErrorKind::ContextOverflow => "prompt longer than the model's context window",
            ModelErrorKind::ModelFile => "model file problem",
            ModelErrorKind::Protocol => "unexpected reply from model backend",
            ModelErrorKind::Unsupported => "unsupported",
            ModelErrorKind::Backend => "model backend error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}
