//! Lexer, parser and evaluator for a single expression.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::CalcError;
use crate::value::Value;
use crate::Env;

/// Longest expression (and statement line) accepted, in characters.
pub const MAX_EXPR_CHARS: usize = 1000;
/// Deepest nesting of parentheses, function calls, unary signs and powers.
pub const MAX_DEPTH: usize = 64;
/// Most syntax-tree nodes (numbers, names, operators, calls) in one expression.
pub const MAX_NODES: usize = 512;
/// Largest exponent magnitude for `^`, `**` and `pow`.
pub const MAX_EXPONENT: i32 = 64;
/// Largest `digits` magnitude accepted by `round(x, digits)`.
pub const MAX_ROUND_DIGITS: i32 = 18;
/// Largest decimal exponent in a literal such as `2.5e6`.
const MAX_LITERAL_EXPONENT: i32 = 36;

pub(crate) const FUNCTION_NAMES: &str =
    "min, max, sum, mean (avg), abs, round, floor, ceil, trunc (int), sqrt, pow";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Min,
    Max,
    Sum,
    Mean,
    Abs,
    Round,
    Floor,
    Ceil,
    Trunc,
    Sqrt,
    Pow,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "min" => Func::Min,
            "max" => Func::Max,
            "sum" => Func::Sum,
            "mean" | "avg" | "average" => Func::Mean,
            "abs" => Func::Abs,
            "round" => Func::Round,
            "floor" => Func::Floor,
            "ceil" | "ceiling" => Func::Ceil,
            "trunc" | "int" => Func::Trunc,
            "sqrt" => Func::Sqrt,
            "pow" => Func::Pow,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Min => "min",
            Func::Max => "max",
            Func::Sum => "sum",
            Func::Mean => "mean",
            Func::Abs => "abs",
            Func::Round => "round",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Trunc => "trunc",
            Func::Sqrt => "sqrt",
            Func::Pow => "pow",
        }
    }

    /// Accepted argument counts, inclusive.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Min | Func::Max | Func::Sum | Func::Mean => (1, usize::MAX),
            Func::Abs | Func::Floor | Func::Ceil | Func::Trunc | Func::Sqrt => (1, 1),
            Func::Round => (1, 2),
            Func::Pow => (2, 2),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Num(Value),
    Name(String),
    Neg(Box<Node>),
    Percent(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Value),
    Ident(String),
    Plus,
    Minus,
    Star,
    Slash,
    SlashSlash,
    Percent,
    Caret,
    LParen,
    RParen,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(v) => format!("number {v}"),
            Tok::Ident(s) => format!("name `{s}`"),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::SlashSlash => "`//`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Caret => "`^`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::End => "end of expression".into(),
        }
    }

    fn starts_operand(&self) -> bool {
        matches!(self, Tok::Num(_) | Tok::Ident(_) | Tok::LParen)
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column in the source line.
    col: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(text: &str, base_col: usize) -> Result<Vec<Token>, CalcError> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let col = base_col + i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // Currency symbols directly before a number are ignored: `$12.50`.
        if matches!(c, '$' | '€' | '£')
            && (at(i + 1).is_some_and(|d| d.is_ascii_digit())
                || (at(i + 1) == Some('.') && at(i + 2).is_some_and(|d| d.is_ascii_digit())))
        {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let (value, next) = lex_number(&chars, i, base_col)?;
            out.push(Token {
                tok: Tok::Num(value),
                col,
            });
            i = next;
            continue;
        }
        if is_ident_start(c) {
            let mut j = i;
            while j < n && is_ident_char(chars[j]) {
                j += 1;
            }
            let mut name: String = chars[i..j].iter().collect();
            // `math.floor(x)` / `Math.round(x)`: the module prefix is dropped.
            if (name == "math" || name == "Math")
                && at(j) == Some('.')
                && at(j + 1).is_some_and(is_ident_start)
            {
                let start = j + 1;
                j = start;
                while j < n && is_ident_char(chars[j]) {
                    j += 1;
                }
                name = chars[start..j].iter().collect();
            }
            out.push(Token {
                tok: Tok::Ident(name),
                col,
            });
            i = j;
            continue;
        }
        let (tok, len) = match c {
            '+' => (Tok::Plus, 1),
            '-' | '−' | '–' => (Tok::Minus, 1),
            '*' if at(i + 1) == Some('*') => (Tok::Caret, 2),
            '*' | '×' | '·' | '⋅' => (Tok::Star, 1),
            '/' if at(i + 1) == Some('/') => (Tok::SlashSlash, 2),
            '/' | '÷' => (Tok::Slash, 1),
            '%' => (Tok::Percent, 1),
            '^' => (Tok::Caret, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            _ => return Err(CalcError::parse(col, format!("unexpected character `{c}`"))),
        };
        out.push(Token { tok, col });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        col: base_col + n,
    });
    Ok(out)
}

