//! `report.md`, `summary.json` and the figures of a run folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::metrics::{self, Axis, ConditionSummary, IsoSummary};
use crate::plots::{self, BarChart, LineChart, Series};
use crate::record::{self, Manifest, Record};
use crate::spec::{Condition, Layout, ProgramKind};
use crate::{BenchError, BenchErrorKind};

/// Report settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Cost of a test-time token in sleep-time tokens (the paper: 10).
    pub t: f64,
    /// Cost of an input token relative to an output token of the same phase.
    pub input_weight: f64,
    /// Queries per context for the amortisation analysis.
    pub ns: Vec<usize>,
    /// Write PNG/SVG figures.
    pub plots: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            t: 10.0,
            input_weight: 0.25,
            ns: vec![1, 2, 5, 10],
            plots: true,
        }
    }
}

/// The paper's headline numbers and ours to beat.
pub const TARGET_ISO_PAPER: f64 = 5.0;
pub const TARGET_ISO_AIM: f64 = 8.0;
pub const TARGET_AMORT_PAPER: f64 = 2.5;
pub const TARGET_AMORT_AIM: f64 = 4.0;
pub const TARGET_AIDED_POINTS: f64 = 0.15;
/// A ratio target read at an accuracy resting on fewer correct answers than this compares
/// failures (P1, P2 and AIME at a small model's floor), so it is reported but not judged.
pub const MIN_CORRECT_FOR_RATIO: usize = 5;
/// The points target is judged on at least this many questions: one answer then moves the
/// difference by at most 5 points, a third of the +15 asked for (on 3 questions it moves 33).
pub const MIN_QUESTIONS_FOR_POINTS: usize = 20;

/// The correct answers an accuracy level rests on, out of `questions`.
fn correct_at(accuracy: f64, questions: usize) -> usize {
    // Accuracy levels are counts over the same questions (interpolated ones fall between).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let correct = (accuracy * questions as f64 + 1e-9).floor() as usize;
    correct
}

/// Why a ratio read at `accuracy` is not a result, if it is not.
fn too_few_correct(accuracy: f64, questions: usize) -> Option<String> {
    let correct = correct_at(accuracy, questions);
    (correct < MIN_CORRECT_FOR_RATIO).then(|| {
        format!(
            "not judged: read at {} accuracy, {correct} correct answer(s) of {questions}; a ratio needs at least {MIN_CORRECT_FOR_RATIO}",
            pct(accuracy)
        )
    })
}

/// One target and whether it was met.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
    pub detail: String,
}

/// Iso-accuracy of one sleep-time series against a test-time-only reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsoRow {
    pub series: String,
    pub reference: String,
    pub tokens: IsoSummary,
    /// Median latencies, both sides with their prefix KV state prepared.
    pub latency: IsoSummary,
    /// Sleep-time with its prepared prefix against the reference without one (the paper's
    /// baseline reads c for the first time when q arrives).
    pub latency_vs_cold: IsoSummary,
}

/// Machine-readable results (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub conditions: Vec<ConditionSummary>,
    pub iso: Vec<IsoRow>,
    pub amortised: Vec<metrics::AmortPoint>,
    pub amortised_measured: bool,
    /// A Multi-Query run where only some contexts reached N queries: the amortisation on
    /// those contexts, where the targets are read.
    pub amortised_subset: Option<AmortSubset>,
    /// Each routed condition read at higher retrieval-confidence thresholds than the run's,
    /// composed from its records and the fallback's (see [`metrics::route_thresholds`]).
    pub route_thresholds: Vec<metrics::ThresholdPoint>,
    pub pass_at_k: Vec<metrics::KPoint>,
    pub majority_vote: Vec<metrics::KPoint>,
    pub predictability: BTreeMap<String, Vec<metrics::Bin>>,
    pub targets: Vec<Target>,
    /// Every other program's conditions against the paper's program (rethink, `c' + c + q`)
    /// at the same budget, paired by question.
    pub head_to_head: Vec<metrics::HeadToHead>,
    /// Problems left out because an interrupted invocation answered only some of their
    /// conditions (see [`partial_problems`]).
    pub partial_problems: Vec<PartialProblem>,
}

/// A problem that holds records for some of the conditions the run asks of it, not all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartialProblem {
    pub problem_id: String,
    /// Conditions answered / asked of this problem.
    pub answered: usize,
    pub expected: usize,
}

/// What a report wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub summary: PathBuf,
    pub figures: Vec<PathBuf>,
}

/// Human name of a series.
pub fn display_series(series: &str) -> String {
    if series == "baseline" {
        return "test-time only (c + q)".into();
    }
    if series == "baseline/cold" {
        return "test-time only, no KV cache".into();
    }
    if series == "pal" {
        return "program-aided, test-time only".into();
    }
    if series == "formula" {
        return "one evaluated formula, test-time only".into();
    }
    let parts: Vec<&str> = series.split('/').collect();
    match parts.as_slice() {
        [program, k, "pal"] => format!("{program} {k}: program-aided with c'"),
        [program, k, "formula"] => {
            format!(
                "{program} k={}: one evaluated formula over c'",
                k.trim_start_matches('k')
            )
        }
        [program, k, layout, rest @ ..] => {
            let layout = layout
                .parse::<Layout>()
                .map_or_else(|_| (*layout).to_owned(), |l| l.describe().to_owned());
            let k = k.trim_start_matches('k');
            format!(
                "{program} k={k}: {layout}{}",
                if rest.contains(&"cold") {
                    ", no KV cache"
                } else {
                    ""
                }
            )
        }
        _ => series.to_owned(),
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "–".into()
    }
}

fn num(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "–".into()
    }
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "–".into(), f)
}

fn ratio(x: Option<metrics::IsoRatio>) -> String {
    x.map_or_else(
        || "–".into(),
        |r| format!("{:.2}× (at {})", r.ratio, pct(r.accuracy)),
    )
}

/// The sleep-time series of a run that answer questions (not cold, not context-only).
fn sleep_series(summaries: &[ConditionSummary]) -> Vec<String> {
    metrics::series_names(summaries)
        .into_iter()
        .filter(|s| {
            summaries.iter().any(|c| {
                c.series == *s
                    && (matches!(&c.spec, Condition::Sleep { layout, cold: false, .. } if *layout != Layout::ContextOnly)
                        || matches!(&c.spec, Condition::Formula { sleeper: Some(_), .. }))
            })
        })
        .collect()
}

fn xy(points: &[metrics::Point]) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p.x, p.accuracy)).collect()
}

fn to_series(name: &str, points: &[metrics::Point]) -> Series {
    Series::new(
        name,
        points
            .iter()
            .map(|p| (p.x, p.accuracy, p.lo, p.hi, p.label.clone()))
            .collect(),
    )
}

/// Write the report of the run in `run_dir`.
pub fn write_report(run_dir: &Path, options: &ReportOptions) -> crate::Result<ReportFiles> {
    let manifest = record::read_manifest(run_dir)?;
    let records = record::read_records(run_dir)?;
    if records.is_empty() {
        return Err(BenchError::new(
            BenchErrorKind::NoResults,
            format!("{} has no results yet", run_dir.display()),
        ));
    }
    let (md, summary, figures) = build(run_dir, &manifest, &records, options)?;
    let markdown = run_dir.join("report.md");
    record::write_atomic(&markdown, md.as_bytes())?;
    let summary_path = run_dir.join("summary.json");
    record::write_json(&summary_path, &summary)?;
    Ok(ReportFiles {
        markdown,
        summary: summary_path,
        figures,
    })
}

