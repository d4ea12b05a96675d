//! One suite, run against every backend: SQLite always, PostgreSQL when
//! `SLEEPTIME_TEST_POSTGRES_URL` is set (required under CI). Each test gets a fresh database,
//! because the job queue is global.

use std::collections::HashSet;
use std::time::Duration;

use sleeptime_store::testing::{fresh_postgres_database, postgres_url};
use sleeptime_store::*;

async fn sqlite() -> Option<(SqlStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("store.db"))
        .await
        .expect("open sqlite");
    Some((store, dir))
}

async fn postgres() -> Option<(SqlStore, tempfile::TempDir)> {
    let db = fresh_postgres().await?;
    let store = SqlStore::connect(&db, 8).await.expect("connect postgres");
    Some((store, tempfile::tempdir().expect("tempdir")))
}

/// The URL of a fresh database on the test PostgreSQL server, or `None` when there is none.
async fn fresh_postgres() -> Option<String> {
    let url = postgres_url()?;
    Some(
        fresh_postgres_database(&url)
            .await
            .expect("create test database"),
    )
}

fn text(t: &str) -> ContextBody {
    ContextBody::Text(t.to_owned())
}

fn now_due() -> Enqueue {
    Enqueue {
        due_at: now_ms(),
        trigger: JobTrigger::Idle,
        max_attempts: 3,
    }
}

fn due_in(ms: i64) -> Enqueue {
    Enqueue {
        due_at: now_ms() + ms,
        ..now_due()
    }
}

/// A job asked for by hand (the API's "learn now"), due at once.
fn manual_now() -> Enqueue {
    Enqueue {
        trigger: JobTrigger::Manual,
        ..now_due()
    }
}

/// An update that appends `t`, with no rename and no version check.
fn append(t: &str) -> ContextUpdate {
    ContextUpdate {
        change: ContextChangeKind::Append(text(t)),
        name: None,
        if_version: None,
    }
}

/// An update that replaces the body with `t`, with no rename and no version check.
fn replace(t: &str) -> ContextUpdate {
    ContextUpdate {
        change: ContextChangeKind::Replace(text(t)),
        ..append(t)
    }
}

fn learned(hash: &str, text: &str, tokens: i64) -> NewLearned {
    NewLearned {
        context_hash: hash.to_owned(),
        program: "rethink@v1".into(),
        model_fingerprint: "scripted".into(),
        model_name: "scripted".into(),
        text: text.to_owned(),
        detail: serde_json::json!({"drafts": 1}),
        usage: TokenUsage {
            prompt_tokens: tokens,
            cached_tokens: 0,
            completion_tokens: tokens / 2,
        },
    }
}

async fn tenant(store: &SqlStore, name: &str) -> String {
    store.create_tenant(name).await.expect("tenant").id
}

/// Create an unnamed text context for `tenant`; `sleep` enqueues its first job.
async fn create_text(
    store: &SqlStore,
    tenant: &str,
    body: &str,
    sleep: Option<Enqueue>,
) -> ContextChange {
    store
        .create_context(
            tenant,
            NewContext {
                name: None,
                body: text(body),
            },
            sleep,
        )
        .await
        .expect("create")
}

/// A lease long enough never to run out during a test.
const LEASE: Duration = Duration::from_secs(30);

/// Claim the next due job, if any, with a [`LEASE`].
async fn claim(store: &SqlStore) -> Option<ClaimedJob> {
    claim_for(store, LEASE).await
}

/// Claim the next due job, if any, with a lease of `lease`.
async fn claim_for(store: &SqlStore, lease: Duration) -> Option<ClaimedJob> {
    store.claim_job(lease).await.expect("claim")
}

/// The context's current learned context (`c'`), if one is ready.
async fn current_learned(
    store: &SqlStore,
    tenant: &str,
    context_id: &str,
) -> Option<LearnedRecord> {
    store
        .current_learned(tenant, context_id)
        .await
        .expect("current")
}

