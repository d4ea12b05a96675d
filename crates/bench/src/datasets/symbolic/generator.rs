//! Seeded instantiation of GSM-Symbolic templates.
//!
//! For each instance: sample every `#init` variable in order (a variable that one
//! `x == expr` condition pins down is computed from it instead and checked against its
//! domain), check each `#conditions` line as soon as its variables are known, and start
//! again from scratch on the first failure (so accepted samples are uniform over the valid
//! assignments, as with plain rejection sampling). Then evaluate `#answer`, fill the
//! question (phrases show their text; a value at the start of a sentence is capitalised;
//! whitespace is collapsed, as in Apple's released rows) and the worked solution (`<<...>>`
//! dropped, `{expr}` rendered with Python's `str()`).
//!
//! Samples whose arithmetic is fragile (a float within rounding error of an integer was
//! truncated or tested with `is_int`) are rejected, as are (by default) samples whose
//! `#answer` differs from the worked solution's `####` line. Samples whose solution shows
//! float noise such as `0.30000000000000004` are used only when no clean sample turns up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{values_equal, Evaluator, Vars};
use super::expr::{CmpOp, Expr};
use super::template::{QuestionPart, SolutionPart, Template};
use super::value::{EvalError, Phrase, Value};
use super::Split;
use crate::datasets::answer::{normalize_answer_text, parse_gsm_answer};
use crate::datasets::rng::{hash_str, SeededRng};
use crate::datasets::split::{split_gsm, SplitMode};
use crate::datasets::{DatasetError, DatasetKind, Problem};

/// Which value is the gold answer of a generated instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerPolicy {
    /// Prefer samples where `#answer` equals the worked solution's `####` value. For the
    /// few templates whose `#answer` never matches their own solution (a template bug, e.g.
    /// P2 template 26 subtracts a stray 1), fall back to the solution's value, which is what
    /// Apple's released rows contain; such instances have [`Instance::agrees`] false. The
    /// default.
    #[default]
    RequireAgreement,
    /// Gold = `#answer`, even where the worked solution says otherwise.
    AnswerLine,
    /// Gold = the worked solution's `####` value (what Apple's released rows contain).
    SolutionLine,
}

/// Generator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorOptions {
    /// Rejection-sampling restarts allowed per instance.
    pub max_attempts: usize,
    /// How generated questions are split into context and question.
    pub split_mode: SplitMode,
    pub answer_policy: AnswerPolicy,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            max_attempts: 200_000,
            split_mode: SplitMode::Sentences,
            answer_policy: AnswerPolicy::RequireAgreement,
        }
    }
}

/// A template that could not be loaded or instantiated, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateIssue {
    pub split: Split,
    /// Template id, or the file name when the file could not be parsed.
    pub template: String,
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for TemplateIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: {}", self.split, self.template, self.reason)
    }
}

/// Why an instance could not be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstantiateError {
    pub template: String,
    pub attempts: usize,
    /// Rejection reasons with their counts, most frequent first.
    pub reasons: Vec<(String, usize)>,
}

impl fmt::Display for InstantiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no valid sample in {} attempts", self.attempts)?;
        for (i, (r, n)) in self.reasons.iter().take(3).enumerate() {
            write!(f, "{} {r} (x{n})", if i == 0 { ":" } else { ";" })?;
        }
        Ok(())
    }
}

impl std::error::Error for InstantiateError {}

/// One instantiated template.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub split: Split,
    pub template: String,
    /// Sampled variables.
    pub vars: Vars,
    /// The filled-in question.
    pub question: String,
    /// The filled-in worked solution, ending with `#### <answer>`.
    pub solution: String,
    /// The gold answer (per the [`AnswerPolicy`]).
    pub answer: f64,
    /// The gold answer as text (Python's `str()` of the value, normalised).
    pub answer_text: String,
    /// The value of `#answer`.
    pub answer_line: Value,
    /// The value on the worked solution's `####` line, if it parses.
    pub solution_value: Option<f64>,
    /// Whether `#answer` equals the worked solution's `####` value.
    pub agrees: bool,
    /// Rejection-sampling attempts used.
    pub attempts: usize,
    /// False when the solution shows float noise (kept only because no clean sample was found).
    pub clean: bool,
}

