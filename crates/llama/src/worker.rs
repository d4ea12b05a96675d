//! The thread that owns the llama.cpp context and runs every evaluation.
//!
//! A `LlamaContext` borrows its model, so the context and the model cannot live side by side
//! in one struct without self-reference. A dedicated thread sidesteps that: it holds an `Arc`
//! of the model on its stack, creates the context once from it, and then serves jobs from a
//! channel one at a time. That also serialises calls (one context, one KV cache) and keeps
//! the blocking work off the async runtime's threads.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};
use sleeptime_model::{
    ChatRequest, Completion, ContinuationScore, FinishReason, Message, ModelError, ModelErrorKind,
    PrefixState, Usage,
};

use crate::prefix::{self, PrefixStore};
use crate::text::{self, StopScanner};

/// The only sequence this backend uses.
const SEQ: i32 = 0;
/// Seed for sampled completions that name none, so they are reproducible by default.
const DEFAULT_SEED: u32 = 0x5EED_1E55;

/// Work sent to the worker thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Worker<'_>) + Send>;

/// What the worker needs to set itself up.
#[derive(Debug)]
pub(crate) struct WorkerSetup {
    pub(crate) model: Arc<LlamaModel>,
    pub(crate) template: LlamaChatTemplate,
    pub(crate) fingerprint: String,
    pub(crate) context_window: u32,
    pub(crate) threads: i32,
    pub(crate) batch: u32,
    pub(crate) prefix_cache_dir: Option<PathBuf>,
    pub(crate) max_prefix_states: usize,
}

/// Starts the worker thread; returns once its context exists (or could not be made).
pub(crate) fn spawn(setup: WorkerSetup) -> Result<mpsc::Sender<Job>, ModelError> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ModelError>>();
    std::thread::Builder::new()
        .name("sleeptime-llama".into())
        .spawn(move || run(setup, &job_rx, &ready_tx))
        .map_err(|e| {
            ModelError::backend(format!("could not start the llama worker thread: {e}"))
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(job_tx),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ModelError::backend(
            "the llama worker thread died while starting",
        )),
    }
}

fn run(
    setup: WorkerSetup,
    jobs: &mpsc::Receiver<Job>,
    ready: &mpsc::Sender<Result<(), ModelError>>,
) {
    let model = Arc::clone(&setup.model);
    let Some(backend) = crate::llama_runtime() else {
        let _ = ready.send(Err(ModelError::backend(
            "the llama.cpp backend is not initialised",
        )));
        return;
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(setup.context_window))
        .with_n_batch(setup.batch)
        .with_n_ubatch(setup.batch)
        .with_n_seq_max(1)
        .with_n_threads(setup.threads)
        .with_n_threads_batch(setup.threads);
    let ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(ModelError::backend(format!(
                "llama.cpp could not create a context of {} tokens ({e}); try a smaller \
                 context window",
                setup.context_window
            ))));
            return;
        }
    };
    let n_ctx = setup.context_window.min(ctx.n_ctx());
    let batch_size = setup.batch as usize;
    let mut worker = Worker {
        model: &model,
        ctx,
        batch: LlamaBatch::new(batch_size, 1),
        batch_size,
        n_ctx,
        template: setup.template,
        fingerprint: setup.fingerprint,
        kv: Vec::new(),
        last_logits: -1,
        prefixes: PrefixStore::new(setup.max_prefix_states),
        cache_dir: setup.prefix_cache_dir,
    };
    let _ = ready.send(Ok(()));
    // Ends when the backend (the only sender) is dropped.
    while let Ok(job) = jobs.recv() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut worker)));
        if outcome.is_err() {
            // The job's reply channel was dropped while unwinding, so its caller already
            // sees an error. What the KV cache holds is unknown now: start clean.
            tracing::error!("a llama job panicked; the KV cache was reset");
            worker.reset();
        }
    }
}

