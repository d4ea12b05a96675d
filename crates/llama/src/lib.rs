//! The embedded llama.cpp backend: a GGUF model run in-process on the CPU.
//!
//! What sleep-time compute needs from a local model, and how this crate provides it:
//!
//! - **Chat completion** with the model's own chat template (llama.cpp's built-in template
//!   engine, ChatML when the model's template is missing or unsupported), greedy or sampled,
//!   stop strings, budget forcing through `assistant_prefix`, streaming.
//! - **Prefix state**: [`ModelBackend::prepare_prefix`] evaluates a learned context once and
//!   keeps its KV-cache snapshot (in an LRU in memory, optionally on disk), so every later
//!   question over that context pays prefill only for the question. This is the mechanism
//!   that turns sleep-time work into test-time savings.
//! - **Continuation log-probabilities**, for predictability scores.
//!
//! All llama.cpp work runs on one worker thread that owns the context (see `worker`); async
//! callers send it jobs and await the reply, so calls are serialised and never block the
//! runtime.
//!
//! Logs from llama.cpp are silenced unless `SLEEPTIME_LLAMA_LOG` is set, in which case they
//! are routed to `tracing`.

mod prefix;
mod text;
mod worker;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use llama_cpp_2::llama_backend::LlamaBackend as LlamaRuntime;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::LlamaCppError;
use sleeptime_model::{
    registry, ChatRequest, Completion, ContinuationScore, Message, ModelBackend, ModelError,
    ModelErrorKind, ModelInfo, PrefixState, TextProtocol,
};

use crate::worker::{Job, Worker, WorkerSetup};

/// The context window a model gets unless told otherwise: room for a long context, its
/// learned context and a step-by-step answer (AIME prompts reach 4,400 tokens); the KV cache
/// costs about 230 MB on Qwen2.5-1.5B.
pub const DEFAULT_CONTEXT_WINDOW: u32 = 8192;

/// How to load and run a GGUF model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// CPU threads for prompt processing and generation.
    pub threads: usize,
    /// Context window in tokens; capped by the model's training context.
    pub context_window: u32,
    /// Tokens per llama.cpp batch (also the micro-batch).
    pub batch: u32,
    /// Where prefix states are persisted (`<dir>/<id>.state`); `None` keeps them in memory only.
    pub prefix_cache_dir: Option<PathBuf>,
    /// How many prefix states are kept in memory (least recently used evicted first). Each
    /// costs the KV size of its tokens (about 23 KB per token for SmolLM2-135M, 29 KB for
    /// Qwen2.5-1.5B).
    pub max_prefix_states: usize,
}

impl LlamaConfig {
    /// Defaults for `model_path`: all cores, a [`DEFAULT_CONTEXT_WINDOW`]-token window,
    /// 512-token batches, 16 prefix states in memory, no disk persistence.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            context_window: DEFAULT_CONTEXT_WINDOW,
            batch: 512,
            prefix_cache_dir: None,
            max_prefix_states: 16,
        }
    }

    /// Persist prefix states under `dir`.
    pub fn with_prefix_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.prefix_cache_dir = Some(dir.into());
        self
    }

    /// Set the context window (still capped by the model's training context).
    pub fn with_context_window(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }

    /// Set the number of CPU threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// A GGUF model run in-process by llama.cpp. Cheap to share behind an `Arc`; calls are
/// served one at a time by a worker thread that owns the model's context.
#[derive(Debug)]
pub struct LlamaBackend {
    info: ModelInfo,
    config: LlamaConfig,
    /// Shared with the worker; used directly for tokenizing (read-only, thread-safe).
    model: Arc<LlamaModel>,
    jobs: mpsc::Sender<Job>,
}

/// llama.cpp's process-wide initialisation, which may happen only once per process.
static RUNTIME: OnceLock<Option<LlamaRuntime>> = OnceLock::new();

