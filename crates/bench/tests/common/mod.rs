//! A tiny dataset and a scripted model for the harness tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sleeptime_bench::datasets::SplitMode;
use sleeptime_bench::runner::{Backends, RunOptions};
use sleeptime_bench::spec::{Budget, DatasetSpec, ExperimentSpec};
use sleeptime_model::scripted::{Reply, ScriptedBackend};
use sleeptime_model::{ModelError, ModelErrorKind};

/// Three GSM-format problems; ids are line numbers ("1", "2", "3"). Gold: 36, 40, 36.
pub const PROBLEMS: &str = r#"{"question": "Tom has 12 boxes. Each box holds 3 apples. How many apples does Tom have?", "answer": "12 * 3 = 36\n#### 36"}
{"question": "Ann has 5 bags. Each bag holds 8 pears. How many pears does Ann have?", "answer": "5 * 8 = 40\n#### 40"}
{"question": "Bob reads 6 pages a day. He reads for 6 days. How many pages does Bob read?", "answer": "6 * 6 = 36\n#### 36"}
"#;

/// Words of the problems that must never appear in committed results.
pub const DATASET_WORDS: &[&str] = &["Tom has", "apples", "pears", "Bob reads", "Each box"];

pub fn write_dataset(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.jsonl");
    std::fs::write(&path, PROBLEMS).expect("write dataset");
    path
}

/// A model that knows the three problems: sleep-time notes and programs per context, a
/// correct step-by-step answer, a wrong terse answer, and answers from memory that say 36.
pub fn scripted() -> ScriptedBackend {
    ScriptedBackend::new()
        // Multi-Query generation (its prompt quotes the situation, so it comes first).
        .on(
            "You write new questions about a math word problem",
            "Q: How many boxes does Tom have?\nA: He has 12 boxes.\n#### 12\nQ: How many apples are in two boxes?\nA: 2 * 3 = 6\n#### 7\nQ: How many apples are in all of the boxes?\nA: 12 * 3 = 36\n#### 36",
        )
        // One formula at the lowest budget: over c''s names, or over the numbers alone.
        .on("Notes computed earlier", "answer = apples")
        .on("one line that a computer evaluates exactly", "answer = 12 * 3 = 30")
        // Rethink: one rewrite, then finish.
        .on("Memory block saved", "<finish_rethinking_memory/>")
        .on("New situation: Tom", "<rethink_memory>\nApples: 12 * 3 = 36\n</rethink_memory>")
        .on("New situation: Ann", "<rethink_memory>\nPears: 5 * 8 = 40\n</rethink_memory>")
        .on("New situation: Bob", "<rethink_memory>\nPages per day: 6\n</rethink_memory>")
        // Aided: a repair round for Bob's undefined names.
        .on("could not evaluate", "per_day = 6  # pages a day\ndays = 6  # days")
        .on(
            "Situation: Tom",
            "boxes = 12  # boxes\nper_box = 3  # apples per box\napples = boxes * per_box  # apples Tom has\n# Q: How many apples does Tom have? -> apples",
        )
        .on("Situation: Ann", "bags = 5  # bags\nper_bag = 8  # pears per bag\npears = bags * per_bag  # pears Ann has")
        .on("Situation: Bob", "pages = per_day * days  # pages Bob reads\n# Q: How many pages does Bob read? -> pages")
        // A verifier that agrees with one generated pair.
        .on("Question: How many boxes does Tom have?", "He has 12 boxes. The answer is 12.")
        // Program-aided test time.
        .on("writing a small program a computer will evaluate exactly", "a = 6\nanswer = a * 6")
        // Answers.
        .on("Memory block (rethink_memory_block)", "The answer is 36.")
        .on("expert reasoning explanation system", "First, 12 * 3 = 36 and 6 * 6 = 36, so the result follows. The answer is 36.")
        .fallback("The answer is 30.")
}

/// A scripted model whose program-aided calls fail once, then work.
pub fn scripted_failing_once() -> ScriptedBackend {
    ScriptedBackend::new()
        .on_seq(
            "writing a small program a computer will evaluate exactly",
            vec![
                Reply::Fail(ModelError::new(ModelErrorKind::Timeout, "scripted timeout")),
                Reply::Text("answer = 36".into()),
            ],
        )
        .fallback("The answer is 36.")
}

/// A small spec over the tiny dataset.
pub fn spec(dataset: PathBuf) -> ExperimentSpec {
    let mut spec = ExperimentSpec::new(DatasetSpec::Jsonl {
        path: dataset,
        n: None,
        seed: 0,
        split_mode: SplitMode::Sentences,
    });
    spec.budgets = vec![Budget::level(0), Budget::level(4), Budget::forced(4)];
    spec.sleep_budgets = spec.budgets.clone();
    spec.secondary_budgets = vec![Budget::level(0)];
    spec.ks = vec![1, 2];
    spec.k_budgets = vec![Budget::level(0)];
    spec.k_contexts = Some(2);
    spec.samples = 3;
    spec.cold_problems = 1;
    spec
}

pub fn options(root: &Path, name: &str) -> RunOptions {
    RunOptions {
        name: name.into(),
        preset: None,
        run_dir: root.join("runs").join(name),
        cache_dir: root.join("cache"),
        data_dir: root.to_path_buf(),
        concurrency: 1,
        show_progress: false,
        command_line: vec![
            "sleeptime".into(),
            "bench".into(),
            "run".into(),
            "--test".into(),
        ],
        only: None,
        limit: None,
    }
}

pub fn backends(model: &ScriptedBackend) -> Backends {
    Backends::single(Arc::new(model.clone()))
}

/// Records the spec plans for `n` single-question contexts.
pub fn planned(spec: &ExperimentSpec, n: usize) -> usize {
    (0..n).map(|i| spec.conditions_for(i).len()).sum()
}
