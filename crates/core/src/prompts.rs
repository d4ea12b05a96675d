//! Prompt texts. The sleep-time and verbosity prompts follow the paper's (digest §7.1–7.3),
//! reworded, with two additions the local models need: a plain-text protocol for small
//! models that call tools unreliably, and "no code" (the Coder model otherwise writes Python
//! and invents its output).

/// Sleep-time system prompt, shared by both protocols (paper §7.2, AIME version: the block
/// is overwritten on each write, so everything useful must be copied forward).
pub const SLEEP_SYSTEM: &str = "\
You are Letta-Offline-Memory, an expert reasoning agent that thinks about a situation before anyone asks about it. \
You are given a situation; a question about it will come later, but you do not know it yet. \
Make as many useful inferences as you can: brainstorm the questions likely to be asked, and compute the quantities, \
intermediate results and reasoning that would let someone answer them quickly. \
You keep a memory block for the agent who will answer the question. Each time you rethink the memory, the block is \
overwritten with what you write, so copy forward everything still useful. Each rethink should add calculations, \
double-check earlier ones, and remove errors or unhelpful content. \
Show every calculation explicitly (for example: 12 * 35 = 420). Write plain text: no code, no LaTeX, no markdown tables.";

/// How the plain-text protocol is explained to the model.
pub const SLEEP_TAGGED_PROTOCOL: &str = "\
Reply in exactly one of two forms.
To rewrite the memory block, reply with the complete new block between tags:
<rethink_memory>
...the whole new memory block...
</rethink_memory>
When every useful inference has been made and checked, reply with only:
<finish_rethinking_memory/>";

/// How the tool protocol is explained to the model.
pub const SLEEP_TOOLS_PROTOCOL: &str = "\
Call rethink_memory with the complete new memory block as many times as useful. \
Call finish_rethinking_memory once every useful inference has been made and checked.";

/// The paper's trigger message, followed by the context.
pub const SLEEP_TRIGGER: &str = "[trigger_rethink_memory] New situation:";

/// After a rewrite: ask for another pass or the finish signal.
pub fn sleep_continue(step: u32, max_rethinks: u32, tagged: bool) -> String {
    let how = if tagged {
        "reply with <rethink_memory>...</rethink_memory> containing the complete improved block, or <finish_rethinking_memory/> if it is complete and checked"
    } else {
        "call rethink_memory with the complete improved block, or finish_rethinking_memory if it is complete and checked"
    };
    format!(
        "Memory block saved ({step} of at most {max_rethinks} rewrites). Check it for arithmetic errors and missing useful quantities, then {how}."
    )
}

/// After a reply that followed neither form.
pub const SLEEP_MALFORMED: &str = "\
That reply did not follow the protocol. Reply with <rethink_memory>...</rethink_memory> holding the complete memory block, \
or with <finish_rethinking_memory/> if the block is complete.";

/// JSON schema of `rethink_memory`'s arguments (paper App. F).
pub const RETHINK_TOOL_SCHEMA: &str = r#"{"type":"object","properties":{"new_memory":{"type":"string","description":"The complete new content of the memory block. Never empty: it must hold everything the answering agent needs."},"target_block_label":{"type":"string","description":"The block to write: rethink_memory_block."},"source_block_label":{"type":["string","null"],"description":"The block whose information is being integrated, or null."}},"required":["new_memory"]}"#;

/// Test-time system prompt for a verbosity level (paper §7.1), with or without a memory block.
pub fn answer_system(level: u8, with_memory: bool) -> String {
    let memory = if with_memory {
        " Your memory block holds questions anticipated about this situation, their answers and intermediate reasoning, computed earlier. \
Use it instead of thinking on the spot, and do not recompute what is already there."
    } else {
        ""
    };
    let style = match level {
        0 => "Reply with a single sentence of the form: The answer is <number>.",
        1 => "Use only the tokens you need: one short sentence of explanation, then a final line of the form: The answer is <number>.",
        2 => "Use only the tokens you need: at most two short sentences of explanation, then a final line of the form: The answer is <number>.",
        3 => "Use only the tokens you need. End with a final line of the form: The answer is <number>, with no reasoning after it.",
        _ => {
            return format!(
                "You are an expert reasoning explanation system. Reason step by step in plain English sentences with arithmetic; explain every step.{} \
Check any number you take from the memory block: recompute and double-check it. No code, no LaTeX. End with a final line of the form: The answer is <number>.",
                if with_memory { " A memory block with notes computed earlier is available." } else { "" }
            )
        }
    };
    format!("You are an expert reasoning system answering a question about a situation.{memory} {style} Never write code.")
}

/// Appended to a reasoning that hit its cap (budget forcing): the reply continues from here.
pub const FORCE_ANSWER: &str = "\n\nI must stop reasoning now. The answer is";
