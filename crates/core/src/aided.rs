//! Program-aided sleep time: the model writes the situation's quantities as named
//! expressions; the engine computes every value exactly (`sleeptime-calc`), sends failures
//! back for a bounded number of repairs, and drops what still fails. The result is a
//! [`LearnedDocument`], so a slip like `11 * 67 = 777` can never reach the answer.

use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;
use sleeptime_calc::{evaluate, parse_program, Evaluation, Program};
use sleeptime_model::{ChatRequest, Message, ModelBackend};

use crate::document::{AnticipatedQuestion, LearnedDocument, Quantity};
use crate::open;
use crate::{
    Context, Draft, EngineError, EngineErrorKind, ProgramRef, SleepBudget, SleepEvent,
    SleepProgram, SleepProgress, SleepStats,
};

/// The sleep prompt. A skeleton with placeholders steers format better than an example,
/// which a small model copies into unrelated situations (pilot, second run).
pub const AIDED_SYSTEM: &str = "\
You study a situation before any question about it is asked, and write its quantities as a small program so a computer can compute them exactly.
Rules:
- One definition per line: name = expression  # what it means
- First give every number stated in the situation its own name.
- Then derive every useful quantity step by step from names defined above: totals, differences, rates, per-unit values, percentages, combined amounts, remaining amounts.
- Keep units consistent: when numbers come in different units (feet and inches, hours and minutes, dollars and cents), first define converted quantities, and put the unit in each name (e.g. length_in = length_ft * 12).
- Write only expressions. Never write the result of a calculation: the computer computes every value.
- Use only numbers, names, + - * / ( ), min, max and round. No other code, no print, no prose.
- Finally list the 3 to 5 questions someone is most likely to ask, one per line, as: # Q: <question> -> <name that answers it>
Format:
# given
<name> = <number>  # <meaning>
# derived
<name> = <expression>  # <meaning>
# likely questions
# Q: <question> -> <name>";

/// Settings of [`AidedProgram`].
#[derive(Debug, Clone, PartialEq)]
pub struct AidedConfig {
    /// Rounds in which failing lines are sent back to the model.
    pub repair_rounds: u32,
    /// Questions to predict and solve at sleep time (0: none). Each is solved by
    /// step-by-step reasoning whose arithmetic the engine then redoes exactly.
    pub solve_questions: u32,
    /// Solutions per predicted question (self-consistency): the first greedy, the others
    /// sampled; the value most solutions reach is kept. 1: the greedy solution alone.
    pub solve_samples: u32,
    /// Temperature of the sampled solutions.
    pub solve_temperature: f32,
    /// Open questions to keep (0: none): likely questions that bring numbers of their own,
    /// written as steps over named inputs, checked by the engine on probe values.
    pub open_questions: u32,
}

impl Default for AidedConfig {
    fn default() -> Self {
        Self {
            repair_rounds: 2,
            solve_questions: 0,
            solve_samples: 1,
            solve_temperature: 0.7,
            open_questions: 0,
        }
    }
}

/// The program-aided sleep program.
#[derive(Debug, Clone, Default)]
pub struct AidedProgram {
    config: AidedConfig,
}

impl AidedProgram {
    pub fn new(config: AidedConfig) -> Self {
        Self { config }
    }
}

/// Comment text after `#` on a raw line, if any.
pub(crate) fn comment_of(raw: &str) -> String {
    raw.split_once('#')
        .map(|(_, c)| c.trim().to_owned())
        .unwrap_or_default()
}

/// `# Q: question -> name` lines.
fn anticipated(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().trim_start_matches(['#', '-', '*', ' ']).trim();
            let rest = rest
                .strip_prefix("Q:")
                .or_else(|| rest.strip_prefix("Q :"))?;
            let (q, name) = rest.rsplit_once("->")?;
            let name = name.trim().trim_matches(['`', '.', ' ']).to_owned();
            Some((q.trim().to_owned(), name)).filter(|(q, n)| !q.is_empty() && !n.is_empty())
        })
        .collect()
}

