//! GSM-Symbolic template generator against the real templates and Apple's released P2 rows
//! (read from the shared data folder; nothing derived is written anywhere).

use std::collections::BTreeMap;
use std::path::PathBuf;

use sleeptime_bench::datasets::symbolic::eval::Evaluator;
use sleeptime_bench::datasets::symbolic::{
    check_release, AnswerPolicy, CheckOutcome, Generator, GeneratorOptions, Split,
};
use sleeptime_bench::datasets::{parse_gsm_answer, DatasetKind, SplitMode};

fn data() -> PathBuf {
    std::env::var_os("SLEEPTIME_DATA_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    )
}

fn templates() -> PathBuf {
    data().join("gsm_symbolic/templates")
}

#[test]
fn all_250_templates_parse() {
    let mut n = 0;
    for split in Split::ALL {
        let g = Generator::load(templates(), split).expect("templates load");
        assert!(g.issues().is_empty(), "{split}: {:?}", g.issues());
        n += g.templates().len();
    }
    assert_eq!(n, 250);
}

/// Every template instantiates, and every instance satisfies its `#conditions`, has the
/// answer of its `#answer` line (or, for the templates whose `#answer` contradicts their own
/// worked solution, the solution's value), and a fully filled question and solution.
#[test]
fn instances_satisfy_conditions_and_answers() {
    let rounds = 3;
    let mut disagreeing: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for split in Split::ALL {
        let g = Generator::load(templates(), split).expect("templates load");
        for t in g.templates() {
            for round in 0..rounds {
                let inst = g
                    .instantiate(&t.id, 11, round)
                    .unwrap_or_else(|e| panic!("{split}/{}: {e}", t.id));
                total += 1;
                for c in &t.conditions {
                    let v = Evaluator::new(&inst.vars)
                        .eval(&c.expr)
                        .expect("condition evaluates");
                    assert!(
                        v.truthy(),
                        "{split}/{} round {round}: `{}` is false",
                        t.id,
                        c.src
                    );
                }
                let line = Evaluator::new(&inst.vars)
                    .eval(&t.answer)
                    .expect("#answer evaluates");
                assert_eq!(line, inst.answer_line);
                let sol = parse_gsm_answer(&inst.solution).expect("solution ends in #### N");
                assert_eq!(sol.value, inst.answer, "{split}/{}", t.id);
                if inst.agrees {
                    let a = line.as_f64().expect("numeric answer");
                    assert!(
                        (a - inst.answer).abs() < 1e-9 * a.abs().max(1.0),
                        "{split}/{}",
                        t.id
                    );
                } else {
                    *disagreeing.entry(format!("{split}/{}", t.id)).or_default() += 1;
                }
                for text in [&inst.question, &inst.solution] {
                    assert!(
                        !text.contains('{') && !text.contains("<<"),
                        "{split}/{}: {text}",
                        t.id
                    );
                }
            }
        }
    }
    assert_eq!(total, 250 * rounds as usize);
    // The templates whose `#answer` contradicts their worked solution (checked by hand: the
    // solution is right each time, and it is what Apple released for P2/26).
    let expected = ["p1/74", "p1/89", "p2/26", "symbolic/62"];
    let got: Vec<&str> = disagreeing.keys().map(String::as_str).collect();
    for id in &got {
        assert!(
            expected.contains(id),
            "unexpected #answer/solution disagreement in {id}: {got:?}"
        );
    }
}

#[test]
fn generate_is_reproducible_round_robin_and_split() {
    let g = Generator::load(templates(), Split::P1).expect("templates load");
    let a = g.generate(120, 42);
    let b = g.generate(120, 42);
    assert_eq!(a, b);
    assert_eq!(a.len(), 120);
    // round-robin: the first 100 cover every template once
    let mut first: Vec<&str> = a[..100]
        .iter()
        .filter_map(|p| p.template_id.as_deref())
        .collect();
    first.sort_unstable();
    first.dedup();
    assert_eq!(first.len(), 100);
    // prefix property
    let small = g.generate(30, 42);
    assert_eq!(&a[..30], small.as_slice());
    // another seed gives other instances
    let c = g.generate(30, 43);
    assert_ne!(small, c);
    for p in &a {
        assert_eq!(p.source, DatasetKind::GsmSymbolicGenerated(Split::P1));
        assert!(p.id.starts_with("gen-p1-s42/"));
        assert!(!p.question.is_empty());
        let joined = format!("{} {}", p.context, p.question);
        if joined.trim() != p.full_text {
            // a note after the question stays in the context
            assert!(
                p.question.ends_with('?') && p.full_text.contains(&p.question),
                "{}",
                p.id
            );
        }
        assert!(p.solution.as_deref().is_some_and(|s| s.contains("####")));
    }
}

/// Generated problems carry the question text of the template they instantiate, as the
/// template file writes it (`question_annotated` before `#init:`): it has `{var,default}`
/// placeholders, the instantiation has none.
#[test]
fn generated_problems_carry_their_template() {
    let placeholder =
        regex::Regex::new(r"\{\s*\$?[A-Za-z_][A-Za-z0-9_]*\s*,[^{}]*\}").expect("regex");
    for split in Split::ALL {
        let g = Generator::load(templates(), split).expect("templates load");
        let problems = g.generate(g.templates().len(), 5);
        assert_eq!(problems.len(), g.templates().len(), "{split}");
        for p in &problems {
            let tid = p.template_id.as_deref().expect("template id");
            let template = p
                .template
                .as_deref()
                .unwrap_or_else(|| panic!("{}: no template", p.id));
            let file = &g.template(tid).expect("template").path;
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(file).expect("read"))
                    .expect("template JSON");
            let annotated = json["question_annotated"].as_str().expect("annotated");
            let end = annotated.find("#init:").expect("#init:");
            assert_eq!(template, annotated[..end].trim(), "{}", p.id);
            assert!(placeholder.is_match(template), "{}: {template}", p.id);
            assert!(!template.contains("#init"), "{}", p.id);
            for text in [&p.full_text, &p.context, &p.question] {
                assert!(!placeholder.is_match(text), "{}: {text}", p.id);
                assert!(!text.contains('{'), "{}: {text}", p.id);
            }
        }
    }
}

