//! The sleep-time compute benchmark harness: datasets with stateful context/question
//! splits (GSM-Symbolic, GSM8K, AIME, and our own GSM-Symbolic template generator), and
//! later the experiment runner, metrics and reports.
//!
//! Data licences matter here: GSM-Symbolic is CC BY-NC-ND 4.0, so this crate only reads it
//! from the shared data folder ([`datasets::data_dir`]) and derives every view in memory.

pub mod datasets;
