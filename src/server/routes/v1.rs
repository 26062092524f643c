//! The Meltano Cloud API v1: projects, deployments, schedules, secrets.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use crate::api::{
    CreateProject, DeployQuery, Deployment, DeploymentRequest, ErrorBody, Page, PageQuery, Project,
    ProjectQuery, Role, Schedule, SecretInfo, SetSecret,
};
use crate::server::auth::Auth;
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::server::{AppState, page};
use crate::store::{DeployWrite, PageReq, is_slug};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/v1/{org}",
            get(list_projects).post(create_project),
        )
        .route("/deployments/v1/{org}/{pid}", get(list_deployments))
        .route(
            "/deployments/v1/{org}/{pid}/{name}",
            get(get_deployment).post(deploy).delete(delete_deployment),
        )
        .route("/schedules/v1/{org}/{pid}", get(list_schedules))
        .route(
            "/schedules/v1/{org}/{pid}/{deployment}",
            get(list_deployment_schedules),
        )
        .route(
            "/schedules/v1/{org}/{pid}/{deployment}/{schedule}",
            get(get_schedule),
        )
        .route(
            "/schedules/v1/{org}/{pid}/{deployment}/{schedule}/enabled",
            put(set_enabled),
        )
        .route(
            "/secrets/v1/{org}/{pid}/",
            get(list_secrets).put(set_secret),
        )
        .route("/secrets/v1/{org}/{pid}", get(list_secrets).put(set_secret))
        .route(
            "/secrets/v1/{org}/{pid}/{name}",
            axum::routing::delete(delete_secret),
        )
}

// ---------------------------------------------------------------- projects

