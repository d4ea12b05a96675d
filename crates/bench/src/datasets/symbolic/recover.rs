//! Checking our template evaluator against Apple's released rows.
//!
//! For a released row we rebuild the variable assignment from the question text: the
//! template's annotated question becomes a regular expression with one capture group per
//! placeholder (numbers for numeric ranges, the literal alternatives for `sample([...])`
//! over a list written in the template, words for `numbers_within`, anything otherwise),
//! and each captured text is turned back into a value (numbers, fractions such as
//! "two-fifths", multipliers such as "thrice", number words, or the matching element of
//! the variable's domain). Variables that the question does not show (for example `ans` in
//! "... how many bouncy balls came in the tube?") are enumerated over their domain and kept
//! when every `#conditions` line holds. Then `#answer` and the worked solution are
//! evaluated and compared with the row's `#### N` and answer text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::eval::{Evaluator, Vars};
use super::generator::{domain_expr, find_in_domain, normalize_ws, render_solution, to_phrase};
use super::template::{QuestionPart, Template};
use super::value::{Phrase, Value};
use super::words::{parse_number_words, parse_quantity};
use super::{Generator, Split};
use crate::datasets::answer::parse_gsm_answer;
use crate::datasets::rng::SeededRng;
use crate::datasets::DatasetError;

/// How one released row compares with our evaluation of its template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// `#answer` evaluated on the recovered variables equals the released `#### N`.
    Agree,
    /// `#answer` differs, but the worked solution's `####` line (which is what Apple
    /// released) equals it: the template's `#answer` and its solution disagree.
    AgreeSolutionOnly { answer_line: f64 },
    /// Neither matches.
    Mismatch { ours: f64, released: f64 },
    /// The question text does not fit the template pattern.
    NoMatch(String),
    /// Recovery or evaluation failed.
    Error(String),
}

/// Result for one released row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowCheck {
    pub template: String,
    pub instance: String,
    pub outcome: CheckOutcome,
    /// Our rendering of the worked solution equals the released answer text exactly.
    pub solution_text_matches: bool,
    /// Every `#conditions` line holds for the recovered values.
    pub conditions_hold: bool,
    /// More than one assignment of the hidden variables fits (with different answers).
    pub ambiguous: bool,
}

/// Per-template summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub rows: usize,
    pub agree: usize,
    pub agree_solution_only: usize,
    pub mismatch: usize,
    pub no_match: usize,
    pub error: usize,
    pub solution_text_matches: usize,
    pub conditions_hold: usize,
}

/// All row checks of a released file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseReport {
    pub split: Split,
    pub rows: Vec<RowCheck>,
}

impl ReleaseReport {
    /// Summary per template id (numeric order).
    pub fn per_template(&self) -> BTreeMap<i64, (String, TemplateSummary)> {
        let mut out: BTreeMap<i64, (String, TemplateSummary)> = BTreeMap::new();
        for r in &self.rows {
            let key = r.template.parse::<i64>().unwrap_or(i64::MAX);
            let e = out
                .entry(key)
                .or_insert_with(|| (r.template.clone(), TemplateSummary::default()));
            let s = &mut e.1;
            s.rows += 1;
            match r.outcome {
                CheckOutcome::Agree => s.agree += 1,
                CheckOutcome::AgreeSolutionOnly { .. } => s.agree_solution_only += 1,
                CheckOutcome::Mismatch { .. } => s.mismatch += 1,
                CheckOutcome::NoMatch(_) => s.no_match += 1,
                CheckOutcome::Error(_) => s.error += 1,
            }
            s.solution_text_matches += usize::from(r.solution_text_matches);
            s.conditions_hold += usize::from(r.conditions_hold);
        }
        out
    }

    /// Rows whose `#answer` agrees with the release.
    pub fn agree_count(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome == CheckOutcome::Agree)
            .count()
    }

    /// Templates all of whose rows agree on `#answer`.
    pub fn agreeing_templates(&self) -> Vec<String> {
        self.per_template()
            .into_values()
            .filter(|(_, s)| s.rows > 0 && s.agree == s.rows)
            .map(|(id, _)| id)
            .collect()
    }

    /// Templates all of whose rows agree on `#answer` or on the worked solution.
    pub fn agreeing_templates_any(&self) -> Vec<String> {
        self.per_template()
            .into_values()
            .filter(|(_, s)| s.rows > 0 && s.agree + s.agree_solution_only == s.rows)
            .map(|(id, _)| id)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Numeric(Value),
    Choice(Value),
    Words(Value),
    Free(Option<Value>),
}

