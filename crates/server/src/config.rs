use std::net::SocketAddr;
use std::time::Duration;

pub use sleeptime_core::{ProgramChoice, ProgramSettings};

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API only (queries, context writes); another process runs the sleep jobs.
    Api,
    /// Sleep jobs only (plus health and metrics).
    Worker,
    /// Both (the default; the only sensible choice on SQLite).
    All,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
    pub fn runs_jobs(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// An API key to register at start-up, for a tenant (created when missing).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub tenant: String,
    pub key: String,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("tenant", &self.tenant)
            .field("key", &"***")
            .finish()
    }
}

/// Who may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// When false, requests without a key act as tenant `default_tenant` (local use). A key
    /// that is given is always checked.
    pub require_keys: bool,
    pub default_tenant: String,
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            require_keys: true,
            default_tenant: "default".into(),
            keys: Vec::new(),
        }
    }
}

/// When and how sleep jobs run.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// A context is due once it has been quiet this long (debounce per context).
    pub idle: Duration,
    /// How long a claim holds before another worker may take the job over.
    pub lease: Duration,
    /// How often to look for due jobs when nothing wakes the worker.
    pub poll: Duration,
    /// Sleep jobs running at once in this process.
    pub concurrency: usize,
    /// Claims of one job before it is failed (a crash loop ends).
    pub max_attempts: i64,
    /// A job running longer than this fails (and is retried if attempts remain).
    pub job_timeout: Duration,
    /// Delay before a failed attempt is retried.
    pub retry_delay: Duration,
    /// Most sleep-time tokens one context may spend per `budget_window`.
    pub context_budget_tokens: Option<u64>,
    /// Most sleep-time tokens the whole service may spend per `budget_window`.
    pub global_budget_tokens: Option<u64>,
    pub budget_window: Duration,
    /// On shutdown, how long running jobs may take to finish before they are parked.
    pub shutdown_grace: Duration,
    /// Re-learn a context (a fresh sample of its `c'`, e.g. after the sleep program or the
    /// model changed) once its newest ready learned context is older than this; at most one
    /// such job per context per period, whatever its outcome. `None`: never.
    pub relearn_every: Option<Duration>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            concurrency: 1,
            max_attempts: 3,
            job_timeout: Duration::from_secs(30 * 60),
            retry_delay: Duration::from_secs(30),
            context_budget_tokens: None,
            global_budget_tokens: None,
            budget_window: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(10),
            relearn_every: None,
        }
    }
}

/// The sleep program's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepConfig {
    /// Which sleep program writes the learned contexts.
    pub program: ProgramChoice,
    /// Parallel drafts.
    pub k: usize,
    /// Rewrites, repair rounds and solved questions, as the engine's programs take them.
    pub settings: ProgramSettings,
    pub max_tokens_per_step: u32,
}

impl Default for SleepConfig {
    fn default() -> Self {
        Self {
            program: ProgramChoice::Rethink,
            k: 1,
            settings: ProgramSettings {
                max_rethinks: 10,
                ..ProgramSettings::default()
            },
            max_tokens_per_step: 768,
        }
    }
}

/// How queries are answered.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerDefaults {
    /// Verbosity when a learned context is ready (0 to 4).
    pub verbosity: u8,
    /// Token budget when a learned context is ready.
    pub budget: u32,
    /// Verbosity of the full-reasoning fallback (no learned context yet).
    pub fallback_verbosity: u8,
    pub fallback_budget: u32,
    /// Escalate an answer from the learned context that the learned context does not back
    /// (its number is not written there) to full reasoning, unless the request says otherwise.
    pub escalate_unbacked: bool,
    /// Largest budget a request may ask for.
    pub max_budget: u32,
    /// A query taking longer fails with 504.
    pub timeout: Duration,
    /// Completion tokens for `/v1/chat/completions` when the request names none.
    pub chat_max_tokens: u32,
}

impl Default for AnswerDefaults {
    fn default() -> Self {
        Self {
            verbosity: 0,
            budget: 128,
            fallback_verbosity: 4,
            fallback_budget: 1024,
            escalate_unbacked: false,
            max_budget: 16_384,
            timeout: Duration::from_secs(300),
            chat_max_tokens: 512,
        }
    }
}

/// Everything `serve` needs besides the backend and the store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub role: Role,
    pub auth: AuthConfig,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    pub scheduler: SchedulerConfig,
    pub sleep: SleepConfig,
    pub answer: AnswerDefaults,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            role: Role::All,
            auth: AuthConfig::default(),
            max_body_bytes: 2 * 1024 * 1024,
            scheduler: SchedulerConfig::default(),
            sleep: SleepConfig::default(),
            answer: AnswerDefaults::default(),
        }
    }
}
