//! Command-line arguments: presets, overrides, budgets and programs, the help text that
//! documents the committed runs, and the dry-run plan.

use clap::{CommandFactory, Parser, Subcommand};
use sleeptime_bench::cli::{
    build_spec, parse_programs, plan_text, presets_text, RunArgs, RUN_HELP,
};
use sleeptime_bench::datasets::{Split, SplitMode};
use sleeptime_bench::spec::{preset, Budget, DatasetSpec, Layout, ProgramKind, PRESETS};
use sleeptime_bench::BenchErrorKind;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    #[command(after_long_help = RUN_HELP)]
    Run(RunArgs),
}

fn parse(args: &[&str]) -> RunArgs {
    let mut argv = vec!["bench", "run"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).expect("parses").command {
        Cmd::Run(a) => a,
    }
}

#[test]
fn every_required_run_has_a_preset_and_a_documented_command() {
    for name in [
        "symbolic-200",
        "p1-200",
        "p2-200",
        "multiquery-50",
        "aime2024",
    ] {
        let spec = preset(name).unwrap_or_else(|| panic!("preset {name}"));
        spec.validate().expect("valid");
        let p = PRESETS
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        assert!(RUN_HELP.contains(p.command), "help lacks {}", p.command);
        assert!(presets_text().contains(p.command));
    }
    // A committed run folder is listed, exists, and its report names the command that made it.
    let committed: Vec<String> = PRESETS
        .iter()
        .filter_map(|p| p.committed_folder())
        .collect();
    assert!(
        committed.iter().any(|f| f == "bench/runs/p1-200"),
        "{committed:?}"
    );
    for folder in &committed {
        assert!(
            presets_text().contains(folder.as_str()),
            "presets lack {folder}"
        );
        let report = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(folder)
                .join("report.md"),
        )
        .unwrap_or_else(|e| panic!("{folder}: {e}"));
        let name = folder.rsplit('/').next().expect("name");
        let command = report
            .lines()
            .find(|l| l.starts_with("| command |"))
            .unwrap_or_else(|| panic!("{folder}: no command"));
        assert!(
            command.contains(&format!("--preset {name}"))
                || command.contains(&format!("--name {name}")),
            "{folder}: {command}"
        );
    }
    let mut cmd = Cli::command();
    let help = cmd
        .find_subcommand_mut("run")
        .expect("run")
        .render_long_help()
        .to_string();
    assert!(help.contains("sleeptime bench run --preset multiquery-50"));
    assert!(help.contains("--dry-run"));
    // Sizes the issue asks for.
    let n = |name: &str| match preset(name).expect("preset").dataset {
        DatasetSpec::Generated { n, .. } | DatasetSpec::P2 { n, .. } => n,
        other => panic!("{other:?}"),
    };
    assert!(
        n("symbolic-200") >= 200
            && n("p1-200") >= 200
            && n("p2-200") >= 200
            && n("multiquery-50") >= 50
    );
    assert!(preset("multiquery-50")
        .and_then(|s| s.multi_query)
        .is_some_and(|m| m.extra >= 5 && m.verify_samples >= 3));
    assert!(matches!(
        preset("aime2024").expect("aime").dataset,
        DatasetSpec::Aime { year: 2024 }
    ));
    let full = preset("symbolic-200").expect("preset");
    assert_eq!(full.ks, vec![1, 2, 5, 10]);
    assert!(full.budgets.iter().any(|b| b.cap) && full.budgets.iter().any(|b| b.verbosity == 0));
}

