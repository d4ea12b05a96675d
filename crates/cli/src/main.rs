//! `sleeptime`: sleep-time compute from the command line.
//!
//! Thin by design: it parses flags, wires the library crates together, and prints.

mod backend;
mod bench;
mod commands;
mod demo;
mod demo_contexts;
mod latency;
mod progress;
mod serve;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::backend::BackendArgs;

/// Sleep-time compute: think about a context while idle, answer fast when asked.
#[derive(Debug, Parser)]
#[command(name = "sleeptime", version, about)]
struct Cli {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run sleep time on built-in contexts, then answer questions both ways and compare.
    Demo(demo::DemoArgs),
    /// Learn a context: S(c) -> c', written to a file.
    Sleep(commands::SleepArgs),
    /// Answer a question about a context, from its learned context when given.
    Ask(commands::AskArgs),
    /// Benchmark sleep-time compute: run experiments, write reports with plots.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Serve the HTTP API with an idle-time sleep scheduler.
    Serve(serve::ServeArgs),
    /// Manage model files.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Download and assemble a registry model (default: the default model).
    Pull { name: Option<String> },
    /// List registry models and whether they are present.
    List,
    /// Print the path of a registry model's file.
    Path { name: Option<String> },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLEEPTIME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&cli.backend, args).await,
        Command::Sleep(args) => commands::sleep(&cli.backend, args).await,
        Command::Ask(args) => commands::ask(&cli.backend, args).await,
        Command::Bench { command } => bench::run(&cli.backend, command).await,
        Command::Serve(args) => serve::run(&cli.backend, args).await,
        Command::Model { command } => match command {
            ModelCommand::Pull { name } => commands::model_pull(name.as_deref()).await,
            ModelCommand::List => commands::model_list(),
            ModelCommand::Path { name } => commands::model_path(name.as_deref()),
        },
    }
}

/// Read a text file, naming it in the error.
fn read_text(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}
