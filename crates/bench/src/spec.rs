//! What an experiment runs: the dataset, the conditions (who sees what, at which budget),
//! and the settings of the sleep programs. Everything here is plain data, serialised into
//! the run manifest, so a run directory says exactly how it was made.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sleeptime_core::PickRule;

use crate::datasets::{
    self, symbolic::Generator, symbolic::GeneratorOptions, Dataset, Split, SplitMode,
};
use crate::{BenchError, BenchErrorKind};

/// A test-time budget: a verbosity level (paper §7.1) and a completion-token cap. When the
/// reasoning hits the cap the final answer is forced (budget forcing), so a cap is also a
/// budget knob of its own (`cap128` = step-by-step reasoning cut at 128 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Budget {
    pub verbosity: u8,
    pub max_tokens: u32,
    /// True for a budget-forcing cap (named by its cap rather than its verbosity).
    #[serde(default)]
    pub cap: bool,
}

/// Default token cap of each verbosity level: generous, so a level is limited by its prompt,
/// not by the cap. Level 4 (step by step) gets room to finish its reasoning, so the baseline
/// is never starved into losing (the share of answers cut off is reported anyway).
pub const DEFAULT_CAPS: [u32; 5] = [48, 96, 160, 384, 1024];

impl Budget {
    /// Verbosity `level` with its default cap.
    pub fn level(level: u8) -> Self {
        let i = usize::from(level.min(4));
        Self {
            verbosity: level.min(4),
            max_tokens: DEFAULT_CAPS[i],
            cap: false,
        }
    }

    /// Step-by-step reasoning (verbosity 4) cut at `tokens`, then the answer is forced.
    pub fn forced(tokens: u32) -> Self {
        Self {
            verbosity: 4,
            max_tokens: tokens,
            cap: true,
        }
    }

