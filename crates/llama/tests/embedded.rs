//! Integration tests on the real embedded backend with the smallest registry model,
//! SmolLM2-135M-Instruct (93 MB). Skipped with a notice when the file is missing, unless
//! `CI` is set, where a missing model is a failure.

use std::path::PathBuf;

use sleeptime_llama::{LlamaBackend, LlamaConfig};
use sleeptime_model::{
    registry, ChatRequest, FinishReason, Message, ModelBackend, ModelErrorKind, TextProtocol,
};

fn model_path() -> Option<PathBuf> {
    let spec = registry::find(registry::SMALLEST_MODEL).expect("smallest model is in the registry");
    let path = spec.cached_path();
    if path.is_file() {
        return Some(path);
    }
    let hint = format!(
        "{} is missing; run `sleeptime model pull {}`",
        path.display(),
        registry::SMALLEST_MODEL
    );
    if std::env::var_os("CI").is_some() {
        panic!("{hint}");
    }
    eprintln!("skipping embedded llama test: {hint}");
    None
}

fn config(path: PathBuf) -> LlamaConfig {
    LlamaConfig::new(path)
        .with_context_window(2048)
        .with_threads(2)
}

fn load(path: &std::path::Path) -> LlamaBackend {
    LlamaBackend::load(config(path.to_path_buf())).expect("model loads")
}

/// A context of a few hundred tokens, like one a sleep-time pass would learn.
fn long_context() -> String {
    let facts = [
        "Maria planted 12 tomato plants in the north bed.",
        "Each tomato plant gives about 4 kilograms of fruit per season.",
        "The south bed holds 30 lettuce heads, harvested every three weeks.",
        "Watering happens at 6 in the morning, never in the evening.",
        "The shed contains 3 shovels, 2 rakes and a wheelbarrow with a red handle.",
        "Compost is turned every Sunday and is ready after ten weeks.",
        "The apple tree by the gate was planted in 2009 by Maria's grandfather.",
        "Slugs are kept away with copper tape around the raised beds.",
    ];
    let mut text = String::from("Garden notes:\n");
    for round in 0..3 {
        for (i, f) in facts.iter().enumerate() {
            text.push_str(&format!("{}. {f}\n", round * facts.len() + i + 1));
        }
    }
    text
}

fn system_with_context() -> Vec<Message> {
    vec![Message::system(format!(
        "You are a helpful assistant. Answer briefly using the notes.\n\n{}",
        long_context()
    ))]
}

fn question(q: &str) -> Vec<Message> {
    let mut msgs = system_with_context();
    msgs.push(Message::user(q));
    msgs
}

#[tokio::test]
async fn completes_with_usage_and_length_finish() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let info = backend.info();
    assert_eq!(info.protocol, TextProtocol::Tagged);
    assert!(info.prefix_state);
    assert_eq!(info.context_window, 2048);
    assert_eq!(
        info.fingerprint,
        registry::find("smollm2-135m").expect("spec").sha256
    );
    assert!(!info.name.is_empty());

    let req = ChatRequest::new(vec![Message::user("Write a long story about a dragon.")], 3);
    let out = backend.complete(&req).await.expect("completion");
    assert!(!out.text.trim().is_empty(), "empty text: {out:?}");
    assert!(out.usage.prompt_tokens > 0);
    assert!(
        (1..=3).contains(&out.usage.completion_tokens),
        "{:?}",
        out.usage
    );
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert!(out.time_to_first_token <= out.total_time);
    assert!(out.total_time.as_nanos() > 0);

    assert!(
        backend
            .count_tokens("Hello there, world!")
            .await
            .expect("count")
            > 0
    );
    assert_eq!(backend.count_tokens("").await.expect("count"), 0);
}

