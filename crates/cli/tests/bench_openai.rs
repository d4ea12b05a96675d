//! `sleeptime bench run` end to end against OpenAI-compatible servers: the harness must work
//! for any such model, and Multi-Query's generator and the predictability scorer may be other
//! servers or models than the one under test. Two mock servers on 127.0.0.1 play a model that
//! solves the test's two problems and a scorer that echoes prompt log-probabilities; the real
//! binary runs against them.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Two GSM-format problems. Gold: 36, 40.
const PROBLEMS: &str = r#"{"question": "Tom has 12 boxes. Each box holds 3 apples. How many apples does Tom have?", "answer": "12 * 3 = 36\n#### 36"}
{"question": "Ann has 5 bags. Each bag holds 8 pears. How many pears does Ann have?", "answer": "5 * 8 = 40\n#### 40"}
"#;

/// Replies chosen by the first phrase the request's messages contain (generation requests,
/// which quote the original question, are told apart before these).
const RULES: &[(&str, &str)] = &[
    ("Memory block saved", "<finish_rethinking_memory/>"),
    (
        "New situation: Tom",
        "<rethink_memory>\nApples: 12 * 3 = 36\n</rethink_memory>",
    ),
    (
        "New situation: Ann",
        "<rethink_memory>\nPears: 5 * 8 = 40\n</rethink_memory>",
    ),
    (
        "How many boxes does Tom have?",
        "Tom has 12 boxes. The answer is 12.",
    ),
    (
        "How many apples are in two boxes?",
        "2 * 3 = 6. The answer is 6.",
    ),
    (
        "How many bags does Ann have?",
        "Ann has 5 bags. The answer is 5.",
    ),
    (
        "How many pears are in two bags?",
        "2 * 8 = 16. The answer is 16.",
    ),
    (
        "How many apples does Tom have?",
        "12 * 3 = 36. The answer is 36.",
    ),
    (
        "How many pears does Ann have?",
        "5 * 8 = 40. The answer is 40.",
    ),
];

const GENERATED_TOM: &str = "Q: How many boxes does Tom have?\nA: Tom has 12 boxes.\n#### 12\n\
Q: How many apples are in two boxes?\nA: 2 * 3 = 6\n#### 6";
const GENERATED_ANN: &str = "Q: How many bags does Ann have?\nA: Ann has 5 bags.\n#### 5\n\
Q: How many pears are in two bags?\nA: 2 * 8 = 16\n#### 16";

/// What one mock server was asked: the `model` field and the messages' text, per request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

impl Seen {
    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().expect("lock").clone()
    }
}

fn reply_for(text: &str) -> String {
    if text.contains("You write new questions about a math word problem") {
        return if text.contains("Tom has 12 boxes") {
            GENERATED_TOM
        } else {
            GENERATED_ANN
        }
        .to_owned();
    }
    RULES
        .iter()
        .find(|(phrase, _)| text.contains(phrase))
        .map_or("I do not know. The answer is 0.", |(_, reply)| reply)
        .to_owned()
}

async fn chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let text = body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let reply = reply_for(&text);
    seen.0.lock().expect("lock").push((model, text));
    Json(json!({
        "id": "mock", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}
    }))
}

/// Prompt log-probabilities the way vLLM's legacy completions endpoint echoes them: one token
/// per word (with its leading space), each at log-probability -0.5, none for the first.
async fn echo_logprobs(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
    let (mut tokens, mut offsets, mut logprobs) = (Vec::new(), Vec::new(), Vec::new());
    let mut start = 0;
    let chars: Vec<char> = prompt.chars().collect();
    for i in 1..=chars.len() {
        if i == chars.len() || (chars[i].is_whitespace() && !chars[i - 1].is_whitespace()) {
            tokens.push(chars[start..i].iter().collect::<String>());
            offsets.push(start);
            logprobs.push(if start == 0 { Value::Null } else { json!(-0.5) });
            start = i;
        }
    }
    seen.0.lock().expect("lock").push((model, prompt));
    Json(json!({
        "id": "mock", "object": "text_completion",
        "choices": [{"index": 0, "text": "", "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets}}]
    }))
}

/// Serves the mock model on a free port; returns its base URL and what it is asked.
async fn mock_server() -> (String, Seen) {
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(echo_logprobs))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    (format!("http://{addr}/v1"), seen)
}

/// Runs the binary with `args` in `dir` without blocking the mock servers' runtime.
async fn sleeptime(dir: &Path, args: Vec<String>) -> Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sleeptime"))
            .args(&args)
            .current_dir(&dir)
            .env_remove("SLEEPTIME_BASE_URL")
            .env_remove("SLEEPTIME_REMOTE_MODEL")
            .env_remove("OPENAI_API_KEY")
            .output()
            .expect("run sleeptime")
    })
    .await
    .expect("join")
}

