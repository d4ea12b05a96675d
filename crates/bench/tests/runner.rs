//! The runner end to end on a scripted model: records, manifest, resume, free reruns,
//! errors retried, Multi-Query groups (and their generation prompt), and no dataset text in
//! anything committed.

mod common;

use std::collections::HashMap;

use sleeptime_bench::record::{read_manifest, read_records, Record};
use sleeptime_bench::runner::run;
use sleeptime_bench::spec::{Condition, Layout, MultiQuerySpec, ProgramKind, ProgramSpec, Sleeper};

fn by_key(records: &[Record]) -> HashMap<(String, String), Record> {
    records
        .iter()
        .map(|r| ((r.problem_id.clone(), r.condition.clone()), r.clone()))
        .collect()
}

fn get<'a>(m: &'a HashMap<(String, String), Record>, problem: &str, condition: &str) -> &'a Record {
    m.get(&(problem.to_owned(), condition.to_owned()))
        .unwrap_or_else(|| panic!("no record {problem} {condition}"))
}

fn sleep_runs(model: &sleeptime_model::scripted::ScriptedBackend, needle: &str) -> usize {
    // A sleep run starts with exactly [system, trigger]; later steps carry more history.
    model
        .calls()
        .iter()
        .filter(|c| c.messages.len() == 2 && c.messages[1].content.contains(needle))
        .count()
}

