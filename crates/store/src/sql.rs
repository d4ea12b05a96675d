//! The SQL store: one implementation over sqlx's `Any` driver, for SQLite and PostgreSQL.
//! Statements are written in the SQL both understand (`$n` placeholders, `RETURNING`,
//! `BIGINT`, `TEXT`); the few differences (row locks, migration locking) branch on
//! [`Dialect`].

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Row};
use tokio::sync::watch;

use crate::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// [`Store`] on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Bumped by the PostgreSQL listener task on each job notification; `None` on SQLite.
    /// The task stops once every clone of this (and every [`QueueSignal`]) is dropped.
    queue_changes: Option<watch::Receiver<u64>>,
}

/// The PostgreSQL channel notified when a pending job is created or made due earlier.
const JOBS_CHANNEL: &str = "sleeptime_jobs";

/// The test for "due for re-learning" on a context `c`; `$1` is the `learned_before` cutoff.
const RELEARN_DUE: &str = "EXISTS (SELECT 1 FROM learned_contexts l
        WHERE l.context_id = c.id AND l.context_version = c.version AND l.status = 'ready')
    AND NOT EXISTS (SELECT 1 FROM learned_contexts l
        WHERE l.context_id = c.id AND l.context_version = c.version AND l.status = 'ready' AND l.created_at >= $1)
    AND NOT EXISTS (SELECT 1 FROM sleep_jobs j
        WHERE j.context_id = c.id AND (j.status IN ('pending', 'running') OR j.created_at >= $1))";

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r"
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE contexts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX contexts_tenant ON contexts (tenant_id, id);
CREATE TABLE context_versions (
    context_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (context_id, version)
);
CREATE TABLE learned_contexts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    context_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    context_version BIGINT NOT NULL,
    context_hash TEXT NOT NULL,
    program TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    model_name TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    detail TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    job_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (context_id, version)
);
CREATE TABLE sleep_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    context_id TEXT NOT NULL,
    context_version BIGINT NOT NULL,
    status TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    claim_token TEXT,
    lease_until BIGINT,
    prompt_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    error TEXT,
    learned_id TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sleep_jobs_queue ON sleep_jobs (status, due_at);
CREATE INDEX sleep_jobs_context ON sleep_jobs (context_id, id);
CREATE TABLE usage_ledger (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    context_id TEXT,
    job_id TEXT,
    kind TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_ledger_time ON usage_ledger (created_at);
CREATE INDEX usage_ledger_context ON usage_ledger (context_id, created_at)
",
)];

const CONTEXT_COLS: &str = "id, tenant_id, name, kind, body, hash, version, created_at, updated_at";
const JOB_COLS: &str = "id, tenant_id, context_id, context_version, status, trigger_kind, due_at, attempts, max_attempts, claim_token, lease_until, prompt_tokens, cached_tokens, completion_tokens, error, learned_id, created_at, started_at, finished_at, updated_at";
const VERSION_COLS: &str = "context_id, version, kind, body, hash, created_at";
const LEARNED_COLS: &str = "id, tenant_id, context_id, version, context_version, context_hash, program, model_fingerprint, model_name, status, text, detail, prompt_tokens, cached_tokens, completion_tokens, job_id, created_at";

