//! Resource limits: hostile or runaway input gives errors quickly, never hangs or panics.

use std::time::{Duration, Instant};

use sleeptime_calc::{
    eval_expr, evaluate, parse_program, run, CalcError, Env, ErrorKind, SkipReason, MAX_DEPTH,
    MAX_EXPR_CHARS, MAX_PROGRAM_CHARS, MAX_STATEMENTS,
};

fn kind(s: &str) -> ErrorKind {
    match eval_expr(s, &Env::new()) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.kind(),
    }
}

#[test]
fn huge_exponents() {
    assert_eq!(kind("2 ^ 10^30"), ErrorKind::LimitExceeded);
    assert_eq!(kind("2^2^2^2^2^2"), ErrorKind::LimitExceeded);
    assert_eq!(kind("(1/2) ^ -1000"), ErrorKind::LimitExceeded);
    assert_eq!(kind("pow(10, 100)"), ErrorKind::LimitExceeded);
    assert_eq!(kind("10 ^ 37"), ErrorKind::Overflow);
    assert_eq!(kind("2 ^ 64 * 2 ^ 64"), ErrorKind::Overflow);
    assert_eq!(kind("(1/2) ^ 64 / 2 ^ 64"), ErrorKind::Overflow);
    assert_eq!(
        eval_expr("2 ^ 64 / 2 ^ 63", &Env::new()).map(|v| v.to_string()),
        Ok("2".into())
    );
}

#[test]
fn nesting_depth_is_bounded() {
    let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    assert!(eval_expr(&nested(MAX_DEPTH), &Env::new()).is_ok());
    assert_eq!(kind(&nested(MAX_DEPTH + 1)), ErrorKind::LimitExceeded);
    assert_eq!(kind(&nested(400)), ErrorKind::LimitExceeded);
    assert_eq!(
        kind(&format!("{}1", "-".repeat(500))),
        ErrorKind::LimitExceeded
    );
    assert_eq!(
        kind(&format!("{}1{}", "abs(".repeat(200), ")".repeat(200))),
        ErrorKind::LimitExceeded
    );
    assert_eq!(
        kind(&format!("{}2", "2^".repeat(300))),
        ErrorKind::LimitExceeded
    );
    // Unbalanced openers are a limit error or a parse error, not a crash.
    assert!(eval_expr(&"(".repeat(999), &Env::new()).is_err());
}

#[test]
fn expression_size_is_bounded() {
    // 499 terms fit in 1000 characters but are over the node limit.
    let long_sum = vec!["1"; 499].join("+");
    assert_eq!(kind(&long_sum), ErrorKind::LimitExceeded);
    // 200 terms are fine.
    let sum = vec!["1"; 200].join("+");
    assert_eq!(
        eval_expr(&sum, &Env::new()).map(|v| v.to_string()),
        Ok("200".into())
    );
    let too_long = "1".repeat(MAX_EXPR_CHARS + 1);
    assert_eq!(kind(&too_long), ErrorKind::LimitExceeded);
}

#[test]
fn long_lines_are_skipped() {
    let line = format!("x = {}", vec!["1"; 600].join(" + "));
    let p = parse_program(&format!("a = 1\n{line}\nb = 2\n"));
    assert_eq!(p.statements.len(), 2);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].reason, SkipReason::LineTooLong);
    assert_eq!(p.skipped[0].line, 2);
    assert!(p.skipped[0].text.chars().count() <= 81);
}

#[test]
fn program_length_is_bounded() {
    let mut text = String::new();
    let mut i = 0;
    while text.len() <= MAX_PROGRAM_CHARS + 500 {
        text.push_str(&format!(
            "value_{i} = {i} * 2 + 1   # a fairly long comment to fill the line\n"
        ));
        i += 1;
    }
    let (p, e) = run(&text);
    let last = p.skipped.last().expect("a skipped line");
    assert_eq!(last.reason, SkipReason::ProgramTooLong);
    assert_eq!(p.skipped.len(), 1);
    assert!(p.statements.len() < i);
    assert_eq!(e.values.len(), p.statements.len());
    assert!(e.is_ok());
    let read: usize = text
        .lines()
        .take(last.line - 1)
        .map(|l| l.chars().count() + 1)
        .sum();
    assert!(read <= MAX_PROGRAM_CHARS + 1, "{read}");
}