    /// Short label: `v0`..`v4`, `v4:2048` for a level with a non-default cap, `cap128`.
    pub fn label(&self) -> String {
        if self.cap {
            if self.verbosity == 4 {
                format!("cap{}", self.max_tokens)
            } else {
                format!("v{}cap{}", self.verbosity, self.max_tokens)
            }
        } else if self.max_tokens == DEFAULT_CAPS[usize::from(self.verbosity.min(4))] {
            format!("v{}", self.verbosity)
        } else {
            format!("v{}:{}", self.verbosity, self.max_tokens)
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Budget {
    type Err = String;

    /// `v0`..`v4`, `v3:512` (level with its own cap), `cap128` (level 4 cut at 128),
    /// `v2cap64` (level 2 cut at 64).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("budget {s:?}: expected v0..v4, v3:512, cap128 or v2cap64");
        if let Some(rest) = s.strip_prefix("cap") {
            let tokens: u32 = rest.parse().map_err(|_| bad())?;
            return Ok(Self::forced(tokens));
        }
        let rest = s.strip_prefix('v').ok_or_else(bad)?;
        let level_text: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let level: u8 = level_text.parse().map_err(|_| bad())?;
        if level > 4 {
            return Err(bad());
        }
        let tail = &rest[level_text.len()..];
        if tail.is_empty() {
            Ok(Self::level(level))
        } else if let Some(n) = tail.strip_prefix(':') {
            Ok(Self {
                verbosity: level,
                max_tokens: n.parse().map_err(|_| bad())?,
                cap: false,
            })
        } else if let Some(n) = tail.strip_prefix("cap") {
            Ok(Self {
                verbosity: level,
                max_tokens: n.parse().map_err(|_| bad())?,
                cap: true,
            })
        } else {
            Err(bad())
        }
    }
}

/// Parse a comma-separated budget list.
pub fn parse_budgets(s: &str) -> Result<Vec<Budget>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// A sleep-time program: the engine's list of shipped programs.
pub use sleeptime_core::ProgramChoice as ProgramKind;

/// What the answering model sees in a sleep-time condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `c' + c + q`, as the paper does.
    Full,
    /// `c' + q`.
    Learned,
    /// The parts of `c'` retrieved for `q`, `+ c + q`; low retrieval confidence falls back
    /// to full reasoning on `c + q` (structured programs only).
    Routed,
    /// `c' + c` without the question (the paper's context-only ablation, App. I).
    ContextOnly,
    /// `c' + c + q` as [`Layout::Full`]; when the answer is not one of the values `c'` holds
    /// (an answer `c'` does not back), escalate to full reasoning on `c + q` at the route's
    /// fallback budget.
    Checked,
    /// `c' + c + q` as [`Layout::Full`]; an answer `c'` does not hold gives way to the
    /// quantity that best matches the question (`PickRule::BackedFirst`; no model call).
    Picked,
    /// `c' + c + q` as [`Layout::Full`]; the quantity that best matches the question wins
    /// unless the model's answer matches as well (`PickRule::MatchFirst`; no model call).
    Matched,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Full => "full",
            Layout::Learned => "learned",
            Layout::Routed => "routed",
            Layout::ContextOnly => "context-only",
            Layout::Checked => "checked",
            Layout::Picked => "picked",
            Layout::Matched => "matched",
        }
    }

    /// How the layout reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Full => "c' + c + q",
            Layout::Learned => "c' + q",
            Layout::Routed => "retrieved c' + c + q (fallback: c + q)",
            Layout::ContextOnly => "c' + c, no q",
            Layout::Checked => "c' + c + q (escalation: c + q when c' does not back the answer)",
            Layout::Picked => {
                "c' + c + q (an answer c' does not hold gives way to the best-matching quantity)"
            }
            Layout::Matched => {
                "c' + c + q (the best-matching quantity, unless the answer matches as well)"
            }
        }
    }

    /// The engine's choice among `c'`'s quantities that follows the model's reply, for the
    /// layouts that make one.
    pub fn pick_rule(self) -> Option<PickRule> {
        match self {
            Layout::Picked => Some(PickRule::BackedFirst),
            Layout::Matched => Some(PickRule::MatchFirst),
            _ => None,
        }
    }
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "full" => Ok(Self::Full),
            "learned" => Ok(Self::Learned),
            "routed" => Ok(Self::Routed),
            "context-only" | "context_only" => Ok(Self::ContextOnly),
            "checked" => Ok(Self::Checked),
            "picked" => Ok(Self::Picked),
            "matched" => Ok(Self::Matched),
            other => Err(format!(
                "unknown layout {other:?} (full, learned, routed, context-only, checked, picked, matched)"
            )),
        }
    }
}

/// A sleep program with its number of drafts: what one learned context is made by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sleeper {
    pub program: ProgramKind,
    pub k: usize,
}

impl fmt::Display for Sleeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/k{}", self.program.name(), self.k)
    }
}

/// One way of answering a question; a run evaluates every condition on every problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// Test-time only: `c + q`. `cold` answers with the prefix KV state switched off.
    Baseline {
        budget: Budget,
        #[serde(default)]
        cold: bool,
    },
    /// One sampled test-time-only answer (temperature > 0), for pass@k and majority vote.
    Sample { budget: Budget, index: u32 },
    /// Sleep-time: answer with `c'` from `sleeper` in `layout` at `budget`.
    Sleep {
        sleeper: Sleeper,
        layout: Layout,
        budget: Budget,
        #[serde(default)]
        cold: bool,
    },
    /// Program-aided answering at test time (the model writes expressions, the engine
    /// computes them), without `c'` (the fair test-time baseline) or with it.
    Program { sleeper: Option<Sleeper> },
    /// One formula at `budget`'s token cap, evaluated by the engine: over the question's
    /// numbers and `c'`'s quantity names (with `sleeper`), or over `c + q` alone (the same
    /// tool at the same budget without sleep time).
    Formula {
        sleeper: Option<Sleeper>,
        budget: Budget,
    },
    /// Predictability: log P(q | c) under the scoring model.
    Score,
}

