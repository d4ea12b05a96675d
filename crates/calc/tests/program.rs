//! Whole programs: order-independent evaluation, failures and their propagation, claims.

use sleeptime_calc::{evaluate, parse_program, run, CalcError, ErrorKind, Evaluation, Value};

fn eval(text: &str) -> Evaluation {
    evaluate(&parse_program(text))
}

fn get(e: &Evaluation, name: &str) -> String {
    e.get(name)
        .unwrap_or_else(|| panic!("no value for {name}; errors: {:?}", e.errors))
        .to_string()
}

fn error_of<'a>(e: &'a Evaluation, name: &str) -> &'a CalcError {
    &e.errors
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no error for {name}: {e:?}"))
        .error
}

#[test]
fn the_brief_example() {
    let e = eval(
        "price_per_dozen = 11\n\
         croissants = 36\n\
         dozens = croissants / 12\n\
         total_cost = dozens * price_per_dozen   # comment\n\
         discount = 15% * total_cost\n\
         final = round(total_cost - discount, 2)\n",
    );
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(get(&e, "dozens"), "3");
    assert_eq!(get(&e, "total_cost"), "33");
    assert_eq!(get(&e, "discount"), "4.95");
    assert_eq!(get(&e, "final"), "28.05");
    let names: Vec<&str> = e.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "price_per_dozen",
            "croissants",
            "dozens",
            "total_cost",
            "discount",
            "final"
        ]
    );
    assert_eq!(e.values[3].line, 4);
}

#[test]
fn forward_references_evaluate_in_dependency_order() {
    let e = eval("c = a + b\nb = a * 2\na = 5\n");
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(get(&e, "c"), "15");
    // Values are listed in source order, not evaluation order.
    let names: Vec<&str> = e.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["c", "b", "a"]);
    assert_eq!(e.env().len(), 3);
}

#[test]
fn cycles_are_named_from_each_member() {
    let e = eval("a = b + 1\nb = c * 2\nc = a - 3\nd = 4\nuses_cycle = a + d\n");
    assert_eq!(get(&e, "d"), "4");
    assert_eq!(
        error_of(&e, "a"),
        &CalcError::Cycle {
            cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
        }
    );
    assert_eq!(error_of(&e, "b").to_string(), "cycle: b -> c -> a -> b");
    assert_eq!(error_of(&e, "c").kind(), ErrorKind::Cycle);
    assert_eq!(
        error_of(&e, "uses_cycle"),
        &CalcError::DependencyFailed {
            names: vec!["a".into()]
        }
    );
    assert_eq!(e.errors.len(), 4);
    // Errors come in source order.
    let lines: Vec<usize> = e.errors.iter().map(|x| x.line).collect();
    assert_eq!(lines, [1, 2, 3, 5]);
}

#[test]
fn self_reference_is_a_cycle() {
    let e = eval("total = total + 5");
    assert_eq!(error_of(&e, "total").to_string(), "cycle: total -> total");
}

#[test]
fn redefinition_is_an_error_on_both_lines() {
    let e = eval("x = 5\ny = x * 2\nx = 6\nz = 1\n");
    let dup = CalcError::DuplicateDefinition {
        name: "x".into(),
        first_line: 1,
        second_line: 3,
    };
    let x_errors: Vec<_> = e.errors.iter().filter(|x| x.name == "x").collect();
    assert_eq!(x_errors.len(), 2);
    assert!(x_errors.iter().all(|x| x.error == dup));
    assert_eq!(dup.to_string(), "`x` is defined twice, on lines 1 and 3");
    assert_eq!(error_of(&e, "y").to_string(), "depends on failed x");
    assert_eq!(get(&e, "z"), "1");
    assert!(e.get("x").is_none());
}

#[test]
fn an_identical_repeated_line_is_skipped_not_an_error() {
    // The 1.5B model loops, repeating lines verbatim.
    let (p, e) = run("age = 22 + 3\nother = age * 2\nage  =  22+3\n");
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(p.statements.len(), 2);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].line, 3);
    assert_eq!(p.skipped[0].reason.to_string(), "repeats line 1");
    assert_eq!(get(&e, "other"), "50");
}

