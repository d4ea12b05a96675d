//! Metrics over a run's records: per-condition summaries, Pareto curves and iso-accuracy
//! ratios, amortised cost per query, pass@k and majority vote, predictability bins, answer
//! recall, per-template accuracy and routing-threshold sweeps.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sleeptime_core::parse::numbers_match;

use crate::record::Record;
use crate::spec::{Condition, Layout};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `successes` out of `n` (`(0, 1)` when `n` is 0).
pub fn wilson(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The `p`-th percentile (0–100) with linear interpolation between order statistics
/// (numpy's default); `NaN` for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// Everything reported about one condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionSummary {
    pub condition: String,
    pub series: String,
    pub spec: Condition,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub ci: (f64, f64),
    /// Mean test-time completion tokens per question (the paper's x-axis).
    pub completion_tokens: f64,
    pub prompt_tokens: f64,
    pub cached_prompt_tokens: f64,
    /// Latency p50/p95 in seconds, with the prefix KV state where one was prepared.
    pub latency_p50: f64,
    pub latency_p95: f64,
    pub latency_mean: f64,
    /// Latency without the cached prefix: measured for cold conditions, else the measured
    /// latency plus the prefix's prefill.
    pub cold_latency_p50: f64,
    pub cold_latency_p95: f64,
    pub ttft_p50: f64,
    /// Share of answers cut off by the token cap, and of forced answers.
    pub cap_share: f64,
    pub forced_share: f64,
    pub errors: usize,
    /// Sleep-time completion and prompt tokens, and seconds, per context.
    pub sleep_tokens_per_context: Option<f64>,
    pub sleep_prompt_tokens_per_context: Option<f64>,
    pub sleep_seconds_per_context: Option<f64>,
    /// Share of questions whose gold answer is among the values of `c'`.
    pub answer_recall: Option<f64>,
    /// Of those, the share answered correctly (the answer picked the recalled value).
    pub picks_recalled: Option<f64>,
    /// Share of answers that are a number written in `c'` (anchoring).
    pub answer_in_learned: Option<f64>,
    /// aided-open: share of questions an open question answers when its input is bound to
    /// one of the question's numbers.
    pub open_recall: Option<f64>,
    /// Routed conditions: share of fast-path answers, and accuracy by path.
    pub fast_share: Option<f64>,
    pub fast_accuracy: Option<f64>,
    pub fallback_accuracy: Option<f64>,
}

fn share(records: &[&Record], f: impl Fn(&Record) -> Option<bool>) -> Option<f64> {
    let values: Vec<bool> = records.iter().filter_map(|r| f(r)).collect();
    (!values.is_empty()).then(|| values.iter().filter(|&&b| b).count() as f64 / values.len() as f64)
}