/// The worker's state: the context, what its KV cache holds, and the stored prefixes.
pub(crate) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    /// Usable context window (the configured one, never more than the context's).
    n_ctx: u32,
    template: LlamaChatTemplate,
    fingerprint: String,
    /// Tokens in sequence 0 of the KV cache, position by position. Kept exact so that the
    /// next call can reuse the common prefix instead of evaluating it again.
    kv: Vec<LlamaToken>,
    /// Batch index of the last evaluated token's logits.
    last_logits: i32,
    prefixes: PrefixStore<LlamaToken, SeqState>,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("n_ctx", &self.n_ctx)
            .field("kv_tokens", &self.kv.len())
            .field("prefix_states", &self.prefixes.len())
            .finish_non_exhaustive()
    }
}

/// Prefill batch of requests that carry an interrupt (sleep work that yields to queries).
const INTERRUPTIBLE_BATCH: usize = 64;

/// The in-memory prefix id under which the prompt of the last interrupted request is kept
/// (one at a time, so parked sleep work never crowds out the answer prefixes).
const PARKED_ID: &str = "parked-interrupted-prompt";

/// Where the tokens of an evaluation came from.
#[derive(Debug, Clone, Copy, Default)]
struct EvalStats {
    /// Tokens not evaluated because the KV cache already held them.
    reused: usize,
    /// The interrupt stopped prefill between batches (the rest is not evaluated).
    interrupted: bool,
    /// Of those, tokens restored from a stored prefix state.
    restored: usize,
}

fn decode_error(e: impl std::fmt::Display) -> ModelError {
    ModelError::backend(format!("llama.cpp decode failed: {e}"))
}

fn overflow(what: &str, tokens: usize, window: u32) -> ModelError {
    ModelError::new(
        ModelErrorKind::ContextOverflow,
        format!("{what} needs {tokens} tokens but the context window is {window}"),
    )
}

/// Natural-log probability of `target` under softmax(`logits`), computed stably in f64.
fn log_softmax_at(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let max = f64::from(max);
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    logits
        .get(target)
        .map_or(f64::NEG_INFINITY, |&l| f64::from(l) - max - sum.ln())
}

