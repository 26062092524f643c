//! Runs: run now, history, stop and logs (`/run/v1`, `/jobs/v1`, `/logs/v1`).

use axum::Router;

use crate::server::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

/// The OpenAPI description of these routes, merged into the server's document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}
