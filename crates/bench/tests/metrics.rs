//! Metrics on known values: Wilson intervals, percentiles, Pareto frontiers and
//! iso-accuracy interpolation, the amortisation formula, pass@k and majority vote, and
//! predictability quantile bins, routing-threshold sweeps.

use sleeptime_bench::metrics::{
    amortised, cost_to_reach, head_to_head, iso_accuracy, majority_answer, pareto, pass_and_vote,
    percentile, predictability_bins, route_thresholds, summarize, wilson, Z95,
};
use sleeptime_bench::record::{Record, SleepRecord};
use sleeptime_bench::spec::{Budget, Condition, Layout, ProgramKind, Sleeper};
use sleeptime_model::Usage;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn wilson_interval_known_values() {
    let (lo, hi) = wilson(5, 10, Z95);
    assert!(
        close(lo, 0.2366, 1e-4) && close(hi, 0.7634, 1e-4),
        "{lo} {hi}"
    );
    let (lo, hi) = wilson(0, 10, Z95);
    assert!(
        close(lo, 0.0, 1e-12) && close(hi, 0.2775, 1e-4),
        "{lo} {hi}"
    );
    let (lo, hi) = wilson(10, 10, Z95);
    assert!(
        close(lo, 0.7225, 1e-4) && close(hi, 1.0, 1e-12),
        "{lo} {hi}"
    );
    let (lo, hi) = wilson(81, 263, Z95);
    assert!(
        close(lo, 0.2553, 1e-3) && close(hi, 0.3662, 1e-3),
        "{lo} {hi}"
    );
    assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
}

#[test]
fn percentiles_interpolate() {
    let v = [4.0, 1.0, 3.0, 2.0];
    assert!(close(percentile(&v, 50.0), 2.5, 1e-12));
    assert!(close(percentile(&v, 0.0), 1.0, 1e-12));
    assert!(close(percentile(&v, 100.0), 4.0, 1e-12));
    assert!(close(
        percentile(&(1..=20).map(f64::from).collect::<Vec<_>>(), 95.0),
        19.05,
        1e-9
    ));
    assert!(percentile(&[], 50.0).is_nan());
}

#[test]
fn pareto_keeps_only_improving_points() {
    let f = pareto(&[
        (100.0, 0.5),
        (10.0, 0.2),
        (50.0, 0.1),
        (400.0, 0.7),
        (300.0, 0.7),
        (20.0, 0.2),
    ]);
    assert_eq!(f, vec![(10.0, 0.2), (100.0, 0.5), (300.0, 0.7)]);
}

#[test]
fn iso_accuracy_interpolates_on_the_frontiers() {
    let baseline = [(10.0, 0.2), (100.0, 0.5), (400.0, 0.7)];
    let sleep = [(20.0, 0.5), (40.0, 0.7)];
    // Halfway between 0.5 and 0.7: baseline 250 tokens, sleep-time 30.
    assert!(close(
        cost_to_reach(&pareto(&baseline), 0.6).expect("reachable"),
        250.0,
        1e-9
    ));
    assert!(close(
        cost_to_reach(&pareto(&sleep), 0.6).expect("reachable"),
        30.0,
        1e-9
    ));
    assert_eq!(
        cost_to_reach(&pareto(&sleep), 0.1),
        Some(20.0),
        "below the cheapest point: its cost"
    );
    assert_eq!(
        cost_to_reach(&pareto(&sleep), 0.8),
        None,
        "above the best point: unreachable"
    );
    let iso = iso_accuracy(&baseline, &sleep);
    let max = iso.max.expect("overlap");
    assert!(close(max.ratio, 10.0, 1e-9) && close(max.accuracy, 0.7, 1e-12));
    let common = iso.at_best_common.expect("common");
    assert!(close(common.ratio, 10.0, 1e-9));
    let at_half = iso
        .points
        .iter()
        .find(|p| close(p.accuracy, 0.5, 1e-12))
        .expect("0.5 in the grid");
    assert!(close(at_half.ratio, 5.0, 1e-9));
    // Sleep-time better than anything the baseline reaches: ratios only up to the baseline's best.
    let iso = iso_accuracy(&[(100.0, 0.3)], &[(10.0, 0.6)]);
    assert_eq!((iso.baseline_best, iso.sleep_best), (0.3, 0.6));
    assert!(close(iso.max.expect("overlap").ratio, 10.0, 1e-9));
    assert!(iso_accuracy(&[], &sleep).max.is_none());
}