/// The numbers written in the context, to tell given quantities from derived ones.
fn is_given(expression: &str, context: &str) -> bool {
    let e = expression.trim().trim_start_matches(['$', '€', '£']);
    !e.is_empty()
        && e.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '%')
        && context.contains(e.trim_end_matches('%'))
}

/// One draft's program text, merged across repair rounds: a repaired line replaces the
/// line that defined the same name.
#[derive(Debug, Default)]
struct Source {
    lines: Vec<String>,
}

impl Source {
    fn merge(&mut self, text: &str) {
        let program = parse_program(text);
        let raw: Vec<&str> = text.lines().collect();
        for st in &program.statements {
            let line = raw
                .get(st.line - 1)
                .copied()
                .unwrap_or(&st.source)
                .to_owned();
            let prefix = format!("{} ", st.name);
            let prefix_eq = format!("{}=", st.name);
            self.lines.retain(|l| {
                let t = l.trim();
                !(t.starts_with(&prefix) || t.starts_with(&prefix_eq))
            });
            self.lines.push(line);
        }
        for (q, name) in anticipated(text) {
            let line = format!("# Q: {q} -> {name}");
            if !self.lines.contains(&line) {
                self.lines.push(line);
            }
        }
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

fn failures(program: &Program, eval: &Evaluation) -> Vec<String> {
    let mut out: Vec<String> = eval
        .errors
        .iter()
        .map(|e| {
            let source = program
                .statements
                .iter()
                .find(|s| s.line == e.line && s.name == e.name)
                .map_or("", |s| s.source.as_str());
            format!("{source}    <- error: {}", e.error)
        })
        .collect();
    out.dedup();
    out
}

/// Build the document from a program text and its evaluation.
fn document(text: &str, context: &str) -> (LearnedDocument, Vec<String>) {
    let program = parse_program(text);
    let eval = evaluate(&program);
    let raw: Vec<&str> = text.lines().collect();
    let mut quantities = Vec::new();
    for nv in &eval.values {
        let Some(st) = program
            .statements
            .iter()
            .find(|s| s.name == nv.name && s.line == nv.line)
        else {
            continue;
        };
        quantities.push(Quantity {
            name: nv.name.clone(),
            description: comment_of(raw.get(st.line - 1).copied().unwrap_or_default()),
            expression: st.expr_text.trim().to_owned(),
            value: nv.value.to_string(),
            number: nv.value.to_f64(),
            given: is_given(&st.expr_text, context),
        });
    }
    // Keep only questions whose answer was computed (the Doc2Query-- filter).
    let questions = anticipated(text)
        .into_iter()
        .filter_map(|(question, name)| {
            let q = quantities.iter().find(|q| q.name == name)?;
            Some(AnticipatedQuestion {
                question,
                quantity: name,
                answer: q.value.clone(),
                solved: false,
            })
        })
        .collect();
    (
        LearnedDocument {
            quantities,
            questions,
            ..LearnedDocument::default()
        },
        failures(&program, &eval),
    )
}

/// Asks for the questions a situation most likely ends with (the paper: predictable
/// questions are the ones sleep time helps most).
pub const PREDICT_SYSTEM: &str = "\
The text below is a word problem whose final question has been cut off. Write the questions it most likely ends with, most likely first, one per line, each ending with a question mark. No answers, no numbering, no other text.";

/// Turns a worked solution into expressions, so the engine, not the model, does its arithmetic.
/// No example names: a small model copied an example's names into unrelated situations
/// (`wheat_length_in` for a farmer's feed), which is why the program's version is 3.
pub const TRANSLATE_SYSTEM: &str = "\
Rewrite the worked solution below as a small program a computer will evaluate exactly.
Rules:
- One definition per line: <name> = <expression>  # <meaning>
- Every name is a new, short snake_case name for what the number is in this situation, ending in its unit; never reuse a name.
- First give every number from the situation and the question its own name, then write one line per step of the solution, using names defined above.
- Use only numbers, names, + - * / ( ), min, max and round. Never write the result of a calculation yourself.
- The last line is: answer = <expression>
No prose, no code fences.";

/// What one program-writing conversation produced.
struct Written {
    /// The model's replies, in order.
    replies: Vec<String>,
    /// The program as merged across repairs.
    text: String,
    doc: LearnedDocument,
    failing: Vec<String>,
}

/// One draft's model calls: each is counted into `stats` and reported to `progress`.
struct Steps<'a> {
    model: &'a dyn ModelBackend,
    budget: SleepBudget,
    draft: usize,
    progress: &'a dyn SleepProgress,
    stats: SleepStats,
}

impl Steps<'_> {
    /// One model call, sampled as the draft's budget says.
    async fn call(
        &mut self,
        messages: &[Message],
        action: &'static str,
    ) -> Result<String, EngineError> {
        let seed = self
            .budget
            .seed
            .map(|s| s + u64::from(self.stats.steps + 1));
        self.call_with(messages, action, self.budget.temperature, seed, None)
            .await
    }