#[test]
fn statement_count_is_bounded() {
    let text: String = (0..MAX_STATEMENTS + 20)
        .map(|i| format!("v{i} = {i}\n"))
        .collect();
    let (p, e) = run(&text);
    assert_eq!(p.statements.len(), MAX_STATEMENTS);
    assert_eq!(p.skipped.len(), 20);
    assert!(p
        .skipped
        .iter()
        .all(|s| s.reason == SkipReason::TooManyStatements));
    assert_eq!(e.values.len(), MAX_STATEMENTS);
}

#[test]
fn long_dependency_chains_and_cycles_are_fine() {
    let n = MAX_STATEMENTS;
    // Written backwards, so every statement is a forward reference.
    let mut text: String = (1..n)
        .rev()
        .map(|i| format!("x{i} = x{} + 1\n", i - 1))
        .collect();
    text.push_str("x0 = 0\n");
    let e = evaluate(&parse_program(&text));
    assert!(e.is_ok(), "{:?}", e.errors.first());
    assert_eq!(
        e.get(&format!("x{}", n - 1)).map(|v| v.to_string()),
        Some((n - 1).to_string())
    );

    // One long cycle: every member reports the whole cycle.
    let text: String = (0..n)
        .map(|i| format!("c{i} = c{} + 1\n", (i + 1) % n))
        .collect();
    let e = evaluate(&parse_program(&text));
    assert_eq!(e.errors.len(), n);
    match &e.errors[0].error {
        CalcError::Cycle { cycle } => {
            assert_eq!(cycle.len(), n + 1);
            assert_eq!(cycle.first(), cycle.last());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn worst_case_programs_finish_quickly() {
    let start = Instant::now();
    // Every statement multiplies large values: overflow errors, not slow bignums.
    let mut text = String::from("a0 = 10^35\n");
    for i in 1..MAX_STATEMENTS {
        text.push_str(&format!("a{i} = a{} ^ 64 * a{} ^ 64\n", i - 1, i - 1));
    }
    let e = evaluate(&parse_program(&text));
    assert_eq!(e.errors.len(), MAX_STATEMENTS - 1);
    assert_eq!(e.errors[0].kind(), ErrorKind::Overflow);
    assert_eq!(e.errors[1].kind(), ErrorKind::DependencyFailed);
    // A wide fan-in: every statement uses every earlier one.
    let mut text = String::new();
    for i in 0..60 {
        let terms: Vec<String> = (0..i).map(|j| format!("w{j}")).collect();
        if terms.is_empty() {
            text.push_str("w0 = 1\n");
        } else {
            text.push_str(&format!("w{i} = max({})\n", terms.join(", ")));
        }
    }
    let e = evaluate(&parse_program(&text));
    assert!(e.is_ok(), "{:?}", e.errors.first());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// A tiny deterministic PRNG (xorshift64*), so the tests need no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_garbage_never_panics() {
    let pieces = [
        "a", "b", "x1", "_", "=", "==", "+", "-", "*", "**", "/", "//", "%", "^", "(", ")", ",",
        ".", "0", "7", "99", "1e", "e5", "$", "€", "#", ";", "\n", " ", "  ", "```", "let ",
        "min(", "round(", "sqrt(", "pow(", "math.", "≈", "~=", "×", "÷", "−", "é", "\t", "1,000",
        "10^36", "0.", ".5", "`", "- ", "1. ", "=>", "<=", ":", ":=",
    ];
    let mut rng = Rng(0x5EED_CA1C);
    for _ in 0..3000 {
        let len = 1 + rng.below(40);
        let text: String = (0..len).map(|_| pieces[rng.below(pieces.len())]).collect();
        let (p, e) = run(&text);
        assert!(
            e.values.len() + e.errors.len() <= p.statements.len() * 2 + 1,
            "{text:?}"
        );
        for s in &p.statements {
            let _ = s.expr.as_ref().map(|x| x.to_string());
        }
        let _ = eval_expr(&text, &Env::new());
    }
}
