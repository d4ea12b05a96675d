use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sleeptime_model::{ModelInfo, SharedBackend};
use sleeptime_store::{Enqueue, JobTrigger, Store, StoreResult, Tenant};
use tokio::sync::{broadcast, watch, Notify};

use crate::config::ServerConfig;
use crate::gate::QueryGate;
use crate::metrics::Metrics;

/// One thing that happened to a sleep job, for the SSE stream.
#[derive(Debug, Clone, Serialize)]
pub struct JobEvent {
    pub job_id: String,
    pub context_id: String,
    #[serde(skip)]
    pub tenant_id: String,
    /// `queued`, `running`, `step`, `succeeded`, `failed`, `superseded`, `cancelled`, `released`.
    pub event: String,
    pub data: serde_json::Value,
}

/// Everything the handlers and the scheduler share.
#[derive(Debug)]
pub struct AppState {
    pub config: ServerConfig,
    pub backend: SharedBackend,
    pub model: ModelInfo,
    pub store: Arc<dyn Store>,
    pub gate: Arc<QueryGate>,
    pub metrics: Metrics,
    pub events: broadcast::Sender<JobEvent>,
    /// Wakes this process's scheduler when a job may have become due (schedulers in other
    /// processes hear it through the store's [`Store::queue_signal`]).
    pub wake: Notify,
    /// Cancel switches of the jobs running in this process: job id -> (context id, switch).
    pub running: Mutex<HashMap<String, (String, Arc<Notify>)>>,
    /// Set on shutdown: running jobs give their leases back instead of finishing.
    pub parking: std::sync::atomic::AtomicBool,
    pub shutdown: watch::Receiver<bool>,
    pub default_tenant: Tenant,
}

impl AppState {
    /// Register the configured tenants and keys, and build the shared state.
    pub async fn new(
        config: ServerConfig,
        backend: SharedBackend,
        store: Arc<dyn Store>,
        shutdown: watch::Receiver<bool>,
    ) -> StoreResult<Arc<Self>> {
        let default_tenant = store
            .ensure_tenant(&config.auth.default_tenant, &config.auth.default_tenant)
            .await?;
        for k in &config.auth.keys {
            store.ensure_tenant(&k.tenant, &k.tenant).await?;
            store.add_api_key(&k.tenant, &k.key, "config").await?;
        }
        let model = backend.info();
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Self {
            config,
            backend,
            model,
            store,
            gate: Arc::new(QueryGate::default()),
            metrics: Metrics::default(),
            events,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            parking: std::sync::atomic::AtomicBool::new(false),
            shutdown,
            default_tenant,
        }))
    }

    /// A job request that becomes due once the context has been quiet for the idle period.
    pub fn idle_enqueue(&self) -> Enqueue {
        Enqueue {
            due_at: sleeptime_store::now_ms()
                + i64::try_from(self.config.scheduler.idle.as_millis()).unwrap_or(i64::MAX),
            trigger: JobTrigger::Idle,
            max_attempts: self.config.scheduler.max_attempts,
        }
    }

    pub fn emit(
        &self,
        job_id: &str,
        context_id: &str,
        tenant_id: &str,
        event: &str,
        data: serde_json::Value,
    ) {
        let _ = self.events.send(JobEvent {
            job_id: job_id.to_owned(),
            context_id: context_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            event: event.to_owned(),
            data,
        });
    }

    /// Stop the sleep work running here for `context_id` (its job was superseded or
    /// cancelled), so no tokens go to stale text.
    pub fn cancel_context_work(&self, context_id: &str) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (ctx, cancel) in running.values() {
            if ctx == context_id {
                cancel.notify_one();
            }
        }
    }
}
