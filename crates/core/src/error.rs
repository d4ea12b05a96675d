use sleeptime_model::ModelError;

/// What kind of engine failure happened; stable for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineErrorKind {
    /// The context has no text.
    EmptyContext,
    /// The context does not fit the model's window with room to think.
    ContextTooLong,
    /// The question has no text.
    EmptyQuestion,
    /// A learned context does not belong to this context or model.
    Stale,
    /// A configuration value is out of range.
    InvalidConfig,
    /// The model backend failed.
    Model,
    /// A learned-context file could not be read or written.
    Io,
}

/// An engine error: a kind and a message that says what to do about it.
///
/// The message already quotes the underlying error, so it is kept as `cause` (for
/// [`EngineError::model_error`]) and not reported as `source()`: error reporters that print
/// the chain would otherwise say everything twice.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    kind: EngineErrorKind,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    pub fn new(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cause: None,
        }
    }
    pub fn kind(&self) -> EngineErrorKind {
        self.kind
    }
    pub(crate) fn io(message: impl Into<String>, err: std::io::Error) -> Self {
        Self {
            kind: EngineErrorKind::Io,
            message: format!("{}: {err}", message.into()),
            cause: Some(Box::new(err)),
        }
    }
    /// The underlying model error, when the model failed.
    pub fn model_error(&self) -> Option<&ModelError> {
        self.cause
            .as_ref()
            .and_then(|s| s.downcast_ref::<ModelError>())
    }
}

impl From<ModelError> for EngineError {
    fn from(err: ModelError) -> Self {
        let kind = match err.kind() {
            sleeptime_model::ModelErrorKind::ContextOverflow => EngineErrorKind::ContextTooLong,
            _ => EngineErrorKind::Model,
        };
        Self {
            kind,
            message: err.to_string(),
            cause: Some(Box::new(err)),
        }
    }
}
