//! The arguments and commands of `sleeptime bench`. The binary supplies the models through
//! a [`BackendFactory`] (it knows how to load an embedded GGUF or reach an HTTP server);
//! everything else lives here so it is tested without a model.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use clap::{Args, ValueEnum};
use sleeptime_model::SharedBackend;

use crate::datasets::{self, Split, SplitMode};
use crate::report::{self, ReportOptions};
use crate::runner::{self, Backends, RunOptions};
use crate::spec::{
    self, parse_budgets, DatasetSpec, ExperimentSpec, Layout, ProgramKind, ProgramSpec, PRESETS,
};
use crate::BenchError;

/// How to reproduce the committed runs; shown by `sleeptime bench run --help`.
pub const RUN_HELP: &str = "\
Committed runs (issue 3). From the repository root, on the default embedded model:

  sleeptime bench run --preset symbolic-200                  # generated GSM-Symbolic base set, 200 problems
  sleeptime bench run --preset p1-200                        # generated GSM-Symbolic P1, 200 problems
  sleeptime bench run --preset p2-200                        # released P2 rows, 200 across all templates (seed 0)
  sleeptime bench run --preset multiquery-50                 # Multi-Query on 50 P1 contexts (amortisation)
  sleeptime bench run --preset aime2024                      # Stateful AIME 2024

(The embedded model's window, --ctx-size, defaults to 8192 tokens: enough for k = 10 concatenated
drafts. The window changes no answer, only whether a prompt fits, so it does not invalidate the
call cache.)

Each writes bench/runs/<preset>/ (manifest.json, results.jsonl, report.md, summary.json, plots/) and
caches every model call under bench/cache/ (gitignored). Re-running the same command resumes an
interrupted run and costs nothing for work already done; `sleeptime bench report bench/runs/<preset>`
rewrites the report. `sleeptime bench presets` lists the presets.

Any OpenAI-compatible model instead of the embedded one (use a run name per model):

  sleeptime --backend openai --base-url http://localhost:8000/v1 --remote-model NAME \\
      bench run --preset p2-200 --name p2-200-NAME

Your own problems (JSONL with `question` and `answer` ending in `#### N`):

  sleeptime bench run --dataset my.jsonl --name mine

Flags given with a preset override the preset (e.g. --limit 20 for a quick look, --only 'baseline|rethink/k1'
to run a subset of conditions, --dry-run to see the plan without calling a model).";

/// `--split-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitModeArg {
    /// Sentence-aware split (default).
    Sentences,
    /// The released code's split on every '.', kept to compare with the paper.
    Paper,
}

impl From<SplitModeArg> for SplitMode {
    fn from(m: SplitModeArg) -> Self {
        match m {
            SplitModeArg::Sentences => SplitMode::Sentences,
            SplitModeArg::Paper => SplitMode::Paper,
        }
    }
}

/// Another model for one role (the Multi-Query generator or the predictability scorer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelOverride {
    /// An embedded registry model name or GGUF path.
    pub model: Option<String>,
    /// An OpenAI-compatible server.
    pub base_url: Option<String>,
    pub remote_model: Option<String>,
}

impl ModelOverride {
    pub fn is_set(&self) -> bool {
        self.model.is_some() || self.base_url.is_some() || self.remote_model.is_some()
    }
}

/// A future building a backend.
pub type BuildFuture<'a> = Pin<Box<dyn Future<Output = crate::Result<SharedBackend>> + 'a>>;

/// Builds the models a run uses: `None` is the run's model (the global backend flags),
/// `Some` another model for a role.
pub trait BackendFactory {
    fn build<'a>(&'a self, which: Option<&'a ModelOverride>) -> BuildFuture<'a>;
}

