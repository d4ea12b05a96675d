//! Durability across a killed process: a server is started as a child process, killed with
//! SIGKILL in the middle of a sleep job, and a new server on the same database file re-runs
//! the job exactly once to completion after the dead one's lease expires.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sleeptime_model::scripted::ScriptedBackend;
use sleeptime_model::SharedBackend;
use sleeptime_store::{JobStatus, SqlStore, Store};

const DB_ENV: &str = "SLEEPTIME_CRASH_CHILD_DB";
const ADDR_ENV: &str = "SLEEPTIME_CRASH_CHILD_ADDR_FILE";

fn slow_config() -> sleeptime_server::ServerConfig {
    let mut cfg = test_config();
    cfg.scheduler.idle = Duration::from_millis(10);
    cfg.scheduler.lease = Duration::from_millis(1500);
    cfg.sleep.settings.max_rethinks = 3;
    cfg
}

/// The child: a server whose sleep steps take 2 s each, so it is mid-job when killed. Runs
/// only when the parent test starts it (the variables are set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started as a child process by killed_server_job_is_rerun_exactly_once"]
async fn crash_child_server() {
    let (Ok(db), Ok(addr_file)) = (std::env::var(DB_ENV), std::env::var(ADDR_ENV)) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(
        SqlStore::open_sqlite(std::path::Path::new(&db))
            .await
            .expect("store"),
    );
    let backend = ScriptedBackend::new()
        .on(
            "[trigger_rethink_memory]",
            "<rethink_memory>child notes</rethink_memory>",
        )
        .delay(Duration::from_secs(2));
    let backend: SharedBackend = Arc::new(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = sleeptime_server::Server::start(slow_config(), backend, store, listener)
        .await
        .expect("start");
    std::fs::write(&addr_file, server.addr.to_string()).expect("write addr");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_job_is_rerun_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let addr_file = dir.path().join("addr");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["--ignored", "--exact", "crash_child_server", "--nocapture"])
        .env(DB_ENV, &db)
        .env(ADDR_ENV, &addr_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if !a.is_empty() {
                break a;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "child server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let ctx: serde_json::Value = client
        .post(format!("{base}/v1/contexts"))
        .bearer_auth(ALICE)
        .json(&json!({"text": "Alice has 3 apples."}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = ctx["id"].as_str().expect("id").to_owned();
    let job_id = ctx["sleep_job"]["id"].as_str().expect("job").to_owned();
    loop {
        let j: serde_json::Value = client
            .get(format!("{base}/v1/jobs/{job_id}"))
            .bearer_auth(ALICE)
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json");
        if j["status"] == "running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never started: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // kill -9 in the middle of the job.
    child.start_kill().expect("kill");
    child.wait().await.expect("reap");

    let store = Arc::new(SqlStore::open_sqlite(&db).await.expect("reopen"));
    let job = store.get_job("alice", &job_id).await.expect("job");
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Running, 1),
        "the dead process still holds the lease"
    );
    assert!(
        store
            .current_learned("alice", &id)
            .await
            .expect("current")
            .is_none(),
        "nothing half-written is visible"
    );
    let opts = Options {
        config: slow_config(),
        ..Options::default()
    };
    let mut h = start_with_store(opts, store.clone(), tempfile::tempdir().expect("dir")).await;
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    let job = store.get_job("alice", &job_id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 2));
    let hist = h.learned_history(ALICE, &id).await;
    assert_eq!(
        hist["data"].as_array().map(Vec::len),
        Some(1),
        "completed exactly once: {hist}"
    );
    h.shutdown().await;
}
