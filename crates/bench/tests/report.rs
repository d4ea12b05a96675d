//! The report: markdown, summary and PNG/SVG figures from a scripted run, and from a
//! synthetic run shaped like a real one (set SLEEPTIME_BENCH_KEEP=DIR to keep its files and
//! look at the figures).

mod common;

use std::path::Path;

use sleeptime_bench::record::{self, write_manifest, Manifest, Record, ResultsWriter, SleepRecord};
use sleeptime_bench::report::{write_report, ReportFiles, ReportOptions};
use sleeptime_bench::runner::run;
use sleeptime_bench::spec::{
    preset, Budget, Condition, Layout, MultiQuerySpec, ProgramKind, Sleeper,
};
use sleeptime_model::Usage;

fn check_figure(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 1000, "{} is nearly empty", path.display());
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n"),
        Some("svg") => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
        other => panic!("unexpected figure type {other:?}"),
    }
}

#[tokio::test]
async fn report_of_a_scripted_run_writes_markdown_summary_and_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = common::spec(common::write_dataset(dir.path()));
    let model = common::scripted();
    let options = common::options(dir.path(), "report");
    run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    let files = write_report(&options.run_dir, &ReportOptions::default()).expect("report");
    let md = std::fs::read_to_string(&files.markdown).expect("report.md");
    for section in [
        "## Targets",
        "## Accuracy and cost per condition",
        "Iso-accuracy",
        "## Per budget",
        "k drafts",
        "pass@k",
        "Context-only",
        "## Amortised cost",
        "## Predictability",
        "## Per template",
    ] {
        assert!(md.contains(section), "report.md lacks {section:?}");
    }
    assert!(md.contains("`rethink/k1/full/v0`"));
    assert!(md.contains("plots/accuracy_vs_tokens.png"));
    for word in common::DATASET_WORDS {
        assert!(
            !md.contains(word),
            "report.md contains dataset text {word:?}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files.summary).expect("summary")).expect("json");
    assert!(summary["conditions"]
        .as_array()
        .is_some_and(|c| c.len() > 10));
    assert_eq!(summary["targets"].as_array().map(Vec::len), Some(5));
    for stem in [
        "accuracy_vs_tokens",
        "accuracy_vs_latency",
        "k_scaling",
        "pass_at_k",
        "amortisation_rethink",
        "amortisation_aided",
        "predictability",
    ] {
        for ext in ["png", "svg"] {
            let path = options.run_dir.join("plots").join(format!("{stem}.{ext}"));
            assert!(files.figures.contains(&path), "missing {}", path.display());
            check_figure(&path);
        }
    }
    // Without plots: markdown only.
    let again = write_report(
        &options.run_dir,
        &ReportOptions {
            plots: false,
            ..ReportOptions::default()
        },
    )
    .expect("report");
    assert!(again.figures.is_empty());
}

/// A deterministic pseudo-random stream for the synthetic run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Records shaped like a real run: accuracy rising with tokens, sleep-time higher at low
/// budgets, aided higher still.
fn synthetic_records(n: usize) -> Vec<Record> {
    let mut rng = Lcg(7);
    let budgets = [
        ("v0", 8.0),
        ("v1", 30.0),
        ("v2", 55.0),
        ("v3", 120.0),
        ("v4", 280.0),
        ("cap64", 66.0),
        ("cap128", 125.0),
    ];
    let base_acc = [0.08, 0.15, 0.22, 0.30, 0.40, 0.18, 0.27];
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("gen-symbolic-s0/{}-{}", i % 40, i / 40);
        let template = Some((i % 40).to_string());
        let predictability = -1.0 - 2.0 * rng.next();
        let mut score = Record::new(&id, &id, 0, template.clone(), &Condition::Score, 1.0);
        score.logprob_mean = Some(predictability);
        score.logprob_sum = Some(predictability * 20.0);
        out.push(score);
        let mut push = |condition: Condition, acc: f64, tokens: f64, sleep: Option<f64>| {
            let mut r = Record::new(&id, &id, 0, template.clone(), &condition, 1.0);
            r.correct = rng.next() < acc;
            r.answer = Some(if r.correct { 1.0 } else { 2.0 });
            let t = (tokens * (0.7 + 0.6 * rng.next())).round() as u64;
            r.usage = Usage {
                prompt_tokens: 300,
                cached_prompt_tokens: 260,
                completion_tokens: t,
            };
            r.latency_s = 0.7 + t as f64 / 20.0;
            r.prefix_tokens = Some(260);
            r.prefix_prefill_s = Some(4.3);
            r.hit_cap = tokens > 200.0 && rng.next() < 0.1;
            if let Some(stokens) = sleep {
                let recall = rng.next() < 0.6;
                r.sleep = Some(SleepRecord {
                    program: "x@v1".into(),
                    k: condition.sleeper().map_or(1, |s| s.k),
                    usage: Usage {
                        prompt_tokens: 400,
                        cached_prompt_tokens: 0,
                        completion_tokens: stokens as u64,
                    },
                    seconds: stokens / 20.0,
                    steps: 2,
                    learned_chars: 600,
                    quantities: None,
                    answer_recall: recall,
                    open_recall: None,
                    dropped_too_long: 0,
                    candidates: Vec::new(),
                });
            }
            out.push(r);
        };
        for (j, (label, tokens)) in budgets.iter().enumerate() {
            let budget: Budget = label.parse().expect("budget");
            push(
                Condition::Baseline {
                    budget,
                    cold: false,
                },
                base_acc[j],
                *tokens,
                None,
            );
            for (program, k, bonus, stokens) in [
                (ProgramKind::Rethink, 1, 0.18, 350.0),
                (ProgramKind::Aided, 1, 0.30, 180.0),
                (ProgramKind::Rethink, 5, 0.24, 1750.0),
            ] {
                if k > 1 && j > 2 {
                    continue;
                }
                let sleeper = Sleeper { program, k };
                let acc = (base_acc[j] + bonus * (1.0 - j as f64 / 8.0)).min(0.9);
                push(
                    Condition::Sleep {
                        sleeper,
                        layout: Layout::Full,
                        budget,
                        cold: false,
                    },
                    acc,
                    tokens * 0.6,
                    Some(stokens),
                );
            }
        }
        for s in 0..8 {
            push(
                Condition::Sample {
                    budget: Budget::level(0),
                    index: s,
                },
                0.09,
                8.0,
                None,
            );
        }
        push(Condition::Program { sleeper: None }, 0.33, 90.0, None);
        let v0 = Budget::level(0);
        push(
            Condition::Formula {
                sleeper: None,
                budget: v0,
            },
            0.12,
            14.0,
            None,
        );
        let aided = Sleeper {
            program: ProgramKind::Aided,
            k: 1,
        };
        push(
            Condition::Formula {
                sleeper: Some(aided),
                budget: v0,
            },
            0.6,
            15.0,
            Some(180.0),
        );
    }
    out
}

