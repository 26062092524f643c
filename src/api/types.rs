//! Wire types of the Meltano Cloud API v1 and of the GitOps extensions (`/gitops/v1`).
//!
//! The one definition of every request and response body; the server serializes them
//! and the client deserializes them, so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest page a list endpoint returns.
pub const MAX_PAGE_SIZE: u32 = 250;
/// Page size used when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    pub detail: String,
}

/// Paging query parameters accepted by every list endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct PageQuery {
    /// At most 250.
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Where the next page starts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Pagination {
    pub next_page_token: Option<String>,
    pub page_size: u32,
}

/// The envelope of every list answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Page<T> {
    pub results: Vec<T>,
    pub pagination: Option<Pagination>,
}

// ---------------------------------------------------------------- projects

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Project {
    /// The organization (tenant) the project belongs to.
    pub tenant_resource_key: String,
    /// Internal id (a ULID).
    pub project_id: String,
    pub project_name: String,
    /// Repository URL or local path.
    pub git_repository: String,
    /// Folder inside the repository that holds meltano.yml.
    pub project_root_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CreateProject {
    pub project_name: String,
    pub git_repository: String,
    #[serde(default)]
    pub project_root_path: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct ProjectQuery {
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

// ---------------------------------------------------------------- deployments

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Deployment {
    pub deployment_name: String,
    pub environment_name: String,
    /// The branch, tag or sha the deployment tracks.
    pub git_rev: String,
    /// The commit actually deployed.
    pub git_rev_hash: String,
    /// ISO 8601 UTC.
    pub last_deployed_timestamp: String,
    /// When true, `DELETE` answers 409 until a deploy request sets it to false
    /// (GitOps extension).
    #[serde(default)]
    pub protected: bool,
}

/// Body of `POST /deployments/v1/{org}/{pid}/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeploymentRequest {
    pub environment_name: String,
    pub git_rev: String,
    /// Sets or clears the deployment's protection; absent keeps the current value (false for
    /// a new deployment). GitOps extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct DeployQuery {
    /// Redeploy even when nothing changed.
    #[serde(default)]
    pub force: Option<bool>,
    /// Keep the deployed commit; only change the other fields.
    #[serde(default)]
    pub preserve_git_hash: Option<bool>,
}

// ---------------------------------------------------------------- schedules

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Schedule {
    pub deployment_name: String,
    pub schedule_name: String,
    /// Cron expression or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, `@once` (UTC).
    pub interval: String,
    pub enabled: bool,
    /// The job the schedule runs, when it runs a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
}

// ---------------------------------------------------------------- secrets

/// A secret as listed: values are write-only and never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SecretInfo {
    pub name: String,
    /// Opaque fingerprint stored by the client beside the value (GitOps extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// Body of `PUT /secrets/v1/{org}/{pid}/`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct SetSecret {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("name", &self.name)
            .field("value", &"(sensitive value)")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

// ---------------------------------------------------------------- executions

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Execution {
    /// 32 hex characters.
    pub execution_id: String,
    pub start_time: String,
    pub end_time: Option<String>,
    /// RUNNING, SUCCEEDED, FAILED, STOPPED, SKIPPED.
    pub status: String,
    pub exit_code: Option<i32>,
    pub deployment_name: String,
    pub schedule_name: Option<String>,
    pub job_name: Option<String>,
    /// Why it ended as it did, unless it plainly succeeded (e.g. `stopped by request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RunResponse {
    pub execution_id: String,
    pub deployment_name: String,
    pub job_or_schedule_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StopResponse {
    pub execution_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Glob pattern on the schedule name.
    pub schedule: Option<String>,
    /// Glob pattern on the deployment name.
    pub deployment: Option<String>,
    /// success, failed, running or stopped.
    pub result: Option<String>,
    /// Only executions started at or after this ISO 8601 time.
    pub start_time: Option<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LogLine {
    /// Milliseconds since the epoch when the line was written.
    pub timestamp: i64,
    /// Milliseconds since the epoch when the store received it.
    pub ingestion_time: i64,
    pub message: String,
}

// ---------------------------------------------------------------- GitOps extensions

/// Who the bearer token belongs to (`GET /gitops/v1/whoami`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WhoAmI {
    pub tenant_resource_key: String,
    pub role: Role,
    pub token_name: Option<String>,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Maintainer,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "maintainer" => Ok(Role::Maintainer),
            "owner" => Ok(Role::Owner),
            other => Err(format!(
                "unknown role `{other}`: expected owner, maintainer or reader"
            )),
        }
    }
}

/// One call's view of everything a plan needs (`GET /gitops/v1/{org}/{pid}/snapshot`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Snapshot {
    pub project: Project,
    /// Bumped by every mutation of the project; saved plans record it.
    pub revision: i64,
    pub deployments: Vec<DeploymentState>,
    pub secrets: Vec<SecretInfo>,
    pub lock: Option<LockInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeploymentState {
    #[serde(flatten)]
    pub deployment: Deployment,
    pub schedules: Vec<Schedule>,
}

/// Body of `POST /gitops/v1/{org}/{pid}/lock`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LockRequest {
    /// Chosen by the client so that a request whose answer was lost can be retried safely.
    pub lock_id: String,
    /// Who holds it, e.g. `alice@laptop` or `github-actions run 42`.
    pub holder: String,
    /// What it is held for, e.g. `apply`.
    pub operation: String,
    /// Seconds until the lock expires unless renewed.
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LockInfo {
    pub lock_id: String,
    pub holder: String,
    pub operation: String,
    /// ISO 8601 UTC.
    pub acquired_at: String,
    /// ISO 8601 UTC; an expired lock is free.
    pub expires_at: String,
}

/// 409 answer of a lock request while another holder has the lock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LockConflict {
    pub detail: String,
    pub lock: LockInfo,
}

/// Body of `PUT /gitops/v1/{org}/{pid}/lock/{lock_id}` (renewal).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LockRenewal {
    /// Seconds until the lock expires unless renewed.
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: u64,
}

/// One change of an apply, as recorded in the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditChange {
    pub address: String,
    pub action: String,
    /// applied, failed or skipped.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Body of `POST /gitops/v1/{org}/{pid}/audit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NewAuditRecord {
    pub actor: String,
    pub git_commit: Option<String>,
    pub plan_digest: String,
    pub changes: Vec<AuditChange>,
    /// succeeded, partial or failed.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditRecord {
    pub audit_id: String,
    /// ISO 8601 UTC.
    pub recorded_at: String,
    /// The token that wrote it.
    pub token_name: Option<String>,
    #[serde(flatten)]
    pub record: NewAuditRecord,
}

/// Body of `POST /gitops/v1/{org}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CreateToken {
    pub role: Role,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TokenInfo {
    pub token_id: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: String,
}

/// Answer of token creation: the only time the token itself is shown.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .field("token", &"(sensitive value)")
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Health {
    pub status: String,
    pub version: String,
}