impl Condition {
    /// Stable id, the key of results: `baseline/v0`, `rethink/k1/full/v2`,
    /// `baseline/v0/s3`, `pal`, `aided/k1/pal`, `formula/v0`, `aided/k1/formula/v0`, `score`,
    /// with `/cold` for cold prefills.
    pub fn id(&self) -> String {
        match self {
            Condition::Baseline { budget, cold } => {
                format!("baseline/{budget}{}", if *cold { "/cold" } else { "" })
            }
            Condition::Sample { budget, index } => format!("baseline/{budget}/s{index}"),
            Condition::Sleep {
                sleeper,
                layout,
                budget,
                cold,
            } => {
                format!(
                    "{sleeper}/{}/{budget}{}",
                    layout.name(),
                    if *cold { "/cold" } else { "" }
                )
            }
            Condition::Program { sleeper: None } => "pal".into(),
            Condition::Program { sleeper: Some(s) } => format!("{s}/pal"),
            Condition::Formula {
                sleeper: None,
                budget,
            } => format!("formula/{budget}"),
            Condition::Formula {
                sleeper: Some(s),
                budget,
            } => format!("{s}/formula/{budget}"),
            Condition::Score => "score".into(),
        }
    }

    /// The curve a condition belongs to: its id without the budget (`baseline`,
    /// `rethink/k1/full`, `baseline/cold`); samples have their own series per budget.
    pub fn series(&self) -> String {
        match self {
            Condition::Baseline { cold, .. } => {
                format!("baseline{}", if *cold { "/cold" } else { "" })
            }
            Condition::Sample { budget, .. } => format!("baseline/{budget}/samples"),
            Condition::Sleep {
                sleeper,
                layout,
                cold,
                ..
            } => {
                format!(
                    "{sleeper}/{}{}",
                    layout.name(),
                    if *cold { "/cold" } else { "" }
                )
            }
            Condition::Formula { sleeper: None, .. } => "formula".into(),
            Condition::Formula {
                sleeper: Some(s), ..
            } => format!("{s}/formula"),
            other => other.id(),
        }
    }

    pub fn budget(&self) -> Option<Budget> {
        match self {
            Condition::Baseline { budget, .. }
            | Condition::Sample { budget, .. }
            | Condition::Sleep { budget, .. }
            | Condition::Formula { budget, .. } => Some(*budget),
            _ => None,
        }
    }

    pub fn sleeper(&self) -> Option<Sleeper> {
        match self {
            Condition::Sleep { sleeper, .. } => Some(*sleeper),
            Condition::Program { sleeper } | Condition::Formula { sleeper, .. } => *sleeper,
            _ => None,
        }
    }

    /// Whether this condition answers a question (everything but `Score`).
    pub fn answers(&self) -> bool {
        !matches!(self, Condition::Score)
    }

    pub fn is_cold(&self) -> bool {
        matches!(
            self,
            Condition::Baseline { cold: true, .. } | Condition::Sleep { cold: true, .. }
        )
    }

    /// Test-time only (no `c'` involved).
    pub fn is_test_time_only(&self) -> bool {
        matches!(
            self,
            Condition::Baseline { .. }
                | Condition::Sample { .. }
                | Condition::Program { sleeper: None }
                | Condition::Formula { sleeper: None, .. }
        )
    }
}

/// Which problems to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DatasetSpec {
    /// Apple's released GSM-Symbolic P2 rows, `n` sampled across all templates.
    P2 {
        n: usize,
        seed: u64,
        split_mode: SplitMode,
    },
    /// Instances generated from the GSM-Symbolic templates of `split` (symbolic = base,
    /// GSM8K difficulty; p1; p2).
    Generated {
        split: Split,
        n: usize,
        seed: u64,
        split_mode: SplitMode,
    },
    /// GSM8K test, `n` sampled.
    Gsm8k {
        n: usize,
        seed: u64,
        split_mode: SplitMode,
    },
    /// Stateful AIME of a year (2024 or 2025), every problem.
    Aime { year: u16 },
    /// Any JSONL in GSM-Symbolic format (`question`, `answer` ending in `#### N`).
    Jsonl {
        path: PathBuf,
        n: Option<usize>,
        seed: u64,
        split_mode: SplitMode,
    },
}

