use std::path::Path;

use serde::{Deserialize, Serialize};
use sleeptime_model::{ModelInfo, Usage};

use crate::{Context, ContextHash, EngineError, EngineErrorKind};

/// Which sleep program (and which settings of it) wrote a learned context.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProgramRef {
    /// Program name, e.g. `rethink`.
    pub name: String,
    /// Bumped whenever the program's prompts or logic change what it writes.
    pub version: u32,
    /// Settings that change the output, as `key=value` text (e.g. `max_rethinks=10`).
    pub params: String,
}

impl std::fmt::Display for ProgramRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@v{}", self.name, self.version)?;
        if !self.params.is_empty() {
            write!(f, "[{}]", self.params)?;
        }
        Ok(())
    }
}

/// What one sleep run cost and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SleepStats {
    /// Tokens spent at sleep time (prompt and completion, over every step).
    pub usage: Usage,
    /// Model calls made.
    pub steps: u32,
    /// Times the memory block was rewritten.
    pub rewrites: u32,
    /// Whether the model signalled it was done (rather than hitting the step limit).
    pub finished: bool,
    /// Replies that followed neither protocol form.
    pub malformed_replies: u32,
    /// Steps left out because their prompt outgrew the model's context window (a solution
    /// too long to translate, a repair too long to ask): what they would have added is
    /// dropped, not guessed, and the rest of the draft is kept.
    #[serde(default)]
    pub dropped_too_long: u32,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// One independent sleep-time generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// The learned text.
    pub text: String,
    /// The sampling seed used, if any.
    pub seed: Option<u64>,
    pub stats: SleepStats,
    /// The structured form, for programs that write one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<crate::LearnedDocument>,
}

/// `c'`: what a sleep program learned about a context, bound to that context's hash, the
/// program and the model, so it is never mistaken for knowledge of another text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedContext {
    /// Increases each time the same context is learned again.
    pub version: u64,
    /// Hash of the context text this was learned from.
    pub context_hash: ContextHash,
    pub program: ProgramRef,
    /// `ModelInfo::fingerprint` of the model that wrote it.
    pub model_fingerprint: String,
    /// `ModelInfo::name`, for people.
    pub model_name: String,
    /// The drafts, in order.
    pub drafts: Vec<Draft>,
    /// The text the answerer sees: the drafts combined.
    pub text: String,
    /// The drafts' structured forms merged, when the program writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<crate::LearnedDocument>,
    /// Seconds since the Unix epoch when it was completed.
    pub created_at: u64,
}

/// Whether a learned context may be served as current for a context and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    Current,
    /// Learned from other text (the context changed since).
    ContextChanged {
        learned_from: ContextHash,
        now: ContextHash,
    },
    /// Written by another model; still usable, but say so.
    OtherModel {
        learned_with: String,
        now: String,
    },
}

impl LearnedContext {
    /// Sleep-time usage summed over all drafts.
    pub fn total_usage(&self) -> Usage {
        self.drafts
            .iter()
            .fold(Usage::default(), |acc, d| acc + d.stats.usage)
    }

    /// Whether this may be served as current for `context` on `model`.
    pub fn freshness(&self, context: &Context, model: &ModelInfo) -> Freshness {
        if &self.context_hash != context.hash() {
            Freshness::ContextChanged {
                learned_from: self.context_hash.clone(),
                now: context.hash().clone(),
            }
        } else if self.model_fingerprint != model.fingerprint {
            Freshness::OtherModel {
                learned_with: self.model_name.clone(),
                now: model.name.clone(),
            }
        } else {
            Freshness::Current
        }
    }

    /// Refuse a learned context that was learned from other text.
    pub fn ensure_current_for(&self, context: &Context) -> Result<(), EngineError> {
        if &self.context_hash == context.hash() {
            Ok(())
        } else {
            Err(EngineError::new(
                EngineErrorKind::Stale,
                format!(
                    "learned context v{} was learned from context {} but the context is now {}: run sleep again (or allow stale use explicitly)",
                    self.version,
                    self.context_hash.short(),
                    context.hash().short()
                ),
            ))
        }
    }

    /// Read a learned context written by [`LearnedContext::save`].
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|e| {
            EngineError::io(format!("cannot read learned context {}", path.display()), e)
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::new(
                EngineErrorKind::Io,
                format!("{} is not a learned-context file: {e}", path.display()),
            )
        })
    }

    /// Write atomically: a temporary file in the same directory, then a rename, so a reader
    /// never sees half a file and an interrupted write leaves the old one intact.
    pub fn save(&self, path: &Path) -> Result<(), EngineError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| {
            EngineError::new(
                EngineErrorKind::Io,
                format!("cannot encode learned context: {e}"),
            )
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, json)
            .map_err(|e| EngineError::io(format!("cannot write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            EngineError::io(
                format!("cannot move learned context into {}", path.display()),
                e,
            )
        })
    }
}