/// The context number of a synthetic record (`gen-symbolic-s0/7-0` is context 7).
fn context_index(r: &Record) -> usize {
    r.context_id
        .rsplit('/')
        .next()
        .and_then(|t| t.split('-').next())
        .and_then(|n| n.parse().ok())
        .expect("synthetic context id")
}

/// Writes `records` as a finished run in `run_dir` and reports it.
fn report_synthetic(run_dir: &Path, records: &[Record]) -> ReportFiles {
    report_synthetic_listed(run_dir, records, false)
}

/// As [`report_synthetic`]; with `listed`, the manifest lists the problems and conditions the
/// records hold, as a real run's does.
fn report_synthetic_listed(run_dir: &Path, records: &[Record], listed: bool) -> ReportFiles {
    report_synthetic_with(run_dir, records, listed, None)
}

/// As [`report_synthetic_listed`], as a Multi-Query run when `multi_query` is given.
fn report_synthetic_with(
    run_dir: &Path,
    records: &[Record],
    listed: bool,
    multi_query: Option<MultiQuerySpec>,
) -> ReportFiles {
    std::fs::create_dir_all(run_dir).expect("mkdir");
    let _ = std::fs::remove_file(run_dir.join(record::RESULTS));
    let mut spec = preset("symbolic-200").expect("preset");
    spec.ks = vec![1, 5];
    spec.programs
        .retain(|p| p.program == ProgramKind::Rethink || p.program == ProgramKind::Aided);
    spec.multi_query = multi_query;
    let mut writer = ResultsWriter::open(run_dir).expect("writer");
    for r in records {
        writer.write(r).expect("write");
    }
    let manifest = Manifest {
        name: "synthetic".into(),
        preset: Some("symbolic-200".into()),
        model: record::ModelRecord {
            name: "synthetic-model".into(),
            fingerprint: "0".repeat(64),
            context_window: 4096,
        },
        generator: None,
        scorer: None,
        dataset: "gen-symbolic-s0".into(),
        problem_ids: if listed {
            unique(records.iter().map(|r| &r.problem_id))
        } else {
            Vec::new()
        },
        conditions: if listed {
            unique(records.iter().map(|r| &r.condition))
        } else {
            Vec::new()
        },
        spec,
        seed: 0,
        git_commit: None,
        command_line: vec!["test".into()],
        started_at: 1_700_000_000,
        finished_at: Some(1_700_003_600),
        previous_starts: Vec::new(),
        harness_version: "test".into(),
        cache_hits: 0,
        cache_misses: 0,
        records: records.len(),
    };
    write_manifest(run_dir, &manifest).expect("manifest");
    write_report(run_dir, &ReportOptions::default()).expect("report")
}