#[allow(clippy::too_many_lines)]
fn build(
    run_dir: &Path,
    manifest: &Manifest,
    records: &[Record],
    options: &ReportOptions,
) -> crate::Result<(String, Summary, Vec<PathBuf>)> {
    let spec = &manifest.spec;
    let partial = partial_problems(manifest, records);
    let kept: Vec<Record>;
    let records = if partial.is_empty() {
        records
    } else {
        kept = records
            .iter()
            .filter(|r| !partial.iter().any(|p| p.problem_id == r.problem_id))
            .cloned()
            .collect();
        if kept.is_empty() {
            return Err(BenchError::new(
                BenchErrorKind::NoResults,
                format!(
                    "{} has no problem with every condition answered yet ({} partial)",
                    run_dir.display(),
                    partial.len()
                ),
            ));
        }
        &kept[..]
    };
    let summaries = metrics::summarize(records);
    let lowest = spec.lowest_budget().map(|b| b.label()).unwrap_or_default();
    let sleepers = sleep_series(&summaries);
    let baseline_tokens = metrics::series_points(&summaries, "baseline", Axis::CompletionTokens);
    let baseline_latency = metrics::series_points(&summaries, "baseline", Axis::LatencyP50);
    let baseline_cold = metrics::series_points(&summaries, "baseline", Axis::ColdLatencyP50);
    let mut best_tt_tokens = xy(&baseline_tokens);
    let mut best_tt_latency = xy(&baseline_latency);
    let mut best_tt_cold = xy(&baseline_cold);
    // The tool-using test-time baselines: a whole program, and one formula per budget.
    let tool_baselines: Vec<&ConditionSummary> = summaries
        .iter()
        .filter(|s| s.series == "pal" || s.series == "formula")
        .collect();
    for p in &tool_baselines {
        best_tt_tokens.push((p.completion_tokens, p.accuracy));
        best_tt_latency.push((p.latency_p50, p.accuracy));
        best_tt_cold.push((p.cold_latency_p50, p.accuracy));
    }

    // Iso-accuracy of every sleep series against both test-time-only references.
    let mut iso = Vec::new();
    for s in &sleepers {
        let t = xy(&metrics::series_points(
            &summaries,
            s,
            Axis::CompletionTokens,
        ));
        let l = xy(&metrics::series_points(&summaries, s, Axis::LatencyP50));
        iso.push(IsoRow {
            series: s.clone(),
            reference: "baseline".into(),
            tokens: metrics::iso_accuracy(&xy(&baseline_tokens), &t),
            latency: metrics::iso_accuracy(&xy(&baseline_latency), &l),
            latency_vs_cold: metrics::iso_accuracy(&xy(&baseline_cold), &l),
        });
        if !tool_baselines.is_empty() {
            iso.push(IsoRow {
                series: s.clone(),
                reference: "best test-time only (baseline, program-aided or formula)".into(),
                tokens: metrics::iso_accuracy(&best_tt_tokens, &t),
                latency: metrics::iso_accuracy(&best_tt_latency, &l),
                latency_vs_cold: metrics::iso_accuracy(&best_tt_cold, &l),
            });
        }
    }

    // Amortisation: measured with Multi-Query, projected from single-query runs.
    let measured = spec.multi_query.is_some();
    let amortised = if measured {
        metrics::amortised(records, options.t, options.input_weight, &options.ns)
    } else {
        projected_amortised(&summaries, options.t, options.input_weight, &options.ns)
    };

    let sample_budget = spec
        .sample_budgets
        .first()
        .map(|b| b.label())
        .unwrap_or_default();
    let (pass, vote) = metrics::pass_and_vote(records, &sample_budget);

    let base_low = format!("baseline/{lowest}");
    let mut predictability = BTreeMap::new();
    // Per program: its primary layout, and the paper's c' + c + q when it is not primary.
    let mut binned: Vec<String> = Vec::new();
    for p in &spec.programs {
        for layout in p.layouts.first().into_iter().chain([&Layout::Full]) {
            let s = format!("{}/k1/{}", p.program.name(), layout.name());
            if sleepers.contains(&s) && !binned.contains(&s) {
                binned.push(s);
            }
        }
    }
    for s in &binned {
        let cond = format!("{s}/{lowest}");
        let bins = metrics::predictability_bins(records, &cond, &base_low, true, 5);
        if !bins.is_empty() {
            predictability.insert(cond.clone(), bins);
            predictability.insert(
                format!("{cond} (sum)"),
                metrics::predictability_bins(records, &cond, &base_low, false, 5),
            );
        }
    }

    let reading = measured.then(|| measured_reading(records, options));
    let subset = reading.as_ref().and_then(|r| r.subset.clone());
    let targets = targets(
        &summaries,
        &iso,
        &amortised,
        reading.as_ref(),
        &lowest,
        options,
    );
    let head_to_head = against_paper_program(records, &summaries);
    let route_thresholds = metrics::route_thresholds(
        records,
        &Condition::Baseline {
            budget: spec.route.fallback,
            cold: false,
        },
        spec.route.min_confidence,
        ROUTE_THRESHOLD_STEP,
    );
    let summary = Summary {
        conditions: summaries.clone(),
        iso: iso.clone(),
        amortised: amortised.clone(),
        amortised_measured: measured,
        amortised_subset: subset.clone(),
        route_thresholds: route_thresholds.clone(),
        pass_at_k: pass.clone(),
        majority_vote: vote.clone(),
        predictability: predictability.clone(),
        targets: targets.clone(),
        head_to_head,
        partial_problems: partial.clone(),
    };

    // Figures.
    let mut figures = Vec::new();
    let fig_dir = run_dir.join("plots");
    if options.plots {
        std::fs::create_dir_all(&fig_dir).map_err(|e| BenchError::io("create", &fig_dir, &e))?;
        let k1: Vec<&String> = sleepers.iter().filter(|s| s.contains("/k1/")).collect();
        let mut tok_series = vec![to_series(&display_series("baseline"), &baseline_tokens)];
        let mut lat_series = vec![to_series(&display_series("baseline"), &baseline_latency)];
        for s in &k1 {
            tok_series.push(to_series(
                &display_series(s),
                &metrics::series_points(&summaries, s, Axis::CompletionTokens),
            ));
            lat_series.push(to_series(
                &display_series(s),
                &metrics::series_points(&summaries, s, Axis::LatencyP50),
            ));
        }
        for pal_series in ["pal", "aided/k1/pal", "formula"] {
            let pts = metrics::series_points(&summaries, pal_series, Axis::CompletionTokens);
            if !pts.is_empty() {
                tok_series.push(to_series(&display_series(pal_series), &pts));
                lat_series.push(to_series(
                    &display_series(pal_series),
                    &metrics::series_points(&summaries, pal_series, Axis::LatencyP50),
                ));
            }
        }
        // Each routed condition's threshold sweep: how its accuracy trades against fallback
        // tokens, labelled at the run's own threshold.
        let mut sweeps: BTreeMap<&str, Vec<&metrics::ThresholdPoint>> = BTreeMap::new();
        for p in &route_thresholds {
            sweeps.entry(p.condition.as_str()).or_default().push(p);
        }
        for (condition, points) in sweeps {
            tok_series.push(
                Series::new(
                    format!(
                        "{}, routing threshold raised (composed)",
                        display_series(condition.rsplit_once('/').map_or(condition, |c| c.0))
                    ),
                    points
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let label = match (i, p.threshold) {
                                (0, Some(t)) => format!("threshold {t:.1}"),
                                _ => String::new(),
                            };
                            (p.tokens, p.accuracy, p.lo, p.hi, label)
                        })
                        .collect(),
                )
                .dashed()
                .join_all(),
            );
        }
        lat_series.push(
            to_series(
                "test-time only, no KV cache (est.)",
                &metrics::series_points(&summaries, "baseline", Axis::ColdLatencyP50),
            )
            .dashed(),
        );
        if let Some(s) = k1.iter().find(|s| s.ends_with("/full")) {
            lat_series.push(
                to_series(
                    &format!("{}, no KV cache (est.)", display_series(s)),
                    &metrics::series_points(&summaries, s, Axis::ColdLatencyP50),
                )
                .dashed(),
            );
        }
        let title = format!("{} — {}", manifest.dataset, manifest.model.name);
        figures.extend(plots::line_chart(
            &LineChart {
                title: format!("Accuracy vs test-time tokens ({title})"),
                x_label: "Mean test-time completion tokens per question (log scale; lines: Pareto frontier)".into(),
                y_label: "Accuracy (95% Wilson CI)".into(),
                annotate: true,
                series: tok_series,
            },
            &fig_dir.join("accuracy_vs_tokens"),
        )?);
        figures.extend(plots::line_chart(
            &LineChart {
                title: format!("Accuracy vs test-time latency ({title})"),
                x_label:
                    "Median test-time latency per question, s (log scale; lines: Pareto frontier)"
                        .into(),
                y_label: "Accuracy (95% Wilson CI)".into(),
                annotate: false,
                series: lat_series,
            },
            &fig_dir.join("accuracy_vs_latency"),
        )?);
        // k-scaling.
        let mut k_series = vec![to_series(&display_series("baseline"), &baseline_tokens)];
        for p in &spec.programs {
            for k in &spec.ks {
                let s = format!("{}/k{k}/full", p.program.name());
                let pts = metrics::series_points(&summaries, &s, Axis::CompletionTokens);
                if !pts.is_empty() {
                    k_series.push(to_series(&display_series(&s), &pts));
                }
            }
        }
        if k_series.len() > 2 {
            figures.extend(plots::line_chart(
                &LineChart {
                    title: format!("Scaling sleep-time compute: k drafts ({title})"),
                    x_label: "Mean test-time completion tokens per question (log scale; lines: Pareto frontier)".into(),
                    y_label: "Accuracy (95% Wilson CI)".into(),
                        annotate: false,
                    series: k_series,
                },
                &fig_dir.join("k_scaling"),
            )?);
        }
        // pass@k and majority vote.
        if !pass.is_empty() {
            let kp = |name: &str, pts: &[metrics::KPoint]| {
                Series::new(
                    name,
                    pts.iter()
                        .map(|p| (p.tokens, p.accuracy, p.lo, p.hi, format!("k={}", p.k)))
                        .collect(),
                )
                .join_all()
            };
            let mut series = vec![
                to_series(&display_series("baseline"), &baseline_tokens),
                kp(&format!("pass@k from {sample_budget} (oracle)"), &pass),
                kp(&format!("majority vote from {sample_budget}"), &vote),
            ];
            for s in &k1 {
                series.push(to_series(
                    &display_series(s),
                    &metrics::series_points(&summaries, s, Axis::CompletionTokens),
                ));
            }
            figures.extend(plots::line_chart(
                &LineChart {
                    title: format!("Sleep-time vs pass@k and majority vote ({title})"),
                    x_label: "Mean test-time completion tokens per question (log scale; pass@k, vote: every k)".into(),
                    y_label: "Accuracy (95% Wilson CI)".into(),
                        annotate: false,
                    series,
                },
                &fig_dir.join("pass_at_k"),
            )?);
        }
        // Amortisation, one figure per program.
        for p in &spec.programs {
            let main = k1
                .iter()
                .find(|s| s.starts_with(p.program.name()) && s.ends_with("/full"))
                .or_else(|| k1.iter().find(|s| s.starts_with(p.program.name())));
            let Some(main) = main else { continue };
            let mut series = Vec::new();
            let base: Vec<&metrics::AmortPoint> = amortised
                .iter()
                .filter(|a| a.series == "baseline" && a.n == *options.ns.last().unwrap_or(&1))
                .collect();
            series.push(amort_series("test-time only", &base));
            for n in &options.ns {
                let pts: Vec<&metrics::AmortPoint> = amortised
                    .iter()
                    .filter(|a| a.series == **main && a.n == *n)
                    .collect();
                series.push(amort_series(
                    &format!(
                        "{n} {} per context",
                        if *n == 1 { "query" } else { "queries" }
                    ),
                    &pts,
                ));
            }
            figures.extend(plots::line_chart(
                &LineChart {
                    title: format!(
                        "Amortised cost per query, {} ({}{})",
                        display_series(main),
                        manifest.dataset,
                        if measured { "" } else { ", projected" }
                    ),
                    x_label: format!("Cost per query = S/N + {}·T, sleep-time tokens (log scale; lines: Pareto frontier)", options.t),
                    y_label: "Accuracy (95% Wilson CI)".into(),
                        annotate: false,
                    series,
                },
                &fig_dir.join(format!("amortisation_{}", p.program.name())),
            )?);
        }
        // Predictability.
        let mean_bins: Vec<(&String, &Vec<metrics::Bin>)> = predictability
            .iter()
            .filter(|(k, _)| !k.ends_with("(sum)"))
            .collect();
        if !mean_bins.is_empty() {
            let groups: Vec<String> = (1..=5)
                .map(|i| {
                    format!(
                        "Q{i}{}",
                        match i {
                            1 => " (least)",
                            5 => " (most)",
                            _ => "",
                        }
                    )
                })
                .collect();
            let series = mean_bins
                .iter()
                .map(|(k, bins)| {
                    (
                        (*k).clone(),
                        bins.iter().map(|b| (b.gap, b.gap_lo, b.gap_hi)).collect(),
                    )
                })
                .collect();
            figures.extend(plots::bar_chart(
                &BarChart {
                    title: format!("Sleep-time gain by predictability of q at {lowest} ({title})"),
                    x_label: "Quintile of log P(q | c) per token (least to most predictable)"
                        .into(),
                    y_label: "Accuracy gap: sleep-time minus baseline".into(),
                    groups,
                    series,
                },
                &fig_dir.join("predictability"),
            )?);
        }
    }

    let md = markdown(
        manifest, records, &summaries, &summary, &lowest, options, &figures, run_dir,
    );
    Ok((md, summary, figures))
}