#[tokio::test]
async fn end_to_end_records_manifest_and_no_dataset_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::spec(common::write_dataset(dir.path()));
    let model = common::scripted();
    let options = common::options(dir.path(), "tiny");
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    let expected = common::planned(&spec, 3);
    assert_eq!(summary.written, expected);
    assert_eq!(summary.skipped, 0);
    assert_eq!(summary.records, expected);
    assert_eq!(
        summary.errors,
        0,
        "{:?}",
        read_records(&options.run_dir)
            .expect("records")
            .iter()
            .filter_map(|r| r.error.clone())
            .collect::<Vec<_>>()
    );

    let records = read_records(&options.run_dir).expect("records");
    assert_eq!(records.len(), expected);
    let m = by_key(&records);
    // Test-time only: the terse answer is wrong, step by step is right.
    assert!(!get(&m, "1", "baseline/v0").correct);
    let v4 = get(&m, "1", "baseline/v4");
    assert!(v4.correct && !v4.hit_cap && v4.usage.completion_tokens > 0);
    assert!(
        v4.prefix_tokens.is_some(),
        "the c + q prefix is prepared before the answer"
    );
    // A cap of 4 tokens cuts the reasoning and forces the answer.
    let capped = get(&m, "1", "baseline/cap4");
    assert!(capped.hit_cap && capped.forced && capped.calls == 2);
    // Sleep-time: c' holds 36 for Tom and 40 for Ann; the answer from memory says 36.
    let tom = get(&m, "1", "rethink/k1/full/v0");
    assert!(tom.correct);
    let sleep = tom.sleep.as_ref().expect("sleep record");
    assert!(sleep.answer_recall && sleep.usage.completion_tokens > 0 && sleep.k == 1);
    assert!(sleep.program.starts_with("rethink"));
    assert_eq!(tom.answer_in_learned, Some(true));
    let ann = get(&m, "2", "rethink/k1/full/v0");
    assert!(!ann.correct && ann.sleep.as_ref().is_some_and(|s| s.answer_recall));
    assert_eq!(ann.answer_in_learned, Some(false));
    // The same c' serves every condition of a context: one rethink run per (context, k).
    assert_eq!(
        sleep_runs(&model, "New situation: Tom"),
        1 + 2,
        "k = 1, plus the two drafts of k = 2"
    );
    assert_eq!(
        sleep_runs(&model, "New situation: Bob"),
        1,
        "k > 1 only on the first two contexts"
    );
    // Aided: a structured c' with exact quantities, routed to the fast path.
    let routed = get(&m, "1", "aided/k1/routed/v0");
    assert_eq!(routed.route.as_deref(), Some("fast"));
    assert_eq!(routed.sleep.as_ref().and_then(|s| s.quantities), Some(3));
    assert!(routed.correct);
    // Its quantities are recorded as the answer's candidates, numbers and features only:
    // the derived apples (36) is the anticipated result nothing builds on, and it matches
    // the question best. Rethink's prose c' has none.
    let candidates = &routed.sleep.as_ref().expect("sleep record").candidates;
    let shape: Vec<(f64, bool, u32, bool, u32)> = candidates
        .iter()
        .map(|c| (c.value, c.given, c.used_by, c.anticipated, c.support))
        .collect();
    assert_eq!(
        shape,
        [
            (12.0, true, 1, false, 1),
            (3.0, true, 1, false, 1),
            (36.0, false, 0, true, 1)
        ]
    );
    assert!(candidates[2].score > candidates[1].score);
    assert!(sleep.candidates.is_empty(), "rethink's c' is prose");
    // Retrieval kept all of c' here, so the prompt is the full layout's and so is its prepared
    // prefix: both records carry it (not one layout's cold timing copied to the other).
    let full = get(&m, "1", "aided/k1/full/v0");
    assert_eq!(
        routed.usage.prompt_tokens, full.usage.prompt_tokens,
        "same prompt"
    );
    assert!(routed.prefix_tokens.is_some() && full.prefix_tokens.is_some());
    assert!(routed.usage.cached_prompt_tokens > 0 && full.usage.cached_prompt_tokens > 0);
    // Ann's aided notes have no question that matches... but its words do; either path is recorded.
    assert!(get(&m, "2", "aided/k1/routed/v0").route.is_some());
    // Program-aided test time computes 6 * 6.
    assert_eq!(get(&m, "3", "pal").answer, Some(36.0));
    assert!(get(&m, "3", "aided/k1/pal").sleep.is_some());
    // One formula at v0: the engine's 36, not the reply's claimed 30; with the aided c' the
    // formula names a quantity, which Ann's c' does not define (no answer, not a guess).
    let formula = get(&m, "1", "formula/v0");
    assert!(formula.correct && formula.answer == Some(36.0) && formula.sleep.is_none());
    assert!(formula.usage.completion_tokens > 0 && !formula.hit_cap);
    let over_learned = get(&m, "1", "aided/k1/formula/v0");
    assert!(over_learned.correct && over_learned.answer_in_learned == Some(true));
    assert!(over_learned.sleep.is_some());
    assert_eq!(get(&m, "2", "aided/k1/formula/v0").answer, None);
    assert!(m.contains_key(&("3".into(), "rethink/k1/formula/v0".into())));
    // Context-only ablation and cold prefills exist where planned.
    assert!(m.contains_key(&("1".into(), "rethink/k1/context-only/v0".into())));
    assert!(m.contains_key(&("1".into(), "baseline/v0/cold".into())));
    assert!(!m.contains_key(&("2".into(), "baseline/v0/cold".into())));
    let cold = get(&m, "1", "rethink/k1/full/v0/cold");
    assert!(cold.prefix_tokens.is_none());
    // Predictability scores and samples.
    let score = get(&m, "2", "score");
    assert!(
        score.logprob_sum.is_some_and(|s| s < 0.0) && score.question_tokens.is_some_and(|t| t > 0)
    );
    assert!(m.contains_key(&("3".into(), "baseline/v0/s2".into())));
    let spec_of = &get(&m, "1", "aided/k2/full/v0").spec;
    assert_eq!(
        *spec_of,
        Condition::Sleep {
            sleeper: Sleeper {
                program: ProgramKind::Aided,
                k: 2
            },
            layout: Layout::Full,
            budget: "v0".parse().expect("budget"),
            cold: false
        }
    );

    let manifest = read_manifest(&options.run_dir).expect("manifest");
    assert_eq!(manifest.name, "tiny");
    assert_eq!(manifest.model.name, "scripted");
    assert_eq!(manifest.problem_ids, vec!["1", "2", "3"]);
    assert!(manifest
        .conditions
        .contains(&"rethink/k1/full/v4".to_owned()));
    assert_eq!(
        manifest.command_line.last().map(String::as_str),
        Some("--test")
    );
    assert!(manifest.finished_at.is_some() && manifest.records == expected);
    assert_eq!(manifest.spec, spec);

    // Committed files hold ids and numbers only.
    for file in ["results.jsonl", "manifest.json"] {
        let text = std::fs::read_to_string(options.run_dir.join(file)).expect("read");
        for word in common::DATASET_WORDS {
            assert!(
                !text.contains(word),
                "{file} contains dataset text {word:?}"
            );
        }
    }
    // The learned contexts are kept for people, in the cache folder.
    assert!(
        options
            .cache_dir
            .join("learned/tiny")
            .read_dir()
            .expect("learned dir")
            .count()
            >= 6
    );
}