#[test]
fn answer_policies() {
    let opts = GeneratorOptions {
        answer_policy: AnswerPolicy::AnswerLine,
        max_attempts: 5_000,
        split_mode: SplitMode::Paper,
    };
    let g = Generator::load_with(templates(), Split::P2, opts).expect("templates load");
    let inst = g.instantiate("26", 1, 0).expect("instantiates");
    let line = inst.answer_line.as_f64().expect("numeric");
    assert_eq!(inst.answer, line);
    assert!(!inst.agrees);
    let sol = inst.solution_value.expect("solution has ####");
    assert!(
        (sol - line).abs() > 0.5,
        "P2/26: #answer subtracts a stray 1"
    );
    let g = g.with_options(GeneratorOptions {
        answer_policy: AnswerPolicy::SolutionLine,
        ..opts
    });
    assert_eq!(g.instantiate("26", 1, 0).expect("instantiates").answer, sol);
}

/// Our evaluator against Apple's released P2 rows: variables are read back from each
/// question, `#answer` is evaluated and compared with the row's `#### N`.
#[test]
fn agrees_with_released_p2() {
    let report = check_release(
        templates(),
        data().join("gsm_symbolic/GSM_p2.jsonl"),
        Split::P2,
        Some(10),
    )
    .expect("release checks");
    assert_eq!(report.rows.len(), 500);
    let per = report.per_template();
    assert_eq!(per.len(), 50);
    let agree = report.agreeing_templates();
    assert!(
        agree.len() >= 49,
        "templates agreeing on #answer: {}",
        agree.len()
    );
    // P2/26's #answer subtracts a stray 1; the released rows use its worked solution
    assert_eq!(report.agreeing_templates_any().len(), 50);
    for r in &report.rows {
        match &r.outcome {
            CheckOutcome::Agree => {}
            CheckOutcome::AgreeSolutionOnly { .. } => assert_eq!(r.template, "26"),
            other => panic!("template {} instance {}: {other:?}", r.template, r.instance),
        }
        assert!(
            r.conditions_hold,
            "template {} instance {}",
            r.template, r.instance
        );
    }
    // the worked solutions render identically except where Apple's question capitalised a
    // name with Python's str.capitalize() ("DeShawn" -> "Deshawn"), which we cannot undo
    let same = report
        .rows
        .iter()
        .filter(|r| r.solution_text_matches)
        .count();
    assert!(same >= 490, "identical worked solutions: {same}/500");
}
