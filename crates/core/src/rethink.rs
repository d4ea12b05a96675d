//! The paper's sleep-time program: the model sees the context alone and rewrites a memory
//! block up to `max_rethinks` times, stopping when it signals it is done.

use std::time::Instant;

use async_trait::async_trait;
use sleeptime_model::{
    ChatRequest, Completion, FinishReason, Message, ModelBackend, TextProtocol, ToolSpec,
};

use crate::prompts;
use crate::{
    Context, Draft, EngineError, ProgramRef, SleepBudget, SleepEvent, SleepProgram, SleepProgress,
    SleepStats,
};

/// Settings of [`RethinkProgram`].
#[derive(Debug, Clone, PartialEq)]
pub struct RethinkConfig {
    /// Most memory rewrites (the paper: 10).
    pub max_rethinks: u32,
    /// Longest memory block kept, in characters (the paper: 5,000).
    pub max_memory_chars: usize,
    /// Protocol override; `None` takes the backend's preference.
    pub protocol: Option<TextProtocol>,
}

impl Default for RethinkConfig {
    fn default() -> Self {
        Self {
            max_rethinks: 10,
            max_memory_chars: 5_000,
            protocol: None,
        }
    }
}

/// The paper-faithful rethink / finish sleep program.
#[derive(Debug, Clone, Default)]
pub struct RethinkProgram {
    config: RethinkConfig,
}

/// What one model reply asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Overwrite the block; `finish` when the same reply also signalled the end.
    Rethink {
        memory: String,
        finish: bool,
    },
    Finish,
    /// Neither form: the text that came back.
    Malformed,
}

impl RethinkProgram {
    pub fn new(config: RethinkConfig) -> Self {
        Self { config }
    }

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "rethink_memory".into(),
                description: "Think about the situation and store expanded inferences and pre-computations in the memory block. Call again to add or double-check.".into(),
                parameters_json: prompts::RETHINK_TOOL_SCHEMA.into(),
            },
            ToolSpec {
                name: "finish_rethinking_memory".into(),
                description: "Call only once every useful inference has been made.".into(),
                parameters_json: r#"{"type":"object","properties":{}}"#.into(),
            },
        ]
    }
}

const OPEN: &str = "<rethink_memory>";
const CLOSE: &str = "</rethink_memory>";

/// Read a plain-text reply. Lenient where small models slip: a missing closing tag (the cap
/// cut it off), tags in other case, the call written out as text, stray prose around tags.
pub(crate) fn parse_tagged(text: &str) -> Action {
    let lower = text.to_ascii_lowercase();
    let finish =
        lower.contains("<finish_rethinking_memory") || lower.contains("finish_rethinking_memory()");
    if let Some(start) = lower.find(OPEN) {
        let body_start = start + OPEN.len();
        let body_end = lower[body_start..]
            .find(CLOSE)
            .map_or(text.len(), |i| body_start + i);
        let memory = text[body_start..body_end].trim().to_owned();
        if !memory.is_empty() {
            return Action::Rethink { memory, finish };
        }
    } else if let Some(memory) = parse_call_as_text(text) {
        return Action::Rethink { memory, finish };
    }
    if finish {
        Action::Finish
    } else {
        Action::Malformed
    }
}

/// `rethink_memory(new_memory="...")` or a JSON object with `new_memory`, written as text.
fn parse_call_as_text(text: &str) -> Option<String> {
    if let Some(i) = text.find("\"new_memory\"") {
        // Try each opening brace before the key, innermost first; the JSON may be nested
        // ({"name": ..., "arguments": {...}}) and followed by prose.
        return text[..i].rmatch_indices('{').find_map(|(start, _)| {
            let value = serde_json::Deserializer::from_str(&text[start..])
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()?;
            find_new_memory(&value)
        });
    }
    let i = text.find("rethink_memory(")?;
    let rest = &text[i + "rethink_memory(".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix("new_memory")
        .map_or(rest, |r| {
            r.trim_start().trim_start_matches('=').trim_start()
        });
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = rest[1..].trim_start_matches(['"', '\'']);
    let end = body.rfind(quote).unwrap_or(body.len());
    Some(body[..end].trim().to_owned()).filter(|s| !s.is_empty())
}

fn find_new_memory(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map
            .get("new_memory")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or_else(|| map.values().find_map(find_new_memory)),
        _ => None,
    }
}