#[tokio::test]
async fn greedy_is_deterministic_and_stop_strings_cut() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let req = ChatRequest::new(
        vec![Message::user("List three colours of the rainbow.")],
        24,
    );
    let a = backend.complete(&req).await.expect("first");
    // The second call reuses nearly all of the prompt from the live KV cache.
    let b = backend.complete(&req).await.expect("second");
    assert_eq!(a.text, b.text);
    assert!(b.usage.cached_prompt_tokens > 0, "{:?}", b.usage);

    // A stop string taken from the middle of the reply cuts it right there.
    let words: Vec<&str> = a.text.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "reply too short to test stops: {:?}",
        a.text
    );
    let stop = words[2].to_owned();
    let at = a.text.find(&stop).expect("stop occurs");
    let mut with_stop = req.clone();
    with_stop.stop = vec![stop.clone(), String::new()];
    let c = backend.complete(&with_stop).await.expect("with stop");
    assert_eq!(c.text, a.text[..at], "stop {stop:?}");
    assert_eq!(c.finish_reason, FinishReason::Stop);

    // Streaming hands out the same text, piece by piece.
    let mut streamed = String::new();
    let mut pieces = 0;
    let d = backend
        .complete_streaming(&with_stop, &mut |t: &str| {
            streamed.push_str(t);
            pieces += 1;
        })
        .await
        .expect("streaming");
    assert_eq!(d.text, c.text);
    assert_eq!(streamed, d.text);
    assert!(pieces >= 1);

    // Seeded sampling is reproducible too.
    let sampled = req.clone().with_sampling(0.9, 0.95, Some(7));
    let s1 = backend.complete(&sampled).await.expect("sampled");
    let s2 = backend.complete(&sampled).await.expect("sampled again");
    assert_eq!(s1.text, s2.text);
}

#[tokio::test]
async fn prepared_prefix_is_reused_with_identical_output() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let prefix = backend
        .prepare_prefix(&system_with_context())
        .await
        .expect("prepare");
    assert!(prefix.evaluated);
    assert!(prefix.tokens > 200, "context too short: {prefix:?}");
    assert_eq!(prefix.id.len(), 64);
    assert_eq!(prefix.path, None);
    let again = backend
        .prepare_prefix(&system_with_context())
        .await
        .expect("prepare again");
    assert!(!again.evaluated);
    assert_eq!(again.id, prefix.id);

    // Push the prefix out of the live KV cache, so the next call must restore the snapshot.
    let other = ChatRequest::new(vec![Message::user("Say hello.")], 4);
    backend.complete(&other).await.expect("unrelated call");

    let req = ChatRequest::new(question("How many tomato plants did Maria plant?"), 20);
    let warm = backend.complete(&req).await.expect("with prefix");
    assert_eq!(
        warm.usage.cached_prompt_tokens,
        u64::from(prefix.tokens),
        "{:?}",
        warm.usage
    );
    assert!(warm.usage.evaluated_prompt_tokens() < u64::from(prefix.tokens));
    assert!(warm.usage.evaluated_prompt_tokens() > 0);

    let fresh_backend = load(&path);
    let cold = fresh_backend.complete(&req).await.expect("fresh");
    assert_eq!(cold.usage.cached_prompt_tokens, 0);
    assert_eq!(cold.usage.prompt_tokens, warm.usage.prompt_tokens);
    assert_eq!(warm.text, cold.text);
    eprintln!(
        "prefix {} tokens: cold ttft {:?}, warm ttft {:?}",
        prefix.tokens, cold.time_to_first_token, warm.time_to_first_token
    );
}

#[tokio::test]
async fn prefix_states_persist_across_backends() {
    let Some(path) = model_path() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let first = LlamaBackend::load(config(path.clone()).with_prefix_cache_dir(dir.path()))
        .expect("load first");
    let made = first
        .prepare_prefix(&system_with_context())
        .await
        .expect("prepare");
    assert!(made.evaluated);
    let file = made.path.clone().expect("persisted");
    assert!(file.is_file());
    assert!(file.starts_with(dir.path()));
    // Only the state and its checksum; no temporary file is left beside them.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("{}.state", made.id),
            format!("{}.state.sha256", made.id)
        ]
    );
    let req = ChatRequest::new(question("When is watering done?"), 16);
    let expected = first.complete(&req).await.expect("first completion");
    drop(first);

    let second = LlamaBackend::load(config(path.clone()).with_prefix_cache_dir(dir.path()))
        .expect("load second");
    let loaded = second
        .prepare_prefix(&system_with_context())
        .await
        .expect("prepare from disk");
    assert!(!loaded.evaluated, "{loaded:?}");
    assert_eq!(loaded.id, made.id);
    assert_eq!(loaded.path.as_deref(), Some(file.as_path()));
    // Flush the live cache so the completion restores the stored state.
    second
        .score_continuation("Unrelated text.", " More of it.")
        .await
        .expect("score");
    let out = second
        .complete(&req)
        .await
        .expect("completion from disk state");
    assert_eq!(out.usage.cached_prompt_tokens, u64::from(made.tokens));
    assert_eq!(out.text, expected.text);

    // A damaged state file is ignored and replaced, never trusted.
    let bytes = std::fs::read(&file).expect("read state");
    std::fs::write(&file, &bytes[..bytes.len() / 3]).expect("truncate state");
    let third =
        LlamaBackend::load(config(path).with_prefix_cache_dir(dir.path())).expect("load third");
    let redone = third
        .prepare_prefix(&system_with_context())
        .await
        .expect("prepare over damage");
    assert!(redone.evaluated);
    assert_eq!(
        std::fs::metadata(&file).expect("state").len(),
        bytes.len() as u64
    );
}

