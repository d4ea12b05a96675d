//! Lexer and parser for the Python-expression subset used by GSM-Symbolic templates.
//!
//! Supported: int/float/string literals, names (dotted names such as `np.arange` are one
//! name; a leading `$` is ignored), list and tuple displays, calls, indexing and slicing,
//! unary `-`/`+`/`not`, `**`, `* / // %`, `+ -`, chained comparisons, `and`/`or`, the
//! conditional expression `a if c else b`, and `True`/`False`/`None`.

use std::collections::BTreeSet;
use std::fmt;

use super::value::{err, EvalError, Value};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Name(String),
    Op(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Name(n) => f.write_str(n),
            Tok::Op(o) => f.write_str(o),
        }
    }
}

const OPS: [&str; 24] = [
    "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]", ",",
    ":", "=", "{", "}", ".", ";",
];

fn lex(src: &str) -> Result<Vec<Tok>, EvalError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '$' {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut is_float = false;
            if i < chars.len()
                && chars[i] == '.'
                && !chars.get(i + 1).is_some_and(|c| c.is_alphabetic())
            {
                is_float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    is_float = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            if is_float {
                let v: f64 = text
                    .parse()
                    .map_err(|_| EvalError(format!("bad number {text}")))?;
                out.push(Tok::Float(v));
            } else {
                let v: i64 = text
                    .parse()
                    .map_err(|_| EvalError(format!("bad number {text}")))?;
                out.push(Tok::Int(v));
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                let dotted = d == '.'
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_alphabetic() || *n == '_');
                if d.is_alphanumeric() || d == '_' || dotted {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        if c == '"' || c == '\'' {
            let q = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return err("unterminated string literal"),
                    Some(&d) if d == q => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&d) => s.push(d),
                            None => return err("unterminated string literal"),
                        }
                        i += 2;
                    }
                    Some(&d) => {
                        s.push(d);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            i += op.chars().count();
            continue;
        }
        return err(format!("unexpected character {c:?}"));
    }
    Ok(out)
}

/// Binary arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

/// Expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(Value),
    Name(String),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Vec<(CmpOp, Expr)>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IfElse(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
}

impl Expr {
    /// Parses one complete expression.
    pub fn parse(src: &str) -> Result<Expr, EvalError> {
        let toks = lex(src)?;
        let mut p = Parser { toks, pos: 0 };
        let e = p.expr_list()?;
        if p.pos != p.toks.len() {
            return err(format!("unexpected token {} in {src:?}", p.toks[p.pos]));
        }
        Ok(e)
    }

    /// Every name the expression reads (functions excluded).
    pub fn names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Name(n) => {
                out.insert(n.clone());
            }
            Expr::List(v) | Expr::Tuple(v) | Expr::Call(_, v) => {
                v.iter().for_each(|e| e.collect_names(out));
            }
            Expr::Neg(e) | Expr::Not(e) => e.collect_names(out),
            Expr::Bin(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Index(a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
            Expr::Cmp(a, rest) => {
                a.collect_names(out);
                rest.iter().for_each(|(_, e)| e.collect_names(out));
            }
            Expr::IfElse(a, b, c) => {
                a.collect_names(out);
                b.collect_names(out);
                c.collect_names(out);
            }
            Expr::Slice(a, b, c) => {
                a.collect_names(out);
                if let Some(b) = b {
                    b.collect_names(out);
                }
                if let Some(c) = c {
                    c.collect_names(out);
                }
            }
        }
    }

    /// The function names called anywhere in the expression.
    pub fn calls(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_calls(&mut out);
        out
    }

    fn collect_calls(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Const(_) | Expr::Name(_) => {}
            Expr::Call(f, v) => {
                out.insert(f.clone());
                v.iter().for_each(|e| e.collect_calls(out));
            }
            Expr::List(v) | Expr::Tuple(v) => v.iter().for_each(|e| e.collect_calls(out)),
            Expr::Neg(e) | Expr::Not(e) => e.collect_calls(out),
            Expr::Bin(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Index(a, b) => {
                a.collect_calls(out);
                b.collect_calls(out);
            }
            Expr::Cmp(a, rest) => {
                a.collect_calls(out);
                rest.iter().for_each(|(_, e)| e.collect_calls(out));
            }
            Expr::IfElse(a, b, c) => {
                a.collect_calls(out);
                b.collect_calls(out);
                c.collect_calls(out);
            }
            Expr::Slice(a, b, c) => {
                a.collect_calls(out);
                if let Some(b) = b {
                    b.collect_calls(out);
                }
                if let Some(c) = c {
                    c.collect_calls(out);
                }
            }
        }
    }
}