/// Read a tool-calling reply; fall back to the tagged reading of its text.
pub(crate) fn parse_tools(completion: &Completion) -> Action {
    let mut finish = false;
    let mut memory = None;
    for call in &completion.tool_calls {
        match call.name.as_str() {
            "rethink_memory" => {
                let args: serde_json::Value =
                    serde_json::from_str(&call.arguments).unwrap_or_default();
                if let Some(m) = args
                    .get("new_memory")
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    memory = Some(m.to_owned());
                }
            }
            "finish_rethinking_memory" => finish = true,
            _ => {}
        }
    }
    match (memory, finish) {
        (Some(memory), finish) => Action::Rethink { memory, finish },
        (None, true) => Action::Finish,
        (None, false) => parse_tagged(&completion.text),
    }
}

/// Drop verbatim repeats of earlier lines (small models loop) and cap the length.
pub(crate) fn tidy_memory(memory: &str, max_chars: usize) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for line in memory.lines() {
        let key = line.trim();
        if !key.is_empty() && !seen.insert(key.to_owned()) {
            continue;
        }
        if out.len() + line.len() + 1 > max_chars {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

#[async_trait]
impl SleepProgram for RethinkProgram {
    fn id(&self) -> ProgramRef {
        ProgramRef {
            name: "rethink".into(),
            version: 2,
            params: format!(
                "max_rethinks={},max_chars={}",
                self.config.max_rethinks, self.config.max_memory_chars
            ),
        }
    }

    async fn run(
        &self,
        context: &Context,
        model: &dyn ModelBackend,
        budget: SleepBudget,
        draft_index: usize,
        progress: &dyn SleepProgress,
    ) -> Result<Draft, EngineError> {
        let started = Instant::now();
        let protocol = self.config.protocol.unwrap_or(model.info().protocol);
        let tagged = protocol == TextProtocol::Tagged;
        let protocol_text = if tagged {
            prompts::SLEEP_TAGGED_PROTOCOL
        } else {
            prompts::SLEEP_TOOLS_PROTOCOL
        };
        let mut messages = vec![
            Message::system(format!("{}\n\n{protocol_text}", prompts::SLEEP_SYSTEM)),
            Message::user(format!("{} {}", prompts::SLEEP_TRIGGER, context.text())),
        ];
        let mut memory = String::new();
        let mut stats = SleepStats::default();
        let mut malformed_in_a_row = 0;
        // Each rewrite is a step; a malformed reply also costs a step, so the loop is bounded
        // by twice the rewrite limit however the model behaves.
        while stats.rewrites < self.config.max_rethinks
            && stats.steps < 2 * self.config.max_rethinks
        {
            stats.steps += 1;
            progress.event(SleepEvent::StepStarted {
                draft: draft_index,
                step: stats.steps,
            });
            let mut request = ChatRequest::new(messages.clone(), budget.max_tokens_per_step)
                .with_sampling(
                    budget.temperature,
                    1.0,
                    budget.seed.map(|s| s + u64::from(stats.steps)),
                );
            if !tagged {
                request.tools = Self::tools();
            } else {
                request.stop = vec![CLOSE.to_owned()];
            }
            let completion = model.complete(&request).await?;
            stats.usage += completion.usage;
            let mut action = if tagged {
                parse_tagged(&completion.text)
            } else {
                parse_tools(&completion)
            };
            if let Action::Malformed = action {
                // A model that ignores the tags on its first turn usually still wrote notes:
                // keep them rather than learn nothing.
                if memory.is_empty()
                    && !completion.text.trim().is_empty()
                    && completion.finish_reason != FinishReason::ToolCalls
                {
                    action = Action::Rethink {
                        memory: completion.text.trim().to_owned(),
                        finish: false,
                    };
                    stats.malformed_replies += 1;
                }
            }
            let label = match &action {
                Action::Rethink { .. } => "rethink",
                Action::Finish => "finish",
                Action::Malformed => "malformed",
            };
            progress.event(SleepEvent::StepFinished {
                draft: draft_index,
                step: stats.steps,
                completion_tokens: completion.usage.completion_tokens,
                action: label,
            });
            // Echo the reply back in the form the protocol expects, so the next turn sees a
            // well-formed history even when the model slipped.
            match action {
                Action::Rethink {
                    memory: new,
                    finish,
                } => {
                    malformed_in_a_row = 0;
                    memory = tidy_memory(&new, self.config.max_memory_chars);
                    stats.rewrites += 1;
                    if finish {
                        stats.finished = true;
                        break;
                    }
                    let note =
                        prompts::sleep_continue(stats.rewrites, self.config.max_rethinks, tagged);
                    // Each write replaces the whole block, so earlier versions (and slips
                    // before this write) carry nothing the next turn needs; keeping them
                    // would grow the prompt by a block per rewrite and overflow a small window.
                    messages.truncate(2);
                    if tagged {
                        messages.push(Message::assistant(format!("{OPEN}\n{memory}\n{CLOSE}")));
                        messages.push(Message::user(note));
                    } else {
                        let call_id = completion
                            .tool_calls
                            .first()
                            .map_or_else(|| format!("call_{}", stats.steps), |c| c.id.clone());
                        let mut reply = Message::assistant(String::new());
                        reply.tool_calls = vec![sleeptime_model::ToolCall {
                            id: call_id.clone(),
                            name: "rethink_memory".into(),
                            arguments: serde_json::json!({ "new_memory": memory, "target_block_label": "rethink_memory_block" }).to_string(),
                        }];
                        messages.push(reply);
                        messages.push(Message::tool(call_id, note));
                    }
                }
                Action::Finish => {
                    stats.finished = true;
                    break;
                }
                Action::Malformed => {
                    stats.malformed_replies += 1;
                    malformed_in_a_row += 1;
                    if malformed_in_a_row >= 2 {
                        break;
                    }
                    messages.push(Message::assistant(completion.text.clone()));
                    messages.push(Message::user(prompts::SLEEP_MALFORMED));
                }
            }
        }
        stats.seconds = started.elapsed().as_secs_f64();
        progress.event(SleepEvent::DraftFinished { draft: draft_index });
        Ok(Draft {
            text: memory,
            seed: budget.seed,
            stats,
            document: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_reply_with_body() {
        let a = parse_tagged("Sure.\n<rethink_memory>\nx = 12 * 3 = 36\n</rethink_memory>");
        assert_eq!(
            a,
            Action::Rethink {
                memory: "x = 12 * 3 = 36".into(),
                finish: false
            }
        );
    }

    #[test]
    fn tagged_reply_cut_off_keeps_body() {
        let a = parse_tagged("<RETHINK_MEMORY>total = 5\nmore");
        assert_eq!(
            a,
            Action::Rethink {
                memory: "total = 5\nmore".into(),
                finish: false
            }
        );
    }

    #[test]
    fn finish_and_rethink_in_one_reply() {
        let a = parse_tagged("<rethink_memory>a</rethink_memory>\n<finish_rethinking_memory/>");
        assert_eq!(
            a,
            Action::Rethink {
                memory: "a".into(),
                finish: true
            }
        );
        assert_eq!(
            parse_tagged("  <finish_rethinking_memory/> "),
            Action::Finish
        );
        assert_eq!(
            parse_tagged("I'll call finish_rethinking_memory() now"),
            Action::Finish
        );
    }

    #[test]
    fn empty_body_is_not_a_rewrite() {
        assert_eq!(
            parse_tagged("<rethink_memory>  </rethink_memory>"),
            Action::Malformed
        );
        assert_eq!(parse_tagged("just some prose"), Action::Malformed);
    }

    #[test]
    fn calls_written_as_text() {
        assert_eq!(
            parse_tagged(r#"rethink_memory(new_memory="q = 4")"#),
            Action::Rethink {
                memory: "q = 4".into(),
                finish: false
            }
        );
        assert_eq!(
            parse_tagged(r#"{"name": "rethink_memory", "arguments": {"new_memory": "k = 2"}}"#),
            Action::Rethink {
                memory: "k = 2".into(),
                finish: false
            }
        );
    }

    #[test]
    fn tidy_drops_repeats_and_caps() {
        assert_eq!(tidy_memory("a\nb\na\n\nb\nc", 100), "a\nb\n\nc");
        assert_eq!(tidy_memory("aaaa\nbbbb\ncccc", 10), "aaaa\nbbbb");
    }
}
