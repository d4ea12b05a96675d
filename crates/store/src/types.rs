use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// A tenant: the owner of contexts and API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// One chat message of a message context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What a context holds: plain text or a chat transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextBody {
    Text(String),
    Messages(Vec<ChatMessage>),
}

impl ContextBody {
    pub fn kind(&self) -> &'static str {
        match self {
            ContextBody::Text(_) => "text",
            ContextBody::Messages(_) => "messages",
        }
    }

    /// The text a model reads: the text itself, or one `role: content` line per message.
    pub fn to_text(&self) -> String {
        match self {
            ContextBody::Text(t) => t.clone(),
            ContextBody::Messages(ms) => ms
                .iter()
                .map(|m| format!("{}: {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Hex SHA-256 of [`ContextBody::to_text`], trimmed as the engine trims it.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_text().trim().as_bytes()))
    }

    /// Whether there is nothing to think about.
    pub fn is_empty(&self) -> bool {
        self.to_text().trim().is_empty()
    }

    /// `self` followed by `more`: text joins with a newline, messages concatenate; mixing
    /// kinds is refused.
    pub fn appended(&self, more: ContextBody) -> Result<ContextBody, StoreError> {
        match (self, more) {
            (ContextBody::Text(a), ContextBody::Text(b)) => {
                let mut t = a.clone();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str(&b);
                Ok(ContextBody::Text(t))
            }
            (ContextBody::Messages(a), ContextBody::Messages(b)) => {
                let mut m = a.clone();
                m.extend(b);
                Ok(ContextBody::Messages(m))
            }
            (a, b) => Err(StoreError::Invalid(format!(
                "cannot append {} to a {} context",
                b.kind(),
                a.kind()
            ))),
        }
    }

    pub(crate) fn encode(&self) -> String {
        match self {
            ContextBody::Text(t) => t.clone(),
            ContextBody::Messages(m) => serde_json::to_string(m).unwrap_or_else(|_| "[]".into()),
        }
    }

    pub(crate) fn decode(kind: &str, body: String) -> Result<Self, StoreError> {
        match kind {
            "text" => Ok(ContextBody::Text(body)),
            "messages" => serde_json::from_str(&body)
                .map(ContextBody::Messages)
                .map_err(|e| StoreError::Database(format!("stored messages are not JSON: {e}"))),
            other => Err(StoreError::Database(format!(
                "unknown context kind {other:?}"
            ))),
        }
    }
}

/// A new context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContext {
    pub name: Option<String>,
    pub body: ContextBody,
}

/// A change to a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextUpdate {
    pub change: ContextChangeKind,
    /// New name, when it changes.
    pub name: Option<String>,
    /// Compare-and-swap: apply only if the context is at this version.
    pub if_version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextChangeKind {
    Replace(ContextBody),
    Append(ContextBody),
}

/// A context at its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub version: i64,
    pub hash: String,
    pub body: ContextBody,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One stored version of a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextVersion {
    pub context_id: String,
    pub version: i64,
    pub hash: String,
    pub body: ContextBody,
    pub created_at: i64,
}

/// What a create/update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextChange {
    pub context: ContextRecord,
    /// The job enqueued for the new version, if one was asked for.
    pub job: Option<JobRecord>,
    /// Jobs of older versions that were superseded.
    pub superseded: Vec<String>,
}

/// When and why to run sleep work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    /// Milliseconds since the epoch at which the job becomes due.
    pub due_at: i64,
    pub trigger: JobTrigger,
    /// Claims allowed before the job is failed (a crash loop must end).
    pub max_attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    /// The context went quiet (debounced change).
    Idle,
    /// Someone asked.
    Manual,
    /// A periodic schedule.
    Schedule,
}

impl JobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Idle => "idle",
            JobTrigger::Manual => "manual",
            JobTrigger::Schedule => "schedule",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "manual" => JobTrigger::Manual,
            "schedule" => JobTrigger::Schedule,
            _ => JobTrigger::Idle,
        }
    }
}

/// Where a sleep job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// A newer context version made it moot.
    Superseded,
    /// Its context was deleted.
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Superseded => "superseded",
            JobStatus::Cancelled => "cancelled",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "superseded" => JobStatus::Superseded,
            "cancelled" => JobStatus::Cancelled,
            other => {
                return Err(StoreError::Database(format!(
                    "unknown job status {other:?}"
                )))
            }
        })
    }
    /// Whether the job is done for good.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

/// Tokens spent, as the ledger keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
}

impl TokenUsage {
    pub fn total(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.cached_tokens += o.cached_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// A sleep job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub tenant_id: String,
    pub context_id: String,
    pub context_version: i64,
    pub status: JobStatus,
    pub trigger: JobTrigger,
    pub due_at: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_until: Option<i64>,
    pub usage: TokenUsage,
    pub error: Option<String>,
    pub learned_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

/// Proof of a claim: only its holder may heartbeat, finish, fail or release the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub job_id: String,
    pub context_id: String,
    pub token: String,
}

/// A job and the lease on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub job: JobRecord,
    pub lease: JobLease,
}

/// What a finished sleep job learned.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLearned {
    /// Hash of the context text it was learned from.
    pub context_hash: String,
    /// Program reference, e.g. `rethink@v1[max_rethinks=10]`.
    pub program: String,
    pub model_fingerprint: String,
    pub model_name: String,
    pub text: String,
    /// Anything else worth keeping (drafts, stats, prefix state), as JSON.
    pub detail: serde_json::Value,
    pub usage: TokenUsage,
}

/// Whether a learned context is of the context's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LearnedStatus {
    Ready,
    Stale,
}

/// A stored learned context `c'`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedRecord {
    pub id: String,
    pub tenant_id: String,
    pub context_id: String,
    /// Counts up per context.
    pub version: i64,
    pub context_version: i64,
    pub context_hash: String,
    pub program: String,
    pub model_fingerprint: String,
    pub model_name: String,
    pub status: LearnedStatus,
    pub text: String,
    pub detail: serde_json::Value,
    pub usage: TokenUsage,
    pub job_id: Option<String>,
    pub created_at: i64,
}

/// A cursor page request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// 1 to 100 (clamped).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }
    pub(crate) fn clamped_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, 100))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Pending and running jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub pending: i64,
    pub due: i64,
    pub running: i64,
}

/// Which side of the trade a ledger entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// Spent by a sleep job.
    Sleep,
    /// Spent answering a query.
    Test,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Sleep => "sleep",
            UsageKind::Test => "test",
        }
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    pub tenant_id: String,
    pub context_id: Option<String>,
    pub job_id: Option<String>,
    pub kind: UsageKind,
    pub usage: TokenUsage,
}

/// Ledger totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    pub sleep: TokenUsage,
    pub test: TokenUsage,
    /// Ledger entries on each side (sleep jobs, queries).
    pub sleep_entries: i64,
    pub test_entries: i64,
}