/// `sleeptime bench run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// A committed experiment: symbolic-200, p1-200, p2-200, multiquery-50, aime2024, smoke.
    #[arg(long)]
    pub preset: Option<String>,
    /// Dataset: symbolic, p1, p2 (generated from the templates), p2-release (Apple's rows),
    /// gsm8k, aime2024, aime2025.
    #[arg(long)]
    pub set: Option<String>,
    /// Your own JSONL in GSM-Symbolic format (`question`, `answer` ending in `#### N`).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Problems (contexts) to sample or generate.
    #[arg(long)]
    pub n: Option<usize>,
    /// Seed of sampling, generation, sampled drafts and samples.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How problems are split into context and question.
    #[arg(long, value_enum)]
    pub split_mode: Option<SplitModeArg>,
    /// Test-time budgets, e.g. v0,v1,v2,v3,v4,cap64,cap128,cap256 (`v3:512` sets a cap).
    #[arg(long)]
    pub budgets: Option<String>,
    /// Sleep-time budgets of each program's primary (first) layout at k = 1.
    #[arg(long)]
    pub sleep_budgets: Option<String>,
    /// Budgets of the other layouts at k = 1.
    #[arg(long)]
    pub secondary_budgets: Option<String>,
    /// Budgets answered by one engine-evaluated formula (with each program's c' and
    /// without); `''` for none.
    #[arg(long)]
    pub formula_budgets: Option<String>,
    /// Drafts per learned context, e.g. 1,2,5,10.
    #[arg(long)]
    pub ks: Option<String>,
    /// Budgets for k > 1.
    #[arg(long)]
    pub k_budgets: Option<String>,
    /// Run k > 1 on the first N contexts only (0: all).
    #[arg(long)]
    pub k_contexts: Option<usize>,
    /// Sleep programs and their layouts, the primary one first, e.g.
    /// `rethink=full,learned,context-only;aided=routed,full,learned`. Layouts: full (c' + c +
    /// q), learned (c' + q), routed (retrieved c', fallback when nothing matches), checked
    /// (full, escalated to full reasoning when c' does not back the answer), picked (full; an
    /// answer c' does not hold gives way to the best-matching quantity), matched (full; the
    /// best-matching quantity unless the answer matches as well), context-only.
    #[arg(long)]
    pub programs: Option<String>,
    /// Sampled test-time answers per problem for pass@k and majority vote.
    #[arg(long)]
    pub samples: Option<u32>,
    /// Rethink: most memory rewrites per draft (the paper allows 10).
    #[arg(long)]
    pub max_rethinks: Option<u32>,
    /// Most completion tokens per sleep-time call.
    #[arg(long)]
    pub max_step_tokens: Option<u32>,
    /// Aided: repair rounds.
    #[arg(long)]
    pub repair_rounds: Option<u32>,
    /// Aided-solve: likely questions predicted and solved per draft.
    #[arg(long)]
    pub solve_questions: Option<u32>,
    /// Aided-solve: solutions per question (greedy, then sampled); the majority value is kept.
    #[arg(long)]
    pub solve_samples: Option<u32>,
    /// Aided-open: most open questions kept per context.
    #[arg(long)]
    pub open_questions: Option<u32>,
    /// Multi-Query: verified extra questions per context (enables Multi-Query).
    #[arg(long)]
    pub multi_query: Option<usize>,
    /// Multi-Query: most generation calls per context (default 2).
    #[arg(long)]
    pub mq_calls: Option<usize>,
    /// Multi-Query: full-reasoning samples that verify each generated pair (at least 3;
    /// default 3).
    #[arg(long)]
    pub mq_verify_samples: Option<u32>,
    /// Multi-Query: sampling temperature of the generator (default 0.7).
    #[arg(long)]
    pub mq_temperature: Option<f32>,
    /// Multi-Query: sampling temperature of the verifying samples (default: the generator's).
    #[arg(long)]
    pub mq_verify_temperature: Option<f32>,
    /// Skip the predictability scores.
    #[arg(long)]
    pub no_predictability: bool,
    /// Skip the program-aided test-time conditions.
    #[arg(long)]
    pub no_program_aided: bool,
    /// Also answer the first N problems with the prefix KV state off.
    #[arg(long)]
    pub cold_problems: Option<usize>,
    /// Run name (default: the preset or dataset name): results go to RUNS_DIR/NAME.
    #[arg(long)]
    pub name: Option<String>,
    /// Where run folders go.
    #[arg(long, default_value = "bench/runs")]
    pub runs_dir: PathBuf,
    /// The call cache and other dataset-derived text (keep it out of git).
    #[arg(long, default_value = "bench/cache")]
    pub cache_dir: PathBuf,
    /// The shared data folder (default: $SLEEPTIME_DATA_DIR, else shared/data beside the
    /// checkout the binary was built from, else ../shared/data from the current directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Contexts processed at once (an embedded model serialises its calls anyway).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Only conditions whose id matches this regular expression (e.g. 'baseline|rethink/k1').
    #[arg(long)]
    pub only: Option<String>,
    /// Only the first N problems (contexts).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the plan (problems, conditions, records) and stop, without loading a model.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not write the report after the run.
    #[arg(long)]
    pub no_report: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Multi-Query generator: embedded model (registry name or GGUF path).
    #[arg(long)]
    pub generator_model: Option<String>,
    /// Multi-Query generator: OpenAI-compatible base URL.
    #[arg(long)]
    pub generator_base_url: Option<String>,
    /// Multi-Query generator: model name on that server.
    #[arg(long)]
    pub generator_remote_model: Option<String>,
    /// Predictability scorer: embedded model (registry name or GGUF path).
    #[arg(long)]
    pub scorer_model: Option<String>,
    /// Predictability scorer: OpenAI-compatible base URL (needs prompt log-probabilities).
    #[arg(long)]
    pub scorer_base_url: Option<String>,
    #[arg(long)]
    pub scorer_remote_model: Option<String>,
}

