//! `sleeptime demo`: sleep time on built-in contexts, then the same questions answered the
//! test-time-only way and the sleep-time way, side by side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;
use sleeptime_core::{
    learn, parse::numbers_match, Answer, AnswerConfig, AnswerInput, Answerer, BudgetForcing,
    Context, LearnConfig, ProgramChoice, ProgramSettings, SleepBudget, Verbosity,
};

use crate::backend::{self, BackendArgs};
use crate::demo_contexts::DEMO_CONTEXTS;
use crate::progress::SleepSpinner;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The sleep program: rethink (the paper's), aided (expressions computed by the engine),
    /// aided-solve (aided, plus the likely questions solved ahead of time).
    #[arg(long, default_value_t = ProgramChoice::Rethink)]
    pub program: ProgramChoice,
    /// Most memory rewrites per context (the paper allows 10; fewer keeps the demo short).
    #[arg(long, default_value_t = 3)]
    pub max_rethinks: u32,
    /// Most tokens the model writes per sleep step.
    #[arg(long, default_value_t = 512)]
    pub max_step_tokens: u32,
    /// Baseline: verbosity level (4 = step by step).
    #[arg(long, default_value_t = 4)]
    pub baseline_verbosity: u8,
    /// Baseline: token budget (generous; then the answer is forced).
    #[arg(long, default_value_t = 512)]
    pub baseline_tokens: u32,
    /// Sleep-time: verbosity level.
    #[arg(long, default_value_t = 1)]
    pub sleep_verbosity: u8,
    /// Sleep-time: token budget (low; then the answer is forced).
    #[arg(long, default_value_t = 64)]
    pub sleep_tokens: u32,
    /// Answer from c' and the question only (the paper also shows c; default: c' + c).
    #[arg(long)]
    pub learned_only: bool,
    /// Also answer each sleep-time question with a cold prefill of [instructions + c + c'],
    /// to measure what the kept KV state saves.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub measure_kv: bool,
    /// Run only the first N contexts.
    #[arg(long)]
    pub contexts: Option<usize>,
    /// Write every answer and the totals as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct QueryRecord {
    context: String,
    question: String,
    gold: f64,
    baseline: Answer,
    baseline_correct: bool,
    sleep: Answer,
    sleep_correct: bool,
    /// The same sleep-time question with the prefix prefilled again (KV reuse off).
    sleep_cold: Option<Answer>,
}

#[derive(Debug, Serialize)]
struct ContextRecord {
    name: String,
    learned: String,
    sleep_completion_tokens: u64,
    sleep_prompt_tokens: u64,
    sleep_seconds: f64,
    rewrites: u32,
    finished: bool,
    prefix_tokens: u32,
    prefix_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    queries: usize,
    baseline_correct: usize,
    sleep_correct: usize,
    baseline_mean_completion_tokens: f64,
    sleep_mean_completion_tokens: f64,
    /// Baseline test-time tokens per sleep-time test-time token.
    token_ratio: f64,
    baseline_mean_latency: f64,
    sleep_mean_latency: f64,
    latency_ratio: f64,
    sleep_mean_completion_tokens_per_context: f64,
    kv_cached_median_latency: Option<f64>,
    kv_cold_median_latency: Option<f64>,
    kv_latency_ratio: Option<f64>,
    kv_same_answer: Option<usize>,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    command: String,
    model: sleeptime_model::ModelInfo,
    contexts: Vec<ContextRecord>,
    queries: Vec<QueryRecord>,
    summary: Summary,
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

fn mark(correct: bool) -> &'static str {
    if correct {
        "✓"
    } else {
        "✗"
    }
}

fn show(n: Option<f64>) -> String {
    n.map_or_else(|| "-".into(), |n| format!("{n}"))
}

