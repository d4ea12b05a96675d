//! Program-aided answering at test time: the model writes the solution as named
//! expressions ending in `answer = ...`, and the engine computes it exactly. Used as the fair
//! test-time-only baseline for program-aided sleep time (same calculator, no sleep time), so a
//! gain measures when the work is done, not a tool only one side had. At the lowest budgets the
//! program shrinks to one formula over the learned context's quantities: the question's last
//! step, computed exactly in a few tokens.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sleeptime_calc::{evaluate, parse_program};
use sleeptime_model::{ChatRequest, FinishReason, Message, ModelBackend, Usage};

use crate::open::definitions;
use crate::{EngineError, EngineErrorKind, LearnedDocument};

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
    /// The reply stopped at the token cap.
    #[serde(default)]
    pub hit_cap: bool,
}

pub const FORMULA_SYSTEM: &str = "\
Answer the question with one line that a computer evaluates exactly:
answer = <expression>
Use numbers from the situation and the question; allowed: + - * / ( ), min, max, round, floor, ceil.
Never write the result of a calculation yourself. Write nothing else.";

/// The formula prompt when `c'` holds open questions: the model may bind one's inputs.
pub const BIND_SYSTEM: &str = "\
Answer the question with lines a computer evaluates exactly.
If the question is one of the questions with open numbers below, write that question's input lines with the numbers from the question, then its answer line.
Otherwise write one line: answer = <expression>, using numbers from the question and names from the notes; allowed: + - * / ( ), min, max, round, floor, ceil.
Never write the result of a calculation yourself. Write nothing else.";

/// How the model writes its answer program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramStyle {
    /// Named lines ending in `answer = ...`: room for a whole solution (program-aided
    /// reasoning, PAL).
    Program,
    /// One line, `answer = <expression>`, over the question's numbers and the learned
    /// context's quantity names: the last step only, within the lowest test-time budgets.
    Formula,
}

impl ProgramStyle {
    fn system(self) -> &'static str {
        match self {
            ProgramStyle::Program => SOLVE_SYSTEM,
            ProgramStyle::Formula => FORMULA_SYSTEM,
        }
    }
}

/// Answer `question` about `context` (and optionally a learned context) with a program.
pub async fn solve_with_program(
    model: &dyn ModelBackend,
    context: &str,
    learned: Option<&str>,
    question: &str,
    max_tokens: u32,
) -> Result<ProgramAnswer, EngineError> {
    answer_with_program(
        model,
        ProgramStyle::Program,
        context,
        learned,
        question,
        max_tokens,
    )
    .await
}

/// Answer `question` with a program in `style`; the engine evaluates it, with the learned
/// context's quantities defined under their names (by value, as read from its text).
pub async fn answer_with_program(
    model: &dyn ModelBackend,
    style: ProgramStyle,
    context: &str,
    learned: Option<&str>,
    question: &str,
    max_tokens: u32,
) -> Result<ProgramAnswer, EngineError> {
    let definitions = learned.map(definitions_from_text).unwrap_or_default();
    let system = style.system();
    answer_over(
        model,
        style,
        system,
        context,
        learned,
        definitions,
        question,
        max_tokens,
    )
    .await
}

/// Answer `question` with a program in `style` over a structured `c'`: its quantities are
/// defined by their expressions (a number the question changes recomputes what depends on
/// it), and its open questions' checked steps are there for the model to bind their inputs.
pub async fn answer_with_document(
    model: &dyn ModelBackend,
    style: ProgramStyle,
    context: &str,
    doc: &LearnedDocument,
    question: &str,
    max_tokens: u32,
) -> Result<ProgramAnswer, EngineError> {
    let system = if style == ProgramStyle::Formula && !doc.open_questions.is_empty() {
        BIND_SYSTEM
    } else {
        style.system()
    };
    let text = doc.render();
    let learned = Some(text.as_str()).filter(|t| !t.trim().is_empty());
    answer_over(
        model,
        style,
        system,
        context,
        learned,
        definitions(doc),
        question,
        max_tokens,
    )
    .await
}