/// A time-ordered id: prefix, 14 hex digits of microseconds (strictly increasing within the
/// process, so ids sort in creation order), 10 random hex digits.
fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let mut last = LAST.load(Ordering::SeqCst);
    let stamp = loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{stamp:014x}{}", &rand[..10])
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn context_from_row(row: &AnyRow) -> StoreResult<ContextRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(ContextRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        hash: row.try_get("hash")?,
        body: ContextBody::decode(&kind, row.try_get("body")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn version_from_row(row: &AnyRow) -> StoreResult<ContextVersion> {
    let kind: String = row.try_get("kind")?;
    Ok(ContextVersion {
        context_id: row.try_get("context_id")?,
        version: row.try_get("version")?,
        hash: row.try_get("hash")?,
        body: ContextBody::decode(&kind, row.try_get("body")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn tenant_from_row(row: &AnyRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn usage_from_row(row: &AnyRow) -> StoreResult<TokenUsage> {
    Ok(TokenUsage {
        prompt_tokens: row.try_get("prompt_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
    })
}

fn job_from_row(row: &AnyRow) -> StoreResult<JobRecord> {
    let status: String = row.try_get("status")?;
    let trigger: String = row.try_get("trigger_kind")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        context_id: row.try_get("context_id")?,
        context_version: row.try_get("context_version")?,
        status: JobStatus::parse(&status)?,
        trigger: JobTrigger::parse(&trigger),
        due_at: row.try_get("due_at")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        lease_until: row.try_get("lease_until")?,
        usage: usage_from_row(row)?,
        error: row.try_get("error")?,
        learned_id: row.try_get("learned_id")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn learned_from_row(row: &AnyRow) -> StoreResult<LearnedRecord> {
    let status: String = row.try_get("status")?;
    let detail: String = row.try_get("detail")?;
    Ok(LearnedRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        context_id: row.try_get("context_id")?,
        version: row.try_get("version")?,
        context_version: row.try_get("context_version")?,
        context_hash: row.try_get("context_hash")?,
        program: row.try_get("program")?,
        model_fingerprint: row.try_get("model_fingerprint")?,
        model_name: row.try_get("model_name")?,
        status: if status == "ready" {
            LearnedStatus::Ready
        } else {
            LearnedStatus::Stale
        },
        text: row.try_get("text")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        usage: usage_from_row(row)?,
        job_id: row.try_get("job_id")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Map every row with `from_row`.
fn from_rows<T>(
    rows: &[AnyRow],
    from_row: impl Fn(&AnyRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(from_row).collect()
}

/// Map the row that must exist; `missing` is the error when it does not (`NotFound` for a
/// lookup, `LeaseLost` for a lease).
fn required<T>(
    row: Option<AnyRow>,
    from_row: impl Fn(&AnyRow) -> StoreResult<T>,
    missing: StoreError,
) -> StoreResult<T> {
    row.as_ref().map(from_row).transpose()?.ok_or(missing)
}

/// The `id` column of each row (from `... RETURNING id`).
fn ids_from_rows(rows: &[AnyRow]) -> StoreResult<Vec<String>> {
    from_rows(rows, |r| Ok(r.try_get::<String, _>("id")?))
}

/// `Ok(None)` for a row that does not exist, any other error passed on.
fn if_found<T>(result: StoreResult<T>) -> StoreResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The usage ledger entry for a sleep job's model calls.
fn sleep_usage(job: &JobRecord, usage: TokenUsage) -> UsageEntry {
    UsageEntry {
        tenant_id: job.tenant_id.clone(),
        context_id: Some(job.context_id.clone()),
        job_id: Some(job.id.clone()),
        kind: UsageKind::Sleep,
        usage,
    }
}

/// Split rows fetched with `limit + 1` into a page; the cursor is `cursor_of(last item)`.
fn paginate<T>(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl SqlStore {
    /// Connect to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and migrate.
    ///
    /// SQLite files are created when missing and opened in WAL mode with one connection (a
    /// single writer; the service is one process on SQLite). PostgreSQL gets a pool of
    /// `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL (expected sqlite://… or postgres://…): {}",
                redact(url)
            )));
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let url = if memory || url.contains("mode=") {
                    url.to_owned()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            if !memory {
                                sqlx::query("PRAGMA journal_mode=WAL")
                                    .execute(&mut *conn)
                                    .await?;
                                sqlx::query("PRAGMA synchronous=NORMAL")
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            sqlx::query("PRAGMA busy_timeout=10000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .connect(url)
                    .await?
            }
        };
        let queue_changes = match dialect {
            Dialect::Postgres => Some(start_listener(url).await),
            Dialect::Sqlite => None,
        };
        let store = Self {
            pool,
            dialect,
            queue_changes,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// An SQLite file store (created when missing).
    pub async fn open_sqlite(path: &std::path::Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        Self::connect(&format!("sqlite://{}", path.display()), 1).await
    }

    /// A private in-memory SQLite store (tests).
    pub async fn memory() -> StoreResult<Self> {
        Self::connect("sqlite::memory:", 1).await
    }

    /// Whether this store is PostgreSQL (several processes may share it).
    pub fn is_postgres(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            // Serialise concurrent starts of several processes.
            sqlx::query("SELECT pg_advisory_lock(7317001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS sleeptime_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let done: Vec<i64> = sqlx::query("SELECT version FROM sleeptime_migrations")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("version"))
                .collect::<Result<_, _>>()?;
            for (version, sql) in MIGRATIONS {
                if done.contains(version) {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO sleeptime_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version, "applied store migration");
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7317001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    async fn begin(&self) -> StoreResult<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Tell the other processes' schedulers that the queue changed. PostgreSQL delivers the
    /// notification when (and only if) `tx` commits; SQLite has no other processes.
    async fn notify_jobs(&self, tx: &mut Tx) -> StoreResult<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(JOBS_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The row `id` of `table`, if it belongs to the tenant: another tenant's row is
    /// [`StoreError::NotFound`] too.
    async fn tenant_row<T>(
        &self,
        table: &str,
        columns: &str,
        tenant_id: &str,
        id: &str,
        from_row: impl Fn(&AnyRow) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let row = sqlx::query(&format!(
            "SELECT {columns} FROM {table} WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        required(row, from_row, StoreError::NotFound)
    }

    /// A page of a context's history kept in `table` (context versions or learned contexts),
    /// newest version first; the cursor is the last version shown.
    async fn version_page<T>(
        &self,
        context_id: &str,
        page: &PageRequest,
        table: &str,
        columns: &str,
        from_row: impl Fn(&AnyRow) -> StoreResult<T>,
        version_of: impl Fn(&T) -> i64,
    ) -> StoreResult<Page<T>> {
        let limit = page.clamped_limit();
        let before = match &page.cursor {
            Some(c) => c
                .parse::<i64>()
                .map_err(|_| StoreError::Invalid(format!("bad cursor {c:?}")))?,
            None => i64::MAX,
        };
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM {table} WHERE context_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3"
        ))
        .bind(context_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = from_rows(&rows, from_row)?;
        Ok(paginate(items, limit, |item| version_of(item).to_string()))
    }

    /// Read and row-lock (on PostgreSQL) a context in a transaction.
    async fn lock_context(
        &self,
        tx: &mut Tx,
        tenant_id: Option<&str>,
        id: &str,
    ) -> StoreResult<ContextRecord> {
        let tenant_check = if tenant_id.is_some() {
            " AND tenant_id = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {CONTEXT_COLS} FROM contexts WHERE id = $1{tenant_check}{}",
            self.for_update()
        );
        let mut query = sqlx::query(&sql).bind(id);
        if let Some(t) = tenant_id {
            query = query.bind(t);
        }
        let row = query.fetch_optional(&mut **tx).await?;
        required(row, context_from_row, StoreError::NotFound)
    }

    /// Insert a pending job for the context's current version, and tell the other processes
    /// (every new pending job is news to their schedulers).
    async fn insert_job(
        &self,
        tx: &mut Tx,
        ctx: &ContextRecord,
        sleep: &Enqueue,
        now: i64,
    ) -> StoreResult<JobRecord> {
        let id = new_id("job");
        let row = sqlx::query(&format!(
            "INSERT INTO sleep_jobs (id, tenant_id, context_id, context_version, status, trigger_kind, due_at, attempts, max_attempts, prompt_tokens, cached_tokens, completion_tokens, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, $7, 0, 0, 0, $8, $8) RETURNING {JOB_COLS}"
        ))
        .bind(&id)
        .bind(&ctx.tenant_id)
        .bind(&ctx.id)
        .bind(ctx.version)
        .bind(sleep.trigger.as_str())
        .bind(sleep.due_at)
        .bind(sleep.max_attempts.max(1))
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        self.notify_jobs(tx).await?;
        job_from_row(&row)
    }

    async fn insert_version(&self, tx: &mut Tx, ctx: &ContextRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO context_versions (context_id, version, kind, body, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&ctx.id)
        .bind(ctx.version)
        .bind(ctx.body.kind())
        .bind(ctx.body.encode())
        .bind(&ctx.hash)
        .bind(ctx.updated_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_usage(&self, tx: &mut Tx, entry: &UsageEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO usage_ledger (id, tenant_id, context_id, job_id, kind, prompt_tokens, cached_tokens, completion_tokens, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new_id("use"))
        .bind(&entry.tenant_id)
        .bind(entry.context_id.clone())
        .bind(entry.job_id.clone())
        .bind(entry.kind.as_str())
        .bind(entry.usage.prompt_tokens)
        .bind(entry.usage.cached_tokens)
        .bind(entry.usage.completion_tokens)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The job row for a lease, locked, if the lease still holds.
    async fn leased_job(&self, tx: &mut Tx, lease: &JobLease) -> StoreResult<JobRecord> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM sleep_jobs WHERE id = $1 AND claim_token = $2 AND status = 'running'{}",
            self.for_update()
        ))
        .bind(&lease.job_id)
        .bind(&lease.token)
        .fetch_optional(&mut **tx)
        .await?;
        required(row, job_from_row, StoreError::LeaseLost)
    }
}

/// A database URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Start listening on [`JOBS_CHANNEL`]. The first connection is made before returning, so a
/// store that is connected hears every later commit; if it fails, the background task keeps
/// trying (the scheduler polls meanwhile).
async fn start_listener(url: &str) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let first = match listen(url).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for job notifications; polling until it can");
            None
        }
    };
    tokio::spawn(listen_loop(url.to_owned(), first, tx));
    rx
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(JOBS_CHANNEL).await?;
    Ok(listener)
}

/// Bump `tx` on every notification, and after every reconnect (notifications sent while
/// disconnected are lost, so waiters should look at the queue). Reconnects with backoff;
/// stops when nobody holds a receiver.
async fn listen_loop(url: String, mut listener: Option<PgListener>, tx: watch::Sender<u64>) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(250);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let bump = |n: &mut u64| *n = n.wrapping_add(1);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if listener.is_none() {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            match listen(&url).await {
                Ok(l) => {
                    tracing::info!("listening for job notifications again");
                    listener = Some(l);
                    backoff = FIRST_BACKOFF;
                    tx.send_modify(bump);
                }
                Err(e) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs_f64(), "cannot listen for job notifications; polling meanwhile");
                    continue;
                }
            }
        }
        let Some(l) = listener.as_mut() else { continue };
        let received = tokio::select! {
            r = l.try_recv() => r,
            () = tx.closed() => return,
        };
        match received {
            Ok(Some(_)) => tx.send_modify(bump),
            Ok(None) => {
                // The connection dropped and `try_recv` has already reconnected and listens again.
                tracing::warn!("the job notification connection dropped and was re-established");
                tx.send_modify(bump);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs_f64(), "lost the job notification connection; reconnecting");
                listener = None;
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ensure_tenant(&self, id: &str, name: &str) -> StoreResult<Tenant> {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        tenant_from_row(&row)
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        self.ensure_tenant(&new_id("ten"), name).await
    }

    async fn add_api_key(&self, tenant_id: &str, key: &str, label: &str) -> StoreResult<()> {
        if key.trim().len() < 8 {
            return Err(StoreError::Invalid(
                "API keys must be at least 8 characters".into(),
            ));
        }
        let result = sqlx::query(
            "INSERT INTO api_keys (key_hash, tenant_id, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key_hash(key))
        .bind(tenant_id)
        .bind(label)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            // Registered already: fine for the same tenant, refused for another.
            let owner: String = sqlx::query("SELECT tenant_id FROM api_keys WHERE key_hash = $1")
                .bind(key_hash(key))
                .fetch_one(&self.pool)
                .await?
                .try_get("tenant_id")?;
            if owner != tenant_id {
                return Err(StoreError::Invalid(
                    "this API key belongs to another tenant".into(),
                ));
            }
        }
        Ok(())
    }

    async fn create_api_key(&self, tenant_id: &str, label: &str) -> StoreResult<String> {
        let key = format!(
            "sk-st-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.add_api_key(tenant_id, &key, label).await?;
        Ok(key)
    }

    async fn tenant_for_key(&self, key: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT t.id AS id, t.name AS name, t.created_at AS created_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1",
        )
        .bind(key_hash(key))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn create_context(
        &self,
        tenant_id: &str,
        new: NewContext,
        sleep: Option<Enqueue>,
    ) -> StoreResult<ContextChange> {
        let now = now_ms();
        let ctx = ContextRecord {
            id: new_id("ctx"),
            tenant_id: tenant_id.to_owned(),
            name: new.name,
            version: 1,
            hash: new.body.hash(),
            body: new.body,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO contexts (id, tenant_id, name, kind, body, hash, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&ctx.id)
        .bind(&ctx.tenant_id)
        .bind(ctx.name.clone())
        .bind(ctx.body.kind())
        .bind(ctx.body.encode())
        .bind(&ctx.hash)
        .bind(ctx.version)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.insert_version(&mut tx, &ctx).await?;
        let job = match &sleep {
            Some(s) => Some(self.insert_job(&mut tx, &ctx, s, now).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(ContextChange {
            context: ctx,
            job,
            superseded: Vec::new(),
        })
    }

    async fn get_context(&self, tenant_id: &str, id: &str) -> StoreResult<ContextRecord> {
        self.tenant_row("contexts", CONTEXT_COLS, tenant_id, id, context_from_row)
            .await
    }

    async fn list_contexts(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ContextRecord>> {
        let limit = page.clamped_limit();
        let rows = sqlx::query(&format!(
            "SELECT {CONTEXT_COLS} FROM contexts WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(page.cursor.clone().unwrap_or_default())
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = from_rows(&rows, context_from_row)?;
        Ok(paginate(items, limit, |c| c.id.clone()))
    }

    async fn update_context(
        &self,
        tenant_id: &str,
        id: &str,
        update: ContextUpdate,
        sleep: Option<Enqueue>,
    ) -> StoreResult<ContextChange> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut ctx = self.lock_context(&mut tx, Some(tenant_id), id).await?;
        if let Some(expected) = update.if_version {
            if expected != ctx.version {
                return Err(StoreError::VersionConflict {
                    expected,
                    current: ctx.version,
                });
            }
        }
        ctx.body = match update.change {
            ContextChangeKind::Replace(body) => body,
            ContextChangeKind::Append(more) => ctx.body.appended(more)?,
        };
        if update.name.is_some() {
            ctx.name = update.name;
        }
        ctx.hash = ctx.body.hash();
        ctx.version += 1;
        ctx.updated_at = now;
        // Lock order everywhere: the context row first, then its jobs.
        sqlx::query(
            "UPDATE contexts SET name = $1, kind = $2, body = $3, hash = $4, version = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(ctx.name.clone())
        .bind(ctx.body.kind())
        .bind(ctx.body.encode())
        .bind(&ctx.hash)
        .bind(ctx.version)
        .bind(now)
        .bind(&ctx.id)
        .execute(&mut *tx)
        .await?;
        self.insert_version(&mut tx, &ctx).await?;
        let rows = sqlx::query(
            "UPDATE sleep_jobs SET status = 'superseded', claim_token = NULL, finished_at = $1, updated_at = $1,
                 error = 'superseded by a newer context version'
             WHERE context_id = $2 AND status IN ('pending', 'running') AND context_version < $3 RETURNING id",
        )
        .bind(now)
        .bind(&ctx.id)
        .bind(ctx.version)
        .fetch_all(&mut *tx)
        .await?;
        let superseded = ids_from_rows(&rows)?;
        sqlx::query("UPDATE learned_contexts SET status = 'stale' WHERE context_id = $1 AND context_version < $2 AND status = 'ready'")
            .bind(&ctx.id)
            .bind(ctx.version)
            .execute(&mut *tx)
            .await?;
        let job = match &sleep {
            Some(s) => Some(self.insert_job(&mut tx, &ctx, s, now).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(ContextChange {
            context: ctx,
            job,
            superseded,
        })
    }

    async fn delete_context(&self, tenant_id: &str, id: &str) -> StoreResult<Vec<String>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let ctx = self.lock_context(&mut tx, Some(tenant_id), id).await?;
        let rows = sqlx::query(
            "UPDATE sleep_jobs SET status = 'cancelled', claim_token = NULL, finished_at = $1, updated_at = $1, error = 'context deleted'
             WHERE context_id = $2 AND status IN ('pending', 'running') RETURNING id",
        )
        .bind(now)
        .bind(&ctx.id)
        .fetch_all(&mut *tx)
        .await?;
        let cancelled = ids_from_rows(&rows)?;
        for table in ["learned_contexts", "context_versions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE context_id = $1"))
                .bind(&ctx.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM contexts WHERE id = $1")
            .bind(&ctx.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    async fn list_versions(
        &self,
        tenant_id: &str,
        id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ContextVersion>> {
        let ctx = self.get_context(tenant_id, id).await?;
        self.version_page(
            &ctx.id,
            page,
            "context_versions",
            VERSION_COLS,
            version_from_row,
            |v| v.version,
        )
        .await
    }

    async fn get_version(
        &self,
        tenant_id: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<ContextVersion> {
        let ctx = self.get_context(tenant_id, id).await?;
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLS} FROM context_versions WHERE context_id = $1 AND version = $2"
        ))
        .bind(&ctx.id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        required(row, version_from_row, StoreError::NotFound)
    }

    async fn current_learned(
        &self,
        tenant_id: &str,
        context_id: &str,
    ) -> StoreResult<Option<LearnedRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM learned_contexts l JOIN contexts c ON c.id = l.context_id AND c.version = l.context_version
             WHERE l.context_id = $1 AND l.tenant_id = $2 AND l.status = 'ready' ORDER BY l.version DESC LIMIT 1",
            LEARNED_COLS.split(", ").map(|c| format!("l.{c} AS {c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(context_id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(learned_from_row).transpose()
    }

    async fn list_learned(
        &self,
        tenant_id: &str,
        context_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<LearnedRecord>> {
        let ctx = self.get_context(tenant_id, context_id).await?;
        self.version_page(
            &ctx.id,
            page,
            "learned_contexts",
            LEARNED_COLS,
            learned_from_row,
            |l| l.version,
        )
        .await
    }

    async fn enqueue_job(
        &self,
        tenant_id: &str,
        context_id: &str,
        sleep: Enqueue,
    ) -> StoreResult<JobRecord> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let ctx = self
            .lock_context(&mut tx, Some(tenant_id), context_id)
            .await?;
        let active = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM sleep_jobs WHERE context_id = $1 AND context_version = $2 AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1"
        ))
        .bind(&ctx.id)
        .bind(ctx.version)
        .fetch_optional(&mut *tx)
        .await?;
        let job = match active.as_ref().map(job_from_row).transpose()? {
            Some(job) if job.status == JobStatus::Pending && job.due_at > sleep.due_at => {
                let row = sqlx::query(&format!(
                    "UPDATE sleep_jobs SET due_at = $1, trigger_kind = $2, updated_at = $3 WHERE id = $4 RETURNING {JOB_COLS}"
                ))
                .bind(sleep.due_at)
                .bind(sleep.trigger.as_str())
                .bind(now)
                .bind(&job.id)
                .fetch_one(&mut *tx)
                .await?;
                self.notify_jobs(&mut tx).await?;
                job_from_row(&row)?
            }
            Some(job) => job,
            None => self.insert_job(&mut tx, &ctx, &sleep, now).await?,
        };
        tx.commit().await?;
        Ok(job)
    }

    async fn get_job(&self, tenant_id: &str, job_id: &str) -> StoreResult<JobRecord> {
        self.tenant_row("sleep_jobs", JOB_COLS, tenant_id, job_id, job_from_row)
            .await
    }

    async fn list_jobs(
        &self,
        tenant_id: &str,
        context_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<JobRecord>> {
        let limit = page.clamped_limit();
        let before = page.cursor.clone().unwrap_or_else(|| "~".into());
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM sleep_jobs WHERE context_id = $1 AND tenant_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        ))
        .bind(context_id)
        .bind(tenant_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = from_rows(&rows, job_from_row)?;
        if items.is_empty() && page.cursor.is_none() {
            // Distinguish "no jobs" from "no such context" (404).
            self.get_context(tenant_id, context_id).await?;
        }
        Ok(paginate(items, limit, |j| j.id.clone()))
    }

    async fn claim_job(&self, lease: Duration) -> StoreResult<Option<ClaimedJob>> {
        let now = now_ms();
        // Jobs whose lease ran out on their last allowed attempt: a crash loop ends here.
        sqlx::query(
            "UPDATE sleep_jobs SET status = 'failed', claim_token = NULL, finished_at = $1, updated_at = $1,
                 error = 'the worker running it stopped responding on every allowed attempt'
             WHERE status = 'running' AND lease_until < $1 AND attempts >= max_attempts",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let skip_locked = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE sleep_jobs SET status = 'running', claim_token = $1, lease_until = $2, attempts = attempts + 1,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE id = (
                 SELECT id FROM sleep_jobs
                 WHERE (status = 'pending' AND due_at <= $3) OR (status = 'running' AND lease_until < $3)
                 ORDER BY due_at, id LIMIT 1{skip_locked}
             ) AND ((status = 'pending' AND due_at <= $3) OR (status = 'running' AND lease_until < $3))
             RETURNING {JOB_COLS}"
        ))
        .bind(&token)
        .bind(now + ms(lease))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let job = job_from_row(&row)?;
        let lease = JobLease {
            job_id: job.id.clone(),
            context_id: job.context_id.clone(),
            token,
        };
        Ok(Some(ClaimedJob { job, lease }))
    }

    async fn heartbeat(&self, lease: &JobLease, duration: Duration) -> StoreResult<()> {
        let now = now_ms();
        let result = sqlx::query(
            "UPDATE sleep_jobs SET lease_until = $1, updated_at = $2 WHERE id = $3 AND claim_token = $4 AND status = 'running'",
        )
        .bind(now + ms(duration))
        .bind(now)
        .bind(&lease.job_id)
        .bind(&lease.token)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    async fn finish_job(
        &self,
        lease: &JobLease,
        learned: NewLearned,
    ) -> StoreResult<LearnedRecord> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        // The context row first (same lock order as updates), then the job.
        let ctx = if_found(self.lock_context(&mut tx, None, &lease.context_id).await)?;
        let job = self.leased_job(&mut tx, lease).await?;
        let sleep_entry = sleep_usage(&job, learned.usage);
        let ctx = match ctx {
            Some(ctx) if ctx.version == job.context_version => ctx,
            _ => {
                sqlx::query(
                    "UPDATE sleep_jobs SET status = 'superseded', claim_token = NULL, finished_at = $1, updated_at = $1,
                         prompt_tokens = $2, cached_tokens = $3, completion_tokens = $4,
                         error = 'the context changed while the job ran' WHERE id = $5",
                )
                .bind(now)
                .bind(learned.usage.prompt_tokens)
                .bind(learned.usage.cached_tokens)
                .bind(learned.usage.completion_tokens)
                .bind(&job.id)
                .execute(&mut *tx)
                .await?;
                self.insert_usage(&mut tx, &sleep_entry).await?;
                tx.commit().await?;
                return Err(StoreError::Superseded);
            }
        };
        let id = new_id("lrn");
        let row = sqlx::query(&format!(
            "INSERT INTO learned_contexts ({LEARNED_COLS})
             VALUES ($1, $2, $3, (SELECT COALESCE(MAX(version), 0) + 1 FROM learned_contexts WHERE context_id = $3), $4, $5, $6, $7, $8, 'ready', $9, $10, $11, $12, $13, $14, $15)
             RETURNING {LEARNED_COLS}"
        ))
        .bind(&id)
        .bind(&ctx.tenant_id)
        .bind(&ctx.id)
        .bind(ctx.version)
        .bind(&learned.context_hash)
        .bind(&learned.program)
        .bind(&learned.model_fingerprint)
        .bind(&learned.model_name)
        .bind(&learned.text)
        .bind(learned.detail.to_string())
        .bind(learned.usage.prompt_tokens)
        .bind(learned.usage.cached_tokens)
        .bind(learned.usage.completion_tokens)
        .bind(&job.id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let record = learned_from_row(&row)?;
        sqlx::query(
            "UPDATE sleep_jobs SET status = 'succeeded', claim_token = NULL, lease_until = NULL, finished_at = $1, updated_at = $1,
                 prompt_tokens = $2, cached_tokens = $3, completion_tokens = $4, learned_id = $5, error = NULL WHERE id = $6",
        )
        .bind(now)
        .bind(learned.usage.prompt_tokens)
        .bind(learned.usage.cached_tokens)
        .bind(learned.usage.completion_tokens)
        .bind(&id)
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        self.insert_usage(&mut tx, &sleep_entry).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn fail_job(
        &self,
        lease: &JobLease,
        error: &str,
        usage: TokenUsage,
        retry_at: Option<i64>,
    ) -> StoreResult<JobRecord> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let job = self.leased_job(&mut tx, lease).await?;
        let retry = retry_at.filter(|_| job.attempts < job.max_attempts);
        let (status, due_at) = match retry {
            Some(at) => ("pending", at),
            None => ("failed", job.due_at),
        };
        let row = sqlx::query(&format!(
            "UPDATE sleep_jobs SET status = $1, due_at = $2, claim_token = NULL, lease_until = NULL, updated_at = $3,
                 finished_at = $4, error = $5, prompt_tokens = prompt_tokens + $6, cached_tokens = cached_tokens + $7,
                 completion_tokens = completion_tokens + $8
             WHERE id = $9 RETURNING {JOB_COLS}"
        ))
        .bind(status)
        .bind(due_at)
        .bind(now)
        .bind(if retry.is_some() { None } else { Some(now) })
        .bind(error)
        .bind(usage.prompt_tokens)
        .bind(usage.cached_tokens)
        .bind(usage.completion_tokens)
        .bind(&job.id)
        .fetch_one(&mut *tx)
        .await?;
        if usage != TokenUsage::default() {
            self.insert_usage(&mut tx, &sleep_usage(&job, usage))
                .await?;
        }
        if retry.is_some() {
            self.notify_jobs(&mut tx).await?;
        }
        let job = job_from_row(&row)?;
        tx.commit().await?;
        Ok(job)
    }

    async fn release_job(&self, lease: &JobLease) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE sleep_jobs SET status = 'pending', claim_token = NULL, lease_until = NULL, due_at = $1, updated_at = $1,
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
             WHERE id = $2 AND claim_token = $3 AND status = 'running'",
        )
        .bind(now)
        .bind(&lease.job_id)
        .bind(&lease.token)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() != 1 {
            return Err(StoreError::LeaseLost);
        }
        // Another process may run it now rather than after this one restarts.
        self.notify_jobs(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_wakeup(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN status = 'pending' THEN due_at ELSE lease_until END) AS at FROM sleep_jobs WHERE status IN ('pending', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("at")?)
    }

    async fn queue_depth(&self) -> StoreResult<QueueDepth> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending,
                    CAST(COALESCE(SUM(CASE WHEN status = 'pending' AND due_at <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS due,
                    CAST(COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS BIGINT) AS running
             FROM sleep_jobs WHERE status IN ('pending', 'running')",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            pending: row.try_get("pending")?,
            due: row.try_get("due")?,
            running: row.try_get("running")?,
        })
    }

    fn queue_signal(&self) -> QueueSignal {
        self.queue_changes
            .clone()
            .map_or_else(QueueSignal::never, QueueSignal::from_receiver)
    }

    async fn relearn_due(&self, learned_before: i64, limit: u32) -> StoreResult<Vec<ContextRef>> {
        // A scan of the contexts table; it runs once per scheduler pass, not per request.
        let rows = sqlx::query(&format!(
            "SELECT c.id AS id, c.tenant_id AS tenant_id FROM contexts c WHERE {RELEARN_DUE}
             ORDER BY (SELECT MAX(l.created_at) FROM learned_contexts l WHERE l.context_id = c.id AND l.status = 'ready'), c.id
             LIMIT $2"
        ))
        .bind(learned_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ContextRef {
                    tenant_id: r.try_get("tenant_id")?,
                    context_id: r.try_get("id")?,
                })
            })
            .collect()
    }

    async fn enqueue_relearn(
        &self,
        context: &ContextRef,
        learned_before: i64,
        sleep: Enqueue,
    ) -> StoreResult<Option<JobRecord>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let locked = self
            .lock_context(&mut tx, Some(&context.tenant_id), &context.context_id)
            .await;
        let Some(ctx) = if_found(locked)? else {
            return Ok(None);
        };
        let due = sqlx::query(&format!(
            "SELECT c.id AS id FROM contexts c WHERE c.id = $2 AND {RELEARN_DUE}"
        ))
        .bind(learned_before)
        .bind(&ctx.id)
        .fetch_optional(&mut *tx)
        .await?;
        if due.is_none() {
            return Ok(None);
        }
        let job = self.insert_job(&mut tx, &ctx, &sleep, now).await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn record_usage(&self, entry: UsageEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        self.insert_usage(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage_totals(
        &self,
        tenant_id: Option<&str>,
        context_id: Option<&str>,
        since_ms: i64,
    ) -> StoreResult<UsageTotals> {
        let mut sql = String::from(
            "SELECT kind, CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens,
                    CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens,
                    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens
             FROM usage_ledger WHERE created_at >= $1",
        );
        let mut n = 1;
        if tenant_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND tenant_id = ${n}"));
        }
        if context_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND context_id = ${n}"));
        }
        sql.push_str(" GROUP BY kind");
        let mut query = sqlx::query(&sql).bind(since_ms);
        if let Some(t) = tenant_id {
            query = query.bind(t.to_owned());
        }
        if let Some(c) = context_id {
            query = query.bind(c.to_owned());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut totals = UsageTotals::default();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let usage = usage_from_row(&row)?;
            let count: i64 = row.try_get("n")?;
            if kind == "sleep" {
                totals.sleep = usage;
                totals.sleep_entries = count;
            } else {
                totals.test = usage;
                totals.test_entries = count;
            }
        }
        Ok(totals)
    }
}
