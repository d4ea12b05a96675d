//! The test-time answerer `T_b(q, c')`: a verbosity level, a token budget, and budget
//! forcing, with usage and latency reported for every answer.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sleeptime_model::{ChatRequest, FinishReason, Message, ModelBackend, PrefixState, Usage};

use crate::{parse, prompts, EngineError, EngineErrorKind};

/// The paper's verbosity levels: 0 (one sentence) to 4 (step-by-step, double-checking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verbosity(u8);

impl Verbosity {
    pub const MAX: u8 = 4;

    pub fn new(level: u8) -> Result<Self, EngineError> {
        if level > Self::MAX {
            return Err(EngineError::new(
                EngineErrorKind::InvalidConfig,
                format!("verbosity must be 0 to {}, got {level}", Self::MAX),
            ));
        }
        Ok(Self(level))
    }

    pub fn level(self) -> u8 {
        self.0
    }
}

/// Cap the reasoning at the budget, then force the final answer (s1-style budget forcing,
/// for any model that accepts an assistant prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetForcing {
    /// Tokens allowed for the forced final answer.
    pub answer_tokens: u32,
}

impl Default for BudgetForcing {
    fn default() -> Self {
        Self { answer_tokens: 16 }
    }
}

/// How to answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnswerConfig {
    pub verbosity: Verbosity,
    /// Most completion tokens for the reasoning and answer.
    pub max_tokens: u32,
    /// When set, a reply cut off by `max_tokens` is completed with a forced final answer.
    pub budget_forcing: Option<BudgetForcing>,
    pub temperature: f32,
    pub seed: Option<u64>,
    /// Serve the part before the question from a prepared prefix state when there is one.
    /// Off only to measure the cost of prefilling `c + c'` again.
    pub reuse_prefix: bool,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            verbosity: Verbosity(0),
            max_tokens: 64,
            budget_forcing: Some(BudgetForcing::default()),
            temperature: 0.0,
            seed: None,
            reuse_prefix: true,
        }
    }
}

/// What the answering model sees. Any part may be absent: `learned` absent is the
/// test-time-only baseline, `context` absent is `c' + q`, `question` absent is the paper's
/// context-only ablation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerInput<'a> {
    pub context: Option<&'a str>,
    pub learned: Option<&'a str>,
    pub question: Option<&'a str>,
}

/// One answer with what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The whole reply (with the forced-answer suffix when budget forcing ran).
    pub text: String,
    /// The parsed final number.
    pub number: Option<f64>,
    /// Test-time usage, both calls when budget forcing ran.
    pub usage: Usage,
    /// Seconds to the first generated token.
    pub time_to_first_token: f64,
    /// Seconds from the call to the final token.
    pub latency: f64,
    /// Whether the reasoning hit the token cap.
    pub hit_cap: bool,
    /// Whether the final answer was forced.
    pub forced: bool,
}

/// Answers questions with a fixed configuration.
#[derive(Debug, Clone, Copy)]
pub struct Answerer<'m> {
    model: &'m dyn ModelBackend,
    config: AnswerConfig,
}

const NO_QUESTION: &str =
    "No question has been asked yet. Answer the question this situation most likely leads to.";

impl<'m> Answerer<'m> {
    pub fn new(model: &'m dyn ModelBackend, config: AnswerConfig) -> Self {
        Self { model, config }
    }

    pub fn config(&self) -> &AnswerConfig {
        &self.config
    }

    /// The messages before the question: what a prefix state can hold.
    pub fn prefix_messages(&self, input: &AnswerInput<'_>) -> Vec<Message> {
        let mut system =
            prompts::answer_system(self.config.verbosity.level(), input.learned.is_some());
        if let Some(learned) = input.learned {
            system.push_str("\n\nMemory block (rethink_memory_block):\n");
            system.push_str(learned.trim());
        }
        if let Some(context) = input.context {
            system.push_str("\n\nSituation:\n");
            system.push_str(context.trim());
        }
        vec![Message::system(system)]
    }

    /// The full conversation for `input`.
    pub fn messages(&self, input: &AnswerInput<'_>) -> Result<Vec<Message>, EngineError> {
        let question = match input.question {
            Some(q) if q.trim().is_empty() => {
                return Err(EngineError::new(
                    EngineErrorKind::EmptyQuestion,
                    "the question is empty",
                ))
            }
            Some(q) => format!("Question: {}", q.trim()),
            None => NO_QUESTION.to_owned(),
        };
        let mut messages = self.prefix_messages(input);
        messages.push(Message::user(question));
        Ok(messages)
    }

    /// Evaluate everything before the question once and keep its state, so that answers
    /// pay prefill only for the question. Call it when sleep time ends.
    pub async fn prepare(&self, input: &AnswerInput<'_>) -> Result<PrefixState, EngineError> {
        Ok(self
            .model
            .prepare_prefix(&self.prefix_messages(input))
            .await?)
    }

    /// Answer one question.
    pub async fn answer(&self, input: &AnswerInput<'_>) -> Result<Answer, EngineError> {
        let started = Instant::now();
        let messages = self.messages(input)?;
        let request = ChatRequest::new(messages, self.config.max_tokens).with_sampling(
            self.config.temperature,
            1.0,
            self.config.seed,
        );
        let request = ChatRequest {
            reuse_prefix: self.config.reuse_prefix,
            ..request
        };
        let first = self.model.complete(&request).await?;
        let ttft = first.time_to_first_token;
        let hit_cap = first.finish_reason == FinishReason::Length;
        let mut usage = first.usage;
        let mut text = first.text;
        let mut forced = false;
        if let (true, Some(forcing)) = (hit_cap, self.config.budget_forcing) {
            let prefix = format!("{}{}", text, prompts::FORCE_ANSWER);
            let mut force = request.clone();
            force.max_tokens = forcing.answer_tokens;
            force.stop = vec!["\n".into()];
            force.assistant_prefix = Some(prefix.clone());
            let tail = self.model.complete(&force).await?;
            usage += tail.usage;
            text = format!("{prefix}{}", tail.text);
            forced = true;
        }
        let number = parse::final_number(&text);
        Ok(Answer {
            text,
            number,
            usage,
            time_to_first_token: ttft.as_secs_f64(),
            latency: started.elapsed().max(Duration::ZERO).as_secs_f64(),
            hit_cap,
            forced,
        })
    }
}
