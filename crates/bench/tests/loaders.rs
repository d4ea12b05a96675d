//! Dataset loaders on the shared data folder (read-only) and on small synthetic files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use sleeptime_bench::datasets::{
    load_aime, load_gsm8k, load_gsm_p2, load_jsonl, sample_stratified, DatasetError, DatasetKind,
    Problem, Split, SplitMode,
};

fn data() -> PathBuf {
    std::env::var_os("SLEEPTIME_DATA_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    )
}

#[test]
fn gsm_p2_release() {
    let d = load_gsm_p2(
        data().join("gsm_symbolic/GSM_p2.jsonl"),
        SplitMode::Sentences,
    )
    .expect("loads");
    assert_eq!(d.len(), 2500);
    let first = &d.problems[0];
    assert_eq!(first.id, "p2/0-0");
    assert_eq!(first.template_id.as_deref(), Some("0"));
    assert_eq!(first.source, DatasetKind::GsmSymbolic(Split::P2));
    assert_eq!(first.answer, 32.5);
    assert_eq!(first.answer_text, "32.5");
    assert!(first
        .solution
        .as_deref()
        .is_some_and(|s| s.ends_with("#### 32.5")));
    let mut ids: Vec<&str> = d.problems.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2500);
    // SOURCES.md: 100 of the 2500 final answers are not written as integers ("32.5",
    // also "45.0"); 53 of them are not whole numbers
    assert_eq!(
        d.problems
            .iter()
            .filter(|p| p.answer_text.contains('.'))
            .count(),
        100
    );
    assert_eq!(
        d.problems
            .iter()
            .filter(|p| p.answer.fract() != 0.0)
            .count(),
        53
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &d.problems {
        *per.entry(p.template_id.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    assert_eq!(per.len(), 50);
    assert!(per.values().all(|&n| n == 50));
}

#[test]
fn stratified_sampling() {
    let d = load_gsm_p2(
        data().join("gsm_symbolic/GSM_p2.jsonl"),
        SplitMode::Sentences,
    )
    .expect("loads");
    let s = sample_stratified(&d.problems, 120, 7);
    assert_eq!(s.len(), 120);
    assert_eq!(s, sample_stratified(&d.problems, 120, 7));
    assert_ne!(s, sample_stratified(&d.problems, 120, 8));
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &s {
        *per.entry(p.template_id.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    assert_eq!(per.len(), 50, "every template represented");
    assert!(per.values().all(|&n| n == 2 || n == 3));
    let first50: std::collections::BTreeSet<_> =
        s[..50].iter().map(|p| p.template_id.clone()).collect();
    assert_eq!(first50.len(), 50);
    let mut ids: Vec<&str> = s.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 120, "no duplicates");
    assert_eq!(sample_stratified(&d.problems, 5000, 1).len(), 2500);
    // input order does not matter
    let mut rev = d.problems.clone();
    rev.reverse();
    assert_eq!(sample_stratified(&rev, 120, 7), s);
}

#[test]
fn gsm8k_test() {
    let d = load_gsm8k(data().join("gsm8k/test.jsonl"), SplitMode::Sentences).expect("loads");
    assert_eq!(d.len(), 1319);
    let p = &d.problems[0];
    assert_eq!(p.id, "gsm8k/0");
    assert_eq!(p.source, DatasetKind::Gsm8k);
    assert_eq!(p.answer, 18.0);
    assert!(p.question.ends_with('?'));
    assert!(d.problems.iter().all(|p| p.answer.fract() == 0.0));
    assert!(d.problems.iter().all(|p| p.template.is_none()));
    // the generic loader reads the same file, with line-number ids
    let g = load_jsonl(data().join("gsm8k/test.jsonl"), SplitMode::Paper).expect("loads");
    assert_eq!(g.len(), 1319);
    assert_eq!(g.problems[0].id, "1");
    assert_eq!(g.problems[0].answer, 18.0);
    assert_eq!(g.problems[0].source, DatasetKind::Custom);
    assert!(g.problems.iter().all(|p| p.template.is_none()));
}

#[test]
fn aime_2024_and_2025() {
    for (file, kind, first_answer) in [
        (
            "aime_2024/aime_2024_matharena.jsonl",
            DatasetKind::Aime2024,
            204.0,
        ),
        (
            "aime_2025/aime_2025_matharena.jsonl",
            DatasetKind::Aime2025,
            70.0,
        ),
    ] {
        let d = load_aime(data().join(file)).expect("loads");
        assert_eq!(d.len(), 30, "{file}");
        assert_eq!(d.problems[0].answer, first_answer, "{file}");
        for p in &d.problems {
            assert_eq!(p.source, kind);
            assert!(p.template.is_none(), "{}", p.id);
            assert!((0.0..=999.0).contains(&p.answer) && p.answer.fract() == 0.0);
            assert_eq!(p.answer_text, format!("{}", p.answer as i64));
            assert!(!p.question.is_empty(), "{}", p.id);
            assert!(p.full_text.contains(&p.question));
            // every statement ends up in the context or the question
            let total: usize =
                p.context.split_whitespace().count() + p.question.split_whitespace().count();
            assert_eq!(total, p.full_text.split_whitespace().count(), "{}", p.id);
        }
        let ids: std::collections::BTreeSet<_> = d.problems.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids.len(), 30);
    }
    let d = load_aime(data().join("aime_2024/aime_2024_matharena.jsonl")).expect("loads");
    let p3 = d.get("aime2024/I-3").expect("present");
    assert!(p3
        .context
        .starts_with("Alice and Bob play the following game."));
    assert!(p3
        .question
        .starts_with("Find the number of positive integers $n$"));
    let p7 = d.get("aime2024/I-7").expect("present");
    assert!(p7.context.is_empty(), "one-statement problem");
    // the Qwen2.5-Math copy (string answers such as "025") loads too
    let q = load_aime(data().join("aime_2024/aime24_qwen25math.jsonl")).expect("loads");
    assert_eq!(q.len(), 30);
    assert!(q.problems.iter().all(|p| p.solution.is_some()));
}

fn write_tmp(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f
}

#[test]
fn own_jsonl_ids_and_answers() {
    let f = write_tmp(&[
        r#####"{"id": "a", "question": "Ann has 2.5 kg. How much for 2?", "answer": "2.5*2=5\n#### 5"}"#####,
        "",
        r#####"{"question": "How many?", "answer": "#### -1,200"}"#####,
        r#####"{"id": 9, "instance": 3, "question": "Q?", "answer": 7}"#####,
        r#####"{"question": "Cost?", "answer": "#### $4.50"}"#####,
    ]);
    let d = load_jsonl(f.path(), SplitMode::Sentences).expect("loads");
    let ids: Vec<&str> = d.problems.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "3", "9-3", "5"]);
    assert_eq!(d.problems[0].context, "Ann has 2.5 kg.");
    assert_eq!(d.problems[1].answer, -1200.0);
    assert_eq!(d.problems[2].answer, 7.0);
    assert!(d.problems[2].solution.is_none());
    assert_eq!(d.problems[3].answer_text, "4.50");
    assert!(d.problems.iter().all(|p| p.template.is_none()));
}

#[test]
fn own_jsonl_errors_name_the_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                r#####"{"question": "Q?", "answer": "#### 1"}"#####,
                "{not json",
            ],
            ":2: invalid JSON",
        ),
        (
            &[r#####"{"answer": "#### 1"}"#####],
            ":1: missing or non-text field `question`",
        ),
        (
            &[
                r#####"{"question": "Q?", "answer": "#### 1"}"#####,
                r#####"{"question": "Q?"}"#####,
            ],
            ":2: missing or non-text field `answer`",
        ),
        (
            &[r#####"{"question": "Q?", "answer": "the answer is 4"}"#####],
            ":1: answer has no `####` marker",
        ),
        (
            &[r#####"{"question": "Q?", "answer": "#### four"}"#####],
            ":1: final answer `four` is not a number",
        ),
        (&["[1, 2]"], "line 1: expected a JSON object"),
    ];
    for (lines, want) in cases {
        let f = write_tmp(lines);
        let e = load_jsonl(f.path(), SplitMode::Sentences).expect_err("malformed");
        let msg = e.to_string();
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
    }
    let e = load_jsonl("/nonexistent/file.jsonl", SplitMode::Sentences).expect_err("missing file");
    assert!(matches!(e, DatasetError::Io { .. }));
}

/// A `{var,default}` placeholder as the GSM-Symbolic templates write them (`{n, Benny}`,
/// `{x,10}`).
fn placeholder() -> regex::Regex {
    regex::Regex::new(r"\{\s*\$?[A-Za-z_][A-Za-z0-9_]*\s*,[^{}]*\}").expect("regex")
}

/// The question part of a template file's `question_annotated`, read here on its own.
fn template_question(file: &std::path::Path) -> (String, String) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("template file"))
            .expect("template JSON");
    let id = json["id_shuffled"].to_string();
    let annotated = json["question_annotated"]
        .as_str()
        .expect("question_annotated");
    let end = annotated.find("#init:").expect("#init: section");
    (id, annotated[..end].trim().to_owned())
}