fn run_args(base_url: &str, extra: &[&str]) -> Vec<String> {
    [
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--remote-model",
        "strong",
        "--tagged-protocol",
        "bench",
        "run",
        "--dataset",
        "tiny.jsonl",
        "--name",
        "remote",
        "--runs-dir",
        "runs",
        "--cache-dir",
        "cache",
        "--budgets",
        "v0",
        "--sleep-budgets",
        "v0",
        "--secondary-budgets",
        "v0",
        "--programs",
        "rethink=full",
        "--ks",
        "1",
        "--samples",
        "0",
        "--cold-problems",
        "0",
        "--formula-budgets",
        "",
        "--no-program-aided",
        "--multi-query",
        "2",
        "--mq-calls",
        "1",
        "--quiet",
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect()
}

fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_query_run_with_a_remote_generator_beside_the_remote_model_under_test() {
    let (model_url, model_seen) = mock_server().await;
    let (generator_url, generator_seen) = mock_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tiny.jsonl"), PROBLEMS).expect("dataset");

    let extra = [
        "--generator-base-url",
        &generator_url,
        "--generator-remote-model",
        "writer",
        "--scorer-base-url",
        &generator_url,
        "--scorer-remote-model",
        "scorer",
    ];
    let out = sleeptime(dir.path(), run_args(&model_url, &extra)).await;
    assert!(
        out.status.success(),
        "bench run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The generator server wrote the questions; the model under test only verified and
    // answered them.
    let (generated, scored): (Vec<_>, Vec<_>) = generator_seen
        .all()
        .into_iter()
        .partition(|(model, _)| model == "writer");
    assert_eq!(generated.len(), 2, "one generation call per context");
    for (_, text) in &generated {
        assert!(text.contains("You write new questions"), "{text}");
    }
    // The scorer (the same server, another model) scores each of the 6 questions once.
    assert_eq!(scored.len(), 6);
    assert!(scored.iter().all(|(model, _)| model == "scorer"));
    let asked = model_seen.all();
    assert!(asked.iter().all(|(model, _)| model == "strong"));
    assert!(asked
        .iter()
        .all(|(_, text)| !text.contains("You write new questions")));
    assert!(
        asked
            .iter()
            .any(|(_, text)| text.contains("How many apples are in two boxes?")),
        "the model under test verifies the generated pairs"
    );

    let run = dir.path().join("runs/remote");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(run.join("multiquery.json")).expect("multiquery.json"),
    )
    .expect("JSON");
    assert_eq!(manifest["provenance"]["generator_model"], "writer");
    assert_eq!(manifest["provenance"]["verifier_model"], "strong");
    assert_eq!(manifest["total_proposed"], 4);
    assert_eq!(manifest["total_verified"], 4);

    // Every context has its original question and both generated ones, under every
    // condition; the mock model answers each right.
    let records = records(&run);
    for condition in ["baseline/v0", "rethink/k1/full/v0"] {
        let mut asked: Vec<(String, u64)> = records
            .iter()
            .filter(|r| r["condition"] == condition)
            .map(|r| {
                (
                    r["context_id"].as_str().expect("context id").to_owned(),
                    r["question_index"].as_u64().expect("index"),
                )
            })
            .collect();
        asked.sort();
        assert_eq!(
            asked,
            [("1", 0), ("1", 1), ("1", 2), ("2", 0), ("2", 1), ("2", 2)]
                .map(|(c, i)| (c.to_owned(), i)),
            "{condition}"
        );
    }
    let baseline_golds: Vec<f64> = records
        .iter()
        .filter(|r| r["condition"] == "baseline/v0")
        .map(|r| r["gold"].as_f64().expect("gold"))
        .collect();
    assert_eq!(baseline_golds.len(), 6);
    for r in records.iter().filter(|r| r["condition"] == "baseline/v0") {
        assert_eq!(r["correct"], true, "{r}");
    }

    // log P(q | c) per question: -0.5 per question token, as the mock scorer says.
    let scores: Vec<&Value> = records
        .iter()
        .filter(|r| r["condition"] == "score")
        .collect();
    assert_eq!(scores.len(), 6);
    for r in scores {
        let tokens = r["question_tokens"].as_f64().expect("question tokens");
        assert!(tokens >= 5.0, "{r}");
        let sum = r["logprob_sum"].as_f64().expect("sum");
        assert!((sum + 0.5 * tokens).abs() < 1e-9, "{r}");
        assert!((r["logprob_mean"].as_f64().expect("mean") + 0.5).abs() < 1e-9);
    }

    // Records and manifests hold ids and numbers, not the problems' text.
    for file in ["results.jsonl", "manifest.json", "multiquery.json"] {
        let text = std::fs::read_to_string(run.join(file)).expect("read");
        for words in ["Tom has", "apples", "pears", "boxes does"] {
            assert!(!text.contains(words), "{file} holds {words:?}");
        }
    }
    let report = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    assert!(report.contains("| `baseline/v0` | 6 |"), "{report}");

    // A rerun is served by the call cache: neither server is asked again.
    let (model_calls, generator_calls) = (model_seen.all().len(), generator_seen.all().len());
    let out = sleeptime(dir.path(), run_args(&model_url, &extra)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(model_seen.all().len(), model_calls);
    assert_eq!(generator_seen.all().len(), generator_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_generator_fails_the_run_with_its_url_and_keeps_no_records() {
    let (model_url, model_seen) = mock_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tiny.jsonl"), PROBLEMS).expect("dataset");
    // Port 9 (discard) on loopback: nothing listens there.
    let dead = "http://127.0.0.1:9/v1";

    let out = sleeptime(
        dir.path(),
        run_args(
            &model_url,
            &["--generator-base-url", dead, "--no-predictability"],
        ),
    )
    .await;
    assert!(!out.status.success());
    // The retries log the URL as they go; the error that ends the run must name it too.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: model backend unreachable") && last.contains("127.0.0.1:9/v1"),
        "{stderr}"
    );
    assert!(
        model_seen
            .all()
            .iter()
            .all(|(_, text)| !text.contains("You write new questions")),
        "generation never falls back to the model under test"
    );
    let results = dir.path().join("runs/remote/results.jsonl");
    assert!(
        !results.exists() || std::fs::read_to_string(&results).expect("read").is_empty(),
        "no records were written"
    );
}
