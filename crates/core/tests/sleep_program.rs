//! The paper's rethink / finish sleep program on the scripted backend.

use sleeptime_core::{
    learn, Context, LearnConfig, NoProgress, RethinkConfig, RethinkProgram, SleepBudget,
    SleepEvent, SleepProgram, SleepProgress,
};
use sleeptime_model::scripted::{Reply, ScriptedBackend};
use sleeptime_model::{ModelBackend, Role, TextProtocol, ToolCall};

const SITUATION: &str =
    "A farmer buys 8 boxes of corn at 3 pounds each and 34 packs of oats at 36 pounds each.";

fn context() -> Context {
    Context::new(SITUATION).expect("non-empty")
}

#[tokio::test]
async fn stops_when_the_model_signals_finish() {
    let model = ScriptedBackend::new().on_seq(
        "trigger_rethink_memory",
        vec![
            Reply::Text("<rethink_memory>\ncorn = 8 * 3 = 24\n</rethink_memory>".into()),
            Reply::Text(
                "<rethink_memory>\ncorn = 8 * 3 = 24\noats = 34 * 36 = 1224\n</rethink_memory>"
                    .into(),
            ),
            Reply::Text("<finish_rethinking_memory/>".into()),
        ],
    );
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.text, "corn = 8 * 3 = 24\noats = 34 * 36 = 1224");
    assert_eq!(draft.stats.rewrites, 2);
    assert_eq!(draft.stats.steps, 3);
    assert!(draft.stats.finished);
    assert_eq!(draft.stats.malformed_replies, 0);
    // The model saw only the context: no question was leaked into sleep time.
    let calls = model.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[0].messages[1].content.contains(SITUATION));
    assert!(calls
        .iter()
        .all(|c| c.messages.iter().all(|m| !m.content.contains("Question:"))));
    // Each later turn carries the previous block back, in protocol form.
    assert!(calls[2]
        .messages
        .iter()
        .any(|m| m.role == Role::Assistant && m.content.contains("oats = 34 * 36 = 1224")));
    assert!(draft.stats.usage.completion_tokens > 0);
}

#[tokio::test]
async fn the_prompt_carries_only_the_latest_block_so_ten_rewrites_fit_a_small_window() {
    let writes: Vec<Reply> = (1..=10)
        .map(|i| {
            Reply::Text(format!(
                "<rethink_memory>version {i} of the notes</rethink_memory>"
            ))
        })
        .collect();
    let model = ScriptedBackend::new().on_seq("trigger_rethink_memory", writes);
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.stats.rewrites, 10);
    let calls = model.calls();
    // system, context, the latest block, the note: the same length at every later turn.
    assert!(
        calls[1..].iter().all(|c| c.messages.len() == 4),
        "{:?}",
        calls.iter().map(|c| c.messages.len()).collect::<Vec<_>>()
    );
    let last = &calls[9].messages;
    assert!(last
        .iter()
        .any(|m| m.content.contains("version 9 of the notes")));
    assert!(
        !last
            .iter()
            .any(|m| m.content.contains("version 8 of the notes")),
        "older blocks dropped"
    );
    assert_eq!(draft.text, "version 10 of the notes");
}

#[tokio::test]
async fn never_rewrites_more_than_the_limit() {
    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        "<rethink_memory>total = 1</rethink_memory>",
    );
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.stats.rewrites, 10, "the paper's limit is 10 rewrites");
    assert_eq!(model.calls().len(), 10);
    assert!(!draft.stats.finished);

    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        "<rethink_memory>total = 1</rethink_memory>",
    );
    let program = RethinkProgram::new(RethinkConfig {
        max_rethinks: 3,
        ..RethinkConfig::default()
    });
    let draft = program
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.stats.rewrites, 3);
}

#[tokio::test]
async fn malformed_replies_are_bounded_and_first_notes_are_kept() {
    // Prose without tags on the first turn is kept as notes; two malformed replies in a row end the run.
    let model = ScriptedBackend::new().on_seq(
        "trigger_rethink_memory",
        vec![
            Reply::Text("Corn weighs 24 pounds in all.".into()),
            Reply::Text("hmm".into()),
            Reply::Text("still no tags".into()),
            Reply::Text("<rethink_memory>never reached</rethink_memory>".into()),
        ],
    );
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.text, "Corn weighs 24 pounds in all.");
    assert_eq!(draft.stats.malformed_replies, 3);
    assert_eq!(model.calls().len(), 3);
    assert!(!draft.stats.finished);
}

#[tokio::test]
async fn loops_in_the_block_are_removed() {
    // Generation stops at the closing tag, so the finish signal comes in the next turn.
    let model = ScriptedBackend::new().on_seq(
        "trigger_rethink_memory",
        vec![
            Reply::Text("<rethink_memory>a = 1\nb = 2\na = 1\nb = 2\na = 1</rethink_memory><finish_rethinking_memory/>".into()),
            Reply::Text("<finish_rethinking_memory/>".into()),
        ],
    );
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    assert_eq!(draft.text, "a = 1\nb = 2");
    assert!(draft.stats.finished);
    assert_eq!(model.calls()[0].stop, vec!["</rethink_memory>".to_owned()]);
}