/// Problems produced by [`Generator::generate_report`], with the templates that failed.
#[derive(Debug, Clone)]
pub struct GenerationReport {
    pub problems: Vec<Problem>,
    pub failed: Vec<TemplateIssue>,
}

/// Which templates can be instantiated (one try per template).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoverageReport {
    pub split: Split,
    pub total: usize,
    pub ok: Vec<String>,
    /// Load failures and instantiation failures.
    pub failed: Vec<TemplateIssue>,
}

#[derive(Debug, Clone)]
enum Step {
    Sample(usize),
    Solve { line: usize, expr: Expr },
}

#[derive(Debug, Clone)]
struct Plan {
    steps: Vec<Step>,
    /// Condition indices to check after each step.
    checks: Vec<Vec<usize>>,
}

fn is_single_sample(e: &Expr) -> bool {
    matches!(e, Expr::Call(f, args) if (f == "sample" || f == "random.choice") && args.len() == 1)
}

/// The expression for a variable's set of possible values.
pub(crate) fn domain_expr(e: &Expr) -> &Expr {
    match e {
        Expr::Call(f, args)
            if matches!(f.as_str(), "sample" | "random.choice" | "sample_sequential")
                && !args.is_empty() =>
        {
            &args[0]
        }
        other => other,
    }
}

fn build_plan(t: &Template) -> Result<Plan, String> {
    let all_vars: BTreeSet<&str> = t.variables().into_iter().collect();
    let deps_of = |e: &Expr, own: &[String]| -> BTreeSet<String> {
        e.names()
            .into_iter()
            .filter(|n| all_vars.contains(n.as_str()) && !own.contains(n))
            .collect()
    };
    // equality conditions that pin one variable down
    let mut solve: BTreeMap<usize, Expr> = BTreeMap::new();
    for c in &t.conditions {
        let Expr::Cmp(a, rest) = &c.expr else {
            continue;
        };
        if rest.len() != 1 || rest[0].0 != CmpOp::Eq {
            continue;
        }
        let b = &rest[0].1;
        for (lhs, rhs) in [(a.as_ref(), b), (b, a.as_ref())] {
            let Expr::Name(v) = lhs else { continue };
            let assigning: Vec<usize> = t
                .init
                .iter()
                .enumerate()
                .filter(|(_, l)| l.targets.contains(v))
                .map(|(i, _)| i)
                .collect();
            let [li] = assigning[..] else { continue };
            if t.init[li].targets.len() != 1 {
                continue;
            }
            if solve.contains_key(&li) || rhs.names().contains(v) {
                continue;
            }
            let line = &t.init[li];
            let calls = line.expr.calls();
            let random_domain = calls.iter().any(|f| f.contains("randint"))
                || matches!(&line.expr, Expr::Call(f, args) if f == "sample" && args.len() != 1);
            if random_domain {
                continue;
            }
            solve.insert(li, rhs.clone());
            break;
        }
    }
    let mut scheduled: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<usize> = (0..t.init.len()).collect();
    let mut steps = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|&li| {
            let line = &t.init[li];
            let mut deps = deps_of(&line.expr, &line.targets);
            if let Some(e) = solve.get(&li) {
                deps.extend(deps_of(e, &line.targets));
            }
            deps.iter().all(|d| scheduled.contains(d))
        });
        match ready {
            Some(pos) => {
                let li = pending.remove(pos);
                steps.push(match solve.get(&li) {
                    Some(e) => Step::Solve {
                        line: li,
                        expr: e.clone(),
                    },
                    None => Step::Sample(li),
                });
                scheduled.extend(t.init[li].targets.iter().cloned());
            }
            None => {
                // break a cycle by sampling a solved variable instead
                let Some(&li) = pending.iter().find(|li| solve.contains_key(li)) else {
                    return Err("#init variables depend on each other in a cycle".into());
                };
                solve.remove(&li);
            }
        }
    }
    // a condition is checked right after the last step that assigns one of its variables
    // (a variable may be assigned twice; the later assignment wins, as in Python)
    let mut last_assign: BTreeMap<&str, usize> = BTreeMap::new();
    for (si, step) in steps.iter().enumerate() {
        let li = match step {
            Step::Sample(li) | Step::Solve { line: li, .. } => *li,
        };
        for target in &t.init[li].targets {
            last_assign.insert(target.as_str(), si);
        }
    }
    let mut checks = vec![Vec::new(); steps.len().max(1)];
    for (ci, c) in t.conditions.iter().enumerate() {
        let at = deps_of(&c.expr, &[])
            .iter()
            .map(|v| last_assign.get(v.as_str()).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        checks[at].push(ci);
    }
    Ok(Plan { steps, checks })
}

