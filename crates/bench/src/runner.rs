//! The experiment runner: every condition of a spec on every problem, one record each.
//!
//! Work is grouped by context. For each context the sleep programs run once per
//! (program, k) — lazily, when a condition first needs them — and their `c'` is shared by
//! every question and condition of that context. Within a context the conditions run one
//! after the other with the context's questions inside, so questions that share a prompt
//! prefix follow each other and the model can reuse its KV state.
//!
//! Every model call goes through the disk call cache, so a rerun costs nothing; records
//! already in `results.jsonl` are skipped, so an interrupted run resumes where it stopped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use sleeptime_core::{
    answer_with_document, answer_with_program, candidates, choose, learn, open_recall, parse,
    route, AnswerConfig, AnswerInput, Answerer, BudgetForcing, Context, LearnConfig,
    LearnedContext, NoProgress, PickRule, ProgramStyle, Route, RouteConfig, SleepBudget, Verbosity,
};
use sleeptime_model::SharedBackend;

use crate::backends::{stack, LazyPrefix, Meter};
use crate::datasets::Problem;
use crate::multiquery::{self, Group};
use crate::progress;
use crate::record::{self, Manifest, Record, ResultsWriter, SleepRecord};
use crate::spec::{Budget, Condition, ExperimentSpec, Layout, ProgramKind, Sleeper};
use crate::{BenchError, BenchErrorKind};

/// The models a run uses. `generator` (Multi-Query questions) and `scorer` (log P(q | c))
/// default to `model`.
#[derive(Debug, Clone)]
pub struct Backends {
    pub model: SharedBackend,
    pub generator: Option<SharedBackend>,
    pub scorer: Option<SharedBackend>,
}

