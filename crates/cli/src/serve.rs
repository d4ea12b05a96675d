//! `sleeptime serve`: the HTTP service on the chosen backend and store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use sleeptime_server::{ApiKeyConfig, ProgramChoice, Role, ServerConfig};
use sleeptime_store::{SqlStore, Store};

use crate::backend::{self, BackendArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Serve the API and run sleep jobs.
    All,
    /// Serve the API only (workers elsewhere share the PostgreSQL queue).
    Api,
    /// Run sleep jobs only.
    Worker,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite://PATH`; default: an SQLite file in the user's data directory.
    #[arg(long, env = "SLEEPTIME_DATABASE")]
    pub database: Option<String>,
    #[arg(long, value_enum, default_value_t = RoleArg::All)]
    pub role: RoleArg,
    /// API keys as TENANT:KEY, comma-separated (keep them in the environment).
    #[arg(
        long,
        env = "SLEEPTIME_API_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,
    /// Accept requests without a key (as tenant "default"). The default when no key is
    /// configured, so that `sleeptime serve` works with nothing set up on loopback.
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Seconds a context must be quiet before sleep time starts.
    #[arg(long, default_value_t = 30)]
    pub idle_seconds: u64,
    /// Sleep jobs run at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Sleep-time token budget per context per day.
    #[arg(long)]
    pub context_budget: Option<u64>,
    /// Sleep-time token budget for the whole service per day.
    #[arg(long)]
    pub global_budget: Option<u64>,
    /// Parallel sleep drafts per context.
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// Most memory rewrites per draft.
    #[arg(long, default_value_t = 10)]
    pub max_rethinks: u32,
    /// Which sleep program writes learned contexts: rethink (the paper's), aided (expressions
    /// computed by the engine), aided-solve (aided, plus the likely questions solved ahead),
    /// aided-open (aided-solve, plus questions with open inputs as checked steps).
    #[arg(long, default_value_t = ProgramChoice::Rethink)]
    pub sleep_program: ProgramChoice,
    /// Aided program: repair rounds for expressions that fail to evaluate.
    #[arg(long, default_value_t = 2)]
    pub repair_rounds: u32,
    /// Aided-solve program: likely questions predicted and solved per context.
    #[arg(long, default_value_t = 2)]
    pub solve_questions: u32,
    /// Aided-solve program: solutions per question (greedy, then sampled); the majority
    /// value is kept.
    #[arg(long, default_value_t = 1)]
    pub solve_samples: u32,
    /// Aided-open program: most open questions kept.
    #[arg(long, default_value_t = 3)]
    pub open_questions: u32,
    /// Re-learn a context once its newest learned context is this many hours old (e.g. after
    /// changing the model or the sleep program); fractions allowed. Default: never.
    #[arg(long, value_name = "HOURS")]
    pub relearn_hours: Option<f64>,
    /// Answer again with full reasoning when the learned context does not back the answer
    /// from it (its number is not in `c'`); a request's `"escalate"` overrides this.
    #[arg(long)]
    pub escalate_unbacked: bool,
}

pub async fn run(backend_args: &BackendArgs, args: ServeArgs) -> Result<()> {
    let mut keys = Vec::new();
    for entry in &args.api_keys {
        let Some((tenant, key)) = entry.split_once(':') else {
            bail!("API keys are TENANT:KEY; got an entry without ':'");
        };
        if tenant.is_empty() || key.len() < 8 {
            bail!("API key for tenant {tenant:?} is too short (at least 8 characters)");
        }
        keys.push(ApiKeyConfig {
            tenant: tenant.to_owned(),
            key: key.to_owned(),
        });
    }
    let mut config = ServerConfig {
        listen: args.listen,
        ..ServerConfig::default()
    };
    config.role = match args.role {
        RoleArg::All => Role::All,
        RoleArg::Api => Role::Api,
        RoleArg::Worker => Role::Worker,
    };
    config.auth.require_keys = !(args.allow_anonymous || keys.is_empty());
    if !config.auth.require_keys {
        eprintln!("warning: no API keys configured: every request is served as tenant \"default\"");
        if !args.listen.ip().is_loopback() {
            bail!("refusing to serve without API keys on a non-loopback address ({}); set SLEEPTIME_API_KEYS", args.listen);
        }
    }
    config.auth.keys = keys;
    config.scheduler.idle = Duration::from_secs(args.idle_seconds);
    config.answer.escalate_unbacked = args.escalate_unbacked;
    config.scheduler.concurrency = args.concurrency.max(1);
    config.scheduler.context_budget_tokens = args.context_budget;
    config.scheduler.global_budget_tokens = args.global_budget;
    config.scheduler.relearn_every = match args.relearn_hours {
        None => None,
        Some(h) => match Duration::try_from_secs_f64(h * 3600.0) {
            Ok(d) if d >= Duration::from_secs(1) => Some(d),
            _ => bail!(
                "--relearn-hours must be a positive number of hours (at least one second), got {h}"
            ),
        },
    };
    config.sleep.k = args.k.max(1);
    config.sleep.settings.max_rethinks = args.max_rethinks;
    config.sleep.settings.repair_rounds = args.repair_rounds;
    config.sleep.settings.solve_questions = args.solve_questions;
    config.sleep.settings.solve_samples = args.solve_samples;
    config.sleep.settings.open_questions = args.open_questions;
    config.sleep.program = args.sleep_program;

    let store: Arc<dyn Store> = match &args.database {
        Some(url) => Arc::new(
            SqlStore::connect(url, 8)
                .await
                .context("cannot open the database")?,
        ),
        None => {
            let path = dirs_data().join("sleeptime.db");
            eprintln!("database: {}", path.display());
            Arc::new(
                SqlStore::open_sqlite(&path)
                    .await
                    .context("cannot open the SQLite database")?,
            )
        }
    };
    let model = backend::build(backend_args).await?;
    eprintln!("listening on http://{} ({:?})", args.listen, config.role);
    sleeptime_server::serve(config, model, store).await?;
    Ok(())
}

/// `$SLEEPTIME_DATA_HOME`, else the user's data directory (`~/.local/share/sleeptime`).
fn dirs_data() -> std::path::PathBuf {
    std::env::var_os("SLEEPTIME_DATA_HOME")
        .map(Into::into)
        .unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("sleeptime")
        })
}