impl DatasetSpec {
    /// Short name for run names and reports.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::P2 { n, .. } => format!("p2-{n}"),
            DatasetSpec::Generated { split, n, .. } => format!("{}-{n}", split.dir_name()),
            DatasetSpec::Gsm8k { n, .. } => format!("gsm8k-{n}"),
            DatasetSpec::Aime { year } => format!("aime{year}"),
            DatasetSpec::Jsonl { path, .. } => path
                .file_stem()
                .map_or_else(|| "jsonl".into(), |s| s.to_string_lossy().into_owned()),
        }
    }

    /// Load the problems from `data_dir` (the shared data folder). Everything derived from
    /// GSM-Symbolic is built here in memory and never written out.
    pub fn load(&self, data_dir: &Path) -> crate::Result<Dataset> {
        if !matches!(self, DatasetSpec::Jsonl { .. }) && !data_dir.is_dir() {
            return Err(BenchError::new(
                BenchErrorKind::Dataset,
                format!(
                    "the benchmark data folder {} does not exist: pass --data-dir DIR or set {} \
                     (a checkout expects it at ../shared/data, beside the checkout)",
                    data_dir.display(),
                    datasets::DATA_DIR_ENV
                ),
            ));
        }
        let gsm = data_dir.join("gsm_symbolic");
        let dataset = match self {
            DatasetSpec::P2 {
                n,
                seed,
                split_mode,
            } => {
                let all = datasets::load_gsm_p2(gsm.join("GSM_p2.jsonl"), *split_mode)?;
                Dataset {
                    name: format!("gsm-symbolic-p2-s{seed}"),
                    problems: datasets::sample_stratified(&all.problems, *n, *seed),
                }
            }
            DatasetSpec::Generated {
                split,
                n,
                seed,
                split_mode,
            } => {
                let options = GeneratorOptions {
                    split_mode: *split_mode,
                    ..GeneratorOptions::default()
                };
                let generator = Generator::load_with(gsm.join("templates"), *split, options)
                    .map_err(|e| {
                        BenchError::from(e).within(&format!("cannot load the {split} templates"))
                    })?;
                Dataset {
                    name: format!("gen-{split}-s{seed}"),
                    problems: generator.generate(*n, *seed),
                }
            }
            DatasetSpec::Gsm8k {
                n,
                seed,
                split_mode,
            } => {
                let all = datasets::load_gsm8k(data_dir.join("gsm8k/test.jsonl"), *split_mode)?;
                // Only problems with a context: a one-sentence problem has nothing to sleep on.
                let with_context: Vec<_> = all
                    .problems
                    .into_iter()
                    .filter(|p| !p.context.trim().is_empty())
                    .collect();
                Dataset {
                    name: format!("gsm8k-s{seed}"),
                    problems: datasets::sample_stratified(&with_context, *n, *seed),
                }
            }
            DatasetSpec::Aime { year } => datasets::load_aime(
                data_dir.join(format!("aime_{year}/aime_{year}_matharena.jsonl")),
            )?,
            DatasetSpec::Jsonl {
                path,
                n,
                seed,
                split_mode,
            } => {
                let all = datasets::load_jsonl(path, *split_mode)?;
                match n {
                    Some(n) => Dataset {
                        name: all.name.clone(),
                        problems: datasets::sample_stratified(&all.problems, *n, *seed),
                    },
                    None => all,
                }
            }
        };
        if dataset.is_empty() {
            return Err(BenchError::new(
                BenchErrorKind::Dataset,
                format!("dataset {} has no problems", self.name()),
            ));
        }
        Ok(dataset)
    }
}

/// A sleep program and the layouts its `c'` is answered in; the first layout is the primary
/// one (run at every sleep-time budget), the others run at the secondary budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSpec {
    pub program: ProgramKind,
    pub layouts: Vec<Layout>,
}

/// Settings of the sleep programs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepSettings {
    /// Rethink's rewrites per draft (the paper allows up to 10), aided's repair rounds and
    /// aided-solve's solved questions; flat in the manifest, as before they were grouped.
    #[serde(flatten)]
    pub program: sleeptime_core::ProgramSettings,
    /// Most completion tokens per sleep-time model call.
    pub max_tokens_per_step: u32,
    /// Temperature of the drafts when k > 1 (k = 1 is greedy).
    pub sampled_temperature: f32,
}