pub async fn run(backend_args: &BackendArgs, args: DemoArgs) -> Result<()> {
    let model = backend::build(backend_args).await?;
    let info = model.info();
    eprintln!(
        "model: {} ({})",
        info.name,
        &info.fingerprint[..info.fingerprint.len().min(16)]
    );
    let baseline_config = AnswerConfig {
        verbosity: Verbosity::new(args.baseline_verbosity)?,
        max_tokens: args.baseline_tokens,
        budget_forcing: Some(BudgetForcing::default()),
        ..AnswerConfig::default()
    };
    let sleep_config = AnswerConfig {
        verbosity: Verbosity::new(args.sleep_verbosity)?,
        max_tokens: args.sleep_tokens,
        budget_forcing: Some(BudgetForcing::default()),
        ..AnswerConfig::default()
    };
    let program = args.program.build(&ProgramSettings {
        max_rethinks: args.max_rethinks,
        ..ProgramSettings::default()
    });
    let learn_config = LearnConfig {
        budget: SleepBudget {
            max_tokens_per_step: args.max_step_tokens,
            ..SleepBudget::default()
        },
        combine: args.program.combine(),
        ..LearnConfig::default()
    };
    let mut contexts = Vec::new();
    let mut queries = Vec::new();
    let chosen = &DEMO_CONTEXTS[..args
        .contexts
        .unwrap_or(DEMO_CONTEXTS.len())
        .min(DEMO_CONTEXTS.len())];
    for demo in chosen {
        let context = Context::new(demo.text)?;
        // Sleep time: the model sees only the context.
        let spinner = SleepSpinner::new(format!("sleep time [{}]", demo.name));
        let learned = learn(
            program.as_ref(),
            model.as_ref(),
            &context,
            &learn_config,
            &spinner,
        )
        .await?;
        let usage = learned.total_usage();
        let stats = &learned.drafts[0].stats;
        spinner.finish(format!(
            "{} rewrites, {} tokens, {:.1}s",
            stats.rewrites, usage.completion_tokens, stats.seconds
        ));
        println!(
            "\n=== {} ===\nContext: {}\n\nLearned context c' (v{}, {}):\n{}\n",
            demo.name, demo.text, learned.version, learned.program, learned.text
        );

        let sleep_answerer = Answerer::new(model.as_ref(), sleep_config);
        let cold_answerer = Answerer::new(
            model.as_ref(),
            AnswerConfig {
                reuse_prefix: false,
                ..sleep_config
            },
        );
        let baseline_answerer = Answerer::new(model.as_ref(), baseline_config);
        let sleep_input = |q| AnswerInput {
            context: (!args.learned_only).then_some(context.text()),
            learned: Some(learned.text.as_str()),
            question: q,
        };
        // Still sleep time: keep the KV state of everything before the question.
        let started = Instant::now();
        let prefix = sleep_answerer.prepare(&sleep_input(None)).await?;
        let prefix_seconds = started.elapsed().as_secs_f64();
        contexts.push(ContextRecord {
            name: demo.name.into(),
            learned: learned.text.clone(),
            sleep_completion_tokens: usage.completion_tokens,
            sleep_prompt_tokens: usage.prompt_tokens,
            sleep_seconds: learned.drafts.iter().map(|d| d.stats.seconds).sum(),
            rewrites: stats.rewrites,
            finished: stats.finished,
            prefix_tokens: prefix.tokens,
            prefix_seconds,
        });

        for (i, &(question, gold)) in demo.queries.iter().enumerate() {
            eprintln!(
                "[{}] question {}/{}: {question}",
                demo.name,
                i + 1,
                demo.queries.len()
            );
            let baseline = baseline_answerer
                .answer(&AnswerInput {
                    context: Some(context.text()),
                    learned: None,
                    question: Some(question),
                })
                .await?;
            let sleep = sleep_answerer.answer(&sleep_input(Some(question))).await?;
            let sleep_cold = if args.measure_kv && info.prefix_state {
                Some(cold_answerer.answer(&sleep_input(Some(question))).await?)
            } else {
                None
            };
            queries.push(QueryRecord {
                context: demo.name.into(),
                question: question.into(),
                gold,
                baseline_correct: baseline.number.is_some_and(|n| numbers_match(n, gold)),
                sleep_correct: sleep.number.is_some_and(|n| numbers_match(n, gold)),
                baseline,
                sleep,
                sleep_cold,
            });
        }
    }

    let n = queries.len().max(1) as f64;
    let mean = |f: &dyn Fn(&QueryRecord) -> f64| queries.iter().map(f).sum::<f64>() / n;
    let baseline_tokens = mean(&|q| q.baseline.usage.completion_tokens as f64);
    let sleep_tokens = mean(&|q| q.sleep.usage.completion_tokens as f64);
    let baseline_latency = mean(&|q| q.baseline.latency);
    let sleep_latency = mean(&|q| q.sleep.latency);
    let cached = median(
        queries
            .iter()
            .filter(|q| q.sleep_cold.is_some())
            .map(|q| q.sleep.latency)
            .collect(),
    );
    let cold = median(
        queries
            .iter()
            .filter_map(|q| q.sleep_cold.as_ref().map(|c| c.latency))
            .collect(),
    );
    let summary = Summary {
        queries: queries.len(),
        baseline_correct: queries.iter().filter(|q| q.baseline_correct).count(),
        sleep_correct: queries.iter().filter(|q| q.sleep_correct).count(),
        baseline_mean_completion_tokens: baseline_tokens,
        sleep_mean_completion_tokens: sleep_tokens,
        token_ratio: baseline_tokens / sleep_tokens.max(1e-9),
        baseline_mean_latency: baseline_latency,
        sleep_mean_latency: sleep_latency,
        latency_ratio: baseline_latency / sleep_latency.max(1e-9),
        sleep_mean_completion_tokens_per_context: contexts
            .iter()
            .map(|c| c.sleep_completion_tokens as f64)
            .sum::<f64>()
            / contexts.len().max(1) as f64,
        kv_cached_median_latency: cached,
        kv_cold_median_latency: cold,
        kv_latency_ratio: cold.zip(cached).map(|(c, w)| c / w.max(1e-9)),
        kv_same_answer: cold.map(|_| {
            queries
                .iter()
                .filter(|q| {
                    q.sleep_cold
                        .as_ref()
                        .is_some_and(|c| c.text == q.sleep.text)
                })
                .count()
        }),
    };

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "context",
        "question",
        "gold",
        "baseline",
        "tok",
        "s",
        "sleep-time",
        "tok",
        "s",
        "speed-up",
    ]);
    for q in &queries {
        table.add_row(vec![
            q.context.clone(),
            q.question.clone(),
            format!("{}", q.gold),
            format!("{} {}", show(q.baseline.number), mark(q.baseline_correct)),
            q.baseline.usage.completion_tokens.to_string(),
            format!("{:.1}", q.baseline.latency),
            format!("{} {}", show(q.sleep.number), mark(q.sleep_correct)),
            q.sleep.usage.completion_tokens.to_string(),
            format!("{:.1}", q.sleep.latency),
            format!("{:.1}x", q.baseline.latency / q.sleep.latency.max(1e-9)),
        ]);
    }
    table.add_row(vec![
        "total".into(),
        format!("{} questions", summary.queries),
        String::new(),
        format!("{}/{}", summary.baseline_correct, summary.queries),
        format!("{baseline_tokens:.0}"),
        format!("{baseline_latency:.1}"),
        format!("{}/{}", summary.sleep_correct, summary.queries),
        format!("{sleep_tokens:.0}"),
        format!("{sleep_latency:.1}"),
        format!("{:.1}x", summary.latency_ratio),
    ]);
    println!("{table}");
    println!(
        "Test-time tokens: baseline {baseline_tokens:.0} vs sleep-time {sleep_tokens:.0} per question ({:.1}x fewer); \
sleep time spent {:.0} tokens per context, shared by {} questions.",
        summary.token_ratio,
        summary.sleep_mean_completion_tokens_per_context,
        queries.len() / contexts.len().max(1)
    );
    if let (Some(c), Some(w), Some(r)) = (cold, cached, summary.kv_latency_ratio) {
        println!(
            "KV reuse: median sleep-time latency {w:.2}s with the kept prefix state vs {c:.2}s re-prefilling c + c' ({r:.1}x faster; same answer text in {}/{}).",
            summary.kv_same_answer.unwrap_or(0),
            queries.len()
        );
    }
    if let Some(out) = &args.out {
        let report = DemoReport {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            model: info,
            contexts,
            queries,
            summary,
        };
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