/// Summarise the records of one condition.
pub fn summarize_condition(records: &[&Record]) -> Option<ConditionSummary> {
    let first = records.first()?;
    let n = records.len();
    let correct = records.iter().filter(|r| r.correct).count();
    let latencies: Vec<f64> = records.iter().map(|r| r.latency_s).collect();
    let cold: Vec<f64> = records
        .iter()
        .map(|r| {
            if r.spec.is_cold() {
                r.latency_s
            } else {
                r.cold_latency_estimate()
            }
        })
        .collect();
    let ttft: Vec<f64> = records.iter().map(|r| r.ttft_s).collect();
    let mut per_context: BTreeMap<&str, &Record> = BTreeMap::new();
    for r in records.iter().filter(|r| r.sleep.is_some()) {
        per_context.entry(r.context_id.as_str()).or_insert(r);
    }
    let sleep_mean = |f: &dyn Fn(&Record) -> f64| {
        (!per_context.is_empty()).then(|| mean(per_context.values().map(|r| f(r))))
    };
    let recall = share(records, |r| r.sleep.as_ref().map(|s| s.answer_recall));
    let recalled: Vec<&&Record> = records
        .iter()
        .filter(|r| r.sleep.as_ref().is_some_and(|s| s.answer_recall))
        .collect();
    let routed: Vec<&&Record> = records.iter().filter(|r| r.route.is_some()).collect();
    let acc_of = |rs: Vec<&&&Record>| {
        (!rs.is_empty()).then(|| rs.iter().filter(|r| r.correct).count() as f64 / rs.len() as f64)
    };
    Some(ConditionSummary {
        condition: first.condition.clone(),
        series: first.spec.series(),
        spec: first.spec.clone(),
        n,
        correct,
        accuracy: correct as f64 / n as f64,
        ci: wilson(correct, n, Z95),
        completion_tokens: mean(records.iter().map(|r| r.usage.completion_tokens as f64)),
        prompt_tokens: mean(records.iter().map(|r| r.usage.prompt_tokens as f64)),
        cached_prompt_tokens: mean(records.iter().map(|r| r.usage.cached_prompt_tokens as f64)),
        latency_p50: percentile(&latencies, 50.0),
        latency_p95: percentile(&latencies, 95.0),
        latency_mean: mean(latencies.iter().copied()),
        cold_latency_p50: percentile(&cold, 50.0),
        cold_latency_p95: percentile(&cold, 95.0),
        ttft_p50: percentile(&ttft, 50.0),
        cap_share: records.iter().filter(|r| r.hit_cap).count() as f64 / n as f64,
        forced_share: records.iter().filter(|r| r.forced).count() as f64 / n as f64,
        errors: records.iter().filter(|r| r.error.is_some()).count(),
        sleep_tokens_per_context: sleep_mean(&|r| {
            r.sleep
                .as_ref()
                .map_or(0.0, |s| s.usage.completion_tokens as f64)
        }),
        sleep_prompt_tokens_per_context: sleep_mean(&|r| {
            r.sleep
                .as_ref()
                .map_or(0.0, |s| s.usage.prompt_tokens as f64)
        }),
        sleep_seconds_per_context: sleep_mean(&|r| r.sleep.as_ref().map_or(0.0, |s| s.seconds)),
        answer_recall: recall,
        picks_recalled: (!recalled.is_empty())
            .then(|| recalled.iter().filter(|r| r.correct).count() as f64 / recalled.len() as f64),
        answer_in_learned: share(records, |r| r.answer_in_learned),
        open_recall: share(records, |r| r.sleep.as_ref().and_then(|s| s.open_recall)),
        fast_share: (!routed.is_empty()).then(|| {
            routed
                .iter()
                .filter(|r| r.route.as_deref() == Some("fast"))
                .count() as f64
                / routed.len() as f64
        }),
        fast_accuracy: acc_of(
            routed
                .iter()
                .filter(|r| r.route.as_deref() == Some("fast"))
                .collect(),
        ),
        fallback_accuracy: acc_of(
            routed
                .iter()
                .filter(|r| r.route.as_deref() == Some("fallback"))
                .collect(),
        ),
    })
}

/// Summaries of every answering condition, in condition order.
pub fn summarize(records: &[Record]) -> Vec<ConditionSummary> {
    let mut by: BTreeMap<(Condition, String), Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.spec.answers()) {
        by.entry((r.spec.clone(), r.condition.clone()))
            .or_default()
            .push(r);
    }
    by.values()
        .filter_map(|rs| summarize_condition(rs))
        .collect()
}

/// One point of a curve: cost (tokens, seconds, ...) and accuracy with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub accuracy: f64,
    pub lo: f64,
    pub hi: f64,
    pub label: String,
}

/// What to put on a curve's x-axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    CompletionTokens,
    LatencyP50,
    ColdLatencyP50,
}

impl Axis {
    fn of(self, s: &ConditionSummary) -> f64 {
        match self {
            Axis::CompletionTokens => s.completion_tokens,
            Axis::LatencyP50 => s.latency_p50,
            Axis::ColdLatencyP50 => s.cold_latency_p50,
        }
    }
}

