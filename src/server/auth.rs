//! Bearer-token authentication and the role rules.
//!
//! Readers may read (and so plan); maintainers may also change deployments, schedules,
//! secrets and locks, write audit records and run; owners may also create projects and
//! manage tokens. A token only ever sees its own organization: another organization's
//! objects answer 404, exactly as if they did not exist.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::api::{Project, Role};
use crate::store::Principal;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing credentials: send `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Authorization header: expected `Bearer <token>`")
            })?;
        if let Some(p) = state.ephemeral_tokens.get(&crate::store::hash_token(token)) {
            return Ok(Auth(p.clone()));
        }
        match state.store.authenticate(token).await? {
            Some(p) => {
                tracing::Span::current().record("org", p.org.as_str());
                Ok(Auth(p))
            }
            None => Err(ApiError::unauthorized("invalid or revoked token")),
        }
    }
}

impl Auth {
    /// 404 unless `org` is the token's organization.
    pub fn org(&self, org: &str) -> Result<(), ApiError> {
        if self.0.org == org {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "organization `{org}` not found"
            )))
        }
    }

    /// 403 unless the token's role is at least `need`.
    pub fn require(&self, need: Role, action: &str) -> Result<(), ApiError> {
        if self.0.role >= need {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {} token may not {action}; it needs the {} role",
                self.0.role.as_str(),
                need.as_str()
            )))
        }
    }

    /// The project `pid` of `org`, checking organization then role.
    pub async fn project(
        &self,
        state: &AppState,
        org: &str,
        pid: &str,
        need: Role,
        action: &str,
    ) -> Result<Project, ApiError> {
        self.org(org)?;
        self.require(need, action)?;
        Ok(state.store.get_project(org, pid).await?)
    }
}