impl Backends {
    pub fn single(model: SharedBackend) -> Self {
        Self {
            model,
            generator: None,
            scorer: None,
        }
    }
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run name (the run folder's name).
    pub name: String,
    pub preset: Option<String>,
    /// `bench/runs/<name>`: manifest, results, report.
    pub run_dir: PathBuf,
    /// `bench/cache`: call cache, prefix timings, learned contexts and generated questions
    /// (gitignored: it holds dataset-derived text).
    pub cache_dir: PathBuf,
    /// The shared data folder.
    pub data_dir: PathBuf,
    /// Contexts processed at once (calls to an embedded model serialise anyway).
    pub concurrency: usize,
    pub show_progress: bool,
    /// The exact command line, for the manifest.
    pub command_line: Vec<String>,
    /// Only conditions whose id matches.
    pub only: Option<regex::Regex>,
    /// Only the first N problems (contexts) of the dataset.
    pub limit: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    /// Records in `results.jsonl` now.
    pub records: usize,
    /// Records written by this invocation.
    pub written: usize,
    /// Records skipped because they were already done.
    pub skipped: usize,
    /// Records of this invocation that carry an error.
    pub errors: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// A learned context and what it cost.
#[derive(Debug)]
struct Learned {
    /// `None` when the context is empty (nothing to sleep on).
    context: Option<LearnedContext>,
    seconds: f64,
    steps: u32,
}

/// A composed record starts as the recorded answer it reuses: its sleep record, answer,
/// costs and timings.
fn copy_answer(rec: &mut Record, from: &Record) {
    rec.sleep.clone_from(&from.sleep);
    rec.answer = from.answer;
    rec.correct = from.correct;
    rec.usage = from.usage;
    rec.calls = from.calls;
    rec.latency_s = from.latency_s;
    rec.ttft_s = from.ttft_s;
    rec.prefix_tokens = from.prefix_tokens;
    rec.prefix_prefill_s = from.prefix_prefill_s;
    rec.hit_cap = from.hit_cap;
    rec.forced = from.forced;
    rec.answer_in_learned = from.answer_in_learned;
}

/// A checked record from the recorded answers it consists of: the fast answer when `c'`
/// backs it, otherwise both calls with the fallback's answer (what evaluating it would do).
fn compose_checked(rec: &mut Record, fast: &Record, fallback: &Record) {
    copy_answer(rec, fast);
    let mut parts = vec![fast.condition.clone()];
    if fast.answer_in_learned == Some(true) {
        rec.route = Some("fast".into());
    } else {
        rec.route = Some("fallback".into());
        rec.answer = fallback.answer;
        rec.correct = fallback.correct;
        rec.usage += fallback.usage;
        rec.calls += fallback.calls;
        rec.latency_s += fallback.latency_s;
        if fallback.prefix_tokens.is_some() {
            rec.prefix_tokens = fallback.prefix_tokens;
            rec.prefix_prefill_s = fallback.prefix_prefill_s;
        }
        rec.hit_cap |= fallback.hit_cap;
        rec.forced |= fallback.forced;
        // Whether c' holds the fallback's answer: not when it repeats the unbacked one; when
        // it is right, exactly when c' holds the gold answer; otherwise unknown (the record
        // keeps c''s recall, not its values).
        let recall = fast.sleep.as_ref().map(|s| s.answer_recall);
        rec.answer_in_learned = match (fallback.answer, fast.answer) {
            (Some(a), Some(f)) if parse::numbers_match(a, f) => Some(false),
            (Some(_), _) if fallback.correct => recall,
            _ => None,
        };
        parts.push(fallback.condition.clone());
    }
    rec.composed_from = Some(parts);
}

/// A picked or matched record from the full layout's record it consists of (same sleeper,
/// budget and prefill): the same answer and costs, then the engine's choice.
fn compose_picked(rec: &mut Record, full: &Record, rule: PickRule) {
    copy_answer(rec, full);
    apply_pick(rec, rule);
    rec.composed_from = Some(vec![full.condition.clone()]);
}

/// Let the engine settle the answer among the recorded candidates: the model's answer is
/// the fast path, the engine's replacement the fallback.
fn apply_pick(rec: &mut Record, rule: PickRule) {
    let Some(sleep) = &rec.sleep else {
        return;
    };
    let chosen = choose(&sleep.candidates, rec.answer, rule);
    let kept = match (chosen, rec.answer) {
        (Some(c), Some(a)) => parse::numbers_match(c, a),
        (c, a) => c.is_none() && a.is_none(),
    };
    if kept {
        rec.route = Some("fast".into());
        return;
    }
    rec.route = Some("fallback".into());
    rec.answer = chosen;
    rec.correct = chosen.is_some_and(|n| parse::numbers_match(n, rec.gold));
    // The choice is one of c''s values.
    rec.answer_in_learned = Some(chosen.is_some());
}

impl Learned {
    fn text(&self) -> Option<&str> {
        self.context
            .as_ref()
            .map(|c| c.text.as_str())
            .filter(|t| !t.trim().is_empty())
    }

    /// The values `c'` holds: computed quantities, or the numbers in prose notes.
    fn values(&self) -> Vec<f64> {
        match &self.context {
            Some(lc) => match &lc.document {
                Some(doc) => doc.values(),
                None => parse::numbers(&lc.text),
            },
            None => Vec::new(),
        }
    }

    /// Whether `answer` is one of the values `c'` holds (`None` without an answer).
    fn holds(&self, answer: Option<f64>) -> Option<bool> {
        let values = self.values();
        answer.map(|a| values.iter().any(|v| parse::numbers_match(*v, a)))
    }

    fn record(&self, sleeper: Sleeper, question: &str, gold: f64) -> SleepRecord {
        let values = self.values();
        let document = self.context.as_ref().and_then(|c| c.document.as_ref());
        SleepRecord {
            program: self.context.as_ref().map_or_else(
                || sleeper.program.name().to_owned(),
                |c| c.program.to_string(),
            ),
            k: sleeper.k,
            usage: self
                .context
                .as_ref()
                .map(LearnedContext::total_usage)
                .unwrap_or_default(),
            seconds: self.seconds,
            steps: self.steps,
            learned_chars: self.text().map_or(0, str::len),
            quantities: document.map(|d| d.quantities.len()),
            answer_recall: values.iter().any(|v| parse::numbers_match(*v, gold)),
            open_recall: document
                .filter(|_| sleeper.program == ProgramKind::AidedOpen)
                .map(|d| open_recall(d, question, gold)),
            dropped_too_long: self.context.as_ref().map_or(0, |c| {
                c.drafts.iter().map(|d| d.stats.dropped_too_long).sum()
            }),
            candidates: self.context.as_ref().map_or_else(Vec::new, |c| {
                let drafts: Vec<_> = c
                    .drafts
                    .iter()
                    .filter_map(|d| d.document.as_ref())
                    .collect();
                c.document
                    .as_ref()
                    .map_or_else(Vec::new, |doc| candidates(doc, &drafts, question))
            }),
        }
    }
}

#[derive(Debug, Default)]
struct GroupState {
    learned: HashMap<Sleeper, crate::Result<Arc<Learned>>>,
    prefixes: Vec<String>,
}

/// Shared by the groups of one run.
struct Shared<'a> {
    spec: &'a ExperimentSpec,
    options: &'a RunOptions,
    model: SharedBackend,
    scorer: SharedBackend,
    lazy: &'a LazyPrefix,
    writer: Mutex<ResultsWriter>,
    bar: ProgressBar,
    written: Mutex<(usize, usize)>,
    /// Error-free records found when the run started, by (problem, condition id).
    recorded: HashMap<(String, String), Record>,
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Run `spec` (see the module docs).
pub async fn run(
    spec: &ExperimentSpec,
    backends: Backends,
    options: &RunOptions,
) -> crate::Result<RunSummary> {
    spec.validate().map_err(BenchError::invalid)?;
    let mut dataset = spec.dataset.load(&options.data_dir)?;
    if let Some(limit) = options.limit {
        dataset.problems.truncate(limit);
    }
    std::fs::create_dir_all(&options.run_dir)
        .map_err(|e| BenchError::io("create the run folder", &options.run_dir, &e))?;
    std::fs::create_dir_all(&options.cache_dir)
        .map_err(|e| BenchError::io("create the cache folder", &options.cache_dir, &e))?;

    // Refuse a folder this run must not add to before any long work (Multi-Query generation).
    let previous = record::read_manifest_if_any(&options.run_dir)?;
    if let Some(prev) = &previous {
        let info = backends.model.info();
        if prev.model.fingerprint != info.fingerprint {
            return Err(BenchError::new(
                BenchErrorKind::RunMismatch,
                format!(
                    "{} holds results of model {} ({}), not {}: use another --name",
                    options.run_dir.display(),
                    prev.model.name,
                    prev.model.fingerprint,
                    info.name
                ),
            ));
        }
    }
    let (cached, lazy) = stack(backends.model.clone(), &options.cache_dir)?;
    let model: SharedBackend = cached.clone();
    let calls_dir = options.cache_dir.join("calls");
    let wrap = |b: &Option<SharedBackend>| -> crate::Result<Option<SharedBackend>> {
        Ok(match b {
            Some(b) => Some(Arc::new(sleeptime_model::cache::CachedBackend::new(
                b.clone(),
                &calls_dir,
            )?)),
            None => None,
        })
    };
    let generator = wrap(&backends.generator)?;
    let scorer = wrap(&backends.scorer)?;

    // Groups: one per context; Multi-Query adds verified generated questions to each.
    let groups: Vec<Group> = match &spec.multi_query {
        Some(mq) => {
            let bar = progress::bar(
                dataset.problems.len() as u64,
                options.show_progress,
                "multi-query",
            );
            let generator_model = generator.clone().unwrap_or_else(|| model.clone());
            let (groups, manifest) = multiquery::build_groups(
                &dataset.problems,
                generator_model.as_ref(),
                model.as_ref(),
                mq,
                spec.seed,
                &options.cache_dir,
                &bar,
            )
            .await?;
            bar.finish_and_clear();
            record::write_json(&options.run_dir.join("multiquery.json"), &manifest)?;
            groups
        }
        None => dataset
            .problems
            .iter()
            .map(|p| Group {
                context_id: p.id.clone(),
                problems: vec![(0, p.clone())],
            })
            .collect(),
    };

    let mut seen = HashSet::new();
    for (_, p) in groups.iter().flat_map(|g| g.problems.iter()) {
        if !seen.insert(p.id.as_str()) {
            return Err(BenchError::new(
                BenchErrorKind::Dataset,
                format!(
                    "problem id {:?} occurs twice in {}: ids must be unique",
                    p.id, dataset.name
                ),
            ));
        }
    }

    let existing = record::read_records(&options.run_dir)?;
    let done = record::done_keys(&existing);

    // The plan: per group, its conditions (filtered), and what is left to do.
    let mut plan: Vec<(usize, &Group, Vec<Condition>)> = Vec::new();
    let mut all_conditions = BTreeSet::new();
    let mut todo = 0usize;
    let mut skipped = 0usize;
    for (gi, group) in groups.iter().enumerate() {
        let conditions: Vec<Condition> = spec
            .conditions_for(gi)
            .into_iter()
            .filter(|c| options.only.as_ref().is_none_or(|re| re.is_match(&c.id())))
            .collect();
        for c in &conditions {
            all_conditions.insert(c.id());
            for (_, p) in &group.problems {
                if done.contains(&(p.id.clone(), c.id())) {
                    skipped += 1;
                } else {
                    todo += 1;
                }
            }
        }
        plan.push((gi, group, conditions));
    }

    if let Some(prev) = &previous {
        // A resumed run with `--only` still lists everything evaluated so far.
        all_conditions.extend(prev.conditions.iter().cloned());
    }
    let info = backends.model.info();
    let mut manifest = Manifest {
        name: options.name.clone(),
        preset: options.preset.clone(),
        model: info.clone().into(),
        generator: backends.generator.as_ref().map(|g| g.info().into()),
        scorer: backends.scorer.as_ref().map(|s| s.info().into()),
        dataset: dataset.name.clone(),
        problem_ids: groups
            .iter()
            .flat_map(|g| g.problems.iter().map(|(_, p)| p.id.clone()))
            .collect(),
        conditions: all_conditions.into_iter().collect(),
        spec: spec.clone(),
        seed: spec.seed,
        git_commit: record::git_commit(),
        command_line: options.command_line.clone(),
        started_at: record::now_secs(),
        finished_at: None,
        previous_starts: previous
            .as_ref()
            .map(|m| {
                m.previous_starts
                    .iter()
                    .copied()
                    .chain([m.started_at])
                    .collect()
            })
            .unwrap_or_default(),
        harness_version: env!("CARGO_PKG_VERSION").to_owned(),
        cache_hits: 0,
        cache_misses: 0,
        records: existing.len(),
    };
    record::write_manifest(&options.run_dir, &manifest)?;

    let shared = Shared {
        spec,
        options,
        model: model.clone(),
        scorer: scorer.unwrap_or_else(|| model.clone()),
        lazy: &lazy,
        writer: Mutex::new(ResultsWriter::open(&options.run_dir)?),
        bar: progress::bar(todo as u64, options.show_progress, &options.name),
        written: Mutex::new((0, 0)),
        recorded: existing
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| ((r.problem_id.clone(), r.condition.clone()), r.clone()))
            .collect(),
    };
    let concurrency = options.concurrency.max(1);
    let result: crate::Result<Vec<()>> = futures::stream::iter(plan.iter())
        .map(|(_, group, conditions)| shared.run_group(group, conditions, &done))
        .buffer_unordered(concurrency)
        .try_collect()
        .await;
    shared.bar.finish_and_clear();
    lazy.release_all();
    result?;

    let (written, errors) = *shared
        .written
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let records = record::read_records(&options.run_dir)?.len();
    manifest.finished_at = Some(record::now_secs());
    manifest.cache_hits = cached.hits();
    manifest.cache_misses = cached.misses();
    manifest.records = records;
    record::write_manifest(&options.run_dir, &manifest)?;
    Ok(RunSummary {
        run_dir: options.run_dir.clone(),
        records,
        written,
        skipped,
        errors,
        cache_hits: cached.hits(),
        cache_misses: cached.misses(),
    })
}

impl Shared<'_> {
    async fn run_group(
        &self,
        group: &Group,
        conditions: &[Condition],
        done: &HashSet<(String, String)>,
    ) -> crate::Result<()> {
        let mut state = GroupState::default();
        for condition in conditions {
            let id = condition.id();
            for (qi, problem) in &group.problems {
                if done.contains(&(problem.id.clone(), id.clone())) {
                    continue;
                }
                self.bar.set_message(format!("{} {id}", problem.id));
                let mut rec = Record::new(
                    &problem.id,
                    &group.context_id,
                    *qi,
                    problem.template_id.clone(),
                    condition,
                    problem.answer,
                );
                if let Err(e) = self
                    .evaluate(&mut state, &group.context_id, problem, condition, &mut rec)
                    .await
                {
                    rec.error = Some(e.to_string());
                    rec.correct = false;
                    tracing::warn!("{} {id}: {e}", problem.id);
                }
                self.writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .write(&rec)?;
                {
                    let mut w = self
                        .written
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    w.0 += 1;
                    w.1 += usize::from(rec.error.is_some());
                }
                self.bar.inc(1);
            }
        }
        self.lazy.release(&state.prefixes);
        Ok(())
    }