/// The points of `series`, sorted by x.
pub fn series_points(summaries: &[ConditionSummary], series: &str, axis: Axis) -> Vec<Point> {
    let mut points: Vec<Point> = summaries
        .iter()
        .filter(|s| s.series == series)
        .map(|s| Point {
            x: axis.of(s),
            accuracy: s.accuracy,
            lo: s.ci.0,
            hi: s.ci.1,
            label: s
                .spec
                .budget()
                .map_or_else(|| s.condition.clone(), |b| b.label()),
        })
        .filter(|p| p.x.is_finite())
        .collect();
    points.sort_by(|a, b| a.x.total_cmp(&b.x).then(b.accuracy.total_cmp(&a.accuracy)));
    points
}

/// Series names in first-seen order.
pub fn series_names(summaries: &[ConditionSummary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in summaries {
        if !out.contains(&s.series) {
            out.push(s.series.clone());
        }
    }
    out
}

/// The Pareto frontier of `(x, accuracy)` points: sorted by x, each strictly more accurate
/// than every cheaper one.
pub fn pareto(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|last| p.1 > last.1) {
            out.push(p);
        }
    }
    out
}

/// Cost needed to reach `accuracy` on a frontier, by linear interpolation between its
/// points. Below the cheapest point it is that point's cost (nothing cheaper was measured);
/// above the best point it is unreachable (`None`).
pub fn cost_to_reach(frontier: &[(f64, f64)], accuracy: f64) -> Option<f64> {
    let first = frontier.first()?;
    if accuracy <= first.1 {
        return Some(first.0);
    }
    frontier.windows(2).find(|w| accuracy <= w[1].1).map(|w| {
        let (x0, a0) = w[0];
        let (x1, a1) = w[1];
        x0 + (accuracy - a0) / (a1 - a0) * (x1 - x0)
    })
}

/// Cost ratio at one accuracy: what the baseline needs over what sleep-time needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IsoRatio {
    pub accuracy: f64,
    pub baseline: f64,
    pub sleep: f64,
    pub ratio: f64,
}

/// Iso-accuracy comparison of two curves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsoSummary {
    /// Ratios at every frontier accuracy both curves reach.
    pub points: Vec<IsoRatio>,
    /// The largest ratio (the paper's "up to N× fewer tokens at equal accuracy").
    pub max: Option<IsoRatio>,
    /// The ratio at the highest accuracy both curves reach.
    pub at_best_common: Option<IsoRatio>,
    /// Best accuracy of each curve; sleep-time above the baseline's best means the baseline
    /// never reaches it at any measured cost.
    pub baseline_best: f64,
    pub sleep_best: f64,
}

/// Compare `baseline` and `sleep` points (`(cost, accuracy)`) at equal accuracy.
pub fn iso_accuracy(baseline: &[(f64, f64)], sleep: &[(f64, f64)]) -> IsoSummary {
    let fb = pareto(baseline);
    let fs = pareto(sleep);
    let baseline_best = fb.last().map_or(0.0, |p| p.1);
    let sleep_best = fs.last().map_or(0.0, |p| p.1);
    let top = baseline_best.min(sleep_best);
    let mut grid: Vec<f64> = fb
        .iter()
        .chain(fs.iter())
        .map(|p| p.1)
        .filter(|&a| a > 0.0 && a <= top)
        .collect();
    grid.push(top);
    grid.sort_by(f64::total_cmp);
    grid.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let points: Vec<IsoRatio> = grid
        .into_iter()
        .filter(|&a| a > 0.0)
        .filter_map(|a| {
            let b = cost_to_reach(&fb, a)?;
            let s = cost_to_reach(&fs, a)?;
            (s > 0.0).then_some(IsoRatio {
                accuracy: a,
                baseline: b,
                sleep: s,
                ratio: b / s,
            })
        })
        .collect();
    let max = points
        .iter()
        .copied()
        .max_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let at_best_common = points
        .iter()
        .copied()
        .rfind(|p| (p.accuracy - top).abs() < 1e-12);
    IsoSummary {
        points,
        max,
        at_best_common,
        baseline_best,
        sleep_best,
    }
}

