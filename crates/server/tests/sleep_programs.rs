//! The service's sleep program is configurable: the program-aided one stores a learned
//! context whose values the engine computed, not the model.

mod common;

use common::{start, Options, ALICE};
use reqwest::StatusCode;
use serde_json::json;
use sleeptime_model::scripted::ScriptedBackend;
use sleeptime_server::ProgramChoice;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aided_program_stores_engine_computed_quantities_and_answers_from_them() {
    // The model claims a wrong product in a comment; only the expression counts.
    let program = "# given\napples = 3  # apples Alice has\n# derived\ndoubled = apples * 2  # = 7, says the model\n# likely questions\n# Q: How many apples after doubling? -> doubled";
    let scripted = ScriptedBackend::new()
        .on("small program", program)
        .on(
            "Quantities (every value computed exactly",
            "The answer is 6.",
        )
        .fallback("The answer is 0.");
    let mut opts = Options {
        scripted,
        ..Options::default()
    };
    opts.config.sleep.program = ProgramChoice::Aided;
    let mut h = start(opts).await;
    let id = h
        .create(ALICE, "Alice has 3 apples. She doubles them.")
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let learned = h.wait_learned(ALICE, &id).await;
    assert_eq!(learned["status"], "ready", "{learned}");
    assert!(
        learned["learned"]["program"]
            .as_str()
            .is_some_and(|p| p.starts_with("aided@v")),
        "{learned}"
    );
    let text = learned["learned"]["text"].as_str().expect("text");
    assert!(
        text.contains("doubled = apples * 2 = 6"),
        "the engine computed the value: {text}"
    );
    assert!(
        text.contains("How many apples after doubling? Answer: 6"),
        "{text}"
    );

    let (s, ans) = h
        .ask(ALICE, &id, json!({"question": "How many apples now?"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{ans}");
    assert_eq!(ans["mode"], "learned");
    assert_eq!(ans["number"], 6.0);
    h.shutdown().await;
}