/// Lexes a decimal literal starting at `start`: digits with optional `_` between them, an
/// optional fraction and an optional exponent (`1_000`, `2.5`, `.5`, `5.`, `1.5e3`).
fn lex_number(chars: &[char], start: usize, base_col: usize) -> Result<(Value, usize), CalcError> {
    let n = chars.len();
    let at = |i: usize| chars.get(i).copied();
    let digit = |i: usize| at(i).is_some_and(|c| c.is_ascii_digit());
    let mut mantissa: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut i = start;
    let push = |m: &mut i128, c: char| -> Result<(), CalcError> {
        let d = i128::from(c as u8 - b'0');
        *m = m
            .checked_mul(10)
            .and_then(|m| m.checked_add(d))
            .ok_or(CalcError::Overflow)?;
        Ok(())
    };
    while i < n {
        if digit(i) {
            push(&mut mantissa, chars[i])?;
        } else if chars[i] == '_' && i > start && digit(i - 1) && digit(i + 1) {
            // digit separator
        } else {
            break;
        }
        i += 1;
    }
    let int_end = i;
    if at(i) == Some('.') {
        i += 1;
        while digit(i) {
            push(&mut mantissa, chars[i])?;
            frac_digits += 1;
            i += 1;
        }
    }
    let mut exponent: i32 = 0;
    if matches!(at(i), Some('e' | 'E'))
        && (digit(i + 1) || (matches!(at(i + 1), Some('+' | '-')) && digit(i + 2)))
    {
        i += 1;
        let negative = at(i) == Some('-');
        if matches!(at(i), Some('+' | '-')) {
            i += 1;
        }
        let exp_start = i;
        while digit(i) {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i32::from(chars[i] as u8 - b'0'));
            i += 1;
        }
        if exponent > MAX_LITERAL_EXPONENT {
            return Err(CalcError::parse(
                base_col + exp_start,
                format!("exponent of a number literal is limited to {MAX_LITERAL_EXPONENT}"),
            ));
        }
        if negative {
            exponent = -exponent;
        }
    }
    if at(i).is_some_and(is_ident_start) {
        return Err(CalcError::parse(
            base_col + i,
            "a number is followed directly by a name; write `*` for multiplication and put units in a # comment",
        ));
    }
    // `1,000` is ambiguous between a thousands separator and an argument separator.
    if int_end == i
        && at(i) == Some(',')
        && digit(i + 1)
        && digit(i + 2)
        && digit(i + 3)
        && !digit(i + 4)
    {
        let text: String = chars[start..(i + 4).min(n)].iter().collect();
        return Err(CalcError::parse(
            base_col + i,
            format!(
                "`{text}`: thousands separators are not allowed; write the number without commas"
            ),
        ));
    }
    let scale = exponent - frac_digits;
    let value = if scale >= 0 {
        let p = pow10_i128(scale.unsigned_abs())?;
        Value::new(mantissa.checked_mul(p).ok_or(CalcError::Overflow)?, 1)?
    } else {
        Value::new(mantissa, pow10_i128(scale.unsigned_abs())?)?
    };
    Ok((value, i))
}

fn pow10_i128(exp: u32) -> Result<i128, CalcError> {
    10i128.checked_pow(exp).ok_or(CalcError::Overflow)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    nodes: usize,
}