#[test]
fn flags_override_the_preset() {
    let (spec, name, preset_name) = build_spec(&parse(&[
        "--preset",
        "p1-200",
        "--n",
        "20",
        "--seed",
        "5",
        "--budgets",
        "v0,cap32",
        "--ks",
        "1,2",
        "--no-predictability",
        "--name",
        "quick",
    ]))
    .expect("spec");
    assert_eq!(name, "quick");
    assert_eq!(preset_name.as_deref(), Some("p1-200"));
    assert_eq!(
        spec.dataset,
        DatasetSpec::Generated {
            split: Split::P1,
            n: 20,
            seed: 5,
            split_mode: SplitMode::Sentences
        }
    );
    assert_eq!(spec.budgets, vec![Budget::level(0), Budget::forced(32)]);
    assert_eq!(spec.ks, vec![1, 2]);
    assert!(!spec.predictability);
    assert_eq!(spec.seed, 5);

    let (spec, name, _) = build_spec(&parse(&[
        "--dataset",
        "/tmp/mine.jsonl",
        "--split-mode",
        "paper",
    ]))
    .expect("spec");
    assert_eq!(name, "mine");
    assert!(matches!(
        spec.dataset,
        DatasetSpec::Jsonl {
            split_mode: SplitMode::Paper,
            n: None,
            ..
        }
    ));

    let (spec, name, _) = build_spec(&parse(&["--set", "p2-release", "--n", "10"])).expect("spec");
    assert_eq!(name, "p2-10");
    assert!(matches!(spec.dataset, DatasetSpec::P2 { n: 10, .. }));

    let (spec, _, _) =
        build_spec(&parse(&["--preset", "p1-200", "--multi-query", "7"])).expect("spec");
    assert_eq!(spec.multi_query.map(|m| m.extra), Some(7));

    // Multi-Query's knobs; the verifier samples at the generator's temperature unless told.
    let (spec, _, _) = build_spec(&parse(&[
        "--preset",
        "p1-200",
        "--multi-query",
        "5",
        "--mq-calls",
        "4",
        "--mq-verify-samples",
        "5",
        "--mq-verify-temperature",
        "0.2",
    ]))
    .expect("spec");
    let mq = spec.multi_query.expect("multi-query");
    assert_eq!((mq.max_calls, mq.verify_samples), (4, 5));
    assert_eq!((mq.temperature, mq.verify_temperature()), (0.7, 0.2));
    let (spec, _, _) =
        build_spec(&parse(&["--multi-query", "5", "--mq-temperature", "0.4"])).expect("spec");
    let mq = spec.multi_query.expect("multi-query");
    assert_eq!((mq.temperature, mq.verify_temperature()), (0.4, 0.4));
    // Unset, it is left out of the spec that keys cached generated sets, so those keep their keys.
    let json = serde_json::to_string(&mq).expect("json");
    assert!(!json.contains("verify_temperature"), "{json}");

    let invalid = |args: &[&str], says: &str| {
        let err = build_spec(&parse(args)).expect_err("invalid arguments");
        assert_eq!(err.kind(), BenchErrorKind::InvalidInput, "{args:?}: {err}");
        assert!(err.to_string().contains(says), "{args:?}: {err}");
    };
    invalid(&["--preset", "nope"], "unknown preset \"nope\" (known: ");
    invalid(&["--budgets", "v9"], "v9");
    // rethink has no structured c' to route.
    invalid(&["--programs", "rethink=routed"], "routed");
    invalid(&["--name", "../escape"], "run name \"../escape\"");
    invalid(&["--set", "gsm9k"], "unknown --set \"gsm9k\"");
    invalid(
        &["--solve-samples", "0"],
        "--solve-samples must be at least 1",
    );
    invalid(&["--mq-calls", "3"], "add --multi-query N");
    invalid(
        &["--multi-query", "5", "--mq-verify-samples", "2"],
        "at least 3 samples",
    );
    invalid(
        &["--multi-query", "5", "--mq-verify-temperature", "3"],
        "verification temperature 3 is outside 0 to 2",
    );
    invalid(
        &["--multi-query", "5", "--mq-calls", "0"],
        "at least 1 generation call",
    );
}

#[test]
fn budgets_and_programs_parse_and_print() {
    for text in ["v0", "v4", "cap128", "v3:512", "v2cap64"] {
        let b: Budget = text.parse().expect(text);
        assert_eq!(b.label(), text);
    }
    assert_eq!("v2".parse::<Budget>().expect("v2"), Budget::level(2));
    assert!("w2".parse::<Budget>().is_err() && "cap".parse::<Budget>().is_err());
    let programs =
        parse_programs("rethink=full,learned;aided=routed,context-only").expect("programs");
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[0].program, ProgramKind::Rethink);
    assert_eq!(
        programs[1].layouts,
        vec![Layout::Routed, Layout::ContextOnly]
    );
    assert!(parse_programs("dreaming=full").is_err());
}

#[test]
fn dry_run_plans_without_a_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d.jsonl");
    std::fs::write(
        &path,
        "{\"question\": \"A has 2. B has 3. How many in all?\", \"answer\": \"#### 5\"}\n",
    )
    .expect("write");
    let (spec, _, _) = build_spec(&parse(&[
        "--dataset",
        path.to_str().expect("utf8"),
        "--ks",
        "1",
        "--samples",
        "2",
    ]))
    .expect("spec");
    let plan = plan_text(&spec, dir.path(), None, None).expect("plan");
    assert!(plan.contains("1 problems"), "{plan}");
    assert!(
        plan.contains("baseline: 8")
            && plan.contains("rethink/k1/full: 5")
            && plan.contains("rethink/k1/learned: 2"),
        "{plan}"
    );
    // `--only` narrows the plan as it narrows the run.
    let only = regex::Regex::new("^baseline/v[04]$").expect("regex");
    let plan = plan_text(&spec, dir.path(), None, Some(&only)).expect("plan");
    assert!(plan.contains("2 records in 1 series"), "{plan}");
    assert!(
        plan.contains("baseline: 2") && !plan.contains("rethink/k1/full"),
        "{plan}"
    );
}

#[test]
fn shared_data_presets_load() {
    // The committed runs' datasets load from the shared data folder (read-only).
    let data = sleeptime_bench::datasets::data_dir();
    if !data.join("gsm_symbolic").is_dir() {
        eprintln!("shared data not found at {}: skipped", data.display());
        return;
    }
    for name in ["symbolic-200", "p1-200", "p2-200", "aime2024"] {
        let spec = preset(name).expect("preset");
        let dataset = spec
            .dataset
            .load(&data)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let want = if name == "aime2024" { 30 } else { 200 };
        assert_eq!(dataset.len(), want, "{name}");
        let mut ids: Vec<&str> = dataset.problems.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), want, "{name}: ids are unique");
    }
}

#[test]
fn a_missing_data_folder_says_how_to_point_at_one() {
    let missing = std::env::temp_dir().join("sleeptime-no-such-data-folder");
    for set in ["symbolic", "p2-release", "aime2024", "gsm8k"] {
        let (spec, _, _) = build_spec(&parse(&["--set", set, "--n", "3"])).expect("spec");
        let err = spec.dataset.load(&missing).expect_err("no data there");
        assert_eq!(err.kind(), BenchErrorKind::Dataset, "{set}");
        let message = err.to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("--data-dir"), "{message}");
        assert!(message.contains("SLEEPTIME_DATA_DIR"), "{message}");
    }
}