pub(crate) fn llama_runtime() -> Option<&'static LlamaRuntime> {
    RUNTIME
        .get_or_init(|| match LlamaRuntime::init() {
            Ok(mut runtime) => {
                if std::env::var_os("SLEEPTIME_LLAMA_LOG").is_some() {
                    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
                } else {
                    runtime.void_logs();
                }
                Some(runtime)
            }
            // Some other code in this process initialised llama.cpp already. The runtime
            // value is only a proof of initialisation, which that is; leave its logging alone.
            Err(LlamaCppError::BackendAlreadyInitialized) => Some(LlamaRuntime {}),
            Err(e) => {
                tracing::error!("llama.cpp initialisation failed: {e}");
                None
            }
        })
        .as_ref()
}

/// Tokenizes `text`. With `bos`, a BOS token is put first when the vocabulary wants one and
/// the text does not already start with it (chat templates sometimes write it themselves).
pub(crate) fn tokenize(
    model: &LlamaModel,
    text: &str,
    bos: bool,
    parse_special: bool,
) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(text.as_bytes(), false, parse_special);
    if bos && vocab.should_add_bos() && tokens.first() != Some(&vocab.bos()) {
        tokens.insert(0, vocab.bos());
    }
    tokens
}

fn model_file_error(message: impl Into<String>) -> ModelError {
    ModelError::new(ModelErrorKind::ModelFile, message)
}

/// Checks that `path` is a readable GGUF file; returns its size.
fn check_gguf(path: &Path) -> Result<u64, ModelError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        model_file_error(format!(
            "model file {} cannot be read ({e}); fetch it first (e.g. `sleeptime model pull \
             <name>`)",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(model_file_error(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| {
            model_file_error(format!(
                "{} is not a GGUF file (cannot read its header: {e})",
                path.display()
            ))
        })?;
    if &magic != b"GGUF" {
        return Err(model_file_error(format!(
            "{} is not a GGUF file (it starts with {magic:02x?}, not \"GGUF\")",
            path.display()
        )));
    }
    Ok(meta.len())
}

/// Identifies the exact weights: the registry's pinned SHA-256 when the file is a registry
/// model of the right size (hashing a gigabyte on every load would cost seconds), else the
/// file's own SHA-256.
fn fingerprint(path: &Path, size: u64) -> Result<String, ModelError> {
    let file_name = path.file_name().and_then(|n| n.to_str());
    if let Some(spec) = registry::models()
        .into_iter()
        .find(|m| Some(m.file_name) == file_name && m.size == size)
    {
        return Ok(spec.sha256.to_owned());
    }
    prefix::file_sha256(path)
        .map_err(|e| model_file_error(format!("cannot read {}: {e}", path.display())))
}

/// The model's own chat template if llama.cpp's template engine can apply it, else ChatML.
fn chat_template(model: &LlamaModel) -> Result<LlamaChatTemplate, ModelError> {
    let probe = LlamaChatMessage::new("user".into(), "hi".into())
        .map_err(|e| ModelError::backend(e.to_string()))?;
    match model.chat_template(None) {
        Ok(t)
            if model
                .apply_chat_template(&t, std::slice::from_ref(&probe), true)
                .is_ok() =>
        {
            return Ok(t);
        }
        Ok(_) => {
            tracing::warn!("the model's chat template is not supported by llama.cpp; using ChatML")
        }
        Err(e) => tracing::warn!("the model has no usable chat template ({e}); using ChatML"),
    }
    LlamaChatTemplate::new("chatml").map_err(|e| ModelError::backend(e.to_string()))
}

impl LlamaBackend {
    /// Loads the model and creates its context.
    ///
    /// Blocking (model load is about a second from a warm page cache; hashing an unknown
    /// file takes longer): call it from `spawn_blocking` inside async code.
    ///
    /// # Errors
    ///
    /// [`ModelErrorKind::ModelFile`] when the file is missing, not GGUF, or llama.cpp cannot
    /// load it; [`ModelErrorKind::InvalidRequest`] for a zero context window or batch;
    /// [`ModelErrorKind::Backend`] when the context cannot be created.
    pub fn load(config: LlamaConfig) -> Result<Self, ModelError> {
        if config.context_window == 0 || config.batch == 0 {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "context_window and batch must be at least 1",
            ));
        }
        let path = &config.model_path;
        let size = check_gguf(path)?;
        let fingerprint = fingerprint(path, size)?;
        let runtime = llama_runtime()
            .ok_or_else(|| ModelError::backend("llama.cpp could not be initialised"))?;
        let started = Instant::now();
        let model = LlamaModel::load_from_file(runtime, path, &LlamaModelParams::default())
            .map_err(|e| {
                model_file_error(format!(
                    "llama.cpp could not load {} ({e}); the file may be truncated or its \
                     architecture unsupported",
                    path.display()
                ))
            })?;
        let model = Arc::new(model);
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "model loaded");

        let name = model
            .meta_val_str("general.name")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "gguf".into());
        let train_ctx = model.n_ctx_train();
        let context_window = if train_ctx > 0 {
            config.context_window.min(train_ctx)
        } else {
            config.context_window
        };
        let template = chat_template(&model)?;
        let threads = i32::try_from(config.threads.max(1)).unwrap_or(i32::MAX);

        let jobs = worker::spawn(WorkerSetup {
            model: Arc::clone(&model),
            template,
            fingerprint: fingerprint.clone(),
            context_window,
            threads,
            batch: config.batch,
            prefix_cache_dir: config.prefix_cache_dir.clone(),
            max_prefix_states: config.max_prefix_states,
        })?;
        let info = ModelInfo {
            name,
            fingerprint,
            context_window,
            protocol: TextProtocol::Tagged,
            prefix_state: true,
        };
        Ok(Self {
            info,
            config,
            model,
            jobs,
        })
    }

    /// The configuration this backend was loaded with.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Queues `f` on the worker thread; the receiver yields its result.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker<'_>) -> Result<T, ModelError> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<T, ModelError>>, ModelError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |w: &mut Worker<'_>| {
            let _ = tx.send(f(w));
        });
        self.jobs
            .send(job)
            .map_err(|_| ModelError::backend("the llama worker thread has stopped"))?;
        Ok(rx)
    }

    async fn reply<T>(
        rx: tokio::sync::oneshot::Receiver<Result<T, ModelError>>,
    ) -> Result<T, ModelError> {
        rx.await.map_err(|_| {
            ModelError::backend("the llama worker failed during the call (it panicked)")
        })?
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker<'_>) -> Result<T, ModelError> + Send + 'static,
    ) -> Result<T, ModelError> {
        Self::reply(self.submit(f)?).await
    }
}

