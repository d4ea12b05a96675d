//! Turning command-line flags into a model backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use sleeptime_model::{registry, SharedBackend, TextProtocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// llama.cpp inside this process, on a GGUF file (no server, no API key).
    Embedded,
    /// Any OpenAI-compatible server: vLLM, SGLang, llama-server, Ollama, OpenAI.
    Openai,
}

/// Which model answers, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = BackendKind::Embedded, global = true)]
    pub backend: BackendKind,
    /// Embedded: a registry model name (see `sleeptime model list`) or a path to a GGUF file.
    #[arg(long, default_value = registry::DEFAULT_MODEL, global = true)]
    pub model: String,
    /// Embedded: CPU threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Embedded: context window in tokens (capped by the model's training context).
    #[arg(long, default_value_t = sleeptime_llama::DEFAULT_CONTEXT_WINDOW, global = true)]
    pub ctx_size: u32,
    /// OpenAI-compatible: base URL, e.g. http://localhost:8000/v1.
    #[arg(long, env = "SLEEPTIME_BASE_URL", global = true)]
    pub base_url: Option<String>,
    /// OpenAI-compatible: model name on the server.
    #[arg(long, env = "SLEEPTIME_REMOTE_MODEL", global = true)]
    pub remote_model: Option<String>,
    /// OpenAI-compatible: API key (read from the environment; never pass it on the command line).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// OpenAI-compatible: use the plain-text protocol instead of tool calls at sleep time.
    #[arg(long, global = true)]
    pub tagged_protocol: bool,
}

/// Resolve `--model` to a GGUF file, fetching a registry model when it is missing.
pub async fn resolve_model_path(model: &str) -> Result<PathBuf> {
    if let Some(spec) = registry::find(model) {
        let fetcher = sleeptime_model::fetch::Fetcher::new()?;
        return fetcher
            .ensure(&spec)
            .await
            .with_context(|| format!("cannot get model {}", spec.name));
    }
    let path = PathBuf::from(model);
    if !path.exists() {
        let names: Vec<_> = registry::models().iter().map(|m| m.name).collect();
        bail!(
            "model {model:?} is neither a file nor a registry model (known: {})",
            names.join(", ")
        );
    }
    Ok(path)
}

/// Build the backend the flags describe.
pub async fn build(args: &BackendArgs) -> Result<SharedBackend> {
    match args.backend {
        BackendKind::Embedded => {
            let model_path = resolve_model_path(&args.model).await?;
            let mut config = sleeptime_llama::LlamaConfig::new(model_path);
            if let Some(threads) = args.threads {
                config.threads = threads;
            }
            config.context_window = args.ctx_size;
            config.prefix_cache_dir = Some(registry::model_dir().join("prefix-states"));
            let backend =
                tokio::task::spawn_blocking(move || sleeptime_llama::LlamaBackend::load(config))
                    .await
                    .context("model loading panicked")??;
            Ok(Arc::new(backend))
        }
        BackendKind::Openai => {
            let Some(base_url) = args.base_url.clone() else {
                bail!("--backend openai needs --base-url (or SLEEPTIME_BASE_URL)");
            };
            let Some(model) = args.remote_model.clone() else {
                bail!("--backend openai needs --remote-model (or SLEEPTIME_REMOTE_MODEL)");
            };
            let mut config = sleeptime_model::openai::OpenAiConfig::new(base_url, model);
            config.api_key = args.api_key.clone();
            config.context_window = args.ctx_size.max(8192);
            config.timeout = Duration::from_secs(600);
            if args.tagged_protocol {
                config.protocol = TextProtocol::Tagged;
            }
            Ok(Arc::new(sleeptime_model::openai::OpenAiBackend::new(
                config,
            )?))
        }
    }
}
