//! A small, sandboxed, exact expression language for sleep-time precomputation.
//!
//! A small model makes arithmetic slips when it precomputes quantities (`11 * 67 = 777`), so
//! the engine owns the arithmetic: the model writes named expressions, one per line, and this
//! crate computes every value exactly, reports each failing statement with a reason the model
//! can act on, and flags values the model claimed that are wrong.
//!
//! ```
//! let program = sleeptime_calc::parse_program(
//!     "price_per_dozen = $11\n\
//!      dozens = croissants / 12\n\
//!      croissants = 36\n\
//!      total_cost = dozens * price_per_dozen = 432   # the model's claim\n\
//!      discount = 15% * total_cost\n\
//!      final = round(total_cost - discount, 2)",
//! );
//! let eval = sleeptime_calc::evaluate(&program);
//! assert!(eval.is_ok());
//! assert_eq!(eval.get("final").map(|v| v.to_string()).as_deref(), Some("28.05"));
//! assert_eq!(eval.claimed_mismatches[0].claimed_text, "432");
//! ```
//!
//! # Language
//!
//! ```text
//! program   := line*                      one statement per line (or per `;`-separated part)
//! statement := name "=" expr ("=" claim)*  the last claim is checked against the value
//! expr      := term (("+" | "-") term)*
//! term      := unary (("*" | "/" | "//" | "%") unary)*      × · ÷ are aliases; // floors
//! unary     := ("-" | "+") unary | power
//! power     := postfix (("^" | "**") unary)?                 right-associative
//! postfix   := primary "%"?               `15%` is 0.15; `a % b` (operand after) is modulo
//! primary   := number | name | name "(" expr ("," expr)* ")" | "(" expr ")"
//! number    := [$€£]? digits ("." digits)? (e [+-]? digits)?  `1_000` ok, `1,000` rejected
//! name      := [A-Za-z_][A-Za-z0-9_]*
//! ```
//!
//! - Values are exact rationals ([`Value`]): `0.1 + 0.2 == 0.3`, `1/3 * 3 == 1`. Numerator
//!   and denominator are limited to 10^36; beyond that is [`CalcError::Overflow`].
//! - `-2^2` is `-4`; `2^-1` is `0.5`. Exponents must be integers of magnitude at most
//!   [`MAX_EXPONENT`].
//! - Functions: `min`, `max`, `sum`, `mean` (`avg`), `abs`, `round(x[, digits])` (half away
//!   from zero, so `round(2.345, 2)` is `2.35` and `round(-2.5)` is `-3`), `floor`, `ceil`,
//!   `trunc` (`int`), `sqrt` (only when exact), `pow(x, n)`. A `math.` or `Math.` prefix is
//!   ignored. Nothing else: no I/O, loops or user functions.
//! - Statements may refer to names defined later; evaluation follows dependencies.
//! - Limits: [`MAX_PROGRAM_CHARS`], [`MAX_STATEMENTS`], [`MAX_EXPR_CHARS`] per line,
//!   [`MAX_DEPTH`] nesting, [`MAX_NODES`] parts per expression.

mod error;
mod eval;
mod expr;
mod program;
mod value;

use std::collections::BTreeMap;

pub use error::{CalcError, ErrorKind};
pub use eval::{evaluate, ClaimMismatch, Evaluation, NamedValue, StatementError};
pub use expr::{Expr, MAX_DEPTH, MAX_EXPONENT, MAX_EXPR_CHARS, MAX_NODES, MAX_ROUND_DIGITS};
pub use program::{
    parse_program, Claim, Program, SkipReason, SkippedLine, Statement, MAX_PROGRAM_CHARS,
    MAX_STATEMENTS,
};
pub use value::{Value, DISPLAY_DECIMALS, MAX_EXACT_DECIMALS, MAX_MAGNITUDE};

/// Name bindings for [`eval_expr`] and [`Expr::eval`].
pub type Env = BTreeMap<String, Value>;

/// Parses and evaluates one expression with the names in `env`.
///
/// ```
/// use sleeptime_calc::{eval_expr, Env, Value};
/// let mut env = Env::new();
/// env.insert("total".into(), Value::from(737));
/// assert_eq!(eval_expr("total - 5 * 67", &env).unwrap().to_string(), "402");
/// ```
pub fn eval_expr(expr: &str, env: &Env) -> Result<Value, CalcError> {
    Expr::parse(expr)?.eval(env)
}

/// Parses and evaluates a program: [`parse_program`] then [`evaluate`].
pub fn run(text: &str) -> (Program, Evaluation) {
    let program = parse_program(text);
    let evaluation = evaluate(&program);
    (program, evaluation)
}
