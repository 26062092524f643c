//! Error answers (`{"detail": ...}`) and extractors whose rejections use them.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, LockConflict, LockInfo};
use crate::gitrepo::GitError;
use crate::store::StoreError;

/// A non-2xx answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Set for 409 answers to lock requests: who holds the lock.
    pub lock: Option<Box<LockInfo>>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            lock: None,
        }
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = match self.lock {
            Some(lock) => (
                self.status,
                axum::Json(LockConflict {
                    detail: self.detail,
                    lock: *lock,
                }),
            )
                .into_response(),
            None => (
                self.status,
                axum::Json(ErrorBody {
                    detail: self.detail,
                }),
            )
                .into_response(),
        };
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(d) => ApiError::not_found(d),
            StoreError::Conflict(d) => ApiError::new(StatusCode::CONFLICT, d),
            StoreError::Invalid(d) => ApiError::unprocessable(d),
            StoreError::LockHeld(lock) => ApiError {
                status: StatusCode::CONFLICT,
                detail: format!(
                    "the project is locked by {} for {} since {} (lock id {}, expires {})",
                    lock.holder, lock.operation, lock.acquired_at, lock.lock_id, lock.expires_at
                ),
                lock: Some(Box::new(lock)),
            },
            StoreError::Key(d) => {
                tracing::error!(error = %d, "server key problem");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, d)
            }
            StoreError::Connect(d) => {
                tracing::error!(error = %d, "database unreachable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the control plane's database is unavailable; retry later",
                )
            }
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the control plane's database is unavailable; retry later",
                )
            }
        }
    }
}

impl From<GitError> for ApiError {
    fn from(e: GitError) -> ApiError {
        match e {
            GitError::Io(io) => {
                tracing::error!(error = %io, "cannot run git");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot run git: {io}"),
                )
            }
            other => ApiError::unprocessable(other.to_string()),
        }
    }
}

/// `axum::Json` whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(ApiError::new(rej.status(), rej.body_text())),
        }
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(ApiError::bad_request(rej.body_text())),
        }
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rej) => Err(ApiError::new(rej.status(), rej.body_text())),
        }
    }
}