#[tokio::test]
async fn resume_skips_done_work_and_reruns_are_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::spec(common::write_dataset(dir.path()));
    let model = common::scripted();
    let total = common::planned(&spec, 3);

    // An interrupted run: only the baseline conditions got done.
    let mut options = common::options(dir.path(), "resume");
    options.only = Some(regex::Regex::new("^baseline").expect("regex"));
    let first = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert!(first.written > 0 && first.written < total);
    let calls_after_first = model.calls().len();

    // Resuming does the rest and only the rest.
    options.only = None;
    let second = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!(second.skipped, first.written);
    assert_eq!(second.written, total - first.written);
    assert_eq!(
        read_records(&options.run_dir).expect("records").len(),
        total
    );
    let manifest = read_manifest(&options.run_dir).expect("manifest");
    assert_eq!(manifest.previous_starts.len(), 1);

    // Nothing left: nothing written, no model call.
    let calls = model.calls().len();
    assert!(calls > calls_after_first);
    let third = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!((third.written, third.skipped), (0, total));
    assert_eq!(model.calls().len(), calls);

    // Lost results: recomputed entirely from the call cache, the same answers, no model call.
    let before = read_records(&options.run_dir).expect("records");
    std::fs::remove_file(options.run_dir.join("results.jsonl")).expect("rm");
    let fourth = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!(fourth.written, total);
    assert_eq!(fourth.cache_misses, 0);
    assert_eq!(
        model.calls().len(),
        calls,
        "a rerun must not call the model"
    );
    let after = by_key(&read_records(&options.run_dir).expect("records"));
    for r in &before {
        let a = get(&after, &r.problem_id, &r.condition);
        assert_eq!(
            (a.answer, a.correct, a.usage.completion_tokens),
            (r.answer, r.correct, r.usage.completion_tokens),
            "{}",
            r.condition
        );
        assert_eq!(
            a.prefix_tokens, r.prefix_tokens,
            "prefix timings survive a rerun ({})",
            r.condition
        );
    }
}

#[tokio::test]
async fn failed_conditions_are_recorded_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = common::spec(common::write_dataset(dir.path()));
    spec.programs.clear();
    spec.formula_budgets.clear();
    spec.samples = 0;
    spec.predictability = false;
    spec.cold_problems = 0;
    spec.budgets = vec!["v0".parse().expect("budget")];
    let model = common::scripted_failing_once();
    let mut options = common::options(dir.path(), "errors");
    options.limit = Some(1);
    let first = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!((first.written, first.errors), (2, 1));
    let records = read_records(&options.run_dir).expect("records");
    let pal = records.iter().find(|r| r.condition == "pal").expect("pal");
    assert!(
        !pal.correct
            && pal
                .error
                .as_deref()
                .is_some_and(|e| e.contains("scripted timeout"))
    );
    let second = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!((second.written, second.errors, second.skipped), (1, 0, 1));
    let records = read_records(&options.run_dir).expect("records");
    assert_eq!(
        records.len(),
        2,
        "the retried record replaces the failed one"
    );
    assert!(records
        .iter()
        .find(|r| r.condition == "pal")
        .is_some_and(|r| r.correct && r.error.is_none()));
}

