//! AIME 2024 / 2025 (MathArena's problem statements) with a stateful split.
//!
//! Letta's stateful AIME files were split by hand and are not available; this is our own
//! rule, applied to the LaTeX/markdown text:
//!
//! 1. Statements end at `.`, `?` or `!` followed by whitespace or the end of the text,
//!    outside math (`$...$`, `$$...$$`, `\(...\)`, `\[...\]`), outside diagrams (`<asy>`
//!    blocks, `\begin{...}...\end{...}` environments) and not after titles or before a
//!    lower-case word (as in [`super::split::SplitMode::Sentences`]). A math span whose
//!    content ends with `.` (`... = 10.$$`) ends a statement too, and each diagram is a
//!    statement of its own. Line breaks alone do not end statements (a question may go on
//!    after a colon with a displayed formula or a bullet list).
//! 2. The question is the **last asking statement**: one that contains `?` outside math, or
//!    the word find / compute / determine / evaluate outside math, or starts with What /
//!    How / Which. If no statement asks, the question is the last statement.
//! 3. The context is every other statement, in the original order (statements after the
//!    question, such as a trailing diagram or "Here $i=\sqrt{-1}$.", stay in the context).
//!    A problem that is one statement gets an empty context.

use std::path::Path;

use serde_json::Value as Json;

use super::{Dataset, DatasetError, DatasetKind, Problem};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Math,
    Diagram,
}

/// Finds protected regions: `(start, end, kind, ends_with_period)`.
fn regions(text: &str) -> Vec<(usize, usize, Region, bool)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        let found = if rest.starts_with("<asy>") {
            rest.find("</asy>")
                .map(|e| (e + "</asy>".len(), Region::Diagram, 5, 6))
        } else if rest.starts_with("\\begin{") {
            rest.find('}').and_then(|close| {
                let env = &rest[7..close];
                let end_tag = format!("\\end{{{env}}}");
                rest.find(&end_tag).map(|e| {
                    let kind = if env.contains("tikz") || env.contains("asy") || env == "figure" {
                        Region::Diagram
                    } else {
                        Region::Math
                    };
                    (e + end_tag.len(), kind, close + 1, end_tag.len())
                })
            })
        } else if let Some(inner) = rest.strip_prefix("$$") {
            inner.find("$$").map(|e| (e + 4, Region::Math, 2, 2))
        } else if rest.starts_with("\\[") {
            rest.find("\\]").map(|e| (e + 2, Region::Math, 2, 2))
        } else if rest.starts_with("\\(") {
            rest.find("\\)").map(|e| (e + 2, Region::Math, 2, 2))
        } else if rest.starts_with('$') && !(i > 0 && b[i - 1] == b'\\') {
            rest[1..].find('$').map(|e| (e + 2, Region::Math, 1, 1))
        } else {
            None
        };
        match found {
            Some((len, kind, open_len, close_len)) => {
                let inner = rest[open_len..len - close_len].trim_end();
                out.push((i, i + len, kind, inner.ends_with('.')));
                i += len;
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "vs", "e.g", "i.e", "cf",
];

/// Byte spans of the statements of an AIME problem (see the module docs).
pub fn statement_spans(text: &str) -> Vec<(usize, usize)> {
    let regs = regions(text);
    let mut cuts: Vec<usize> = Vec::new(); // statement end offsets
    let mut reg_iter = regs.iter().peekable();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let next_is_lower = |from: usize| -> bool {
        text[from..]
            .chars()
            .find(|c| !c.is_whitespace())
            .is_some_and(char::is_lowercase)
    };
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        // skip protected regions
        while reg_iter.peek().is_some_and(|r| r.1 <= pos) {
            reg_iter.next();
        }
        if let Some(&&(start, end, kind, period)) = reg_iter.peek() {
            if start == pos {
                if kind == Region::Diagram {
                    cuts.push(start);
                    cuts.push(end);
                } else if period {
                    let after = text[end..].chars().next();
                    if after.is_none_or(char::is_whitespace) && !next_is_lower(end) {
                        cuts.push(end);
                    }
                }
                while k < chars.len() && chars[k].0 < end {
                    k += 1;
                }
                continue;
            }
        }
        if matches!(c, '.' | '?' | '!') {
            let mut j = k;
            while j < chars.len() && matches!(chars[j].1, '.' | '?' | '!') {
                j += 1;
            }
            let only_period = j == k + 1 && c == '.';
            while j < chars.len() && matches!(chars[j].1, '"' | '\'' | ')' | '”' | '’') {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |x| x.0);
            let at_end = j >= chars.len();
            let mut boundary = at_end || chars[j].1.is_whitespace();
            if boundary && only_period && !at_end {
                let head = &text[..pos];
                let w = head
                    .rsplit(char::is_whitespace)
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                if next_is_lower(end) || TITLES.contains(&w.as_str()) {
                    boundary = false;
                }
            }
            if boundary {
                cuts.push(end);
            }
            k = j.max(k + 1);
            continue;
        }
        k += 1;
    }
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut spans = Vec::new();
    let mut prev = 0;
    for c in cuts {
        let seg = &text[prev..c];
        let lead = seg.len() - seg.trim_start().len();
        let trail = seg.len() - seg.trim_end().len();
        if seg.trim().is_empty() {
            prev = c;
            continue;
        }
        spans.push((prev + lead, c - trail));
        prev = c;
    }
    spans
}