/// `sleeptime bench report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The run folder (bench/runs/NAME).
    pub run_dir: PathBuf,
    /// Cost of a test-time token in sleep-time tokens (the paper: 10).
    #[arg(long, default_value_t = 10.0)]
    pub t: f64,
    /// Cost of an input token relative to an output token, for the input-token variant.
    #[arg(long, default_value_t = 0.25)]
    pub input_weight: f64,
    /// Skip the PNG/SVG figures.
    #[arg(long)]
    pub no_plots: bool,
}

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> crate::Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<T>()
                .map_err(|_| BenchError::invalid(format!("bad {what} {p:?}")))
        })
        .collect()
}

/// `rethink=full,learned;aided=routed` → program specs.
pub fn parse_programs(s: &str) -> crate::Result<Vec<ProgramSpec>> {
    s.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (name, layouts) = part.split_once('=').unwrap_or((part, "full"));
            let program: ProgramKind = name.parse().map_err(BenchError::invalid)?;
            let layouts: Vec<Layout> = layouts
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(BenchError::invalid)?;
            Ok(ProgramSpec { program, layouts })
        })
        .collect()
}

fn dataset_from_set(
    set: &str,
    n: usize,
    seed: u64,
    split_mode: SplitMode,
) -> crate::Result<DatasetSpec> {
    Ok(match set {
        "symbolic" | "base" => DatasetSpec::Generated {
            split: Split::Symbolic,
            n,
            seed,
            split_mode,
        },
        "p1" => DatasetSpec::Generated {
            split: Split::P1,
            n,
            seed,
            split_mode,
        },
        "p2" => DatasetSpec::Generated {
            split: Split::P2,
            n,
            seed,
            split_mode,
        },
        "p2-release" => DatasetSpec::P2 {
            n,
            seed,
            split_mode,
        },
        "gsm8k" => DatasetSpec::Gsm8k {
            n,
            seed,
            split_mode,
        },
        "aime2024" => DatasetSpec::Aime { year: 2024 },
        "aime2025" => DatasetSpec::Aime { year: 2025 },
        other => {
            return Err(BenchError::invalid(format!(
                "unknown --set {other:?} (symbolic, p1, p2, p2-release, gsm8k, aime2024, aime2025)"
            )))
        }
    })
}

