//! The control plane's HTTP service: the Meltano Cloud API v1 and the GitOps extensions.
//!
//! [`router`] builds the axum app over an [`AppState`]; `meltano-cloud server` serves it on
//! a TCP listener and [`local`] serves it in-process for the embedded local control plane.

pub mod auth;
pub mod error;
pub mod local;
pub mod openapi;
pub mod routes;
pub mod simulate;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::api::{Health, Page, Pagination};
use crate::gitrepo::GitResolver;
use crate::store::{Paged, Principal, Store, hash_token};
use error::ApiError;
use std::collections::HashMap;

/// Settings of a running control plane.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Where the server keeps files: git mirrors, run work dirs.
    pub data_dir: PathBuf,
    /// The database, with any password hidden (for messages).
    pub database: String,
    /// Test knobs: added latency and injected faults (off by default).
    pub simulate: simulate::Simulation,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub git: Arc<GitResolver>,
    /// Tokens that exist only in this process (the local control plane's owner token),
    /// by SHA-256 hash.
    pub ephemeral_tokens: Arc<HashMap<String, Principal>>,
    /// Runs jobs and schedules; None where nothing runs them (the local control plane).
    pub runner: Option<crate::runner::Runner>,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> AppState {
        let git = Arc::new(GitResolver::new(config.data_dir.join("git-cache")));
        AppState {
            store,
            config: Arc::new(config),
            git,
            ephemeral_tokens: Arc::new(HashMap::new()),
            runner: None,
        }
    }

    /// Accepts `token` for `principal` without storing it anywhere.
    pub fn add_ephemeral_token(&mut self, token: &str, principal: Principal) {
        Arc::make_mut(&mut self.ephemeral_tokens).insert(hash_token(token), principal);
    }
}

/// Wraps a store page in the API's paging envelope.
pub(crate) fn page<T>(paged: Paged<T>) -> axum::Json<Page<T>> {
    axum::Json(Page {
        results: paged.items,
        pagination: paged.next.map(|token| Pagination {
            next_page_token: Some(token),
            page_size: paged.size,
        }),
    })
}

/// Liveness and database reachability.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = crate::api::ErrorBody))
)]
pub async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    state
        .store
        .project_revision("")
        .await
        .map(|_| ())
        .or_else(|e| match e {
            crate::store::StoreError::NotFound(_) => Ok(()),
            other => Err(ApiError::from(other)),
        })?;
    Ok(axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    let simulation = state.config.simulate.clone();
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(routes::v1::router())
        .merge(routes::gitops::router())
        .merge(routes::runs::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            // Logs method, path, status and latency; never headers (tokens) or bodies
            // (secret values).
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        org = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(
                    |resp: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = resp.status().as_u16(),
                            latency_ms = latency.as_millis() as u64,
                            "request"
                        );
                    },
                )
                .on_failure(()),
        )
        // Outside the request log, so that the log shows what the handler answered even
        // when a simulated fault drops that answer (and no line for a simulated 503).
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(simulation),
            simulate::middleware,
        ))
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
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
        _ = ctrl_c => {},
        _ = term => {},
    }
}