/// The statement text with math and diagrams removed (for the asking test).
fn plain_text(stmt: &str) -> String {
    let mut out = String::new();
    let mut prev = 0;
    for (s, e, _, _) in regions(stmt) {
        out.push_str(&stmt[prev..s]);
        out.push_str(" M ");
        prev = e;
    }
    out.push_str(&stmt[prev..]);
    out
}

/// Whether a statement asks something (see the module docs).
pub fn is_asking(stmt: &str) -> bool {
    let plain = plain_text(stmt);
    if plain.contains('?') {
        return true;
    }
    let words: Vec<String> = plain
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words
        .first()
        .is_some_and(|w| matches!(w.as_str(), "what" | "how" | "which"))
    {
        return true;
    }
    words
        .iter()
        .any(|w| matches!(w.as_str(), "find" | "compute" | "determine" | "evaluate"))
}

/// Splits an AIME problem into `(context, question)` (see the module docs).
pub fn split_aime(text: &str) -> (String, String) {
    let text = text.trim();
    let spans = statement_spans(text);
    if spans.is_empty() {
        return (String::new(), String::new());
    }
    let qi = spans
        .iter()
        .rposition(|&(a, b)| is_asking(&text[a..b]))
        .unwrap_or(spans.len() - 1);
    let (qs, qe) = spans[qi];
    let before = text[..qs].trim_end();
    let after = text[qe..].trim_start();
    let context = match (before.is_empty(), after.is_empty()) {
        (true, true) => String::new(),
        (false, true) => before.to_string(),
        (true, false) => after.to_string(),
        (false, false) => format!("{before}\n{after}"),
    };
    (context, text[qs..qe].to_string())
}

