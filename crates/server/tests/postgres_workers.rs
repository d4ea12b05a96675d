//! Several processes on one PostgreSQL database: an API-only server and a worker-only server
//! (standing for two processes, each with its own store connection) share the job queue, and
//! the worker hears new jobs through LISTEN/NOTIFY instead of waiting for its poll. Runs when
//! `SLEEPTIME_TEST_POSTGRES_URL` is set (required under CI).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use sleeptime_server::Role;
use sleeptime_store::SqlStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_picks_up_jobs_from_an_api_process_without_polling() {
    let Some(db) = fresh_postgres_database().await else {
        return;
    };
    // So long that only a notification can explain a prompt pick-up.
    let poll = Duration::from_secs(60);
    let mut api_opts = Options::default();
    api_opts.config.role = Role::Api;
    api_opts.config.scheduler.poll = poll;
    let mut worker_opts = Options::default();
    worker_opts.config.role = Role::Worker;
    worker_opts.config.scheduler.poll = poll;
    let api_store = Arc::new(SqlStore::connect(&db, 4).await.expect("api store"));
    let worker_store = Arc::new(SqlStore::connect(&db, 4).await.expect("worker store"));
    let mut worker =
        start_with_store(worker_opts, worker_store, tempfile::tempdir().expect("dir")).await;
    // Let the worker's first poll pass find an empty queue and go to sleep for `poll`.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut api = start_with_store(api_opts, api_store, tempfile::tempdir().expect("dir")).await;
    let (s, _) = worker
        .send(
            "POST",
            "/v1/contexts",
            Some(ALICE),
            Some(json!({"text": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the worker serves no API");

    let started = Instant::now();
    let ctx = api
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let learned = api.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    assert_eq!(learned["learned"]["text"], LEARNED_NOTES);
    // Generous, but well below the poll interval.
    assert!(started.elapsed() < poll / 2, "took {:?}", started.elapsed());
    let kinds = |h: &Harness, k: CallKind| h.backend.calls().iter().filter(|c| c.kind == k).count();
    assert!(
        kinds(&worker, CallKind::Sleep) > 0,
        "the worker ran the sleep program"
    );
    assert_eq!(
        kinds(&api, CallKind::Sleep),
        0,
        "the API process ran no sleep work"
    );

    // A manual trigger on the API process is run by the worker just as promptly.
    let started = Instant::now();
    let (s, job) = api.sleep_and_wait(ALICE, &id, 20).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(
        (job["status"].as_str(), job["trigger"].as_str()),
        (Some("succeeded"), Some("manual")),
        "{job}"
    );
    assert!(started.elapsed() < poll / 2, "took {:?}", started.elapsed());

    api.shutdown().await;
    worker.shutdown().await;
}
