//! The sleep-time compute benchmark harness (`sleeptime bench`).
//!
//! - [`datasets`]: problems with stateful context/question splits (GSM-Symbolic, GSM8K,
//!   AIME, our GSM-Symbolic template generator, any GSM-format JSONL);
//! - [`spec`]: what an experiment runs (dataset, conditions, budgets, sleep programs) and
//!   the presets of the committed runs;
//! - [`runner`]: runs a spec through the disk call cache and writes a run folder
//!   (`manifest.json`, `results.jsonl`), resuming where an earlier invocation stopped;
//! - [`multiquery`]: generated, verified extra questions per context (amortisation);
//! - [`metrics`]: accuracy with Wilson intervals, tokens, latency, Pareto curves,
//!   iso-accuracy ratios, amortised cost, predictability bins, answer recall;
//! - [`report`] and [`plots`]: `report.md` and PNG/SVG figures for a run folder;
//! - [`progress`]: progress bars that print plain lines when stderr is a log;
//! - [`cli`]: the command-line arguments of `sleeptime bench`;
//! - [`BenchError`]: every failure, with a [`BenchErrorKind`] to branch on.
//!
//! Data licences matter here: GSM-Symbolic is CC BY-NC-ND 4.0, so this crate only reads it
//! from the shared data folder ([`datasets::data_dir`]) and derives every view in memory.
//! Run folders hold ids and numbers only; text derived from the data (learned contexts,
//! generated questions) stays in the gitignored cache folder.

pub mod backends;
pub mod cli;
pub mod datasets;
mod error;
pub mod metrics;
pub mod multiquery;
pub mod plots;
pub mod progress;
pub mod record;
pub mod report;
pub mod runner;
pub mod spec;

pub use error::{BenchError, BenchErrorKind, Result};
