//! Open questions: precomputation for questions that bring numbers of their own.
//!
//! Most questions about a situation add a number the context lacks ("If the truck carries
//! 200 kg…", "a 68-minute call"), so no list of predicted questions holds their answers. At
//! sleep time the model predicts such questions with a number of their own, solves each step
//! by step and translates the solution into expressions (the solve stage's machinery); the
//! engine then finds the line that defines the question's new number, makes it a named input,
//! and keeps the question only if its answer evaluates and changes when the input does
//! (checked on a probe value). At test time the model binds the input to the actual
//! question's number and the engine evaluates the checked steps: the reasoning was done
//! ahead, only reading the question is left.

use std::collections::HashSet;

use sleeptime_calc::{evaluate, parse_program, Evaluation};

use crate::aided::comment_of;
use crate::document::{LearnedDocument, OpenQuestion, Quantity};

/// Asks for likely final questions that bring a number of their own. A small model asked for
/// "questions with a number of their own" writes plain ones; the reply is therefore started
/// with [`OPEN_PREDICT_PREFIX`], which holds it to the conditional form.
pub const OPEN_PREDICT_SYSTEM: &str = "\
The text below is a word problem whose final question has been cut off. Write 3 questions it might end with. Each question starts with \"If\", adds one new number of its own written in digits (an amount, count, price, duration or size the text does not give), and asks for a result that needs the text's numbers. One per line, each ending with a question mark. No answers, no numbering.";

/// The start of the open-question prediction's reply.
pub const OPEN_PREDICT_PREFIX: &str = "If";

/// A question with its numbers removed, to tell apart questions that differ only in them
/// ("a 30-minute call", "a 40-minute call"): one open question serves them all.
pub(crate) fn form_of(question: &str) -> String {
    question
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect::<String>()
        .to_lowercase()
}

/// One question's lines as the model wrote them, before checking.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    question: String,
    /// Program lines (comments kept, for descriptions and input marks).
    lines: Vec<String>,
}

/// Numbers written in digits in `question` that `context` does not state, as written
/// (`200`, `0.25`, `1,500`).
pub(crate) fn new_numbers(question: &str, context: &str) -> Vec<String> {
    let stated = crate::parse::numbers(context);
    number_spans(question)
        .into_iter()
        .filter(|n| {
            n.replace(',', "")
                .parse::<f64>()
                .is_ok_and(|v| !stated.iter().any(|s| crate::parse::numbers_match(*s, v)))
        })
        .collect()
}