#[tokio::test]
async fn tool_calling_protocol() {
    let call = |name: &str, args: &str| ToolCall {
        id: format!("c-{name}"),
        name: name.into(),
        arguments: args.into(),
    };
    let model = ScriptedBackend::new()
        .protocol(TextProtocol::ToolCalls)
        .on_seq(
            "trigger_rethink_memory",
            vec![
                Reply::Tools(vec![call(
                    "rethink_memory",
                    r#"{"new_memory":"oats = 1224","target_block_label":"rethink_memory_block"}"#,
                )]),
                Reply::Tools(vec![call("rethink_memory", r#"{"new_memory": ""}"#)]),
                Reply::Tools(vec![call("finish_rethinking_memory", "{}")]),
            ],
        );
    let draft = RethinkProgram::default()
        .run(&context(), &model, SleepBudget::default(), 0, &NoProgress)
        .await
        .expect("sleep");
    let calls = model.calls();
    assert_eq!(calls[0].tools.len(), 2, "both tools offered");
    assert_eq!(
        draft.text, "oats = 1224",
        "an empty new_memory never replaces the block"
    );
    assert_eq!(draft.stats.rewrites, 1);
    assert_eq!(draft.stats.malformed_replies, 1);
    assert!(draft.stats.finished);
    assert!(calls[1].messages.iter().any(|m| m.role == Role::Tool));
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<SleepEvent>>);
impl SleepProgress for Recorder {
    fn event(&self, e: SleepEvent) {
        self.0.lock().expect("lock").push(e);
    }
}

#[tokio::test]
async fn k_drafts_are_sampled_differently_and_concatenated() {
    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        "<rethink_memory>x = 2</rethink_memory><finish_rethinking_memory/>",
    );
    let config = LearnConfig {
        k: 5,
        base_seed: 100,
        ..LearnConfig::default()
    };
    let progress = Recorder::default();
    let learned = learn(
        &RethinkProgram::default(),
        &model,
        &context(),
        &config,
        &progress,
    )
    .await
    .expect("learn");
    assert_eq!(learned.drafts.len(), 5);
    let seeds: Vec<_> = learned.drafts.iter().map(|d| d.seed).collect();
    assert_eq!(
        seeds,
        vec![Some(100), Some(101), Some(102), Some(103), Some(104)]
    );
    assert!(
        model.calls().iter().all(|c| c.temperature > 0.0),
        "k > 1 samples"
    );
    for i in 1..=5 {
        assert!(
            learned.text.contains(&format!("Draft {i}:\nx = 2")),
            "{}",
            learned.text
        );
    }
    let finished = progress
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, SleepEvent::DraftFinished { .. }))
        .count();
    assert_eq!(finished, 5);
    assert_eq!(
        learned.total_usage().completion_tokens,
        5 * learned.drafts[0].stats.usage.completion_tokens
    );

    // k = 1 is greedy and not labelled.
    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        "<rethink_memory>x = 2</rethink_memory><finish_rethinking_memory/>",
    );
    let learned = learn(
        &RethinkProgram::default(),
        &model,
        &context(),
        &LearnConfig::default(),
        &NoProgress,
    )
    .await
    .expect("learn");
    assert_eq!(learned.text, "x = 2");
    assert_eq!(model.calls()[0].temperature, 0.0);
}

#[tokio::test]
async fn refuses_bad_input_before_spending_tokens() {
    assert_eq!(
        Context::new("  \n ").expect_err("empty").kind(),
        sleeptime_core::EngineErrorKind::EmptyContext
    );
    let model = ScriptedBackend::new().context_window(500);
    let long = Context::new("word ".repeat(2_000)).expect("text");
    let err = learn(
        &RethinkProgram::default(),
        &model,
        &long,
        &LearnConfig::default(),
        &NoProgress,
    )
    .await
    .expect_err("too long");
    assert_eq!(err.kind(), sleeptime_core::EngineErrorKind::ContextTooLong);
    assert!(err.to_string().contains("2000 tokens"), "{err}");
    assert!(model.calls().is_empty());
    let err = learn(
        &RethinkProgram::default(),
        &model,
        &context(),
        &LearnConfig {
            k: 0,
            ..LearnConfig::default()
        },
        &NoProgress,
    )
    .await
    .expect_err("k = 0");
    assert_eq!(err.kind(), sleeptime_core::EngineErrorKind::InvalidConfig);
}

#[tokio::test]
async fn backend_errors_surface_with_their_kind() {
    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        Reply::Fail(sleeptime_model::ModelError::new(
            sleeptime_model::ModelErrorKind::Unreachable,
            "connection refused",
        )),
    );
    let err = learn(
        &RethinkProgram::default(),
        &model,
        &context(),
        &LearnConfig::default(),
        &NoProgress,
    )
    .await
    .expect_err("fails");
    assert_eq!(err.kind(), sleeptime_core::EngineErrorKind::Model);
    assert_eq!(
        err.model_error().map(|e| e.kind()),
        Some(sleeptime_model::ModelErrorKind::Unreachable)
    );
    // A reporter that prints the whole chain (anyhow's `{:#}`) says the cause once.
    let mut chain = err.to_string();
    let mut next = std::error::Error::source(&err);
    while let Some(e) = next {
        chain.push_str(&format!(": {e}"));
        next = e.source();
    }
    assert_eq!(chain.matches("connection refused").count(), 1, "{chain}");
    let _ = model.info();
}