#[tokio::test]
async fn multi_query_groups_share_sleep_time_and_keep_text_out_of_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = common::spec(common::write_dataset(dir.path()));
    spec.ks = vec![1];
    spec.samples = 0;
    spec.cold_problems = 0;
    spec.multi_query = Some(MultiQuerySpec {
        extra: 5,
        per_call: 5,
        max_calls: 1,
        verify_samples: 3,
        temperature: 0.7,
        verify_temperature: None,
    });
    let model = common::scripted();
    let mut options = common::options(dir.path(), "mq");
    options.limit = Some(2);
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!(summary.errors, 0);

    let mq: serde_json::Value = serde_json::from_slice(
        &std::fs::read(options.run_dir.join("multiquery.json")).expect("multiquery.json"),
    )
    .expect("json");
    assert_eq!(mq["contexts"][0]["proposed"], 3);
    assert_eq!(
        mq["contexts"][0]["verified"], 2,
        "the pair whose answer the verifiers reject is dropped"
    );
    assert_eq!(mq["contexts"][0]["kept_ids"][0], "1/q1");
    assert_eq!(mq["provenance"]["generator_model"], "scripted");
    assert_eq!(mq["provenance"]["spec"]["verify_samples"], 3);
    assert!(mq["provenance"]["prompt_sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 64));

    let records = read_records(&options.run_dir).expect("records");
    let m = by_key(&records);
    let q1 = get(&m, "1/q1", "baseline/v4");
    assert_eq!(
        (q1.context_id.as_str(), q1.question_index, q1.gold),
        ("1", 1, 12.0)
    );
    assert_eq!(get(&m, "1/q2", "rethink/k1/full/v0").gold, 36.0);
    // One sleep run per context, whatever the number of its questions.
    assert_eq!(sleep_runs(&model, "New situation: Tom"), 1);
    let manifest = read_manifest(&options.run_dir).expect("manifest");
    assert_eq!(manifest.problem_ids.len(), 6);
    for file in ["results.jsonl", "manifest.json", "multiquery.json"] {
        let text = std::fs::read_to_string(options.run_dir.join(file)).expect("read");
        for word in common::DATASET_WORDS.iter().chain(&["How many boxes"]) {
            assert!(!text.contains(word), "{file} contains text {word:?}");
        }
    }
    // The generated text is in the cache folder, with its provenance.
    let cached = options
        .cache_dir
        .join("multiquery")
        .read_dir()
        .expect("cache")
        .count();
    assert_eq!(cached, 2);

    // A second invocation reuses the stored sets: no generation call.
    let generations = |m: &sleeptime_model::scripted::ScriptedBackend| {
        m.calls()
            .iter()
            .filter(|c| c.messages[0].content.contains("You write new questions"))
            .count()
    };
    let before = generations(&model);
    run(&spec, common::backends(&model), &options)
        .await
        .expect("rerun");
    assert_eq!(generations(&model), before);

    // The report says how many generated questions were kept.
    let files = sleeptime_bench::report::write_report(
        &options.run_dir,
        &sleeptime_bench::report::ReportOptions {
            plots: false,
            ..Default::default()
        },
    )
    .expect("report");
    let md = std::fs::read_to_string(files.markdown).expect("report.md");
    assert!(
        md.contains("| Multi-Query questions | 4 verified of 6 generated on 2 contexts (5 wanted per context; 0 of 2 contexts got them all) |"),
        "{md}"
    );
    // Every context has its original and 2 generated questions: the amortisation targets
    // are read at N = 2, not at the 10 the report asks for, which no context reaches.
    assert!(
        md.contains("Amortised cost per query at 2 queries per context"),
        "{md}"
    );
    assert!(!md.contains("at 10 queries per context"), "{md}");
}

#[test]
fn generated_pairs_parse_leniently() {
    use sleeptime_bench::multiquery::parse_pairs;
    let text = "Here are the questions:\n1. **Q:** How many boxes are there\nin total?\n**A:** There are\n12 * 1 = 12 boxes.\n#### 12\n\n2) Q: What is the weight?\nA: 3 * 4 = 12\n#### $1,200\nQ: No answer here?\nA: none\nQ: How many boxes are there in total?\nA: #### 13\n";
    let pairs = parse_pairs(text);
    assert_eq!(
        pairs,
        vec![
            ("How many boxes are there in total?".to_owned(), 12.0),
            ("What is the weight?".to_owned(), 1200.0)
        ]
    );
}

/// A small generator numbers its pairs with the `####` line (`#### 11`, `#### 12`, …) and
/// states the answer in the text: the stated answers count, not the numbering.
#[test]
fn generated_pairs_numbered_by_their_marks_take_the_stated_answers() {
    use sleeptime_bench::multiquery::parse_pairs;
    let text = "Q: How many apples does Ann have?\nA: 12 apples.\n#### 11\n\
Q: How many pears does Ann have?\nA: She has 3 * 5 = 15 pears.\n#### 12\n\
Q: How many fruits does Ann eat?\nA: none\n#### 13\n\
Q: How many apples are left after Ann gives away 2?\nA: 10 apples.\n#### 14\n";
    assert_eq!(
        parse_pairs(text),
        vec![
            ("How many apples does Ann have?".to_owned(), 12.0),
            ("How many pears does Ann have?".to_owned(), 15.0),
            (
                "How many apples are left after Ann gives away 2?".to_owned(),
                10.0
            ),
        ]
    );
    // Two numbered pairs are enough when both texts state other answers (the third pair
    // of this reply has no mark and is dropped).
    let text = "Q: How long are the two remoras together?\nA: 156 inches.\n#### 11\n\
Q: What percentage of the dolphin's length is that?\nA: 10%.\n#### 12\n\
Q: If the dolphin were longer, how long would the remoras be?\nA: 278 inches * 2 = 556 inches.\n";
    let values: Vec<f64> = parse_pairs(text).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec![156.0, 10.0]);
    // Two consecutive marks are answers when one of the texts agrees with its mark.
    let text = "Q: How many cats are there?\nA: 1 + 1 = 2\n#### 2\n\
Q: How many dogs are there?\nA: 4 dogs.\n#### 3\n";
    let values: Vec<f64> = parse_pairs(text).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec![2.0, 3.0]);
    // Consecutive marks that agree with the text are answers (2, 3, 4 here).
    let text = "Q: How many cats are there?\nA: 1 + 1 = 2\n#### 2\n\
Q: How many dogs are there?\nA: 1 + 2 = 3\n#### 3\nQ: How many birds are there?\nA: 2 + 2 = 4\n#### 4\n";
    let values: Vec<f64> = parse_pairs(text).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec![2.0, 3.0, 4.0]);
}