    /// The recorded answers a checked condition is made of: the full layout's (same sleeper,
    /// budget and prefill) and the baseline's at the fallback budget. `None` when either is
    /// missing, or when the full record predates `answer_in_learned` (the check needs it).
    fn recorded_checked_parts(
        &self,
        problem_id: &str,
        sleeper: Sleeper,
        budget: Budget,
        cold: bool,
    ) -> Option<(&Record, &Record)> {
        let find = |condition: Condition| {
            self.recorded
                .get(&(problem_id.to_owned(), condition.id()))
                .filter(|r| r.spec == condition)
        };
        let fast = find(Condition::Sleep {
            sleeper,
            layout: Layout::Full,
            budget,
            cold,
        })?;
        let fallback = find(Condition::Baseline {
            budget: self.spec.route.fallback,
            cold: false,
        })?;
        (fast.answer.is_none() || fast.answer_in_learned.is_some()).then_some((fast, fallback))
    }

    /// The full layout's recorded answer a picked or matched condition is made of (same
    /// sleeper, budget and prefill). `None` when it is missing, or when it predates recorded
    /// candidates (a structured c' whose quantities the record does not list).
    fn recorded_full_with_candidates(
        &self,
        problem_id: &str,
        sleeper: Sleeper,
        budget: Budget,
        cold: bool,
    ) -> Option<&Record> {
        let condition = Condition::Sleep {
            sleeper,
            layout: Layout::Full,
            budget,
            cold,
        };
        self.recorded
            .get(&(problem_id.to_owned(), condition.id()))
            .filter(|r| r.spec == condition && r.error.is_none())
            .filter(|r| {
                r.sleep
                    .as_ref()
                    .is_some_and(|s| s.candidates.len() == s.quantities.unwrap_or(0))
            })
    }

