//! The sleeptime service: register contexts, let the service think about them while they are
//! idle, and answer queries fast from what it learned.
//!
//! - [`router`] builds the HTTP API (resources under `/v1/contexts`, `/v1/jobs`, the
//!   OpenAI-compatible `/v1/chat/completions` and `/v1/models`, `/healthz`, `/readyz`,
//!   `/metrics`); every error is `{"error":{"message","type","code"}}`.
//! - [`scheduler::run`] is the sleep worker: it claims due jobs from the store's durable
//!   queue, runs the sleep program through a backend that waits while queries are in flight,
//!   and publishes each learned context in its job's finishing transaction.
//! - [`serve`] runs both until SIGINT/SIGTERM, then drains requests and parks unfinished
//!   jobs. [`Server::start`] does the same on a given listener and hands back a handle
//!   (tests, embedding).

mod config;
mod error;
mod extract;
mod gate;
mod metrics;
mod openai;
mod routes;
pub mod scheduler;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use sleeptime_model::SharedBackend;
use sleeptime_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    AnswerDefaults, ApiKeyConfig, AuthConfig, ProgramChoice, ProgramSettings, Role,
    SchedulerConfig, ServerConfig, SleepConfig,
};
pub use error::ApiError;
pub use gate::{QueryGate, QueryGuard, SleepBackend};
pub use openai::CONTEXT_HEADER;
pub use state::{AppState, JobEvent};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The HTTP API over `state`. Routes that need the API role are left out for workers.
pub fn router(state: Arc<AppState>) -> Router {
    let ops = Router::new()
        .route("/healthz", get(routes::health))
        .route("/readyz", get(routes::ready))
        .route("/metrics", get(routes::metrics));
    let api = if state.config.role.serves_api() {
        Router::new()
            .route(
                "/v1/contexts",
                post(routes::create_context).get(routes::list_contexts),
            )
            .route(
                "/v1/contexts/{id}",
                get(routes::get_context)
                    .put(routes::replace_context)
                    .delete(routes::delete_context),
            )
            .route("/v1/contexts/{id}/append", post(routes::append_context))
            .route("/v1/contexts/{id}/versions", get(routes::list_versions))
            .route(
                "/v1/contexts/{id}/versions/{version}",
                get(routes::get_version),
            )
            .route("/v1/contexts/{id}/learned", get(routes::get_learned))
            .route(
                "/v1/contexts/{id}/learned/history",
                get(routes::learned_history),
            )
            .route("/v1/contexts/{id}/sleep", post(routes::trigger_sleep))
            .route("/v1/contexts/{id}/jobs", get(routes::list_jobs))
            .route("/v1/contexts/{id}/ask", post(routes::ask))
            .route("/v1/jobs/{id}", get(routes::get_job))
            .route("/v1/jobs/{id}/events", get(routes::job_events))
            .route("/v1/usage", get(routes::usage))
            .route("/v1/chat/completions", post(openai::chat_completions))
            .route("/v1/models", get(openai::models))
    } else {
        Router::new()
    };
    ops.merge(api)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(state)
}

/// One log line per request: method, path (ids only, never bodies), status, latency.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    resp
}

/// A running server: its address, and the switch that stops it.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    scheduler: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve on `listener` (and run the scheduler when the role runs jobs) in background tasks.
    pub async fn start(
        config: ServerConfig,
        backend: SharedBackend,
        store: Arc<dyn Store>,
        listener: TcpListener,
    ) -> Result<Server, ServerError> {
        let (shutdown, rx) = watch::channel(false);
        let state = AppState::new(config, backend, store, rx.clone()).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let mut http_rx = rx.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_rx.wait_for(|s| *s).await;
                })
                .await
        });
        let scheduler = state
            .config
            .role
            .runs_jobs()
            .then(|| tokio::spawn(scheduler::run(state.clone())));
        tracing::info!(%addr, model = %state.model.name, "sleeptime server listening");
        Ok(Server {
            addr,
            state,
            shutdown,
            http,
            scheduler,
        })
    }

    /// Stop accepting work, finish in-flight requests, let running jobs finish within the
    /// grace period and park the rest, then return.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        match self.http.await {
            Ok(r) => r.map_err(ServerError::Io),
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }
}

/// Run the service on `config.listen` until SIGINT or SIGTERM, then shut down gracefully.
pub async fn serve(
    config: ServerConfig,
    backend: SharedBackend,
    store: Arc<dyn Store>,
) -> Result<(), ServerError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let server = Server::start(config, backend, store, listener).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