fn domain_of(t: &Template, name: &str, vars: &Vars) -> Option<Value> {
    let line = t.init_for(name)?;
    let mut rng = SeededRng::new(0);
    Evaluator::with_rng(vars, &mut rng)
        .eval(domain_expr(&line.expr))
        .ok()
}

fn kind_of(t: &Template, name: &str) -> Kind {
    let Some(line) = t.init_for(name) else {
        return Kind::Free(None);
    };
    let Some(domain) = domain_of(t, name, &Vars::new()) else {
        return Kind::Free(None);
    };
    let uses_named_list = domain_expr(&line.expr)
        .names()
        .iter()
        .any(|n| super::words::named_list(n).is_some());
    if matches!(domain, Value::Range(_)) {
        return Kind::Numeric(domain);
    }
    let Ok(items) = domain.items() else {
        return Kind::Free(Some(domain));
    };
    let items: Vec<Value> = items.into_iter().map(to_phrase).collect();
    if !items.is_empty()
        && items
            .iter()
            .all(|v| matches!(v, Value::Int(_) | Value::Float(_)))
    {
        return Kind::Numeric(domain);
    }
    let is_calls_numbers_within = line.expr.calls().contains("numbers_within");
    if is_calls_numbers_within {
        return Kind::Words(domain);
    }
    if !uses_named_list && !items.is_empty() {
        return Kind::Choice(Value::List(items));
    }
    Kind::Free(Some(Value::List(items)))
}

fn pattern_for(kind: &Kind) -> String {
    match kind {
        Kind::Numeric(_) => r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)".to_string(),
        Kind::Words(_) => r"([A-Za-z][A-Za-z -]*?)".to_string(),
        Kind::Choice(list) => {
            let mut texts: Vec<String> = list
                .items()
                .unwrap_or_default()
                .iter()
                .map(|v| normalize_ws(&v.display_text()))
                .collect();
            texts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            texts.dedup();
            let alts: Vec<String> = texts
                .iter()
                .map(|t| regex::escape(t).replace(r"\ ", r"\s+").replace(' ', r"\s+"))
                .collect();
            format!("({})", alts.join("|"))
        }
        Kind::Free(_) => "(.+?)".to_string(),
    }
}

fn text_pattern(s: &str) -> String {
    let mut out = String::new();
    let mut in_ws = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !in_ws {
                out.push_str(r"\s+");
            }
            in_ws = true;
        } else {
            in_ws = false;
            out.push_str(&regex::escape(&c.to_string()));
        }
    }
    out
}

/// A compiled question pattern for one template.
#[derive(Debug)]
pub struct QuestionMatcher {
    regex: Regex,
    /// Variable name of each capture group.
    groups: Vec<String>,
    kinds: BTreeMap<String, Kind>,
}

impl QuestionMatcher {
    /// Builds the matcher for a template.
    pub fn new(t: &Template) -> Result<Self, String> {
        let mut pat = String::from(r"(?is)^\s*");
        let mut groups = Vec::new();
        let mut kinds = BTreeMap::new();
        for part in &t.question {
            match part {
                QuestionPart::Text(s) => pat.push_str(&text_pattern(s)),
                QuestionPart::Var { name, .. } => {
                    let kind = kinds
                        .entry(name.clone())
                        .or_insert_with(|| kind_of(t, name));
                    pat.push_str(&pattern_for(kind));
                    groups.push(name.clone());
                }
            }
        }
        pat.push_str(r"\s*$");
        let regex = Regex::new(&pat).map_err(|e| format!("pattern: {e}"))?;
        Ok(Self {
            regex,
            groups,
            kinds,
        })
    }

    /// Values of the placeholders shown in `question`.
    pub fn capture(&self, question: &str) -> Result<Vars, String> {
        let q = normalize_ws(question);
        let caps = self
            .regex
            .captures(&q)
            .ok_or("question does not match the template")?;
        let mut texts: BTreeMap<&str, String> = BTreeMap::new();
        for (i, name) in self.groups.iter().enumerate() {
            let text = caps
                .get(i + 1)
                .map_or("", |m| m.as_str())
                .trim()
                .to_string();
            match texts.get(name.as_str()) {
                Some(prev)
                    if !prev.eq_ignore_ascii_case(&text)
                        && prev.to_lowercase() != text.to_lowercase() =>
                {
                    return Err(format!(
                        "placeholder {name} captured both {prev:?} and {text:?}"
                    ));
                }
                Some(_) => {}
                None => {
                    texts.insert(name, text);
                }
            }
        }
        let mut vars = Vars::new();
        for (name, text) in texts {
            let kind = self.kinds.get(name).cloned().unwrap_or(Kind::Free(None));
            vars.insert(name.to_string(), value_from_text(&kind, &text)?);
        }
        Ok(vars)
    }
}

