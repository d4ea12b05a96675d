//! The sleep-time engine: `S(c) -> c'` offline, then `T_b(q, c')` online with an explicit
//! budget.
//!
//! - [`Context`] is the text a model will be asked about; [`LearnedContext`] is what a
//!   [`SleepProgram`] wrote about it while no query was waiting, bound to the context's hash,
//!   the program and the model.
//! - [`RethinkProgram`] is the paper's sleep-time program (rewrite a memory block up to 10
//!   times, then finish); [`AidedProgram`] has the model write expressions the engine
//!   computes; [`ProgramChoice`] names the shipped programs; [`learn`] runs `k` drafts of any
//!   program and combines them.
//! - [`Answerer`] answers a question from `c`, `c'` or both at a verbosity level and token
//!   budget, with budget forcing, and reports usage and latency for every answer.
//!
//! Everything here talks to models through `sleeptime_model::ModelBackend`, so the engine is
//! tested on the scripted backend and runs unchanged on llama.cpp or an HTTP server.

mod aided;
mod answer;
mod choice;
mod context;
mod document;
mod error;
mod learn;
mod learned;
mod open;
pub mod parse;
mod pick;
mod program;
pub mod prompts;
mod rethink;
mod route;
mod solve;

pub use aided::{
    merge_documents, AidedConfig, AidedProgram, AIDED_SYSTEM, PREDICT_SYSTEM, TRANSLATE_SYSTEM,
};
pub use answer::{Answer, AnswerConfig, AnswerInput, Answerer, BudgetForcing, Verbosity};
pub use choice::{ProgramChoice, ProgramSettings};
pub use context::{Context, ContextHash};
pub use document::{AnticipatedQuestion, LearnedDocument, OpenQuestion, Quantity};
pub use error::{EngineError, EngineErrorKind};
pub use learn::{learn, Combine, LearnConfig};
pub use learned::{Draft, Freshness, LearnedContext, ProgramRef, SleepStats};
pub use open::{definitions, open_recall, OPEN_PREDICT_PREFIX, OPEN_PREDICT_SYSTEM};
pub use pick::{candidates, choose, Candidate, PickRule};
pub use program::{NoProgress, SleepBudget, SleepEvent, SleepProgram, SleepProgress};
pub use rethink::{RethinkConfig, RethinkProgram};
pub use route::{route, Route, RouteConfig};
pub use solve::{
    answer_with_document, answer_with_program, solve_with_program, ProgramAnswer, ProgramStyle,
    BIND_SYSTEM, FORMULA_SYSTEM, SOLVE_SYSTEM,
};
