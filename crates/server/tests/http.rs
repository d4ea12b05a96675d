//! Integration tests over real HTTP against a running server with a scripted backend.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sleeptime_model::scripted::ScriptedBackend;
use sleeptime_store::{JobStatus, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_create_learn_ask() {
    let mut h = start(Options::default()).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    assert_eq!(ctx["version"], 1);
    assert_eq!(ctx["sleep_job"]["status"], "pending");

    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    assert_eq!(learned["context_version"], 1);
    assert_eq!(learned["learned"]["version"], 1);
    assert_eq!(learned["learned"]["context_version"], 1);
    assert_eq!(learned["learned"]["text"], LEARNED_NOTES);
    assert_eq!(learned["learned"]["model"]["name"], "scripted");
    assert!(learned["learned"]["program"]
        .as_str()
        .is_some_and(|p| p.starts_with("rethink@v")));
    assert!(learned["learned"]["usage"]["total_tokens"]
        .as_i64()
        .is_some_and(|t| t > 0));

    let (s, ans) = h
        .ask(
            ALICE,
            &id,
            json!({"question": "How many apples now?", "budget": 32}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ans}");
    assert_eq!(ans["mode"], "learned");
    assert_eq!(ans["learned"]["version"], 1);
    assert_eq!(ans["context_version"], 1);
    assert_eq!(ans["number"], 6.0);
    assert!(
        ans["usage"]["cached_tokens"]
            .as_i64()
            .is_some_and(|c| c > 0),
        "prefix prepared at sleep time is reused: {ans}"
    );

    // Jobs, usage ledger, SSE of a finished job, metrics.
    let (_, jobs) = h
        .send("GET", &format!("/v1/contexts/{id}/jobs"), Some(ALICE), None)
        .await;
    assert_eq!(jobs["data"][0]["status"], "succeeded");
    let job_id = jobs["data"][0]["id"].as_str().expect("job id").to_owned();
    let (_, usage) = h.send("GET", "/v1/usage", Some(ALICE), None).await;
    assert!(
        usage["sleep"]["total_tokens"]
            .as_i64()
            .is_some_and(|t| t > 0),
        "{usage}"
    );
    assert!(
        usage["test"]["total_tokens"]
            .as_i64()
            .is_some_and(|t| t > 0),
        "{usage}"
    );
    let sse = h
        .client
        .get(format!("{}/v1/jobs/{job_id}/events", h.base))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("sse");
    assert!(sse.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let body = tokio::time::timeout(Duration::from_secs(5), sse.text())
        .await
        .expect("stream ends")
        .expect("text");
    assert!(body.contains("event: succeeded"), "{body}");
    let metrics = h.metrics_text().await;
    for name in [
        "sleeptime_sleep_tokens_total",
        "sleeptime_test_tokens_total",
        "sleeptime_queue_depth",
        "sleeptime_query_latency_seconds_bucket",
        "sleeptime_job_duration_seconds_count",
        "sleeptime_estimated_tokens_saved_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let (s, _) = h.send("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.send("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);

    // Versions and history.
    let (s, v) = h
        .send(
            "POST",
            &format!("/v1/contexts/{id}/append"),
            Some(ALICE),
            Some(json!({"text": "Then she eats one."})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 2);
    assert_eq!(
        v["text"],
        "Alice has 3 apples. She doubles them.\nThen she eats one."
    );
    let (_, versions) = h
        .send(
            "GET",
            &format!("/v1/contexts/{id}/versions?limit=1"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(versions["data"][0]["version"], 2);
    assert_eq!(versions["has_more"], true);
    let (_, v1) = h
        .send(
            "GET",
            &format!("/v1/contexts/{id}/versions/1"),
            Some(ALICE),
            None,
        )
        .await;
    assert_eq!(v1["text"], "Alice has 3 apples. She doubles them.");
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(
        (
            learned["status"].as_str(),
            learned["learned"]["context_version"].as_i64()
        ),
        (Some("ready"), Some(2))
    );
    let hist = h.learned_history(ALICE, &id).await;
    let statuses: Vec<_> = hist["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| (l["version"].clone(), l["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![(json!(2), json!("ready")), (json!(1), json!("stale"))]
    );

    // Manual trigger with wait relearns.
    let (s, job) = h.sleep_and_wait(ALICE, &id, 10).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["trigger"], "manual");

    // Delete.
    let (s, _) = h
        .send("DELETE", &format!("/v1/contexts/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = h
        .send("GET", &format!("/v1/contexts/{id}"), Some(ALICE), None)
        .await;
    assert_error(s, &body, 404, "not_found");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_escalates_an_answer_the_learned_context_does_not_back_when_asked_to() {
    // The notes say 3 * 2 = 6, but the answer from them says 7; full reasoning says 6.
    let scripted = ScriptedBackend::new()
        .on("at first", "The answer is 3.")
        .on("Memory block saved", "<finish_rethinking_memory/>")
        .on(
            "[trigger_rethink_memory]",
            format!("<rethink_memory>{LEARNED_NOTES}</rethink_memory>").as_str(),
        )
        .on("Memory block (rethink_memory_block)", "The answer is 7.")
        .fallback("Let me think step by step. 3 apples doubled is 6. The answer is 6.");
    let mut h = start(Options {
        scripted,
        ..Options::default()
    })
    .await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    h.wait_learned(ALICE, &id).await;
    let ask = format!("/v1/contexts/{id}/ask");

    // Off by default: the unbacked answer is returned as is.
    let (s, plain) = h
        .send(
            "POST",
            &ask,
            Some(ALICE),
            Some(json!({"question": "How many apples now?"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{plain}");
    assert_eq!(
        (plain["mode"].clone(), plain["number"].clone()),
        (json!("learned"), json!(7.0))
    );

    // Asked to: answered again with full reasoning, both calls counted.
    let (s, ans) = h
        .send(
            "POST",
            &ask,
            Some(ALICE),
            Some(json!({"question": "How many apples now?", "escalate": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ans}");
    assert_eq!(ans["mode"], "escalated");
    assert_eq!(ans["number"], 6.0);
    assert_eq!(ans["unbacked_number"], 7.0);
    assert!(
        ans["note"]
            .as_str()
            .is_some_and(|n| n.contains("did not back")),
        "{ans}"
    );
    let tokens = |v: &Value| v["usage"]["completion_tokens"].as_i64().expect("tokens");
    assert!(
        tokens(&ans) > tokens(&plain),
        "both calls are counted: {ans}"
    );

    // A backed answer is not escalated: the notes hold 6.
    let (s, backed) = h
        .send(
            "POST",
            &ask,
            Some(ALICE),
            Some(
                json!({"question": "How many apples does Alice have at first?", "escalate": true}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{backed}");
    assert_eq!(
        (backed["mode"].clone(), backed["number"].clone()),
        (json!("learned"), json!(3.0))
    );
    assert!(backed["unbacked_number"].is_null());

    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("sleeptime_queries_escalated_total 1"),
        "{metrics}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_without_learned_context_falls_back_and_says_so() {
    let mut h = start(Options::default()).await;
    let ctx = h
        .create_with(ALICE, json!({"text": "Bob has 2 pears.", "sleep": false}))
        .await;
    assert!(ctx["sleep_job"].is_null());
    let id = ctx["id"].as_str().expect("id");
    let (s, ans) = h.ask(ALICE, id, json!({"question": "How many?"})).await;
    assert_eq!(s, StatusCode::OK, "{ans}");
    assert_eq!(ans["mode"], "fallback");
    assert!(ans["learned"].is_null());
    assert!(ans["note"]
        .as_str()
        .is_some_and(|n| n.contains("no learned context")));
    let learned = h.wait_learned(ALICE, id).await;
    assert_eq!(learned["status"], "none");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersede_on_change_wastes_nothing_on_stale_text() {
    // Every sleep step takes 200 ms and the model never finishes on its own (10 rewrites).
    let mut opts = Options {
        scripted: endless_rethinking("notes"),
        sleep_delay: Duration::from_millis(200),
        ..Options::default()
    };
    opts.config.scheduler.idle = Duration::from_millis(300);
    opts.config.sleep.settings.max_rethinks = 4;
    let mut h = start(opts).await;

    // A change during the quiet period: the first job never runs.
    let ctx = h.create(ALICE, "version one text").await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let first_job = ctx["sleep_job"]["id"].as_str().expect("job").to_owned();
    let (s, v) = h
        .send(
            "PUT",
            &format!("/v1/contexts/{id}"),
            Some(ALICE),
            Some(json!({"text": "version two text"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["superseded_jobs"], json!([first_job]));
    let j = h.job(ALICE, &first_job).await;
    assert_eq!(j["status"], "superseded");
    assert_eq!(
        j["usage"]["total_tokens"], 0,
        "no tokens spent on the superseded version"
    );

    // A change while the job runs: it stops, and no c' of the old text is ever published.
    let second_job = v["sleep_job"]["id"].as_str().expect("job").to_owned();
    let j = h.job(ALICE, &second_job).await;
    assert_eq!(j["status"], "pending");
    h.wait_until_running(ALICE, &second_job, Duration::from_secs(5))
        .await;
    let (s, v3) = h
        .send(
            "PUT",
            &format!("/v1/contexts/{id}"),
            Some(ALICE),
            Some(json!({"text": "version three text"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v3["superseded_jobs"], json!([second_job]));
    let j = h.job(ALICE, &second_job).await;
    assert_eq!(j["status"], "superseded");
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    assert_eq!(learned["learned"]["context_version"], 3);
    let hist = h.learned_history(ALICE, &id).await;
    assert_eq!(
        hist["data"].as_array().map(Vec::len),
        Some(1),
        "only version 3 was ever learned: {hist}"
    );
    // The cancelled run stopped promptly: at most one more step of version two after the change.
    let v2_steps = h
        .backend
        .calls()
        .iter()
        .filter(|c| c.text.contains("version two text"))
        .count();
    assert!(v2_steps <= 2, "{v2_steps} sleep steps spent on version two");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_tenant_isolation() {
    let mut h = start(Options::default()).await;
    let (s, body) = h.send("GET", "/v1/contexts", None, None).await;
    assert_error(s, &body, 401, "invalid_api_key");
    let (s, body) = h
        .send("GET", "/v1/contexts", Some("key-nobody-000000"), None)
        .await;
    assert_error(s, &body, 401, "invalid_api_key");
    let (s, body) = h
        .client
        .get(format!("{}/v1/contexts", h.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .map(|r| r.status())
        .map(|s| (s, Value::Null))
        .expect("send");
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");

    let ctx = h.create(ALICE, "Alice's private notes: 3 apples.").await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let job = ctx["sleep_job"]["id"].as_str().expect("job").to_owned();
    for (method, path, body) in [
        ("GET", format!("/v1/contexts/{id}"), None),
        (
            "PUT",
            format!("/v1/contexts/{id}"),
            Some(json!({"text": "hijacked"})),
        ),
        (
            "POST",
            format!("/v1/contexts/{id}/append"),
            Some(json!({"text": "hijacked"})),
        ),
        ("DELETE", format!("/v1/contexts/{id}"), None),
        ("GET", format!("/v1/contexts/{id}/versions"), None),
        ("GET", format!("/v1/contexts/{id}/versions/1"), None),
        ("GET", format!("/v1/contexts/{id}/learned"), None),
        ("GET", format!("/v1/contexts/{id}/learned/history"), None),
        ("GET", format!("/v1/contexts/{id}/jobs"), None),
        ("POST", format!("/v1/contexts/{id}/sleep"), None),
        (
            "POST",
            format!("/v1/contexts/{id}/ask"),
            Some(json!({"question": "what?"})),
        ),
        ("GET", format!("/v1/jobs/{job}"), None),
        ("GET", format!("/v1/jobs/{job}/events"), None),
    ] {
        let (s, b) = h.send(method, &path, Some(BOB), body).await;
        assert_error(s, &b, 404, "not_found");
    }
    let (s, b) = h
        .client
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(BOB)
        .header("x-sleeptime-context", &id)
        .json(&json!({"model": "scripted", "messages": [{"role": "user", "content": "leak it"}]}))
        .send()
        .await
        .map(|r| r.status())
        .map(|s| (s, ()))
        .expect("send");
    assert_eq!(s, StatusCode::NOT_FOUND, "{b:?}");
    let (_, list) = h.send("GET", "/v1/contexts", Some(BOB), None).await;
    assert_eq!(list["data"], json!([]));
    // Alice's context is untouched.
    let (s, mine) = h
        .send("GET", &format!("/v1/contexts/{id}"), Some(ALICE), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (mine["version"].as_i64(), mine["text"].as_str()),
        (Some(1), Some("Alice's private notes: 3 apples."))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus_is_refused_clearly_and_changes_nothing() {
    let mut opts = Options::default();
    opts.config.answer.timeout = Duration::from_millis(500);
    let mut h = start(opts).await;
    let ctx = h
        .create_with(ALICE, json!({"text": "Original text.", "sleep": false}))
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let put = format!("/v1/contexts/{id}");
    let ask = format!("/v1/contexts/{id}/ask");
    let json_ct = Some("application/json");
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(100 * 1024)).into_bytes();
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("POST", "/v1/contexts".into(), json_ct, b"{\"text\": ".to_vec(), 400, "invalid_json"),
        ("POST", "/v1/contexts".into(), json_ct, b"not json at all".to_vec(), 400, "invalid_json"),
        ("POST", "/v1/contexts".into(), json_ct, b"".to_vec(), 400, "invalid_json"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"text\": 5}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/contexts".into(), json_ct, b"[1, 2]".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/contexts".into(), json_ct, b"{}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"txt\": \"typo\"}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"text\": \"a\", \"messages\": []}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"text\": \"   \"}".to_vec(), 422, "invalid_value"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}".to_vec(), 422, "invalid_value"),
        ("POST", "/v1/contexts".into(), json_ct, b"{\"text\": \"caf\xc3\x28\"}".to_vec(), 400, "invalid_utf8"),
        ("POST", "/v1/contexts".into(), Some("text/plain"), b"{\"text\": \"x\"}".to_vec(), 415, "unsupported_media_type"),
        ("POST", "/v1/contexts".into(), json_ct, big.clone(), 413, "payload_too_large"),
        ("PUT", put.clone(), json_ct, big, 413, "payload_too_large"),
        ("PUT", put.clone(), json_ct, b"{\"text\": ".to_vec(), 400, "invalid_json"),
        ("PUT", put.clone(), json_ct, b"{\"text\": [\"a\"]}".to_vec(), 422, "invalid_request"),
        ("PUT", put.clone(), json_ct, b"{\"text\": \"new\", \"if_version\": 7}".to_vec(), 409, "version_conflict"),
        ("PUT", put.clone(), json_ct, b"{\"text\": \"new\", \"if_version\": \"one\"}".to_vec(), 422, "invalid_request"),
        ("POST", format!("/v1/contexts/{id}/append"), json_ct, b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_vec(), 400, "invalid_value"),
        ("PUT", "/v1/contexts/ctx_missing".into(), json_ct, b"{\"text\": \"x\"}".to_vec(), 404, "not_found"),
        ("GET", "/v1/contexts/ctx_missing".into(), None, Vec::new(), 404, "not_found"),
        ("GET", "/v1/jobs/job_missing".into(), None, Vec::new(), 404, "not_found"),
        ("GET", format!("/v1/contexts/{id}/versions/99"), None, Vec::new(), 404, "not_found"),
        ("GET", format!("/v1/contexts/{id}/versions/abc"), None, Vec::new(), 400, "invalid_value"),
        ("GET", "/v1/contexts?limit=abc".into(), None, Vec::new(), 400, "invalid_query"),
        ("GET", "/v1/contexts?limit=0".into(), None, Vec::new(), 400, "invalid_value"),
        ("GET", "/v1/contexts?cursor=x&bogus=1".into(), None, Vec::new(), 400, "invalid_query"),
        ("GET", format!("/v1/contexts/{id}/learned?wait=true&timeout_s=9999"), None, Vec::new(), 400, "invalid_value"),
        ("POST", "/v1/contexts/ctx_missing/ask".into(), json_ct, b"{\"question\": \"q\"}".to_vec(), 404, "not_found"),
        ("POST", ask.clone(), json_ct, b"{}".to_vec(), 422, "invalid_request"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"\"}".to_vec(), 422, "invalid_value"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"q\", \"budget\": 0}".to_vec(), 422, "invalid_value"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"q\", \"budget\": \"ten\"}".to_vec(), 422, "invalid_request"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"q\", \"budget\": -1}".to_vec(), 422, "invalid_request"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"q\", \"verbosity\": 9}".to_vec(), 422, "invalid_value"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"EXPLODE\"}".to_vec(), 502, "backend_error"),
        ("POST", ask.clone(), json_ct, b"{\"question\": \"SLOW\"}".to_vec(), 504, "timeout"),
        ("POST", "/v1/chat/completions".into(), json_ct, b"{\"model\": \"m\"}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/chat/completions".into(), json_ct, b"{\"model\": \"m\", \"messages\": []}".to_vec(), 400, "invalid_value"),
        ("POST", "/v1/chat/completions".into(), json_ct, b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": \"yes\"}".to_vec(), 422, "invalid_request"),
        ("POST", "/v1/chat/completions".into(), json_ct, b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"context_id\": \"ctx_missing\"}".to_vec(), 404, "not_found"),
        ("GET", "/v1/nope".into(), None, Vec::new(), 404, "unknown_route"),
        ("PATCH", put.clone(), json_ct, b"{}".to_vec(), 405, "method_not_allowed"),
    ];
    for (method, path, ct, body, status, code) in cases {
        let (s, b) = h.raw(method, &path, Some(ALICE), ct, body).await;
        assert_eq!(s.as_u16(), status, "{method} {path}: {b}");
        assert_error(s, &b, status, code);
    }
    // Stored state unchanged: one context, version 1, original text, no jobs.
    let (_, list) = h.send("GET", "/v1/contexts", Some(ALICE), None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, c) = h.send("GET", &put, Some(ALICE), None).await;
    assert_eq!(
        (c["version"].as_i64(), c["text"].as_str()),
        (Some(1), Some("Original text."))
    );
    let (_, jobs) = h
        .send("GET", &format!("/v1/contexts/{id}/jobs"), Some(ALICE), None)
        .await;
    assert_eq!(jobs["data"], json!([]));
    // The failed and timed-out queries charged nothing to the ledger.
    let (_, usage) = h.send("GET", "/v1/usage", Some(ALICE), None).await;
    assert_eq!(usage["queries"], 0, "{usage}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backend_fails_the_job_with_its_error() {
    let scripted = ScriptedBackend::new().on(
        "[trigger_rethink_memory]",
        sleeptime_model::scripted::Reply::Fail(sleeptime_model::ModelError::new(
            sleeptime_model::ModelErrorKind::InvalidRequest,
            "model refused the request",
        )),
    );
    let mut h = start(Options {
        scripted,
        ..Options::default()
    })
    .await;
    let ctx = h.create(ALICE, "some text").await;
    let id = ctx["id"].as_str().expect("id");
    let learned = h.wait_learned(ALICE, id).await;
    assert_eq!(learned["status"], "failed", "{learned}");
    assert!(
        learned["job"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("model refused")),
        "{learned}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_come_first_sleep_steps_never_start_during_a_query() {
    // Continuous sleep load: several contexts, 10 slow steps each; queries take 80 ms.
    let mut opts = Options {
        scripted: endless_rethinking("notes"),
        sleep_delay: Duration::from_millis(60),
        query_delay: Duration::from_millis(80),
        ..Options::default()
    };
    opts.config.scheduler.idle = Duration::from_millis(10);
    opts.config.scheduler.concurrency = 2;
    let mut h = start(opts).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            h.create(ALICE, &format!("context number {i} with facts"))
                .await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    // Let sleep work get going.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::new();
    for i in 0..12 {
        let id = &ids[i % ids.len()];
        let t = std::time::Instant::now();
        let (s, a) = h
            .ask(
                ALICE,
                id,
                json!({"question": format!("q{i}?"), "budget": 8}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
        lat.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let calls = h.backend.calls();
    let queries: Vec<_> = calls.iter().filter(|c| c.kind == CallKind::Query).collect();
    let sleeps: Vec<_> = calls.iter().filter(|c| c.kind == CallKind::Sleep).collect();
    assert!(
        sleeps.len() >= 10,
        "there was sleep load ({} steps)",
        sleeps.len()
    );
    for q in &queries {
        for s in &sleeps {
            assert!(
                !(s.start > q.start && s.start < q.end),
                "a sleep step started while a query was being answered"
            );
        }
    }
    let metrics = h.metrics_text().await;
    let yields = metric(&metrics, "sleeptime_sleep_yields_total");
    assert!(yields > 0, "sleep work yielded to queries");
    // A query waits at most for one sleep step already under way, not for the sleep job.
    let worst = lat.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(1500),
        "worst query latency {worst:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_worker_job_is_rerun_once_after_its_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        sleeptime_store::SqlStore::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .expect("store"),
    );
    // A worker of an earlier process claimed the job and died without finishing.
    store.ensure_tenant("alice", "alice").await.expect("tenant");
    let change = store
        .create_context(
            "alice",
            sleeptime_store::NewContext {
                name: None,
                body: sleeptime_store::ContextBody::Text("Alice has 3 apples.".into()),
            },
            Some(sleeptime_store::Enqueue {
                due_at: 0,
                trigger: sleeptime_store::JobTrigger::Idle,
                max_attempts: 3,
            }),
        )
        .await
        .expect("create");
    let dead = store
        .claim_job(Duration::from_millis(700))
        .await
        .expect("claim")
        .expect("job");
    let mut h = start_with_store(Options::default(), store.clone(), dir).await;
    let id = change.context.id.clone();
    // Not taken over while the lease holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = h.job(ALICE, &dead.job.id).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("running"), Some(1))
    );
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    let job = store.get_job("alice", &dead.job.id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 2));
    // The dead worker's late result is refused; exactly one learned context exists.
    assert!(store
        .finish_job(
            &dead.lease,
            sleeptime_store::NewLearned {
                context_hash: change.context.hash.clone(),
                program: "x".into(),
                model_fingerprint: "x".into(),
                model_name: "x".into(),
                text: "late".into(),
                detail: Value::Null,
                usage: Default::default(),
            },
        )
        .await
        .is_err());
    let hist = h.learned_history(ALICE, &id).await;
    assert_eq!(hist["data"].as_array().map(Vec::len), Some(1));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_parks_running_jobs_for_the_next_process() {
    let mut opts = Options {
        scripted: endless_rethinking("notes"),
        sleep_delay: Duration::from_millis(300),
        ..Options::default()
    };
    opts.config.scheduler.idle = Duration::from_millis(10);
    let mut h = start(opts).await;
    let ctx = h.create(ALICE, "long job").await;
    let job_id = ctx["sleep_job"]["id"].as_str().expect("job").to_owned();
    h.wait_until_running(ALICE, &job_id, Duration::from_secs(5))
        .await;
    h.shutdown().await;
    let job = h.store.get_job("alice", &job_id).await.expect("job");
    assert_eq!(
        (job.status, job.attempts),
        (JobStatus::Pending, 0),
        "parked for the next process, attempt not counted"
    );
    // The next process picks it up and finishes it.
    let store = h.store.clone();
    let dir = tempfile::tempdir().expect("dir");
    let mut h2 = start_with_store(Options::default(), store, dir).await;
    let learned = h2
        .wait_learned(ALICE, ctx["id"].as_str().expect("id"))
        .await;
    assert_eq!(learned["status"], "ready", "{learned}");
    h2.shutdown().await;
}

fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_chat_completions() {
    let mut h = start(Options::default()).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    assert_eq!(h.wait_learned(ALICE, &id).await["status"], "ready");

    let (s, models) = h.send("GET", "/v1/models", Some(ALICE), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(models["data"][0]["id"], "scripted");

    let resp = h
        .client
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(ALICE)
        .header("x-sleeptime-context", &id)
        .json(&json!({"model": "scripted", "messages": [{"role": "user", "content": "How many apples?"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-sleeptime-mode"], "learned");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "The answer is 6.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_i64()
            .is_some_and(|c| c > 0),
        "{body}"
    );

    // Streaming, context named in the body, usage chunk, [DONE] last.
    let resp = h
        .client
        .post(format!("{}/v1/chat/completions", h.base))
        .bearer_auth(ALICE)
        .json(&json!({
            "model": "scripted", "stream": true, "stream_options": {"include_usage": true}, "context_id": id,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "How many apples?"}]}],
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "The answer is 6.");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"]
        .as_i64()
        .is_some_and(|t| t > 0));

    // Without a context it is a plain pass-through.
    let (s, plain) = h
        .send(
            "POST",
            "/v1/chat/completions",
            Some(ALICE),
            Some(json!({"model": "scripted", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(plain["sleeptime"]["mode"], "none");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lifecycle_and_supersede() {
    let Some(db) = fresh_postgres_database().await else {
        return;
    };
    let store = std::sync::Arc::new(
        sleeptime_store::SqlStore::connect(&db, 8)
            .await
            .expect("connect"),
    );
    let mut h =
        start_with_store(Options::default(), store, tempfile::tempdir().expect("dir")).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let (s, v) = h
        .send(
            "POST",
            &format!("/v1/contexts/{id}/append"),
            Some(ALICE),
            Some(json!({"text": "More."})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["superseded_jobs"].as_array().map(Vec::len), Some(1));
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(
        (
            learned["status"].as_str(),
            learned["learned"]["context_version"].as_i64()
        ),
        (Some("ready"), Some(2))
    );
    let (s, ans) = h.ask(ALICE, &id, json!({"question": "How many?"})).await;
    assert_eq!(s, StatusCode::OK, "{ans}");
    assert_eq!(ans["mode"], "learned");
    let (s, b) = h
        .send("GET", &format!("/v1/contexts/{id}"), Some(BOB), None)
        .await;
    assert_error(s, &b, 404, "not_found");
    h.shutdown().await;
}

/// The official OpenAI Python client, unmodified, against the server. Runs when
/// `SLEEPTIME_TEST_OPENAI_PYTHON` names a Python that has `openai` installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_client() {
    let Ok(python) = std::env::var("SLEEPTIME_TEST_OPENAI_PYTHON") else {
        eprintln!("skipped: SLEEPTIME_TEST_OPENAI_PYTHON is not set");
        return;
    };
    let mut h = start(Options::default()).await;
    let ctx = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    assert_eq!(h.wait_learned(ALICE, &id).await["status"], "ready");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = tokio::process::Command::new(python)
        .args([script, &h.base, ALICE, &id])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_token_budget_stops_the_job_and_is_accounted() {
    let mut opts = Options {
        scripted: endless_rethinking("notes that never end"),
        ..Options::default()
    };
    opts.config.scheduler.context_budget_tokens = Some(5);
    let mut h = start(opts).await;
    let ctx = h.create(ALICE, "a context with several words in it").await;
    let id = ctx["id"].as_str().expect("id").to_owned();
    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "failed", "{learned}");
    assert!(
        learned["job"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("budget")),
        "{learned}"
    );
    let spent = learned["job"]["usage"]["total_tokens"]
        .as_i64()
        .expect("tokens");
    assert!(spent > 0, "the tokens spent before the stop are recorded");
    // Budget spent: a manual trigger fails at once without calling the model.
    let calls_before = h.backend.calls().len();
    let (s, job) = h.sleep_and_wait(ALICE, &id, 10).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "failed");
    assert_eq!(h.backend.calls().len(), calls_before);
    let (_, usage) = h.send("GET", "/v1/usage", Some(ALICE), None).await;
    assert_eq!(usage["sleep"]["total_tokens"].as_i64(), Some(spent));
    h.shutdown().await;
}