fn answer_int(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Loads an AIME JSONL: MathArena's assembled files (`id` such as `2024-I-1`, `year`,
/// `problem`, integer `answer`) or similar files with `problem`/`question` and an integer
/// (or integer-string) `answer`. Ids become `aime2024/I-1`; the kind comes from `year` (or
/// the id prefix).
pub fn load_aime(path: impl AsRef<Path>) -> Result<Dataset, DatasetError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let mut problems = Vec::new();
    let mut years = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Json = serde_json::from_str(line).map_err(|source| DatasetError::Json {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        let problem = v
            .get("problem")
            .or_else(|| v.get("question"))
            .and_then(Json::as_str)
            .ok_or(DatasetError::MissingField {
                path: path.to_path_buf(),
                line: line_no,
                field: "problem",
            })?;
        let answer =
            v.get("answer")
                .and_then(answer_int)
                .ok_or_else(|| DatasetError::BadAnswer {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: "AIME answer must be an integer".into(),
                })?;
        let raw_id = match v.get("id") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => line_no.to_string(),
        };
        let year = v.get("year").and_then(Json::as_i64).or_else(|| {
            raw_id
                .split('-')
                .next()
                .and_then(|y| y.parse().ok())
                .filter(|y| (1983..2100).contains(y))
        });
        let (source, id) = match year {
            Some(y) => {
                years.insert(y);
                let rest = raw_id
                    .strip_prefix(&format!("{y}-"))
                    .unwrap_or(&raw_id)
                    .to_string();
                let kind = match y {
                    2024 => DatasetKind::Aime2024,
                    2025 => DatasetKind::Aime2025,
                    _ => DatasetKind::Custom,
                };
                (kind, format!("aime{y}/{rest}"))
            }
            None => (DatasetKind::Custom, format!("aime/{raw_id}")),
        };
        let full_text = problem.trim().to_string();
        let (context, question) = split_aime(&full_text);
        problems.push(Problem {
            id,
            context,
            question,
            answer: answer as f64,
            answer_text: answer.to_string(),
            source,
            template_id: None,
            template: None,
            full_text,
            solution: v.get("solution").and_then(Json::as_str).map(str::to_string),
        });
    }
    let name = match years.iter().collect::<Vec<_>>().as_slice() {
        [y] => format!("aime-{y}"),
        _ => "aime".to_string(),
    };
    Ok(Dataset { name, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_find_is_the_question() {
        let t = "Alice and Bob play a game. The player who removes the last token wins. Find the number of positive integers $n \\le 2024$ such that Bob wins.";
        let (c, q) = split_aime(t);
        assert_eq!(
            c,
            "Alice and Bob play a game. The player who removes the last token wins."
        );
        assert!(q.starts_with("Find the number"));
    }

    #[test]
    fn periods_inside_math_do_not_split_but_can_end_a_statement() {
        let t = "There exist reals $x$ and $y$ with $$\\log_x(y^x) = 10.$$ Find $xy$.";
        let (c, q) = split_aime(t);
        assert_eq!(
            c,
            "There exist reals $x$ and $y$ with $$\\log_x(y^x) = 10.$$"
        );
        assert_eq!(q, "Find $xy$.");
        let t = "Let $a = 1.5$ and $b=2$. Find $a+b.$ Here $i=\\sqrt{-1}.$";
        let (c, q) = split_aime(t);
        assert_eq!(q, "Find $a+b.$");
        assert_eq!(c, "Let $a = 1.5$ and $b=2$.\nHere $i=\\sqrt{-1}.$");
    }

    #[test]
    fn question_mark_and_single_statement() {
        assert_eq!(
            split_aime("What is $1+1$?"),
            (String::new(), "What is $1+1$?".to_string())
        );
        let (c, q) =
            split_aime("A set has $m/n$ elements. If it is nonempty, find $m+n$. Note that $m>0$.");
        assert_eq!(q, "If it is nonempty, find $m+n$.");
        assert_eq!(c, "A set has $m/n$ elements.\nNote that $m>0$.");
    }

    #[test]
    fn diagrams_are_statements() {
        let t = "Find the area of $ABC$.\n<asy>draw((0,0)--(1,1)); label(\"A. B\", (0,0));</asy>";
        let (c, q) = split_aime(t);
        assert_eq!(q, "Find the area of $ABC$.");
        assert!(c.starts_with("<asy>"));
    }

    #[test]
    fn no_asking_statement_falls_back_to_last() {
        let (c, q) = split_aime("A is 1. B is 2.");
        assert_eq!((c.as_str(), q.as_str()), ("A is 1.", "B is 2."));
    }
}