    /// One model call whose reply starts with `prefix` (returned with it).
    async fn call_prefixed(
        &mut self,
        messages: &[Message],
        action: &'static str,
        prefix: &str,
    ) -> Result<String, EngineError> {
        let seed = self
            .budget
            .seed
            .map(|s| s + u64::from(self.stats.steps + 1));
        let reply = self
            .call_with(
                messages,
                action,
                self.budget.temperature,
                seed,
                Some(prefix),
            )
            .await?;
        Ok(format!("{prefix}{reply}"))
    }

    /// One model call at `temperature` (a sampled call gets a seed even in a greedy draft,
    /// so reruns ask the same and hit the call cache).
    async fn sampled(
        &mut self,
        messages: &[Message],
        action: &'static str,
        temperature: f32,
    ) -> Result<String, EngineError> {
        let seed = self.budget.seed.unwrap_or(0) + u64::from(self.stats.steps + 1);
        self.call_with(messages, action, temperature, Some(seed), None)
            .await
    }

    /// A step whose prompt outgrew the context window (a long solution to translate, a
    /// repair conversation grown too long) drops what it would have added, not the draft:
    /// `None`, counted in the stats.
    fn unless_too_long<T>(
        &mut self,
        result: Result<T, EngineError>,
        action: &'static str,
    ) -> Result<Option<T>, EngineError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.kind() == EngineErrorKind::ContextTooLong => {
                self.stats.dropped_too_long += 1;
                tracing::warn!(action, %error, "sleep-time step dropped: its prompt does not fit the context window");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    async fn call_with(
        &mut self,
        messages: &[Message],
        action: &'static str,
        temperature: f32,
        seed: Option<u64>,
        prefix: Option<&str>,
    ) -> Result<String, EngineError> {
        self.stats.steps += 1;
        let step = self.stats.steps;
        self.progress.event(SleepEvent::StepStarted {
            draft: self.draft,
            step,
        });
        let mut request = ChatRequest::new(messages.to_vec(), self.budget.max_tokens_per_step)
            .with_sampling(temperature, 1.0, seed);
        request.assistant_prefix = prefix.map(str::to_owned);
        let completion = self.model.complete(&request).await?;
        // Trace level: replies quote the context, which default logs never show.
        tracing::trace!(action, reply = %completion.text, "aided step");
        self.stats.usage += completion.usage;
        self.progress.event(SleepEvent::StepFinished {
            draft: self.draft,
            step,
            completion_tokens: completion.usage.completion_tokens,
            action,
        });
        Ok(completion.text)
    }
}

impl AidedProgram {
    /// Ask for a program, evaluate it, and send failing lines back for up to `repair_rounds`
    /// repairs; repaired lines replace the ones they fix.
    async fn write_program(
        &self,
        steps: &mut Steps<'_>,
        mut messages: Vec<Message>,
        context: &str,
        action: &'static str,
    ) -> Result<Written, EngineError> {
        let mut source = Source::default();
        let mut written = Written {
            replies: Vec::new(),
            text: String::new(),
            doc: LearnedDocument::default(),
            failing: Vec::new(),
        };
        for round in 0..=self.config.repair_rounds {
            let completion = if round == 0 {
                steps.call(&messages, action).await?
            } else {
                // Each repair round lengthens the conversation; when it no longer fits, keep
                // what evaluates and drop the rest, as after the last round.
                let repaired = steps.call(&messages, "repair").await;
                let Some(completion) = steps.unless_too_long(repaired, "repair")? else {
                    break;
                };
                completion
            };
            source.merge(&completion);
            written.replies.push(completion.clone());
            steps.stats.rewrites += 1;
            written.text = source.text();
            (written.doc, written.failing) = document(&written.text, context);
            if written.failing.is_empty() {
                break;
            }
            messages.push(Message::assistant(completion));
            messages.push(Message::user(format!(
                "The computer could not evaluate these lines:\n{}\nRewrite only these lines, fixed, in the same format (name = expression  # meaning). Define any missing name from the situation.",
                written.failing.join("\n")
            )));
        }
        Ok(written)
    }

