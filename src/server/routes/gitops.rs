//! GitOps extensions under `/gitops/v1`: whoami, snapshot, lock, audit, tokens.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::{
    AuditRecord, CreateToken, CreatedToken, ErrorBody, LockConflict, LockInfo, LockRenewal,
    LockRequest, NewAuditRecord, Page, PageQuery, Role, Snapshot, TokenInfo, WhoAmI,
};
use crate::server::auth::Auth;
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::server::routes::v1::bad_page;
use crate::server::{AppState, page};
use crate::store::PageReq;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/gitops/v1/whoami", get(whoami))
        .route(
            "/gitops/v1/{org}/tokens",
            get(list_tokens).post(create_token),
        )
        .route("/gitops/v1/{org}/tokens/{token_id}", delete(revoke_token))
        .route("/gitops/v1/{org}/{pid}/snapshot", get(snapshot))
        .route(
            "/gitops/v1/{org}/{pid}/lock",
            post(acquire_lock).get(get_lock),
        )
        .route(
            "/gitops/v1/{org}/{pid}/lock/{lock_id}",
            put(renew_lock).delete(release_lock),
        )
        .route(
            "/gitops/v1/{org}/{pid}/audit",
            post(append_audit).get(list_audit),
        )
}

/// Who the bearer token belongs to.
#[utoipa::path(
    get, path = "/gitops/v1/whoami", tag = "gitops",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn whoami(auth: Auth) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        tenant_resource_key: auth.0.org.clone(),
        role: auth.0.role,
        token_name: auth.0.token_name.clone(),
    })
}

/// Everything a plan needs in one call: project, revision, deployments with their
/// schedules, secret names with fingerprints, and the current lock.
#[utoipa::path(
    get, path = "/gitops/v1/{org}/{pid}/snapshot", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path)),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn snapshot(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let project = auth
        .project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let body = state.store.snapshot_json(&project).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    ))
}

/// Acquire the project lock. Retrying with the same `lock_id` is safe; an expired lock
/// is free; 409 with the holder while someone else has it.
#[utoipa::path(
    post, path = "/gitops/v1/{org}/{pid}/lock", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path)),
    request_body = LockRequest,
    responses(
        (status = 200, body = LockInfo),
        (status = 409, description = "Held by another lock id", body = LockConflict),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn acquire_lock(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<LockRequest>,
) -> Result<axum::Json<LockInfo>, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "lock projects")
        .await?;
    let lock = state.store.acquire_lock(&pid, &req).await?;
    tracing::info!(lock_id = %lock.lock_id, holder = %lock.holder, "lock acquired");
    Ok(axum::Json(lock))
}

/// The current lock, if any.
#[utoipa::path(
    get, path = "/gitops/v1/{org}/{pid}/lock", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path)),
    responses((status = 200, body = Option<LockInfo>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_lock(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
) -> Result<axum::Json<Option<LockInfo>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    Ok(axum::Json(state.store.current_lock(&pid).await?))
}

/// Renew a held lock.
#[utoipa::path(
    put, path = "/gitops/v1/{org}/{pid}/lock/{lock_id}", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path), ("lock_id" = String, Path)),
    request_body = LockRenewal,
    responses((status = 200, body = LockInfo), (status = 404, description = "Not held", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn renew_lock(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, lock_id)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<LockRenewal>,
) -> Result<axum::Json<LockInfo>, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "lock projects")
        .await?;
    Ok(axum::Json(
        state
            .store
            .renew_lock(&pid, &lock_id, req.ttl_seconds)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct ReleaseQuery {
    /// Force-unlock: answer 404 when no lock with this id is held, instead of treating
    /// the release as already done.
    #[serde(default)]
    pub force: Option<bool>,
}

/// Release a lock by id. Without `force` the release is idempotent (204 even when the
/// lock is already gone); with `force=true` (force-unlock) an unknown id answers 404.
#[utoipa::path(
    delete, path = "/gitops/v1/{org}/{pid}/lock/{lock_id}", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path), ("lock_id" = String, Path), ReleaseQuery),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn release_lock(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, lock_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<ReleaseQuery>,
) -> Result<StatusCode, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "unlock projects")
        .await?;
    let force = q.force.unwrap_or(false);
    let released = state.store.release_lock(&pid, &lock_id).await?;
    if force && !released {
        return Err(ApiError::not_found(format!(
            "no lock with id `{lock_id}` is held on this project"
        )));
    }
    if released {
        tracing::info!(%lock_id, force, "lock released");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Append an audit record of an apply.
#[utoipa::path(
    post, path = "/gitops/v1/{org}/{pid}/audit", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path)),
    request_body = NewAuditRecord,
    responses((status = 201, body = AuditRecord), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn append_audit(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiJson(record): ApiJson<NewAuditRecord>,
) -> Result<(StatusCode, axum::Json<AuditRecord>), ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "write audit records")
        .await?;
    let rec = state
        .store
        .append_audit(&pid, auth.0.token_name.as_deref(), &record)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rec)))
}

/// List audit records, newest first.
#[utoipa::path(
    get, path = "/gitops/v1/{org}/{pid}/audit", tag = "gitops",
    params(("org" = String, Path), ("pid" = String, Path), PageQuery),
    responses((status = 200, body = Page<AuditRecord>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<AuditRecord>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 1).map_err(bad_page)?;
    Ok(page(state.store.list_audit(&pid, &req).await?))
}

/// Create a token (owners only). The answer is the only time the token is shown.
#[utoipa::path(
    post, path = "/gitops/v1/{org}/tokens", tag = "tokens",
    params(("org" = String, Path)),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    auth.org(&org)?;
    auth.require(Role::Owner, "manage tokens")?;
    let created = state
        .store
        .create_token(&org, req.role, req.name.as_deref())
        .await?;
    tracing::info!(token_id = %created.info.token_id, role = created.info.role.as_str(), "token created");
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// List the organization's tokens (never the tokens themselves).
#[utoipa::path(
    get, path = "/gitops/v1/{org}/tokens", tag = "tokens",
    params(("org" = String, Path), PageQuery),
    responses((status = 200, body = Page<TokenInfo>), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<axum::Json<Page<TokenInfo>>, ApiError> {
    auth.org(&org)?;
    auth.require(Role::Owner, "manage tokens")?;
    let tokens = state.store.list_tokens(&org).await?;
    let size = tokens.len() as u32;
    Ok(page(crate::store::Paged {
        items: tokens,
        next: None,
        size,
    }))
}

/// Revoke a token.
#[utoipa::path(
    delete, path = "/gitops/v1/{org}/tokens/{token_id}", tag = "tokens",
    params(("org" = String, Path), ("token_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, token_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.org(&org)?;
    auth.require(Role::Owner, "manage tokens")?;
    state.store.revoke_token(&org, &token_id).await?;
    tracing::info!(%token_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