#[tokio::test]
async fn continuation_scores_prefer_the_predictable() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let prefix =
        "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.";
    let repeat = backend
        .score_continuation(prefix, " The quick brown fox jumps over the lazy dog.")
        .await
        .expect("score repeat");
    let unrelated = backend
        .score_continuation(
            prefix,
            " Seventeen violet submarines audit Martian tax forms.",
        )
        .await
        .expect("score unrelated");
    assert!(repeat.tokens > 3 && unrelated.tokens > 3);
    assert!(repeat.logprob_sum < 0.0 && unrelated.logprob_sum < 0.0);
    assert!(
        repeat.logprob_mean() > unrelated.logprob_mean(),
        "repeat {repeat:?} vs unrelated {unrelated:?}"
    );
    // Scoring the same pair again (prefix now cached) gives the same number.
    let again = backend
        .score_continuation(prefix, " The quick brown fox jumps over the lazy dog.")
        .await
        .expect("score again");
    assert!(
        (again.logprob_sum - repeat.logprob_sum).abs() < 1e-3,
        "{again:?} vs {repeat:?}"
    );

    let empty = backend.score_continuation(prefix, "").await.expect("empty");
    assert_eq!(empty.tokens, 0);
    assert_eq!(empty.logprob_sum, 0.0);

    // An empty prefix (a problem whose context is empty) scores the whole continuation
    // unconditionally, every token of it counted.
    let text = "The quick brown fox jumps over the lazy dog.";
    let with_prefix = backend
        .score_continuation("Once more: ", text)
        .await
        .expect("prefixed");
    let alone = backend
        .score_continuation("", text)
        .await
        .expect("no prefix");
    assert_eq!(
        alone.tokens, with_prefix.tokens,
        "{alone:?} vs {with_prefix:?}"
    );
    assert!(
        alone.logprob_sum.is_finite() && alone.logprob_sum < 0.0,
        "{alone:?}"
    );
}

