//! Bad run folders: each failure has its kind and a message naming the file, and the folder
//! is left as it was (a run never writes over what it cannot read or did not make).

mod common;

use std::path::Path;

use sleeptime_bench::record::{read_manifest, read_records};
use sleeptime_bench::report::{write_report, ReportOptions};
use sleeptime_bench::runner::run;
use sleeptime_bench::{BenchError, BenchErrorKind};
use sleeptime_model::scripted::ScriptedBackend;

/// A short run (the baseline conditions only) into `runs/NAME`.
async fn baseline_run(root: &Path, name: &str) -> sleeptime_bench::runner::RunOptions {
    let spec = common::spec(common::write_dataset(root));
    let model = common::scripted();
    let mut options = common::options(root, name);
    options.only = Some(regex::Regex::new("^baseline/v0$").expect("regex"));
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!(summary.written, 3, "one record per problem");
    options
}

/// The same run again, expected to be refused; returns the error and the model it was given.
async fn rerun_refused(
    root: &Path,
    options: &sleeptime_bench::runner::RunOptions,
) -> (BenchError, ScriptedBackend) {
    let spec = common::spec(common::write_dataset(root));
    let model = common::scripted();
    let err = run(&spec, common::backends(&model), options)
        .await
        .expect_err("the run must be refused");
    (err, model)
}

fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_folder_of_another_model_is_refused_before_any_work_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = baseline_run(dir.path(), "other-model").await;
    // The folder now says another model made it.
    let manifest_path = options.run_dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).expect("manifest");
    let edited = text.replace(
        "\"fingerprint\": \"scripted\"",
        "\"fingerprint\": \"abc123\"",
    );
    assert_ne!(text, edited, "the manifest records the model's fingerprint");
    std::fs::write(&manifest_path, edited).expect("write");
    let before = folder_bytes(&options.run_dir);

    let (err, model) = rerun_refused(dir.path(), &options).await;
    assert_eq!(err.kind(), BenchErrorKind::RunMismatch, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("abc123") && message.contains("use another --name"),
        "{message}"
    );
    assert!(model.calls().is_empty(), "refused before any model call");
    assert_eq!(folder_bytes(&options.run_dir), before, "nothing written");
}

#[tokio::test]
async fn an_unreadable_manifest_is_refused_not_written_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = baseline_run(dir.path(), "torn").await;
    let manifest_path = options.run_dir.join("manifest.json");
    std::fs::write(&manifest_path, b"{\"name\": \"torn\", ").expect("write");
    let before = folder_bytes(&options.run_dir);

    let (err, model) = rerun_refused(dir.path(), &options).await;
    assert_eq!(err.kind(), BenchErrorKind::Corrupt, "{err}");
    assert!(model.calls().is_empty(), "refused before any model call");
    assert!(
        err.to_string()
            .contains("manifest.json is not a run manifest"),
        "{err}"
    );
    assert_eq!(folder_bytes(&options.run_dir), before, "nothing written");
    assert_eq!(
        read_manifest(&options.run_dir)
            .expect_err("still torn")
            .kind(),
        BenchErrorKind::Corrupt
    );
    assert_eq!(
        read_records(&options.run_dir).expect("records").len(),
        3,
        "the results are intact"
    );
}

#[tokio::test]
async fn reports_of_empty_or_missing_runs_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");

    let missing = write_report(&dir.path().join("runs/none"), &ReportOptions::default())
        .expect_err("no run folder");
    assert_eq!(missing.kind(), BenchErrorKind::Io, "{missing}");
    assert!(missing.to_string().contains("cannot read"), "{missing}");

    // A run whose filter matched no condition: a manifest and no records.
    let spec = common::spec(common::write_dataset(dir.path()));
    let model = common::scripted();
    let mut options = common::options(dir.path(), "empty");
    options.only = Some(regex::Regex::new("^no such condition$").expect("regex"));
    let summary = run(&spec, common::backends(&model), &options)
        .await
        .expect("run");
    assert_eq!(summary.records, 0);
    let empty =
        write_report(&options.run_dir, &ReportOptions::default()).expect_err("nothing to report");
    assert_eq!(empty.kind(), BenchErrorKind::NoResults, "{empty}");
    assert!(empty.to_string().contains("has no results yet"), "{empty}");
    assert!(!options.run_dir.join("report.md").exists());
}