/// A sampled 2-tuple `(text, number)` becomes a phrase.
pub(crate) fn to_phrase(v: Value) -> Value {
    if let Value::Tuple(items) = &v {
        if items.len() == 2
            && items[1].as_num().is_some()
            && !matches!(items[0], Value::List(_) | Value::Tuple(_))
        {
            return Value::Phrase(Box::new(Phrase {
                text: items[0].display_text(),
                value: items[1].clone(),
            }));
        }
    }
    v
}

fn pick(v: Value, rng: &mut SeededRng) -> Result<Value, EvalError> {
    match &v {
        Value::List(items) => {
            if items.is_empty() {
                return Err(EvalError("empty list".into()));
            }
            Ok(items[rng.index(items.len())].clone())
        }
        Value::Range(r) => {
            let n = r.len();
            if n == 0 {
                return Err(EvalError("empty range".into()));
            }
            r.get(rng.index(n))
                .map(Value::Int)
                .ok_or_else(|| EvalError("empty range".into()))
        }
        _ => Ok(v),
    }
}

/// The element of `domain` equal to `target`, if any.
pub(crate) fn find_in_domain(domain: &Value, target: &Value) -> Option<Value> {
    if !matches!(
        domain.scalar(),
        Value::List(_) | Value::Tuple(_) | Value::Range(_) | Value::Str(_)
    ) {
        return values_equal(domain, target).then(|| domain.clone());
    }
    if let Value::Range(r) = domain {
        let n = match target.as_num()? {
            super::value::Num::Int(i) => i,
            other => {
                let f = other.to_f64();
                if f.fract() != 0.0 || f.abs() > 9.0e18 {
                    return None;
                }
                f as i64
            }
        };
        let off = n.checked_sub(r.start)?;
        if r.step == 0 || off % r.step != 0 {
            return None;
        }
        let idx = usize::try_from(off / r.step).ok()?;
        return r.get(idx).map(Value::Int);
    }
    domain
        .items()
        .ok()?
        .into_iter()
        .map(to_phrase)
        .find(|x| values_equal(x, target))
}

fn assign(
    vars: &mut Vars,
    targets: &[String],
    value: Value,
    single_pick: bool,
    rng: &mut SeededRng,
) -> Result<(), String> {
    if targets.len() > 1 {
        let items = value.items().map_err(|e| e.to_string())?;
        if items.len() != targets.len() {
            return Err(format!(
                "cannot unpack {} values into {} names",
                items.len(),
                targets.len()
            ));
        }
        for (t, v) in targets.iter().zip(items) {
            vars.insert(t.clone(), to_phrase(v));
        }
        return Ok(());
    }
    let v = if single_pick {
        value
    } else {
        pick(value, rng).map_err(|e| e.to_string())?
    };
    vars.insert(targets[0].clone(), to_phrase(v));
    Ok(())
}

/// Whether a value placed at the end of `out` starts a sentence.
fn at_sentence_start(out: &str) -> bool {
    let t = out.trim_end();
    t.is_empty() || t.ends_with(['.', '?', '!', '\n'])
}

fn capitalize_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
        _ => s.to_string(),
    }
}

