//! `sleeptime bench latency`: query latency of the service, idle vs under continuous
//! background sleep work, with sleep generations preempted by queries and without (sleep
//! work then yields only between model calls).
//!
//! It runs the real server in this process on the chosen model and a throw-away SQLite file,
//! and talks to it over HTTP on loopback, so the figures include everything a client sees.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};
use sleeptime_server::{Server, ServerConfig};
use sleeptime_store::{SqlStore, Store};

use crate::backend::{self, BackendArgs};
use crate::demo_contexts::DEMO_CONTEXTS;

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Queries per phase.
    #[arg(long, default_value_t = 24)]
    pub queries: usize,
    /// Contexts kept busy with sleep work during the loaded phases.
    #[arg(long, default_value_t = 2)]
    pub load_contexts: usize,
    /// Most memory rewrites per sleep job.
    #[arg(long, default_value_t = 2)]
    pub max_rethinks: u32,
    /// Mean pause between queries in seconds (jittered deterministically by ±50%).
    #[arg(long, default_value_t = 1.0)]
    pub gap_s: f64,
    /// Token budget of each answer.
    #[arg(long, default_value_t = 48)]
    pub budget: u32,
    /// Skip the loaded phase without preemption (slow: queries wait for whole sleep calls).
    #[arg(long)]
    pub skip_between_steps: bool,
    /// Folder for latency.json and latency.md.
    #[arg(long, default_value = "bench/latency")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Sample {
    context: String,
    question: String,
    /// Seconds from sending the request to reading the whole response.
    client_s: f64,
    /// The server's own measurement (`latency_s` in the answer).
    server_s: f64,
    mode: String,
    completion_tokens: i64,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: &'static str,
    about: &'static str,
    samples: Vec<Sample>,
    p50_s: f64,
    p95_s: f64,
    p99_s: f64,
    max_s: f64,
    mean_s: f64,
    /// Sleep-time tokens of the jobs that finished during the phase (the ledger records a
    /// job's tokens when it ends, so work still running at the phase's end is not counted).
    sleep_tokens: i64,
    /// Times sleep work waited for queries between calls, and times a query interrupted a
    /// sleep generation, during the phase.
    yields: u64,
    preemptions: u64,
    seconds: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("request to {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{path}: not JSON: {text}"))
    }

    async fn metric(&self, name: &str) -> Result<u64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64))
    }

    async fn sleep_tokens(&self) -> Result<i64> {
        let usage = self.call(reqwest::Method::GET, "/v1/usage", None).await?;
        Ok(usage["sleep"]["total_tokens"].as_i64().unwrap_or(0))
    }
}

/// A deterministic ±50% jitter, so queries do not fall into step with sleep calls.
fn gap(mean: f64, i: usize) -> Duration {
    let x = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs_f64((mean * (0.5 + x)).max(0.0))
}