/// The paper's program at `budget`: the reference every other program is paired against.
fn paper_program(budget: &str) -> String {
    format!("rethink/k1/{}/{budget}", Layout::Full.name())
}

/// Each warm sleep-time condition of a program other than rethink (context-only left out: it
/// never sees the question) against rethink `c' + c + q` at the same budget.
fn against_paper_program(
    records: &[Record],
    summaries: &[ConditionSummary],
) -> Vec<metrics::HeadToHead> {
    summaries
        .iter()
        .filter_map(|c| match &c.spec {
            Condition::Sleep {
                sleeper,
                layout,
                budget,
                cold: false,
            } if sleeper.program != ProgramKind::Rethink && *layout != Layout::ContextOnly => {
                metrics::head_to_head(records, &c.condition, &paper_program(&budget.label()))
            }
            _ => None,
        })
        .collect()
}

fn amort_series(name: &str, pts: &[&metrics::AmortPoint]) -> Series {
    let mut v: Vec<(f64, f64, f64, f64, String)> = pts
        .iter()
        .map(|a| (a.cost, a.accuracy, a.lo, a.hi, String::new()))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    Series::new(name, v)
}

/// Amortisation projected from a single-query run: the same test-time cost and accuracy
/// per question, the sleep-time cost shared by N questions.
pub fn projected_amortised(
    summaries: &[ConditionSummary],
    t: f64,
    input_weight: f64,
    ns: &[usize],
) -> Vec<metrics::AmortPoint> {
    let mut out = Vec::new();
    for s in summaries
        .iter()
        .filter(|s| !s.spec.is_cold() && !matches!(s.spec, Condition::Sample { .. }))
    {
        let s_out = s.sleep_tokens_per_context.unwrap_or(0.0);
        let s_in = s.sleep_prompt_tokens_per_context.unwrap_or(0.0);
        for &n in ns {
            let k = n as f64;
            out.push(metrics::AmortPoint {
                condition: s.condition.clone(),
                series: s.series.clone(),
                n,
                full_contexts: 0,
                contexts: s.n,
                cost: s_out / k + t * s.completion_tokens,
                cost_with_input: (s_out + input_weight * s_in) / k
                    + t * (s.completion_tokens
                        + input_weight * (s.prompt_tokens - s.cached_prompt_tokens)),
                accuracy: s.accuracy,
                lo: s.ci.0,
                hi: s.ci.1,
            });
        }
    }
    out
}

/// Where a Multi-Query run's generator left some contexts with their original question
/// only, the amortisation read on the contexts that reached N queries: the largest N ≥ 2
/// that at least [`MIN_CONTEXTS_FOR_SUBSET`] contexts reach (none: no such N).
#[derive(Debug, Clone, Serialize)]
pub struct AmortSubset {
    /// Queries per context read.
    pub n: usize,
    /// Contexts with at least `n` questions, of all.
    pub contexts: usize,
    pub of: usize,
    pub points: Vec<metrics::AmortPoint>,
}

/// Where a Multi-Query run's amortisation targets are read (see [`measured_reading`]).
#[derive(Debug, Default)]
struct MeasuredReading {
    /// The largest N ≥ 2 every context reaches.
    every_context: Option<usize>,
    /// Failing that, the contexts that reached a smaller N.
    subset: Option<AmortSubset>,
}

/// Spacing of the thresholds a routing sweep reads.
const ROUTE_THRESHOLD_STEP: f64 = 0.1;

/// Fewest contexts an amortisation reading on a subset rests on.
const MIN_CONTEXTS_FOR_SUBSET: usize = 10;

/// Where a Multi-Query run's amortisation targets are read, from one count of questions per
/// context: at the largest N ≥ 2 every context reaches (a context with fewer questions shares
/// its sleep-time cost over fewer queries, so a larger N would mix in what it claims to
/// measure); failing that, on the contexts that reach the largest N ≥ 2 at least
/// [`MIN_CONTEXTS_FOR_SUBSET`] contexts reach. Both `None`: not measurable.
fn measured_reading(records: &[Record], options: &ReportOptions) -> MeasuredReading {
    // Questions per context, counted once (every condition answers the same questions:
    // partial problems are left out).
    let mut per_context: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.spec.answers()) {
        per_context
            .entry(r.context_id.as_str())
            .or_default()
            .insert(r.question_index);
    }
    let count = |n: usize| per_context.values().filter(|q| q.len() >= n).count();
    let largest_n = |enough: usize| {
        options
            .ns
            .iter()
            .copied()
            .filter(|&n| n >= 2 && count(n) >= enough)
            .max()
    };
    if per_context.is_empty() {
        return MeasuredReading::default();
    }
    if let Some(n) = largest_n(per_context.len()) {
        return MeasuredReading {
            every_context: Some(n),
            subset: None,
        };
    }
    let Some(n) = largest_n(MIN_CONTEXTS_FOR_SUBSET) else {
        return MeasuredReading::default();
    };
    let keep: BTreeSet<&str> = per_context
        .iter()
        .filter(|(_, q)| q.len() >= n)
        .map(|(c, _)| *c)
        .collect();
    let subset: Vec<Record> = records
        .iter()
        .filter(|r| keep.contains(r.context_id.as_str()))
        .cloned()
        .collect();
    let ns: Vec<usize> = options.ns.iter().copied().filter(|&m| m <= n).collect();
    MeasuredReading {
        every_context: None,
        subset: Some(AmortSubset {
            n,
            contexts: keep.len(),
            of: per_context.len(),
            points: metrics::amortised(&subset, options.t, options.input_weight, &ns),
        }),
    }
}

