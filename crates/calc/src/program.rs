//! The lenient front end: model output in, statements and skipped lines out.

use std::collections::HashMap;
use std::fmt;

use crate::error::CalcError;
use crate::expr::{Expr, MAX_EXPR_CHARS};
use crate::value::Value;
use crate::Env;

/// Longest program read, in characters; lines past it are dropped (one [`SkippedLine`] with
/// [`SkipReason::ProgramTooLong`] says where).
pub const MAX_PROGRAM_CHARS: usize = 10_000;
/// Most statements in a program; later ones are skipped with [`SkipReason::TooManyStatements`].
pub const MAX_STATEMENTS: usize = 200;

/// A parsed program: the statements in source order and the lines that were not statements.
///
/// Blank lines, `#` and `//` comment lines and code-fence lines are dropped silently; every
/// other non-statement line is in `skipped` with its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub statements: Vec<Statement>,
    pub skipped: Vec<SkippedLine>,
}

/// One `name = expression` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The defined name.
    pub name: String,
    /// 1-based line number in the program text.
    pub line: usize,
    /// The statement as written, comments removed and trimmed.
    pub source: String,
    /// The expression part as written (before any `= claimed value`).
    pub expr_text: String,
    /// The parsed expression, or why it could not be parsed (a [`CalcError::Parse`] carries the
    /// column in the line; limits and unknown functions are also reported here).
    pub expr: Result<Expr, CalcError>,
    /// The value the writer claimed after a second `=` (`total = 12 * 35 = 420`), if any.
    pub claim: Option<Claim>,
}

/// The last link of a `name = expr = ... = claimed` chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claimed text, trimmed (`420`, `$1,224 pounds`, `777 + 37`).
    pub text: String,
    /// The claimed number: a leading number (currency signs, thousands commas, a `%` and
    /// trailing unit words allowed) or else a constant expression; `None` when neither reads.
    pub value: Option<Value>,
    /// Decimal places the claim was written with, when it is a plain number (`17.2` has 1;
    /// `15%` has 2, being 0.15). A claim with places matches any value that rounds to it.
    pub places: Option<u32>,
}

impl Claim {
    fn parse(text: &str) -> Option<Claim> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let leading = leading_number(text);
        let (value, places) = match leading {
            Some((v, p, rest)) if rest.trim().is_empty() => (Some(v), Some(p)),
            _ => match crate::eval_expr(text, &Env::new()) {
                Ok(v) => (Some(v), None),
                Err(_) => match leading {
                    Some((v, p, _)) => (Some(v), Some(p)),
                    None => (None, None),
                },
            },
        };
        Some(Claim {
            text: text.to_string(),
            value,
            places,
        })
    }

    /// Whether `actual` agrees with the claim: equal, or for a plain-number claim, equal after
    /// rounding `actual` half away from zero to the claim's places (`1/3` agrees with `0.33`,
    /// `17.16` with `17`). `None` when the claim has no value.
    pub fn matches(&self, actual: &Value) -> Option<bool> {
        let claimed = self.value?;
        if claimed == *actual {
            return Some(true);
        }
        Some(match self.places {
            Some(p) => actual.round(p as i32).is_ok_and(|r| r == claimed),
            None => false,
        })
    }
}

/// Reads a number at the start of `text`: sign, currency sign, digits with `,` thousands
/// groups or `_`, a fraction, then an optional `%`. Returns the value, its decimal places and
/// the rest of the text.
fn leading_number(text: &str) -> Option<(Value, u32, &str)> {
    let b = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    for sym in ["$", "€", "£"] {
        if text[i..].starts_with(sym) {
            i += sym.len();
            break;
        }
    }
    let digit = |j: usize| b.get(j).is_some_and(u8::is_ascii_digit);
    let mut digits = String::new();
    while i < b.len() {
        if digit(i) {
            digits.push(char::from(b[i]));
        } else if (b[i] == b'_' && digit(i + 1) && !digits.is_empty())
            || (b[i] == b','
                && digit(i + 1)
                && digit(i + 2)
                && digit(i + 3)
                && !digit(i + 4)
                && !digits.is_empty())
        {
            // group separator
        } else {
            break;
        }
        i += 1;
    }
    let mut places = 0u32;
    if b.get(i) == Some(&b'.') && digit(i + 1) {
        i += 1;
        while digit(i) {
            digits.push(char::from(b[i]));
            places += 1;
            i += 1;
        }
    }
    if digits.is_empty() || digits.len() > 36 {
        return None;
    }
    let mut num: i128 = digits.parse().ok()?;
    if negative {
        num = -num;
    }
    let mut value = Value::new(num, 10i128.checked_pow(places)?).ok()?;
    let mut j = i;
    skip_ws(&mut j);
    if b.get(j) == Some(&b'%') {
        value = value.checked_div(&Value::from(100)).ok()?;
        places += 2;
        i = j + 1;
    }
    Some((value, places, &text[i..]))
}