    /// Solve `situation` (the context and a question) step by step — greedy, or sampled at
    /// `temperature` — and translate the solution into expressions the engine evaluates.
    async fn solve_and_translate(
        &self,
        steps: &mut Steps<'_>,
        situation: &str,
        context: &str,
        temperature: Option<f32>,
        action: &'static str,
    ) -> Result<Written, EngineError> {
        let ask = [
            Message::system(crate::prompts::answer_system(4, false)),
            Message::user(situation.to_owned()),
        ];
        let solution = match temperature {
            None => steps.call(&ask, action).await?,
            Some(t) => steps.sampled(&ask, action, t).await?,
        };
        let messages = vec![
            Message::system(TRANSLATE_SYSTEM),
            Message::user(format!(
                "{situation}\n\nWorked solution:\n{}",
                solution.trim()
            )),
        ];
        self.write_program(steps, messages, context, "translate")
            .await
    }

    /// Predict the likely questions, solve each by step-by-step reasoning, have the engine
    /// redo the solution's arithmetic, and record the answers in `doc`. With several
    /// samples, every question first gets its greedy solution, then the sampled ones (so a
    /// run with more samples reuses a cached run's calls), and the majority value is kept.
    async fn solve_likely_questions(
        &self,
        steps: &mut Steps<'_>,
        doc: &mut LearnedDocument,
        context: &Context,
    ) -> Result<(), EngineError> {
        let text = context.text();
        let predicted = steps
            .call(
                &[
                    Message::system(PREDICT_SYSTEM),
                    Message::user(text.to_owned()),
                ],
                "predict",
            )
            .await?;
        let questions = likely_questions(&predicted, self.config.solve_questions as usize);
        let situations: Vec<String> = questions
            .iter()
            .map(|question| situation_with(text, question))
            .collect();
        let samples = self.config.solve_samples.max(1);
        let mut answers: Vec<Vec<Quantity>> = vec![Vec::new(); questions.len()];
        for sample in 0..samples {
            let temperature = (sample > 0).then_some(self.config.solve_temperature);
            for (situation, found) in situations.iter().zip(answers.iter_mut()) {
                let solved = self
                    .solve_and_translate(steps, situation, text, temperature, "solve")
                    .await;
                let Some(written) = steps.unless_too_long(solved, "solve")? else {
                    continue;
                };
                found.extend(final_quantity(&written).cloned());
            }
        }
        for (question, found) in questions.iter().zip(&answers) {
            let Some((answer, votes)) = majority(found) else {
                continue;
            };
            let agreement = (samples > 1).then_some((votes, samples));
            record_answer(doc, question, answer, agreement);
        }
        Ok(())
    }