/// One point of the amortisation curves (paper Fig. 9).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmortPoint {
    pub condition: String,
    pub series: String,
    /// Queries per context.
    pub n: usize,
    /// Contexts that have at least `n` questions.
    pub full_contexts: usize,
    pub contexts: usize,
    /// `S/N + t·T` in sleep-time completion-token units.
    pub cost: f64,
    /// The same with input tokens: `(S + w·S_in)/N + t·(T + w·T_in)`.
    pub cost_with_input: f64,
    pub accuracy: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Amortised cost per query for `ns` queries per context (paper §4): a context's sleep-time
/// tokens `S` are shared by its first `N` questions (all of them when it has fewer); a
/// test-time token costs `t` sleep-time tokens; in the input variant an input token costs
/// `input_weight` of an output token of its phase, and the prefix prefill counts as
/// sleep-time input. Accuracy is over the same first-N questions.
pub fn amortised(records: &[Record], t: f64, input_weight: f64, ns: &[usize]) -> Vec<AmortPoint> {
    let mut by: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| {
        r.spec.answers() && !r.spec.is_cold() && !matches!(r.spec, Condition::Sample { .. })
    }) {
        by.entry(r.condition.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (condition, rs) in by {
        let mut contexts: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in &rs {
            contexts.entry(r.context_id.as_str()).or_default().push(r);
        }
        for qs in contexts.values_mut() {
            qs.sort_by_key(|r| r.question_index);
        }
        for &n in ns {
            let mut costs = Vec::new();
            let mut costs_in = Vec::new();
            let mut correct = 0;
            let mut total = 0;
            let mut full = 0;
            for qs in contexts.values() {
                let take = &qs[..n.min(qs.len())];
                if qs.len() >= n {
                    full += 1;
                }
                let k = take.len() as f64;
                let s_out = take[0]
                    .sleep
                    .as_ref()
                    .map_or(0.0, |s| s.usage.completion_tokens as f64);
                let s_in = take[0]
                    .sleep
                    .as_ref()
                    .map_or(0.0, |s| s.usage.evaluated_prompt_tokens() as f64)
                    + f64::from(take[0].prefix_tokens.unwrap_or(0));
                for r in take {
                    let t_out = r.usage.completion_tokens as f64;
                    let t_in = r.usage.evaluated_prompt_tokens() as f64;
                    costs.push(s_out / k + t * t_out);
                    costs_in.push(
                        (s_out + input_weight * s_in) / k + t * (t_out + input_weight * t_in),
                    );
                    correct += usize::from(r.correct);
                    total += 1;
                }
            }
            let ci = wilson(correct, total, Z95);
            out.push(AmortPoint {
                condition: condition.clone(),
                series: rs[0].spec.series(),
                n,
                full_contexts: full,
                contexts: contexts.len(),
                cost: mean(costs),
                cost_with_input: mean(costs_in),
                accuracy: if total == 0 {
                    0.0
                } else {
                    correct as f64 / total as f64
                },
                lo: ci.0,
                hi: ci.1,
            });
        }
    }
    out
}

/// A pass@k or majority-vote point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KPoint {
    pub k: usize,
    /// Mean test-time completion tokens of the k samples together, per question.
    pub tokens: f64,
    pub accuracy: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

/// The most common answer (numbers compared with tolerance; ties go to the earliest).
pub fn majority_answer(answers: &[Option<f64>]) -> Option<f64> {
    let mut tally: Vec<(f64, usize)> = Vec::new();
    for a in answers.iter().flatten() {
        match tally.iter_mut().find(|(x, _)| numbers_match(*x, *a)) {
            Some(t) => t.1 += 1,
            None => tally.push((*a, 1)),
        }
    }
    let mut best: Option<(f64, usize)> = None;
    for t in tally {
        if best.is_none_or(|b| t.1 > b.1) {
            best = Some(t);
        }
    }
    best.map(|b| b.0)
}

/// pass@k (an oracle picks any correct sample) and majority vote over the first k samples
/// of the `Sample` records at `budget_label`, for k = 1, 2, 4, ... and the number of samples.
pub fn pass_and_vote(records: &[Record], budget_label: &str) -> (Vec<KPoint>, Vec<KPoint>) {
    let mut by: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Condition::Sample { budget, .. } = &r.spec {
            if budget.label() == budget_label {
                by.entry(r.problem_id.as_str()).or_default().push(r);
            }
        }
    }
    let index = |r: &Record| {
        if let Condition::Sample { index, .. } = r.spec {
            index
        } else {
            0
        }
    };
    for rs in by.values_mut() {
        rs.sort_by_key(|r| index(r));
    }
    let most = by.values().map(Vec::len).min().unwrap_or(0);
    let mut ks: Vec<usize> = std::iter::successors(Some(1usize), |k| Some(k * 2))
        .take_while(|&k| k <= most)
        .collect();
    if most > 0 && ks.last() != Some(&most) {
        ks.push(most);
    }
    let mut pass = Vec::new();
    let mut vote = Vec::new();
    for k in ks {
        let n = by.len();
        let mut p_ok = 0;
        let mut v_ok = 0;
        let mut tokens = Vec::new();
        for rs in by.values() {
            let first = &rs[..k];
            p_ok += usize::from(first.iter().any(|r| r.correct));
            let answers: Vec<Option<f64>> = first.iter().map(|r| r.answer).collect();
            v_ok += usize::from(
                majority_answer(&answers).is_some_and(|a| numbers_match(a, rs[0].gold)),
            );
            tokens.push(
                first
                    .iter()
                    .map(|r| r.usage.completion_tokens as f64)
                    .sum::<f64>(),
            );
        }
        let t = mean(tokens);
        let (lo, hi) = wilson(p_ok, n, Z95);
        pass.push(KPoint {
            k,
            tokens: t,
            accuracy: p_ok as f64 / n as f64,
            lo,
            hi,
            n,
        });
        let (lo, hi) = wilson(v_ok, n, Z95);
        vote.push(KPoint {
            k,
            tokens: t,
            accuracy: v_ok as f64 / n as f64,
            lo,
            hi,
            n,
        });
    }
    (pass, vote)
}