type PResult = Result<Node, CalcError>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek2(&self) -> &Tok {
        let i = (self.pos + 1).min(self.tokens.len() - 1);
        &self.tokens[i].tok
    }

    fn col(&self) -> usize {
        self.tokens[self.pos].col
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn node(&mut self, node: Node) -> PResult {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CalcError::limit(format!(
                "expression has more than {MAX_NODES} parts"
            )));
        }
        Ok(node)
    }

    fn enter(&mut self) -> Result<(), CalcError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CalcError::limit(format!(
                "expression is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn expr(&mut self) -> PResult {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => Op::Add,
                Tok::Minus => Op::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.term()?;
            lhs = self.node(Node::Bin(op, Box::new(lhs), Box::new(rhs)))?;
        }
    }

    fn term(&mut self) -> PResult {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => Op::Mul,
                Tok::Slash => Op::Div,
                Tok::SlashSlash => Op::FloorDiv,
                // `postfix` already took every `%` that is not followed by an operand.
                Tok::Percent => Op::Mod,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.unary()?;
            lhs = self.node(Node::Bin(op, Box::new(lhs), Box::new(rhs)))?;
        }
    }

    fn unary(&mut self) -> PResult {
        match self.peek() {
            Tok::Minus | Tok::Plus => {
                let negative = *self.peek() == Tok::Minus;
                self.bump();
                self.enter()?;
                let inner = self.unary()?;
                self.leave();
                if negative {
                    self.node(Node::Neg(Box::new(inner)))
                } else {
                    Ok(inner)
                }
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> PResult {
        let base = self.postfix()?;
        if *self.peek() == Tok::Caret {
            self.bump();
            self.enter()?;
            // Right-associative, and the exponent may carry a sign: 2^-1, 2^3^2 = 2^9.
            let exp = self.unary()?;
            self.leave();
            return self.node(Node::Bin(Op::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> PResult {
        let inner = self.primary()?;
        if *self.peek() == Tok::Percent && !self.peek2().starts_operand() {
            self.bump();
            return self.node(Node::Percent(Box::new(inner)));
        }
        Ok(inner)
    }

    fn primary(&mut self) -> PResult {
        let col = self.col();
        match self.bump().tok {
            Tok::Num(v) => self.node(Node::Num(v)),
            Tok::Ident(name) => {
                if *self.peek() == Tok::LParen {
                    self.call(name, col)
                } else {
                    self.node(Node::Name(name))
                }
            }
            Tok::LParen => {
                self.enter()?;
                let inner = self.expr()?;
                self.leave();
                if *self.peek() != Tok::RParen {
                    return Err(CalcError::parse(
                        self.col(),
                        format!(
                            "expected `)` to close the `(` at column {col}, found {}",
                            self.peek().describe()
                        ),
                    ));
                }
                self.bump();
                Ok(inner)
            }
            Tok::End if self.pos == 0 || self.tokens.len() == 1 => {
                Err(CalcError::parse(col, "empty expression"))
            }
            Tok::End => Err(CalcError::parse(
                col,
                "expression ends where a number, name or `(` was expected",
            )),
            other => Err(CalcError::parse(
                col,
                format!(
                    "unexpected {}; expected a number, name or `(`",
                    other.describe()
                ),
            )),
        }
    }

    fn call(&mut self, name: String, col: usize) -> PResult {
        let Some(func) = Func::lookup(&name) else {
            return Err(CalcError::UnknownFunction { name });
        };
        let open_col = self.col();
        self.bump(); // `(`
        self.enter()?;
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.expr()?);
                match self.peek() {
                    Tok::Comma => {
                        self.bump();
                    }
                    Tok::RParen => break,
                    other => {
                        return Err(CalcError::parse(
                            self.col(),
                            format!(
                                "expected `,` or `)` in the call of `{name}` opened at column {open_col}, found {}",
                                other.describe()
                            ),
                        ))
                    }
                }
            }
        }
        self.bump(); // `)`
        self.leave();
        let (lo, hi) = func.arity();
        if args.len() < lo || args.len() > hi {
            let expected = match (lo, hi) {
                (1, usize::MAX) => "at least 1 argument".to_string(),
                (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
                (a, b) => format!("{a} to {b} arguments"),
            };
            return Err(CalcError::bad_args(
                func.name(),
                format!("takes {expected}, got {} (at column {col})", args.len()),
            ));
        }
        self.node(Node::Call(func, args))
    }
}

/// A parsed expression.
///
/// `Display` writes the source text it was parsed from (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    root: Node,
    text: String,
    names: Vec<String>,
}

impl Expr {
    /// Parses an expression; error columns count characters of `text` from 1.
    pub fn parse(text: &str) -> Result<Expr, CalcError> {
        Expr::parse_at(text, 1)
    }

    /// Parses `text` whose first character is at column `base_col` of its line.
    pub(crate) fn parse_at(text: &str, base_col: usize) -> Result<Expr, CalcError> {
        let len = text.chars().count();
        if len > MAX_EXPR_CHARS {
            return Err(CalcError::limit(format!(
                "expression is longer than {MAX_EXPR_CHARS} characters"
            )));
        }
        let tokens = lex(text, base_col)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            nodes: 0,
        };
        let root = p.expr()?;
        if *p.peek() != Tok::End {
            let col = p.col();
            let message = match p.peek() {
                Tok::Ident(name) => format!(
                    "unexpected name `{name}` after a complete expression (missing operator? put units in a # comment)"
                ),
                Tok::Num(v) => format!("unexpected number {v} after a complete expression (missing operator?)"),
                Tok::RParen => "unmatched `)`".to_string(),
                Tok::LParen => "unexpected `(`; write `*` for multiplication".to_string(),
                Tok::Comma => "unexpected `,`: commas only separate function arguments".to_string(),
                other => format!("unexpected {}", other.describe()),
            };
            return Err(CalcError::parse(col, message));
        }
        let mut names = BTreeSet::new();
        collect_names(&root, &mut names);
        Ok(Expr {
            root,
            text: text.trim().to_string(),
            names: names.into_iter().collect(),
        })
    }

    /// The names the expression refers to, sorted and without repeats.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The source text (trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates with the names bound in `env`; every missing name is reported at once.
    pub fn eval(&self, env: &Env) -> Result<Value, CalcError> {
        let missing: Vec<String> = self
            .names
            .iter()
            .filter(|n| !env.contains_key(*n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(CalcError::UndefinedName { names: missing });
        }
        eval_node(&self.root, env)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn collect_names(node: &Node, out: &mut BTreeSet<String>) {
    match node {
        Node::Num(_) => {}
        Node::Name(n) => {
            out.insert(n.clone());
        }
        Node::Neg(a) | Node::Percent(a) => collect_names(a, out),
        Node::Bin(_, a, b) => {
            collect_names(a, out);
            collect_names(b, out);
        }
        Node::Call(_, args) => args.iter().for_each(|a| collect_names(a, out)),
    }
}

fn integer_arg(v: &Value, what: &str, limit: i32) -> Result<i32, CalcError> {
    let n = v.to_integer().ok_or_else(|| match what {
        "exponent" => CalcError::NonIntegerExponent {
            exponent: v.to_string(),
        },
        _ => CalcError::bad_args("round", format!("{what} must be a whole number, got {v}")),
    })?;
    if n.unsigned_abs() > limit.unsigned_abs() as u128 {
        return Err(CalcError::limit(format!(
            "{what} {n} is larger than {limit} in magnitude"
        )));
    }
    Ok(n as i32)
}

fn power(base: &Value, exp: &Value) -> Result<Value, CalcError> {
    let e = integer_arg(exp, "exponent", MAX_EXPONENT)?;
    base.checked_pow(e)
}

fn eval_node(node: &Node, env: &Env) -> Result<Value, CalcError> {
    Ok(match node {
        Node::Num(v) => *v,
        Node::Name(n) => *env.get(n).ok_or_else(|| CalcError::UndefinedName {
            names: vec![n.clone()],
        })?,
        Node::Neg(a) => -eval_node(a, env)?,
        Node::Percent(a) => eval_node(a, env)?.checked_div(&Value::from(100))?,
        Node::Bin(op, a, b) => {
            let (x, y) = (eval_node(a, env)?, eval_node(b, env)?);
            match op {
                Op::Add => x.checked_add(&y)?,
                Op::Sub => x.checked_sub(&y)?,
                Op::Mul => x.checked_mul(&y)?,
                Op::Div => x.checked_div(&y)?,
                Op::FloorDiv => x.floor_div(&y)?,
                Op::Mod => x.modulo(&y)?,
                Op::Pow => power(&x, &y)?,
            }
        }
        Node::Call(func, args) => {
            let vals = args
                .iter()
                .map(|a| eval_node(a, env))
                .collect::<Result<Vec<_>, _>>()?;
            let first = vals[0];
            match func {
                Func::Min => vals.iter().copied().fold(first, Value::min),
                Func::Max => vals.iter().copied().fold(first, Value::max),
                Func::Sum => sum(&vals)?,
                Func::Mean => sum(&vals)?.checked_div(&Value::from(vals.len() as u32))?,
                Func::Abs => first.abs(),
                Func::Floor => first.floor(),
                Func::Ceil => first.ceil(),
                Func::Trunc => first.trunc(),
                Func::Sqrt => first.sqrt()?,
                Func::Pow => power(&first, &vals[1])?,
                Func::Round => {
                    let digits = match vals.get(1) {
                        Some(d) => integer_arg(d, "digits", MAX_ROUND_DIGITS)?,
                        None => 0,
                    };
                    first.round(digits)?
                }
            }
        }
    })
}

fn sum(vals: &[Value]) -> Result<Value, CalcError> {
    vals.iter()
        .try_fold(Value::ZERO, |acc, v| acc.checked_add(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s, 1)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn lexes_operators_and_aliases() {
        assert_eq!(
            toks("a ** 2 × 3 ÷ 4 − 1 // 2"),
            vec![
                Tok::Ident("a".into()),
                Tok::Caret,
                Tok::Num(Value::from(2)),
                Tok::Star,
                Tok::Num(Value::from(3)),
                Tok::Slash,
                Tok::Num(Value::from(4)),
                Tok::Minus,
                Tok::Num(Value::from(1)),
                Tok::SlashSlash,
                Tok::Num(Value::from(2)),
                Tok::End
            ]
        );
    }

    #[test]
    fn lexes_numbers() {
        let one = |s: &str| match toks(s).as_slice() {
            [Tok::Num(v), Tok::End] => *v,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(one("2.5"), Value::new(5, 2).expect("v"));
        assert_eq!(one(".5"), Value::new(1, 2).expect("v"));
        assert_eq!(one("5."), Value::from(5));
        assert_eq!(one("1_000"), Value::from(1000));
        assert_eq!(one("$12.50"), Value::new(25, 2).expect("v"));
        assert_eq!(one("1.5e3"), Value::from(1500));
        assert_eq!(one("25e-2"), Value::new(1, 4).expect("v"));
        assert_eq!(one("0.000"), Value::ZERO);
    }

    #[test]
    fn math_prefix_is_dropped() {
        assert_eq!(toks("math.ceil"), vec![Tok::Ident("ceil".into()), Tok::End]);
        assert_eq!(
            toks("Math.round"),
            vec![Tok::Ident("round".into()), Tok::End]
        );
    }

    #[test]
    fn lex_errors_have_columns() {
        let err = lex("1 + 2x", 1).expect_err("fails");
        assert!(matches!(err, CalcError::Parse { column: 6, .. }), "{err:?}");
        let err = lex("1 + @", 10).expect_err("fails");
        assert!(
            matches!(err, CalcError::Parse { column: 14, .. }),
            "{err:?}"
        );
        let err = lex("1,000 + 2", 1).expect_err("fails");
        assert!(matches!(err, CalcError::Parse { column: 2, .. }), "{err:?}");
    }
}