/// The spec, run name and preset the arguments describe.
pub fn build_spec(args: &RunArgs) -> crate::Result<(ExperimentSpec, String, Option<String>)> {
    let mut spec = match &args.preset {
        Some(p) => spec::preset(p).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            BenchError::invalid(format!(
                "unknown preset {p:?} (known: {})",
                names.join(", ")
            ))
        })?,
        None => ExperimentSpec::new(DatasetSpec::Generated {
            split: Split::Symbolic,
            n: 50,
            seed: 0,
            split_mode: SplitMode::Sentences,
        }),
    };
    // Dataset overrides: a whole new dataset, or the size/seed/split of the preset's.
    let split_mode = args.split_mode.map(SplitMode::from);
    if let Some(path) = &args.dataset {
        spec.dataset = DatasetSpec::Jsonl {
            path: path.clone(),
            n: args.n,
            seed: args.seed.unwrap_or(0),
            split_mode: split_mode.unwrap_or_default(),
        };
    } else if let Some(set) = &args.set {
        spec.dataset = dataset_from_set(
            set,
            args.n.unwrap_or(50),
            args.seed.unwrap_or(0),
            split_mode.unwrap_or_default(),
        )?;
    } else {
        match &mut spec.dataset {
            DatasetSpec::P2 {
                n,
                seed,
                split_mode: m,
            }
            | DatasetSpec::Generated {
                n,
                seed,
                split_mode: m,
                ..
            }
            | DatasetSpec::Gsm8k {
                n,
                seed,
                split_mode: m,
            } => {
                *n = args.n.unwrap_or(*n);
                *seed = args.seed.unwrap_or(*seed);
                *m = split_mode.unwrap_or(*m);
            }
            DatasetSpec::Jsonl {
                n,
                seed,
                split_mode: m,
                ..
            } => {
                *n = args.n.or(*n);
                *seed = args.seed.unwrap_or(*seed);
                *m = split_mode.unwrap_or(*m);
            }
            DatasetSpec::Aime { .. } => {}
        }
    }
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    if let Some(b) = &args.budgets {
        spec.budgets = parse_budgets(b).map_err(BenchError::invalid)?;
    }
    if let Some(b) = &args.sleep_budgets {
        spec.sleep_budgets = parse_budgets(b).map_err(BenchError::invalid)?;
    }
    if let Some(b) = &args.secondary_budgets {
        spec.secondary_budgets = parse_budgets(b).map_err(BenchError::invalid)?;
    }
    if let Some(b) = &args.formula_budgets {
        spec.formula_budgets = parse_budgets(b).map_err(BenchError::invalid)?;
    }
    if let Some(k) = &args.ks {
        spec.ks = parse_list(k, "k")?;
    }
    if let Some(b) = &args.k_budgets {
        spec.k_budgets = parse_budgets(b).map_err(BenchError::invalid)?;
    }
    if let Some(n) = args.k_contexts {
        spec.k_contexts = (n > 0).then_some(n);
    }
    if let Some(p) = &args.programs {
        spec.programs = parse_programs(p)?;
    }
    if let Some(s) = args.samples {
        spec.samples = s;
    }
    if let Some(v) = args.max_rethinks {
        spec.sleep.program.max_rethinks = v;
    }
    if let Some(v) = args.max_step_tokens {
        spec.sleep.max_tokens_per_step = v;
    }
    if let Some(v) = args.solve_questions {
        spec.sleep.program.solve_questions = v;
    }
    if let Some(v) = args.repair_rounds {
        spec.sleep.program.repair_rounds = v;
    }
    if let Some(v) = args.solve_samples {
        if v == 0 {
            return Err(BenchError::invalid("--solve-samples must be at least 1"));
        }
        spec.sleep.program.solve_samples = v;
    }
    if let Some(v) = args.open_questions {
        if v == 0 {
            return Err(BenchError::invalid(
                "--open-questions must be at least 1 (to run without them, leave aided-open out of --programs)",
            ));
        }
        spec.sleep.program.open_questions = v;
    }
    if let Some(extra) = args.multi_query {
        let mut mq = spec.multi_query.clone().unwrap_or_default();
        mq.extra = extra;
        mq.per_call = mq.per_call.max(extra + 2);
        spec.multi_query = (extra > 0).then_some(mq);
    }
    let mq_knobs = args.mq_calls.is_some()
        || args.mq_verify_samples.is_some()
        || args.mq_temperature.is_some()
        || args.mq_verify_temperature.is_some();
    if mq_knobs {
        let Some(mq) = spec.multi_query.as_mut() else {
            return Err(BenchError::invalid(
                "--mq-calls, --mq-verify-samples and the --mq-*temperature flags set up Multi-Query: add --multi-query N",
            ));
        };
        if let Some(v) = args.mq_calls {
            mq.max_calls = v;
        }
        if let Some(v) = args.mq_verify_samples {
            mq.verify_samples = v;
        }
        if let Some(v) = args.mq_temperature {
            mq.temperature = v;
        }
        if let Some(v) = args.mq_verify_temperature {
            mq.verify_temperature = Some(v);
        }
    }
    if args.no_predictability {
        spec.predictability = false;
    }
    if args.no_program_aided {
        spec.program_aided = false;
    }
    if let Some(c) = args.cold_problems {
        spec.cold_problems = c;
    }
    spec.validate().map_err(BenchError::invalid)?;
    let name = args
        .name
        .clone()
        .or_else(|| args.preset.clone())
        .unwrap_or_else(|| spec.dataset.name());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(BenchError::invalid(format!(
            "run name {name:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok((spec, name, args.preset.clone()))
}

/// The plan of a run: problems, conditions and records, without calling a model; `only`
/// keeps the conditions whose id it matches, as `--only` does for the run.
pub fn plan_text(
    spec: &ExperimentSpec,
    data_dir: &std::path::Path,
    limit: Option<usize>,
    only: Option<&regex::Regex>,
) -> crate::Result<String> {
    let mut dataset = spec.dataset.load(data_dir)?;
    if let Some(l) = limit {
        dataset.problems.truncate(l);
    }
    let mut per_condition: std::collections::BTreeMap<String, usize> =
        std::collections::BTreeMap::new();
    for i in 0..dataset.problems.len() {
        for c in spec
            .conditions_for(i)
            .into_iter()
            .filter(|c| only.is_none_or(|re| re.is_match(&c.id())))
        {
            *per_condition.entry(c.series()).or_default() += 1;
        }
    }
    let total: usize = per_condition.values().sum();
    let mut out = format!(
        "dataset {} ({} problems{}), {} records in {} series, sleepers {:?}\n",
        dataset.name,
        dataset.problems.len(),
        spec.multi_query
            .as_ref()
            .map_or_else(String::new, |m| format!(
                ", + up to {} generated questions each",
                m.extra
            )),
        total,
        per_condition.len(),
        spec.sleepers()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    for (series, n) in per_condition {
        out.push_str(&format!("  {series}: {n}\n"));
    }
    Ok(out)
}

/// `sleeptime bench run`.
pub async fn run_command(args: RunArgs, factory: &dyn BackendFactory) -> crate::Result<()> {
    let (spec, name, preset) = build_spec(&args)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(datasets::data_dir);
    let only = args
        .only
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| {
            BenchError::invalid(format!("--only is not a valid regular expression: {e}"))
        })?;
    if args.dry_run {
        print!(
            "{}",
            plan_text(&spec, &data_dir, args.limit, only.as_ref())?
        );
        return Ok(());
    }
    let generator = ModelOverride {
        model: args.generator_model.clone(),
        base_url: args.generator_base_url.clone(),
        remote_model: args.generator_remote_model.clone(),
    };
    let scorer = ModelOverride {
        model: args.scorer_model.clone(),
        base_url: args.scorer_base_url.clone(),
        remote_model: args.scorer_remote_model.clone(),
    };
    let model = factory.build(None).await?;
    let generator = if generator.is_set() {
        Some(factory.build(Some(&generator)).await?)
    } else {
        None
    };
    let scorer = if scorer.is_set() {
        Some(factory.build(Some(&scorer)).await?)
    } else {
        None
    };
    let options = RunOptions {
        name: name.clone(),
        preset,
        run_dir: args.runs_dir.join(&name),
        cache_dir: args.cache_dir.clone(),
        data_dir,
        concurrency: args.concurrency,
        show_progress: !args.quiet,
        command_line: std::env::args().collect(),
        only,
        limit: args.limit,
    };
    let summary = runner::run(
        &spec,
        Backends {
            model,
            generator,
            scorer,
        },
        &options,
    )
    .await?;
    eprintln!(
        "{}: {} records ({} new, {} already done, {} with errors); call cache {} hits, {} misses",
        summary.run_dir.display(),
        summary.records,
        summary.written,
        summary.skipped,
        summary.errors,
        summary.cache_hits,
        summary.cache_misses
    );
    if !args.no_report {
        let files = report::write_report(&summary.run_dir, &ReportOptions::default())?;
        eprintln!("report: {}", files.markdown.display());
    }
    Ok(())
}

/// `sleeptime bench report`.
pub fn report_command(args: &ReportArgs) -> crate::Result<()> {
    let options = ReportOptions {
        t: args.t,
        input_weight: args.input_weight,
        plots: !args.no_plots,
        ..ReportOptions::default()
    };
    let files = report::write_report(&args.run_dir, &options)?;
    println!("{}", files.markdown.display());
    for f in files.figures {
        println!("{}", f.display());
    }
    Ok(())
}

/// `sleeptime bench presets`.
pub fn presets_text() -> String {
    let mut out = String::new();
    for p in PRESETS {
        out.push_str(&format!(
            "{:<14} {}\n{:<14} {}\n",
            p.name, p.about, "", p.command
        ));
        if let Some(folder) = p.committed_folder() {
            out.push_str(&format!(
                "{:<14} committed: {folder} (narrower conditions; its report.md heads with the exact command)\n",
                ""
            ));
        }
    }
    out
}