/// Every released P2 row carries the question text of its template (`templates/p2`, matched
/// on the row's template id), placeholders and all; the row's own text has none.
#[test]
fn gsm_p2_release_carries_its_templates() {
    let d = load_gsm_p2(
        data().join("gsm_symbolic/GSM_p2.jsonl"),
        SplitMode::Sentences,
    )
    .expect("loads");
    let dir = data().join("gsm_symbolic/templates/p2");
    let expected: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("templates/p2")
        .map(|e| template_question(&e.expect("entry").path()))
        .collect();
    assert_eq!(expected.len(), 50);
    let re = placeholder();
    for p in &d.problems {
        let tid = p.template_id.as_deref().expect("template id");
        let template = p
            .template
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no template", p.id));
        assert_eq!(
            Some(template),
            expected.get(tid).map(String::as_str),
            "{}",
            p.id
        );
        assert!(re.is_match(template), "{}: no placeholder", p.id);
        assert!(!template.contains("#init"), "{}", p.id);
        for text in [&p.full_text, &p.context, &p.question] {
            assert!(!re.is_match(text), "{}: placeholder in the instance", p.id);
        }
        assert_ne!(template, p.full_text);
    }
}

/// A released file whose template is not beside it loads with `template: None`; rows whose
/// template is there get its question text (synthetic files only).
#[test]
fn release_rows_without_a_template_file_have_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = [
        r#####"{"id": 7, "instance": 0, "question": "Ann has 4 cats. How many paws?", "answer": "4 * 4 = 16\n#### 16"}"#####,
        r#####"{"id": 8, "instance": 0, "question": "Bo has 2 dogs. How many paws?", "answer": "2 * 4 = 8\n#### 8"}"#####,
    ];
    let release = dir.path().join("GSM_p2.jsonl");
    std::fs::write(&release, rows.join("\n")).expect("write rows");

    // no templates folder at all
    let d = load_gsm_p2(&release, SplitMode::Sentences).expect("loads");
    assert_eq!(d.len(), 2);
    assert!(d.problems.iter().all(|p| p.template.is_none()));

    // a template for id 7 only (and a file that is not a template, which is skipped)
    let tdir = dir.path().join("templates/p2");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    let template = serde_json::json!({
        "question": "Ann has 3 cats. How many paws?", "answer": "#### 12",
        "id_orig": 1, "id_shuffled": 7,
        "question_annotated": "{name, Ann} has {x,3} cats. How many paws?\n\n\n#init:\n- name = sample(names)\n- $x = range(2, 9)\n\n#conditions:\n- x > 1\n\n#answer: x * 4",
        "answer_annotated": "{x} * 4 = {x*4}\n#### {x*4}",
    });
    std::fs::write(tdir.join("0007.json"), template.to_string()).expect("write template");
    std::fs::write(tdir.join("0009.json"), "{not json").expect("write junk");
    let d = load_gsm_p2(&release, SplitMode::Sentences).expect("loads");
    assert_eq!(d.problems[0].id, "p2/7-0");
    assert_eq!(
        d.problems[0].template.as_deref(),
        Some("{name, Ann} has {x,3} cats. How many paws?")
    );
    assert_eq!(d.problems[1].id, "p2/8-0");
    assert_eq!(d.problems[1].template, None);
    // the generic loader never looks for templates
    let custom = load_jsonl(&release, SplitMode::Sentences).expect("loads");
    assert!(custom.problems.iter().all(|p| p.template.is_none()));
}

/// Problems serialised before `template` existed still deserialise (as `None`), and the
/// field round-trips.
#[test]
fn problem_json_without_template_still_loads() {
    let d = load_jsonl(
        write_tmp(&[
            r#####"{"question": "Ann has 2 cats. How many paws?", "answer": "#### 8"}"#####,
        ])
        .path(),
        SplitMode::Sentences,
    )
    .expect("loads");
    let mut with = d.problems[0].clone();
    with.template = Some("{name, Ann} has {x,2} cats. How many paws?".into());
    let mut json = serde_json::to_value(&with).expect("serialise");
    let back: Problem = serde_json::from_value(json.clone()).expect("deserialise");
    assert_eq!(back, with);
    let removed = json.as_object_mut().expect("object").remove("template");
    assert!(removed.is_some_and(|t| t.is_string()));
    let old: Problem = serde_json::from_value(json).expect("old JSON loads");
    assert_eq!(old.template, None);
    assert_eq!(old.id, with.id);
}
