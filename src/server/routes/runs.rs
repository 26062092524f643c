//! Runs: run now, history, stop and logs (`/run/v1`, `/jobs/v1`, `/logs/v1`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi};

use crate::api::{
    DEFAULT_PAGE_SIZE, ErrorBody, Execution, HistoryQuery, LogLine, MAX_PAGE_SIZE, Page,
    Pagination, Role, RunResponse, StopResponse,
};
use crate::runner::{RunError, Runner};
use crate::server::AppState;
use crate::server::auth::Auth;
use crate::server::error::{ApiError, ApiPath, ApiQuery};
use crate::store::runs::{self, HistoryFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/run/v1/external/{org}/{pid}/{deployment}/{name}",
            post(run_now),
        )
        .route("/jobs/v1/{org}/{pid}", get(history))
        .route("/jobs/v1/{org}/{pid}/{execution_id}", delete(stop))
        .route("/logs/v1/{org}/{pid}/tail/{execution_id}", get(logs))
}

#[derive(OpenApi)]
#[openapi(paths(run_now, history, stop, logs), tags((name = "runs", description = "Executions: run now, history, stop, logs")))]
struct RunsDoc;

/// The OpenAPI description of these routes, merged into the server's document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    RunsDoc::openapi()
}

fn runner(state: &AppState) -> Result<&Runner, ApiError> {
    state.runner.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this control plane does not run jobs: runs need `meltano-cloud server`",
        )
    })
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> ApiError {
        match e {
            RunError::NoDeployment(_) | RunError::NoExecution(_) => {
                ApiError::not_found(e.to_string())
            }
            RunError::UnknownName { .. } => ApiError::bad_request(e.to_string()),
            RunError::AlreadyEnded { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            RunError::Host(detail) => {
                tracing::error!(error = %detail, "starting a run failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
            }
            RunError::Store(err) => store_error(err),
        }
    }
}

fn store_error(err: sqlx::Error) -> ApiError {
    tracing::error!(error = %err, "database error");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database error")
}

/// Run a job or schedule of a deployment now.
#[utoipa::path(
    post, path = "/run/v1/external/{org}/{pid}/{deployment}/{name}", tag = "runs",
    params(
        ("org" = String, Path, description = "Organization (tenant resource key)"),
        ("pid" = String, Path, description = "Project id"),
        ("deployment" = String, Path),
        ("name" = String, Path, description = "A job or schedule of the deployed commit"),
    ),
    responses(
        (status = 200, body = RunResponse),
        (status = 400, body = ErrorBody, description = "Neither a job nor a schedule"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_now(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, deployment, name)): ApiPath<(String, String, String, String)>,
) -> Result<axum::Json<RunResponse>, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "run jobs")
        .await?;
    let runner = runner(&state)?;
    Ok(axum::Json(
        runner.run_now(&org, &pid, &deployment, &name).await?,
    ))
}

/// Map a `result` filter value to the statuses it selects.
fn statuses(result: &str) -> Result<Vec<String>, ApiError> {
    let s = match result.to_ascii_lowercase().as_str() {
        "success" | "succeeded" => runs::SUCCEEDED,
        "failed" | "failure" => runs::FAILED,
        "running" => runs::RUNNING,
        "stopped" => runs::STOPPED,
        "skipped" => runs::SKIPPED,
        _ => {
            return Err(ApiError::bad_request(format!(
                "unknown result `{result}`: expected success, failed, running, stopped or skipped"
            )));
        }
    };
    Ok(vec![s.to_owned()])
}

/// `start_time` as milliseconds: RFC 3339, or a date or date-time without offset (UTC).
fn parse_start(text: &str) -> Result<i64, ApiError> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(ApiError::bad_request(format!(
        "start_time `{text}` is not an ISO 8601 time such as 2024-05-01T12:00:00Z"
    )))
}

fn page_size(size: Option<u32>) -> Result<u32, ApiError> {
    let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(size)
}

/// A project's executions, newest first.
#[utoipa::path(
    get, path = "/jobs/v1/{org}/{pid}", tag = "runs",
    params(("org" = String, Path), ("pid" = String, Path), HistoryQuery),
    responses(
        (status = 200, body = Page<Execution>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<axum::Json<Page<Execution>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read history")
        .await?;
    let size = page_size(q.page_size)?;
    let after = match q.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            runs::parse_history_token(t)
                .ok_or_else(|| ApiError::bad_request("invalid page_token"))?,
        ),
    };
    let filter = HistoryFilter {
        schedule: q.schedule.filter(|s| !s.is_empty()),
        deployment: q.deployment.filter(|s| !s.is_empty()),
        statuses: match q.result.as_deref() {
            None | Some("") => Vec::new(),
            Some(r) => statuses(r)?,
        },
        start_ms_min: q.start_time.as_deref().map(parse_start).transpose()?,
    };
    let (rows, next) = runs::list_executions(&state.store.pool, &pid, &filter, size, after)
        .await
        .map_err(store_error)?;
    Ok(axum::Json(Page {
        results: rows.iter().map(runs::ExecutionRow::to_api).collect(),
        pagination: next.map(|t| Pagination {
            next_page_token: Some(t),
            page_size: size,
        }),
    }))
}

/// Stop a running execution: its whole process group gets SIGTERM, then SIGKILL.
#[utoipa::path(
    delete, path = "/jobs/v1/{org}/{pid}/{execution_id}", tag = "runs",
    params(("org" = String, Path), ("pid" = String, Path), ("execution_id" = String, Path)),
    responses(
        (status = 200, body = StopResponse),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The execution already ended"),
    ),
    security(("bearer" = []))
)]
pub async fn stop(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, execution_id)): ApiPath<(String, String, String)>,
) -> Result<axum::Json<StopResponse>, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "stop executions")
        .await?;
    let runner = runner(&state)?;
    Ok(axum::Json(runner.stop(&pid, &execution_id).await?))
}

/// Query of the logs route.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// `next_page_token` of the previous page; omitted: from the first line.
    pub page_token: Option<String>,
    /// At most 250 (default 100).
    pub page_size: Option<u32>,
}

/// An execution's log lines, oldest first. `pagination` is present while more lines may
/// come (a full page, or the execution still runs): poll again with its token. It is
/// null once the execution ended and every line was returned.
#[utoipa::path(
    get, path = "/logs/v1/{org}/{pid}/tail/{execution_id}", tag = "runs",
    params(("org" = String, Path), ("pid" = String, Path), ("execution_id" = String, Path), LogsQuery),
    responses(
        (status = 200, body = Page<LogLine>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn logs(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, execution_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<axum::Json<Page<LogLine>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read logs")
        .await?;
    let size = page_size(q.page_size)?;
    let after: i64 = match q.page_token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse()
            .ok()
            .filter(|n: &i64| *n >= 0)
            .ok_or_else(|| ApiError::bad_request("invalid page_token"))?,
    };
    // Read the status before the lines: an execution seen ended has all its lines stored.
    let execution = runs::get_execution(&state.store.pool, &pid, &execution_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("execution `{execution_id}` not found")))?;
    let (lines, last) = runs::read_logs(&state.store.pool, &execution_id, after, size)
        .await
        .map_err(store_error)?;
    let more = lines.len() as u32 == size || execution.is_running();
    Ok(axum::Json(Page {
        results: lines,
        pagination: more.then(|| Pagination {
            next_page_token: Some(last.to_string()),
            page_size: size,
        }),
    }))
}