fn record(
    problem: &str,
    context: &str,
    qi: u32,
    condition: Condition,
    correct: bool,
    tokens: u64,
) -> Record {
    let mut r = Record::new(problem, context, qi, Some("7".into()), &condition, 36.0);
    r.correct = correct;
    r.answer = Some(if correct { 36.0 } else { 1.0 });
    r.usage = Usage {
        prompt_tokens: 100,
        cached_prompt_tokens: 80,
        completion_tokens: tokens,
    };
    r.latency_s = tokens as f64 / 20.0;
    r
}

fn sleep_condition(budget: &str) -> Condition {
    Condition::Sleep {
        sleeper: Sleeper {
            program: ProgramKind::Rethink,
            k: 1,
        },
        layout: Layout::Full,
        budget: budget.parse().expect("budget"),
        cold: false,
    }
}

#[test]
fn amortised_cost_follows_the_formula() {
    // One context, three questions; sleep time spent 300 completion and 200 evaluated
    // prompt tokens; the prefix (50 tokens) was prepared once; each answer takes 10 tokens
    // and evaluates 20 prompt tokens.
    let sleep = SleepRecord {
        program: "rethink@v1".into(),
        k: 1,
        usage: Usage {
            prompt_tokens: 200,
            cached_prompt_tokens: 0,
            completion_tokens: 300,
        },
        seconds: 9.0,
        steps: 2,
        learned_chars: 100,
        quantities: None,
        answer_recall: true,
        open_recall: None,
        dropped_too_long: 0,
        candidates: Vec::new(),
    };
    let records: Vec<Record> = (0..3)
        .map(|i| {
            let mut r = record(
                &format!("a/q{i}"),
                "a",
                i,
                sleep_condition("v0"),
                i != 1,
                10,
            );
            r.sleep = Some(sleep.clone());
            r.prefix_tokens = Some(50);
            r
        })
        .collect();
    let pts = amortised(&records, 10.0, 0.5, &[1, 2, 5]);
    let at = |n: usize| pts.iter().find(|p| p.n == n).expect("point");
    // N = 1: 300/1 + 10·10 = 400, on the first question only (correct).
    assert!(close(at(1).cost, 400.0, 1e-9));
    assert!(close(at(1).accuracy, 1.0, 1e-12));
    // N = 2: 300/2 + 100 = 250; the first two questions (one right).
    assert!(close(at(2).cost, 250.0, 1e-9));
    assert!(close(at(2).accuracy, 0.5, 1e-12));
    // N = 5 with three questions: shared by the three there are.
    assert!(close(at(5).cost, 200.0, 1e-9));
    assert_eq!((at(5).full_contexts, at(5).contexts), (0, 1));
    // Input variant at w = 0.5: (300 + 0.5·(200 + 50))/N + 10·(10 + 0.5·20).
    assert!(close(at(1).cost_with_input, 425.0 + 200.0, 1e-9));
    assert!(close(at(2).cost_with_input, 212.5 + 200.0, 1e-9));
    // A test-time-only condition costs t·T whatever N.
    let base: Vec<Record> = (0..3)
        .map(|i| {
            record(
                &format!("a/q{i}"),
                "a",
                i,
                Condition::Baseline {
                    budget: Budget::level(4),
                    cold: false,
                },
                true,
                200,
            )
        })
        .collect();
    let pts = amortised(&base, 10.0, 0.0, &[1, 5]);
    assert!(pts.iter().all(|p| close(p.cost, 2000.0, 1e-9)));
}