/// Digit runs with an optional decimal part and thousands commas.
fn number_spans(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit()
            || (i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_'))
        {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len()
            && (chars[j].is_ascii_digit()
                || (matches!(chars[j], '.' | ',')
                    && chars.get(j + 1).is_some_and(char::is_ascii_digit)))
        {
            j += 1;
        }
        let span: String = chars[i..j].iter().collect();
        if !out.contains(&span) {
            out.push(span);
        }
        i = j;
    }
    out
}

/// Names written `{name}` in a question.
fn placeholders(question: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = question;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = rest[start + 1..start + len].trim();
        if !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !out.iter().any(|o| o == name)
        {
            out.push(name.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    out
}

/// `text` with every whole-word occurrence of the identifier `from` replaced by `to`.
fn rename_ident(text: &str, from: &str, to: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(if word == from { to } else { word });
        word.clear();
    };
    for c in text.chars() {
        if is_ident(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The document's quantities as definitions, `(name, "name = expression")`, in order: the
/// expressions, not the values, so that rebinding a given number recomputes what depends on
/// it. A quantity whose expression does not evaluate on its own (e.g. after a merge of
/// drafts) is defined by its value.
pub fn definitions(doc: &LearnedDocument) -> Vec<(String, String)> {
    let lines: Vec<(String, String)> = doc
        .quantities
        .iter()
        .map(|q| {
            let expr = if q.expression.trim().is_empty() {
                &q.value
            } else {
                &q.expression
            };
            (q.name.clone(), format!("{} = {expr}", q.name))
        })
        .collect();
    let eval = evaluate(&parse_program(&join(&lines)));
    let failed: HashSet<&str> = eval.errors.iter().map(|e| e.name.as_str()).collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for (q, (name, line)) in doc.quantities.iter().zip(lines.iter()) {
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let line = if failed.contains(name.as_str()) {
            format!("{name} = {}", q.value)
        } else {
            line.clone()
        };
        out.push((name.clone(), line));
    }
    for open in &doc.open_questions {
        for q in open.inputs.iter().chain(&open.steps) {
            if !out.iter().any(|(n, _)| n == &q.name) {
                out.push((q.name.clone(), format!("{} = {}", q.name, q.expression)));
            }
        }
    }
    out
}

fn join(lines: &[(String, String)]) -> String {
    lines
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a block was not kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rejected {
    /// No program lines, or no answer line that evaluates.
    NoAnswer(String),
    /// The question names an input no line defines.
    UndefinedInput(String),
}

/// What checking a block gives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Checked {
    /// The answer depends on at least one input.
    Open(OpenQuestion),
    /// The answer depends on no input: a fixed question with its computed answer.
    Fixed { question: String, answer: Quantity },
}

/// A value other than `example`, to see whether the answer depends on an input.
fn probe(example: f64) -> String {
    let p = 2.0 * example + 3.0;
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// Check one block against `base` (the document's definitions plus blocks already kept),
/// renaming its names that `base` already defines so each block stays self-contained.
fn check(block: &Block, base: &[(String, String)]) -> Result<Checked, Rejected> {
    let program = parse_program(&block.lines.join("\n"));
    let mut lines: Vec<(String, String, String)> = program
        .statements
        .iter()
        .map(|st| {
            let comment = comment_of(block.lines.get(st.line - 1).map_or("", String::as_str));
            (st.name.clone(), st.expr_text.trim().to_owned(), comment)
        })
        .collect();
    // A name defined twice in a block: the last definition stands.
    let mut seen = HashSet::new();
    lines.reverse();
    lines.retain(|(name, _, _)| seen.insert(name.clone()));
    lines.reverse();
    if lines.is_empty() {
        return Err(Rejected::NoAnswer("no program lines".into()));
    }
    let mut question = block.question.clone();
    let taken: HashSet<&str> = base.iter().map(|(n, _)| n.as_str()).collect();
    let local: Vec<String> = lines.iter().map(|(n, _, _)| n.clone()).collect();
    for name in &local {
        if taken.contains(name.as_str()) {
            let mut i = 2;
            let mut fresh = format!("{name}_{i}");
            while taken.contains(fresh.as_str()) || local.contains(&fresh) {
                i += 1;
                fresh = format!("{name}_{i}");
            }
            for line in &mut lines {
                if &line.0 == name {
                    line.0 = fresh.clone();
                }
                line.1 = rename_ident(&line.1, name, &fresh);
            }
            question = question.replace(&format!("{{{name}}}"), &format!("{{{fresh}}}"));
        }
    }
    let mut inputs: Vec<String> = placeholders(&question);
    for (name, expr, comment) in &lines {
        let marked = comment.to_ascii_lowercase().starts_with("input");
        let bare_number = sleeptime_calc::Expr::parse(expr).is_ok_and(|e| e.names().is_empty());
        if marked && bare_number && !inputs.contains(name) {
            inputs.push(name.clone());
        }
    }
    if let Some(missing) = inputs
        .iter()
        .find(|i| !lines.iter().any(|(n, _, _)| n == *i))
    {
        return Err(Rejected::UndefinedInput(missing.clone()));
    }
    let answer_name = lines
        .iter()
        .rev()
        .find(|(n, _, _)| n.starts_with("answer"))
        .or_else(|| lines.last())
        .map(|(n, _, _)| n.clone())
        .unwrap_or_default();
    let run = |overrides: &[(&str, String)]| -> Evaluation {
        let mut text = join(base);
        for (name, expr, _) in &lines {
            let expr = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map_or(expr.as_str(), |(_, v)| v.as_str());
            text.push_str(&format!("\n{name} = {expr}"));
        }
        evaluate(&parse_program(&text))
    };
    let eval = run(&[]);
    let Some(answer) = eval.get(&answer_name).copied() else {
        let why = eval
            .errors
            .iter()
            .find(|e| e.name == answer_name)
            .map_or_else(|| "no answer line".to_owned(), |e| e.error.to_string());
        return Err(Rejected::NoAnswer(why));
    };
    let quantity = |name: &str, expr: &str, comment: &str, eval: &Evaluation| {
        eval.get(name).map(|v| Quantity {
            name: name.to_owned(),
            description: comment.to_owned(),
            expression: expr.to_owned(),
            value: v.to_string(),
            number: v.to_f64(),
            given: false,
        })
    };
    // Keep the inputs the answer depends on: changing one to a probe value changes it.
    let effective: Vec<String> = inputs
        .iter()
        .filter(|input| {
            let Some(example) = eval.get(input) else {
                return false;
            };
            let probed = run(&[(input.as_str(), probe(example.to_f64()))]);
            probed.get(&answer_name).is_some_and(|v| *v != answer)
        })
        .cloned()
        .collect();
    // An input the answer does not depend on is a fixed step, written into the question.
    for input in inputs.iter().filter(|i| !effective.contains(i)) {
        if let Some(v) = eval.get(input) {
            question = question.replace(&format!("{{{input}}}"), &v.to_string());
        }
    }
    let (_, expr, comment) = lines
        .iter()
        .find(|(n, _, _)| *n == answer_name)
        .cloned()
        .unwrap_or_default();
    let answer = quantity(&answer_name, &expr, &comment, &eval)
        .ok_or_else(|| Rejected::NoAnswer("no answer".into()))?;
    if effective.is_empty() {
        // Nothing open after all: the question with its example numbers, answered.
        return Ok(Checked::Fixed { question, answer });
    }
    // The steps the answer needs, in the block's order; the answer last.
    let needed = needed_names(&lines, &answer_name);
    let mut steps: Vec<Quantity> = lines
        .iter()
        .filter(|(n, _, _)| needed.contains(n) && !effective.contains(n) && *n != answer_name)
        .filter_map(|(n, e, c)| quantity(n, e, c, &eval))
        .collect();
    steps.push(answer);
    let inputs: Vec<Quantity> = lines
        .iter()
        .filter(|(n, _, _)| effective.contains(n))
        .filter_map(|(n, e, c)| quantity(n, e, c, &eval))
        .collect();
    Ok(Checked::Open(OpenQuestion {
        question,
        inputs,
        steps,
    }))
}

/// The block's names `answer` depends on, directly or through other block lines.
fn needed_names(lines: &[(String, String, String)], answer: &str) -> HashSet<String> {
    let mut needed: HashSet<String> = HashSet::new();
    let mut stack = vec![answer.to_owned()];
    while let Some(name) = stack.pop() {
        if !needed.insert(name.clone()) {
            continue;
        }
        if let Some((_, expr, _)) = lines.iter().find(|(n, _, _)| *n == name) {
            if let Ok(e) = sleeptime_calc::Expr::parse(expr) {
                stack.extend(
                    e.names()
                        .iter()
                        .filter(|n| lines.iter().any(|(l, _, _)| l == *n))
                        .cloned(),
                );
            }
        }
    }
    needed
}

/// Turn a solved likely question into an open question: `program` is the translation of
/// its solution (`name = expression  # meaning` lines). Each number the question brings
/// (absent from `context`) that a line defines on its own becomes a named input, written
/// `{name}` in the question; the translation's `answer` is renamed `answer_name` so the test
/// time's own `answer` line can refer to it. Then the block is checked against `doc`.
pub(crate) fn open_question(
    doc: &LearnedDocument,
    question: &str,
    program: &str,
    context: &str,
    answer_name: &str,
) -> Result<Checked, Rejected> {
    let parsed = parse_program(program);
    let raw: Vec<&str> = program.lines().collect();
    let mut question = question.to_owned();
    let mut lines: Vec<String> = Vec::new();
    let new = new_numbers(&question, context);
    let mut placed: HashSet<String> = HashSet::new();
    for st in &parsed.statements {
        let comment = comment_of(raw.get(st.line - 1).copied().unwrap_or_default());
        let expr = rename_ident(st.expr_text.trim(), "answer", answer_name);
        let name = if st.name == "answer" {
            answer_name.to_owned()
        } else {
            st.name.clone()
        };
        let literal = expr.trim_start_matches(['$', '€', '£']).replace(',', "");
        let input = new
            .iter()
            .find(|n| !placed.contains(*n) && n.replace(',', "") == literal);
        match input {
            Some(number) => {
                placed.insert(number.clone());
                question = replace_number(&question, number, &format!("{{{name}}}"));
                lines.push(format!("{name} = {expr}  # input: {comment}"));
            }
            None => lines.push(format!("{name} = {expr}  # {comment}")),
        }
    }
    check(&Block { question, lines }, &definitions(doc))
}

/// `text` with the first whole occurrence of the number `number` replaced (not a part of a
/// longer number: `20` is not found in `200` or `1,20`).
fn replace_number(text: &str, number: &str, with: &str) -> String {
    let mut from = 0;
    while let Some(at) = text[from..].find(number).map(|i| i + from) {
        let before = text[..at].chars().next_back();
        let mut after = text[at + number.len()..].chars();
        let (a1, a2) = (after.next(), after.next());
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        let joins_before = digit(before)
            || (matches!(before, Some('.' | ','))
                && digit(text[..at.saturating_sub(1)].chars().next_back()));
        let joins_after = digit(a1) || (matches!(a1, Some('.' | ',')) && digit(a2));
        if !joins_before && !joins_after {
            return format!("{}{with}{}", &text[..at], &text[at + number.len()..]);
        }
        from = at + number.len();
    }
    text.to_owned()
}

/// Whether binding one input of one of `doc`'s open questions to one of the numbers written
/// in `question` makes its answer `gold`: the share of questions an ideal test-time binding
/// could answer from the open questions (their counterpart of answer recall).
pub fn open_recall(doc: &LearnedDocument, question: &str, gold: f64) -> bool {
    let numbers = number_spans(question);
    let defs = definitions(doc);
    doc.open_questions.iter().any(|open| {
        let Some(answer) = open.answer() else {
            return false;
        };
        open.inputs.iter().any(|input| {
            numbers.iter().any(|number| {
                let bound: Vec<String> = defs
                    .iter()
                    .map(|(name, line)| {
                        if *name == input.name {
                            format!("{name} = {}", number.replace(',', ""))
                        } else {
                            line.clone()
                        }
                    })
                    .collect();
                let eval = evaluate(&parse_program(&bound.join("\n")));
                eval.get(&answer.name)
                    .is_some_and(|v| crate::parse::numbers_match(v.to_f64(), gold))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(program: &str) -> LearnedDocument {
        let (program, eval) = sleeptime_calc::run(program);
        let quantities = eval
            .values
            .iter()
            .map(|v| {
                let st = program
                    .statements
                    .iter()
                    .find(|s| s.name == v.name)
                    .expect("statement");
                Quantity {
                    name: v.name.clone(),
                    description: String::new(),
                    expression: st.expr_text.trim().to_owned(),
                    value: v.value.to_string(),
                    number: v.value.to_f64(),
                    given: false,
                }
            })
            .collect();
        LearnedDocument {
            quantities,
            ..LearnedDocument::default()
        }
    }

    const FEED: &str =
        "He buys six 6-kilogram boxes of oats and nineteen 16-kilogram sacks of hay.";

    #[test]
    fn the_question_s_new_number_becomes_an_input_the_answer_depends_on() {
        let d = doc("oats_kg = 6 * 6\nhay_kg = 19 * 16\ntotal_feed_kg = oats_kg + hay_kg");
        let translation = "truck_kg = 100  # what the truck carries\nfeed = 6 * 6 + 19 * 16  # all feed\nanswer = ceil(feed / truck_kg)";
        let question = "If the truck carries 100 kg at a time, how many trips are needed?";
        let Ok(Checked::Open(open)) =
            open_question(&d, question, translation, FEED, "answer_trips")
        else {
            panic!("open")
        };
        assert_eq!(
            open.question,
            "If the truck carries {truck_kg} kg at a time, how many trips are needed?"
        );
        assert_eq!(
            open.inputs
                .iter()
                .map(|i| (i.name.as_str(), i.value.as_str()))
                .collect::<Vec<_>>(),
            [("truck_kg", "100")]
        );
        assert_eq!(
            open.steps
                .iter()
                .map(|q| q.name.as_str())
                .collect::<Vec<_>>(),
            ["feed", "answer_trips"]
        );
        assert_eq!(
            open.answer().map(|a| a.value.as_str()),
            Some("4"),
            "ceil(340 / 100)"
        );
    }

    #[test]
    fn a_question_with_nothing_open_is_answered_and_a_failing_one_rejected() {
        let d = doc("oats_kg = 6 * 6");
        // 6 is stated in the context: not a new number, so nothing is open.
        let fixed = open_question(
            &d,
            "How many kilograms of oats in 6 boxes?",
            "answer = 6 * 6",
            FEED,
            "answer_oats",
        );
        let Ok(Checked::Fixed { answer, .. }) = fixed else {
            panic!("fixed: {fixed:?}")
        };
        assert_eq!(
            (answer.name.as_str(), answer.value.as_str()),
            ("answer_oats", "36")
        );
        // An input that does not change the answer is not an input.
        let ignored = open_question(
            &d,
            "If 3 pigs eat, how much oats?",
            "pigs = 3\nanswer = oats_kg",
            FEED,
            "answer_x",
        );
        assert!(matches!(ignored, Ok(Checked::Fixed { .. })), "{ignored:?}");
        let failing = open_question(
            &d,
            "If 0 boxes are shared, how much each?",
            "boxes = 0\nanswer = oats_kg / boxes",
            FEED,
            "answer_y",
        );
        assert!(matches!(failing, Err(Rejected::NoAnswer(_))), "{failing:?}");
    }

    #[test]
    fn an_input_the_answer_ignores_stays_a_fixed_step() {
        let d = doc("kg_per_bag = 10");
        let translation =
            "pigs = 3  # pigs\nbags = 5  # bags\nanswer = bags * kg_per_bag + pigs * 0";
        let Ok(Checked::Open(open)) = open_question(
            &d,
            "If 3 pigs eat 5 bags, how many kg?",
            translation,
            "10 kg a bag",
            "answer_kg",
        ) else {
            panic!("open")
        };
        assert_eq!(open.question, "If 3 pigs eat {bags} bags, how many kg?");
        assert_eq!(
            open.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["bags"]
        );
        let mut d = d;
        d.open_questions.push(open);
        assert!(
            open_recall(&d, "If 4 pigs eat 7 bags, how many kg?", 70.0),
            "pigs stays defined, so binding bags evaluates"
        );
    }

    #[test]
    fn names_the_document_already_defines_are_renamed_inside_the_block() {
        let d = doc("price = 2\ncost = price * 3");
        let Ok(Checked::Open(open)) = open_question(
            &d,
            "What do 4 items cost?",
            "n = 4\ncost = price * n\nanswer = cost",
            "",
            "answer_cost",
        ) else {
            panic!("open")
        };
        assert_eq!(open.question, "What do {n} items cost?");
        assert_eq!(
            open.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["cost_2", "answer_cost"]
        );
        assert_eq!(open.steps[1].expression, "cost_2");
        assert_eq!(open.answer().map(|a| a.value.as_str()), Some("8"));
        let mut d = d;
        d.open_questions.push(open);
        let defs = definitions(&d);
        assert!(
            defs.iter()
                .any(|(n, l)| n == "cost" && l == "cost = price * 3"),
            "the document's own cost is untouched"
        );
        assert!(defs
            .iter()
            .any(|(n, l)| n == "cost_2" && l == "cost_2 = price * n"));
    }

    #[test]
    fn open_recall_binds_the_question_s_numbers() {
        let mut d = doc("rate = 479 / 38");
        let Ok(Checked::Open(open)) = open_question(
            &d,
            "If the city is 150 miles long, how long?",
            "miles = 150\nanswer = rate * miles",
            "479 and 38",
            "answer_time",
        ) else {
            panic!("open")
        };
        d.open_questions.push(open);
        assert!(open_recall(
            &d,
            "If the city is 76 miles across, how many minutes?",
            958.0
        ));
        assert!(!open_recall(
            &d,
            "If the city is 76 miles across, how many minutes?",
            479.0
        ));
        assert!(
            !open_recall(&d, "How many minutes for the whole city?", 958.0),
            "no number to bind"
        );
    }

    #[test]
    fn new_numbers_are_found_whole_and_replaced_whole() {
        assert_eq!(
            new_numbers(
                "If 200 kg and 1,500 g and 6 boxes and 0.25 each?",
                "six boxes, 6 kg"
            ),
            ["200", "1,500", "0.25"]
        );
        assert_eq!(
            replace_number("20 of 200 and 120", "20", "{x}"),
            "{x} of 200 and 120"
        );
        assert_eq!(replace_number("200 or 20.", "20", "{x}"), "200 or {x}.");
        assert_eq!(replace_number("2.5 and 5", "5", "{x}"), "2.5 and {x}");
    }

    #[test]
    fn identifiers_are_renamed_as_whole_words() {
        assert_eq!(
            rename_ident("cost + cost_2 * costs + (cost)", "cost", "c9"),
            "c9 + cost_2 * costs + (c9)"
        );
        assert_eq!(
            placeholders("If {a} and { b } and {a}, {bad name}?"),
            ["a", "b"]
        );
    }
}
