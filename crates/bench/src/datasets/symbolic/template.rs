//! Parsing of one GSM-Symbolic template file (`templates/{symbolic,p1,p2}/NNNN.json`).
//!
//! A template's `question_annotated` is the question text with `{var,default}` placeholders,
//! followed by `#init:` (one `- [$]a[, b...] = expr` line per sampled variable),
//! `#conditions:` (one `- expr` line each) and `#answer: expr` (also written `#answer =`
//! or `#answer: {expr}` in three files). `answer_annotated` is the worked solution: literal
//! text, `{expr}` parts to evaluate and `<<...>>` calculator annotations, which the released
//! rows drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::expr::Expr;
use super::Split;

/// One parsed `#init` line.
#[derive(Debug, Clone)]
pub struct InitLine {
    /// Assigned names (several for `a, b = sample(xs, 2)`), without `$`.
    pub targets: Vec<String>,
    /// Whether the line was written with a `$` (the templates mark numeric variables so).
    pub numeric: bool,
    pub src: String,
    pub expr: Expr,
}

/// A piece of the question text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuestionPart {
    Text(String),
    /// `{name,default}`
    Var {
        name: String,
        default: String,
    },
}

/// A piece of the worked solution.
#[derive(Debug, Clone)]
pub enum SolutionPart {
    Text(String),
    Expr { src: String, expr: Expr },
}

/// A condition line.
#[derive(Debug, Clone)]
pub struct Condition {
    pub src: String,
    pub expr: Expr,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub split: Split,
    /// `id_shuffled`: matches `id` in the released generated files.
    pub id: String,
    pub path: PathBuf,
    /// GSM8K test index of the original question.
    pub original_id: i64,
    pub original_question: String,
    pub original_answer: String,
    /// The question as the template file writes it, with its `{var,default}` placeholders:
    /// the text of `question_annotated` before `#init:`, trimmed.
    pub question_text: String,
    pub question: Vec<QuestionPart>,
    pub init: Vec<InitLine>,
    pub conditions: Vec<Condition>,
    pub answer_src: String,
    pub answer: Expr,
    pub solution: Vec<SolutionPart>,
}

#[derive(Deserialize)]
struct RawTemplate {
    question: String,
    answer: String,
    id_orig: serde_json::Value,
    id_shuffled: serde_json::Value,
    question_annotated: String,
    answer_annotated: String,
}

fn json_id(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The question part of a template's `question_annotated` (the text before `#init:`,
/// trimmed), with its placeholders as written; the whole text when there is no `#init:`.
pub fn annotated_question_text(question_annotated: &str) -> String {
    let qa = question_annotated.replace("\r\n", "\n");
    let end = qa.find("#init:").unwrap_or(qa.len());
    qa[..end].trim().to_string()
}

/// The question text with placeholders ([`annotated_question_text`]) of every template file
/// in `dir` (`templates/{symbolic,p1,p2}`), keyed by template id (`id_shuffled`). Only these
/// two fields are read, so a template the generator cannot parse still has its text here.
/// Files that cannot be read or lack the fields are skipped; a missing folder gives an empty
/// map.
pub fn question_texts(dir: &Path) -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct Fields {
        id_shuffled: serde_json::Value,
        question_annotated: String,
    }
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(fields) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Fields>(&text).ok())
        else {
            continue;
        };
        out.insert(
            json_id(&fields.id_shuffled),
            annotated_question_text(&fields.question_annotated),
        );
    }
    out
}

/// Splits question text into literal text and `{name,default}` placeholders.
pub fn parse_question(text: &str) -> Result<Vec<QuestionPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or("unclosed '{' in question")?;
        if open > 0 {
            parts.push(QuestionPart::Text(rest[..open].to_string()));
        }
        let inner = &rest[open + 1..close];
        let (name, default) = inner.split_once(',').unwrap_or((inner, ""));
        let name = name.trim().trim_start_matches('$').to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("bad placeholder {{{inner}}}"));
        }
        parts.push(QuestionPart::Var {
            name,
            default: default.trim().to_string(),
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(QuestionPart::Text(rest.to_string()));
    }
    Ok(parts)
}