#[test]
fn pass_at_k_and_majority_vote() {
    let budget = Budget::level(0);
    let mut records = Vec::new();
    // Problem p: samples wrong, right, right, wrong -> pass@1 no, pass@2 yes; vote@4 tie -> earliest (wrong 1.0).
    // Problem q: right, wrong(2), wrong(2), right -> pass@1 yes; vote@4: 36 ×2 vs 2 ×2 -> earliest (36).
    for (pid, answers) in [("p", [1.0, 36.0, 36.0, 1.0]), ("q", [36.0, 2.0, 2.0, 36.0])] {
        for (i, a) in answers.iter().enumerate() {
            let mut r = record(
                pid,
                pid,
                0,
                Condition::Sample {
                    budget,
                    index: i as u32,
                },
                *a == 36.0,
                5,
            );
            r.answer = Some(*a);
            records.push(r);
        }
    }
    let (pass, vote) = pass_and_vote(&records, "v0");
    assert_eq!(pass.iter().map(|p| p.k).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(
        pass.iter().map(|p| p.accuracy).collect::<Vec<_>>(),
        vec![0.5, 1.0, 1.0]
    );
    assert_eq!(vote[0].accuracy, 0.5);
    // k = 2: p = [1, 36] tie -> 1 (wrong); q = [36, 2] tie -> 36 (right).
    assert_eq!(vote[1].accuracy, 0.5);
    assert_eq!(vote[2].accuracy, 0.5);
    assert!(close(pass[2].tokens, 20.0, 1e-12));
    assert_eq!(
        majority_answer(&[Some(2.0), None, Some(3.0), Some(3.0)]),
        Some(3.0)
    );
    assert_eq!(majority_answer(&[None]), None);
}

#[test]
fn predictability_quantile_bins() {
    // Ten problems with scores -1..-10 per token; sleep-time right on the five most
    // predictable, baseline right on problems 0 and 9.
    let mut records = Vec::new();
    for i in 0..10u32 {
        let id = format!("p{i}");
        let mut s = Record::new(&id, &id, 0, None, &Condition::Score, 1.0);
        s.logprob_sum = Some(-f64::from(i) * 10.0);
        s.logprob_mean = Some(-f64::from(i));
        records.push(s);
        records.push(record(&id, &id, 0, sleep_condition("v0"), i < 5, 5));
        records.push(record(
            &id,
            &id,
            0,
            Condition::Baseline {
                budget: Budget::level(0),
                cold: false,
            },
            i == 0 || i == 9,
            5,
        ));
    }
    let bins = predictability_bins(&records, "rethink/k1/full/v0", "baseline/v0", true, 5);
    assert_eq!(bins.len(), 5);
    assert!(bins.iter().all(|b| b.n == 2));
    // Least predictable first: scores -9, -8 in bin 0.
    assert_eq!((bins[0].lo, bins[0].hi), (-9.0, -8.0));
    assert_eq!(bins[0].sleep_accuracy, 0.0);
    assert_eq!(bins[0].baseline_accuracy, 0.5);
    assert!(close(bins[0].gap, -0.5, 1e-12));
    assert!(bins[0].gap_lo < -0.5 && bins[0].gap_hi > -0.5);
    assert_eq!(bins[4].sleep_accuracy, 1.0);
    assert!(close(bins[4].gap, 0.5, 1e-12));
    // By summed score the order is the same here.
    let sum = predictability_bins(&records, "rethink/k1/full/v0", "baseline/v0", false, 5);
    assert_eq!(
        sum.iter().map(|b| b.gap).collect::<Vec<_>>(),
        bins.iter().map(|b| b.gap).collect::<Vec<_>>()
    );
    // Uneven counts spread over the bins.
    let few = predictability_bins(&records[..21], "rethink/k1/full/v0", "baseline/v0", true, 5);
    assert_eq!(few.iter().map(|b| b.n).sum::<usize>(), 7);
}

#[test]
fn summaries_report_accuracy_tokens_latency_and_recall() {
    let sleep = SleepRecord {
        program: "aided@v1".into(),
        k: 1,
        usage: Usage {
            prompt_tokens: 10,
            cached_prompt_tokens: 0,
            completion_tokens: 100,
        },
        seconds: 5.0,
        steps: 1,
        learned_chars: 50,
        quantities: Some(4),
        answer_recall: true,
        open_recall: None,
        dropped_too_long: 0,
        candidates: Vec::new(),
    };
    let mut records = Vec::new();
    for i in 0..4 {
        let mut r = record(
            &format!("p{i}"),
            &format!("p{i}"),
            0,
            sleep_condition("v1"),
            i < 3,
            10 * (i + 1),
        );
        r.sleep = Some(SleepRecord {
            answer_recall: i != 3,
            // Recorded for three of the four (an aided-open c'), one of them bindable.
            open_recall: (i > 0).then_some(i == 1),
            ..sleep.clone()
        });
        r.hit_cap = i == 3;
        r.prefix_prefill_s = Some(1.0);
        r.route = Some(if i < 2 { "fast" } else { "fallback" }.into());
        records.push(r);
    }
    records.push(Record::new("p0", "p0", 0, None, &Condition::Score, 1.0));
    let s = summarize(&records);
    assert_eq!(s.len(), 1, "score records are not a condition summary");
    let s = &s[0];
    assert_eq!((s.n, s.correct), (4, 3));
    assert!(close(s.completion_tokens, 25.0, 1e-12));
    assert!(close(s.cap_share, 0.25, 1e-12));
    assert!(close(s.latency_p50, 1.25, 1e-12));
    assert!(
        close(s.cold_latency_p50, 2.25, 1e-12),
        "estimated: latency + prefix prefill"
    );
    assert!(close(s.cached_prompt_tokens, 80.0, 1e-12));
    assert_eq!(s.sleep_tokens_per_context, Some(100.0));
    assert_eq!(s.answer_recall, Some(0.75));
    assert_eq!(s.picks_recalled, Some(1.0));
    assert_eq!(
        s.open_recall,
        Some(1.0 / 3.0),
        "over the records that have it"
    );
    assert_eq!(
        (s.fast_share, s.fast_accuracy, s.fallback_accuracy),
        (Some(0.5), Some(1.0), Some(0.5))
    );
    assert_eq!(s.series, "rethink/k1/full");
}

#[test]
fn head_to_head_pairs_by_question_and_names_the_templates_each_side_wins() {
    let aided = Condition::Sleep {
        sleeper: Sleeper {
            program: ProgramKind::Aided,
            k: 1,
        },
        layout: Layout::Full,
        budget: Budget::level(0),
        cold: false,
    };
    let rethink = sleep_condition("v0");
    // (question, template, aided right, rethink right); q5 only rethink answered.
    let outcomes = [
        ("q1", "1", true, false),
        ("q2", "1", true, false),
        ("q3", "2", false, true),
        ("q4", "3", true, true),
        ("q6", "3", false, false),
    ];
    let mut records = Vec::new();
    for (q, t, a, r) in outcomes {
        for (condition, correct) in [(&aided, a), (&rethink, r)] {
            let mut rec = record(q, q, 0, condition.clone(), correct, 8);
            rec.template_id = Some(t.into());
            records.push(rec);
        }
    }
    records.push(record("q5", "q5", 0, rethink.clone(), true, 8));

    let h = head_to_head(&records, "aided/k1/full/v0", "rethink/k1/full/v0").expect("pairs");
    assert_eq!(h.n, 5, "q5 has no aided answer");
    assert_eq!((h.correct, h.reference_correct), (3, 2));
    assert_eq!((h.wins, h.losses), (2, 1));
    assert!(close(h.tokens, 8.0, 1e-12) && close(h.reference_tokens, 8.0, 1e-12));
    // Differences 1, 1, -1, 0, 0: mean 0.2, sample variance 0.7.
    assert!(close(h.gap, 0.2, 1e-12));
    let half = Z95 * (0.7_f64 / 5.0).sqrt();
    assert!(close(h.gap_lo, 0.2 - half, 1e-12) && close(h.gap_hi, 0.2 + half, 1e-12));
    assert_eq!(h.templates_ahead, ["1"]);
    assert_eq!(h.templates_behind, ["2"]);

    // The other way round the same pairs read as losses.
    let back = head_to_head(&records, "rethink/k1/full/v0", "aided/k1/full/v0").expect("pairs");
    assert_eq!((back.wins, back.losses), (1, 2));
    assert!(close(back.gap, -0.2, 1e-12));
    assert!(head_to_head(&records, "aided/k1/full/v0", "baseline/v0").is_none());
}

/// Raising the routing threshold sends more questions to the fallback, whose answers are the
/// fallback condition's records: the sweep is composed, never imagined.
#[test]
fn route_thresholds_compose_the_fallback_records() {
    let routed = Condition::Sleep {
        sleeper: Sleeper {
            program: ProgramKind::Aided,
            k: 1,
        },
        layout: Layout::Routed,
        budget: "v0".parse().expect("budget"),
        cold: false,
    };
    let fallback = Condition::Baseline {
        budget: "v4".parse().expect("budget"),
        cold: false,
    };
    // (problem, route, confidence, routed answer right, fallback answer right)
    let cases = [
        ("p1", "fast", Some(0.25), false, true),
        ("p2", "fast", Some(0.5), true, false),
        ("p3", "fast", Some(0.9), false, true),
        ("p4", "fallback", Some(0.1), true, true),
        ("p5", "fallback", None, false, false),
    ];
    let mut records = Vec::new();
    for (p, route, confidence, right, fallback_right) in cases {
        let mut r = record(
            p,
            p,
            0,
            routed.clone(),
            right,
            if route == "fast" { 8 } else { 300 },
        );
        r.route = Some(route.into());
        r.route_confidence = confidence;
        records.push(r);
        records.push(record(p, p, 0, fallback.clone(), fallback_right, 300));
    }
    let sweep = route_thresholds(&records, &fallback, 0.2, 0.1);
    // 0.2, 0.3, ..., 1.0, then everything falling back.
    assert_eq!(sweep.len(), 10, "{sweep:?}");
    let at = |t: Option<f64>| {
        sweep
            .iter()
            .find(|p| match (p.threshold, t) {
                (Some(a), Some(b)) => close(a, b, 1e-9),
                (None, None) => true,
                _ => false,
            })
            .unwrap_or_else(|| panic!("threshold {t:?} in {sweep:?}"))
    };
    // The run's own threshold: p2 right on the fast path, p4 right on the fallback.
    let own = at(Some(0.2));
    assert_eq!((own.fallback, own.questions), (2, 5));
    assert!(close(own.accuracy, 2.0 / 5.0, 1e-12));
    assert!(close(own.tokens, (3.0 * 8.0 + 2.0 * 300.0) / 5.0, 1e-9));
    // p1 (0.25) now falls back, where full reasoning gets it right.
    assert_eq!(at(Some(0.3)).fallback, 3);
    assert!(close(at(Some(0.3)).accuracy, 3.0 / 5.0, 1e-12));
    // p2 (0.5) falls back and is lost; p3 (0.9) still takes the fast path.
    assert_eq!(at(Some(0.6)).fallback, 4);
    assert!(close(at(Some(0.6)).accuracy, 2.0 / 5.0, 1e-12));
    // Everything falls back: the fallback condition's accuracy.
    let all = at(None);
    assert_eq!(all.fallback, 5);
    assert!(close(all.accuracy, 3.0 / 5.0, 1e-12));
    assert!(close(all.tokens, 300.0, 1e-9));

    // A routed condition whose fallback records are missing for some problem is left out.
    let partial: Vec<Record> = records
        .iter()
        .filter(|r| !(r.problem_id == "p3" && r.spec == fallback))
        .cloned()
        .collect();
    assert!(route_thresholds(&partial, &fallback, 0.2, 0.1).is_empty());
}