#[test]
fn undefined_names_and_propagation() {
    let e = eval("total = price * qty\nqty = 3\nshown = total + 1\nfine = qty + 1\n");
    assert_eq!(
        error_of(&e, "total"),
        &CalcError::UndefinedName {
            names: vec!["price".into()]
        }
    );
    assert_eq!(error_of(&e, "shown").to_string(), "depends on failed total");
    assert_eq!(get(&e, "fine"), "4");
    assert_eq!(
        e.errors[0].to_string(),
        "line 1, total: undefined name: price"
    );
    assert_eq!(e.errors[0].kind(), ErrorKind::UndefinedName);
    assert_eq!(e.errors[0].message(), "undefined name: price");
}

#[test]
fn failures_propagate_transitively_and_others_still_evaluate() {
    let e = eval(
        "rate = 0\n\
         per_unit = 100 / rate\n\
         doubled = per_unit * 2\n\
         report = doubled + ok\n\
         ok = 7\n\
         broken = 3 +\n\
         uses_broken = broken * 2\n\
         both = per_unit + broken\n",
    );
    assert_eq!(error_of(&e, "per_unit"), &CalcError::DivisionByZero);
    assert_eq!(
        error_of(&e, "doubled").to_string(),
        "depends on failed per_unit"
    );
    assert_eq!(
        error_of(&e, "report").to_string(),
        "depends on failed doubled"
    );
    assert_eq!(error_of(&e, "broken").kind(), ErrorKind::Parse);
    assert_eq!(
        error_of(&e, "uses_broken").to_string(),
        "depends on failed broken"
    );
    assert_eq!(
        error_of(&e, "both").to_string(),
        "depends on failed broken, per_unit"
    );
    assert_eq!(get(&e, "ok"), "7");
    assert_eq!(get(&e, "rate"), "0");
    assert_eq!(e.values.len(), 2);
    assert_eq!(e.errors.len(), 6);
}

#[test]
fn runtime_errors_are_per_statement() {
    let e = eval(
        "a = sqrt(2)\nb = 2 ^ 0.5\nc = log(3)\nd = 10^20 * 10^20\ne = 2 ^ 100\nf = round(1.5)\n",
    );
    assert_eq!(error_of(&e, "a").kind(), ErrorKind::InexactSqrt);
    assert_eq!(error_of(&e, "b").kind(), ErrorKind::NonIntegerExponent);
    assert_eq!(error_of(&e, "c").kind(), ErrorKind::UnknownFunction);
    assert_eq!(error_of(&e, "d").kind(), ErrorKind::Overflow);
    assert_eq!(error_of(&e, "e").kind(), ErrorKind::LimitExceeded);
    assert_eq!(get(&e, "f"), "2");
}

#[test]
fn parse_error_columns_are_columns_of_the_line() {
    let p = parse_program("   let total = 3 * * 4   # oops\nx = (1 + 2");
    let col = |i: usize| match &p.statements[i].expr {
        Err(CalcError::Parse { column, .. }) => *column,
        other => panic!("{other:?}"),
    };
    // `   let total = 3 * * 4`: the second `*` is the 20th character.
    assert_eq!(col(0), 20);
    assert_eq!(col(1), 11);
    assert_eq!(p.statements[0].expr_text, "3 * * 4");
    assert_eq!(p.statements[0].source, "let total = 3 * * 4");
}

#[test]
fn claimed_values_are_checked() {
    // The pilot's slip: 11 * 67 is 737, not 777.
    let e = eval("total = 11 * 67 = 777\nright = 12 * 35 = 420\n");
    assert_eq!(get(&e, "total"), "737");
    assert_eq!(get(&e, "right"), "420");
    assert_eq!(e.claimed_mismatches.len(), 1);
    let m = &e.claimed_mismatches[0];
    assert_eq!((m.name.as_str(), m.line), ("total", 1));
    assert_eq!(m.claimed, Value::from(777));
    assert_eq!(m.actual, Value::from(737));
    assert_eq!(m.claimed_text, "777");
    assert_eq!(m.to_string(), "line 1, total: claimed 777 but it is 737");
}

