//! Program-aided answering at test time: the model writes the solution as named
//! expressions ending in `answer = ...`, and the engine computes it exactly. Used as the fair
//! test-time-only baseline for program-aided sleep time (same calculator, no sleep time), so a
//! gain measures when the work is done, not a tool only one side had.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sleeptime_calc::{evaluate, parse_program};
use sleeptime_model::{ChatRequest, Message, ModelBackend, Usage};

use crate::{EngineError, EngineErrorKind};

pub const SOLVE_SYSTEM: &str = "\
Solve the question about the situation by writing a small program a computer will evaluate exactly.
One definition per line: name = expression  # meaning. Use only numbers, names, + - * / ( ), min, max and round.
Never write the result of a calculation yourself. The last line must be: answer = <expression>
No prose, no print.";

/// A program-aided answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramAnswer {
    pub program: String,
    pub number: Option<f64>,
    pub usage: Usage,
    pub latency: f64,
    pub error: Option<String>,
}

/// Answer `question` about `context` (and optionally a learned context) with a program.
pub async fn solve_with_program(
    model: &dyn ModelBackend,
    context: &str,
    learned: Option<&str>,
    question: &str,
    max_tokens: u32,
) -> Result<ProgramAnswer, EngineError> {
    if question.trim().is_empty() {
        return Err(EngineError::new(EngineErrorKind::EmptyQuestion, "the question is empty"));
    }
    let started = Instant::now();
    let mut system = SOLVE_SYSTEM.to_owned();
    if let Some(learned) = learned {
        system.push_str("\nYou may reuse these quantities computed earlier (copy a line to use its name):\n");
        system.push_str(learned);
    }
    system.push_str("\n\nSituation:\n");
    system.push_str(context.trim());
    let request = ChatRequest::new(vec![Message::system(system), Message::user(format!("Question: {}", question.trim()))], max_tokens);
    let completion = model.complete(&request).await?;
    let mut program_text = completion.text.clone();
    if let Some(learned) = learned {
        // Lines of the learned context are valid definitions the program may refer to.
        let defs: Vec<String> = learned
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .filter_map(|l| l.split_once(" = ").map(|(name, rest)| (name.to_owned(), rest)))
            .map(|(name, rest)| {
                let value = rest.split("  (").next().unwrap_or(rest).rsplit(" = ").next().unwrap_or(rest);
                format!("{name} = {value}")
            })
            .collect();
        let program = parse_program(&program_text);
        let defined: Vec<&str> = program.statements.iter().map(|s| s.name.as_str()).collect();
        let missing: Vec<String> = defs.into_iter().filter(|d| !defined.iter().any(|n| d.starts_with(&format!("{n} ")))).collect();
        program_text = format!("{}\n{}", missing.join("\n"), program_text);
    }
    let eval = evaluate(&parse_program(&program_text));
    let number = eval.get("answer").map(sleeptime_calc::Value::to_f64);
    let error = if number.is_none() {
        Some(eval.errors.iter().find(|e| e.name == "answer").map_or_else(|| "no `answer` line".to_owned(), |e| e.error.to_string()))
    } else {
        None
    };
    Ok(ProgramAnswer { program: completion.text, number, usage: completion.usage, latency: started.elapsed().as_secs_f64(), error })
}