/// Splits a worked solution into text and `{expr}` parts, dropping `<<...>>` annotations.
pub fn parse_solution(text: &str) -> Result<Vec<SolutionPart>, String> {
    // Runs of spaces in the template text are single spaces in Apple's released rows (the
    // double spaces left where an annotation is dropped, as in "=  8.", are kept).
    let mut squeezed = String::with_capacity(text.len());
    for c in text.chars() {
        if c == ' ' && squeezed.ends_with(' ') {
            continue;
        }
        squeezed.push(c);
    }
    // drop calculator annotations
    let mut stripped = String::with_capacity(text.len());
    let mut rest = squeezed.as_str();
    while let Some(open) = rest.find("<<") {
        stripped.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        // one template (symbolic/0084) closes an annotation with a single '>'
        let close = match (after.find(">>"), after.find(">{")) {
            (Some(a), Some(b)) if b < a => Some((b, 1)),
            (Some(a), _) => Some((a, 2)),
            (None, Some(b)) => Some((b, 1)),
            (None, None) => None,
        };
        match close {
            Some((c, len)) => rest = &after[c + len..],
            None => return Err("unclosed '<<' in solution".into()),
        }
    }
    stripped.push_str(rest);
    let mut parts = Vec::new();
    let mut rest = stripped.as_str();
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or("unclosed '{' in solution")?;
        if open > 0 {
            parts.push(SolutionPart::Text(rest[..open].to_string()));
        }
        let src = rest[open + 1..close].trim().to_string();
        let expr = Expr::parse(&src).map_err(|e| format!("solution expression {{{src}}}: {e}"))?;
        parts.push(SolutionPart::Expr { src, expr });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(SolutionPart::Text(rest.to_string()));
    }
    Ok(parts)
}

fn assignment_split(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'=' {
            let prev = if i > 0 { bytes[i - 1] } else { b' ' };
            let next = bytes.get(i + 1).copied().unwrap_or(b' ');
            if next != b'=' && !matches!(prev, b'=' | b'<' | b'>' | b'!') {
                return Some((&line[..i], &line[i + 1..]));
            }
        }
    }
    None
}

fn parse_init_line(line: &str) -> Result<InitLine, String> {
    let (lhs, rhs) =
        assignment_split(line).ok_or_else(|| format!("init line without '=': {line}"))?;
    let numeric = lhs.contains('$');
    let targets: Vec<String> = lhs
        .split(',')
        .map(|t| t.trim().trim_start_matches('$').trim().to_string())
        .collect();
    if targets
        .iter()
        .any(|t| t.is_empty() || !t.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return Err(format!("bad init targets: {line}"));
    }
    let src = rhs.trim().to_string();
    let expr = Expr::parse(&src).map_err(|e| format!("init `{line}`: {e}"))?;
    Ok(InitLine {
        targets,
        numeric,
        src,
        expr,
    })
}

fn strip_braces(s: &str) -> &str {
    let t = s.trim();
    if t.starts_with('{') && t.ends_with('}') {
        t[1..t.len() - 1].trim()
    } else {
        t
    }
}

