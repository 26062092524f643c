//! The OpenAPI 3.1 document of the server, generated from the route annotations.
//! Committed as `schema/openapi.json`; regenerate with
//! `meltano-cloud server --print-openapi > schema/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{gitops, runs, v1};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`mct_...`) of the organization"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meltano Cloud API",
        description = "The Meltano Cloud API v1 and the GitOps extensions served by `meltano-cloud server`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::health,
        v1::list_projects, v1::create_project,
        v1::list_deployments, v1::get_deployment, v1::deploy, v1::delete_deployment,
        v1::list_schedules, v1::list_deployment_schedules, v1::get_schedule, v1::set_enabled,
        v1::list_secrets, v1::set_secret, v1::delete_secret,
        gitops::whoami, gitops::snapshot,
        gitops::acquire_lock, gitops::get_lock, gitops::renew_lock, gitops::release_lock,
        gitops::append_audit, gitops::list_audit,
        gitops::create_token, gitops::list_tokens, gitops::revoke_token,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "projects"), (name = "deployments"), (name = "schedules"), (name = "secrets"),
        (name = "gitops", description = "Snapshot, lock and audit for plan/apply"),
        (name = "tokens"), (name = "health"),
    )
)]
struct ApiDoc;

/// The document, with the version of this build.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(runs::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn to_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