/// A line (or `;`-separated part of one) that is not a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// The text, comments removed and trimmed.
    pub text: String,
    pub reason: SkipReason,
}

/// Why a line is not a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// There is no `name = expression` (prose, `print(x)`, `import math`, `a == b`).
    NoAssignment,
    /// The left side of `=` is not a name (`11 * 67 = 777`, `f(x) = 2`, `total cost = 5`).
    InvalidName { left: String },
    /// `x += 1` and the like: a name is defined once; define a new name instead.
    AugmentedAssignment,
    /// The same name with the same expression as an earlier line (a repeated line).
    Repeat { first_line: usize },
    /// The line is longer than [`MAX_EXPR_CHARS`].
    LineTooLong,
    /// The program already has [`MAX_STATEMENTS`] statements.
    TooManyStatements,
    /// The program is longer than [`MAX_PROGRAM_CHARS`]; this and later lines were dropped.
    ProgramTooLong,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoAssignment => f.write_str("not a statement: no `name = expression`"),
            SkipReason::InvalidName { left } => write!(
                f,
                "left side `{left}` is not a name (use letters, digits and _, starting with a letter)"
            ),
            SkipReason::AugmentedAssignment => {
                f.write_str("augmented assignment (`+=` ...) is not supported: define a new name")
            }
            SkipReason::Repeat { first_line } => write!(f, "repeats line {first_line}"),
            SkipReason::LineTooLong => write!(f, "line longer than {MAX_EXPR_CHARS} characters"),
            SkipReason::TooManyStatements => write!(f, "more than {MAX_STATEMENTS} statements"),
            SkipReason::ProgramTooLong => {
                write!(f, "program longer than {MAX_PROGRAM_CHARS} characters; the rest was ignored")
            }
        }
    }
}

/// Parses program text, one statement per line (or per `;`-separated part). Never fails as a
/// whole: problems are per statement (`Statement::expr`) or per line (`Program::skipped`).
///
/// Lenient about model output: blank lines, `#` and `//` comments, code fences, Markdown list
/// markers, backticks and `**emphasis**`, a leading `let`/`const`/`var`/`let mut`, a type
/// annotation (`x: f64 = ...`) or a label (`Answer: total = ...` defines `total`), `:=`,
/// trailing `;` or `.`, and `= claimed value` chains (`total = 12 * 35 = 420`, also with `≈`).
/// A line repeating an earlier statement verbatim is skipped as [`SkipReason::Repeat`]. A `//` between operands is Python's floor division when that reading parses;
/// otherwise it starts a comment.
pub fn parse_program(text: &str) -> Program {
    let mut program = Program::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut chars = 0usize;
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let len = raw.chars().count();
        chars += len + 1;
        if chars > MAX_PROGRAM_CHARS + 1 {
            program.skipped.push(SkippedLine {
                line,
                text: truncate(raw.trim(), 80),
                reason: SkipReason::ProgramTooLong,
            });
            break;
        }
        let code = match raw.find('#') {
            Some(i) => &raw[..i],
            None => raw,
        };
        let trimmed = code.trim();
        if trimmed.is_empty()
            || trimmed.starts_with("```")
            || trimmed.starts_with("~~~")
            || trimmed.starts_with("//")
        {
            continue;
        }
        if len > MAX_EXPR_CHARS {
            program.skipped.push(SkippedLine {
                line,
                text: truncate(trimmed, 80),
                reason: SkipReason::LineTooLong,
            });
            continue;
        }
        let mut items = analyze_line(raw, code, line);
        if let Some(cut) = code.find("//") {
            let clean = items
                .iter()
                .all(|it| matches!(it, Item::Statement(s) if s.expr.is_ok()));
            if !clean {
                items = analyze_line(raw, &code[..cut], line);
            }
        }
        for item in items {
            match item {
                Item::Skipped(s) => program.skipped.push(s),
                Item::Statement(st) => {
                    let key = (
                        st.name.clone(),
                        st.expr_text.split_whitespace().collect::<String>(),
                    );
                    if let Some(&first_line) = seen.get(&key) {
                        program.skipped.push(SkippedLine {
                            line,
                            text: st.source,
                            reason: SkipReason::Repeat { first_line },
                        });
                    } else if program.statements.len() >= MAX_STATEMENTS {
                        program.skipped.push(SkippedLine {
                            line,
                            text: st.source,
                            reason: SkipReason::TooManyStatements,
                        });
                    } else {
                        seen.insert(key, line);
                        program.statements.push(st);
                    }
                }
            }
        }
    }
    program
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