impl Template {
    /// Reads and parses one template file.
    pub fn load(path: &Path, split: Split) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, path, split)
    }

    /// Parses template JSON text (`path` is only recorded).
    pub fn parse(json: &str, path: &Path, split: Split) -> Result<Self, String> {
        let raw: RawTemplate =
            serde_json::from_str(json).map_err(|e| format!("bad template JSON: {e}"))?;
        let qa = raw.question_annotated.replace("\r\n", "\n");
        let init_at = qa.find("#init:").ok_or("no #init: section")?;
        let question_text = qa[..init_at].trim().to_string();
        let question = parse_question(&question_text)?;
        let body = &qa[init_at..];

        #[derive(PartialEq)]
        enum Sec {
            Init,
            Cond,
            Other,
        }
        let mut sec = Sec::Other;
        let mut init = Vec::new();
        let mut conditions = Vec::new();
        let mut answer_src: Option<String> = None;
        for raw_line in body.lines() {
            let line = raw_line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("#init:") {
                sec = Sec::Init;
                if !rest.trim().is_empty() {
                    return Err("text after #init:".into());
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("#conditions:") {
                sec = Sec::Cond;
                if !rest.trim().is_empty() {
                    return Err("text after #conditions:".into());
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("#answer") {
                let rest = rest.trim_start();
                let rest = rest
                    .strip_prefix(':')
                    .or_else(|| rest.strip_prefix('='))
                    .ok_or("malformed #answer line")?;
                answer_src = Some(strip_braces(rest).to_string());
                sec = Sec::Other;
                continue;
            }
            let Some(item) = line.strip_prefix('-') else {
                if sec == Sec::Other && answer_src.is_some() {
                    // continuation of the answer expression
                    if let Some(a) = answer_src.as_mut() {
                        a.push(' ');
                        a.push_str(line);
                    }
                    continue;
                }
                return Err(format!("unexpected line: {line}"));
            };
            match sec {
                Sec::Init => init.push(parse_init_line(item.trim())?),
                Sec::Cond => {
                    let src = item.trim().to_string();
                    let expr = Expr::parse(&src).map_err(|e| format!("condition `{src}`: {e}"))?;
                    conditions.push(Condition { src, expr });
                }
                Sec::Other => return Err(format!("list item outside a section: {line}")),
            }
        }
        let answer_src = answer_src.ok_or("no #answer")?;
        let answer =
            Expr::parse(&answer_src).map_err(|e| format!("#answer `{answer_src}`: {e}"))?;
        let solution = parse_solution(&raw.answer_annotated)?;
        Ok(Self {
            split,
            id: json_id(&raw.id_shuffled),
            path: path.to_path_buf(),
            original_id: raw.id_orig.as_i64().unwrap_or(-1),
            original_question: raw.question,
            original_answer: raw.answer,
            question_text,
            question,
            init,
            conditions,
            answer_src,
            answer,
            solution,
        })
    }

    /// All variables assigned by `#init`, in order of first assignment.
    pub fn variables(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.init.iter().flat_map(|l| l.targets.iter()) {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }

    /// Names used as placeholders in the question, in order of first use.
    pub fn question_variables(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.question {
            if let QuestionPart::Var { name, .. } = p {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The question as written in the template, with every placeholder at its default.
    pub fn default_question(&self) -> String {
        self.question
            .iter()
            .map(|p| match p {
                QuestionPart::Text(t) => t.as_str(),
                QuestionPart::Var { default, .. } => default.as_str(),
            })
            .collect()
    }

    /// The init line that assigns `name` (the last one, if several do: it wins).
    pub fn init_for(&self, name: &str) -> Option<&InitLine> {
        self.init
            .iter()
            .rev()
            .find(|l| l.targets.iter().any(|t| t == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_placeholders() {
        let q = parse_question("{n, Benny} saw a {x,10}-foot {big_fish,shark}.").expect("parses");
        assert_eq!(q.len(), 6);
        assert_eq!(
            q[0],
            QuestionPart::Var {
                name: "n".into(),
                default: "Benny".into()
            }
        );
        assert_eq!(q[1], QuestionPart::Text(" saw a ".into()));
    }

    #[test]
    fn solution_drops_calculator_annotations() {
        let s = parse_solution("{k} - {k}*{frac} = <<{k}-{k}*{frac}>> {int(k*(1-frac))}.")
            .expect("parses");
        let text: Vec<String> = s
            .iter()
            .map(|p| match p {
                SolutionPart::Text(t) => t.clone(),
                SolutionPart::Expr { src, .. } => format!("[{src}]"),
            })
            .collect();
        assert_eq!(text.concat(), "[k] - [k]*[frac] =  [int(k*(1-frac))].");
    }

    #[test]
    fn tolerates_annotation_closed_by_single_bracket() {
        let s = parse_solution("= {cur}<<{a}-{b}={a-b}>{a-b}\n#### {a-b}").expect("parses");
        let exprs = s
            .iter()
            .filter(|p| matches!(p, SolutionPart::Expr { .. }))
            .count();
        assert_eq!(exprs, 3);
    }

    #[test]
    fn parses_a_small_template() {
        let json = r##"{"question": "q", "answer": "a", "id_orig": 5, "id_shuffled": 7,
          "question_annotated": "{n, Ann} has {x,3} cats.\n\n#init:\n- n = sample(names)\n- $x = range(2, 9)\n\n#conditions:\n- x > 2\n\n#answer = {x * 2}",
          "answer_annotated": "{n} has {x} * 2 = <<{x}*2={x*2}>>{x*2} paws.\n#### {x*2}"}"##;
        let t = Template::parse(json, Path::new("x.json"), Split::P2).expect("parses");
        assert_eq!(t.id, "7");
        assert_eq!(t.variables(), ["n", "x"]);
        assert!(t.init[1].numeric);
        assert_eq!(t.conditions.len(), 1);
        assert_eq!(t.answer_src, "x * 2");
        assert_eq!(t.default_question(), "Ann has 3 cats.");
        assert_eq!(t.question_text, "{n, Ann} has {x,3} cats.");
    }
}