#[test]
fn claim_chains_and_claim_forms() {
    let (p, e) = run("plants = 11 * 67 + 37 + 180 = 777 + 37 + 180 = 994\n\
         trips = 1716 / 100 = 17.16\n\
         rounded = 1716 / 100 = 17\n\
         needed = 1716 / 100 = 18 trips\n\
         third = 1 / 3 = 0.33\n\
         money = 1224 * 1 = $1,224 pounds\n\
         pct = 3 / 20 = 15%\n\
         approx = 22 / 7 ≈ 3.14\n\
         tilde = 22 / 7 ~= 3.2\n\
         expr_claim = 2 * 3 = 1 + 5\n\
         words = 2 * 3 = six\n\
         empty = 2 * 3 =\n");
    assert!(e.is_ok(), "{:?}", e.errors);
    let mismatched: Vec<&str> = e
        .claimed_mismatches
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    // 994 is wrong (the chain is 11*67 = 737 -> 954); 18 is not 17.16 rounded; 3.2 is not 22/7.
    assert_eq!(mismatched, ["plants", "needed", "tilde"]);
    assert_eq!(get(&e, "plants"), "954");
    assert_eq!(e.claimed_mismatches[1].claimed_text, "18 trips");
    let claim = |name: &str| {
        p.statements
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.claim.clone())
    };
    assert_eq!(
        claim("money").and_then(|c| c.value),
        Some(Value::from(1224))
    );
    assert_eq!(claim("pct").and_then(|c| c.places), Some(2));
    assert_eq!(
        claim("expr_claim").and_then(|c| c.value),
        Some(Value::from(6))
    );
    assert_eq!(claim("expr_claim").and_then(|c| c.places), None);
    let words = claim("words").expect("has a claim");
    assert_eq!((words.text.as_str(), words.value), ("six", None));
    assert_eq!(claim("empty"), None);
    assert_eq!(p.statements[0].expr_text, "11 * 67 + 37 + 180");
}

#[test]
fn front_end_tolerates_model_formatting() {
    let (p, e) = run("Here are the quantities:\n\
         ```python\n\
         # Given\n\
         let price = $12.50;\n\
         const qty = 4\n\
         var tax_rate = 8%\n\
         let mut fee: f64 = 2\n\
         - bullet = qty + 1\n\
         2. numbered = qty + 2\n\
         `ticked = qty * 3`\n\
         a = 1; b = a + 1;\n\
         subtotal = price * qty  // before tax\n\
         // a comment line\n\
         total = subtotal * (1 + tax_rate) + fee.\n\
         walrus := 5\n\
         print(total)\n\
         import math\n\
         ```\n\
         \n\
         The answer is total.\n");
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(get(&e, "price"), "12.5");
    assert_eq!(get(&e, "tax_rate"), "0.08");
    assert_eq!(get(&e, "bullet"), "5");
    assert_eq!(get(&e, "numbered"), "6");
    assert_eq!(get(&e, "ticked"), "12");
    assert_eq!(get(&e, "b"), "2");
    assert_eq!(get(&e, "subtotal"), "50");
    assert_eq!(get(&e, "total"), "56");
    assert_eq!(get(&e, "fee"), "2");
    assert_eq!(get(&e, "walrus"), "5");
    let skipped: Vec<(usize, String)> = p
        .skipped
        .iter()
        .map(|s| (s.line, s.reason.to_string()))
        .collect();
    assert_eq!(
        skipped,
        [
            (1, "not a statement: no `name = expression`".to_string()),
            (16, "not a statement: no `name = expression`".to_string()),
            (17, "not a statement: no `name = expression`".to_string()),
            (20, "not a statement: no `name = expression`".to_string()),
        ]
    );
    assert_eq!(p.skipped[1].text, "print(total)");
}