enum Item {
    Statement(Statement),
    Skipped(SkippedLine),
}

/// Splits `code` (a prefix of `raw`, comments removed) on `;` and reads each part.
fn analyze_line(raw: &str, code: &str, line: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = 0;
    for part in code.split(';') {
        if !part.trim().is_empty() {
            items.push(analyze_statement(raw, start, part, line));
        }
        start += part.len() + 1;
    }
    items
}

/// Index of the first `=` that is an assignment or chain link (not `==`, `<=`, `>=`, `!=`, `=>`).
fn find_equals(s: &str, from: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if b[i] == b'=' {
            let prev = if i > 0 { b[i - 1] } else { b' ' };
            let next = b.get(i + 1).copied().unwrap_or(b' ');
            if next == b'=' {
                i += 2;
                continue;
            }
            if !matches!(prev, b'<' | b'>' | b'!' | b'=') && next != b'>' {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A type in an annotation such as `x: f64 = 2` (compared case-insensitively).
fn is_type_name(s: &str) -> bool {
    const TYPES: [&str; 17] = [
        "int", "float", "f32", "f64", "i32", "i64", "i128", "u32", "u64", "usize", "isize",
        "number", "double", "decimal", "fraction", "real", "num",
    ];
    TYPES.iter().any(|t| t.eq_ignore_ascii_case(s))
}

/// Strips a Markdown list marker (`- `, `* `, `+ `, `• `, `1. `, `2) `); returns bytes removed.
fn list_marker_len(s: &str) -> usize {
    for m in ["- ", "* ", "+ ", "• "] {
        if s.starts_with(m) {
            return m.len();
        }
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &s.as_bytes()[digits..];
        if rest.len() >= 2 && matches!(rest[0], b'.' | b')') && rest[1] == b' ' {
            return digits + 2;
        }
    }
    0
}

/// Reads one statement; `offset` is the byte offset of `part` in `raw`.
fn analyze_statement(raw: &str, offset: usize, part: &str, line: usize) -> Item {
    let skipped = |reason| {
        Item::Skipped(SkippedLine {
            line,
            text: part.trim().to_string(),
            reason,
        })
    };
    // Work on byte ranges of `raw` so that columns stay those of the original line.
    let mut s = part;
    let mut off = offset;
    let advance = |s: &mut &str, off: &mut usize, n: usize| {
        *s = &s[n..];
        *off += n;
        let t = s.trim_start();
        *off += s.len() - t.len();
        *s = t;
    };
    advance(&mut s, &mut off, 0);
    let n = list_marker_len(s);
    advance(&mut s, &mut off, n);
    if s.starts_with('`') {
        advance(&mut s, &mut off, 1);
    }
    for kw in ["let mut ", "let ", "const ", "var ", "mut "] {
        if s.starts_with(kw) {
            advance(&mut s, &mut off, kw.len());
            break;
        }
    }
    let s = s.trim_end().trim_end_matches('`').trim_end();
    let Some(eq) = find_equals(s, 0) else {
        return skipped(SkipReason::NoAssignment);
    };
    let mut left = &s[..eq];
    if left.ends_with(['+', '-', '*', '/', '%', '^', '|', '&']) {
        return skipped(SkipReason::AugmentedAssignment);
    }
    // Walrus `:=`; a type annotation `x: f64 =`, or a label `Answer: total =`.
    left = left.trim_end().trim_end_matches(':');
    if let Some(colon) = left.rfind(':') {
        let after = left[colon + 1..].trim();
        left = if is_type_name(after) {
            &left[..colon]
        } else {
            after
        };
    }
    // Markdown emphasis or code around the name: `**total** =`.
    let name = left.trim().trim_matches(['*', '`']);
    if !is_name(name) {
        return skipped(SkipReason::InvalidName {
            left: s[..eq].trim().to_string(),
        });
    }

    // The right side: `expr [= link]* [= claim]`, links separated by `=` or `≈`.
    let rhs_start = eq + 1;
    let mut links: Vec<(usize, usize)> = Vec::new();
    let mut pos = rhs_start;
    loop {
        let next_eq = find_equals(s, pos);
        let next_approx = s[pos..].find('≈').map(|i| i + pos);
        let cut = match (next_eq, next_approx) {
            (Some(a), Some(b)) => Some(if a < b { (a, 1) } else { (b, '≈'.len_utf8()) }),
            (Some(a), None) => Some((a, 1)),
            (None, Some(b)) => Some((b, '≈'.len_utf8())),
            (None, None) => None,
        };
        match cut {
            Some((at, width)) => {
                // `~=` counts as one link separator.
                let end = if at > pos && s.as_bytes()[at - 1] == b'~' {
                    at - 1
                } else {
                    at
                };
                links.push((pos, end));
                pos = at + width;
            }
            None => {
                links.push((pos, s.len()));
                break;
            }
        }
    }
    let (e_start, mut e_end) = links[0];
    // A sentence-ending period or comma after the expression: `total = a * b.`
    let trimmed_expr = s[e_start..e_end].trim_end();
    if trimmed_expr.ends_with(['.', ',']) {
        e_end = e_start + trimmed_expr.len() - 1;
    }
    let expr_src = &s[e_start..e_end];
    let abs_start = off + e_start;
    let base_col = raw[..abs_start].chars().count() + 1;
    let expr = Expr::parse_at(expr_src, base_col);
    let claim = if links.len() > 1 {
        let (c_start, c_end) = links[links.len() - 1];
        Claim::parse(s[c_start..c_end].trim_end_matches(['.', ',']))
    } else {
        None
    };
    Item::Statement(Statement {
        name: name.to_string(),
        line,
        source: part.trim().to_string(),
        expr_text: expr_src.trim().to_string(),
        expr,
        claim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_numbers() {
        let ln =
            |s: &str| leading_number(s).map(|(v, p, rest)| (v.to_string(), p, rest.to_string()));
        assert_eq!(ln("420"), Some(("420".into(), 0, "".into())));
        assert_eq!(
            ln("$1,224 pounds"),
            Some(("1224".into(), 0, " pounds".into()))
        );
        assert_eq!(ln("-17.16"), Some(("-17.16".into(), 2, "".into())));
        assert_eq!(ln("15 %"), Some(("0.15".into(), 2, "".into())));
        assert_eq!(ln("pounds"), None);
        assert_eq!(ln("1,22"), Some(("1".into(), 0, ",22".into())));
    }

    #[test]
    fn equals_finder_skips_comparisons() {
        assert_eq!(find_equals("a == b", 0), None);
        assert_eq!(find_equals("a <= b = c", 0), Some(7));
        assert_eq!(find_equals("x => y", 0), None);
        assert_eq!(find_equals("x = 1", 0), Some(2));
    }

    #[test]
    fn list_markers() {
        assert_eq!(list_marker_len("- x = 1"), 2);
        assert_eq!(list_marker_len("12. x = 1"), 4);
        assert_eq!(list_marker_len("3) x"), 3);
        assert_eq!(list_marker_len("x = 1"), 0);
        assert_eq!(list_marker_len("-x"), 0);
    }
}