fn unique<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

/// The report header's row named `name`.
fn header_row<'a>(md: &'a str, name: &str) -> &'a str {
    let start = format!("| {name} |");
    md.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no {name:?} row in {md}"))
}

fn summary_of(files: &ReportFiles) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&files.summary).expect("summary")).expect("json")
}

fn target<'a>(summary: &'a serde_json::Value, name_starts: &str) -> &'a serde_json::Value {
    summary["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(name_starts))
        })
        .unwrap_or_else(|| panic!("no target named {name_starts}…"))
}

#[test]
fn report_of_a_realistic_synthetic_run() {
    let keep = std::env::var_os("SLEEPTIME_BENCH_KEEP").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_dir = keep.clone().unwrap_or_else(|| tmp.path().join("synthetic"));
    let records = synthetic_records(200);
    let files = report_synthetic(&run_dir, &records);
    for f in &files.figures {
        check_figure(f);
    }
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(md.contains("2023-11-14 22:13:20 UTC"));
    // The sleep-time curves sit well above the baseline at low budgets: iso-accuracy ratios exist.
    let summary = summary_of(&files);
    assert!(summary["iso"].as_array().is_some_and(|rows| rows
        .iter()
        .any(|r| r["tokens"]["max"]["ratio"]
            .as_f64()
            .is_some_and(|x| x > 1.0))));
    assert_eq!(summary["amortised_measured"], false);
    // One formula over the aided c' is a sleep-time curve of its own and the best structured
    // answer at v0; the test-time formula joins the tool-using baselines.
    assert!(
        md.contains("aided k=1: one evaluated formula over c'"),
        "formula series in the report"
    );
    let vs_paper = target(&summary, "Program-aided vs paper-faithful");
    let vs_one = target(&summary, "Amortised cost per query at 10 vs 1 query");
    assert!(
        vs_one["value"].as_f64().is_some_and(|r| r > 1.0),
        "{vs_one}"
    );
    assert!(
        vs_paper["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("aided (formula) ")),
        "{vs_paper}"
    );
    assert!(summary["iso"]
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["series"] == "aided/k1/formula")));

    // The aided program meets the paper's program at each of the 7 budgets, paired by
    // question; the formula over c' is not a layout of c' + c + q and is left out.
    let rows = summary["head_to_head"].as_array().expect("head_to_head");
    assert_eq!(rows.len(), 7, "{rows:?}");
    for row in rows {
        let condition = row["condition"].as_str().expect("condition");
        let budget = condition
            .strip_prefix("aided/k1/full/")
            .expect("aided full");
        assert_eq!(row["reference"], format!("rethink/k1/full/{budget}"));
    }
    let outcome = |condition: &str| -> std::collections::BTreeMap<&str, bool> {
        records
            .iter()
            .filter(|r| r.condition == condition)
            .map(|r| (r.problem_id.as_str(), r.correct))
            .collect()
    };
    let mean_tokens = |condition: &str| {
        let tokens: Vec<u64> = records
            .iter()
            .filter(|r| r.condition == condition)
            .map(|r| r.usage.completion_tokens)
            .collect();
        format!(
            "{:.1}",
            tokens.iter().sum::<u64>() as f64 / tokens.len() as f64
        )
    };
    let (aided, rethink) = (outcome("aided/k1/full/v0"), outcome("rethink/k1/full/v0"));
    let wins = aided.iter().filter(|(q, a)| **a && !rethink[*q]).count();
    let losses = aided.iter().filter(|(q, a)| !**a && rethink[*q]).count();
    assert!(
        wins > losses,
        "the synthetic aided program is the stronger one"
    );
    let v0 = &rows[0];
    assert_eq!(v0["condition"], "aided/k1/full/v0");
    assert_eq!(
        (v0["wins"].as_u64(), v0["losses"].as_u64()),
        (Some(wins as u64), Some(losses as u64))
    );
    assert!(
        md.contains(&format!(
            "| `aided/k1/full/v0` | `rethink/k1/full/v0` | 200 | {} / {} | {} / {} | {wins} / {losses} |",
            aided.values().filter(|c| **c).count(),
            rethink.values().filter(|c| **c).count(),
            mean_tokens("aided/k1/full/v0"),
            mean_tokens("rethink/k1/full/v0"),
        )),
        "{md}"
    );
    assert!(md.contains("## Each program against the paper's program"));
}