/// Collapses every run of whitespace to one space and trims.
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fills the question with the given variables.
pub fn render_question(t: &Template, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    for part in &t.question {
        match part {
            QuestionPart::Text(s) => out.push_str(s),
            QuestionPart::Var { name, .. } => {
                let v = vars
                    .get(name)
                    .ok_or_else(|| format!("question uses unassigned variable {name}"))?;
                let text = v.display_text();
                if at_sentence_start(&out) {
                    out.push_str(&capitalize_first(&text));
                } else {
                    out.push_str(&text);
                }
            }
        }
    }
    Ok(normalize_ws(&out))
}

/// Fills the worked solution; also reports whether any evaluation was fragile.
pub fn render_solution(t: &Template, vars: &Vars) -> Result<(String, bool), String> {
    let mut out = String::new();
    let mut fragile = false;
    for part in &t.solution {
        match part {
            SolutionPart::Text(s) => out.push_str(s),
            SolutionPart::Expr { src, expr } => {
                let mut ev = Evaluator::new(vars);
                let v = ev
                    .eval(expr)
                    .map_err(|e| format!("solution {{{src}}}: {e}"))?;
                fragile |= ev.fragile;
                out.push_str(&v.py_str());
            }
        }
    }
    Ok((out.trim().to_string(), fragile))
}