fn targets(
    summaries: &[ConditionSummary],
    iso: &[IsoRow],
    amortised: &[metrics::AmortPoint],
    // `None`: a projected (single-query) run.
    measured: Option<&MeasuredReading>,
    lowest: &str,
    options: &ReportOptions,
) -> Vec<Target> {
    let mut out = Vec::new();
    // Every condition answers the same questions (partial problems are left out).
    let questions = summaries.iter().map(|s| s.n).max().unwrap_or(0);
    let judged = |accuracy: f64| too_few_correct(accuracy, questions).is_none();
    let vs_base: Vec<&IsoRow> = iso.iter().filter(|r| r.reference == "baseline").collect();
    let readings: Vec<_> = vs_base
        .iter()
        .filter_map(|r| r.tokens.max.map(|m| (*r, m)))
        .collect();
    let best_reading = |keep: &dyn Fn(f64) -> bool| {
        readings
            .iter()
            .filter(|(_, m)| keep(m.accuracy))
            .max_by(|a, b| a.1.ratio.total_cmp(&b.1.ratio))
    };
    // The best ratio read where enough answers are right; failing that, the best at all,
    // shown but not judged.
    let best = best_reading(&judged).or_else(|| best_reading(&|_| true));
    let (value, met, detail) = match best {
        Some((r, m)) => {
            let reading = format!(
                "{}: baseline needs {:.0} tokens, sleep-time {:.0}, for {} accuracy; at the best accuracy both reach: {}",
                display_series(&r.series),
                m.baseline,
                m.sleep,
                pct(m.accuracy),
                ratio(r.tokens.at_best_common)
            );
            match too_few_correct(m.accuracy, questions) {
                Some(why) => (Some(m.ratio), None, format!("{why} — {reading}")),
                None => (Some(m.ratio), Some(m.ratio >= TARGET_ISO_PAPER), reading),
            }
        }
        None => (
            None,
            None,
            "no accuracy level is reached by both curves (see the per-budget table)".into(),
        ),
    };
    out.push(Target {
        name: "Iso-accuracy test-time token ratio (best sleep-time series vs baseline)".into(),
        goal: format!("≥ {TARGET_ISO_PAPER}× (paper), aim {TARGET_ISO_AIM}×"),
        value,
        met,
        detail,
    });

    // Amortisation at the largest N: vs the baseline at equal accuracy, and vs N = 1. A
    // measured (Multi-Query) run is read where `measured_reading` says (`None`: not
    // measurable); a projected one at the largest N asked for.
    let n_asked = *options.ns.last().unwrap_or(&1);
    let n_read = measured.map_or(Some(n_asked), |m| m.every_context);
    // A measured run where some contexts kept fewer questions is read on those that reached N.
    let (points, n_read, questions, scope) = match measured.and_then(|m| m.subset.as_ref()) {
        Some(sub) => (
            sub.points.as_slice(),
            Some(sub.n),
            sub.n * sub.contexts,
            format!(
                " (on the {} of {} contexts with at least {} questions; the others kept fewer generated questions)",
                sub.contexts, sub.of, sub.n
            ),
        ),
        None => (amortised, n_read, questions, String::new()),
    };
    amortisation_targets(
        &mut out,
        points,
        Reading {
            n_read,
            n_asked,
            measured: measured.is_some(),
            lowest,
            questions,
            scope,
        },
    );

    // Aided vs the paper's program at the lowest budget.
    let acc = |cond: &str| {
        summaries
            .iter()
            .find(|s| s.condition == cond)
            .map(|s| s.accuracy)
    };
    // Each program at its best number of drafts: k is sleep-time compute, which either side
    // may scale. Only series over the same questions compare (k > 1 may run on fewer
    // contexts). Conditions read `program/kK/how/budget`.
    let at_lowest = |keep: &dyn Fn(ProgramKind, &str, usize) -> bool| {
        summaries
            .iter()
            .filter_map(|s| {
                let parts: Vec<&str> = s.condition.split('/').collect();
                let [program, k, how, budget] = parts[..] else {
                    return None;
                };
                let program = program.parse::<ProgramKind>().ok()?;
                (k.starts_with('k') && budget == lowest && keep(program, how, s.n)).then(|| {
                    let label = if k == "k1" {
                        format!("{program} ({how})")
                    } else {
                        format!("{program} {k} ({how})")
                    };
                    (label, s.accuracy, s.n)
                })
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let rethink_n = summaries
        .iter()
        .find(|s| s.condition == format!("rethink/k1/full/{lowest}"))
        .map(|s| s.n);
    let same_questions = |n: usize| rethink_n.is_none_or(|r| r == n);
    let rethink = at_lowest(&|p, how, n| {
        !p.is_structured() && how == Layout::Full.name() && same_questions(n)
    });
    // The best structured program (aided, aided-solve) in any layout that answers from its
    // c' at the lowest budget, or by one formula over its quantities.
    let answered = [
        Layout::Full,
        Layout::Learned,
        Layout::Routed,
        Layout::Picked,
        Layout::Matched,
    ]
    .map(|l| l.name());
    let aided_best = at_lowest(&|p, how, n| {
        p.is_structured() && (answered.contains(&how) || how == "formula") && same_questions(n)
    });
    // The paper's program answered by the same formula, shown beside it for fairness.
    let rethink_formula = acc(&format!("rethink/k1/formula/{lowest}"));
    let diff = match (&rethink, &aided_best) {
        (Some((_, r, _)), Some((_, a, _))) => Some(a - r),
        _ => None,
    };
    let points_questions = rethink.as_ref().map_or(0, |r| r.2);
    let points_judged = points_questions >= MIN_QUESTIONS_FOR_POINTS;
    out.push(Target {
        name: format!(
            "Program-aided vs paper-faithful sleep program at the lowest budget ({lowest})"
        ),
        goal: "≥ +15 points".into(),
        value: diff.map(|d| d * 100.0),
        met: diff
            .filter(|_| points_judged)
            .map(|d| d >= TARGET_AIDED_POINTS),
        detail: match (rethink, aided_best) {
            (Some((r_label, r, n)), Some((l, a, _))) => format!(
                "{}{l} {} vs {r_label} {}{}",
                if points_judged {
                    String::new()
                } else {
                    format!("not judged: {n} question(s); a difference of accuracies needs at least {MIN_QUESTIONS_FOR_POINTS} — ")
                },
                pct(a),
                pct(r),
                rethink_formula.map_or_else(String::new, |f| format!(
                    "; rethink answered by a formula: {}",
                    pct(f)
                ))
            ),
            _ => "needs both programs on the same questions".into(),
        },
    });
    let program_of = |series: &str| {
        series
            .split(['/', ' '])
            .next()
            .and_then(|n| n.parse::<ProgramKind>().ok())
    };
    let best_where = |keep: &dyn Fn(ProgramKind) -> bool| {
        vs_base
            .iter()
            .filter(|r| program_of(&r.series).is_some_and(keep))
            .filter_map(|r| r.tokens.max)
            .filter(|m| judged(m.accuracy))
            .map(|m| m.ratio)
            .max_by(f64::total_cmp)
    };
    let (a, r) = (
        best_where(&ProgramKind::is_structured),
        best_where(&|p| !p.is_structured()),
    );
    out.push(Target {
        name: "Program-aided has the best iso-accuracy token ratio of any program".into(),
        goal: "aided > rethink".into(),
        value: a,
        met: match (a, r) {
            (Some(a), Some(r)) => Some(a > r),
            (Some(_), None) => Some(true),
            _ => None,
        },
        detail: format!(
            "aided {} vs rethink {}{}",
            opt(a, |v| format!("{v:.2}×")),
            opt(r, |v| format!("{v:.2}×")),
            if a.is_none() {
                format!(" (ratios read at fewer than {MIN_CORRECT_FOR_RATIO} correct answers are not compared)")
            } else {
                String::new()
            }
        ),
    });
    out
}

/// Where the amortisation targets are read.
struct Reading<'a> {
    /// Queries per context read; `None` when a measured run has no N > 1 on every context.
    n_read: Option<usize>,
    n_asked: usize,
    measured: bool,
    lowest: &'a str,
    /// Questions every condition answered.
    questions: usize,
    /// Said after each detail: which contexts the reading rests on, when not all.
    scope: String,
}

/// The two amortisation targets, read at `n_read` queries per context; not measurable
/// (and named after `n_asked`) when `n_read` is `None`.
fn amortisation_targets(out: &mut Vec<Target>, amortised: &[metrics::AmortPoint], at: Reading<'_>) {
    let Reading {
        n_read,
        n_asked,
        measured,
        lowest,
        questions,
        scope,
    } = at;
    let judged = |accuracy: f64| too_few_correct(accuracy, questions).is_none();
    let n_max = n_read.unwrap_or(n_asked);
    let base: Vec<(f64, f64)> = amortised
        .iter()
        .filter(|a| a.series == "baseline" && a.n == n_max)
        .map(|a| (a.cost, a.accuracy))
        .collect();
    let mut best_amort: Option<(String, metrics::IsoRatio)> = None;
    let mut best_vs_one: Option<(String, f64)> = None;
    let mut at_lowest = false;
    let sleep_names: Vec<String> = amortised
        .iter()
        .map(|a| a.series.clone())
        .filter(|s| n_read.is_some() && s.contains("/k"))
        // The context-only ablation never sees the question: it is not a way to answer queries.
        .filter(|s| !s.ends_with("/context-only"))
        .collect();
    for s in sleep_names {
        let pts: Vec<(f64, f64)> = amortised
            .iter()
            .filter(|a| a.series == s && a.n == n_max)
            .map(|a| (a.cost, a.accuracy))
            .collect();
        if let Some(m) = metrics::iso_accuracy(&base, &pts)
            .max
            .filter(|m| judged(m.accuracy))
        {
            if best_amort.as_ref().is_none_or(|b| m.ratio > b.1.ratio) {
                best_amort = Some((s.clone(), m));
            }
        }
        let low = format!("{s}/{lowest}");
        let one = amortised.iter().find(|a| a.condition == low && a.n == 1);
        at_lowest |= one.is_some();
        let many = amortised
            .iter()
            .find(|a| a.condition == low && a.n == n_max);
        // A series that answers (almost) nothing correctly has no cost per useful answer: its
        // ratio would only say that wrong answers got cheaper.
        let answers_some = |a: &&metrics::AmortPoint| judged(a.accuracy);
        if let (Some(one), Some(many)) = (one.filter(answers_some), many.filter(answers_some)) {
            let r = one.cost / many.cost;
            if best_vs_one.as_ref().is_none_or(|b| r > b.1) {
                best_vs_one = Some((s.clone(), r));
            }
        }
    }
    let note = if measured {
        scope.as_str()
    } else {
        " (projected from a single-query run; the Multi-Query run measures it)"
    };
    let missing = |otherwise: String| {
        if n_read.is_some() {
            otherwise
        } else {
            "not measurable: some context has only its original question (the Multi-Query row says how many generated questions were kept)".into()
        }
    };
    out.push(Target {
        name: format!("Amortised cost per query at {n_max} queries per context vs test-time only, equal accuracy"),
        goal: format!("≥ {TARGET_AMORT_PAPER}× (paper), aim {TARGET_AMORT_AIM}×"),
        value: best_amort.as_ref().map(|b| b.1.ratio),
        met: best_amort.as_ref().map(|b| b.1.ratio >= TARGET_AMORT_PAPER),
        detail: best_amort.map_or_else(
            || {
                missing(format!(
                    "no accuracy level reached by both with at least {MIN_CORRECT_FOR_RATIO} correct answers{note}"
                ))
            },
            |(s, m)| format!("{}: {:.0} vs {:.0} per query at {}{note}", display_series(&s), m.baseline, m.sleep, pct(m.accuracy)),
        ),
    });
    out.push(Target {
        name: format!(
            "Amortised cost per query at {n_max} vs 1 query per context (same series, {lowest})"
        ),
        goal: format!("≥ {TARGET_AMORT_PAPER}× (the paper's reading of Fig. 9)"),
        value: best_vs_one.as_ref().map(|b| b.1),
        met: best_vs_one.as_ref().map(|b| b.1 >= TARGET_AMORT_PAPER),
        detail: best_vs_one.map_or_else(
            || {
                missing(if at_lowest {
                    format!("no sleep-time series answers at least {MIN_CORRECT_FOR_RATIO} questions correctly at {lowest}")
                } else {
                    "–".into()
                })
            },
            |(s, r)| format!("{}: {r:.2}×{note}", display_series(&s)),
        ),
    });
}

/// The routing-threshold sweep: how much of a routed condition's accuracy is bought with
/// fallback tokens, so a threshold can be chosen from a curve rather than read as a gain of
/// the sleep program.
fn route_threshold_table(md: &mut String, points: &[metrics::ThresholdPoint], fallback: &str) {
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n### Routing threshold\n\nEach routed condition read as if its fast path needed at least the given retrieval \
confidence; a question below it takes `{fallback}`'s record for the same problem, the same request the fallback makes \
(composed, no model call). The first row of each condition is the run's own threshold; lower ones would need fast \
answers the run never asked for.\n"
    );
    let _ = writeln!(
        md,
        "| condition | threshold | falls back | accuracy [95% CI] | test-time tokens |\n|---|---|---|---|---|"
    );
    for p in points {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} of {} | {} [{}, {}] | {:.0} |",
            p.condition,
            p.threshold
                .map_or_else(|| "all fall back".into(), |t| format!("{t:.1}")),
            p.fallback,
            p.questions,
            pct(p.accuracy),
            pct(p.lo),
            pct(p.hi),
            p.tokens
        );
    }
}