/// A question in other words is the same question: near duplicates of an earlier pair go.
#[test]
fn near_duplicate_questions_are_recognised() {
    use sleeptime_bench::multiquery::{near_duplicate, parse_pairs};
    assert!(near_duplicate(
        "How many boxes are there in total?",
        "how many boxes are there, in total"
    ));
    assert!(!near_duplicate(
        "How many boxes are there in total?",
        "How many boxes are left after 3 are sold?"
    ));
    let text = "Q: How many boxes are there in total?\nA: 12\n#### 12\n\
Q: In total, how many boxes are there?\nA: 13\n#### 13\n";
    assert_eq!(parse_pairs(text).len(), 1);
}

/// A generated-style problem (synthetic text) with or without its template.
fn mq_problem(template: Option<&str>) -> sleeptime_bench::datasets::Problem {
    use sleeptime_bench::datasets::{DatasetKind, Problem, Split};
    Problem {
        id: "gen-p2-s1/7-0".into(),
        context: "Ann has 4 cats.".into(),
        question: "How many paws do the cats have?".into(),
        answer: 16.0,
        answer_text: "16".into(),
        source: DatasetKind::GsmSymbolicGenerated(Split::P2),
        template_id: Some("7".into()),
        template: template.map(str::to_owned),
        full_text: "Ann has 4 cats. How many paws do the cats have?".into(),
        solution: Some("4 * 4 = 16\n#### 16".into()),
    }
}

/// With a template, the generation prompt quotes it under its label, before the
/// instantiation and the example (paper Fig. 19: template, instantiation, example Q/A).
#[test]
fn generation_prompt_quotes_the_template() {
    use sleeptime_bench::multiquery::{generation_system, generation_user, TEMPLATE_LABEL};
    let template = "{name, Ann} has {x,4} cats. How many paws do the cats have?";
    let user = generation_user(&mq_problem(Some(template)));
    assert!(
        user.starts_with(&format!("{TEMPLATE_LABEL}\n{template}\n\n")),
        "{user}"
    );
    let at = |needle: &str| {
        user.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {user:?}"))
    };
    assert!(at(template) < at("Situation: Ann has 4 cats."));
    assert!(at("Situation: Ann has 4 cats.") < at("Example question: How many paws"));
    assert!(at("Example question: How many paws") < at("4 * 4 = 16\n#### 16"));
    assert_eq!(user.matches(TEMPLATE_LABEL).count(), 1);
    assert!(generation_system(5).contains("Write 5 new questions"));
}

/// Without a template (GSM8K, AIME, own JSONL) the prompt has no template line and still
/// holds the situation and the example.
#[test]
fn generation_prompt_without_a_template_has_no_template_line() {
    use sleeptime_bench::multiquery::{generation_system, generation_user, TEMPLATE_LABEL};
    for template in [None, Some(""), Some("  \n")] {
        let user = generation_user(&mq_problem(template));
        let prompt = format!("{}\n{user}", generation_system(5));
        assert!(!prompt.contains(TEMPLATE_LABEL), "{template:?}: {prompt}");
        assert!(
            prompt
                .lines()
                .all(|l| !l.trim_start().starts_with("Template")),
            "{template:?}: {prompt}"
        );
        assert!(user.starts_with("Situation: Ann has 4 cats.\n\n"), "{user}");
        assert!(user.contains("Example question: How many paws do the cats have?"));
        assert!(user.ends_with("4 * 4 = 16\n#### 16"), "{user}");
    }
}

