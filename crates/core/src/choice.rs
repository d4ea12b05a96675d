//! The sleep programs this engine ships, chosen by name: the one list the CLI, the server and
//! the benchmark share, so a new program is added in one place.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AidedConfig, AidedProgram, Combine, RethinkConfig, RethinkProgram, SleepProgram};

/// A shipped sleep program.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramChoice {
    /// The paper's: the model rewrites a prose memory block.
    #[default]
    Rethink,
    /// Program-aided: the model writes named expressions, the engine computes every value.
    Aided,
    /// Program-aided, plus the likely questions predicted and solved step by step, with the
    /// solutions' arithmetic redone by the engine.
    AidedSolve,
    /// Program-aided with solved likely questions, plus open questions: the likely questions
    /// that bring numbers of their own, written as checked steps over named inputs that test
    /// time binds.
    AidedOpen,
}

/// The settings the shipped programs take. Serialised flat, so that a service's or a
/// benchmark's configuration can embed it without changing its own field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramSettings {
    /// Rethink: most memory rewrites.
    pub max_rethinks: u32,
    /// Aided: rounds in which failing expressions go back to the model.
    pub repair_rounds: u32,
    /// AidedSolve: questions predicted and solved (absent in configurations written before
    /// the program existed).
    #[serde(default = "default_solve_questions")]
    pub solve_questions: u32,
    /// AidedSolve: solutions per question, the majority value kept (1: greedy only).
    #[serde(default = "default_solve_samples")]
    pub solve_samples: u32,
    /// AidedOpen: most open questions kept.
    #[serde(default = "default_open_questions")]
    pub open_questions: u32,
}

fn default_open_questions() -> u32 {
    ProgramSettings::default().open_questions
}

fn default_solve_questions() -> u32 {
    ProgramSettings::default().solve_questions
}

fn default_solve_samples() -> u32 {
    ProgramSettings::default().solve_samples
}

impl Default for ProgramSettings {
    fn default() -> Self {
        Self {
            max_rethinks: RethinkConfig::default().max_rethinks,
            repair_rounds: 2,
            solve_questions: 2,
            solve_samples: 1,
            open_questions: 3,
        }
    }
}

impl ProgramChoice {
    pub const ALL: [ProgramChoice; 4] = [
        ProgramChoice::Rethink,
        ProgramChoice::Aided,
        ProgramChoice::AidedSolve,
        ProgramChoice::AidedOpen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProgramChoice::Rethink => "rethink",
            ProgramChoice::Aided => "aided",
            ProgramChoice::AidedSolve => "aided-solve",
            ProgramChoice::AidedOpen => "aided-open",
        }
    }

    /// The program, configured.
    pub fn build(self, settings: &ProgramSettings) -> Box<dyn SleepProgram> {
        let aided = |solve_questions, open_questions| {
            Box::new(AidedProgram::new(AidedConfig {
                repair_rounds: settings.repair_rounds,
                solve_questions,
                solve_samples: settings.solve_samples,
                open_questions,
                ..AidedConfig::default()
            }))
        };
        match self {
            ProgramChoice::Rethink => Box::new(RethinkProgram::new(RethinkConfig {
                max_rethinks: settings.max_rethinks,
                ..RethinkConfig::default()
            })),
            ProgramChoice::Aided => aided(0, 0),
            ProgramChoice::AidedSolve => aided(settings.solve_questions.max(1), 0),
            ProgramChoice::AidedOpen => aided(
                settings.solve_questions.max(1),
                settings.open_questions.max(1),
            ),
        }
    }

    /// Whether the program writes a structured document (quantities), rather than prose.
    pub fn is_structured(self) -> bool {
        !matches!(self, ProgramChoice::Rethink)
    }

    /// How k drafts are combined: structured drafts merge quantity by quantity.
    pub fn combine(self) -> Combine {
        if self.is_structured() {
            Combine::Merge
        } else {
            Combine::Concatenate
        }
    }
}

impl fmt::Display for ProgramChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProgramChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "rethink" | "paper" => Ok(Self::Rethink),
            "aided" | "program" => Ok(Self::Aided),
            "aided-solve" | "aided_solve" | "solve" => Ok(Self::AidedSolve),
            "aided-open" | "aided_open" | "open" => Ok(Self::AidedOpen),
            other => Err(format!(
                "unknown sleep program {other:?} (one of: {})",
                Self::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_build_the_named_program() {
        let settings = ProgramSettings::default();
        for choice in ProgramChoice::ALL {
            assert_eq!(choice.name().parse::<ProgramChoice>(), Ok(choice));
            let json = serde_json::to_string(&choice).expect("json");
            assert_eq!(json, format!("\"{}\"", choice.name()));
            let id = choice.build(&settings).id();
            let expected = if choice == ProgramChoice::Rethink {
                "rethink"
            } else {
                "aided"
            };
            assert_eq!(id.name, expected);
            let solves = matches!(choice, ProgramChoice::AidedSolve | ProgramChoice::AidedOpen);
            assert_eq!(id.params.contains("solve_questions=2"), solves, "{id:?}");
            assert_eq!(
                id.params.contains("open_questions=3"),
                choice == ProgramChoice::AidedOpen,
                "{id:?}"
            );
        }
        let err = "magic".parse::<ProgramChoice>().expect_err("unknown");
        assert!(
            err.contains("rethink, aided, aided-solve, aided-open"),
            "{err}"
        );
    }
}