/// How many generated questions a Multi-Query run kept: a generator too weak for its
/// verifiers leaves the amortisation with fewer queries per context than asked for, and
/// the report must say so next to the numbers.
fn multi_query_yield(run_dir: &Path, wanted: usize) -> String {
    let path = run_dir.join("multiquery.json");
    let manifest = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::multiquery::MultiQueryManifest>(&b).ok());
    let Some(m) = manifest else {
        return format!("`{}` missing or unreadable", path.display());
    };
    let complete = m.contexts.iter().filter(|c| c.verified >= wanted).count();
    format!(
        "{} verified of {} generated on {} contexts ({} wanted per context; {} of {} contexts got them all)",
        m.total_verified,
        m.total_proposed,
        m.contexts.len(),
        wanted,
        complete,
        m.contexts.len(),
    )
}

/// The problems an interrupted invocation left half-done: they hold records for some of the
/// conditions the run asks of them but not all. Every number of the report compares
/// conditions, so it must rest on the same questions for each; these are left out (and
/// listed) until the run is resumed. What a problem is asked is the last invocation's plan for
/// its context (`spec.conditions_for`), limited to the conditions any invocation evaluated
/// (an `--only` filter is not in the spec); problems not in the manifest's list are kept.
pub fn partial_problems(manifest: &Manifest, records: &[Record]) -> Vec<PartialProblem> {
    let mut answered: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut context_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in records {
        answered
            .entry(r.problem_id.as_str())
            .or_default()
            .insert(r.condition.as_str());
        context_of.insert(r.problem_id.as_str(), r.context_id.as_str());
    }
    let evaluated: BTreeSet<&str> = manifest.conditions.iter().map(String::as_str).collect();
    // A context's index is its rank among the run's contexts in problem order, as the runner
    // numbers them.
    let mut contexts: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for id in &manifest.problem_ids {
        let Some(&context) = context_of.get(id.as_str()) else {
            continue;
        };
        let index = match contexts.iter().position(|c| *c == context) {
            Some(i) => i,
            None => {
                contexts.push(context);
                contexts.len() - 1
            }
        };
        let expected: Vec<String> = manifest
            .spec
            .conditions_for(index)
            .iter()
            .map(Condition::id)
            .filter(|c| evaluated.contains(c.as_str()))
            .collect();
        let have = &answered[id.as_str()];
        let done = expected
            .iter()
            .filter(|c| have.contains(c.as_str()))
            .count();
        if done < expected.len() {
            out.push(PartialProblem {
                problem_id: id.clone(),
                answered: done,
                expected: expected.len(),
            });
        }
    }
    out
}

fn partial_problems_row(partial: &[PartialProblem]) -> Option<String> {
    if partial.is_empty() {
        return None;
    }
    let list: Vec<String> = partial
        .iter()
        .map(|p| {
            format!(
                "`{}` ({} of {} conditions)",
                p.problem_id, p.answered, p.expected
            )
        })
        .collect();
    Some(format!(
        "| left out, unfinished | {} — an interrupted invocation answered only some conditions; every number below leaves them out (resume the run to finish them) |",
        list.join(", ")
    ))
}

/// Which versions of one sleep-time program learned a run's `c'`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgramVersions<'a> {
    /// Per version string, the contexts it learned (a context counts once over conditions).
    pub contexts: BTreeMap<&'a str, usize>,
    /// Per condition, the same count restricted to that condition's records.
    pub by_condition: BTreeMap<&'a str, BTreeMap<&'a str, usize>>,
}

/// Which version of each sleep-time program learned the `c'` of a run's records. A run
/// resumed across commits can answer two conditions of one program from different versions,
/// or pool two versions under one condition; the report must say which beside the numbers.
pub fn program_versions(records: &[Record]) -> BTreeMap<&'static str, ProgramVersions<'_>> {
    type Contexts<'a> = BTreeMap<&'a str, BTreeSet<&'a str>>;
    fn count(c: Contexts<'_>) -> BTreeMap<&str, usize> {
        c.into_iter().map(|(v, ids)| (v, ids.len())).collect()
    }
    let mut seen: BTreeMap<&'static str, (Contexts<'_>, BTreeMap<&str, Contexts<'_>>)> =
        BTreeMap::new();
    for r in records {
        let (Some(sleeper), Some(sleep)) = (r.spec.sleeper(), r.sleep.as_ref()) else {
            continue;
        };
        let (overall, by_condition) = seen.entry(sleeper.program.name()).or_default();
        let version = sleep.program.as_str();
        let context = r.context_id.as_str();
        overall.entry(version).or_default().insert(context);
        by_condition
            .entry(r.condition.as_str())
            .or_default()
            .entry(version)
            .or_default()
            .insert(context);
    }
    seen.into_iter()
        .map(|(name, (overall, by_condition))| {
            let versions = ProgramVersions {
                contexts: count(overall),
                by_condition: by_condition
                    .into_iter()
                    .map(|(c, v)| (c, count(v)))
                    .collect(),
            };
            (name, versions)
        })
        .collect()
}

