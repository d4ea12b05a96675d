//! Benchmark datasets, split into a *context* (given to the model ahead of time, during
//! sleep) and a *question* (asked at test time), as in the Sleep-time Compute paper.
//!
//! - GSM-Symbolic P2 as released by Apple ([`load_gsm_p2`]), GSM8K test ([`load_gsm8k`]),
//!   any JSONL in the same format ([`load_jsonl`]);
//! - instances generated from the GSM-Symbolic templates ([`symbolic::Generator`]), which is
//!   how we get main-set and P1 problems, whose released files are not available;
//! - AIME 2024 and 2025 ([`load_aime`]).
//!
//! GSM-Symbolic is CC BY-NC-ND 4.0: it is read from the shared data folder at run time and
//! every derived view (splits, samples, generated instances) is built in memory. Nothing
//! here writes data files.

pub mod aime;
pub mod answer;
mod error;
pub mod gsm;
pub mod rng;
pub mod split;
pub mod symbolic;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use aime::{load_aime, split_aime};
pub use answer::{parse_gsm_answer, GsmAnswer};
pub use error::DatasetError;
pub use gsm::{load_gsm8k, load_gsm_p2, load_jsonl, sample_stratified};
pub use split::{split_gsm, SplitMode};
pub use symbolic::Split;

/// Environment variable that overrides where the shared data folder is.
pub const DATA_DIR_ENV: &str = "SLEEPTIME_DATA_DIR";

/// Where the benchmark data lives: `$SLEEPTIME_DATA_DIR` if set; else `shared/data` beside
/// the checkout this binary was built from, if it is there; else `../shared/data` from the
/// current directory (a binary copied or installed elsewhere, run from a checkout).
pub fn data_dir() -> PathBuf {
    resolve_data_dir(std::env::var_os(DATA_DIR_ENV))
}

/// [`data_dir`] with the environment value passed in.
pub fn resolve_data_dir(env_value: Option<std::ffi::OsString>) -> PathBuf {
    if let Some(dir) = env_value.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let beside_cwd = PathBuf::from("../shared/data");
    if !built.is_dir() && beside_cwd.is_dir() {
        return beside_cwd;
    }
    built
}

/// Which benchmark a problem comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// A row released by Apple (only P2 is available to us).
    GsmSymbolic(Split),
    /// An instance generated here from a GSM-Symbolic template.
    GsmSymbolicGenerated(Split),
    /// GSM8K test.
    Gsm8k,
    Aime2024,
    Aime2025,
    /// Any other JSONL loaded with [`load_jsonl`].
    Custom,
}

/// One benchmark problem with its stateful split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Unique within its dataset, e.g. `p2/7-13`, `gsm8k/12`, `aime2024/I-3`,
    /// `gen-p1-s42/17-0`.
    pub id: String,
    /// What the model may see ahead of time (may be empty).
    pub context: String,
    /// What is asked at test time.
    pub question: String,
    /// Gold answer as a number.
    pub answer: f64,
    /// Gold answer as text, normalised like the paper's GSM grader (`$` and `,` removed,
    /// `.` trimmed from the ends): `"1234"`, `"32.5"`, `"45.0"`.
    pub answer_text: String,
    pub source: DatasetKind,
    /// GSM-Symbolic template id (`id` / `id_shuffled`), when there is one.
    pub template_id: Option<String>,
    /// The GSM-Symbolic template's question text with its `{var,default}` placeholders, as
    /// the template file writes it (the part of `question_annotated` before `#init:`), when
    /// the problem comes from a template that is available; `None` for other sources. Like
    /// every GSM-Symbolic text it is read at run time and never written to committed files.
    #[serde(default)]
    pub template: Option<String>,
    /// The full original problem text.
    pub full_text: String,
    /// A worked solution, when the source has one (GSM rows, generated instances).
    pub solution: Option<String>,
}

/// A named list of problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub problems: Vec<Problem>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problem with id `id`.
    pub fn get(&self, id: &str) -> Option<&Problem> {
        self.problems.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_default_and_override() {
        let d = resolve_data_dir(None);
        assert!(d.ends_with("shared/data"));
        assert_eq!(resolve_data_dir(Some("".into())), d);
        assert_eq!(
            resolve_data_dir(Some("/tmp/x".into())),
            PathBuf::from("/tmp/x")
        );
    }
}
