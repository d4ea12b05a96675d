//! Property-style checks against `i128` arithmetic with a deterministic PRNG.

use sleeptime_calc::{eval_expr, CalcError, Env, Value, MAX_MAGNITUDE};

/// xorshift64*: deterministic, no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn int(&mut self, max: i128) -> i128 {
        (self.below((2 * max + 1) as u64) as i128) - max
    }
}

/// Python's `//` and `%` on integers.
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

/// A random integer expression and its value in `i128` (`None`: division by zero or a value
/// outside the exact range somewhere).
fn gen(rng: &mut Rng, depth: u32) -> (String, Option<i128>) {
    if depth == 0 || rng.below(4) == 0 {
        let n = rng.int(1000);
        let text = if n < 0 && rng.below(2) == 0 {
            format!("({n})")
        } else {
            format!("{n}")
        };
        // A bare negative literal is unary minus applied to a positive one; keep it
        // parenthesised where precedence could matter.
        let text = if n < 0 { format!("({text})") } else { text };
        return (text, Some(n));
    }
    let (l, lv) = gen(rng, depth - 1);
    let (r, rv) = gen(rng, depth - 1);
    let (op, value) = match rng.below(6) {
        0 => ("+", lv.zip(rv).and_then(|(a, b)| a.checked_add(b))),
        1 => ("-", lv.zip(rv).and_then(|(a, b)| a.checked_sub(b))),
        2 => ("*", lv.zip(rv).and_then(|(a, b)| a.checked_mul(b))),
        3 => ("×", lv.zip(rv).and_then(|(a, b)| a.checked_mul(b))),
        4 => (
            "//",
            lv.zip(rv)
                .and_then(|(a, b)| (b != 0).then(|| floor_div(a, b))),
        ),
        _ => (
            "%",
            lv.zip(rv)
                .and_then(|(a, b)| (b != 0).then(|| a - b * floor_div(a, b))),
        ),
    };
    let value = value.filter(|v| v.unsigned_abs() <= MAX_MAGNITUDE as u128);
    let sp = if rng.below(2) == 0 { " " } else { "" };
    (format!("({l}{sp}{op}{sp}{r})"), value)
}

#[test]
fn integer_expressions_match_i128() {
    let mut rng = Rng(20250413);
    let mut checked = 0;
    for _ in 0..4000 {
        let (text, expected) = gen(&mut rng, 5);
        let got = eval_expr(&text, &Env::new());
        match expected {
            Some(n) => {
                assert_eq!(got, Ok(Value::from_integer(n).expect("in range")), "{text}");
                checked += 1;
            }
            // The reference could not compute it: the engine must report an error (division
            // by zero or overflow), never a wrong value.
            None => assert!(
                matches!(got, Err(CalcError::DivisionByZero | CalcError::Overflow)),
                "{text}: {got:?}"
            ),
        }
    }
    assert!(checked > 2000, "{checked}");
}

#[test]
fn precedence_matches_fully_parenthesised_form() {
    // a + b * c - d, a - b - c, a * b / c ... without parentheses agree with the explicit form.
    let mut rng = Rng(7);
    for _ in 0..2000 {
        // `d` is positive: `x % -5` reads as a percent sign followed by a subtraction.
        let (a, b, c, d) = (
            rng.int(50),
            rng.int(50) | 1,
            rng.int(50),
            (rng.int(50) | 1).abs(),
        );
        let pairs = [
            (
                format!("{a} + {b} * {c} - {d}"),
                format!("({a} + ({b} * {c})) - {d}"),
            ),
            (format!("{a} - {b} - {c}"), format!("({a} - {b}) - {c}")),
            (
                format!("{a} * {c} / {b} / {d}"),
                format!("(({a} * {c}) / {b}) / {d}"),
            ),
            (
                format!("{a} - {c} / {b} * {d}"),
                format!("{a} - (({c} / {b}) * {d})"),
            ),
            (
                format!("{a} + {c} // {b} % {d}"),
                format!("{a} + (({c} // {b}) % {d})"),
            ),
        ];
        for (plain, explicit) in pairs {
            assert_eq!(
                eval_expr(&plain, &Env::new()),
                eval_expr(&explicit, &Env::new()),
                "{plain}"
            );
        }
    }
}

#[test]
fn rational_identities_hold_exactly() {
    let mut rng = Rng(99);
    for _ in 0..3000 {
        let (a, b) = (rng.int(10_000), rng.int(10_000));
        let (c, d) = (rng.int(10_000), rng.int(10_000));
        if b == 0 || d == 0 {
            continue;
        }
        let x = Value::new(a, b).expect("small");
        let y = Value::new(c, d).expect("small");
        let sum = x.checked_add(&y).expect("small");
        assert_eq!(sum, Value::new(a * d + b * c, b * d).expect("small"));
        assert_eq!(sum.checked_sub(&y), Ok(x));
        if !y.is_zero() {
            assert_eq!(x.checked_div(&y).and_then(|q| q.checked_mul(&y)), Ok(x));
        }
        // Ordering agrees with cross-multiplication (safe here: small numbers).
        assert_eq!(
            x.cmp(&y),
            (a * b.signum() * d.abs()).cmp(&(c * d.signum() * b.abs()))
        );
        // The exact fraction form always parses back; so does the decimal form when exact.
        assert_eq!(x.to_fraction_string().parse::<Value>(), Ok(x));
        if x.is_terminating() {
            assert_eq!(x.to_string().parse::<Value>(), Ok(x), "{x}");
        }
        // The same sum written as an expression.
        let text = format!("{a}/({b}) + ({c})/({d})");
        assert_eq!(eval_expr(&text, &Env::new()), Ok(sum), "{text}");
        // round, floor and ceil bracket the value.
        assert!(x.floor() <= x && x <= x.ceil());
        let r = x.round(0).expect("small");
        assert!(r.checked_sub(&x).expect("small").abs() <= Value::new(1, 2).expect("half"));
    }
}