#[test]
fn amortisation_is_not_claimed_for_series_that_answer_nothing() {
    // The same run, but no sleep-time condition answers anything correctly (AIME on a small
    // model): sharing c' still makes its wrong answers cheaper, which is not a result.
    let mut records = synthetic_records(40);
    for r in &mut records {
        if r.sleep.is_some() {
            r.correct = false;
        }
    }
    // The context-only ablation answering correctly does not count: it never sees the question.
    let ablation: Vec<Record> = records
        .iter()
        .filter(|r| r.condition == "aided/k1/full/v0")
        .map(|r| {
            let mut r = r.clone();
            let Condition::Sleep {
                sleeper,
                budget,
                cold,
                ..
            } = r.spec.clone()
            else {
                unreachable!("a sleep condition")
            };
            r.spec = Condition::Sleep {
                sleeper,
                layout: Layout::ContextOnly,
                budget,
                cold,
            };
            r.condition = r.spec.id();
            r.correct = true;
            r
        })
        .collect();
    assert!(!ablation.is_empty());
    records.extend(ablation);
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = report_synthetic(&tmp.path().join("floor"), &records);
    let summary = summary_of(&files);
    let vs_one = target(&summary, "Amortised cost per query at 10 vs 1 query");
    assert!(vs_one["value"].is_null(), "{vs_one}");
    assert!(vs_one["met"].is_null(), "{vs_one}");
    assert_eq!(
        vs_one["detail"], "no sleep-time series answers at least 5 questions correctly at v0",
        "{vs_one}"
    );
}