/// List the organization's projects.
#[utoipa::path(
    get, path = "/projects/v1/{org}", tag = "projects",
    params(("org" = String, Path, description = "Organization (tenant resource key)"), ProjectQuery),
    responses(
        (status = 200, body = Page<Project>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_projects(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<axum::Json<Page<Project>>, ApiError> {
    auth.org(&org)?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 1).map_err(bad_page)?;
    let paged = state
        .store
        .list_projects(
            &org,
            q.project_id.as_deref(),
            q.project_name.as_deref(),
            &req,
        )
        .await?;
    Ok(page(paged))
}

/// Create a project (owners only).
#[utoipa::path(
    post, path = "/projects/v1/{org}", tag = "projects",
    params(("org" = String, Path)),
    request_body = CreateProject,
    responses(
        (status = 201, body = Project),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_project(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, axum::Json<Project>), ApiError> {
    auth.org(&org)?;
    auth.require(Role::Owner, "create projects")?;
    let project = state
        .store
        .create_project(
            &org,
            &body.project_name,
            &body.git_repository,
            body.project_root_path.as_deref().unwrap_or("."),
        )
        .await?;
    tracing::info!(project_id = %project.project_id, "project created");
    Ok((StatusCode::CREATED, axum::Json(project)))
}

pub(crate) fn bad_page(e: crate::store::StoreError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

// ---------------------------------------------------------------- deployments

/// List a project's deployments.
#[utoipa::path(
    get, path = "/deployments/v1/{org}/{pid}", tag = "deployments",
    params(("org" = String, Path), ("pid" = String, Path, description = "Project id"), PageQuery),
    responses((status = 200, body = Page<Deployment>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_deployments(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<Deployment>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 1).map_err(bad_page)?;
    Ok(page(state.store.list_deployments(&pid, &req).await?))
}

/// Get one deployment.
#[utoipa::path(
    get, path = "/deployments/v1/{org}/{pid}/{name}", tag = "deployments",
    params(("org" = String, Path), ("pid" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_deployment(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, name)): ApiPath<(String, String, String)>,
) -> Result<axum::Json<Deployment>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    Ok(axum::Json(state.store.get_deployment(&pid, &name).await?))
}

/// Create or update (redeploy) a deployment: resolves `git_rev` to its latest commit and
/// reads meltano.yml there. 204 when nothing changed.
#[utoipa::path(
    post, path = "/deployments/v1/{org}/{pid}/{name}", tag = "deployments",
    params(("org" = String, Path), ("pid" = String, Path), ("name" = String, Path), DeployQuery),
    request_body = DeploymentRequest,
    responses(
        (status = 200, description = "Updated", body = Deployment),
        (status = 201, description = "Created", body = Deployment),
        (status = 204, description = "Nothing changed"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown environment or git rev, or invalid meltano.yml", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn deploy(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeployQuery>,
    ApiJson(body): ApiJson<DeploymentRequest>,
) -> Result<Response, ApiError> {
    let project = auth
        .project(&state, &org, &pid, Role::Maintainer, "deploy")
        .await?;
    if !is_slug(&name) {
        return Err(ApiError::unprocessable(format!(
            "invalid deployment name `{name}`: use lowercase letters, digits and dashes"
        )));
    }
    if body.environment_name.trim().is_empty() || body.git_rev.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "environment_name and git_rev must not be empty",
        ));
    }
    let force = q.force.unwrap_or(false);
    let preserve = q.preserve_git_hash.unwrap_or(false);
    let existing = state.store.find_deployment(&pid, &name).await?;
    let ssh_key = match state.store.secret_value(&pid, "GIT_SSH_PRIVATE_KEY").await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read GIT_SSH_PRIVATE_KEY");
            None
        }
    };
    let dir = state
        .git
        .repo_dir(
            &project.git_repository,
            ssh_key.as_deref().map(|s| s.as_str()),
        )
        .await?;
    let commit = match (&existing, preserve) {
        (Some(d), true) => d.git_rev_hash.clone(),
        _ => crate::gitrepo::resolve_in(&dir, &body.git_rev).await?,
    };
    let protected = body
        .protected
        .unwrap_or_else(|| existing.as_ref().is_some_and(|d| d.protected));
    if let Some(d) = &existing {
        if !force
            && d.protected == protected
            && d.environment_name == body.environment_name
            && d.git_rev == body.git_rev
            && d.git_rev_hash == commit
        {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let config =
        crate::gitrepo::read_meltano_config(&dir, &commit, &project.project_root_path).await?;
    if !config.environments.contains(&body.environment_name) {
        let known = if config.environments.is_empty() {
            "none is defined".to_string()
        } else {
            format!("defined: {}", config.environments.join(", "))
        };
        return Err(ApiError::unprocessable(format!(
            "environment `{}` is not defined in meltano.yml at commit {} ({known})",
            body.environment_name,
            &commit[..commit.len().min(12)]
        )));
    }
    let write = DeployWrite {
        deployment_name: name,
        environment_name: body.environment_name,
        git_rev: body.git_rev,
        git_rev_hash: commit,
        protected,
        schedules: config.schedules,
        jobs: config.jobs,
    };
    let (deployment, created) = state.store.upsert_deployment(&pid, &write).await?;
    tracing::info!(
        deployment = %deployment.deployment_name,
        commit = %deployment.git_rev_hash,
        created,
        "deployed"
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(deployment)).into_response())
}

/// Delete a deployment and its schedules.
///
/// A protected deployment answers 409 until a deploy request sets `protected` to false.
#[utoipa::path(
    delete, path = "/deployments/v1/{org}/{pid}/{name}", tag = "deployments",
    params(("org" = String, Path), ("pid" = String, Path), ("name" = String, Path)),
    responses(
        (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The deployment is protected", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_deployment(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, name)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "delete deployments")
        .await?;
    state.store.delete_deployment(&pid, &name).await?;
    tracing::info!(deployment = %name, "deployment deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- schedules

/// List the schedules of every deployment of a project.
#[utoipa::path(
    get, path = "/schedules/v1/{org}/{pid}", tag = "schedules",
    params(("org" = String, Path), ("pid" = String, Path), PageQuery),
    responses((status = 200, body = Page<Schedule>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<Schedule>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 2).map_err(bad_page)?;
    Ok(page(state.store.list_schedules(&pid, None, &req).await?))
}

/// List the schedules of one deployment.
#[utoipa::path(
    get, path = "/schedules/v1/{org}/{pid}/{deployment}", tag = "schedules",
    params(("org" = String, Path), ("pid" = String, Path), ("deployment" = String, Path), PageQuery),
    responses((status = 200, body = Page<Schedule>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_deployment_schedules(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, deployment)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<Schedule>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 2).map_err(bad_page)?;
    state.store.get_deployment(&pid, &deployment).await?;
    Ok(page(
        state
            .store
            .list_schedules(&pid, Some(&deployment), &req)
            .await?,
    ))
}

/// Get one schedule of a deployment.
#[utoipa::path(
    get, path = "/schedules/v1/{org}/{pid}/{deployment}/{schedule}", tag = "schedules",
    params(("org" = String, Path), ("pid" = String, Path), ("deployment" = String, Path), ("schedule" = String, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, deployment, schedule)): ApiPath<(String, String, String, String)>,
) -> Result<axum::Json<Schedule>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    Ok(axum::Json(
        state
            .store
            .get_schedule(&pid, &deployment, &schedule)
            .await?,
    ))
}

/// Enable or disable a schedule on a deployment: the body is a bare JSON `true` or `false`.
#[utoipa::path(
    put, path = "/schedules/v1/{org}/{pid}/{deployment}/{schedule}/enabled", tag = "schedules",
    params(("org" = String, Path), ("pid" = String, Path), ("deployment" = String, Path), ("schedule" = String, Path)),
    request_body = bool,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_enabled(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, deployment, schedule)): ApiPath<(String, String, String, String)>,
    ApiJson(enabled): ApiJson<bool>,
) -> Result<StatusCode, ApiError> {
    auth.project(
        &state,
        &org,
        &pid,
        Role::Maintainer,
        "enable or disable schedules",
    )
    .await?;
    let changed = state
        .store
        .set_schedule_enabled(&pid, &deployment, &schedule, enabled)
        .await?;
    if changed {
        tracing::info!(%deployment, %schedule, enabled, "schedule changed");
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- secrets

/// List secret names (values are write-only) with their fingerprints.
#[utoipa::path(
    get, path = "/secrets/v1/{org}/{pid}/", tag = "secrets",
    params(("org" = String, Path), ("pid" = String, Path), PageQuery),
    responses((status = 200, body = Page<SecretInfo>), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_secrets(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<SecretInfo>>, ApiError> {
    auth.project(&state, &org, &pid, Role::Reader, "read")
        .await?;
    let req = PageReq::parse(q.page_size, q.page_token.as_deref(), 1).map_err(bad_page)?;
    Ok(page(state.store.list_secrets(&pid, &req).await?))
}

/// Set a secret (encrypted at rest), with an optional opaque fingerprint.
#[utoipa::path(
    put, path = "/secrets/v1/{org}/{pid}/", tag = "secrets",
    params(("org" = String, Path), ("pid" = String, Path)),
    request_body = SetSecret,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_secret(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetSecret>,
) -> Result<StatusCode, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "set secrets")
        .await?;
    if crate::secrets::set_by_executor(&body.name) {
        return Err(ApiError::unprocessable(format!(
            "secret name `{}` is reserved: every run sets it itself, so the secret would never take effect; choose another name",
            body.name
        )));
    }
    state
        .store
        .set_secret(&pid, &body.name, &body.value, body.fingerprint.as_deref())
        .await?;
    tracing::info!(secret = %body.name, "secret set");
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a secret.
#[utoipa::path(
    delete, path = "/secrets/v1/{org}/{pid}/{name}", tag = "secrets",
    params(("org" = String, Path), ("pid" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete_secret(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((org, pid, name)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.project(&state, &org, &pid, Role::Maintainer, "delete secrets")
        .await?;
    state.store.delete_secret(&pid, &name).await?;
    tracing::info!(secret = %name, "secret deleted");
    Ok(StatusCode::NO_CONTENT)
}
