//! Single expressions: exactness, operators, functions, and the `Value` API.

use sleeptime_calc::{eval_expr, CalcError, Env, ErrorKind, Value};

fn eval(s: &str) -> Value {
    eval_expr(s, &Env::new()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn show(s: &str) -> String {
    eval(s).to_string()
}

fn err(s: &str) -> CalcError {
    match eval_expr(s, &Env::new()) {
        Ok(v) => panic!("{s}: expected an error, got {v}"),
        Err(e) => e,
    }
}

fn v(s: &str) -> Value {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn decimals_are_exact() {
    assert_eq!(eval("0.1 + 0.2"), eval("0.3"));
    assert_eq!(eval("1/3 * 3"), Value::ONE);
    assert_eq!(eval("1/3 + 1/3 + 1/3"), Value::ONE);
    assert_eq!(show("0.1 * 3"), "0.3");
    assert_eq!(show("1 - 0.9"), "0.1");
    assert_eq!(show("2.5 * 4"), "10");
    assert_eq!(show("0.125"), "0.125");
    assert_eq!(show("10 / 4"), "2.5");
    assert!(eval("12 / 4").is_integer());
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(show("2 + 3 * 4"), "14");
    assert_eq!(show("(2 + 3) * 4"), "20");
    assert_eq!(show("10 - 4 - 3"), "3");
    assert_eq!(show("48 / 4 / 2"), "6");
    assert_eq!(show("2 ^ 3 ^ 2"), "512");
    assert_eq!(show("-2 ^ 2"), "-4");
    assert_eq!(show("(-2) ^ 2"), "4");
    assert_eq!(show("2 ^ -1"), "0.5");
    assert_eq!(show("2 ** 10"), "1024");
    assert_eq!(show("- -3"), "3");
    assert_eq!(show("+3 - +2"), "1");
    assert_eq!(show("2 * -3"), "-6");
}

#[test]
fn unicode_operator_aliases() {
    assert_eq!(show("6 × 7"), "42");
    assert_eq!(show("84 ÷ 2"), "42");
    assert_eq!(show("50 − 8"), "42");
}

#[test]
fn x_is_not_multiplication() {
    assert_eq!(err("6 x 7").kind(), ErrorKind::Parse);
}

#[test]
fn percentages_and_currency() {
    assert_eq!(show("15%"), "0.15");
    assert_eq!(show("12.5%"), "0.125");
    assert_eq!(show("15% * 200"), "30");
    assert_eq!(show("200 * 15%"), "30");
    assert_eq!(show("200 - 200 * 15%"), "170");
    assert_eq!(show("(10 + 5)%"), "0.15");
    assert_eq!(show("$12.50 * 4"), "50");
    assert_eq!(show("-$5 + $7.25"), "2.25");
    assert_eq!(show("€3 + £2"), "5");
    let mut env = Env::new();
    env.insert("rate".into(), Value::from(20));
    assert_eq!(
        eval_expr("rate% * 50", &env).map(|v| v.to_string()),
        Ok("10".into())
    );
}

#[test]
fn modulo_and_floor_division_follow_python() {
    assert_eq!(show("17 % 5"), "2");
    assert_eq!(show("-17 % 5"), "3");
    assert_eq!(show("17 % (-5)"), "-3");
    // `%` followed by an operator is a percent sign: `15% - 3` is 0.15 - 3.
    assert_eq!(show("15% - 3"), "-2.85");
    assert_eq!(show("17 // 5"), "3");
    assert_eq!(show("-17 // 5"), "-4");
    assert_eq!(show("7.5 % 2"), "1.5");
    assert_eq!(err("5 % 0"), CalcError::DivisionByZero);
    assert_eq!(err("5 // 0"), CalcError::DivisionByZero);
}

#[test]
fn number_literals() {
    assert_eq!(show("1_000 + 1"), "1001");
    assert_eq!(show(".5 + 5."), "5.5");
    assert_eq!(show("1.5e3"), "1500");
    assert_eq!(show("2E-3"), "0.002");
    // A comma inside a number is ambiguous; the caller should normalise.
    let e = err("1,000 + 5");
    assert_eq!(e.kind(), ErrorKind::Parse);
    assert!(e.to_string().contains("thousands"), "{e}");
    assert_eq!(err("max(10,500)").kind(), ErrorKind::Parse);
    // ...but a comma between arguments is fine.
    assert_eq!(show("max(10, 500)"), "500");
    assert_eq!(show("max(1,2)"), "2");
    assert_eq!(err("3 apples").kind(), ErrorKind::Parse);
    assert_eq!(err("2x").kind(), ErrorKind::Parse);
}

#[test]
fn functions() {
    assert_eq!(show("min(3, 1.5, 2)"), "1.5");
    assert_eq!(show("max(3, 1.5, 2)"), "3");
    assert_eq!(show("max(-1/3, -1/2)"), "-0.333333");
    assert_eq!(show("sum(1, 2, 3.5)"), "6.5");
    assert_eq!(show("mean(1, 2, 3, 4)"), "2.5");
    assert_eq!(show("avg(2, 4)"), "3");
    assert_eq!(show("abs(-7.5)"), "7.5");
    assert_eq!(show("floor(17.16)"), "17");
    assert_eq!(show("ceil(17.16)"), "18");
    assert_eq!(show("ceil(18)"), "18");
    assert_eq!(show("floor(-2.5)"), "-3");
    assert_eq!(show("ceil(-2.5)"), "-2");
    assert_eq!(show("trunc(-2.7)"), "-2");
    assert_eq!(show("int(2.7)"), "2");
    assert_eq!(show("sqrt(144)"), "12");
    assert_eq!(show("sqrt(2.25)"), "1.5");
    assert_eq!(show("sqrt(4/9)"), "0.666667");
    assert_eq!(eval("sqrt(4/9)"), v("2/3"));
    assert_eq!(show("pow(2, 5)"), "32");
    assert_eq!(show("math.ceil(1716 / 300)"), "6");
    assert_eq!(show("Math.round(2.5)"), "3");
    assert_eq!(show("MAX(1, 2)"), "2");
}

#[test]
fn rounding_is_half_away_from_zero_and_exact() {
    assert_eq!(eval("round(2.345, 2)"), v("2.35"));
    assert_eq!(show("round(2.345, 2)"), "2.35");
    assert_eq!(show("round(2.5)"), "3");
    assert_eq!(show("round(3.5)"), "4");
    assert_eq!(show("round(-2.5)"), "-3");
    assert_eq!(show("round(2.4999)"), "2");
    assert_eq!(show("round(1/3, 4)"), "0.3333");
    assert_eq!(show("round(2/3, 2)"), "0.67");
    assert_eq!(show("round(1234.5, -2)"), "1200");
    assert_eq!(show("round(1250, -2)"), "1300");
    assert_eq!(show("round(0.005, 2)"), "0.01");
    assert_eq!(err("round(2.5, 0.5)").kind(), ErrorKind::BadArguments);
    assert_eq!(err("round(2.5, 99)").kind(), ErrorKind::LimitExceeded);
}

#[test]
fn function_errors() {
    let e = err("sqrt(2)");
    assert_eq!(e.kind(), ErrorKind::InexactSqrt);
    assert_eq!(e.to_string(), "sqrt(2) is not exact");
    assert_eq!(err("sqrt(-4)").kind(), ErrorKind::BadArguments);
    let e = err("log(10)");
    assert_eq!(e, CalcError::UnknownFunction { name: "log".into() });
    assert!(e.to_string().contains("min, max"), "{e}");
    assert_eq!(err("print(5)").kind(), ErrorKind::UnknownFunction);
    assert_eq!(err("abs(1, 2)").kind(), ErrorKind::BadArguments);
    assert_eq!(err("min()").kind(), ErrorKind::BadArguments);
    assert_eq!(err("round()").kind(), ErrorKind::BadArguments);
    assert_eq!(err("pow(2)").kind(), ErrorKind::BadArguments);
}

#[test]
fn division_by_zero() {
    assert_eq!(err("1 / 0"), CalcError::DivisionByZero);
    assert_eq!(err("1 / (2 - 2)"), CalcError::DivisionByZero);
    assert_eq!(err("0 ^ -1"), CalcError::DivisionByZero);
    assert_eq!(err("mean(1) / 0"), CalcError::DivisionByZero);
    assert_eq!(show("0 ^ 0"), "1");
    assert_eq!(show("0 / 5"), "0");
}

#[test]
fn powers_are_integer_and_bounded() {
    let e = err("2 ^ 0.5");
    assert_eq!(e.kind(), ErrorKind::NonIntegerExponent);
    assert!(e.to_string().contains("sqrt"), "{e}");
    assert_eq!(show("4 ^ (6/3)"), "16");
    assert_eq!(show("1.1 ^ 2"), "1.21");
    assert_eq!(show("(1/2) ^ 3"), "0.125");
    assert_eq!(show("10 ^ 36"), "1000000000000000000000000000000000000");
    assert_eq!(err("10 ^ 37"), CalcError::Overflow);
    assert_eq!(err("2 ^ 65").kind(), ErrorKind::LimitExceeded);
    assert_eq!(err("2 ^ 1000000").kind(), ErrorKind::LimitExceeded);
    assert_eq!(
        err("1 ^ 99999999999999999999999").kind(),
        ErrorKind::LimitExceeded
    );
    assert_eq!(err("7 ^ 64"), CalcError::Overflow);
    assert_eq!(show("3 ^ 64"), "3433683820292512484657849089281");
    assert_eq!(show("1 ^ 64"), "1");
    assert_eq!(show("(-1) ^ 63"), "-1");
}

#[test]
fn overflow_is_an_error() {
    assert_eq!(err("10^20 * 10^20"), CalcError::Overflow);
    assert_eq!(err("1 / 10^20 / 10^20"), CalcError::Overflow);
    assert_eq!(
        err("99999999999999999999999999999999999999999"),
        CalcError::Overflow
    );
    assert_eq!(err("10e36").kind(), ErrorKind::Overflow);
    assert_eq!(err("1e99").kind(), ErrorKind::Parse);
    // Near the limit, exact arithmetic still works.
    assert_eq!(
        show("10^36 - 1 + 1"),
        "1000000000000000000000000000000000000"
    );
}

#[test]
fn undefined_names_are_all_reported() {
    let e = err("a * b + a");
    assert_eq!(
        e,
        CalcError::UndefinedName {
            names: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(e.to_string(), "undefined names: a, b");
    let mut env = Env::new();
    env.insert("a".into(), Value::from(2));
    assert_eq!(
        eval_expr("a * b", &env).map_err(|e| e.to_string()),
        Err("undefined name: b".to_string())
    );
}

#[test]
fn parse_errors_have_columns() {
    let col = |s: &str| match err(s) {
        CalcError::Parse { column, .. } => column,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(col("1 +"), 4);
    assert_eq!(col("1 + * 2"), 5);
    assert_eq!(col("(1 + 2"), 7);
    assert_eq!(col("1 + 2)"), 6);
    assert_eq!(col("3 apples"), 3);
    assert_eq!(col("2 (3)"), 3);
    assert_eq!(col("1 + #"), 5);
    assert_eq!(col(""), 1);
    assert_eq!(col("max(1 2)"), 7);
}

#[test]
fn value_display_and_fractions() {
    assert_eq!(v("420").to_string(), "420");
    assert_eq!(v("-2.50").to_string(), "-2.5");
    assert_eq!(v("1/3").to_string(), "0.333333");
    assert_eq!(v("1/3").to_fraction_string(), "1/3");
    assert_eq!(v("2/3").to_string(), "0.666667");
    assert_eq!(v("-5/3").to_string(), "-1.666667");
    assert_eq!(v("0.000001").to_string(), "0.000001");
    assert_eq!(v("1/7000000").to_string(), "1/7000000");
    assert_eq!(v("2.5").to_decimal_string(3), "2.500");
    assert_eq!(v("420").to_fraction_string(), "420");
    assert!(v("0.125").is_terminating());
    assert!(!v("1/3").is_terminating());
    assert_eq!(format!("{:?}", v("1/3")), "Value(1/3)");
}

#[test]
fn value_parse_accessors_and_conversions() {
    assert_eq!(v("12.5%"), Value::new(1, 8).expect("valid"));
    assert_eq!(v("$12.50"), Value::new(25, 2).expect("valid"));
    assert_eq!(v(" -3 "), Value::from(-3));
    assert_eq!(v("6/4").numer(), 3);
    assert_eq!(v("6/4").denom(), 2);
    assert_eq!(v("-6/4").numer(), -3);
    assert_eq!(v("7").to_integer(), Some(7));
    assert_eq!(v("7.5").to_integer(), None);
    assert!("abc".parse::<Value>().is_err());
    assert!("".parse::<Value>().is_err());
    assert_eq!(Value::from_integer(42), Ok(Value::from(42i64)));
    assert_eq!(v("2.5").to_f64(), 2.5);
    assert!((v("1/3").to_f64() - 1.0 / 3.0).abs() < 1e-15);
}

#[test]
fn value_ordering_and_checked_ops() {
    assert!(v("1/3") < v("0.34"));
    assert!(v("-1/3") > v("-0.34"));
    assert_eq!(v("2/4").cmp(&v("0.5")), std::cmp::Ordering::Equal);
    let mut xs = vec![v("2.5"), v("-1"), v("1/3"), v("0")];
    xs.sort();
    assert_eq!(xs, vec![v("-1"), v("0"), v("1/3"), v("2.5")]);
    assert_eq!(v("1.5").checked_add(&v("2.5")), Ok(v("4")));
    assert_eq!(v("1.5").checked_sub(&v("2.5")), Ok(v("-1")));
    assert_eq!(v("1.5").checked_mul(&v("4")), Ok(v("6")));
    assert_eq!(
        v("1.5").checked_div(&v("0")),
        Err(CalcError::DivisionByZero)
    );
    assert_eq!(v("2/3").checked_pow(-2), Ok(v("9/4")));
    assert_eq!(v("2.345").round(2), Ok(v("2.35")));
}

#[test]
fn approx_eq_f64() {
    assert!(v("619").approx_eq_f64(619.0, 0.0));
    assert!(v("1/3").approx_eq_f64(0.333_333_333, 1e-6));
    assert!(!v("1/3").approx_eq_f64(0.33, 1e-6));
    assert!(v("1/3").approx_eq_f64(0.33, 0.02));
    assert!(v("0").approx_eq_f64(0.0, 0.0));
    assert!(!v("0").approx_eq_f64(1e-9, 1e-6));
    assert!(!v("1").approx_eq_f64(f64::NAN, 1.0));
    assert!(!v("1").approx_eq_f64(f64::INFINITY, 1.0));
}