/// A Multi-Query run whose generator kept a second question on some contexts only: the
/// amortisation is read at N = 2 on those contexts, and the report says on how many; with
/// fewer than ten such contexts it is not measurable; with all of them, on every context.
#[test]
fn multi_query_amortisation_is_read_on_the_contexts_that_reached_n() {
    let with_second_question = |records: &[Record], contexts: usize| -> Vec<Record> {
        let mut out = records.to_vec();
        for r in records {
            if context_index(r) < contexts && r.spec.answers() {
                let mut q = r.clone();
                q.problem_id = format!("{}/q1", r.problem_id);
                q.question_index = 1;
                // The second question shares the context's sleep-time run.
                out.push(q);
            }
        }
        out
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = synthetic_records(40);
    // The report of a Multi-Query run where `contexts` of the 40 have a second question.
    let report = |contexts: usize| {
        report_synthetic_with(
            &tmp.path().join(format!("mq{contexts}")),
            &with_second_question(&base, contexts),
            false,
            Some(MultiQuerySpec::default()),
        )
    };

    let files = report(12);
    let summary = summary_of(&files);
    assert_eq!(summary["amortised_measured"], true);
    for name in [
        "Amortised cost per query at 2 queries per context vs test-time only",
        "Amortised cost per query at 2 vs 1 query per context",
    ] {
        let t = target(&summary, name);
        let detail = t["detail"].as_str().expect("detail");
        assert!(
            detail.contains("on the 12 of 40 contexts with at least 2 questions"),
            "{t}"
        );
        assert!(!detail.contains("not measurable"), "{t}");
    }
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(
        md.contains(
            "On the 12 of 40 contexts with at least 2 questions, where the targets are read"
        ),
        "{md}"
    );
    assert_eq!(summary["amortised_subset"]["contexts"], 12);
    // Read on those 12 contexts: sharing c' between two questions halves its cost per query.
    let vs_one = target(
        &summary,
        "Amortised cost per query at 2 vs 1 query per context",
    );
    assert!(
        vs_one["value"].as_f64().is_some_and(|v| v > 1.0),
        "{vs_one}"
    );

    let summary = summary_of(&report(5));
    assert!(summary["amortised_subset"].is_null());
    let t = target(
        &summary,
        "Amortised cost per query at 10 vs 1 query per context",
    );
    assert!(
        t["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not measurable")),
        "{t}"
    );

    // Every context has a second question: read at N = 2 on all of them, no subset.
    let summary = summary_of(&report(40));
    assert!(summary["amortised_subset"].is_null());
    let t = target(
        &summary,
        "Amortised cost per query at 2 vs 1 query per context",
    );
    let detail = t["detail"].as_str().expect("detail");
    assert!(t["value"].as_f64().is_some_and(|v| v > 1.0), "{t}");
    assert!(!detail.contains("contexts with at least"), "{t}");
}