impl Default for SleepSettings {
    fn default() -> Self {
        Self {
            program: sleeptime_core::ProgramSettings {
                max_rethinks: 3,
                ..Default::default()
            },
            max_tokens_per_step: 512,
            sampled_temperature: 0.7,
        }
    }
}

/// Settings of retrieval routing (issue 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSettings {
    /// Most quantities passed to the answerer.
    pub top_n: usize,
    /// Lowest retrieval confidence for the fast path.
    pub min_confidence: f64,
    /// Budget of the full-reasoning fallback (on `c + q`), also the escalation budget of the
    /// checked layout.
    pub fallback: Budget,
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self {
            top_n: 8,
            min_confidence: 0.2,
            fallback: Budget::level(4),
        }
    }
}

/// Multi-Query: extra question/answer pairs generated per context (paper §2.3, Fig. 19).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiQuerySpec {
    /// Verified extra questions wanted per context (beside the original).
    pub extra: usize,
    /// Pairs asked for per generation call.
    pub per_call: usize,
    /// Generation calls at most per context (each with its own seed).
    pub max_calls: usize,
    /// Full-reasoning samples in the independent solve; a pair is kept when their majority
    /// agrees with its answer.
    pub verify_samples: u32,
    /// Temperature of the generator, and of the verifying samples unless
    /// `verify_temperature` is set.
    pub temperature: f32,
    /// Temperature of the verifying samples, set apart from the generator's so that a
    /// verifier can sample cooler (on the 1.5B default it did not help: `bench/README.md`).
    /// Left out of the serialised spec when unset, so generated sets cached before it keep
    /// their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_temperature: Option<f32>,
}

impl MultiQuerySpec {
    /// The temperature of the verifying samples.
    pub fn verify_temperature(&self) -> f32 {
        self.verify_temperature.unwrap_or(self.temperature)
    }
}

impl Default for MultiQuerySpec {
    fn default() -> Self {
        Self {
            extra: 9,
            per_call: 12,
            max_calls: 2,
            verify_samples: 3,
            temperature: 0.7,
            verify_temperature: None,
        }
    }
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub dataset: DatasetSpec,
    /// Test-time-only budgets (and the sleep-time ones when `sleep_budgets` is empty).
    pub budgets: Vec<Budget>,
    /// Sleep-time budgets of each program's first (primary) layout at k = 1 (empty: the
    /// same as `budgets`).
    pub sleep_budgets: Vec<Budget>,
    /// Budgets of the other layouts at k = 1 (fewer, to keep runs affordable).
    pub secondary_budgets: Vec<Budget>,
    /// Sleep programs; each one's first layout is its primary one.
    pub programs: Vec<ProgramSpec>,
    /// Drafts per learned context (the paper: 1, 2, 5, 10).
    pub ks: Vec<usize>,
    /// Budgets for k > 1 (k-scaling).
    pub k_budgets: Vec<Budget>,
    /// Layout used for k > 1.
    pub k_layouts: Vec<Layout>,
    /// Run k > 1 only on the first N contexts (`None`: all).
    pub k_contexts: Option<usize>,
    /// Program-aided test-time answering: without `c'` (baseline) and with the aided `c'`.
    pub program_aided: bool,
    pub pal_max_tokens: u32,
    /// Budgets at which questions are answered by one engine-evaluated formula, with each
    /// program's `c'` (k = 1) and without (older manifests: none).
    #[serde(default)]
    pub formula_budgets: Vec<Budget>,
    /// Sampled answers per problem for pass@k and majority vote, at `sample_budgets`.
    pub samples: u32,
    pub sample_budgets: Vec<Budget>,
    pub sample_temperature: f32,
    /// Score log P(q | c) for the predictability analysis.
    pub predictability: bool,
    /// Also answer the first N problems with the prefix KV state off (lowest budget), to
    /// measure latency without the cached prefix.
    pub cold_problems: usize,
    pub sleep: SleepSettings,
    pub route: RouteSettings,
    pub multi_query: Option<MultiQuerySpec>,
    /// Seed of sampled drafts, samples and generation.
    pub seed: u64,
}

