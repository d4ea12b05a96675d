//! GSM-Symbolic template instantiation.
//!
//! Apple released the templates (`templates/{symbolic,p1,p2}/NNNN.json`) and the generated
//! P2 rows, but not the generator nor the main/P1 rows we can reach. This module
//! instantiates templates itself:
//!
//! - [`expr`]: a parser for the Python-expression subset the templates use;
//! - [`value`] / [`eval`]: values with Python's `int`/`float`/`Fraction` semantics and the
//!   helper functions the templates call (`sample`, `range`, `is_int`, `divides`, ...);
//! - [`words`]: our own name, item and fraction lists (Apple's are unpublished);
//! - [`template`]: parsing of the template files;
//! - [`generator`]: seeded sampling with the `#conditions`, rendering of the question and the
//!   worked solution, and [`Generator`] which turns templates into [`crate::datasets::Problem`]s;
//! - [`recover`]: reading variable values back out of released rows, to check our evaluator
//!   against Apple's answers.

pub mod eval;
pub mod expr;
pub mod generator;
pub mod recover;
pub mod template;
pub mod value;
pub mod words;

use serde::{Deserialize, Serialize};
use std::fmt;

pub use generator::{
    AnswerPolicy, CoverageReport, GenerationReport, Generator, GeneratorOptions, Instance,
    InstantiateError, TemplateIssue,
};
pub use recover::{check_release, CheckOutcome, ReleaseReport, RowCheck};
pub use template::Template;

/// The three template sets (and difficulty levels) of GSM-Symbolic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The main set (`templates/symbolic`): GSM8K questions made symbolic.
    Symbolic,
    /// P1: one extra clause.
    P1,
    /// P2: two extra clauses.
    P2,
}

impl Split {
    /// Folder name under `templates/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Split::Symbolic => "symbolic",
            Split::P1 => "p1",
            Split::P2 => "p2",
        }
    }

    pub const ALL: [Split; 3] = [Split::Symbolic, Split::P1, Split::P2];
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}