fn value_from_text(kind: &Kind, text: &str) -> Result<Value, String> {
    let by_text = |list: &Value| -> Option<Value> {
        list.items()
            .ok()?
            .into_iter()
            .map(to_phrase)
            .find(|v| normalize_ws(&v.display_text()).to_lowercase() == text.to_lowercase())
    };
    match kind {
        Kind::Numeric(domain) => {
            let v = parse_quantity(text).ok_or_else(|| format!("{text:?} is not a number"))?;
            Ok(find_in_domain(domain, &v).unwrap_or(v))
        }
        Kind::Words(domain) => {
            let n = parse_number_words(text)
                .or_else(|| text.replace(',', "").parse().ok())
                .ok_or_else(|| format!("{text:?} is not a number in words"))?;
            Ok(find_in_domain(domain, &Value::Int(n)).unwrap_or(Value::Int(n)))
        }
        Kind::Choice(list) => {
            by_text(list).ok_or_else(|| format!("{text:?} is not one of the choices"))
        }
        Kind::Free(domain) => {
            if let Some(v) = domain.as_ref().and_then(by_text) {
                return Ok(v);
            }
            let numeric_domain =
                domain
                    .as_ref()
                    .and_then(|d| d.items().ok())
                    .is_some_and(|items| {
                        items.iter().any(|v| {
                            matches!(v.scalar(), Value::Int(_) | Value::Float(_) | Value::Frac(_))
                        })
                    });
            match parse_quantity(text) {
                Some(v) if numeric_domain || domain.is_none() => {
                    if text.chars().any(char::is_alphabetic) || text.contains('/') {
                        Ok(Value::Phrase(Box::new(Phrase {
                            text: text.to_string(),
                            value: v,
                        })))
                    } else {
                        Ok(v)
                    }
                }
                _ => Ok(Value::Str(text.to_string())),
            }
        }
    }
}