/// One predictability bin (paper Fig. 10).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub index: usize,
    /// Score range of the bin.
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    pub sleep_accuracy: f64,
    pub baseline_accuracy: f64,
    /// Sleep-time minus baseline, with a 95% interval of the paired difference.
    pub gap: f64,
    pub gap_lo: f64,
    pub gap_hi: f64,
}

/// log P(q | c) per problem from `Score` records: `(sum, mean)`.
pub fn scores(records: &[Record]) -> HashMap<String, (f64, f64)> {
    records
        .iter()
        .filter(|r| matches!(r.spec, Condition::Score) && r.error.is_none())
        .filter_map(|r| Some((r.problem_id.clone(), (r.logprob_sum?, r.logprob_mean?))))
        .collect()
}

/// Split the problems scored and answered by both conditions into `bins` quantile bins of
/// predictability (by the per-token mean log-probability, or the sum), least predictable
/// first, and compare the two conditions' accuracy in each.
pub fn predictability_bins(
    records: &[Record],
    sleep: &str,
    baseline: &str,
    use_mean: bool,
    bins: usize,
) -> Vec<Bin> {
    let scores = scores(records);
    let outcome = |cond: &str| -> HashMap<&str, bool> {
        records
            .iter()
            .filter(|r| r.condition == cond)
            .map(|r| (r.problem_id.as_str(), r.correct))
            .collect()
    };
    let s = outcome(sleep);
    let b = outcome(baseline);
    let mut rows: Vec<(f64, bool, bool)> = scores
        .iter()
        .filter_map(|(id, (sum, mean))| {
            let score = if use_mean { *mean } else { *sum };
            Some((score, *s.get(id.as_str())?, *b.get(id.as_str())?))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = rows.len();
    if n == 0 || bins == 0 {
        return Vec::new();
    }
    (0..bins)
        .filter_map(|i| {
            let start = i * n / bins;
            let end = (i + 1) * n / bins;
            let chunk = &rows[start..end];
            if chunk.is_empty() {
                return None;
            }
            let m = chunk.len() as f64;
            let sa = chunk.iter().filter(|r| r.1).count() as f64 / m;
            let ba = chunk.iter().filter(|r| r.2).count() as f64 / m;
            let (d, half) = paired_difference(chunk.iter().map(|r| (r.1, r.2)));
            Some(Bin {
                index: i,
                lo: chunk[0].0,
                hi: chunk[chunk.len() - 1].0,
                n: chunk.len(),
                sleep_accuracy: sa,
                baseline_accuracy: ba,
                gap: d,
                gap_lo: d - half,
                gap_hi: d + half,
            })
        })
        .collect()
}

/// Accuracy per template for each of `conditions`: `template -> [(correct, n)]`.
pub fn by_template(
    records: &[Record],
    conditions: &[String],
) -> BTreeMap<String, Vec<(usize, usize)>> {
    let mut out: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for r in records {
        let Some(i) = conditions.iter().position(|c| *c == r.condition) else {
            continue;
        };
        let t = r.template_id.clone().unwrap_or_else(|| "-".into());
        let row = out
            .entry(t)
            .or_insert_with(|| vec![(0, 0); conditions.len()]);
        row[i].0 += usize::from(r.correct);
        row[i].1 += 1;
    }
    out
}

/// Mean difference of paired correctness (first minus second) and the half-width of its 95%
/// normal interval (0 for fewer than two pairs); `(NaN, NaN)` for none.
fn paired_difference(pairs: impl Iterator<Item = (bool, bool)>) -> (f64, f64) {
    let diffs: Vec<f64> = pairs
        .map(|(a, b)| f64::from(u8::from(a)) - f64::from(u8::from(b)))
        .collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let var = if diffs.len() > 1 {
        diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, Z95 * (var / n).sqrt())
}

/// One condition against a reference condition over the questions both answered: issue 5's
/// "where each program wins or loses" against the paper's program.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadToHead {
    pub condition: String,
    pub reference: String,
    /// Questions both conditions answered.
    pub n: usize,
    pub correct: usize,
    pub reference_correct: usize,
    /// Mean test-time completion tokens per question on each side: a gain bought with a
    /// fallback to full reasoning shows here.
    pub tokens: f64,
    pub reference_tokens: f64,
    /// Questions only `condition` got right / only `reference` got right.
    pub wins: usize,
    pub losses: usize,
    /// Mean paired difference of correctness (a fraction) and its 95% normal interval.
    pub gap: f64,
    pub gap_lo: f64,
    pub gap_hi: f64,
    /// Templates where `condition` got more / fewer of the shared questions right.
    pub templates_ahead: Vec<String>,
    pub templates_behind: Vec<String>,
}

/// `condition` against `reference`, paired by question; `None` when they share none.
pub fn head_to_head(records: &[Record], condition: &str, reference: &str) -> Option<HeadToHead> {
    let answers = |c: &str| -> BTreeMap<&str, &Record> {
        records
            .iter()
            .filter(|r| r.condition == c)
            .map(|r| (r.problem_id.as_str(), r))
            .collect()
    };
    let (mine, theirs) = (answers(condition), answers(reference));
    let pairs: Vec<(&Record, &Record)> = mine
        .iter()
        .filter_map(|(id, a)| theirs.get(id).map(|b| (*a, *b)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len();
    let (gap, half) = paired_difference(pairs.iter().map(|(a, b)| (a.correct, b.correct)));
    let mut per_template: BTreeMap<String, i64> = BTreeMap::new();
    for (a, b) in &pairs {
        if let Some(t) = &a.template_id {
            *per_template.entry(t.clone()).or_default() +=
                i64::from(u8::from(a.correct)) - i64::from(u8::from(b.correct));
        }
    }
    let templates = |keep: fn(i64) -> bool| -> Vec<String> {
        per_template
            .iter()
            .filter(|(_, d)| keep(**d))
            .map(|(t, _)| t.clone())
            .collect()
    };
    Some(HeadToHead {
        condition: condition.to_owned(),
        reference: reference.to_owned(),
        n,
        correct: pairs.iter().filter(|(a, _)| a.correct).count(),
        reference_correct: pairs.iter().filter(|(_, b)| b.correct).count(),
        tokens: pairs
            .iter()
            .map(|(a, _)| a.usage.completion_tokens as f64)
            .sum::<f64>()
            / n as f64,
        reference_tokens: pairs
            .iter()
            .map(|(_, b)| b.usage.completion_tokens as f64)
            .sum::<f64>()
            / n as f64,
        wins: pairs
            .iter()
            .filter(|(a, b)| a.correct && !b.correct)
            .count(),
        losses: pairs
            .iter()
            .filter(|(a, b)| !a.correct && b.correct)
            .count(),
        gap,
        gap_lo: gap - half,
        gap_hi: gap + half,
        templates_ahead: templates(|d| d > 0),
        templates_behind: templates(|d| d < 0),
    })
}

/// One row of a routing-threshold sweep: the routed condition read as if its fast path
/// required at least `threshold` retrieval confidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdPoint {
    pub condition: String,
    /// `None`: every question falls back (the fallback condition itself).
    pub threshold: Option<f64>,
    /// Questions that fall back, of `questions`.
    pub fallback: usize,
    pub questions: usize,
    pub accuracy: f64,
    pub lo: f64,
    pub hi: f64,
    /// Mean test-time completion tokens.
    pub tokens: f64,
}

/// What raising a routed condition's confidence threshold would give, composed from the run's
/// own records: a question whose recorded fast answer rests on less than the threshold takes
/// `fallback`'s record for the same problem — the same request the routed fallback makes, so
/// no model call is imagined. Only thresholds from `from` (the run's own) upward are exact:
/// a lower one would need fast answers the run never asked for. A condition lacking the
/// fallback's record for any of its problems is left out.
pub fn route_thresholds(
    records: &[Record],
    fallback: &Condition,
    from: f64,
    step: f64,
) -> Vec<ThresholdPoint> {
    let fallback_id = fallback.id();
    let fallbacks: BTreeMap<&str, &Record> = records
        .iter()
        .filter(|r| r.condition == fallback_id && r.spec == *fallback)
        .map(|r| (r.problem_id.as_str(), r))
        .collect();
    let mut routed: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| {
        matches!(
            r.spec,
            Condition::Sleep {
                layout: Layout::Routed,
                cold: false,
                ..
            }
        )
    }) {
        routed.entry(r.condition.as_str()).or_default().push(r);
    }
    // Steps counted from `from` rather than summed, so that 0.2 + 0.1 stays 0.3.
    let mut thresholds: Vec<Option<f64>> = (0..)
        .map(|i| from + f64::from(i) * step)
        .take_while(|t| step > 0.0 && *t <= 1.0 + 1e-9)
        .map(Some)
        .collect();
    thresholds.push(None);
    let mut out = Vec::new();
    for (condition, rs) in routed {
        let Some(pairs) = rs
            .iter()
            .map(|r| fallbacks.get(r.problem_id.as_str()).map(|f| (*r, *f)))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        for &threshold in &thresholds {
            let (mut correct, mut tokens, mut fell) = (0, 0.0, 0);
            for (r, f) in &pairs {
                let fast = r.route.as_deref() == Some("fast")
                    && threshold.is_some_and(|t| r.route_confidence.is_some_and(|c| c >= t - 1e-9));
                let used = if fast { *r } else { *f };
                fell += usize::from(!fast);
                correct += usize::from(used.correct);
                tokens += used.usage.completion_tokens as f64;
            }
            let n = pairs.len();
            let ci = wilson(correct, n, Z95);
            out.push(ThresholdPoint {
                condition: condition.to_owned(),
                threshold,
                fallback: fell,
                questions: n,
                accuracy: correct as f64 / n as f64,
                lo: ci.0,
                hi: ci.1,
                tokens: tokens / n as f64,
            });
        }
    }
    out
}
