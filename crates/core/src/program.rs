use async_trait::async_trait;
use sleeptime_model::ModelBackend;

use crate::{Context, Draft, EngineError, ProgramRef};

/// Limits on one sleep run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SleepBudget {
    /// Most completion tokens per model call.
    pub max_tokens_per_step: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Seed for sampled runs.
    pub seed: Option<u64>,
}

impl Default for SleepBudget {
    fn default() -> Self {
        Self {
            max_tokens_per_step: 768,
            temperature: 0.0,
            seed: None,
        }
    }
}

/// Something that happened during sleep time, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub enum SleepEvent {
    /// A model call is starting (`step` counts from 1).
    StepStarted { draft: usize, step: u32 },
    /// A model call finished with this many completion tokens.
    StepFinished {
        draft: usize,
        step: u32,
        completion_tokens: u64,
        action: &'static str,
    },
    /// A draft is complete.
    DraftFinished { draft: usize },
}

/// Receives [`SleepEvent`]s. Implementations must be cheap: they run inline.
pub trait SleepProgress: Send + Sync {
    fn event(&self, event: SleepEvent);
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SleepProgress for NoProgress {
    fn event(&self, _event: SleepEvent) {}
}

/// `S(c) -> c'`: a way of spending idle compute on a context before any query arrives.
#[async_trait]
pub trait SleepProgram: Send + Sync + std::fmt::Debug {
    /// Name, version and output-relevant settings; stored with every learned context.
    fn id(&self) -> ProgramRef;

    /// Produce one draft of learned text about `context`.
    async fn run(
        &self,
        context: &Context,
        model: &dyn ModelBackend,
        budget: SleepBudget,
        draft_index: usize,
        progress: &dyn SleepProgress,
    ) -> Result<Draft, EngineError>;
}