/// `- name = ... = value  (meaning)` lines of a rendered `c'` as `name = value` definitions.
fn definitions_from_text(learned: &str) -> Vec<(String, String)> {
    learned
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| {
            l.split_once(" = ")
                .map(|(name, rest)| (name.to_owned(), rest))
        })
        .map(|(name, rest)| {
            let value = rest
                .split("  (")
                .next()
                .unwrap_or(rest)
                .rsplit(" = ")
                .next()
                .unwrap_or(rest);
            (name.clone(), format!("{name} = {value}"))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn answer_over(
    model: &dyn ModelBackend,
    style: ProgramStyle,
    system_prompt: &str,
    context: &str,
    learned: Option<&str>,
    definitions: Vec<(String, String)>,
    question: &str,
    max_tokens: u32,
) -> Result<ProgramAnswer, EngineError> {
    if question.trim().is_empty() {
        return Err(EngineError::new(
            EngineErrorKind::EmptyQuestion,
            "the question is empty",
        ));
    }
    let started = Instant::now();
    let mut system = system_prompt.to_owned();
    if let Some(learned) = learned {
        system.push_str(match style {
            ProgramStyle::Program => "\nYou may reuse these quantities computed earlier (copy a line to use its name):\n",
            ProgramStyle::Formula => "\nNotes computed earlier (the name of a `- name = ... = value` line may be used in the expression):\n",
        });
        system.push_str(learned);
    }
    system.push_str("\n\nSituation:\n");
    system.push_str(context.trim());
    let request = ChatRequest::new(
        vec![
            Message::system(system),
            Message::user(format!("Question: {}", question.trim())),
        ],
        max_tokens,
    );
    let completion = model.complete(&request).await?;
    let mut program_text = completion.text.clone();
    if style == ProgramStyle::Formula
        && !parse_program(&program_text)
            .statements
            .iter()
            .any(|s| s.name == "answer")
    {
        // Small models often write the bare expression (`156 / 1560 * 100 = 10%`): the last
        // line is read as the answer's expression.
        let last = program_text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("```"));
        if let Some(line) = last {
            program_text = format!("{program_text}\nanswer = {line}");
        }
    }
    if !definitions.is_empty() {
        // The learned context's definitions the program may refer to; a name the program
        // defines itself (a number the question changes, an open question's input) is the
        // program's.
        let program = parse_program(&program_text);
        let defined: std::collections::HashSet<&str> =
            program.statements.iter().map(|s| s.name.as_str()).collect();
        let kept: Vec<&str> = definitions
            .iter()
            .filter(|(name, _)| !defined.contains(name.as_str()))
            .map(|(_, line)| line.as_str())
            .collect();
        program_text = format!("{}\n{}", kept.join("\n"), program_text);
    }
    let program = parse_program(&program_text);
    let formula_written = program
        .statements
        .iter()
        .any(|s| s.name == "answer" && s.expr.is_ok());
    let eval = evaluate(&program);
    let mut number = eval.get("answer").map(sleeptime_calc::Value::to_f64);
    if number.is_none() && style == ProgramStyle::Formula && !formula_written {
        // No formula at all ("The answer is 105."): the model answered directly, as the plain
        // answerer at the same budget would; its number counts, uncomputed. A formula that
        // fails (an undefined name) is not replaced by a number read from it.
        number = crate::parse::final_number(&completion.text);
    }
    let error = if number.is_none() {
        Some(
            eval.errors
                .iter()
                .find(|e| e.name == "answer")
                .map_or_else(|| "no `answer` line".to_owned(), |e| e.error.to_string()),
        )
    } else {
        None
    };
    Ok(ProgramAnswer {
        hit_cap: completion.finish_reason == FinishReason::Length,
        program: completion.text,
        number,
        usage: completion.usage,
        latency: started.elapsed().as_secs_f64(),
        error,
    })
}