impl ExperimentSpec {
    /// A spec with the default conditions on `dataset`.
    pub fn new(dataset: DatasetSpec) -> Self {
        Self {
            dataset,
            budgets: vec![
                Budget::level(0),
                Budget::level(1),
                Budget::level(2),
                Budget::level(3),
                Budget::level(4),
                Budget::forced(64),
                Budget::forced(128),
                Budget::forced(256),
            ],
            sleep_budgets: (0..=4).map(Budget::level).collect(),
            secondary_budgets: vec![Budget::level(0), Budget::level(2)],
            programs: vec![
                ProgramSpec {
                    program: ProgramKind::Rethink,
                    layouts: vec![Layout::Full, Layout::Learned, Layout::ContextOnly],
                },
                ProgramSpec {
                    program: ProgramKind::Aided,
                    layouts: vec![Layout::Routed, Layout::Full, Layout::Learned],
                },
            ],
            ks: vec![1, 2, 5, 10],
            k_budgets: vec![Budget::level(0), Budget::level(2)],
            k_layouts: vec![
                Layout::Full,
                Layout::Routed,
                Layout::Picked,
                Layout::Matched,
            ],
            k_contexts: Some(20),
            program_aided: true,
            pal_max_tokens: 384,
            formula_budgets: vec![Budget::level(0)],
            samples: 8,
            sample_budgets: vec![Budget::level(0)],
            sample_temperature: 0.7,
            predictability: true,
            cold_problems: 20,
            sleep: SleepSettings::default(),
            route: RouteSettings::default(),
            multi_query: None,
            seed: 0,
        }
    }

    fn k1_budgets(&self) -> &[Budget] {
        if self.sleep_budgets.is_empty() {
            &self.budgets
        } else {
            &self.sleep_budgets
        }
    }

    /// The lowest test-time budget (the least verbose level, then the smallest cap): where
    /// the context-only ablation and cold prefills run, and where the predictability gap and
    /// the +15-point target are read (the paper's "Verbosity 0").
    pub fn lowest_budget(&self) -> Option<Budget> {
        self.budgets
            .iter()
            .copied()
            .min_by_key(|b| (b.verbosity, b.max_tokens))
    }