/// True when the text shows binary float noise (9+ decimals such as `0.30000000000000004`
/// or `10.799999999999999`).
fn has_float_noise(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' && i > 0 && b[i - 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j - i > 9 {
                let digits = &s[i + 1..j];
                if digits.contains("0000") || digits.contains("9999") {
                    return true;
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

fn answers_equal(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// Why a sample was rejected (kept cheap: formatted only for reports).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reject {
    ConditionFalse(usize),
    ConditionFragile(usize),
    Other(String),
}

impl Reject {
    fn describe(&self, t: &Template) -> String {
        match self {
            Reject::ConditionFalse(ci) => format!("condition `{}` is false", t.conditions[*ci].src),
            Reject::ConditionFragile(ci) => format!(
                "condition `{}` relies on float rounding",
                t.conditions[*ci].src
            ),
            Reject::Other(s) => s.clone(),
        }
    }
}

enum Attempt {
    Ok(Box<Instance>),
    Reject(Reject),
}

impl From<String> for Reject {
    fn from(s: String) -> Self {
        Reject::Other(s)
    }
}

/// Loads templates and generates problems from them.
#[derive(Debug, Clone)]
pub struct Generator {
    split: Split,
    templates: Vec<Template>,
    plans: Vec<Result<Plan, String>>,
    load_issues: Vec<TemplateIssue>,
    options: GeneratorOptions,
}

impl Generator {
    /// Loads every `*.json` template of `split`. `templates_dir` is either the `templates`
    /// folder (the split's subfolder is used) or the split folder itself. Files that do not
    /// parse are reported by [`Generator::issues`], not returned as errors.
    pub fn load(templates_dir: impl AsRef<Path>, split: Split) -> Result<Self, DatasetError> {
        Self::load_with(templates_dir, split, GeneratorOptions::default())
    }

    /// [`Generator::load`] with options.
    pub fn load_with(
        templates_dir: impl AsRef<Path>,
        split: Split,
        options: GeneratorOptions,
    ) -> Result<Self, DatasetError> {
        let base = templates_dir.as_ref();
        let sub = base.join(split.dir_name());
        let dir = if sub.is_dir() {
            sub
        } else {
            base.to_path_buf()
        };
        let rd = std::fs::read_dir(&dir).map_err(|e| DatasetError::io(&dir, e))?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DatasetError::Invalid {
                path: dir,
                message: "no template files".into(),
            });
        }
        let mut templates = Vec::new();
        let mut plans = Vec::new();
        let mut load_issues = Vec::new();
        for f in files {
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match Template::load(&f, split) {
                Ok(t) => {
                    let plan = build_plan(&t);
                    if let Err(reason) = &plan {
                        load_issues.push(TemplateIssue {
                            split,
                            template: t.id.clone(),
                            path: f.clone(),
                            reason: reason.clone(),
                        });
                    }
                    plans.push(plan);
                    templates.push(t);
                }
                Err(reason) => load_issues.push(TemplateIssue {
                    split,
                    template: name,
                    path: f,
                    reason,
                }),
            }
        }
        Ok(Self {
            split,
            templates,
            plans,
            load_issues,
            options,
        })
    }

    pub fn split(&self) -> Split {
        self.split
    }

    pub fn options(&self) -> &GeneratorOptions {
        &self.options
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: GeneratorOptions) -> Self {
        self.options = options;
        self
    }

    /// Every template that parsed (including ones whose sampling plan failed).
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The template with id `id`.
    pub fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id)
    }

    /// Templates that could not be parsed or planned.
    pub fn issues(&self) -> &[TemplateIssue] {
        &self.load_issues
    }

    fn attempt(&self, t: &Template, plan: &Plan, rng: &mut SeededRng) -> Attempt {
        let mut vars = Vars::new();
        for (si, step) in plan.steps.iter().enumerate() {
            let res = match step {
                Step::Sample(li) => {
                    let line = &t.init[*li];
                    let value = {
                        let mut ev = Evaluator::with_rng(&vars, rng);
                        ev.eval(&line.expr)
                    };
                    match value {
                        Ok(v) => assign(
                            &mut vars,
                            &line.targets,
                            v,
                            is_single_sample(&line.expr),
                            rng,
                        )
                        .map_err(|e| format!("init `{}`: {e}", line.src)),
                        Err(e) => Err(format!("init `{}`: {e}", line.src)),
                    }
                }
                Step::Solve { line: li, expr } => {
                    let line = &t.init[*li];
                    let solved = Evaluator::new(&vars).eval(expr);
                    let domain = {
                        let mut ev = Evaluator::with_rng(&vars, rng);
                        ev.eval(domain_expr(&line.expr))
                    };
                    match (solved, domain) {
                        (Ok(v), Ok(d)) => match find_in_domain(&d, &v) {
                            Some(x) => {
                                vars.insert(line.targets[0].clone(), x);
                                Ok(())
                            }
                            None => Err(format!(
                                "{} = {} is outside `{}`",
                                line.targets[0],
                                v.py_str(),
                                line.src
                            )),
                        },
                        (Err(e), _) | (_, Err(e)) => {
                            Err(format!("solving {}: {e}", line.targets[0]))
                        }
                    }
                }
            };
            if let Err(r) = res {
                return Attempt::Reject(Reject::Other(r));
            }
            for &ci in &plan.checks[si] {
                let c = &t.conditions[ci];
                let mut ev = Evaluator::new(&vars);
                match ev.eval(&c.expr) {
                    Ok(v) if v.truthy() => {
                        if ev.fragile {
                            return Attempt::Reject(Reject::ConditionFragile(ci));
                        }
                    }
                    Ok(_) => return Attempt::Reject(Reject::ConditionFalse(ci)),
                    Err(e) => return Attempt::Reject(format!("condition `{}`: {e}", c.src).into()),
                }
            }
        }
        if plan.steps.is_empty() {
            for c in &t.conditions {
                match Evaluator::new(&vars).eval(&c.expr) {
                    Ok(v) if v.truthy() => {}
                    _ => return Attempt::Reject(format!("condition `{}` is false", c.src).into()),
                }
            }
        }
        self.finish(t, vars)
    }

    fn finish(&self, t: &Template, vars: Vars) -> Attempt {
        let mut ev = Evaluator::new(&vars);
        let answer_line = match ev.eval(&t.answer) {
            Ok(v) => v,
            Err(e) => return Attempt::Reject(format!("#answer: {e}").into()),
        };
        if ev.fragile {
            return Attempt::Reject(Reject::Other("#answer relies on float rounding".into()));
        }
        let Some(answer_value) = answer_line.as_f64().filter(|x| x.is_finite()) else {
            return Attempt::Reject(
                format!("#answer is not a number ({})", answer_line.type_name()).into(),
            );
        };
        let question = match render_question(t, &vars) {
            Ok(q) => q,
            Err(e) => return Attempt::Reject(e.into()),
        };
        let (solution, fragile) = match render_solution(t, &vars) {
            Ok(s) => s,
            Err(e) => return Attempt::Reject(e.into()),
        };
        if fragile {
            return Attempt::Reject(Reject::Other(
                "worked solution relies on float rounding".into(),
            ));
        }
        let parsed = parse_gsm_answer(&solution).ok();
        let solution_value = parsed.as_ref().map(|a| a.value);
        let agree = solution_value.is_some_and(|s| answers_equal(s, answer_value));
        let (answer, answer_text) = match self.options.answer_policy {
            AnswerPolicy::RequireAgreement => match parsed {
                Some(a) => (a.value, a.text),
                None => {
                    return Attempt::Reject(Reject::Other(
                        "worked solution has no numeric #### line".into(),
                    ))
                }
            },
            AnswerPolicy::AnswerLine => {
                (answer_value, normalize_answer_text(&answer_line.py_str()))
            }
            AnswerPolicy::SolutionLine => match parsed {
                Some(a) => (a.value, a.text),
                None => {
                    return Attempt::Reject(Reject::Other(
                        "worked solution has no numeric #### line".into(),
                    ))
                }
            },
        };
        let clean = !has_float_noise(&solution) && !has_float_noise(&question);
        Attempt::Ok(Box::new(Instance {
            split: t.split,
            template: t.id.clone(),
            vars,
            question,
            solution,
            answer,
            answer_text,
            answer_line,
            solution_value,
            agrees: agree,
            attempts: 0,
            clean,
        }))
    }

    fn instantiate_index(
        &self,
        idx: usize,
        seed: u64,
        round: u64,
    ) -> Result<Instance, InstantiateError> {
        let t = &self.templates[idx];
        let plan = match &self.plans[idx] {
            Ok(p) => p,
            Err(reason) => {
                return Err(InstantiateError {
                    template: t.id.clone(),
                    attempts: 0,
                    reasons: vec![(reason.clone(), 1)],
                })
            }
        };
        let mut rng = SeededRng::derive(
            seed,
            &[hash_str(self.split.dir_name()), hash_str(&t.id), round],
        );
        let mut reasons: BTreeMap<Reject, usize> = BTreeMap::new();
        // best sample so far that is not perfect, ranked: agreeing but noisy, then
        // disagreeing (solution line used) and clean, then disagreeing and noisy
        let mut fallback: Option<(u8, Instance)> = None;
        let require = self.options.answer_policy == AnswerPolicy::RequireAgreement;
        for attempt in 1..=self.options.max_attempts.max(1) {
            match self.attempt(t, plan, &mut rng) {
                Attempt::Ok(mut inst) => {
                    inst.attempts = attempt;
                    let agrees = inst.agrees || !require;
                    if inst.clean && agrees {
                        return Ok(*inst);
                    }
                    let rank = match (agrees, inst.clean) {
                        (true, _) => 1,
                        (false, true) => 2,
                        (false, false) => 3,
                    };
                    let why = Reject::Other(if agrees {
                        "solution shows float noise".to_string()
                    } else {
                        "#answer disagrees with the worked solution".to_string()
                    });
                    *reasons.entry(why).or_default() += 1;
                    if fallback.as_ref().is_none_or(|(r, _)| rank < *r) {
                        fallback = Some((rank, *inst));
                    }
                }
                Attempt::Reject(r) => *reasons.entry(r).or_default() += 1,
            }
            // stop early once a fallback exists and clean samples look unlikely
            if fallback.is_some() && attempt >= 2_000 {
                break;
            }
        }
        if let Some((_, inst)) = fallback {
            return Ok(inst);
        }
        let mut reasons: Vec<(String, usize)> = reasons
            .into_iter()
            .map(|(r, n)| (r.describe(t), n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Err(InstantiateError {
            template: t.id.clone(),
            attempts: self.options.max_attempts,
            reasons,
        })
    }

    /// One instance of template `template_id` (`round` picks one of a seed's independent
    /// instances).
    pub fn instantiate(
        &self,
        template_id: &str,
        seed: u64,
        round: u64,
    ) -> Result<Instance, InstantiateError> {
        let idx = self
            .templates
            .iter()
            .position(|t| t.id == template_id)
            .ok_or_else(|| InstantiateError {
                template: template_id.to_string(),
                attempts: 0,
                reasons: vec![("no such template".into(), 1)],
            })?;
        self.instantiate_index(idx, seed, round)
    }

    fn to_problem(&self, inst: Instance, seed: u64, round: u64) -> Problem {
        let (context, question) = split_gsm(&inst.question, self.options.split_mode);
        let template = self
            .template(&inst.template)
            .map(|t| t.question_text.clone());
        Problem {
            id: format!(
                "gen-{}-s{seed}/{}-{round}",
                self.split.dir_name(),
                inst.template
            ),
            context,
            question,
            answer: inst.answer,
            answer_text: inst.answer_text,
            source: DatasetKind::GsmSymbolicGenerated(self.split),
            template_id: Some(inst.template),
            template,
            full_text: inst.question,
            solution: Some(inst.solution),
        }
    }

    /// `n` problems, reproducible from `seed`: round-robin over the templates (in file order,
    /// skipping templates that cannot be instantiated), so every usable template appears
    /// before any appears twice. Instance `r` of a template depends only on the seed, the
    /// template and `r`, so a larger `n` extends a smaller one.
    pub fn generate(&self, n: usize, seed: u64) -> Vec<Problem> {
        self.generate_report(n, seed).problems
    }

    /// [`Generator::generate`], also reporting the templates that failed.
    pub fn generate_report(&self, n: usize, seed: u64) -> GenerationReport {
        let mut problems = Vec::with_capacity(n);
        let mut failed: BTreeMap<usize, TemplateIssue> = BTreeMap::new();
        for (idx, p) in self.plans.iter().enumerate() {
            if let Err(reason) = p {
                let t = &self.templates[idx];
                failed.insert(
                    idx,
                    TemplateIssue {
                        split: self.split,
                        template: t.id.clone(),
                        path: t.path.clone(),
                        reason: reason.clone(),
                    },
                );
            }
        }
        let mut round: u64 = 0;
        while problems.len() < n {
            let mut progressed = false;
            for idx in 0..self.templates.len() {
                if problems.len() >= n {
                    break;
                }
                if failed.contains_key(&idx) {
                    continue;
                }
                match self.instantiate_index(idx, seed, round) {
                    Ok(inst) => {
                        problems.push(self.to_problem(inst, seed, round));
                        progressed = true;
                    }
                    Err(e) => {
                        let t = &self.templates[idx];
                        failed.insert(
                            idx,
                            TemplateIssue {
                                split: self.split,
                                template: t.id.clone(),
                                path: t.path.clone(),
                                reason: e.to_string(),
                            },
                        );
                    }
                }
            }
            if !progressed {
                break;
            }
            round += 1;
        }
        GenerationReport {
            problems,
            failed: failed.into_values().collect(),
        }
    }

    /// Tries one instance of every template.
    pub fn coverage(&self, seed: u64) -> CoverageReport {
        let mut ok = Vec::new();
        let mut failed: Vec<TemplateIssue> = self
            .load_issues
            .iter()
            .filter(|i| !self.templates.iter().any(|t| t.id == i.template))
            .cloned()
            .collect();
        for (idx, t) in self.templates.iter().enumerate() {
            match self.instantiate_index(idx, seed, 0) {
                Ok(_) => ok.push(t.id.clone()),
                Err(e) => failed.push(TemplateIssue {
                    split: self.split,
                    template: t.id.clone(),
                    path: t.path.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        CoverageReport {
            split: self.split,
            total: self.templates.len()
                + failed
                    .iter()
                    .filter(|i| !self.templates.iter().any(|t| t.id == i.template))
                    .count(),
            ok,
            failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(qa: &str, aa: &str) -> Template {
        let json = serde_json::json!({
            "question": "q", "answer": "a", "id_orig": 1, "id_shuffled": 3,
            "question_annotated": qa, "answer_annotated": aa,
        });
        Template::parse(&json.to_string(), Path::new("t.json"), Split::P1).expect("template parses")
    }

    fn gen_of(t: Template) -> Generator {
        let plan = build_plan(&t);
        Generator {
            split: Split::P1,
            templates: vec![t],
            plans: vec![plan],
            load_issues: vec![],
            options: GeneratorOptions::default(),
        }
    }

    #[test]
    fn samples_satisfy_conditions_and_render() {
        let t = tpl(
            "{name,Ann} has {x,4} apples and eats {frac,half} of them. How many are left?\n\n#init:\n- name = sample(names_female)\n- $x = range(2, 40)\n- $frac = sample(fraction_alnum)\n\n#conditions:\n- is_int(x * frac)\n- x > 10\n\n#answer: x - int(x * frac)",
            "{name} eats {x}*{frac} = <<{x}*{frac}={int(x*frac)}>>{int(x*frac)}.\n#### {x - int(x*frac)}",
        );
        let g = gen_of(t);
        for round in 0..30 {
            let inst = g.instantiate("3", 9, round).expect("instantiates");
            let x = inst.vars["x"].as_f64().expect("x numeric");
            assert!(x > 10.0);
            let frac = inst.vars["frac"].as_f64().expect("frac numeric");
            assert_eq!((x * frac).fract(), 0.0);
            assert_eq!(inst.answer, x - (x * frac));
            assert!(inst
                .solution
                .ends_with(&format!("#### {}", inst.answer_text)));
            assert!(!inst.question.contains('{'));
        }
        // reproducible
        assert_eq!(
            g.instantiate("3", 9, 4).expect("ok"),
            g.instantiate("3", 9, 4).expect("ok")
        );
    }

    #[test]
    fn equality_conditions_are_solved() {
        let t = tpl(
            "{a,1} and {b,2} make {c,3}. What is c?\n#init:\n- $a = range(1, 1000)\n- $b = range(1, 1000)\n- $c = range(500, 1500)\n#conditions:\n- a + b == c\n#answer: c",
            "{a} + {b} = {c}\n#### {c}",
        );
        let plan = build_plan(&t).expect("plan");
        assert!(plan.steps.iter().any(|s| matches!(s, Step::Solve { .. })));
        let g = gen_of(t);
        let inst = g.instantiate("3", 1, 0).expect("instantiates");
        let get = |k: &str| inst.vars[k].as_f64().expect("numeric");
        assert_eq!(get("a") + get("b"), get("c"));
        assert!(inst.attempts < 10);
    }

    #[test]
    fn impossible_template_reports_reasons() {
        let t = tpl(
            "{x,1} is odd and even?\n#init:\n- $x = range(1, 10)\n#conditions:\n- x % 2 == 0\n- x % 2 == 1\n#answer: x",
            "#### {x}",
        );
        let g = gen_of(t).with_options(GeneratorOptions {
            max_attempts: 200,
            ..GeneratorOptions::default()
        });
        let e = g.instantiate("3", 1, 0).expect_err("cannot instantiate");
        assert!(e.reasons[0].0.contains("is false"), "{e}");
        let rep = g.generate_report(3, 1);
        assert!(rep.problems.is_empty());
        assert_eq!(rep.failed.len(), 1);
    }

    #[test]
    fn capitalises_sentence_starts() {
        let t = tpl(
            "{o1,hay} is cheap. I like {o1,hay}.\n#init:\n- o1 = sample([\"apples\"])\n#answer: 1",
            "#### 1",
        );
        let g = gen_of(t);
        let inst = g.instantiate("3", 1, 0).expect("ok");
        assert_eq!(inst.question, "Apples is cheap. I like apples.");
    }

    #[test]
    fn float_noise_detection() {
        assert!(has_float_noise("= 0.30000000000000004 ok"));
        assert!(has_float_noise("#### 10.799999999999999"));
        assert!(!has_float_noise("0.3333 and 12.5 and 1.0"));
        assert!(!has_float_noise("0.1428571428571428"));
    }
}