/// A spec whose only sleep program is rethink, answered in the full and checked layouts.
fn checked_spec(dir: &std::path::Path) -> sleeptime_bench::spec::ExperimentSpec {
    let mut spec = common::spec(common::write_dataset(dir));
    spec.programs = vec![ProgramSpec {
        program: ProgramKind::Rethink,
        layouts: vec![Layout::Full, Layout::Checked],
    }];
    spec.ks = vec![1];
    spec.samples = 0;
    spec.cold_problems = 0;
    spec.program_aided = false;
    spec.formula_budgets = Vec::new();
    spec.predictability = false;
    spec
}

#[tokio::test]
async fn checked_layout_escalates_answers_that_c_prime_does_not_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = checked_spec(dir.path());

    // Evaluated on a fresh run and cache: only the checked conditions.
    let model = common::scripted();
    let mut options = common::options(dir.path(), "evaluated");
    options.only = Some(regex::Regex::new("checked").expect("regex"));
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!((summary.written, summary.errors), (3, 0));
    let evaluated = by_key(&read_records(&options.run_dir).expect("records"));
    // Tom's answer 36 is in c' ("12 * 3 = 36"): the fast path, one call.
    let tom = get(&evaluated, "1", "rethink/k1/checked/v0");
    assert_eq!(tom.route.as_deref(), Some("fast"));
    assert!(tom.correct && tom.calls == 1 && tom.composed_from.is_none());
    assert_eq!(tom.answer_in_learned, Some(true));
    // Ann's answer 36 is not among c''s 5, 8 and 40: escalated to step-by-step reasoning,
    // which (scripted) also says 36: both calls are counted, the answer is the fallback's.
    let ann = get(&evaluated, "2", "rethink/k1/checked/v0");
    assert_eq!(ann.route.as_deref(), Some("fallback"));
    assert!(!ann.correct && ann.calls == 2 && ann.answer == Some(36.0));
    assert_eq!(ann.answer_in_learned, Some(false));
    let bob = get(&evaluated, "3", "rethink/k1/checked/v0");
    assert_eq!(bob.route.as_deref(), Some("fallback"));
    assert!(bob.correct);

    // Composed: with the full layout and the baseline at the fallback budget recorded, the
    // checked records come from them, without a model call (a fresh cache cannot serve them).
    let mut options = common::options(dir.path(), "composed");
    options.only = Some(regex::Regex::new("^(baseline/v4|rethink/k1/full/v0)$").expect("regex"));
    run(&spec, common::backends(&common::scripted()), &options)
        .await
        .expect("run");
    let parts = by_key(&read_records(&options.run_dir).expect("records"));
    let silent = common::scripted();
    options.only = Some(regex::Regex::new("checked").expect("regex"));
    options.cache_dir = dir.path().join("empty-cache");
    let summary = run(&spec, common::backends(&silent), &options)
        .await
        .expect("run");
    assert_eq!((summary.written, summary.errors), (3, 0));
    assert!(silent.calls().is_empty(), "composing calls no model");
    let composed = by_key(&read_records(&options.run_dir).expect("records"));
    for problem in ["1", "2", "3"] {
        let (c, e) = (
            get(&composed, problem, "rethink/k1/checked/v0"),
            get(&evaluated, problem, "rethink/k1/checked/v0"),
        );
        assert_same_answer(c, e, &format!("problem {problem}"));
        assert_eq!(
            c.sleep.as_ref().map(|s| s.answer_recall),
            e.sleep.as_ref().map(|s| s.answer_recall)
        );
        let full = get(&parts, problem, "rethink/k1/full/v0");
        let mut from = vec!["rethink/k1/full/v0".to_owned()];
        if c.route.as_deref() == Some("fallback") {
            from.push("baseline/v4".to_owned());
            let v4 = get(&parts, problem, "baseline/v4");
            assert!(
                (c.latency_s - (full.latency_s + v4.latency_s)).abs() < 1e-9,
                "both calls' latency"
            );
        }
        assert_eq!(c.composed_from.as_ref(), Some(&from));
    }
}

#[test]
fn the_checked_layout_parses_and_reads_in_reports() {
    assert_eq!("checked".parse::<Layout>(), Ok(Layout::Checked));
    assert_eq!(Layout::Checked.name(), "checked");
    let err = "check".parse::<Layout>().expect_err("unknown layout");
    assert!(err.contains("checked"), "{err}");
}