/// A version string as the report shows it: harnesses before program versions were recorded
/// wrote the bare program name.
fn version_label(version: &str) -> String {
    if version.contains('@') {
        format!("`{version}`")
    } else {
        format!("`{version}` (version not recorded: an older harness)")
    }
}

fn condition_list(conditions: &[&str]) -> String {
    const SHOWN: usize = 4;
    let mut out = conditions
        .iter()
        .take(SHOWN)
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if conditions.len() > SHOWN {
        let _ = write!(out, " and {} more", conditions.len() - SHOWN);
    }
    out
}

fn program_versions_row(records: &[Record]) -> Option<String> {
    let versions = program_versions(records);
    if versions.is_empty() {
        return None;
    }
    let parts: Vec<String> = versions
        .iter()
        .map(|(name, program)| {
            let list: Vec<String> = program
                .contexts
                .iter()
                .map(|(v, n)| format!("{} on {n} contexts", version_label(v)))
                .collect();
            let mut part = format!("{name}: {}", list.join(", "));
            if program.contexts.len() > 1 {
                let mixed: Vec<&str> = program
                    .by_condition
                    .iter()
                    .filter(|(_, v)| v.len() > 1)
                    .map(|(c, _)| *c)
                    .collect();
                if mixed.is_empty() {
                    // Each condition is on one version, but they differ between conditions.
                    let mut by_version: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for (c, v) in &program.by_condition {
                        if let Some(version) = v.keys().next() {
                            by_version.entry(version).or_default().push(c);
                        }
                    }
                    let split: Vec<String> = by_version
                        .iter()
                        .map(|(v, cs)| format!("`{v}` in {}", condition_list(cs)))
                        .collect();
                    let _ = write!(
                        part,
                        " — **conditions on different versions** ({}): compare them with care",
                        split.join("; ")
                    );
                } else {
                    let _ = write!(
                        part,
                        " — **mixed versions** within {}: their numbers pool them",
                        condition_list(&mixed)
                    );
                }
            }
            part
        })
        .collect();
    Some(format!("| sleep program versions | {} |", parts.join("; ")))
}

/// Sleep-time steps dropped because their prompt outgrew the context window, per program:
/// each such step is a question or repair missing from `c'`, which a reader of the accuracy
/// numbers should know about (`None` when nothing was dropped).
fn dropped_steps_row(records: &[Record]) -> Option<String> {
    // One learned context per (sleeper, context): its records all carry the same count.
    let mut per_context: BTreeMap<(String, &str), u32> = BTreeMap::new();
    for r in records {
        let (Some(sleeper), Some(sleep)) = (r.spec.sleeper(), r.sleep.as_ref()) else {
            continue;
        };
        if sleep.dropped_too_long > 0 {
            per_context.insert(
                (sleeper.to_string(), r.context_id.as_str()),
                sleep.dropped_too_long,
            );
        }
    }
    if per_context.is_empty() {
        return None;
    }
    let mut per_sleeper: BTreeMap<&str, (u32, usize)> = BTreeMap::new();
    for ((sleeper, _), n) in &per_context {
        let e = per_sleeper.entry(sleeper.as_str()).or_default();
        e.0 += n;
        e.1 += 1;
    }
    let parts: Vec<String> = per_sleeper
        .iter()
        .map(|(s, (steps, contexts))| format!("{s}: {steps} on {contexts} contexts"))
        .collect();
    Some(format!(
        "| sleep steps dropped (prompt outgrew the context window) | {} |",
        parts.join("; ")
    ))
}

/// How many records were composed from recorded calls instead of calling the model, per
/// condition (`None` when none were): a reader should know which numbers share calls.
fn composed_row(records: &[Record]) -> Option<String> {
    let mut per_condition: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records.iter().filter(|r| r.composed_from.is_some()) {
        *per_condition.entry(r.condition.as_str()).or_default() += 1;
    }
    if per_condition.is_empty() {
        return None;
    }
    let parts: Vec<String> = per_condition
        .iter()
        .map(|(c, n)| format!("`{c}` {n}"))
        .collect();
    Some(format!(
        "| composed from recorded calls | {} — the full layout's answer, plus the baseline's at the fallback budget when escalated: the same requests, not new model calls |",
        parts.join(", ")
    ))
}