#[test]
fn ratios_resting_on_a_few_correct_answers_are_shown_but_not_judged() {
    // P2 on a small model: sleep-time gets 3 of 40 questions right, so every ratio is read at
    // 7.5% accuracy or below, three answers, and says nothing about sleep-time compute.
    let mut records = synthetic_records(40);
    for r in &mut records {
        if r.sleep.is_some() {
            r.correct = context_index(r) < 3;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = report_synthetic(&tmp.path().join("few"), &records);
    let summary = summary_of(&files);
    let iso = target(&summary, "Iso-accuracy test-time token ratio");
    assert!(iso["value"].as_f64().is_some(), "the ratio is shown: {iso}");
    assert!(iso["met"].is_null(), "{iso}");
    assert!(
        iso["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not judged: read at ") && d.contains("of 40")),
        "{iso}"
    );
    let vs_one = target(&summary, "Amortised cost per query at 10 vs 1 query");
    assert!(vs_one["met"].is_null(), "{vs_one}");
    let best = target(&summary, "Program-aided has the best iso-accuracy");
    assert!(best["met"].is_null(), "{best}");
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(md.contains("| n/a |"), "not judged reads n/a");

    // The same run with sleep-time right on 20 of 40 questions is judged.
    let mut records = synthetic_records(40);
    for r in &mut records {
        if r.sleep.is_some() {
            r.correct = context_index(r) < 20;
        }
    }
    let files = report_synthetic(&tmp.path().join("enough"), &records);
    let summary = summary_of(&files);
    let iso = target(&summary, "Iso-accuracy test-time token ratio");
    assert!(iso["met"].is_boolean(), "{iso}");
}

#[test]
fn a_run_resumed_across_program_versions_or_with_dropped_steps_says_so() {
    // 40 contexts; the aided program's prompt changed after the first 25 (a run resumed with
    // a newer build), the paper's program did not.
    let mut records = synthetic_records(40);
    for r in &mut records {
        let Some(sleeper) = r.spec.sleeper() else {
            continue;
        };
        let index = context_index(r);
        let version = match sleeper.program {
            ProgramKind::Aided if index >= 25 => "aided@v3[repair_rounds=2]",
            ProgramKind::Aided => "aided@v2[repair_rounds=2]",
            _ => "rethink@v2[max_rethinks=3]",
        };
        if let Some(sleep) = r.sleep.as_mut() {
            sleep.program = version.into();
            // Two contexts of the newer version lost a step each to the context window.
            if sleeper.program == ProgramKind::Aided && (index == 30 || index == 31) {
                sleep.dropped_too_long = 1;
            }
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = report_synthetic(&tmp.path().join("resumed"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    let row = header_row(&md, "sleep program versions");
    assert!(
        row.contains("aided: `aided@v2[repair_rounds=2]` on 25 contexts, `aided@v3[repair_rounds=2]` on 15 contexts — **mixed versions**"),
        "{row}"
    );
    assert!(
        row.contains("rethink: `rethink@v2[max_rethinks=3]` on 40 contexts"),
        "{row}"
    );
    assert_eq!(row.matches("mixed").count(), 1, "{row}");
    assert!(
        md.contains("| sleep steps dropped (prompt outgrew the context window) | aided/k1: 2 on 2 contexts |"),
        "{md}"
    );
    // Without drops, no such row.
    for r in &mut records {
        if let Some(sleep) = r.sleep.as_mut() {
            sleep.dropped_too_long = 0;
        }
    }
    let files = report_synthetic(&tmp.path().join("no-drops"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(!md.contains("sleep steps dropped"));

    // Each condition on one version, but not the same one: the aided answers at v0 were
    // learned by v2 everywhere, every other aided condition by v3 (a condition added later).
    // And two contexts' rethink records come from a harness that wrote no version.
    for r in &mut records {
        let Some(sleeper) = r.spec.sleeper() else {
            continue;
        };
        let old_harness = r.context_id.ends_with("/0-0") || r.context_id.ends_with("/1-0");
        if let Some(sleep) = r.sleep.as_mut() {
            sleep.program = match sleeper.program {
                ProgramKind::Aided if r.condition == "aided/k1/full/v0" => {
                    "aided@v2[repair_rounds=2]"
                }
                ProgramKind::Aided => "aided@v3[repair_rounds=2]",
                _ if old_harness => "rethink",
                _ => "rethink@v2[max_rethinks=3]",
            }
            .into();
        }
    }
    let files = report_synthetic(&tmp.path().join("split"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    let row = header_row(&md, "sleep program versions");
    let aided_part = row.split("; rethink:").next().expect("aided part");
    assert!(!aided_part.contains("mixed versions"), "{row}");
    assert!(
        row.contains("aided: `aided@v2[repair_rounds=2]` on 40 contexts, `aided@v3[repair_rounds=2]` on 40 contexts — **conditions on different versions** (`aided@v2[repair_rounds=2]` in `aided/k1/full/v0`; `aided@v3[repair_rounds=2]` in `aided/k1/"),
        "{row}"
    );
    assert!(
        row.contains("rethink: `rethink` (version not recorded: an older harness) on 2 contexts, `rethink@v2[max_rethinks=3]` on 38 contexts — **mixed versions** within `rethink/k1/full/cap128`"),
        "{row}"
    );
}

#[test]
fn a_problem_an_interrupted_invocation_left_half_done_is_left_out_and_named() {
    let records = synthetic_records(40);
    let tmp = tempfile::tempdir().expect("tempdir");
    let condition_n = |summary: &serde_json::Value, id: &str| {
        summary["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["condition"] == id)
            .map(|c| c["n"].as_u64().expect("n"))
    };

    // Every problem complete: nothing left out.
    let files = report_synthetic_listed(&tmp.path().join("complete"), &records, true);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(!md.contains("left out, unfinished"), "{md}");
    let summary = summary_of(&files);
    assert_eq!(
        summary["partial_problems"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(condition_n(&summary, "baseline/v0"), Some(40));
    assert_eq!(condition_n(&summary, "aided/k1/full/v0"), Some(40));

    // The run was stopped during the last problem: it has its first 10 records only.
    let last = "gen-symbolic-s0/39-0";
    let total = records.iter().filter(|r| r.problem_id == last).count();
    let mut seen = 0;
    let interrupted: Vec<Record> = records
        .iter()
        .filter(|r| {
            if r.problem_id != last {
                return true;
            }
            seen += 1;
            seen <= 10
        })
        .cloned()
        .collect();
    let kept_conditions: Vec<&str> = interrupted
        .iter()
        .filter(|r| r.problem_id == last)
        .map(|r| r.condition.as_str())
        .collect();
    assert!(
        kept_conditions.contains(&"baseline/v0"),
        "{kept_conditions:?}"
    );
    let files = report_synthetic_listed(&tmp.path().join("interrupted"), &interrupted, true);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    let row = header_row(&md, "left out, unfinished");
    assert!(row.contains(&format!("`{last}` (")), "{row}");
    assert!(row.contains(" conditions)"), "{row}");
    assert!(md.contains("(39 questions on 39 contexts)"), "{md}");
    let summary = summary_of(&files);
    let partial = summary["partial_problems"].as_array().expect("partial");
    assert_eq!(partial.len(), 1);
    assert_eq!(partial[0]["problem_id"], last);
    let answered = partial[0]["answered"].as_u64().expect("answered");
    let expected = partial[0]["expected"].as_u64().expect("expected");
    // Of its 10 records, those the run's spec asks for count; the rest are missing.
    assert!(
        answered > 0 && answered <= 10 && answered < expected && expected <= total as u64,
        "{answered} of {expected} ({total} records)"
    );
    assert!(
        row.contains(&format!("({answered} of {expected} conditions)")),
        "{row}"
    );
    // Both conditions, the one it answered and the one it did not, count the same 39.
    assert_eq!(condition_n(&summary, "baseline/v0"), Some(39));
    assert_eq!(condition_n(&summary, "aided/k1/full/v0"), Some(39));
}

/// The recall table's rows, header first, as lists of cells.
fn recall_table(md: &str) -> Vec<Vec<String>> {
    let section = md
        .split("## Answer recall, anchoring and routing")
        .nth(1)
        .expect("recall section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|---"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_open_recall_column_appears_only_for_runs_with_open_questions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut records = synthetic_records(40);
    let files = report_synthetic(&tmp.path().join("closed"), &records);
    let table = recall_table(&std::fs::read_to_string(&files.markdown).expect("md"));
    assert!(table.len() > 1, "{table:?}");
    assert!(
        !table[0].iter().any(|c| c == "open recall"),
        "{:?}",
        table[0]
    );
    assert!(
        table.iter().all(|row| row.len() == table[0].len()),
        "{table:?}"
    );

    // One program records open recall (aided-open does): the column appears, with dashes for
    // the programs that have none, and every row keeps the header's width.
    for r in &mut records {
        if r.condition == "aided/k1/full/v0" {
            if let Some(sleep) = r.sleep.as_mut() {
                sleep.open_recall = Some(r.problem_id.ends_with("-0"));
            }
        }
    }
    let files = report_synthetic(&tmp.path().join("open"), &records);
    let table = recall_table(&std::fs::read_to_string(&files.markdown).expect("md"));
    let column = table[0]
        .iter()
        .position(|c| c == "open recall")
        .unwrap_or_else(|| panic!("no open recall column: {:?}", table[0]));
    assert!(
        table.iter().all(|row| row.len() == table[0].len()),
        "{table:?}"
    );
    let cell = |condition: &str| {
        table
            .iter()
            .find(|row| row[0] == format!("`{condition}`"))
            .map(|row| row[column].clone())
            .unwrap_or_else(|| panic!("no row {condition}: {table:?}"))
    };
    assert_eq!(cell("aided/k1/full/v0"), "100.0%");
    assert_eq!(cell("rethink/k1/full/v0"), "–");
}

#[test]
fn records_composed_from_recorded_calls_are_counted_in_the_header() {
    let mut records = synthetic_records(20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = report_synthetic(&tmp.path().join("evaluated"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    assert!(!md.contains("| composed from recorded calls |"), "{md}");
    // Mark the first 7 records of one condition as composed.
    let condition = records
        .iter()
        .find(|r| r.spec.sleeper().is_some())
        .expect("a sleep-time record")
        .condition
        .clone();
    for r in records
        .iter_mut()
        .filter(|r| r.condition == condition)
        .take(7)
    {
        r.composed_from = Some(vec![condition.clone(), "baseline/v4".into()]);
    }
    let files = report_synthetic(&tmp.path().join("composed"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("md");
    let row = header_row(&md, "composed from recorded calls");
    assert!(row.contains(&format!("`{condition}` 7 —")), "{row}");
}

/// More drafts are meant to put the gold value into `c'` more often; the k-scaling table
/// shows that recall beside the share of recalled answers picked, per draft count.
#[test]
fn k_scaling_table_shows_recall_and_picks_per_draft_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 4 contexts: k = 1 recalls the gold value on 1 and answers it; k = 5 recalls it on 3
    // and answers 2 of those.
    let mut records = Vec::new();
    for i in 0..4 {
        let id = format!("gen-symbolic-s0/{i}-0");
        for (k, recalled, correct) in [(1, i == 0, i == 0), (5, i < 3, i < 2)] {
            let condition = Condition::Sleep {
                sleeper: Sleeper {
                    program: ProgramKind::Rethink,
                    k,
                },
                layout: Layout::Full,
                budget: Budget::level(0),
                cold: false,
            };
            let mut r = Record::new(&id, &id, 0, None, &condition, 1.0);
            r.correct = correct;
            r.answer = Some(if correct { 1.0 } else { 2.0 });
            r.sleep = Some(SleepRecord {
                program: "rethink@v2".into(),
                k,
                usage: Usage {
                    prompt_tokens: 400,
                    cached_prompt_tokens: 0,
                    completion_tokens: 100 * k as u64,
                },
                seconds: 5.0,
                steps: 1,
                learned_chars: 300,
                quantities: None,
                answer_recall: recalled,
                open_recall: None,
                dropped_too_long: 0,
                candidates: Vec::new(),
            });
            records.push(r);
        }
    }
    let files = report_synthetic(&tmp.path().join("k"), &records);
    let md = std::fs::read_to_string(&files.markdown).expect("report.md");
    let (_, k_section) = md
        .split_once("## Scaling sleep-time compute")
        .expect("k-scaling section");
    assert!(
        k_section.contains("recall (gold in c') | picks recalled |"),
        "{k_section}"
    );
    let k5 = header_row(k_section, "rethink k=5: c' + c + q");
    assert!(k5.contains("| 75.0% | 66.7% | 500 |"), "{k5}");
    let k1 = header_row(k_section, "rethink k=1: c' + c + q");
    assert!(k1.contains("| 25.0% | 100.0% | 100 |"), "{k1}");
}

/// On a handful of questions one answer moves the aided-vs-paper difference by many points:
/// the +15-point target is shown but not judged; on enough questions it is judged.
#[test]
fn the_points_target_is_not_judged_on_a_handful_of_questions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let few = summary_of(&report_synthetic(
        &tmp.path().join("few"),
        &synthetic_records(8),
    ));
    let t = target(&few, "Program-aided vs paper-faithful");
    assert!(t["met"].is_null(), "{t}");
    assert!(t["value"].as_f64().is_some(), "{t}");
    assert!(
        t["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not judged: 8 question(s)")),
        "{t}"
    );

    let many = summary_of(&report_synthetic(
        &tmp.path().join("many"),
        &synthetic_records(40),
    ));
    let t = target(&many, "Program-aided vs paper-faithful");
    assert!(t["met"].is_boolean(), "{t}");
    assert!(
        t["detail"]
            .as_str()
            .is_some_and(|d| !d.contains("not judged")),
        "{t}"
    );
}