/// A composed record answers as the evaluated one did: same answer, costs and route.
fn assert_same_answer(composed: &Record, evaluated: &Record, what: &str) {
    let view = |r: &Record| {
        (
            r.answer,
            r.correct,
            r.usage,
            r.calls,
            r.route.clone(),
            r.answer_in_learned,
        )
    };
    assert_eq!(view(composed), view(evaluated), "{what}");
}

/// A spec whose only sleep program is aided, answered in the full, picked and matched layouts.
fn picked_spec(dir: &std::path::Path) -> sleeptime_bench::spec::ExperimentSpec {
    let mut spec = checked_spec(dir);
    spec.programs = vec![ProgramSpec {
        program: ProgramKind::Aided,
        layouts: vec![Layout::Full, Layout::Picked, Layout::Matched],
    }];
    spec
}

#[tokio::test]
async fn picked_and_matched_layouts_let_the_engine_choose_among_the_quantities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = picked_spec(dir.path());
    let pick_layouts = regex::Regex::new("/(picked|matched)/").expect("regex");

    // Evaluated on a fresh run and cache.
    let model = common::scripted();
    let mut options = common::options(dir.path(), "evaluated");
    options.only = Some(pick_layouts.clone());
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!((summary.written, summary.errors), (6, 0));
    let evaluated = by_key(&read_records(&options.run_dir).expect("records"));
    for layout in ["picked", "matched"] {
        let condition = format!("aided/k1/{layout}/v0");
        // Tom's and Bob's answers (36) are the quantities that match their questions: kept.
        for problem in ["1", "3"] {
            let kept = get(&evaluated, problem, &condition);
            assert_eq!(kept.route.as_deref(), Some("fast"), "{condition} {problem}");
            assert!(kept.correct && kept.calls == 1 && kept.answer == Some(36.0));
        }
        // Ann's answer from memory (36) is not among her c''s 5, 8 and 40: the engine takes
        // the quantity that matches "pears" and "Ann", 40, in the same one call.
        let ann = get(&evaluated, "2", &condition);
        assert_eq!(ann.route.as_deref(), Some("fallback"), "{condition}");
        assert!(ann.correct && ann.calls == 1 && ann.answer == Some(40.0));
        assert_eq!(ann.answer_in_learned, Some(true));
        assert!(ann.usage.completion_tokens > 0 && ann.composed_from.is_none());
    }

    // Composed: with the full layout recorded (candidates included), the picked and matched
    // records come from it without a model call.
    let mut options = common::options(dir.path(), "composed");
    options.only = Some(regex::Regex::new("^aided/k1/full/v0$").expect("regex"));
    run(&spec, common::backends(&common::scripted()), &options)
        .await
        .expect("run");
    let full = by_key(&read_records(&options.run_dir).expect("records"));
    assert!(
        !get(&full, "2", "aided/k1/full/v0").correct,
        "the model alone says 36"
    );
    let silent = common::scripted();
    options.only = Some(pick_layouts);
    options.cache_dir = dir.path().join("empty-cache");
    let summary = run(&spec, common::backends(&silent), &options)
        .await
        .expect("run");
    assert_eq!((summary.written, summary.errors), (6, 0));
    assert!(silent.calls().is_empty(), "composing calls no model");
    let composed = by_key(&read_records(&options.run_dir).expect("records"));
    for layout in ["picked", "matched"] {
        let condition = format!("aided/k1/{layout}/v0");
        for problem in ["1", "2", "3"] {
            let (c, e) = (
                get(&composed, problem, &condition),
                get(&evaluated, problem, &condition),
            );
            assert_same_answer(c, e, &format!("{condition} {problem}"));
            assert_eq!(
                c.composed_from.as_deref(),
                Some(&["aided/k1/full/v0".to_owned()][..])
            );
        }
    }
}

#[test]
fn the_picked_and_matched_layouts_parse() {
    assert_eq!("picked".parse::<Layout>(), Ok(Layout::Picked));
    assert_eq!("matched".parse::<Layout>(), Ok(Layout::Matched));
    assert_eq!(Layout::Matched.name(), "matched");
    let err = "pick".parse::<Layout>().expect_err("unknown layout");
    assert!(err.contains("picked") && err.contains("matched"), "{err}");
}