fn template_key(t: &str) -> (u8, i64, String) {
    match t.parse::<i64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, t.to_owned()),
    }
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
fn markdown(
    manifest: &Manifest,
    records: &[Record],
    summaries: &[ConditionSummary],
    summary: &Summary,
    lowest: &str,
    options: &ReportOptions,
    figures: &[PathBuf],
    run_dir: &Path,
) -> String {
    let mut md = String::new();
    let spec = &manifest.spec;
    let questions: BTreeSet<&str> = records.iter().map(|r| r.problem_id.as_str()).collect();
    let contexts: BTreeSet<&str> = records.iter().map(|r| r.context_id.as_str()).collect();
    let _ = writeln!(md, "# Sleep-time compute benchmark: {}\n", manifest.name);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| model | {} (`{}`) |",
        manifest.model.name, manifest.model.fingerprint
    );
    if let Some(g) = &manifest.generator {
        let _ = writeln!(
            md,
            "| Multi-Query generator | {} (`{}`) |",
            g.name, g.fingerprint
        );
    }
    if let Some(wanted) = spec.multi_query.as_ref().map(|mq| mq.extra) {
        let _ = writeln!(
            md,
            "| Multi-Query questions | {} |",
            multi_query_yield(run_dir, wanted)
        );
    }
    if let Some(s) = &manifest.scorer {
        let _ = writeln!(
            md,
            "| predictability scorer | {} (`{}`) |",
            s.name, s.fingerprint
        );
    }
    let _ = writeln!(
        md,
        "| dataset | {} ({} questions on {} contexts) |",
        manifest.dataset,
        questions.len(),
        contexts.len()
    );
    if let Some(row) = partial_problems_row(&summary.partial_problems) {
        let _ = writeln!(md, "{row}");
    }
    if let Some(row) = composed_row(records) {
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md, "| conditions | {} |", manifest.conditions.len());
    let _ = writeln!(md, "| seed | {} |", manifest.seed);
    let _ = writeln!(
        md,
        "| git commit | {} |",
        manifest.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(md, "| command | `{}` |", manifest.command_line.join(" "));
    let _ = writeln!(
        md,
        "| started / finished | {} / {} |",
        record::format_utc(manifest.started_at),
        manifest
            .finished_at
            .map_or_else(|| "not finished".into(), record::format_utc)
    );
    let _ = writeln!(
        md,
        "| call cache (last invocation) | {} hits, {} misses |",
        manifest.cache_hits, manifest.cache_misses
    );
    let _ = writeln!(
        md,
        "| sleep programs | rethink: up to {} rewrites of ≤ {} tokens; aided: {} repair rounds; aided-solve: {} questions solved{}; aided-open: aided-solve plus up to {} open questions; k > 1 drafts at temperature {} |",
        spec.sleep.program.max_rethinks,
        spec.sleep.max_tokens_per_step,
        spec.sleep.program.repair_rounds,
        spec.sleep.program.solve_questions,
        match spec.sleep.program.solve_samples {
            0 | 1 => String::new(),
            n => format!(", {n} solutions each (majority)"),
        },
        spec.sleep.program.open_questions,
        spec.sleep.sampled_temperature
    );
    if let Some(row) = program_versions_row(records) {
        let _ = writeln!(md, "{row}");
    }
    if let Some(row) = dropped_steps_row(records) {
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(
        md,
        "| cost model | test-time token = {} sleep-time tokens; input token = {} output token |\n",
        options.t, options.input_weight
    );
    let _ = writeln!(
        md,
        "Budgets: `v0`–`v4` are the paper's verbosity prompts (0 = one sentence, 4 = step by step) with a generous cap; \
`capN` is step-by-step reasoning cut at N tokens, then the answer is forced (budget forcing). Layouts: `full` = c' + c + q \
(the paper), `learned` = c' + q, `routed` = the parts of c' retrieved for q + c + q with a full-reasoning fallback, \
`context-only` = c' + c without q, `checked` = c' + c + q escalated to full reasoning on c + q when the answer is not a value c' holds, \
`picked` = c' + c + q where an answer c' does not hold gives way to the quantity of c' that best matches q (the engine's choice, no model call), \
`matched` = c' + c + q where the best-matching quantity wins unless the model's answer matches as well. Accuracy intervals are 95% Wilson intervals. Records hold ids and numbers only.\n"
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | goal | value | met | detail |\n|---|---|---|---|---|"
    );
    for t in &summary.targets {
        let met = match t.met {
            Some(true) => "**yes**",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {met} | {} |",
            t.name,
            t.goal,
            opt(t.value, |v| format!("{v:.2}")),
            t.detail
        );
    }
    let unmet: Vec<&Target> = summary
        .targets
        .iter()
        .filter(|t| t.met == Some(false))
        .collect();
    if !unmet.is_empty() {
        let _ = writeln!(
            md,
            "\n**{} target(s) not met.** Where it falls short is shown below: sleep-time minus baseline per budget \
(\"Per budget\"), and per template at the lowest budget (\"Per template\").\n",
            unmet.len()
        );
    }

    let rel = |p: &Path| {
        p.strip_prefix(run_dir)
            .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
    };
    let fig = |md: &mut String, name: &str, caption: &str| {
        if let Some(p) = figures.iter().find(|p| {
            p.file_stem().is_some_and(|s| s == name) && p.extension().is_some_and(|e| e == "png")
        }) {
            let svg = p.with_extension("svg");
            let _ = writeln!(md, "![{caption}]({}) ([SVG]({}))\n", rel(p), rel(&svg));
        }
    };

    let _ = writeln!(md, "## Accuracy and cost per condition\n");
    let _ = writeln!(
        md,
        "| condition | n | accuracy [95% CI] | completion tokens | prompt tokens | cached prompt | latency p50 / p95 s | no-KV latency p50 / p95 s | cut off | forced | sleep tokens / context | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in summaries
        .iter()
        .filter(|s| !matches!(s.spec, Condition::Sample { .. }))
    {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} [{}, {}] | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} |",
            s.condition,
            s.n,
            pct(s.accuracy),
            pct(s.ci.0),
            pct(s.ci.1),
            num(s.completion_tokens, 1),
            num(s.prompt_tokens, 0),
            num(s.cached_prompt_tokens, 0),
            num(s.latency_p50, 2),
            num(s.latency_p95, 2),
            num(s.cold_latency_p50, 2),
            num(s.cold_latency_p95, 2),
            pct(s.cap_share),
            pct(s.forced_share),
            opt(s.sleep_tokens_per_context, |v| num(v, 0)),
            s.errors
        );
    }
    let _ = writeln!(
        md,
        "\nNo-KV latency: measured for `/cold` conditions (prefix KV state off; meaningful only on a backend that honours \
`reuse_prefix = false`), otherwise estimated as the measured latency plus the prefill of the prepared prefix.\n"
    );

    let _ = writeln!(md, "## Accuracy vs test-time tokens (paper Fig. 3/4)\n");
    fig(
        &mut md,
        "accuracy_vs_tokens",
        "accuracy vs test-time tokens",
    );
    let _ = writeln!(md, "### Iso-accuracy ratios\n");
    let _ = writeln!(
        md,
        "Test-time tokens (and median latency) the reference needs over what sleep-time needs for the same accuracy, read off \
the two Pareto frontiers by linear interpolation. \"max\" is the largest ratio over the accuracies both reach; \"at best common\" \
is the ratio at the highest accuracy both reach. Latency ratios compare median latencies with the prefix KV state prepared on \
both sides (the baseline's c + instructions prefilled while idle: already a little sleep-time work); the last column compares \
against the reference without it, the paper's baseline, which reads c only when q arrives.\n"
    );
    let _ = writeln!(md, "| sleep-time series | reference | tokens: max | tokens: at best common | latency: max | latency: at best common | latency vs reference without KV cache: max / at best common | best accuracy (ref / sleep) |\n|---|---|---|---|---|---|---|---|");
    for r in &summary.iso {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |",
            display_series(&r.series),
            r.reference,
            ratio(r.tokens.max),
            ratio(r.tokens.at_best_common),
            ratio(r.latency.max),
            ratio(r.latency.at_best_common),
            ratio(r.latency_vs_cold.max),
            ratio(r.latency_vs_cold.at_best_common),
            pct(r.tokens.baseline_best),
            pct(r.tokens.sleep_best)
        );
    }

    let _ = writeln!(md, "\n## Per budget: sleep-time minus baseline\n");
    let budgets: Vec<String> = spec.budgets.iter().map(|b| b.label()).collect();
    let sleep_names = sleep_series(summaries);
    let _ = write!(md, "| series |");
    for b in &budgets {
        let _ = write!(md, " {b} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---|".repeat(budgets.len()));
    for s in &sleep_names {
        let _ = write!(md, "| {} |", display_series(s));
        for b in &budgets {
            let cell =
                metrics::head_to_head(records, &format!("{s}/{b}"), &format!("baseline/{b}"))
                    .map_or_else(
                        || "–".into(),
                        |h| {
                            format!(
                                "{:+.1} [{:+.1}, {:+.1}] (n={})",
                                100.0 * h.gap,
                                100.0 * h.gap_lo,
                                100.0 * h.gap_hi,
                                h.n
                            )
                        },
                    );
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nPoints of accuracy, paired over the same questions, with a 95% interval.\n"
    );
    head_to_head_section(&mut md, &summary.head_to_head);

    let _ = writeln!(md, "## Accuracy vs test-time latency\n");
    fig(&mut md, "accuracy_vs_latency", "accuracy vs latency");

    let _ = writeln!(
        md,
        "## Scaling sleep-time compute: k drafts (paper Fig. 7)\n"
    );
    fig(&mut md, "k_scaling", "k-scaling");
    let k_budgets: Vec<String> = spec.k_budgets.iter().map(|b| b.label()).collect();
    let _ = write!(md, "| series |");
    for b in &k_budgets {
        let _ = write!(md, " {b} |");
    }
    // Recall is the point of more drafts (more values in c'), picking among them the cost:
    // both read at the lowest k budget the series has.
    let _ = writeln!(
        md,
        " recall (gold in c') | picks recalled | sleep tokens / context |\n|---|{}---|---|---|",
        "---|".repeat(k_budgets.len())
    );
    for p in &spec.programs {
        for k in &spec.ks {
            let series = format!("{}/k{k}/full", p.program.name());
            let rows: Vec<&ConditionSummary> =
                summaries.iter().filter(|s| s.series == series).collect();
            if rows.is_empty() {
                continue;
            }
            // The series' row at each k budget, in the budgets' order (lowest first).
            let at_budget: Vec<Option<&ConditionSummary>> = k_budgets
                .iter()
                .map(|b| {
                    rows.iter()
                        .copied()
                        .find(|s| s.condition.ends_with(&format!("/{b}")))
                })
                .collect();
            let _ = write!(md, "| {} |", display_series(&series));
            for row in &at_budget {
                let cell = row.map_or_else(
                    || "–".into(),
                    |s| format!("{} (n={})", pct(s.accuracy), s.n),
                );
                let _ = write!(md, " {cell} |");
            }
            let lowest = at_budget.iter().flatten().next().unwrap_or(&rows[0]);
            let _ = writeln!(
                md,
                " {} | {} | {} |",
                opt(lowest.answer_recall, pct),
                opt(lowest.picks_recalled, pct),
                opt(rows[0].sleep_tokens_per_context, |v| num(v, 0))
            );
        }
    }
    let _ = writeln!(
        md,
        "\nk > 1 runs on the first {} contexts only; compare k values on the same contexts.\n",
        spec.k_contexts
            .map_or_else(|| "all".into(), |n| n.to_string())
    );

    if !summary.pass_at_k.is_empty() {
        let _ = writeln!(
            md,
            "## Sleep-time vs pass@k and majority vote (paper Fig. 5)\n"
        );
        fig(&mut md, "pass_at_k", "pass@k and majority vote");
        let _ = writeln!(
            md,
            "| k | tokens | pass@k (oracle) | majority vote |\n|---|---|---|---|"
        );
        for (p, v) in summary.pass_at_k.iter().zip(&summary.majority_vote) {
            let _ = writeln!(
                md,
                "| {} | {} | {} [{}, {}] | {} [{}, {}] |",
                p.k,
                num(p.tokens, 1),
                pct(p.accuracy),
                pct(p.lo),
                pct(p.hi),
                pct(v.accuracy),
                pct(v.lo),
                pct(v.hi)
            );
        }
        let _ = writeln!(md, "\nSamples at temperature {} from the lowest sampled budget; majority vote is the fair parallel baseline at equal test-time tokens.\n", spec.sample_temperature);
    }

    let _ = writeln!(md, "## Context-only ablation (paper App. I)\n");
    let ctx_rows: Vec<&ConditionSummary> = summaries
        .iter()
        .filter(|s| {
            matches!(
                s.spec,
                Condition::Sleep {
                    layout: Layout::ContextOnly,
                    ..
                }
            )
        })
        .collect();
    if ctx_rows.is_empty() {
        let _ = writeln!(md, "Not run.\n");
    } else {
        for s in ctx_rows {
            let full = s.condition.replace("/context-only/", "/full/");
            let f = summaries.iter().find(|x| x.condition == full);
            let _ = writeln!(
                md,
                "- `{}`: {} [{}, {}] without the question, vs `{full}` {} with it.",
                s.condition,
                pct(s.accuracy),
                pct(s.ci.0),
                pct(s.ci.1),
                f.map_or_else(|| "–".into(), |f| pct(f.accuracy))
            );
        }
        let _ = writeln!(md);
    }

    let recall_rows: Vec<&ConditionSummary> = summaries
        .iter()
        .filter(|s| s.answer_recall.is_some())
        .collect();
    // Open recall exists only for aided-open; a column of dashes in every other run says nothing.
    let with_open = recall_rows.iter().any(|s| s.open_recall.is_some());
    let _ = writeln!(md, "## Answer recall, anchoring and routing\n");
    let _ = writeln!(
        md,
        "Recall: share of questions whose gold answer is among the values in c' (computed quantities for the aided program, \
numbers written in the notes for rethink). Picks: of those, the share answered correctly. Anchored: share of answers that are \
a number from c'. Fast path: the model's answer from c' (routed: from the retrieved parts; checked, picked, matched: kept); \
fallback: full reasoning on c + q (routed, checked) or the engine's choice among c''s quantities (picked, matched).{}\n",
        if with_open {
            " Open recall (aided-open): share of questions that one of the open questions in c' answers when its input is \
bound to a number of the question."
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| condition | recall | picks recalled | anchored |{} fast path | fast accuracy | fallback accuracy |\n|---|---|---|---|{}---|---|---|",
        if with_open { " open recall |" } else { "" },
        if with_open { "---|" } else { "" }
    );
    for s in recall_rows {
        let open = if with_open {
            format!(" {} |", opt(s.open_recall, pct))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |{open} {} | {} | {} |",
            s.condition,
            opt(s.answer_recall, pct),
            opt(s.picks_recalled, pct),
            opt(s.answer_in_learned, pct),
            opt(s.fast_share, pct),
            opt(s.fast_accuracy, pct),
            opt(s.fallback_accuracy, pct)
        );
    }
    let fallback = Condition::Baseline {
        budget: spec.route.fallback,
        cold: false,
    };
    route_threshold_table(&mut md, &summary.route_thresholds, &fallback.id());

    let _ = writeln!(
        md,
        "\n## Amortised cost per query (paper Fig. 9){}\n",
        if summary.amortised_measured {
            ""
        } else {
            " — projected"
        }
    );
    if !summary.amortised_measured {
        let _ = writeln!(md, "This run has one question per context, so the amortisation is projected: the same test-time cost and accuracy, the sleep-time cost shared by N questions. The Multi-Query run measures it.\n");
    }
    for p in &spec.programs {
        fig(
            &mut md,
            &format!("amortisation_{}", p.program.name()),
            "amortisation",
        );
    }
    amortisation_table(
        &mut md,
        &summary.amortised,
        lowest,
        summary.amortised_measured,
    );
    let _ = writeln!(
        md,
        "\n(Rows at the lowest budget, {lowest}; every budget is in `summary.json`.)\n"
    );
    if let Some(sub) = &summary.amortised_subset {
        let _ = writeln!(
            md,
            "On the {} of {} contexts with at least {} questions, where the targets are read (a context with fewer shares its sleep-time cost over fewer queries):\n",
            sub.contexts, sub.of, sub.n
        );
        amortisation_table(&mut md, &sub.points, lowest, true);
        md.push('\n');
    }

    let _ = writeln!(md, "## Predictability (paper Fig. 10)\n");
    if summary.predictability.is_empty() {
        let _ = writeln!(md, "Not scored.\n");
    } else {
        fig(&mut md, "predictability", "predictability");
        for (cond, bins) in &summary.predictability {
            let _ = writeln!(
                md,
                "`{cond}` vs `baseline/{lowest}` (bins by log P(q | c) {}):\n",
                if cond.ends_with("(sum)") {
                    "summed"
                } else {
                    "per token"
                }
            );
            let _ = writeln!(md, "| bin | score range | n | sleep-time | baseline | gap [95% CI] |\n|---|---|---|---|---|---|");
            for b in bins {
                let _ = writeln!(
                    md,
                    "| Q{} | {:.2} … {:.2} | {} | {} | {} | {:+.1} [{:+.1}, {:+.1}] |",
                    b.index + 1,
                    b.lo,
                    b.hi,
                    b.n,
                    pct(b.sleep_accuracy),
                    pct(b.baseline_accuracy),
                    100.0 * b.gap,
                    100.0 * b.gap_lo,
                    100.0 * b.gap_hi
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "Predictability is confounded with difficulty and question length (digest §5): read the bins with the baseline column.\n");
    }

    let _ = writeln!(md, "## Per template at the lowest budget ({lowest})\n");
    let mut cols = vec![format!("baseline/{lowest}")];
    for s in &sleep_names {
        if s.contains("/k1/") {
            cols.push(format!("{s}/{lowest}"));
        }
    }
    let table = metrics::by_template(records, &cols);
    if table.len() > 1 {
        let _ = write!(md, "| template |");
        for c in &cols {
            let _ = write!(md, " `{c}` |");
        }
        let _ = writeln!(md, "\n|---|{}", "---|".repeat(cols.len()));
        let mut rows: Vec<(&String, &Vec<(usize, usize)>)> = table.iter().collect();
        rows.sort_by_key(|(t, _)| template_key(t));
        let mut losses = Vec::new();
        for (t, cells) in rows {
            let _ = write!(md, "| {t} |");
            for (c, n) in cells {
                let _ = write!(md, " {c}/{n} |");
            }
            let _ = writeln!(md);
            let base = cells[0];
            if cells[1..].iter().all(|(c, n)| {
                *n > 0 && (*c as f64 / *n as f64) < base.0 as f64 / base.1.max(1) as f64
            }) {
                losses.push(t.clone());
            }
        }
        let _ = writeln!(
            md,
            "\nTemplates where every sleep-time series is below the baseline: {}.\n",
            if losses.is_empty() {
                "none".to_owned()
            } else {
                losses.join(", ")
            }
        );
    } else {
        let _ = writeln!(md, "No template ids in this dataset.\n");
    }
    md
}

/// The amortisation rows at the lowest budget (and program-aided reasoning).
fn amortisation_table(
    md: &mut String,
    points: &[metrics::AmortPoint],
    lowest: &str,
    measured: bool,
) {
    let _ = writeln!(md, "| condition | N | contexts with ≥ N questions | accuracy | cost / query | with input tokens |\n|---|---|---|---|---|---|");
    for a in points
        .iter()
        .filter(|a| a.condition.ends_with(&format!("/{lowest}")) || a.condition == "pal")
    {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            a.condition,
            a.n,
            if measured {
                format!("{}/{}", a.full_contexts, a.contexts)
            } else {
                "–".into()
            },
            pct(a.accuracy),
            num(a.cost, 1),
            num(a.cost_with_input, 1)
        );
    }
}

/// Templates as a short list: numeric order, at most `MAX` named.
fn template_list(templates: &[String]) -> String {
    const MAX: usize = 12;
    if templates.is_empty() {
        return "–".into();
    }
    let mut sorted: Vec<&String> = templates.iter().collect();
    sorted.sort_by_key(|t| template_key(t));
    let named: Vec<&str> = sorted.iter().take(MAX).map(|t| t.as_str()).collect();
    let more = sorted.len().saturating_sub(MAX);
    if more == 0 {
        named.join(", ")
    } else {
        format!("{} (+{more} more)", named.join(", "))
    }
}

fn head_to_head_section(md: &mut String, rows: &[metrics::HeadToHead]) {
    let _ = writeln!(md, "## Each program against the paper's program\n");
    if rows.is_empty() {
        let _ = writeln!(
            md,
            "No program other than rethink ran beside rethink `c' + c + q` at the same budget.\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "Paired over the questions both answered: wins are questions only the program got right, losses questions only \
the paper's program (rethink, `c' + c + q`, same budget) got right; the gap is in points with a 95% interval. Templates: \
where the program got more (ahead) or fewer (behind) of the template's questions right.\n"
    );
    let _ = writeln!(
        md,
        "| condition | vs | n | correct (program / paper's) | test-time tokens (program / paper's) | wins / losses | gap [95% CI] | templates ahead | templates behind |\n|---|---|---|---|---|---|---|---|---|"
    );
    for h in rows {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | {} / {} | {} / {} | {} / {} | {:+.1} [{:+.1}, {:+.1}] | {} | {} |",
            h.condition,
            h.reference,
            h.n,
            h.correct,
            h.reference_correct,
            num(h.tokens, 1),
            num(h.reference_tokens, 1),
            h.wins,
            h.losses,
            100.0 * h.gap,
            100.0 * h.gap_lo,
            100.0 * h.gap_hi,
            template_list(&h.templates_ahead),
            template_list(&h.templates_behind)
        );
    }
    let _ = writeln!(md);
}