    /// Check the spec for combinations that cannot run.
    pub fn validate(&self) -> Result<(), String> {
        if self.budgets.is_empty() {
            return Err("at least one test-time budget is needed".into());
        }
        if self.ks.contains(&0) {
            return Err("k must be at least 1".into());
        }
        for p in &self.programs {
            if !p.program.is_structured() && p.layouts.contains(&Layout::Routed) {
                return Err(
                    "the routed layout needs a structured c' (the aided program), not rethink"
                        .into(),
                );
            }
        }
        if let Some(mq) = &self.multi_query {
            if mq.verify_samples < 3 {
                return Err("multi-query verification needs at least 3 samples".into());
            }
            if mq.max_calls == 0 {
                return Err("multi-query needs at least 1 generation call per context".into());
            }
            for (what, t) in [
                ("generation", mq.temperature),
                ("verification", mq.verify_temperature()),
            ] {
                if !(0.0..=2.0).contains(&t) {
                    return Err(format!(
                        "multi-query {what} temperature {t} is outside 0 to 2"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The conditions for the problem whose context is the `context_index`-th of the run
    /// (k > 1 and cold prefills run only on the first contexts).
    pub fn conditions_for(&self, context_index: usize) -> Vec<Condition> {
        let mut out = Vec::new();
        let lowest = self.lowest_budget();
        for &budget in &self.budgets {
            out.push(Condition::Baseline {
                budget,
                cold: false,
            });
        }
        for &budget in &self.sample_budgets {
            for index in 0..self.samples {
                out.push(Condition::Sample { budget, index });
            }
        }
        let k_allowed = self.k_contexts.is_none_or(|n| context_index < n);
        for p in &self.programs {
            for &k in &self.ks {
                if k > 1 && !k_allowed {
                    continue;
                }
                let sleeper = Sleeper {
                    program: p.program,
                    k,
                };
                for (li, &layout) in p.layouts.iter().enumerate() {
                    if k > 1 && !self.k_layouts.contains(&layout) {
                        continue;
                    }
                    if layout == Layout::ContextOnly {
                        if let (1, Some(budget)) = (k, lowest) {
                            out.push(Condition::Sleep {
                                sleeper,
                                layout,
                                budget,
                                cold: false,
                            });
                        }
                        continue;
                    }
                    let budgets = match (k, li) {
                        (1, 0) => self.k1_budgets(),
                        (1, _) => &self.secondary_budgets,
                        _ => &self.k_budgets,
                    };
                    for &budget in budgets {
                        out.push(Condition::Sleep {
                            sleeper,
                            layout,
                            budget,
                            cold: false,
                        });
                    }
                }
            }
        }
        if self.program_aided {
            out.push(Condition::Program { sleeper: None });
            // Test-time programs may reuse each structured c' (its quantities are names).
            for p in self.programs.iter().filter(|p| p.program.is_structured()) {
                out.push(Condition::Program {
                    sleeper: Some(Sleeper {
                        program: p.program,
                        k: 1,
                    }),
                });
            }
        }
        for &budget in &self.formula_budgets {
            out.push(Condition::Formula {
                sleeper: None,
                budget,
            });
            for p in &self.programs {
                out.push(Condition::Formula {
                    sleeper: Some(Sleeper {
                        program: p.program,
                        k: 1,
                    }),
                    budget,
                });
            }
        }
        if self.predictability {
            out.push(Condition::Score);
        }
        if context_index < self.cold_problems {
            if let Some(budget) = lowest {
                out.push(Condition::Baseline { budget, cold: true });
                for p in &self.programs {
                    if p.layouts.contains(&Layout::Full) {
                        let sleeper = Sleeper {
                            program: p.program,
                            k: 1,
                        };
                        out.push(Condition::Sleep {
                            sleeper,
                            layout: Layout::Full,
                            budget,
                            cold: true,
                        });
                    }
                }
            }
        }
        out
    }

    /// Every sleeper some condition of the run needs.
    pub fn sleepers(&self) -> Vec<Sleeper> {
        let mut out: Vec<Sleeper> = (0..1)
            .flat_map(|i| self.conditions_for(i))
            .filter_map(|c| c.sleeper())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A named, committed experiment: what `--preset` selects.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    /// The command that runs it with every condition the issue asks for (from the
    /// repository root).
    pub command: &'static str,
    /// Whether a run of it is committed, under [`Preset::committed_folder`]. On the default
    /// model those runs narrow the conditions to what 2 CPU cores finish; the exact command
    /// heads the folder's report.
    pub committed: bool,
}

impl Preset {
    /// The committed run folder (from the repository root): runs are named after their preset.
    pub fn committed_folder(&self) -> Option<String> {
        self.committed.then(|| format!("bench/runs/{}", self.name))
    }
}

/// The runs issue 3 asks to commit.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "symbolic-200",
        about:
            "200 generated Stateful GSM-Symbolic base problems (GSM8K difficulty), all conditions",
        command: "sleeptime bench run --preset symbolic-200",
        committed: true,
    },
    Preset {
        name: "p1-200",
        about: "200 generated Stateful GSM-Symbolic P1 problems, all conditions",
        command: "sleeptime bench run --preset p1-200",
        committed: true,
    },
    Preset {
        name: "p2-200",
        about:
            "200 released Stateful GSM-Symbolic P2 rows sampled across all 50 templates (seed 0)",
        command: "sleeptime bench run --preset p2-200",
        committed: true,
    },
    Preset {
        name: "multiquery-50",
        about:
            "Multi-Query on 50 generated P1 contexts: 9 verified extra questions each, amortisation",
        command: "sleeptime bench run --preset multiquery-50",
        committed: false,
    },
    Preset {
        name: "aime2024",
        about: "Stateful AIME 2024 (30 problems), long budgets",
        command: "sleeptime bench run --preset aime2024",
        committed: true,
    },
    Preset {
        name: "smoke",
        about: "3 generated base problems, every kind of condition at two budgets: checks the wiring (~15 min on CPU)",
        command: "sleeptime bench run --preset smoke",
        committed: false,
    },
];

/// The spec of a preset.
pub fn preset(name: &str) -> Option<ExperimentSpec> {
    let sentences = SplitMode::Sentences;
    let generated = |split, n| DatasetSpec::Generated {
        split,
        n,
        seed: 0,
        split_mode: sentences,
    };
    match name {
        "symbolic-200" => Some(ExperimentSpec::new(generated(Split::Symbolic, 200))),
        "p1-200" => Some(ExperimentSpec::new(generated(Split::P1, 200))),
        "p2-200" => {
            // P2 is at the default model's floor (pilot): the paper's comparison, without
            // the costly k-scaling (run it with --ks 1,2,5,10 on a stronger model).
            let mut spec = ExperimentSpec::new(DatasetSpec::P2 {
                n: 200,
                seed: 0,
                split_mode: sentences,
            });
            spec.ks = vec![1];
            Some(spec)
        }
        "multiquery-50" => {
            let mut spec = ExperimentSpec::new(generated(Split::P1, 50));
            spec.budgets = vec![Budget::level(0), Budget::level(2), Budget::level(4)];
            spec.sleep_budgets = spec.budgets.clone();
            spec.programs = vec![
                ProgramSpec {
                    program: ProgramKind::Rethink,
                    layouts: vec![Layout::Full],
                },
                ProgramSpec {
                    program: ProgramKind::Aided,
                    layouts: vec![Layout::Routed],
                },
            ];
            spec.ks = vec![1];
            spec.samples = 0;
            spec.predictability = false;
            spec.cold_problems = 10;
            spec.multi_query = Some(MultiQuerySpec::default());
            Some(spec)
        }
        "aime2024" => {
            let mut spec = ExperimentSpec::new(DatasetSpec::Aime { year: 2024 });
            spec.budgets = vec![
                Budget::level(0),
                Budget::level(2),
                Budget {
                    verbosity: 4,
                    max_tokens: 2048,
                    cap: false,
                },
                Budget::forced(512),
            ];
            spec.sleep_budgets = spec.budgets.clone();
            spec.programs = vec![
                ProgramSpec {
                    program: ProgramKind::Rethink,
                    layouts: vec![Layout::Full, Layout::Learned, Layout::ContextOnly],
                },
                ProgramSpec {
                    program: ProgramKind::Aided,
                    layouts: vec![Layout::Full],
                },
            ];
            spec.ks = vec![1];
            spec.samples = 4;
            spec.sleep.max_tokens_per_step = 768;
            spec.route.fallback = Budget {
                verbosity: 4,
                max_tokens: 2048,
                cap: false,
            };
            spec.pal_max_tokens = 512;
            spec.cold_problems = 5;
            Some(spec)
        }
        "smoke" => {
            let mut spec = ExperimentSpec::new(generated(Split::Symbolic, 3));
            spec.sleep.program.max_rethinks = 2;
            spec.budgets = vec![Budget::level(0), Budget::level(4)];
            spec.sleep_budgets = spec.budgets.clone();
            spec.secondary_budgets = vec![Budget::level(0)];
            spec.ks = vec![1, 2];
            spec.k_budgets = vec![Budget::level(0)];
            spec.samples = 2;
            spec.cold_problems = 1;
            Some(spec)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::SleepSettings;

    #[test]
    fn sleep_settings_keep_the_flat_manifest_shape_and_read_older_manifests() {
        let settings = SleepSettings::default();
        let json = serde_json::to_value(&settings).expect("serialise");
        for key in [
            "max_rethinks",
            "repair_rounds",
            "solve_questions",
            "max_tokens_per_step",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        // A manifest written before aided-solve has no `solve_questions`.
        let older: SleepSettings = serde_json::from_str(
            r#"{"max_rethinks":5,"max_tokens_per_step":256,"repair_rounds":1,"sampled_temperature":0.5}"#,
        )
        .expect("older manifest");
        assert_eq!(older.program.max_rethinks, 5);
        assert_eq!(older.program.repair_rounds, 1);
        assert_eq!(older.program.solve_questions, 2);
        assert_eq!(older.max_tokens_per_step, 256);
    }
}