    async fn learned(
        &self,
        state: &mut GroupState,
        context_id: &str,
        context: &str,
        sleeper: Sleeper,
    ) -> crate::Result<Arc<Learned>> {
        if let Some(found) = state.learned.get(&sleeper) {
            return found.clone();
        }
        let stored = self
            .learn(context_id, context, sleeper)
            .await
            .map_err(|e| e.within(&format!("sleep time ({sleeper}) failed")));
        state.learned.insert(sleeper, stored.clone());
        stored
    }

    async fn learn(
        &self,
        context_id: &str,
        context: &str,
        sleeper: Sleeper,
    ) -> crate::Result<Arc<Learned>> {
        if context.trim().is_empty() {
            return Ok(Arc::new(Learned {
                context: None,
                seconds: 0.0,
                steps: 0,
            }));
        }
        self.bar
            .set_message(format!("{context_id} sleep {sleeper}"));
        let ctx = Context::new(context)?;
        let settings = &self.spec.sleep;
        let program = sleeper.program.build(&settings.program);
        let config = LearnConfig {
            k: sleeper.k,
            budget: SleepBudget {
                max_tokens_per_step: settings.max_tokens_per_step,
                temperature: 0.0,
                seed: None,
            },
            sampled_temperature: settings.sampled_temperature,
            base_seed: self.spec.seed,
            combine: sleeper.program.combine(),
            version: 1,
        };
        let meter = Meter::new(self.model.clone());
        let lc = learn(program.as_ref(), &meter, &ctx, &config, &NoProgress).await?;
        // Keep c' for people to read (gitignored cache: it quotes the context).
        let dir = self
            .options
            .cache_dir
            .join("learned")
            .join(sanitize(&self.options.name));
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = lc.save(&dir.join(format!(
                "{}-{}-k{}.json",
                sanitize(context_id),
                sleeper.program.name(),
                sleeper.k
            )));
        }
        let steps = u32::try_from(meter.calls().len()).unwrap_or(u32::MAX);
        Ok(Arc::new(Learned {
            context: Some(lc),
            seconds: meter.seconds(),
            steps,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        state: &mut GroupState,
        rec: &mut Record,
        budget: Budget,
        input: &AnswerInput<'_>,
        temperature: f32,
        seed: Option<u64>,
        reuse_prefix: bool,
        prepare: bool,
    ) -> crate::Result<()> {
        let meter = Meter::new(self.model.clone());
        let config = AnswerConfig {
            verbosity: Verbosity::new(budget.verbosity)?,
            max_tokens: budget.max_tokens,
            budget_forcing: Some(BudgetForcing::default()),
            temperature,
            seed,
            reuse_prefix,
        };
        let answerer = Answerer::new(&meter, config);
        let key = if prepare && reuse_prefix && self.model.info().prefix_state {
            Some(answerer.prepare(input).await?.id)
        } else {
            None
        };
        let answer = answerer.answer(input).await?;
        rec.answer = answer.number;
        rec.correct = answer
            .number
            .is_some_and(|n| parse::numbers_match(n, rec.gold));
        rec.usage += answer.usage;
        rec.calls += u32::try_from(meter.calls().len()).unwrap_or(u32::MAX);
        rec.latency_s += meter.seconds();
        if rec.ttft_s == 0.0 {
            rec.ttft_s = meter.time_to_first_token();
        }
        rec.hit_cap |= answer.hit_cap;
        rec.forced |= answer.forced;
        if let Some(key) = key {
            if let Some(t) = self.lazy.timing(&key) {
                rec.prefix_tokens = Some(t.tokens);
                rec.prefix_prefill_s = Some(t.seconds);
            }
            state.prefixes.push(key);
        }
        Ok(())
    }

    /// Full reasoning on `c + q` at the route's fallback budget: the request of the baseline
    /// at that budget, shared by the routed and checked layouts.
    async fn answer_fallback(
        &self,
        state: &mut GroupState,
        rec: &mut Record,
        context: Option<&str>,
        question: &str,
    ) -> crate::Result<()> {
        let input = AnswerInput {
            context,
            learned: None,
            question: Some(question),
        };
        self.answer(
            state,
            rec,
            self.spec.route.fallback,
            &input,
            0.0,
            None,
            true,
            true,
        )
        .await
    }

    async fn evaluate(
        &self,
        state: &mut GroupState,
        context_id: &str,
        problem: &Problem,
        condition: &Condition,
        rec: &mut Record,
    ) -> crate::Result<()> {
        let context = problem.context.trim();
        let question = problem.question.trim();
        let c = Some(context).filter(|c| !c.is_empty());
        match condition {
            Condition::Baseline { budget, cold } => {
                let input = AnswerInput {
                    context: c,
                    learned: None,
                    question: Some(question),
                };
                self.answer(state, rec, *budget, &input, 0.0, None, !cold, !cold)
                    .await
            }
            Condition::Sample { budget, index } => {
                let input = AnswerInput {
                    context: c,
                    learned: None,
                    question: Some(question),
                };
                let seed = Some(self.spec.seed.wrapping_add(u64::from(*index)));
                self.answer(
                    state,
                    rec,
                    *budget,
                    &input,
                    self.spec.sample_temperature,
                    seed,
                    true,
                    true,
                )
                .await
            }
            Condition::Sleep {
                sleeper,
                layout,
                budget,
                cold,
            } => {
                if let Some(rule) = layout.pick_rule() {
                    if let Some(full) =
                        self.recorded_full_with_candidates(&problem.id, *sleeper, *budget, *cold)
                    {
                        compose_picked(rec, full, rule);
                        return Ok(());
                    }
                }
                if *layout == Layout::Checked {
                    if let Some((fast, fallback)) =
                        self.recorded_checked_parts(&problem.id, *sleeper, *budget, *cold)
                    {
                        compose_checked(rec, fast, fallback);
                        return Ok(());
                    }
                }
                let learned = self.learned(state, context_id, context, *sleeper).await?;
                rec.sleep = Some(learned.record(*sleeper, &problem.question, problem.answer));
                let text = learned.text();
                match layout {
                    Layout::Full | Layout::Checked | Layout::Picked | Layout::Matched => {
                        let input = AnswerInput {
                            context: c,
                            learned: text,
                            question: Some(question),
                        };
                        self.answer(state, rec, *budget, &input, 0.0, None, !cold, !cold)
                            .await?;
                        if let Some(rule) = layout.pick_rule() {
                            rec.answer_in_learned = learned.holds(rec.answer);
                            apply_pick(rec, rule);
                            return Ok(());
                        }
                        // Checked: escalate an answer c' does not back. Its two requests are
                        // the full layout's and the fallback's, which `compose_checked` relies on.
                        if *layout == Layout::Checked {
                            if learned.holds(rec.answer) == Some(true) {
                                rec.route = Some("fast".into());
                            } else {
                                rec.route = Some("fallback".into());
                                self.answer_fallback(state, rec, c, question).await?;
                            }
                        }
                    }
                    Layout::Learned => {
                        let input = AnswerInput {
                            context: if text.is_some() { None } else { c },
                            learned: text,
                            question: Some(question),
                        };
                        self.answer(state, rec, *budget, &input, 0.0, None, !cold, !cold)
                            .await?;
                    }
                    Layout::ContextOnly => {
                        let input = AnswerInput {
                            context: c,
                            learned: text,
                            question: None,
                        };
                        self.answer(state, rec, *budget, &input, 0.0, None, !cold, !cold)
                            .await?;
                    }
                    Layout::Routed => {
                        let doc = learned.context.as_ref().and_then(|l| l.document.as_ref());
                        let settings = &self.spec.route;
                        let routed = doc.map(|d| {
                            route(
                                d,
                                question,
                                &RouteConfig {
                                    top_n: settings.top_n,
                                    min_confidence: settings.min_confidence,
                                },
                            )
                        });
                        match routed {
                            Some(Route::Fast {
                                text: retrieved,
                                confidence,
                            }) => {
                                rec.route = Some("fast".into());
                                rec.route_confidence = Some(confidence);
                                // The retrieved parts depend on q, so in general nothing can be
                                // prepared before it arrives; but when retrieval keeps all of c',
                                // the prompt is the full layout's, whose prefix sleep time keeps
                                // (and the call cache would otherwise hand one layout's timing
                                // to the other).
                                let whole = text == Some(retrieved.as_str());
                                let input = AnswerInput {
                                    context: c,
                                    learned: Some(&retrieved),
                                    question: Some(question),
                                };
                                self.answer(state, rec, *budget, &input, 0.0, None, true, whole)
                                    .await?;
                            }
                            other => {
                                rec.route = Some("fallback".into());
                                rec.route_confidence = other.map(|r| r.confidence());
                                self.answer_fallback(state, rec, c, question).await?;
                            }
                        }
                    }
                }
                rec.answer_in_learned = learned.holds(rec.answer);
                Ok(())
            }
            Condition::Program { sleeper } => {
                self.answer_with_program(
                    state,
                    context_id,
                    problem,
                    *sleeper,
                    ProgramStyle::Program,
                    self.spec.pal_max_tokens,
                    rec,
                )
                .await
            }
            Condition::Formula { sleeper, budget } => {
                self.answer_with_program(
                    state,
                    context_id,
                    problem,
                    *sleeper,
                    ProgramStyle::Formula,
                    budget.max_tokens,
                    rec,
                )
                .await
            }
            Condition::Score => {
                let prefix = if context.is_empty() {
                    String::new()
                } else {
                    format!("{context} ")
                };
                let score = self.scorer.score_continuation(&prefix, question).await?;
                rec.logprob_sum = Some(score.logprob_sum);
                rec.logprob_mean = Some(score.logprob_mean());
                rec.question_tokens = Some(score.tokens);
                Ok(())
            }
        }
    }

    /// Program-aided answering (a whole program or one formula) with `sleeper`'s `c'` or
    /// without; the engine computes the answer.
    #[allow(clippy::too_many_arguments)]
    async fn answer_with_program(
        &self,
        state: &mut GroupState,
        context_id: &str,
        problem: &Problem,
        sleeper: Option<Sleeper>,
        style: ProgramStyle,
        max_tokens: u32,
        rec: &mut Record,
    ) -> crate::Result<()> {
        let learned = match sleeper {
            Some(s) => {
                let l = self
                    .learned(state, context_id, problem.context.trim(), s)
                    .await?;
                rec.sleep = Some(l.record(s, &problem.question, problem.answer));
                Some(l)
            }
            None => None,
        };
        let meter = Meter::new(self.model.clone());
        let document = learned
            .as_ref()
            .and_then(|l| l.context.as_ref())
            .and_then(|c| c.document.as_ref());
        let answer = match document {
            // A structured c': rebinding and open questions work over its expressions.
            Some(doc) => {
                answer_with_document(
                    &meter,
                    style,
                    problem.context.trim(),
                    doc,
                    problem.question.trim(),
                    max_tokens,
                )
                .await?
            }
            None => {
                answer_with_program(
                    &meter,
                    style,
                    problem.context.trim(),
                    learned.as_ref().and_then(|l| l.text()),
                    problem.question.trim(),
                    max_tokens,
                )
                .await?
            }
        };
        rec.answer = answer.number;
        rec.correct = answer
            .number
            .is_some_and(|n| parse::numbers_match(n, rec.gold));
        rec.hit_cap = answer.hit_cap;
        rec.usage = answer.usage;
        rec.calls = u32::try_from(meter.calls().len()).unwrap_or(u32::MAX);
        rec.latency_s = meter.seconds();
        rec.ttft_s = meter.time_to_first_token();
        if let Some(l) = &learned {
            rec.answer_in_learned = l.holds(rec.answer);
        }
        Ok(())
    }
}