fn validate(request: &ChatRequest) -> Result<(), ModelError> {
    if request.messages.is_empty() {
        return Err(ModelError::new(
            ModelErrorKind::InvalidRequest,
            "a chat request needs at least one message",
        ));
    }
    Ok(())
}

#[async_trait]
impl ModelBackend for LlamaBackend {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ModelError> {
        validate(request)?;
        let started = Instant::now();
        let request = request.clone();
        self.call(move |w| w.complete(&request, started, None))
            .await
    }

    async fn complete_streaming(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<Completion, ModelError> {
        validate(request)?;
        let started = Instant::now();
        let request = request.clone();
        let (tx, mut pieces) = tokio::sync::mpsc::unbounded_channel::<String>();
        let rx = self.submit(move |w| w.complete(&request, started, Some(&tx)))?;
        // The job drops its sender when it ends, which ends this loop.
        while let Some(piece) = pieces.recv().await {
            on_text(&piece);
        }
        Self::reply(rx).await
    }

    async fn score_continuation(
        &self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        let (prefix, continuation) = (prefix.to_owned(), continuation.to_owned());
        self.call(move |w| w.score(&prefix, &continuation)).await
    }

    async fn prepare_prefix(&self, messages: &[Message]) -> Result<PrefixState, ModelError> {
        if messages.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "a prefix needs at least one message",
            ));
        }
        let messages = messages.to_vec();
        self.call(move |w| w.prepare_prefix(&messages)).await
    }

    async fn count_tokens(&self, text: &str) -> Result<u32, ModelError> {
        // Tokenizing only reads the vocabulary, so it need not wait behind a generation.
        let n = tokenize(&self.model, text, false, false).len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
