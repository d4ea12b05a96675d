//! `sleeptime bench`: run the benchmark experiments and write their reports. The harness
//! lives in `sleeptime-bench`; this file only supplies the models, built from the global
//! backend flags.

use anyhow::Result;
use clap::Subcommand;
use sleeptime_bench::cli::{
    BackendFactory, BuildFuture, ModelOverride, ReportArgs, RunArgs, RUN_HELP,
};
use sleeptime_bench::BenchError;

use crate::backend::{self, BackendArgs, BackendKind};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run an experiment (a preset or your own settings) into bench/runs/NAME, resuming
    /// where an earlier invocation stopped; every model call is cached under bench/cache.
    #[command(after_long_help = RUN_HELP)]
    Run(Box<RunArgs>),
    /// Write report.md, summary.json and PNG/SVG figures for a run folder.
    Report(ReportArgs),
    /// List the presets of the committed runs.
    Presets,
    /// Measure the service's query latency idle vs under continuous background sleep work
    /// (p50/p95/p99), with and without preemption of sleep generations.
    Latency(crate::latency::LatencyArgs),
}

/// Builds the run's model from the global flags, and other models (Multi-Query generator,
/// predictability scorer) from the same flags with the role's model swapped in.
#[derive(Debug)]
struct Factory<'a> {
    args: &'a BackendArgs,
}

impl BackendFactory for Factory<'_> {
    fn build<'a>(&'a self, which: Option<&'a ModelOverride>) -> BuildFuture<'a> {
        Box::pin(async move {
            let mut args = self.args.clone();
            if let Some(o) = which {
                if let Some(url) = &o.base_url {
                    args.backend = BackendKind::Openai;
                    args.base_url = Some(url.clone());
                    if let Some(m) = &o.remote_model {
                        args.remote_model = Some(m.clone());
                    }
                } else if let Some(m) = &o.remote_model {
                    args.backend = BackendKind::Openai;
                    args.remote_model = Some(m.clone());
                } else if let Some(m) = &o.model {
                    args.backend = BackendKind::Embedded;
                    args.model = m.clone();
                }
            }
            // `{:#}` keeps anyhow's chain of causes in the one message.
            backend::build(&args)
                .await
                .map_err(|e| BenchError::backend(&format!("{e:#}")))
        })
    }
}

pub async fn run(backend: &BackendArgs, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Run(args) => {
            Ok(sleeptime_bench::cli::run_command(*args, &Factory { args: backend }).await?)
        }
        BenchCommand::Report(args) => Ok(sleeptime_bench::cli::report_command(&args)?),
        BenchCommand::Presets => {
            print!("{}", sleeptime_bench::cli::presets_text());
            Ok(())
        }
        BenchCommand::Latency(args) => crate::latency::run(backend, args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn bench_commands_parse_beside_the_global_backend_flags() {
        crate::Cli::command().debug_assert();
        let cli = crate::Cli::try_parse_from([
            "sleeptime",
            "bench",
            "run",
            "--preset",
            "symbolic-200",
            "--ctx-size",
            "16384",
            "--limit",
            "3",
            "--dry-run",
        ])
        .expect("parses");
        assert_eq!(cli.backend.ctx_size, 16384);
        match cli.command {
            crate::Command::Bench {
                command: super::BenchCommand::Run(args),
            } => {
                assert_eq!(args.preset.as_deref(), Some("symbolic-200"));
                assert_eq!(args.limit, Some(3));
                assert!(args.dry_run);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            crate::Cli::try_parse_from(["sleeptime", "bench", "report", "bench/runs/x"]).is_ok()
        );
        assert!(crate::Cli::try_parse_from(["sleeptime", "bench", "presets"]).is_ok());
    }
}
