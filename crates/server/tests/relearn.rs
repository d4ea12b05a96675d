//! Scheduled re-learning: a context whose learned context is older than the configured period
//! gets a fresh sleep job, at most once per period, also when the budget makes it fail.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sleeptime_store::{Store, TokenUsage, UsageEntry, UsageKind};

async fn jobs(h: &Harness, id: &str) -> Vec<Value> {
    let (_, list) = h
        .send(
            "GET",
            &format!("/v1/contexts/{id}/jobs?limit=100"),
            Some(ALICE),
            None,
        )
        .await;
    list["data"].as_array().cloned().unwrap_or_default()
}

fn scheduled(jobs: &[Value]) -> Vec<&Value> {
    jobs.iter().filter(|j| j["trigger"] == "schedule").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_context_older_than_the_period_is_relearned() {
    let mut opts = Options::default();
    opts.config.scheduler.relearn_every = Some(Duration::from_secs(1));
    let mut h = start(opts).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let quiet = h
        .create_with(ALICE, json!({"text": "Bob has 2 pears.", "sleep": false}))
        .await;
    let quiet_id = quiet["id"].as_str().expect("id").to_owned();
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(
        (
            learned["status"].as_str(),
            learned["learned"]["version"].as_i64()
        ),
        (Some("ready"), Some(1)),
        "{learned}"
    );

    // A second sample of c' for the same context version, from a scheduled job.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let hist = loop {
        let hist = h.learned_history(ALICE, &id).await;
        if hist["data"].as_array().is_some_and(|d| d.len() >= 2) {
            break hist;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-learning within 20 s: {hist}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let newest = &hist["data"][0];
    assert_eq!(
        (
            newest["version"].as_i64(),
            newest["context_version"].as_i64(),
            newest["status"].as_str()
        ),
        (Some(2), Some(1), Some("ready"))
    );
    let all = jobs(&h, &id).await;
    let job = all
        .iter()
        .find(|j| j["id"] == newest["job_id"])
        .expect("the job that wrote it");
    assert_eq!(
        (job["trigger"].as_str(), job["status"].as_str()),
        (Some("schedule"), Some("succeeded")),
        "{job}"
    );
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(
        learned["learned"]["version"].as_i64(),
        Some(2),
        "the newest sample is current: {learned}"
    );
    // A context never learned is left alone (the idle trigger owns it).
    assert!(jobs(&h, &quiet_id).await.is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relearning_on_a_spent_budget_fails_once_per_period_without_spinning() {
    let period = Duration::from_millis(800);
    let mut opts = Options::default();
    opts.config.scheduler.relearn_every = Some(period);
    opts.config.scheduler.context_budget_tokens = Some(1_000_000);
    let mut h = start(opts).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    // Spend the context's budget for the window.
    h.store
        .record_usage(UsageEntry {
            tenant_id: "alice".into(),
            context_id: Some(id.clone()),
            job_id: None,
            kind: UsageKind::Sleep,
            usage: TokenUsage {
                prompt_tokens: 2_000_000,
                cached_tokens: 0,
                completion_tokens: 0,
            },
        })
        .await
        .expect("record usage");
    let calls = h.backend.calls().len();
    let watched = Duration::from_millis(3200);
    tokio::time::sleep(watched).await;

    let all = jobs(&h, &id).await;
    let runs = scheduled(&all);
    assert!(!runs.is_empty(), "a re-learn was scheduled: {all:?}");
    // Once per period (4 here), nowhere near a loop (a pass runs every period / 4).
    let bound = usize::try_from(watched.as_millis() / period.as_millis()).expect("small") + 2;
    assert!(
        runs.len() <= bound,
        "{} scheduled jobs in {watched:?} with a {period:?} period: {all:?}",
        runs.len()
    );
    for j in runs
        .iter()
        .filter(|j| j["status"] != "pending" && j["status"] != "running")
    {
        assert_eq!(
            (j["status"].as_str(), j["attempts"].as_i64()),
            (Some("failed"), Some(1)),
            "failed once, not retried: {j}"
        );
        assert!(
            j["error"].as_str().is_some_and(|e| e.contains("budget")),
            "{j}"
        );
    }
    assert_eq!(
        h.backend.calls().len(),
        calls,
        "no model call on a spent budget"
    );
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(
        (
            learned["status"].as_str(),
            learned["learned"]["version"].as_i64()
        ),
        (Some("ready"), Some(1)),
        "the old c' stays current: {learned}"
    );
    h.shutdown().await;
}
