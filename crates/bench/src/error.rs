//! The harness's error: a kind to branch on and a message that says what went wrong and
//! where, so that `sleeptime bench` can print it as is.

use std::fmt::Display;
use std::path::Path;

use sleeptime_core::EngineError;
use sleeptime_model::ModelError;

use crate::datasets::DatasetError;

/// What kind of harness failure happened; stable for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BenchErrorKind {
    /// An option, a spec or a filter is invalid: nothing ran.
    InvalidInput,
    /// The dataset could not be read, parsed or generated.
    Dataset,
    /// A run folder or cache file could not be read or written.
    Io,
    /// A run file is not what the harness writes (an edited or truncated manifest or record).
    Corrupt,
    /// The run folder holds results made differently (another model, dataset or seed).
    RunMismatch,
    /// A run folder has nothing to report yet.
    NoResults,
    /// A model backend could not be built or failed.
    Model,
    /// The engine (a sleep program or the answerer) failed.
    Engine,
    /// A figure could not be drawn.
    Plot,
}

/// A harness error: a kind and a message.
///
/// The message already quotes the underlying error, so no `source()` is kept: reporters
/// that print the chain would otherwise say everything twice.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BenchError {
    kind: BenchErrorKind,
    message: String,
}

impl BenchError {
    pub fn new(kind: BenchErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> BenchErrorKind {
        self.kind
    }

    /// An invalid option or spec.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(BenchErrorKind::InvalidInput, message)
    }

    /// A file operation (`what`: "read", "write", "open", …) that failed on `path`.
    pub fn io(what: &str, path: &Path, err: &std::io::Error) -> Self {
        Self::new(
            BenchErrorKind::Io,
            format!("cannot {what} {}: {err}", path.display()),
        )
    }

    /// A run file at `path` that does not parse as `expected`.
    pub fn corrupt(path: &Path, expected: &str, err: &dyn Display) -> Self {
        Self::new(
            BenchErrorKind::Corrupt,
            format!("{} is not {expected}: {err}", path.display()),
        )
    }

    /// A model backend that could not be built (the binary builds them).
    pub fn backend(err: &dyn Display) -> Self {
        Self::new(BenchErrorKind::Model, err.to_string())
    }

    /// The same error with `context` said first ("multi-query generation: …").
    #[must_use]
    pub fn within(self, context: &str) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl From<DatasetError> for BenchError {
    fn from(err: DatasetError) -> Self {
        Self::new(BenchErrorKind::Dataset, err.to_string())
    }
}

impl From<ModelError> for BenchError {
    fn from(err: ModelError) -> Self {
        Self::new(BenchErrorKind::Model, err.to_string())
    }
}

impl From<EngineError> for BenchError {
    fn from(err: EngineError) -> Self {
        let kind = if err.model_error().is_some() {
            BenchErrorKind::Model
        } else {
            BenchErrorKind::Engine
        };
        Self::new(kind, err.to_string())
    }
}

/// The harness's result type.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