/// The context's learned contexts, newest first, up to `limit`.
async fn learned_history(
    store: &SqlStore,
    tenant: &str,
    context_id: &str,
    limit: u32,
) -> Page<LearnedRecord> {
    store
        .list_learned(tenant, context_id, &PageRequest::first(limit))
        .await
        .expect("history")
}

async fn contexts_crud_versions_and_isolation(store: SqlStore) {
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let change = store
            .create_context(
                &a,
                NewContext {
                    name: Some(format!("c{i}")),
                    body: text(&format!("text {i}")),
                },
                None,
            )
            .await
            .expect("create");
        assert_eq!(change.context.version, 1);
        assert!(change.job.is_none());
        ids.push(change.context.id);
    }
    // Pagination walks every context once, in creation order.
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let p = store.list_contexts(&a, &page).await.expect("list");
        seen.extend(p.items.iter().map(|c| c.id.clone()));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    // Tenant isolation: b sees nothing of a's.
    assert!(store
        .list_contexts(&b, &PageRequest::first(10))
        .await
        .expect("list b")
        .items
        .is_empty());
    assert!(matches!(
        store.get_context(&b, &ids[0]).await,
        Err(StoreError::NotFound)
    ));
    let upd = replace("x");
    assert!(matches!(
        store.update_context(&b, &ids[0], upd.clone(), None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_context(&b, &ids[0]).await,
        Err(StoreError::NotFound)
    ));

    // Replace and append bump the version; versions are kept.
    let c = store
        .update_context(&a, &ids[0], upd, None)
        .await
        .expect("replace")
        .context;
    assert_eq!((c.version, c.body.clone()), (2, text("x")));
    let append = ContextUpdate {
        change: ContextChangeKind::Append(text("y")),
        name: Some("renamed".into()),
        if_version: Some(2),
    };
    let c = store
        .update_context(&a, &ids[0], append, None)
        .await
        .expect("append")
        .context;
    assert_eq!(
        (c.version, c.body.clone(), c.name.as_deref()),
        (3, text("x\ny"), Some("renamed"))
    );
    assert_eq!(c.hash, text("x\ny").hash());
    // Compare-and-swap on a stale version fails and changes nothing.
    let stale = ContextUpdate {
        change: ContextChangeKind::Replace(text("z")),
        name: None,
        if_version: Some(2),
    };
    assert!(matches!(
        store.update_context(&a, &ids[0], stale, None).await,
        Err(StoreError::VersionConflict {
            expected: 2,
            current: 3
        })
    ));
    // Mixing kinds is refused and changes nothing.
    let mixed = ContextUpdate {
        change: ContextChangeKind::Append(ContextBody::Messages(vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }])),
        name: None,
        if_version: None,
    };
    assert!(matches!(
        store.update_context(&a, &ids[0], mixed, None).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.get_context(&a, &ids[0]).await.expect("get").version,
        3
    );

    let versions = store
        .list_versions(&a, &ids[0], &PageRequest::first(2))
        .await
        .expect("versions");
    assert_eq!(
        versions.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let rest = store
        .list_versions(
            &a,
            &ids[0],
            &PageRequest {
                limit: 2,
                cursor: versions.next_cursor,
            },
        )
        .await
        .expect("versions 2");
    assert_eq!(
        rest.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(rest.next_cursor.is_none());
    assert_eq!(
        store.get_version(&a, &ids[0], 1).await.expect("v1").body,
        text("text 0")
    );
    assert!(matches!(
        store.get_version(&a, &ids[0], 9).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_version(&b, &ids[0], 1).await,
        Err(StoreError::NotFound)
    ));

    // Messages contexts round-trip.
    let msgs = ContextBody::Messages(vec![
        ChatMessage {
            role: "user".into(),
            content: "I moved to Lisbon".into(),
        },
        ChatMessage {
            role: "assistant".into(),
            content: "Noted".into(),
        },
    ]);
    let m = store
        .create_context(
            &a,
            NewContext {
                name: None,
                body: msgs.clone(),
            },
            None,
        )
        .await
        .expect("msgs")
        .context;
    assert_eq!(
        store.get_context(&a, &m.id).await.expect("get msgs").body,
        msgs
    );
    assert_eq!(msgs.to_text(), "user: I moved to Lisbon\nassistant: Noted");

    store.delete_context(&a, &ids[1]).await.expect("delete");
    assert!(matches!(
        store.get_context(&a, &ids[1]).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .list_versions(&a, &ids[1], &PageRequest::first(5))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn api_keys(store: SqlStore) {
    let a = store
        .ensure_tenant("default", "Default")
        .await
        .expect("tenant");
    assert_eq!(
        store
            .ensure_tenant("default", "other name")
            .await
            .expect("again")
            .name,
        "Default"
    );
    let key = store.create_api_key(&a.id, "test").await.expect("key");
    assert_eq!(
        store
            .tenant_for_key(&key)
            .await
            .expect("lookup")
            .map(|t| t.id),
        Some(a.id.clone())
    );
    assert!(store
        .tenant_for_key("sk-nope-nope-nope")
        .await
        .expect("lookup")
        .is_none());
    store
        .add_api_key(&a.id, "fixed-key-123", "fixed")
        .await
        .expect("add");
    store
        .add_api_key(&a.id, "fixed-key-123", "fixed")
        .await
        .expect("idempotent");
    let b = tenant(&store, "b").await;
    assert!(matches!(
        store.add_api_key(&b, "fixed-key-123", "steal").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.add_api_key(&b, "short", "x").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn job_lifecycle_publishes_learned_atomically(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let change = create_text(&store, &t, "Alice has 3 apples.", Some(now_due())).await;
    let job = change.job.expect("job");
    assert_eq!(
        (job.status, job.context_version, job.attempts),
        (JobStatus::Pending, 1, 0)
    );
    assert!(current_learned(&store, &t, &change.context.id)
        .await
        .is_none());

    let claimed = claim(&store).await.expect("a job");
    assert_eq!(claimed.job.id, job.id);
    assert_eq!(
        (claimed.job.status, claimed.job.attempts),
        (JobStatus::Running, 1)
    );
    assert!(claim(&store).await.is_none(), "one job, one claim");
    store
        .heartbeat(&claimed.lease, Duration::from_secs(30))
        .await
        .expect("heartbeat");
    let depth = store.queue_depth().await.expect("depth");
    assert_eq!((depth.pending, depth.running), (0, 1));
    // Not visible while running.
    assert!(current_learned(&store, &t, &change.context.id)
        .await
        .is_none());

    let rec = store
        .finish_job(
            &claimed.lease,
            learned(&change.context.hash, "c' text", 100),
        )
        .await
        .expect("finish");
    assert_eq!(
        (rec.version, rec.context_version, rec.status),
        (1, 1, LearnedStatus::Ready)
    );
    let current = current_learned(&store, &t, &change.context.id)
        .await
        .expect("ready");
    assert_eq!(current.id, rec.id);
    assert_eq!(current.text, "c' text");
    let job = store.get_job(&t, &job.id).await.expect("job");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.learned_id.as_deref(), Some(rec.id.as_str()));
    assert_eq!(job.usage.prompt_tokens, 100);
    // A second finish with the same lease is refused: it completes once.
    assert!(matches!(
        store
            .finish_job(&claimed.lease, learned(&change.context.hash, "again", 1))
            .await,
        Err(StoreError::LeaseLost)
    ));
    let totals = store
        .usage_totals(Some(&t), Some(&change.context.id), 0)
        .await
        .expect("totals");
    assert_eq!(
        (
            totals.sleep.prompt_tokens,
            totals.sleep.completion_tokens,
            totals.sleep_entries
        ),
        (100, 50, 1)
    );

    // A manual trigger relearns: learned version 2 becomes current.
    let again = store
        .enqueue_job(&t, &change.context.id, manual_now())
        .await
        .expect("enqueue");
    assert_ne!(again.id, job.id);
    let c2 = claim(&store).await.expect("job");
    let rec2 = store
        .finish_job(&c2.lease, learned(&change.context.hash, "better", 10))
        .await
        .expect("finish");
    assert_eq!(rec2.version, 2);
    assert_eq!(
        current_learned(&store, &t, &change.context.id)
            .await
            .map(|l| l.version),
        Some(2)
    );
    let hist = learned_history(&store, &t, &change.context.id, 1).await;
    assert_eq!(hist.items[0].version, 2);
    let hist2 = store
        .list_learned(
            &t,
            &change.context.id,
            &PageRequest {
                limit: 1,
                cursor: hist.next_cursor,
            },
        )
        .await
        .expect("history 2");
    assert_eq!(
        hist2.items.iter().map(|l| l.version).collect::<Vec<_>>(),
        vec![1]
    );
    // Another tenant sees none of it.
    let other = tenant(&store, "o").await;
    assert!(current_learned(&store, &other, &change.context.id)
        .await
        .is_none());
    assert!(matches!(
        store.get_job(&other, &job.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .list_learned(&other, &change.context.id, &PageRequest::first(5))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn debounce_and_supersede(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let c = create_text(&store, &t, "v1", Some(due_in(400))).await;
    let first_job = c.job.expect("job");
    assert!(
        claim(&store).await.is_none(),
        "not due during the quiet period"
    );
    let next = store.next_wakeup().await.expect("wakeup").expect("some");
    assert_eq!(next, first_job.due_at);
    // A change during the quiet period supersedes and restarts the debounce.
    let upd = append("v2");
    let change = store
        .update_context(&t, &c.context.id, upd, Some(due_in(300)))
        .await
        .expect("update");
    assert_eq!(change.superseded, vec![first_job.id.clone()]);
    assert_eq!(
        store.get_job(&t, &first_job.id).await.expect("job").status,
        JobStatus::Superseded
    );
    let job2 = change.job.expect("job 2");
    assert_eq!(job2.context_version, 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let claimed = claim(&store).await.expect("due now");
    assert_eq!(claimed.job.id, job2.id);

    // A change while running supersedes the running job; its result is refused.
    let upd = replace("v3");
    let change = store
        .update_context(&t, &c.context.id, upd, Some(now_due()))
        .await
        .expect("update");
    assert_eq!(change.superseded, vec![job2.id.clone()]);
    assert!(matches!(
        store
            .heartbeat(&claimed.lease, Duration::from_secs(30))
            .await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store
            .finish_job(&claimed.lease, learned(&c.context.hash, "stale", 5))
            .await,
        Err(StoreError::LeaseLost)
    ));
    assert!(current_learned(&store, &t, &c.context.id).await.is_none());
    let claimed3 = claim(&store).await.expect("v3 job");
    assert_eq!(claimed3.job.context_version, 3);
    let rec = store
        .finish_job(
            &claimed3.lease,
            learned(&change.context.hash, "v3 learned", 5),
        )
        .await
        .expect("finish");
    assert_eq!(rec.context_version, 3);
    // The next change makes it stale, and it is no longer current.
    let upd = append("v4");
    store
        .update_context(&t, &c.context.id, upd, None)
        .await
        .expect("update");
    assert!(current_learned(&store, &t, &c.context.id).await.is_none());
    let hist = learned_history(&store, &t, &c.context.id, 5).await;
    assert_eq!(hist.items[0].status, LearnedStatus::Stale);
}

async fn expired_lease_is_reclaimed_and_completes_once(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let c = create_text(&store, &t, "ctx", Some(now_due())).await;
    // Worker A claims with a short lease and "crashes" (never heartbeats again).
    let a = claim_for(&store, Duration::from_millis(200))
        .await
        .expect("job");
    assert!(
        claim_for(&store, Duration::from_millis(200))
            .await
            .is_none(),
        "lease holds"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Worker B takes it over.
    let b = claim(&store).await.expect("re-claimed");
    assert_eq!(b.job.id, a.job.id);
    assert_eq!(b.job.attempts, 2);
    assert_ne!(b.lease.token, a.lease.token);
    // A wakes up: its heartbeat and its result are refused.
    assert!(matches!(
        store.heartbeat(&a.lease, Duration::from_secs(30)).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store
            .finish_job(&a.lease, learned(&c.context.hash, "from A", 1))
            .await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store
            .fail_job(&a.lease, "A failed", TokenUsage::default(), None)
            .await,
        Err(StoreError::LeaseLost)
    ));
    store
        .finish_job(&b.lease, learned(&c.context.hash, "from B", 1))
        .await
        .expect("B finishes");
    assert!(claim(&store).await.is_none());
    let hist = learned_history(&store, &t, &c.context.id, 10).await;
    assert_eq!(hist.items.len(), 1, "exactly one completion");
    assert_eq!(hist.items[0].text, "from B");
}

async fn crash_loop_ends_in_failure(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let c = create_text(
        &store,
        &t,
        "ctx",
        Some(Enqueue {
            max_attempts: 2,
            ..now_due()
        }),
    )
    .await;
    for _ in 0..2 {
        claim_for(&store, Duration::from_millis(100))
            .await
            .expect("job");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(claim(&store).await.is_none());
    let job = store
        .get_job(&t, &c.job.expect("job").id)
        .await
        .expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 2));
    assert!(job.error.expect("error").contains("stopped responding"));
}

async fn concurrent_claims_never_share_a_job(store: SqlStore) {
    let t = tenant(&store, "t").await;
    for i in 0..12 {
        create_text(&store, &t, &format!("c{i}"), Some(now_due())).await;
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = claim(&store).await {
                got.push(c.job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 12);
    assert_eq!(unique.len(), 12);
}

async fn fail_retry_and_release(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let c = create_text(&store, &t, "ctx", Some(now_due())).await;
    let used = TokenUsage {
        prompt_tokens: 7,
        cached_tokens: 0,
        completion_tokens: 3,
    };
    let a = claim(&store).await.expect("job");
    let job = store
        .fail_job(&a.lease, "model timed out", used, Some(now_ms()))
        .await
        .expect("fail");
    assert_eq!((job.status, job.attempts), (JobStatus::Pending, 1));
    // Released on shutdown: pending again, the attempt not counted.
    let b = claim(&store).await.expect("retry");
    assert_eq!(b.job.attempts, 2);
    store.release_job(&b.lease).await.expect("release");
    let job = store.get_job(&t, &b.job.id).await.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Pending, 1));
    assert!(matches!(
        store.release_job(&b.lease).await,
        Err(StoreError::LeaseLost)
    ));
    // Out of attempts (3): the failure is final.
    let mut last = None;
    for _ in 0..2 {
        let c = claim(&store).await.expect("job");
        last = Some(
            store
                .fail_job(&c.lease, "model timed out", used, Some(now_ms()))
                .await
                .expect("fail"),
        );
    }
    let job = last.expect("job");
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 3));
    assert_eq!(job.error.as_deref(), Some("model timed out"));
    assert_eq!(job.usage.prompt_tokens, 21);
    let totals = store
        .usage_totals(Some(&t), Some(&c.context.id), 0)
        .await
        .expect("totals");
    assert_eq!((totals.sleep.total(), totals.sleep_entries), (30, 3));
}

async fn manual_trigger_reuses_active_job(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let c = create_text(&store, &t, "ctx", Some(due_in(60_000))).await;
    let idle = c.job.expect("job");
    let manual = manual_now();
    let j = store
        .enqueue_job(&t, &c.context.id, manual.clone())
        .await
        .expect("enqueue");
    assert_eq!(j.id, idle.id, "the pending job is reused");
    assert!(j.due_at <= now_ms());
    assert_eq!(j.trigger, JobTrigger::Manual);
    let claimed = claim(&store).await.expect("due now");
    let j2 = store
        .enqueue_job(&t, &c.context.id, manual.clone())
        .await
        .expect("enqueue");
    assert_eq!(
        (j2.id, j2.status),
        (claimed.job.id.clone(), JobStatus::Running),
        "the running job is reused"
    );
    let other = tenant(&store, "o").await;
    assert!(matches!(
        store.enqueue_job(&other, &c.context.id, manual).await,
        Err(StoreError::NotFound)
    ));
    // Deleting the context cancels its jobs and frees the lease.
    let cancelled = store
        .delete_context(&t, &c.context.id)
        .await
        .expect("delete");
    assert_eq!(cancelled, vec![claimed.job.id.clone()]);
    assert_eq!(
        store
            .get_job(&t, &claimed.job.id)
            .await
            .expect("job")
            .status,
        JobStatus::Cancelled
    );
    assert!(matches!(
        store.finish_job(&claimed.lease, learned("h", "x", 1)).await,
        Err(StoreError::LeaseLost)
    ));
}

async fn usage_ledger_totals(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let u = tenant(&store, "u").await;
    let c = create_text(&store, &t, "ctx", None).await;
    for (tenant, kind, n) in [
        (&t, UsageKind::Test, 10),
        (&t, UsageKind::Test, 20),
        (&t, UsageKind::Sleep, 100),
        (&u, UsageKind::Test, 5),
    ] {
        store
            .record_usage(UsageEntry {
                tenant_id: tenant.clone(),
                context_id: Some(c.context.id.clone()),
                job_id: None,
                kind,
                usage: TokenUsage {
                    prompt_tokens: n,
                    cached_tokens: n / 2,
                    completion_tokens: 1,
                },
            })
            .await
            .expect("record");
    }
    let tt = store.usage_totals(Some(&t), None, 0).await.expect("t");
    assert_eq!(
        (
            tt.test.prompt_tokens,
            tt.test.cached_tokens,
            tt.test_entries
        ),
        (30, 15, 2)
    );
    assert_eq!((tt.sleep.prompt_tokens, tt.sleep_entries), (100, 1));
    let all = store.usage_totals(None, None, 0).await.expect("all");
    assert_eq!(all.test.prompt_tokens, 35);
    let future = store
        .usage_totals(None, None, now_ms() + 60_000)
        .await
        .expect("none");
    assert_eq!(future, UsageTotals::default());
}

/// Learn `c` now: run its pending job to completion.
async fn learn_now(store: &SqlStore, hash: &str) -> LearnedRecord {
    let claimed = claim(store).await.expect("a job");
    store
        .finish_job(&claimed.lease, learned(hash, "notes", 10))
        .await
        .expect("finish")
}

/// Let the millisecond clock move on, so "before" and "since" cutoffs are unambiguous.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

async fn relearn_once_per_period(store: SqlStore) {
    let t = tenant(&store, "t").await;
    let schedule = || Enqueue {
        trigger: JobTrigger::Schedule,
        ..now_due()
    };
    let older = create_text(&store, &t, "older", Some(now_due())).await;
    learn_now(&store, &older.context.hash).await;
    tick().await;
    let c = create_text(&store, &t, "ctx", Some(now_due())).await;
    let rec = learn_now(&store, &c.context.hash).await;
    // Never learned, or with work pending: never due (the idle trigger owns them).
    create_text(&store, &t, "never learned", None).await;
    create_text(&store, &t, "pending", Some(due_in(60_000))).await;
    tick().await;
    let me = ContextRef {
        tenant_id: t.clone(),
        context_id: c.context.id.clone(),
    };
    let older_ref = ContextRef {
        tenant_id: t.clone(),
        context_id: older.context.id.clone(),
    };

    // Learned at or after the cutoff: fresh, not due.
    assert_eq!(
        store.relearn_due(rec.created_at, 10).await.expect("due"),
        vec![older_ref.clone()]
    );
    // Once the period has passed: due, oldest learned first, `limit` respected.
    let cutoff = now_ms();
    assert_eq!(
        store.relearn_due(cutoff, 10).await.expect("due"),
        vec![older_ref.clone(), me.clone()]
    );
    assert_eq!(
        store.relearn_due(cutoff, 1).await.expect("due"),
        vec![older_ref.clone()]
    );
    // Another tenant's name for it enqueues nothing.
    let other = ContextRef {
        tenant_id: tenant(&store, "o").await,
        context_id: c.context.id.clone(),
    };
    assert!(store
        .enqueue_relearn(&other, cutoff, schedule())
        .await
        .expect("other")
        .is_none());

    let job = store
        .enqueue_relearn(&me, cutoff, schedule())
        .await
        .expect("enqueue")
        .expect("a job");
    assert_eq!(
        (job.status, job.trigger, job.context_version),
        (JobStatus::Pending, JobTrigger::Schedule, 1)
    );
    // Its job is active: not due again, and a second (racing) enqueue creates nothing.
    assert_eq!(
        store.relearn_due(cutoff, 10).await.expect("due"),
        vec![older_ref.clone()]
    );
    assert!(store
        .enqueue_relearn(&me, cutoff, schedule())
        .await
        .expect("again")
        .is_none());

    // The re-learn fails for good (e.g. budget spent): the context waits a whole period.
    let claimed = claim(&store).await.expect("job");
    assert_eq!(claimed.job.id, job.id);
    store
        .fail_job(
            &claimed.lease,
            "sleep-time token budget exhausted",
            TokenUsage::default(),
            None,
        )
        .await
        .expect("fail");
    tick().await;
    assert!(
        !store
            .relearn_due(job.created_at, 10)
            .await
            .expect("due")
            .contains(&me),
        "a job created in the period blocks it"
    );
    assert!(store
        .enqueue_relearn(&me, job.created_at, schedule())
        .await
        .expect("blocked")
        .is_none());
    assert!(
        store
            .relearn_due(job.created_at + 1, 10)
            .await
            .expect("due")
            .contains(&me),
        "due again the next period"
    );

    // A successful re-learn makes a new c' of the same version, fresh for a period.
    let job = store
        .enqueue_relearn(&me, now_ms(), schedule())
        .await
        .expect("enqueue")
        .expect("a job");
    let rec2 = learn_now(&store, &c.context.hash).await;
    assert_eq!(
        (rec2.version, rec2.context_version, rec2.job_id.as_deref()),
        (2, 1, Some(job.id.as_str()))
    );
    tick().await;
    assert!(!store
        .relearn_due(rec2.created_at, 10)
        .await
        .expect("due")
        .contains(&me));

    // A new version without a c' yet is not re-learned (its stale c' does not count).
    let upd = append("more");
    store
        .update_context(&t, &c.context.id, upd, None)
        .await
        .expect("update");
    tick().await;
    assert_eq!(
        store.relearn_due(now_ms(), 10).await.expect("due"),
        vec![older_ref.clone()]
    );
    assert!(store
        .enqueue_relearn(&me, now_ms(), schedule())
        .await
        .expect("stale")
        .is_none());
}

/// Wait up to `within` for the queue signal; `why` names what should have fired it.
async fn assert_woken(signal: &mut QueueSignal, within: Duration, why: &str) {
    tokio::time::timeout(within, signal.changed())
        .await
        .expect(why);
}

/// Assert the queue signal stays silent for `quiet`; `why` is the message if it fires.
async fn assert_quiet(signal: &mut QueueSignal, quiet: Duration, why: &str) {
    assert!(
        tokio::time::timeout(quiet, signal.changed()).await.is_err(),
        "{why}"
    );
}

/// On SQLite the queue has one process: the signal never fires, and callers keep polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queue_signal_never_fires() {
    let (store, _dir) = sqlite().await.expect("sqlite");
    let mut signal = store.queue_signal();
    let t = tenant(&store, "t").await;
    create_text(&store, &t, "ctx", Some(now_due())).await;
    assert_quiet(
        &mut signal,
        Duration::from_millis(200),
        "the SQLite queue signal fired",
    )
    .await;
}

/// Two stores on one PostgreSQL database stand for two processes: what one commits to the
/// queue wakes a waiter on the other, also after the listening connection was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_another_process() {
    use sqlx::{Connection, Row};
    let Some(db) = fresh_postgres().await else {
        eprintln!("skipped: SLEEPTIME_TEST_POSTGRES_URL is not set");
        return;
    };
    let a = SqlStore::connect(&db, 4).await.expect("connect a");
    let b = SqlStore::connect(&db, 4).await.expect("connect b");
    let mut signal = b.queue_signal();
    // Generous: a notification normally arrives in milliseconds.
    let woken = Duration::from_secs(10);
    let quiet = Duration::from_millis(300);
    let t = tenant(&a, "t").await;

    // No job, nothing to tell.
    let c = create_text(&a, &t, "ctx", None).await;
    assert_quiet(&mut signal, quiet, "woken without a job").await;
    // A new pending job (even one due later: the waiter learns the new earliest due time).
    let upd = append("more");
    a.update_context(&t, &c.context.id, upd, Some(due_in(60_000)))
        .await
        .expect("update");
    assert_woken(&mut signal, woken, "woken by update_context with a job").await;
    // Made due earlier.
    let manual = manual_now();
    a.enqueue_job(&t, &c.context.id, manual.clone())
        .await
        .expect("enqueue");
    assert_woken(&mut signal, woken, "woken by enqueue_job").await;
    // Reusing a job that is already due changes nothing.
    a.enqueue_job(&t, &c.context.id, manual)
        .await
        .expect("enqueue again");
    assert_quiet(&mut signal, quiet, "woken by a no-op enqueue").await;
    // A retry and a release put jobs back.
    let claimed = claim(&a).await.expect("job");
    a.fail_job(
        &claimed.lease,
        "model timed out",
        TokenUsage::default(),
        Some(now_ms()),
    )
    .await
    .expect("fail");
    assert_woken(&mut signal, woken, "woken by a retry").await;
    let claimed = claim(&a).await.expect("job");
    a.release_job(&claimed.lease).await.expect("release");
    assert_woken(&mut signal, woken, "woken by a release").await;
    create_text(&a, &t, "second", Some(now_due())).await;
    assert_woken(&mut signal, woken, "woken by create_context with a job").await;

    // Kill the listening connections: the listener reconnects (and wakes its waiters, since
    // notifications may have been missed), then hears commits again.
    let mut admin = sqlx::AnyConnection::connect(&db)
        .await
        .expect("admin connection");
    let killed: i64 = sqlx::query(
        "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate listeners")
    .try_get("n")
    .expect("n");
    assert!(killed >= 2, "both stores listen: {killed}");
    assert_woken(&mut signal, woken, "woken after reconnecting").await;
    create_text(&a, &t, "third", Some(now_due())).await;
    assert_woken(
        &mut signal,
        woken,
        "woken after the connection was re-established",
    )
    .await;
    admin.close().await.expect("close");
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some((store, _dir)) = super::$backend().await else {
                            eprintln!("skipped: SLEEPTIME_TEST_POSTGRES_URL is not set");
                            return;
                        };
                        super::$name(store).await;
                    }
                };
            }
            case!(contexts_crud_versions_and_isolation);
            case!(api_keys);
            case!(job_lifecycle_publishes_learned_atomically);
            case!(debounce_and_supersede);
            case!(expired_lease_is_reclaimed_and_completes_once);
            case!(crash_loop_ends_in_failure);
            case!(concurrent_claims_never_share_a_job);
            case!(fail_retry_and_release);
            case!(manual_trigger_reuses_active_job);
            case!(usage_ledger_totals);
            case!(relearn_once_per_period);
        }
    };
}

suite!(sqlite);
suite!(postgres);