    /// Predict likely questions that bring a number of their own, solve each step by step,
    /// translate the solution into expressions, and let the engine turn the question's new
    /// number into a named input (kept only if the answer evaluates and depends on it). A
    /// question with nothing open is recorded as an answered question.
    async fn write_open_questions(
        &self,
        steps: &mut Steps<'_>,
        doc: &mut LearnedDocument,
        context: &Context,
    ) -> Result<(), EngineError> {
        let text = context.text();
        let ask = [
            Message::system(open::OPEN_PREDICT_SYSTEM),
            Message::user(text.to_owned()),
        ];
        let predicted = steps
            .call_prefixed(&ask, "predict-open", open::OPEN_PREDICT_PREFIX)
            .await?;
        let limit = self.config.open_questions as usize;
        let mut forms = Vec::new();
        let questions: Vec<String> = likely_questions(&predicted, 3 * limit)
            .into_iter()
            .filter(|q| !open::new_numbers(q, text).is_empty())
            .filter(|q| {
                let form = open::form_of(q);
                let new = !forms.contains(&form);
                forms.push(form);
                new
            })
            .take(limit)
            .collect();
        for question in questions {
            let situation = situation_with(text, &question);
            let solved = self
                .solve_and_translate(steps, &situation, text, None, "solve-open")
                .await;
            let Some(written) = steps.unless_too_long(solved, "solve-open")? else {
                continue;
            };
            // The example number stays out of the name: test time binds another.
            let answer_name = unique_name(
                doc,
                &name_for(&question.replace(|c: char| c.is_ascii_digit(), "")),
            );
            match open::open_question(doc, &question, &written.text, text, &answer_name) {
                Ok(open::Checked::Open(open)) => doc.open_questions.push(open),
                Ok(open::Checked::Fixed { question, answer }) => {
                    record_answer(doc, &question, &answer, None)
                }
                Err(why) => tracing::debug!(%question, ?why, "open question dropped"),
            }
        }
        Ok(())
    }
}

/// The user message that asks about `question` in the situation `context`.
fn situation_with(context: &str, question: &str) -> String {
    format!("Situation:\n{}\n\nQuestion: {question}", context.trim())
}

/// The value most of `found` share, with its count; ties go to the earliest (the greedy
/// solution comes first).
fn majority(found: &[Quantity]) -> Option<(&Quantity, u32)> {
    let mut best: Option<(&Quantity, u32)> = None;
    for q in found {
        let votes =
            u32::try_from(found.iter().filter(|o| same_value(q, o)).count()).unwrap_or(u32::MAX);
        if best.is_none_or(|(_, b)| votes > b) {
            best = Some((q, votes));
        }
    }
    best
}

/// Two computed values are the same number (up to float rounding of exact rationals).
fn same_value(a: &Quantity, b: &Quantity) -> bool {
    (a.number - b.number).abs() <= 1e-9 * b.number.abs().max(1.0)
}

/// The quantity a translated solution ends in: `answer`, else the name it prints (a small
/// coder model often ends with `print(total)`), else its last derived quantity.
fn final_quantity(written: &Written) -> Option<&Quantity> {
    let find = |name: &str| written.doc.quantities.iter().find(|q| q.name == name);
    find("answer")
        .or_else(|| {
            written
                .replies
                .iter()
                .rev()
                .flat_map(|r| r.lines().rev())
                .find_map(|line| {
                    let inner = line.trim().strip_prefix("print(")?.strip_suffix(')')?;
                    find(inner.trim())
                })
        })
        .or_else(|| written.doc.quantities.iter().rev().find(|q| !q.given))
}

/// The first `n` distinct questions of a prediction reply.
fn likely_questions(reply: &str, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in reply.lines() {
        let q = line.trim().trim_start_matches(|c: char| {
            c.is_ascii_digit() || matches!(c, '.' | ')' | '-' | '*' | '#' | ' ')
        });
        let q = q.strip_prefix("Q:").unwrap_or(q).trim();
        if q.ends_with('?') && q.len() > 8 && !out.iter().any(|o| o == q) {
            out.push(q.to_owned());
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// Record a solved question: linked to an existing quantity of the same value (two
/// independent derivations agree), or as a new quantity named after the question.
/// `agreement`: how many of how many sampled solutions reached this value.
fn record_answer(
    doc: &mut LearnedDocument,
    question: &str,
    answer: &Quantity,
    agreement: Option<(u32, u32)>,
) {
    let existing = doc
        .quantities
        .iter()
        .filter(|q| same_value(q, answer))
        .min_by_key(|q| q.given)
        .map(|q| q.name.clone());
    let name = existing.unwrap_or_else(|| {
        let name = unique_name(doc, &name_for(question));
        doc.quantities.push(Quantity {
            name: name.clone(),
            description: match agreement {
                Some((votes, of)) => {
                    format!("answer to: {question}; {votes} of {of} solutions agree")
                }
                None => format!("answer to: {question}"),
            },
            expression: answer.value.clone(),
            value: answer.value.clone(),
            number: answer.number,
            given: false,
        });
        name
    });
    doc.questions.retain(|q| q.question != question);
    // Solved questions come first: they are the ones the program expects most.
    let at = doc.questions.iter().take_while(|q| q.solved).count();
    doc.questions.insert(
        at,
        AnticipatedQuestion {
            question: question.to_owned(),
            quantity: name,
            answer: answer.value.clone(),
            solved: true,
        },
    );
}

/// `base`, or `base_2`, `base_3`, … if the document already uses it.
fn unique_name(doc: &LearnedDocument, base: &str) -> String {
    let used = |name: &str| {
        doc.quantities.iter().any(|q| q.name == name)
            || doc
                .open_questions
                .iter()
                .flat_map(|o| o.inputs.iter().chain(&o.steps))
                .any(|q| q.name == name)
    };
    let mut name = base.to_owned();
    let mut i = 2;
    while used(&name) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// `answer_<first content words of the question>`.
fn name_for(question: &str) -> String {
    const SKIP: &[&str] = &[
        "how", "many", "much", "what", "is", "are", "the", "a", "an", "of", "does", "do", "did",
        "will", "would", "in", "to", "if", "be", "can", "for",
    ];
    let words: Vec<String> = question
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !SKIP.contains(&w.as_str()))
        .take(4)
        .collect();
    if words.is_empty() {
        "answer_question".to_owned()
    } else {
        format!("answer_{}", words.join("_"))
    }
}

#[async_trait]
impl SleepProgram for AidedProgram {
    fn id(&self) -> ProgramRef {
        let mut params = format!("repair_rounds={}", self.config.repair_rounds);
        if self.config.solve_questions > 0 {
            params.push_str(&format!(",solve_questions={}", self.config.solve_questions));
            if self.config.solve_samples > 1 {
                params.push_str(&format!(
                    ",solve_samples={},solve_temperature={}",
                    self.config.solve_samples, self.config.solve_temperature
                ));
            }
        }
        if self.config.open_questions > 0 {
            params.push_str(&format!(",open_questions={}", self.config.open_questions));
        }
        ProgramRef {
            name: "aided".into(),
            version: 3,
            params,
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
        let mut steps = Steps {
            model,
            budget,
            draft: draft_index,
            progress,
            stats: SleepStats::default(),
        };
        let messages = vec![
            Message::system(AIDED_SYSTEM),
            Message::user(format!("Situation: {}", context.text())),
        ];
        let Written {
            mut doc, failing, ..
        } = self
            .write_program(&mut steps, messages, context.text(), "write")
            .await?;
        steps.stats.finished = failing.is_empty();
        steps.stats.malformed_replies = u32::try_from(failing.len()).unwrap_or(u32::MAX);
        if !failing.is_empty() {
            doc.notes.push(format!(
                "{} quantities could not be computed and were dropped",
                failing.len()
            ));
        }
        if self.config.solve_questions > 0 {
            self.solve_likely_questions(&mut steps, &mut doc, context)
                .await?;
        }
        if self.config.open_questions > 0 {
            self.write_open_questions(&mut steps, &mut doc, context)
                .await?;
        }
        let mut stats = steps.stats;
        stats.seconds = started.elapsed().as_secs_f64();
        progress.event(SleepEvent::DraftFinished { draft: draft_index });
        Ok(Draft {
            text: doc.render(),
            seed: budget.seed,
            stats,
            document: Some(doc),
        })
    }
}

/// Merge drafts' documents: a quantity computed in several drafts is kept once; when drafts
/// disagree on a name's value, the value most drafts computed wins (ties: the earliest).
pub fn merge_documents(docs: &[&LearnedDocument]) -> LearnedDocument {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: HashMap<String, Vec<&Quantity>> = HashMap::new();
    for doc in docs {
        for q in &doc.quantities {
            if !by_name.contains_key(&q.name) {
                order.push(q.name.clone());
            }
            by_name.entry(q.name.clone()).or_default().push(q);
        }
    }
    let mut merged = LearnedDocument::default();
    let mut seen_values: HashMap<String, String> = HashMap::new();
    for name in order {
        let candidates = &by_name[&name];
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for q in candidates {
            match votes.iter_mut().find(|(v, _)| *v == q.value) {
                Some(entry) => entry.1 += 1,
                None => votes.push((&q.value, 1)),
            }
        }
        let best = votes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(std::cmp::Ordering::Greater))
            .map(|v| v.0);
        let Some(chosen) = candidates.iter().find(|q| Some(q.value.as_str()) == best) else {
            continue;
        };
        // The same derived value under another name and the same description adds nothing.
        let key = format!("{}|{}", chosen.value, chosen.description.to_lowercase());
        if !chosen.given && seen_values.contains_key(&key) {
            continue;
        }
        seen_values.insert(key, name.clone());
        merged.quantities.push((*chosen).clone());
    }
    for doc in docs {
        for q in &doc.questions {
            let answer = merged
                .quantities
                .iter()
                .find(|m| m.name == q.quantity)
                .map(|m| m.value.clone());
            if let Some(answer) = answer {
                if !merged.questions.iter().any(|m| m.question == q.question) {
                    merged.questions.push(AnticipatedQuestion {
                        answer,
                        ..q.clone()
                    });
                }
            }
        }
        for n in &doc.notes {
            if !merged.notes.contains(n) {
                merged.notes.push(n.clone());
            }
        }
        // Each draft named its open questions' steps apart from its own quantities only: one
        // whose names another draft's already uses is left out rather than mixed with it.
        for open in &doc.open_questions {
            let taken = |name: &str| {
                merged.quantities.iter().any(|q| q.name == name)
                    || merged
                        .open_questions
                        .iter()
                        .flat_map(|m| m.inputs.iter().chain(&m.steps))
                        .any(|q| q.name == name)
            };
            let clash = open
                .inputs
                .iter()
                .chain(&open.steps)
                .any(|q| taken(&q.name));
            if !clash
                && !merged
                    .open_questions
                    .iter()
                    .any(|m| m.question == open.question)
            {
                merged.open_questions.push(open.clone());
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repaired_lines_replace_their_first_version() {
        let mut s = Source::default();
        s.merge("a = 2  # two\nb = a * c  # needs c\n# Q: what is b? -> b");
        s.merge("b = a * 3  # fixed");
        assert_eq!(
            s.text(),
            "a = 2  # two\n# Q: what is b? -> b\nb = a * 3  # fixed"
        );
        let (doc, errors) = document(&s.text(), "there are 2 apples");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(doc.quantities.len(), 2);
        assert!(doc.quantities[0].given && !doc.quantities[1].given);
        assert_eq!(doc.quantities[1].value, "6");
        assert_eq!(doc.questions.len(), 1);
    }

    #[test]
    fn the_majority_value_wins_and_ties_go_to_the_greedy_solution() {
        let q = |name: &str, number: f64| Quantity {
            name: name.into(),
            description: String::new(),
            expression: String::new(),
            value: number.to_string(),
            number,
            given: false,
        };
        let agreeing = [q("greedy", 5.0), q("a", 7.0), q("b", 7.0)];
        let (best, votes) = majority(&agreeing).expect("some");
        assert_eq!((best.name.as_str(), votes), ("a", 2));
        let disagreeing = [q("greedy", 5.0), q("a", 7.0), q("b", 9.0)];
        let (best, votes) = majority(&disagreeing).expect("some");
        assert_eq!(
            (best.name.as_str(), votes),
            ("greedy", 1),
            "no agreement: the greedy solution stays"
        );
        assert!(majority(&[]).is_none());
    }

    #[test]
    fn questions_without_a_computed_answer_are_dropped() {
        let (doc, errors) = document(
            "x = 4\ny = x / 0\n# Q: what is y? -> y\n# Q: what is x? -> x",
            "x is 4",
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(doc.questions.len(), 1);
        assert_eq!(doc.questions[0].quantity, "x");
    }
}
