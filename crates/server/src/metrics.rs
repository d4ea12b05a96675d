//! Prometheus text exposition, hand-rolled: a few counters and two histograms.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sleeptime_store::QueueDepth;

const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const JOB_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub sleep_tokens: AtomicU64,
    pub test_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub tokens_saved: AtomicU64,
    pub jobs_succeeded: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_superseded: AtomicU64,
    pub queries_learned: AtomicU64,
    pub queries_fallback: AtomicU64,
    /// Learned-mode queries answered again with full reasoning (also counted as learned).
    pub queries_escalated: AtomicU64,
    fallback_completion: Mutex<(u64, u64)>,
    query_latency: Mutex<[Histogram; 2]>,
    job_duration: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sleep_tokens: AtomicU64::new(0),
            test_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            tokens_saved: AtomicU64::new(0),
            jobs_succeeded: AtomicU64::new(0),
            jobs_failed: AtomicU64::new(0),
            jobs_superseded: AtomicU64::new(0),
            queries_learned: AtomicU64::new(0),
            queries_fallback: AtomicU64::new(0),
            queries_escalated: AtomicU64::new(0),
            fallback_completion: Mutex::new((0, 0)),
            query_latency: Mutex::new([
                Histogram::new(LATENCY_BUCKETS),
                Histogram::new(LATENCY_BUCKETS),
            ]),
            job_duration: Mutex::new(Histogram::new(JOB_BUCKETS)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// A query finished. `fallback`: answered without a learned context. Returns the
    /// estimated test-time tokens saved by the learned context (0 for fallbacks).
    pub fn query(
        &self,
        fallback: bool,
        seconds: f64,
        completion_tokens: u64,
        total_tokens: u64,
        cached: u64,
        default_fallback: u64,
    ) -> u64 {
        self.test_tokens.fetch_add(total_tokens, Ordering::Relaxed);
        self.cached_tokens.fetch_add(cached, Ordering::Relaxed);
        lock(&self.query_latency)[usize::from(fallback)].observe(seconds);
        if fallback {
            self.queries_fallback.fetch_add(1, Ordering::Relaxed);
            let mut f = lock(&self.fallback_completion);
            f.0 += completion_tokens;
            f.1 += 1;
            0
        } else {
            self.queries_learned.fetch_add(1, Ordering::Relaxed);
            // Saved = what a fallback answer costs on average here (or its budget before any
            // fallback ran) minus what this answer cost.
            let f = *lock(&self.fallback_completion);
            let baseline = f.0.checked_div(f.1).unwrap_or(default_fallback);
            let saved = baseline.saturating_sub(completion_tokens);
            self.tokens_saved.fetch_add(saved, Ordering::Relaxed);
            saved
        }
    }

    pub fn job_finished(&self, outcome: &str, seconds: f64, tokens: u64) {
        self.sleep_tokens.fetch_add(tokens, Ordering::Relaxed);
        let counter = match outcome {
            "succeeded" => &self.jobs_succeeded,
            "superseded" => &self.jobs_superseded,
            _ => &self.jobs_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        lock(&self.job_duration).observe(seconds);
    }

    pub fn render(
        &self,
        depth: Option<QueueDepth>,
        active_queries: usize,
        yields: u64,
        preemptions: u64,
    ) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "sleeptime_sleep_tokens_total",
            "Tokens spent at sleep time.",
            self.sleep_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sleeptime_test_tokens_total",
            "Tokens spent answering queries.",
            self.test_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sleeptime_cached_prompt_tokens_total",
            "Query prompt tokens served from a prepared prefix.",
            self.cached_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sleeptime_estimated_tokens_saved_total",
            "Estimated test-time completion tokens saved by learned contexts.",
            self.tokens_saved.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "sleeptime_sleep_yields_total",
            "Times sleep work waited for queries.",
            yields,
        );
        counter(
            &mut out,
            "sleeptime_sleep_preemptions_total",
            "Times a query interrupted a sleep generation mid-call.",
            preemptions,
        );
        let _ = writeln!(out, "# HELP sleeptime_jobs_total Sleep jobs ended, by outcome.\n# TYPE sleeptime_jobs_total counter");
        for (outcome, c) in [
            ("succeeded", &self.jobs_succeeded),
            ("failed", &self.jobs_failed),
            ("superseded", &self.jobs_superseded),
        ] {
            let _ = writeln!(
                out,
                "sleeptime_jobs_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP sleeptime_queries_total Queries answered, by mode.\n# TYPE sleeptime_queries_total counter");
        let _ = writeln!(
            out,
            "sleeptime_queries_total{{mode=\"learned\"}} {}",
            self.queries_learned.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "sleeptime_queries_total{{mode=\"fallback\"}} {}",
            self.queries_fallback.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP sleeptime_queries_escalated_total Answers from a learned context that it did not back, answered again with full reasoning.\n# TYPE sleeptime_queries_escalated_total counter");
        let _ = writeln!(
            out,
            "sleeptime_queries_escalated_total {}",
            self.queries_escalated.load(Ordering::Relaxed)
        );
        if let Some(d) = depth {
            let _ = writeln!(out, "# HELP sleeptime_queue_depth Sleep jobs waiting or running.\n# TYPE sleeptime_queue_depth gauge");
            let _ = writeln!(
                out,
                "sleeptime_queue_depth{{state=\"pending\"}} {}",
                d.pending
            );
            let _ = writeln!(out, "sleeptime_queue_depth{{state=\"due\"}} {}", d.due);
            let _ = writeln!(
                out,
                "sleeptime_queue_depth{{state=\"running\"}} {}",
                d.running
            );
        }
        let _ = writeln!(out, "# HELP sleeptime_active_queries Queries in flight.\n# TYPE sleeptime_active_queries gauge\nsleeptime_active_queries {active_queries}");
        let _ = writeln!(out, "# HELP sleeptime_query_latency_seconds Query latency, by mode.\n# TYPE sleeptime_query_latency_seconds histogram");
        let q = lock(&self.query_latency);
        q[0].render(
            &mut out,
            "sleeptime_query_latency_seconds",
            "mode=\"learned\"",
        );
        q[1].render(
            &mut out,
            "sleeptime_query_latency_seconds",
            "mode=\"fallback\"",
        );
        drop(q);
        let _ = writeln!(out, "# HELP sleeptime_job_duration_seconds Sleep job wall time.\n# TYPE sleeptime_job_duration_seconds histogram");
        lock(&self.job_duration).render(&mut out, "sleeptime_job_duration_seconds", "");
        out
    }
}