impl Worker<'_> {
    /// Forgets everything in the KV cache.
    pub(crate) fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.kv.clear();
        self.last_logits = -1;
    }

    /// Renders messages with the model's chat template.
    fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        if messages.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "no messages to render",
            ));
        }
        let chat = text::template_messages(messages)
            .into_iter()
            .map(|m| LlamaChatMessage::new(m.role.to_owned(), m.content))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::new(ModelErrorKind::InvalidRequest, e.to_string()))?;
        self.model
            .apply_chat_template(&self.template, &chat, add_generation_prompt)
            .map_err(|e| ModelError::backend(format!("applying the chat template failed: {e}")))
    }

    /// Tokenizes a rendered chat prompt: special tokens parsed, BOS added only when the
    /// vocabulary asks for one and the template did not already write it.
    fn tokenize_prompt(&self, prompt: &str) -> Vec<LlamaToken> {
        crate::tokenize(self.model, prompt, true, true)
    }

    /// Makes sequence 0 hold exactly `tokens`, evaluating only what it does not hold yet.
    ///
    /// At most `reuse_limit` leading tokens are taken from the cache (the live sequence or a
    /// stored prefix state, whichever covers more); positions `>= logits_from` get logits,
    /// handed to `on_logits(position, logits)` as each batch finishes. The last token always
    /// gets logits, for sampling.
    fn eval(
        &mut self,
        tokens: &[LlamaToken],
        reuse_limit: usize,
        logits_from: usize,
        interrupt: Option<&sleeptime_model::Interrupt>,
        on_logits: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<EvalStats, ModelError> {
        let limit = reuse_limit.min(tokens.len());
        let live = prefix::common_prefix(&self.kv, tokens).min(limit);
        let mut stats = EvalStats::default();

        let started = Instant::now();
        // Restore a stored snapshot when it covers more than the live sequence. Borrows the
        // snapshot in place: states are megabytes, and a restore should cost milliseconds.
        let restored = match self
            .prefixes
            .longest_prefix_of(tokens, limit)
            .filter(|p| p.tokens.len() > live)
        {
            Some(stored) => {
                let _ = self.ctx.clear_kv_cache_seq(None, None, None);
                let bytes = stored.state.byte_len();
                Some(
                    self.ctx
                        .state_seq_set(&stored.state, SEQ)
                        .map(|()| (stored.tokens.len(), bytes)),
                )
            }
            None => None,
        };
        if let Some(restored) = restored {
            match restored {
                Ok((n, bytes)) => {
                    tracing::debug!(
                        tokens = n,
                        bytes,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "restored prefix state"
                    );
                    // The stored tokens are a prefix of `tokens`.
                    self.kv = tokens[..n].to_vec();
                    stats = EvalStats {
                        reused: n,
                        restored: n,
                        interrupted: false,
                    };
                }
                Err(e) => {
                    tracing::warn!("restoring a prefix state failed ({e}); evaluating in full");
                    self.reset();
                }
            }
        } else if live < self.kv.len() {
            // Trim the live sequence back to the common prefix. Models whose state cannot be
            // cut (recurrent ones) refuse; then start over.
            let trimmed = u32::try_from(live)
                .ok()
                .and_then(|p0| self.ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok())
                .unwrap_or(false);
            if trimmed {
                self.kv.truncate(live);
                stats.reused = live;
            } else {
                self.reset();
            }
        } else {
            stats.reused = live;
        }

        let start = self.kv.len();
        let last = tokens.len().saturating_sub(1);
        // An interruptible prefill goes in small batches, so a query waits about a second
        // for the batch under way rather than a whole 512-token one.
        let batch_size = if interrupt.is_some() {
            self.batch_size.min(INTERRUPTIBLE_BATCH)
        } else {
            self.batch_size
        };
        for (chunk_no, chunk) in tokens[start..].chunks(batch_size).enumerate() {
            // Long prefills stop between batches too; what is evaluated stays in the cache.
            if chunk_no > 0 && interrupt.is_some_and(sleeptime_model::Interrupt::is_triggered) {
                stats.interrupted = true;
                return Ok(stats);
            }
            let first_pos = start + chunk_no * batch_size;
            self.batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = first_pos + i;
                let wants = pos >= logits_from || pos == last;
                let pos32 =
                    i32::try_from(pos).map_err(|_| overflow("position", pos, self.n_ctx))?;
                self.batch
                    .add(token, pos32, &[SEQ], wants)
                    .map_err(decode_error)?;
            }
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                // A failed decode may leave part of the batch in the cache.
                self.reset();
                return Err(decode_error(e));
            }
            self.kv.extend_from_slice(chunk);
            for (i, pos) in (first_pos..first_pos + chunk.len()).enumerate() {
                if pos >= logits_from || pos == last {
                    let idx = i32::try_from(i).unwrap_or(i32::MAX);
                    if pos >= logits_from {
                        on_logits(pos, self.ctx.get_logits_ith(idx));
                    }
                    self.last_logits = idx;
                }
            }
        }
        Ok(stats)
    }

    fn sampler(request: &ChatRequest) -> LlamaSampler {
        if request.temperature <= 0.0 {
            return LlamaSampler::greedy();
        }
        let seed = request
            .seed
            .map_or(DEFAULT_SEED, |s| (s ^ (s >> 32)) as u32);
        let mut chain = vec![LlamaSampler::temp(request.temperature)];
        if request.top_p > 0.0 && request.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(request.top_p, 1));
        }
        chain.push(LlamaSampler::dist(seed));
        LlamaSampler::chain_simple(chain)
    }

    /// Keep the evaluated part of an interrupted request's prompt as an in-memory prefix
    /// state, so resuming it after the query costs a restore rather than a second prefill.
    /// Generated tokens are dropped from the state: the resumed request re-tokenizes them.
    fn park(&mut self, prompt: &[LlamaToken]) {
        let keep = prefix::common_prefix(&self.kv, prompt);
        if keep == 0 {
            return;
        }
        if keep < self.kv.len() {
            let trimmed = u32::try_from(keep)
                .ok()
                .and_then(|p0| self.ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok())
                .unwrap_or(false);
            if !trimmed {
                return;
            }
            self.kv.truncate(keep);
        }
        match self.ctx.state_seq_get(SEQ, LlamaStateSeqFlags::empty()) {
            Ok(snapshot) => self
                .prefixes
                .insert(PARKED_ID.to_owned(), self.kv.clone(), snapshot),
            Err(e) => tracing::debug!("could not park the interrupted prompt: {e}"),
        }
    }

    /// One chat completion; `stream` receives text as it becomes final.
    pub(crate) fn complete(
        &mut self,
        request: &ChatRequest,
        started: Instant,
        stream: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Completion, ModelError> {
        if !request.temperature.is_finite() || !request.top_p.is_finite() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "temperature and top_p must be finite numbers",
            ));
        }
        let mut prompt = self.render(&request.messages, true)?;
        if let Some(prefix) = &request.assistant_prefix {
            prompt.push_str(prefix);
        }
        let tokens = self.tokenize_prompt(&prompt);
        if tokens.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "the prompt is empty",
            ));
        }
        let needed = tokens.len() + request.max_tokens as usize;
        if needed > self.n_ctx as usize {
            return Err(ModelError::new(
                ModelErrorKind::ContextOverflow,
                format!(
                    "prompt of {} tokens plus max_tokens {} = {needed} tokens, more than the \
                     context window of {}",
                    tokens.len(),
                    request.max_tokens,
                    self.n_ctx
                ),
            ));
        }
        let mut usage = Usage {
            prompt_tokens: tokens.len() as u64,
            ..Usage::default()
        };
        if request.max_tokens == 0 {
            let elapsed = started.elapsed();
            return Ok(Completion {
                text: String::new(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Length,
                usage,
                time_to_first_token: elapsed,
                total_time: elapsed,
            });
        }

        // Keep at least the last prompt token to evaluate: its logits pick the first reply token.
        // With reuse off (to measure a cold prefill) nothing comes from the cache.
        let reuse_limit = if request.reuse_prefix {
            tokens.len() - 1
        } else {
            0
        };
        let stats = self.eval(
            &tokens,
            reuse_limit,
            usize::MAX,
            request.interrupt.as_ref(),
            &mut |_, _| {},
        )?;
        usage.cached_prompt_tokens = stats.reused as u64;
        tracing::debug!(
            prompt = tokens.len(),
            reused = stats.reused,
            restored = stats.restored,
            prefill_ms = started.elapsed().as_secs_f64() * 1e3,
            "prompt ready"
        );
        if stats.interrupted {
            self.park(&tokens);
            let elapsed = started.elapsed();
            return Ok(Completion {
                text: String::new(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Interrupted,
                usage,
                time_to_first_token: elapsed,
                total_time: elapsed,
            });
        }

        let mut sampler = Self::sampler(request);
        let mut stops = StopScanner::new(&request.stop);
        let mut bytes: Vec<u8> = Vec::new();
        let mut emitted = 0usize;
        let mut stop_at: Option<usize> = None;
        let mut first_token: Option<Duration> = None;
        let mut finish = FinishReason::Length;
        let mut generated: u64 = 0;
        let mut pos = tokens.len();
        loop {
            // `sample` also accepts the token into the sampler chain.
            let token = sampler.sample(&self.ctx, self.last_logits);
            first_token.get_or_insert_with(|| started.elapsed());
            if self.model.vocab().is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            generated += 1;
            bytes.extend_from_slice(&self.model.vocab().token_to_piece(token, false, None));
            let text_so_far = text::valid_utf8_prefix(&bytes);
            if let Some(at) = stops.scan(text_so_far) {
                stop_at = Some(at);
                finish = FinishReason::Stop;
                break;
            }
            if let Some(tx) = stream {
                let safe = stops.safe_len(text_so_far);
                if safe > emitted {
                    let _ = tx.send(text_so_far[emitted..safe].to_owned());
                    emitted = safe;
                }
            }
            if generated >= u64::from(request.max_tokens) {
                break;
            }
            if request
                .interrupt
                .as_ref()
                .is_some_and(sleeptime_model::Interrupt::is_triggered)
            {
                finish = FinishReason::Interrupted;
                self.park(&tokens);
                break;
            }
            self.batch.clear();
            let pos32 = i32::try_from(pos).map_err(|_| overflow("generation", pos, self.n_ctx))?;
            self.batch
                .add(token, pos32, &[SEQ], true)
                .map_err(decode_error)?;
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                self.reset();
                return Err(decode_error(e));
            }
            self.kv.push(token);
            self.last_logits = 0;
            pos += 1;
        }

        let text = match stop_at {
            Some(at) => text::valid_utf8_prefix(&bytes)[..at].to_owned(),
            // A resumed request continues from this text, so it must not end inside a
            // character; the cut bytes are generated again.
            None if finish == FinishReason::Interrupted => {
                text::valid_utf8_prefix(&bytes).to_owned()
            }
            // A reply cut by the token cap may end inside a character.
            None => String::from_utf8_lossy(&bytes).into_owned(),
        };
        if let Some(tx) = stream {
            if emitted < text.len() {
                let _ = tx.send(text[emitted..].to_owned());
            }
        }
        usage.completion_tokens = generated;
        let total_time = started.elapsed();
        Ok(Completion {
            text,
            tool_calls: Vec::new(),
            finish_reason: finish,
            usage,
            time_to_first_token: first_token.unwrap_or(total_time),
            total_time,
        })
    }

    /// Log-probability of `continuation` after the raw text `prefix`.
    ///
    /// The two are tokenized separately and joined, so exactly the continuation's own tokens
    /// are scored (a merged token across the boundary would otherwise score prefix text).
    pub(crate) fn score(
        &mut self,
        prefix: &str,
        continuation: &str,
    ) -> Result<ContinuationScore, ModelError> {
        let mut tokens = crate::tokenize(self.model, prefix, true, false);
        let cont = crate::tokenize(self.model, continuation, false, false);
        if cont.is_empty() {
            return Ok(ContinuationScore {
                logprob_sum: 0.0,
                tokens: 0,
            });
        }
        if tokens.is_empty() {
            // The first continuation token needs a position to be predicted from. Models that
            // add no BOS token still have a document-start token (Qwen's `<|endoftext|>`);
            // scoring after it is the usual unconditional log P(q), as with GPT-2.
            let start = self.model.vocab().bos();
            if start.0 < 0 {
                return Err(ModelError::new(
                    ModelErrorKind::InvalidRequest,
                    "scoring with an empty prefix needs a document-start (BOS) token, and this \
                     model's vocabulary has none",
                ));
            }
            tokens.push(start);
        }
        let n_prefix = tokens.len();
        tokens.extend_from_slice(&cont);
        if tokens.len() > self.n_ctx as usize {
            return Err(overflow(
                "prefix plus continuation",
                tokens.len(),
                self.n_ctx,
            ));
        }
        let mut sum = 0.0f64;
        let targets = tokens.clone();
        let logits_from = n_prefix - 1;
        self.eval(
            &tokens,
            logits_from,
            logits_from,
            None,
            &mut |pos, logits| {
                if let Some(next) = targets.get(pos + 1) {
                    sum += log_softmax_at(logits, usize::try_from(next.0).unwrap_or(usize::MAX));
                }
            },
        )?;
        Ok(ContinuationScore {
            logprob_sum: sum,
            tokens: u32::try_from(cont.len()).unwrap_or(u32::MAX),
        })
    }

    /// Evaluates (or loads) the chat-rendered `messages` and keeps their KV state.
    pub(crate) fn prepare_prefix(
        &mut self,
        messages: &[Message],
    ) -> Result<PrefixState, ModelError> {
        let rendered = self.render(messages, false)?;
        let tokens = self.tokenize_prompt(&rendered);
        if tokens.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::InvalidRequest,
                "the prefix is empty",
            ));
        }
        // A prefix filling the whole window would leave no room for a question.
        if tokens.len() >= self.n_ctx as usize {
            return Err(overflow("prefix", tokens.len(), self.n_ctx));
        }
        let id = prefix::prefix_id(&self.fingerprint, tokens.iter().map(|t| t.0));
        let disk_path = self.cache_dir.as_ref().map(|d| prefix::state_path(d, &id));
        let n_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let state = |evaluated: bool, path: Option<PathBuf>| PrefixState {
            id: id.clone(),
            tokens: n_tokens,
            evaluated,
            path,
        };

        if self.prefixes.touch(&id) {
            return Ok(state(false, disk_path.filter(|p| p.is_file())));
        }
        if let Some(path) = disk_path.as_ref().filter(|p| p.is_file()) {
            match self.load_state_file(path, &tokens) {
                Ok(()) => return Ok(state(false, Some(path.clone()))),
                Err(e) => tracing::warn!("ignoring prefix state {}: {e}", path.display()),
            }
        }

        let started = Instant::now();
        self.eval(&tokens, tokens.len(), usize::MAX, None, &mut |_, _| {})?;
        let snapshot = self
            .ctx
            .state_seq_get(SEQ, LlamaStateSeqFlags::empty())
            .map_err(|e| {
                ModelError::backend(format!("snapshotting the prefix state failed: {e}"))
            })?;
        tracing::debug!(
            tokens = tokens.len(),
            bytes = snapshot.byte_len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "evaluated prefix"
        );
        self.prefixes.insert(id.clone(), tokens.clone(), snapshot);

        let saved = match (&self.cache_dir, &disk_path) {
            (Some(dir), Some(path)) => match self.save_state_file(dir, &id, path, &tokens) {
                Ok(()) => Some(path.clone()),
                Err(e) => {
                    // The state is still usable from memory; only persistence failed.
                    tracing::warn!("could not persist prefix state to {}: {e}", path.display());
                    None
                }
            },
            _ => None,
        };
        Ok(state(true, saved))
    }

    fn save_state_file(
        &self,
        dir: &std::path::Path,
        id: &str,
        path: &std::path::Path,
        tokens: &[LlamaToken],
    ) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let tmp = prefix::temp_state_path(dir, id);
        let tmp_sum = prefix::checksum_path(&tmp);
        let cleanup = |e: String| {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&tmp_sum);
            e
        };
        let started = Instant::now();
        let written = self
            .ctx
            .state_seq_save_file(&tmp, SEQ, tokens)
            .map_err(|e| cleanup(e.to_string()))?;
        // Checksum first, state last: a state file under its final name always has a
        // checksum beside it (a stale one only makes the loader refuse it).
        let sum = prefix::file_sha256(&tmp).map_err(|e| cleanup(e.to_string()))?;
        std::fs::write(&tmp_sum, format!("{sum}\n")).map_err(|e| cleanup(e.to_string()))?;
        std::fs::rename(&tmp_sum, prefix::checksum_path(path))
            .map_err(|e| cleanup(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| cleanup(e.to_string()))?;
        tracing::debug!(
            bytes = written,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "saved prefix state"
        );
        Ok(())
    }

    /// Loads a state file into sequence 0 and the in-memory store, checking that it holds
    /// exactly the expected tokens.
    fn load_state_file(
        &mut self,
        path: &std::path::Path,
        tokens: &[LlamaToken],
    ) -> Result<(), String> {
        let started = Instant::now();
        prefix::checksum_matches(path)?;
        let _ = self.ctx.clear_kv_cache_seq(None, None, None);
        self.kv.clear();
        let loaded = self.ctx.state_seq_load_file(path, SEQ, self.n_ctx as usize);
        let (file_tokens, bytes) = match loaded {
            Ok(ok) => ok,
            Err(e) => {
                self.reset();
                return Err(e.to_string());
            }
        };
        if file_tokens != tokens {
            self.reset();
            return Err("it holds different tokens".into());
        }
        let snapshot = match self.ctx.state_seq_get(SEQ, LlamaStateSeqFlags::empty()) {
            Ok(s) => s,
            Err(e) => {
                self.reset();
                return Err(e.to_string());
            }
        };
        self.kv = file_tokens;
        let id = prefix::prefix_id(&self.fingerprint, tokens.iter().map(|t| t.0));
        self.prefixes.insert(id, tokens.to_vec(), snapshot);
        tracing::debug!(
            bytes,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "loaded prefix state"
        );
        Ok(())
    }
}