fn answers_equal(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

const MAX_HIDDEN_COMBINATIONS: usize = 200_000;

/// Every assignment of the template's variables consistent with `question`: the shown
/// placeholders are read from the text, hidden variables are enumerated over their domains
/// and kept when all conditions hold. Returns the assignments and whether the conditions
/// held (when nothing is hidden, the single assignment is returned even if they fail).
pub fn recover(
    t: &Template,
    matcher: &QuestionMatcher,
    question: &str,
) -> Result<(Vec<Vars>, bool), String> {
    let shown = matcher.capture(question)?;
    let hidden: Vec<String> = t
        .variables()
        .into_iter()
        .filter(|v| !shown.contains_key(*v))
        .map(str::to_string)
        .collect();
    let conditions_hold = |vars: &Vars| -> bool {
        t.conditions
            .iter()
            .all(|c| Evaluator::new(vars).eval(&c.expr).is_ok_and(|v| v.truthy()))
    };
    if hidden.is_empty() {
        let ok = conditions_hold(&shown);
        return Ok((vec![shown], ok));
    }
    let mut domains: Vec<Vec<Value>> = Vec::new();
    for h in &hidden {
        let d = domain_of(t, h, &shown)
            .ok_or_else(|| format!("cannot enumerate hidden variable {h}"))?;
        let items: Vec<Value> = match d {
            Value::Range(r) if r.len() > MAX_HIDDEN_COMBINATIONS => {
                return Err(format!("hidden variable {h} has too many values"))
            }
            other => other
                .items()
                .map_err(|e| format!("hidden variable {h}: {e}"))?
                .into_iter()
                .map(to_phrase)
                .collect(),
        };
        if items.is_empty() {
            return Err(format!("hidden variable {h} has an empty domain"));
        }
        domains.push(items);
    }
    let total = domains
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(d.len()));
    if total.is_none_or(|n| n > MAX_HIDDEN_COMBINATIONS) {
        return Err("too many hidden-variable combinations".into());
    }
    let mut out = Vec::new();
    let mut idx = vec![0usize; domains.len()];
    loop {
        let mut vars = shown.clone();
        for (k, h) in hidden.iter().enumerate() {
            vars.insert(h.clone(), domains[k][idx[k]].clone());
        }
        if conditions_hold(&vars) {
            out.push(vars);
        }
        // next combination
        let mut k = 0;
        loop {
            if k == idx.len() {
                if out.is_empty() {
                    return Err("no value of the hidden variables satisfies the conditions".into());
                }
                return Ok((out, true));
            }
            idx[k] += 1;
            if idx[k] < domains[k].len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
}

/// Compares one released row (question text, GSM answer field) with the template.
pub fn check_row(
    t: &Template,
    matcher: &QuestionMatcher,
    instance: &str,
    question: &str,
    answer_field: &str,
) -> RowCheck {
    let mut row = RowCheck {
        template: t.id.clone(),
        instance: instance.to_string(),
        outcome: CheckOutcome::Error(String::new()),
        solution_text_matches: false,
        conditions_hold: false,
        ambiguous: false,
    };
    let released = match parse_gsm_answer(answer_field) {
        Ok(a) => a.value,
        Err(e) => {
            row.outcome = CheckOutcome::Error(format!("released answer: {e}"));
            return row;
        }
    };
    let (candidates, hold) = match recover(t, matcher, question) {
        Ok(x) => x,
        Err(e) => {
            row.outcome = if e.contains("does not match") {
                CheckOutcome::NoMatch(e)
            } else {
                CheckOutcome::Error(e)
            };
            return row;
        }
    };
    row.conditions_hold = hold;
    let released_text = answer_field.trim();
    let mut answers: Vec<f64> = Vec::new();
    let mut solution_values: Vec<f64> = Vec::new();
    let mut first_error: Option<String> = None;
    for vars in &candidates {
        match Evaluator::new(vars).eval(&t.answer) {
            Ok(v) => match v.as_f64() {
                Some(x) => answers.push(x),
                None => first_error = first_error.or(Some(format!("#answer is {}", v.type_name()))),
            },
            Err(e) => first_error = first_error.or(Some(format!("#answer: {e}"))),
        }
        if let Ok((sol, _)) = render_solution(t, vars) {
            if sol == released_text {
                row.solution_text_matches = true;
            }
            if let Ok(a) = parse_gsm_answer(&sol) {
                solution_values.push(a.value);
            }
        }
    }
    let mut distinct = answers.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|a, b| answers_equal(*a, *b));
    row.ambiguous = distinct.len() > 1;
    row.outcome = if answers.iter().any(|&a| answers_equal(a, released)) {
        CheckOutcome::Agree
    } else if solution_values.iter().any(|&s| answers_equal(s, released)) {
        CheckOutcome::AgreeSolutionOnly {
            answer_line: answers.first().copied().unwrap_or(f64::NAN),
        }
    } else if let Some(&ours) = answers.first() {
        CheckOutcome::Mismatch { ours, released }
    } else {
        CheckOutcome::Error(first_error.unwrap_or_else(|| "no answer".into()))
    };
    row
}

/// Checks every row of a released GSM-Symbolic file (such as `GSM_p2.jsonl`) against the
/// templates of `split` under `templates_dir`. `per_template` limits how many rows of each
/// template are checked (`None`: all).
pub fn check_release(
    templates_dir: impl AsRef<Path>,
    released: impl AsRef<Path>,
    split: Split,
    per_template: Option<usize>,
) -> Result<ReleaseReport, DatasetError> {
    let gen = Generator::load(templates_dir, split)?;
    let path: PathBuf = released.as_ref().to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, e))?;
    let mut matchers: BTreeMap<String, Result<QuestionMatcher, String>> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|source| DatasetError::Json {
                path: path.clone(),
                line: i + 1,
                source,
            })?;
        let id = match v.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(DatasetError::MissingField {
                    path: path.clone(),
                    line: i + 1,
                    field: "id",
                })
            }
        };
        let instance = v
            .get("instance")
            .map_or_else(|| (i + 1).to_string(), |x| x.to_string());
        let count = seen.entry(id.clone()).or_default();
        if per_template.is_some_and(|m| *count >= m) {
            continue;
        }
        *count += 1;
        let question = v
            .get("question")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let answer = v
            .get("answer")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let Some(t) = gen.template(&id) else {
            rows.push(RowCheck {
                template: id,
                instance,
                outcome: CheckOutcome::Error("no template with this id".into()),
                solution_text_matches: false,
                conditions_hold: false,
                ambiguous: false,
            });
            continue;
        };
        let m = matchers
            .entry(id.clone())
            .or_insert_with(|| QuestionMatcher::new(t));
        match m {
            Ok(m) => rows.push(check_row(t, m, &instance, question, answer)),
            Err(e) => rows.push(RowCheck {
                template: id,
                instance,
                outcome: CheckOutcome::Error(e.clone()),
                solution_text_matches: false,
                conditions_hold: false,
                ambiguous: false,
            }),
        }
    }
    Ok(ReleaseReport { split, rows })
}