#[tokio::test]
async fn errors_have_the_right_kinds() {
    let Some(path) = model_path() else { return };
    let small = LlamaBackend::load(config(path.clone()).with_context_window(256)).expect("load");
    assert_eq!(small.info().context_window, 256);
    let long = "word ".repeat(600);
    let err = small
        .complete(&ChatRequest::new(vec![Message::user(long.clone())], 8))
        .await
        .expect_err("overflow");
    assert_eq!(err.kind(), ModelErrorKind::ContextOverflow, "{err}");
    assert!(err.message().contains("256"), "{err}");
    // The prompt fits, but not with the reply budget.
    let err = small
        .complete(&ChatRequest::new(vec![Message::user("Hi")], 1000))
        .await
        .expect_err("overflow with max_tokens");
    assert_eq!(err.kind(), ModelErrorKind::ContextOverflow, "{err}");
    let err = small
        .prepare_prefix(&[Message::system(long.clone())])
        .await
        .expect_err("prefix");
    assert_eq!(err.kind(), ModelErrorKind::ContextOverflow);
    let err = small
        .score_continuation(&long, " more")
        .await
        .expect_err("score");
    assert_eq!(err.kind(), ModelErrorKind::ContextOverflow);

    let err = small
        .complete(&ChatRequest::new(Vec::new(), 8))
        .await
        .expect_err("no messages");
    assert_eq!(err.kind(), ModelErrorKind::InvalidRequest);
    let err = small
        .prepare_prefix(&[])
        .await
        .expect_err("no prefix messages");
    assert_eq!(err.kind(), ModelErrorKind::InvalidRequest);
    // The backend still works after refusing bad requests.
    let ok = small
        .complete(&ChatRequest::new(vec![Message::user("Hi")], 2))
        .await;
    assert!(ok.is_ok(), "{ok:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = LlamaBackend::load(LlamaConfig::new(dir.path().join("nope.gguf")))
        .expect_err("missing file");
    assert_eq!(missing.kind(), ModelErrorKind::ModelFile);
    assert!(missing.message().contains("nope.gguf"), "{missing}");

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").expect("write");
    let err = LlamaBackend::load(LlamaConfig::new(&garbage)).expect_err("garbage");
    assert_eq!(err.kind(), ModelErrorKind::ModelFile);
    assert!(err.message().contains("not a GGUF"), "{err}");

    // Right magic, broken body: llama.cpp itself refuses it.
    let broken = dir.path().join("broken.gguf");
    let mut body = b"GGUF".to_vec();
    body.extend(std::iter::repeat_n(0xAB_u8, 4096));
    std::fs::write(&broken, body).expect("write");
    let err = LlamaBackend::load(LlamaConfig::new(&broken)).expect_err("broken");
    assert_eq!(err.kind(), ModelErrorKind::ModelFile, "{err}");
}

#[tokio::test]
async fn assistant_prefix_is_continued() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let plain = ChatRequest::new(vec![Message::user("What is the capital of France?")], 8);
    let mut forced = plain.clone();
    forced.assistant_prefix = Some("The capital of France is".into());
    let without = backend.complete(&plain).await.expect("plain");
    let with = backend.complete(&forced).await.expect("forced");
    assert!(with.usage.prompt_tokens > without.usage.prompt_tokens);
    assert!(!with.text.trim().is_empty());
    assert!(
        !with
            .text
            .trim_start()
            .starts_with("The capital of France is"),
        "the reply repeated the forced prefix: {:?}",
        with.text
    );
    eprintln!("forced continuation: {:?}", with.text);
}

#[tokio::test]
async fn interrupted_generation_parks_its_prompt_and_resumes_from_its_text() {
    let Some(path) = model_path() else { return };
    let backend = load(&path);
    let ask = || {
        ChatRequest::new(
            question("List everything Maria grows, one item per line."),
            24,
        )
    };
    let query = ChatRequest::new(vec![Message::user("Say hello.")], 4);

    // Interrupted during prefill: nothing generated, the evaluated batches are parked.
    let interrupt = sleeptime_model::Interrupt::new();
    interrupt.trigger();
    let mut request = ask();
    request.interrupt = Some(interrupt);
    let cut = backend
        .complete(&request)
        .await
        .expect("interrupted in prefill");
    assert_eq!(cut.finish_reason, FinishReason::Interrupted);
    assert_eq!(cut.usage.completion_tokens, 0, "stopped before generating");
    backend.complete(&query).await.expect("query in between");
    let again = backend
        .complete(&ask())
        .await
        .expect("resumed after prefill");
    assert!(
        again.usage.cached_prompt_tokens >= 32,
        "parked batches reused: {:?}",
        again.usage
    );

    // Interrupted while generating (a query arrives as the first text streams out).
    let interrupt = sleeptime_model::Interrupt::new();
    let mut request = ask();
    request.interrupt = Some(interrupt.clone());
    let mut on_text = |_: &str| interrupt.trigger();
    let cut = backend
        .complete_streaming(&request, &mut on_text)
        .await
        .expect("interrupted call");
    assert_eq!(cut.finish_reason, FinishReason::Interrupted);
    assert!(
        cut.usage.completion_tokens < 24,
        "stopped early: {} tokens",
        cut.usage.completion_tokens
    );

    // A query takes over the KV cache; resuming restores the parked prompt instead of
    // evaluating it again.
    let other = backend.complete(&query).await.expect("query in between");
    assert_ne!(
        other.finish_reason,
        FinishReason::Interrupted,
        "no interrupt on this one"
    );
    let mut resumed = ask();
    resumed.assistant_prefix = Some(cut.text.clone());
    let rest = backend.complete(&resumed).await.expect("resumed call");
    assert_ne!(rest.finish_reason, FinishReason::Interrupted);
    let context_tokens = backend.count_tokens(&long_context()).await.expect("count");
    assert!(
        rest.usage.cached_prompt_tokens >= u64::from(context_tokens),
        "the parked prompt was reused: {} cached of {} (the context alone is {context_tokens})",
        rest.usage.cached_prompt_tokens,
        rest.usage.prompt_tokens
    );
}