#[test]
fn labels_annotations_and_emphasis_around_names() {
    let e = eval(
        "x: float = 2.5\n\
         count: Int = 4\n\
         Answer: total = x * count\n\
         Step 3: half = total / 2\n\
         **bold** = 1\n\
         `code` = 2\n\
         _private = 3\n",
    );
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(get(&e, "x"), "2.5");
    assert_eq!(get(&e, "count"), "4");
    assert_eq!(get(&e, "total"), "10");
    assert_eq!(get(&e, "half"), "5");
    assert_eq!(get(&e, "bold"), "1");
    assert_eq!(get(&e, "code"), "2");
    assert_eq!(get(&e, "_private"), "3");
    assert!(e.get("Answer").is_none());
}

#[test]
fn skip_reasons() {
    let p = parse_program(
        "11 * 67 = 777\n\
         total cost = 5\n\
         x += 1\n\
         f(x) = 2\n\
         if a == b:\n\
         Total weight of feed: 24 + 126 = 150 pounds\n",
    );
    assert!(p.statements.is_empty(), "{:?}", p.statements);
    let reasons: Vec<String> = p.skipped.iter().map(|s| s.reason.to_string()).collect();
    assert_eq!(
        reasons[0],
        "left side `11 * 67` is not a name (use letters, digits and _, starting with a letter)"
    );
    assert!(
        reasons[1].starts_with("left side `total cost`"),
        "{}",
        reasons[1]
    );
    assert_eq!(
        reasons[2],
        "augmented assignment (`+=` ...) is not supported: define a new name"
    );
    assert!(reasons[3].starts_with("left side `f(x)`"));
    assert_eq!(reasons[4], "not a statement: no `name = expression`");
    assert!(
        reasons[5].starts_with("left side `Total weight of feed: 24 + 126`"),
        "{}",
        reasons[5]
    );
}

#[test]
fn double_slash_is_floor_division_when_that_parses() {
    let e = eval("boxes = 50 // 12\nleft = 50 % 12\nnote = 50 // the number of eggs\n");
    assert_eq!(get(&e, "boxes"), "4");
    assert_eq!(get(&e, "left"), "2");
    assert_eq!(get(&e, "note"), "50");
}

#[test]
fn statement_with_units_is_a_parse_error_not_a_skip() {
    let e = eval("croissants = 36 croissants\ntotal = croissants * 2\n");
    let err = error_of(&e, "croissants");
    assert_eq!(err.kind(), ErrorKind::Parse);
    assert!(
        err.to_string().contains("unexpected name `croissants`"),
        "{err}"
    );
    assert_eq!(
        error_of(&e, "total").to_string(),
        "depends on failed croissants"
    );
}

#[test]
fn the_pilot_notes_repaired_by_the_engine() {
    // Elena's plants (gold 619): the model's plan with the engine doing the arithmetic.
    let e = eval(
        "plants_on_ledges = 11 * 67 = 777\n\
         total_plants = plants_on_ledges + 37 + 180 = 994\n\
         given_away = 5 * 67 = 335\n\
         remaining = total_plants - given_away = 659\n",
    );
    assert_eq!(get(&e, "remaining"), "619");
    let wrong: Vec<&str> = e
        .claimed_mismatches
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(wrong, ["plants_on_ledges", "total_plants", "remaining"]);
}

#[test]
fn empty_and_comment_only_programs() {
    let (p, e) = run("");
    assert!(p.statements.is_empty() && p.skipped.is_empty() && e.values.is_empty() && e.is_ok());
    let (p, e) = run("\n\n# nothing\n// here\n```\n```\n");
    assert!(p.statements.is_empty() && p.skipped.is_empty() && e.is_ok());
}

#[test]
fn names_are_case_sensitive_and_may_shadow_function_names() {
    let e = eval("Total = 5\ntotal = 6\nround = 2.5\nx = round(round) + Total + total\n");
    assert!(e.is_ok(), "{:?}", e.errors);
    assert_eq!(get(&e, "x"), "14");
}
