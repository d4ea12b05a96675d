//! Learned contexts: binding to the context, the program and the model; staleness; files.

use sleeptime_core::{
    learn, Context, EngineErrorKind, Freshness, LearnConfig, LearnedContext, NoProgress,
    RethinkProgram,
};
use sleeptime_model::scripted::ScriptedBackend;
use sleeptime_model::ModelBackend;

async fn learned_for(text: &str) -> (LearnedContext, ScriptedBackend) {
    let model = ScriptedBackend::new().on(
        "trigger_rethink_memory",
        "<rethink_memory>n = 4</rethink_memory><finish_rethinking_memory/>",
    );
    let ctx = Context::new(text).expect("text");
    let learned = learn(
        &RethinkProgram::default(),
        &model,
        &ctx,
        &LearnConfig {
            version: 3,
            ..LearnConfig::default()
        },
        &NoProgress,
    )
    .await
    .expect("learn");
    (learned, model)
}

#[tokio::test]
async fn bound_to_context_program_and_model() {
    let (learned, model) = learned_for("Ann has 4 apples.").await;
    assert_eq!(learned.version, 3);
    assert_eq!(
        learned.context_hash,
        *Context::new("Ann has 4 apples.").expect("text").hash()
    );
    assert_eq!(learned.program.name, "rethink");
    assert!(learned.program.params.contains("max_rethinks=10"));
    assert_eq!(learned.model_fingerprint, model.info().fingerprint);
    let same = Context::new("  Ann has 4 apples.\n").expect("text");
    assert_eq!(
        learned.freshness(&same, &model.info()),
        Freshness::Current,
        "whitespace around the text does not matter"
    );
}

#[tokio::test]
async fn a_changed_context_makes_it_stale() {
    let (learned, model) = learned_for("Ann has 4 apples.").await;
    let changed = Context::new("Ann has 5 apples.").expect("text");
    assert!(matches!(
        learned.freshness(&changed, &model.info()),
        Freshness::ContextChanged { .. }
    ));
    let err = learned.ensure_current_for(&changed).expect_err("stale");
    assert_eq!(err.kind(), EngineErrorKind::Stale);
    assert!(err.to_string().contains("run sleep again"));
    let mut other = model.info();
    other.fingerprint = "other-weights".into();
    other.name = "other".into();
    let ctx = Context::new("Ann has 4 apples.").expect("text");
    assert!(matches!(
        learned.freshness(&ctx, &other),
        Freshness::OtherModel { .. }
    ));
}

#[tokio::test]
async fn files_round_trip_and_bad_files_are_refused() {
    let (learned, _) = learned_for("Ann has 4 apples.").await;
    let dir = std::env::temp_dir().join(format!("sleeptime-learned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("learned.json");
    learned.save(&path).expect("save");
    assert_eq!(LearnedContext::load(&path).expect("load"), learned);
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
    std::fs::write(&path, b"{not json").expect("write");
    let err = LearnedContext::load(&path).expect_err("bad file");
    assert_eq!(err.kind(), EngineErrorKind::Io);
    assert!(err.to_string().contains("not a learned-context file"));
    let err = LearnedContext::load(&dir.join("missing.json")).expect_err("missing");
    assert_eq!(err.kind(), EngineErrorKind::Io);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
