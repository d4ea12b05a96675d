//! A query that arrives while a sleep generation runs on the (one) model interrupts it; the
//! sleep step resumes from its text so far once the query is answered, and its result is the
//! same as without the interruption.

mod common;

use std::time::Duration;

use common::{metric, start, CallKind, Options, ALICE};
use reqwest::StatusCode;
use serde_json::json;
use sleeptime_model::scripted::ScriptedBackend;

/// A memory block long enough that generating it takes seconds at the scripted pace.
fn long_notes() -> String {
    (0..120)
        .map(|i| format!("fact{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn slow_device(notes: &str) -> ScriptedBackend {
    ScriptedBackend::new()
        .on("Memory block saved", "<finish_rethinking_memory/>")
        .on(
            "[trigger_rethink_memory]",
            format!("<rethink_memory>{notes}</rethink_memory>").as_str(),
        )
        .fallback("The answer is 1.")
        .token_delay(Duration::from_millis(25))
        .one_at_a_time()
}

async fn wait_for_sleep_call(scripted: &ScriptedBackend) {
    for _ in 0..500 {
        if scripted.calls().iter().any(|c| {
            c.messages
                .iter()
                .any(|m| m.content.contains("[trigger_rethink_memory]"))
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no sleep call started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_interrupts_a_sleep_generation_which_resumes_where_it_stopped() {
    let notes = long_notes();
    let mut opts = Options {
        scripted: slow_device(&notes),
        ..Options::default()
    };
    opts.config.scheduler.idle = Duration::from_millis(10);
    opts.config.sleep.settings.max_rethinks = 1;
    opts.config.answer.timeout = Duration::from_secs(20);
    let mut h = start(opts).await;
    let scripted = h.backend.inner.clone();
    let id = h.create(ALICE, "Alice has 3 apples.").await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    wait_for_sleep_call(&scripted).await;
    let (s, answer) = h
        .ask(ALICE, &id, json!({"question": "How many?", "budget": 8}))
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");

    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    // The resumed generation continued the same text: every fact once, in order.
    let text = learned["learned"]["text"].as_str().expect("learned text");
    assert!(
        text.contains(&notes),
        "notes complete after the resume: {text}"
    );
    assert_eq!(
        text.matches("fact7 ").count(),
        1,
        "nothing generated twice: {text}"
    );

    assert!(
        scripted.interruptions() >= 1,
        "the query interrupted the sleep generation"
    );
    let resumed = scripted
        .calls()
        .into_iter()
        .filter_map(|c| c.assistant_prefix)
        .find(|p| p.starts_with("<rethink_memory>fact0"));
    assert!(
        resumed.is_some(),
        "a call continued from the interrupted text"
    );

    // The query ran before the interrupted sleep step finished, not after it.
    let calls = h.backend.calls();
    let query_end = calls
        .iter()
        .find(|c| c.kind == CallKind::Query)
        .expect("query call")
        .end;
    let last_sleep_end = calls
        .iter()
        .filter(|c| c.kind == CallKind::Sleep)
        .map(|c| c.end)
        .max()
        .expect("sleep calls");
    assert!(
        query_end < last_sleep_end,
        "the query did not wait for the sleep step"
    );

    let metrics = h.metrics_text().await;
    assert!(
        metric(&metrics, "sleeptime_sleep_preemptions_total") >= 1,
        "{metrics}"
    );
    h.shutdown().await;
}