pub async fn run(backend_args: &BackendArgs, args: LatencyArgs) -> Result<()> {
    if args.queries == 0 {
        bail!("--queries must be at least 1");
    }
    let model = backend::build(backend_args).await?;
    let model_name = model.info().name;
    let dir = std::env::temp_dir().join(format!("sleeptime-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir.join("sleeptime.db")).await?);
    let mut config = ServerConfig::default();
    config.auth.require_keys = false;
    config.scheduler.idle = Duration::from_millis(100);
    config.scheduler.poll = Duration::from_millis(200);
    config.scheduler.concurrency = 1;
    config.scheduler.lease = Duration::from_secs(600);
    config.sleep.settings.max_rethinks = args.max_rethinks;
    config.answer.budget = args.budget;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = Server::start(config, model, store, listener).await?;
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.addr),
    };
    let result = measure(&server, &client, &args, &model_name).await;
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn create(client: &Client, text: &str) -> Result<String> {
    let v = client
        .call(
            reqwest::Method::POST,
            "/v1/contexts",
            Some(json!({ "text": text })),
        )
        .await?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .context("no id in the created context")
}

async fn measure(
    server: &Server,
    client: &Client,
    args: &LatencyArgs,
    model_name: &str,
) -> Result<()> {
    // The contexts queries go to, learned before any measurement.
    let mut queried = Vec::new();
    for demo in DEMO_CONTEXTS {
        queried.push((create(client, demo.text).await?, demo));
    }
    eprintln!(
        "learning {} contexts before measuring (sleep time, a few minutes on CPU)...",
        queried.len()
    );
    for (id, demo) in &queried {
        let started = Instant::now();
        let mut v = Value::Null;
        // The server caps one wait at 600 s; a slow model may need several.
        for _ in 0..6 {
            v = client
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/contexts/{id}/learned?wait=true&timeout_s=600"),
                    None,
                )
                .await?;
            if !matches!(v["status"].as_str(), Some("pending" | "running")) {
                break;
            }
        }
        if v["status"] != "ready" {
            bail!("context {} did not learn: {v}", demo.name);
        }
        eprintln!(
            "  {} ready in {:.0} s",
            demo.name,
            started.elapsed().as_secs_f64()
        );
    }
    let questions: Vec<(&str, &str, &str)> = (0..args.queries)
        .map(|i| {
            let (id, demo) = &queried[i % queried.len()];
            let q = demo.queries[(i / queried.len()) % demo.queries.len()].0;
            (id.as_str(), demo.name, q)
        })
        .collect();
    // Warm-up: one query per context, so every phase starts with the prefix states loaded.
    for (id, _) in &queried {
        ask(client, id, "How many are there?", args.budget).await?;
    }

    let mut phases = Vec::new();
    eprintln!("phase 1/3: idle");
    phases.push(
        run_phase(
            client,
            &questions,
            args,
            "idle",
            "no sleep work in the background",
        )
        .await?,
    );

    // Continuous background sleep work: keep a job queued or running on the load contexts.
    let mut load = Vec::new();
    for i in 0..args.load_contexts.max(1) {
        let demo = &DEMO_CONTEXTS[i % DEMO_CONTEXTS.len()];
        load.push(create(client, &format!("(Copy {}.) {}", i + 1, demo.text)).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let http = client.http.clone();
        let base = client.base.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for id in &load {
                    // Re-learning a learned version creates a new job; a queued one is reused.
                    let _ = http
                        .post(format!("{base}/v1/contexts/{id}/sleep"))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    // Let the first sleep job start.
    let started = Instant::now();
    while server.state.gate.active() == 0
        && client.metric("sleeptime_sleep_tokens_total").await? == 0
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.state.gate.set_preempt(true);
    eprintln!("phase 2/3: continuous sleep work, queries preempt sleep generations");
    phases.push(
        run_phase(client, &questions, args, "sleep load, preemption", "background sleep jobs; a query interrupts the sleep generation, which resumes afterwards")
            .await?,
    );
    if !args.skip_between_steps {
        server.state.gate.set_preempt(false);
        eprintln!("phase 3/3: continuous sleep work, sleep yields only between model calls");
        phases.push(
            run_phase(
                client,
                &questions,
                args,
                "sleep load, between calls",
                "background sleep jobs; sleep work yields only between model calls",
            )
            .await?,
        );
        server.state.gate.set_preempt(true);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = feeder.await;

    write_report(args, model_name, &phases)
}

async fn ask(client: &Client, id: &str, question: &str, budget: u32) -> Result<Value> {
    client
        .call(
            reqwest::Method::POST,
            &format!("/v1/contexts/{id}/ask"),
            Some(json!({ "question": question, "budget": budget })),
        )
        .await
}

async fn run_phase(
    client: &Client,
    questions: &[(&str, &str, &str)],
    args: &LatencyArgs,
    name: &'static str,
    about: &'static str,
) -> Result<Phase> {
    let started = Instant::now();
    let tokens_before = client.sleep_tokens().await?;
    let yields_before = client.metric("sleeptime_sleep_yields_total").await?;
    let preempt_before = client.metric("sleeptime_sleep_preemptions_total").await?;
    let mut samples = Vec::new();
    for (i, &(id, context, question)) in questions.iter().enumerate() {
        tokio::time::sleep(gap(args.gap_s, i)).await;
        let t = Instant::now();
        let v = ask(client, id, question, args.budget).await?;
        let client_s = t.elapsed().as_secs_f64();
        eprintln!(
            "  {:>2}/{} {:>6.2} s  {context}: {question}",
            i + 1,
            questions.len(),
            client_s
        );
        samples.push(Sample {
            context: context.to_owned(),
            question: question.to_owned(),
            client_s,
            server_s: v["latency_s"].as_f64().unwrap_or(f64::NAN),
            mode: v["mode"].as_str().unwrap_or("?").to_owned(),
            completion_tokens: v["usage"]["completion_tokens"].as_i64().unwrap_or(0),
        });
    }
    let mut sorted: Vec<f64> = samples.iter().map(|s| s.client_s).collect();
    sorted.sort_by(f64::total_cmp);
    Ok(Phase {
        name,
        about,
        p50_s: percentile(&sorted, 50.0),
        p95_s: percentile(&sorted, 95.0),
        p99_s: percentile(&sorted, 99.0),
        max_s: sorted.last().copied().unwrap_or(f64::NAN),
        mean_s: sorted.iter().sum::<f64>() / sorted.len() as f64,
        samples,
        sleep_tokens: client.sleep_tokens().await? - tokens_before,
        yields: client
            .metric("sleeptime_sleep_yields_total")
            .await?
            .saturating_sub(yields_before),
        preemptions: client
            .metric("sleeptime_sleep_preemptions_total")
            .await?
            .saturating_sub(preempt_before),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn write_report(args: &LatencyArgs, model_name: &str, phases: &[Phase]) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let json = json!({ "command": command, "model": model_name, "queries_per_phase": args.queries, "phases": phases });
    std::fs::write(
        args.out.join("latency.json"),
        serde_json::to_string_pretty(&json)?,
    )?;

    let idle = &phases[0];
    let mut md = format!(
        "# Query latency idle vs under background sleep work\n\nCommand: `{command}`\n\nModel: {model_name}. {} queries per phase \
         (the built-in demo questions, from learned contexts, answer budget {} tokens), one at a time with ~{} s pauses; latency \
         measured by the HTTP client. p99 of {} samples is close to the maximum.\n\n\
         | phase | p50 s | p95 s | p99 s | max s | mean s | p50 / idle | p99 / idle | sleep tokens of jobs finished in phase | yields | preemptions |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        args.queries, args.budget, args.gap_s, args.queries
    );
    for p in phases {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {} | {} | {} |\n",
            p.name,
            p.p50_s,
            p.p95_s,
            p.p99_s,
            p.max_s,
            p.mean_s,
            p.p50_s / idle.p50_s,
            p.p99_s / idle.p99_s,
            p.sleep_tokens,
            p.yields,
            p.preemptions
        ));
    }
    md.push('\n');
    for p in phases {
        md.push_str(&format!(
            "- **{}**: {} ({:.0} s).\n",
            p.name, p.about, p.seconds
        ));
    }
    std::fs::write(args.out.join("latency.md"), &md)?;
    print!("{md}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