/// A list or tuple display whose items are all constants becomes one constant.
fn fold(items: Vec<Expr>, tuple: bool) -> Expr {
    if items.iter().all(|e| matches!(e, Expr::Const(_))) {
        let vals: Vec<Value> = items
            .into_iter()
            .filter_map(|e| match e {
                Expr::Const(v) => Some(v),
                _ => None,
            })
            .collect();
        return Expr::Const(if tuple {
            Value::Tuple(vals)
        } else {
            Value::List(vals)
        });
    }
    if tuple {
        Expr::Tuple(items)
    } else {
        Expr::List(items)
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), EvalError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            match self.peek() {
                Some(t) => err(format!("expected '{op}', found {t}")),
                None => err(format!("expected '{op}', found end of expression")),
            }
        }
    }

    /// `a, b, c` at top level (a bare tuple) or a single expression.
    fn expr_list(&mut self) -> Result<Expr, EvalError> {
        let first = self.expr()?;
        if !self.is_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.peek().is_none() {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Expr::Tuple(items))
    }

    fn expr(&mut self) -> Result<Expr, EvalError> {
        let body = self.or_expr()?;
        if self.eat_kw("if") {
            let cond = self.or_expr()?;
            if !self.eat_kw("else") {
                return err("conditional expression without 'else'");
            }
            let other = self.expr()?;
            return Ok(Expr::IfElse(
                Box::new(cond),
                Box::new(body),
                Box::new(other),
            ));
        }
        Ok(body)
    }

    fn or_expr(&mut self) -> Result<Expr, EvalError> {
        let mut e = self.and_expr()?;
        while self.eat_kw("or") {
            let r = self.and_expr()?;
            e = Expr::Or(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and_expr(&mut self) -> Result<Expr, EvalError> {
        let mut e = self.not_expr()?;
        while self.eat_kw("and") {
            let r = self.not_expr()?;
            e = Expr::And(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn not_expr(&mut self) -> Result<Expr, EvalError> {
        if self.eat_kw("not") {
            let e = self.not_expr()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.comparison()
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek()? {
            Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::Ne,
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op("<=") => CmpOp::Le,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op(">=") => CmpOp::Ge,
            Tok::Name(n) if n == "in" => CmpOp::In,
            Tok::Name(n) if n == "not" => {
                if matches!(self.toks.get(self.pos + 1), Some(Tok::Name(m)) if m == "in") {
                    self.pos += 1;
                    CmpOp::NotIn
                } else {
                    return None;
                }
            }
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn comparison(&mut self) -> Result<Expr, EvalError> {
        let first = self.arith()?;
        let mut rest = Vec::new();
        while let Some(op) = self.cmp_op() {
            rest.push((op, self.arith()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Cmp(Box::new(first), rest))
        }
    }

    fn arith(&mut self) -> Result<Expr, EvalError> {
        let mut e = self.term()?;
        loop {
            let op = if self.eat_op("+") {
                BinOp::Add
            } else if self.eat_op("-") {
                BinOp::Sub
            } else {
                return Ok(e);
            };
            let r = self.term()?;
            e = Expr::Bin(op, Box::new(e), Box::new(r));
        }
    }

    fn term(&mut self) -> Result<Expr, EvalError> {
        let mut e = self.factor()?;
        loop {
            let op = if self.eat_op("*") {
                BinOp::Mul
            } else if self.eat_op("//") {
                BinOp::FloorDiv
            } else if self.eat_op("/") {
                BinOp::Div
            } else if self.eat_op("%") {
                BinOp::Mod
            } else {
                return Ok(e);
            };
            let r = self.factor()?;
            e = Expr::Bin(op, Box::new(e), Box::new(r));
        }
    }

    fn factor(&mut self) -> Result<Expr, EvalError> {
        if self.eat_op("-") {
            let e = self.factor()?;
            return Ok(Expr::Neg(Box::new(e)));
        }
        if self.eat_op("+") {
            return self.factor();
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, EvalError> {
        let base = self.postfix()?;
        if self.eat_op("**") {
            let exp = self.factor()?;
            return Ok(Expr::Bin(BinOp::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, EvalError> {
        let mut e = self.atom()?;
        loop {
            if self.is_op("(") {
                let Expr::Name(f) = e else {
                    return err("only named functions can be called");
                };
                self.pos += 1;
                let args = self.seq_items(")")?;
                e = Expr::Call(f, args);
            } else if self.eat_op("[") {
                let lo = if self.is_op(":") {
                    None
                } else {
                    Some(Box::new(self.expr()?))
                };
                if self.eat_op(":") {
                    let hi = if self.is_op("]") {
                        None
                    } else {
                        Some(Box::new(self.expr()?))
                    };
                    self.expect_op("]")?;
                    e = Expr::Slice(Box::new(e), lo, hi);
                } else {
                    self.expect_op("]")?;
                    let idx = lo.ok_or_else(|| EvalError("empty index".into()))?;
                    e = Expr::Index(Box::new(e), idx);
                }
            } else {
                return Ok(e);
            }
        }
    }

    /// Comma-separated expressions up to `close` (consumed); a trailing comma is allowed.
    fn seq_items(&mut self, close: &str) -> Result<Vec<Expr>, EvalError> {
        let mut items = Vec::new();
        loop {
            if self.eat_op(close) {
                return Ok(items);
            }
            items.push(self.expr()?);
            if !self.eat_op(",") {
                self.expect_op(close)?;
                return Ok(items);
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, EvalError> {
        let Some(tok) = self.peek().cloned() else {
            return err("unexpected end of expression");
        };
        self.pos += 1;
        match tok {
            Tok::Int(i) => Ok(Expr::Const(Value::Int(i))),
            Tok::Float(f) => Ok(Expr::Const(Value::Float(f))),
            Tok::Str(s) => Ok(Expr::Const(Value::Str(s))),
            Tok::Name(n) => match n.as_str() {
                "True" => Ok(Expr::Const(Value::Bool(true))),
                "False" => Ok(Expr::Const(Value::Bool(false))),
                "None" => Ok(Expr::Const(Value::None)),
                "if" | "else" | "and" | "or" | "not" | "in" => {
                    err(format!("unexpected keyword {n}"))
                }
                _ => Ok(Expr::Name(n)),
            },
            Tok::Op("(") => {
                if self.eat_op(")") {
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let first = self.expr()?;
                if self.eat_op(")") {
                    return Ok(first);
                }
                self.expect_op(",")?;
                let mut items = vec![first];
                items.extend(self.seq_items(")")?);
                Ok(fold(items, true))
            }
            Tok::Op("[") => Ok(fold(self.seq_items("]")?, false)),
            t => err(format!("unexpected token {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_template_expressions() {
        let cases = [
            "int((k * y)/ (x * 12) * 100)",
            "sample([(\"twins\",2), (\"triplets\",3)]* 2)",
            "fix_floats(shuffle_list(list(np.arange(75.03, 102, 1.01))))",
            "2 * (area // (length * 3) + length * 3) if unit1 == \"feet\" and unit2 == \"yards\" else 2 * (area // length + length)",
            "5000 <= price - (price * (fee1_percent + fee2_percent) / 100 + loan) - extra <= 250000",
            "not divides(t, 5)",
            "fraction_nums[:4]",
            "d3[0]",
            "n0 * (r + 1)**d",
            "$ans",
            "sample([\"building\", \"hospital\", \"university\",])",
            "-x ** 2",
        ];
        for c in cases {
            Expr::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
    }

    #[test]
    fn precedence() {
        let e = Expr::parse("1 + 2 * 3 ** 2").expect("parses");
        let Expr::Bin(BinOp::Add, _, r) = e else {
            panic!("expected +")
        };
        let Expr::Bin(BinOp::Mul, _, p) = *r else {
            panic!("expected *")
        };
        assert!(matches!(*p, Expr::Bin(BinOp::Pow, _, _)));
        let e = Expr::parse("-x ** 2").expect("parses");
        assert!(matches!(e, Expr::Neg(_)));
    }

    #[test]
    fn names_and_calls() {
        let e = Expr::parse("is_int(n1 * frac[1]) and x < total").expect("parses");
        let names: Vec<_> = e.names().into_iter().collect();
        assert_eq!(names, ["frac", "n1", "total", "x"]);
        assert!(e.calls().contains("is_int"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Expr::parse("1 +").is_err());
        assert!(Expr::parse("a ÷ b").is_err());
        assert!(Expr::parse("f(1").is_err());
    }
}
