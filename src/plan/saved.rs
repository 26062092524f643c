//! Saved plan files (`plan -o FILE`, `apply FILE`, `show FILE`): the plan, the project
//! revision it was made against and digests of its inputs. Never any secret value: secret
//! changes carry only the sops file, key path and fingerprint.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::Plan;

/// Identifies the file type; checked on read.
pub const FORMAT: &str = "meltano-cloud-plan";
/// Bumped on incompatible changes of the file layout.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub format_version: u32,
    /// Version of meltano-cloud that wrote the file.
    pub meltano_cloud_version: String,
    /// ISO 8601 UTC.
    pub created_at: String,
    /// The control plane line printed when planning.
    pub control_plane: String,
    /// The control plane's API URL.
    #[serde(default)]
    pub api_url: String,
    pub org: String,
    pub project_id: String,
    pub project_name: String,
    /// The project revision the plan was made against; apply refuses the plan once it moved.
    pub revision: i64,
    /// `sha256:` digest of the desired state and the snapshot the plan was made from.
    pub inputs_digest: String,
    /// The local commit (HEAD) when planning, if in a git repository.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// `--target` addresses the plan was limited to.
    #[serde(default)]
    pub targets: Vec<String>,
    pub plan: Plan,
}

/// Why a saved plan cannot be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedPlanError {
    #[error("cannot read the saved plan {path}")]
    #[diagnostic(
        code(plan::saved::read),
        help("check the path given to `apply` or `show`")
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a meltano-cloud saved plan: {detail}")]
    #[diagnostic(
        code(plan::saved::format),
        help("make a saved plan with `meltano-cloud plan -o FILE`")
    )]
    Format { path: String, detail: String },
    #[error(
        "{path} is a saved plan of format version {found}; this meltano-cloud reads version {FORMAT_VERSION}"
    )]
    #[diagnostic(
        code(plan::saved::version),
        help("plan again with this version of meltano-cloud")
    )]
    Version { path: String, found: u32 },
    #[error("cannot write the saved plan {path}")]
    #[diagnostic(
        code(plan::saved::write),
        help("check that the folder exists and is writable")
    )]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// `sha256:<hex>` of a value's JSON form.
pub fn digest<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

impl SavedPlan {
    pub fn plan_digest(&self) -> String {
        digest(&self.plan)
    }

    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        std::fs::write(path, text).map_err(|source| SavedPlanError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SavedPlanError::Read {
            path: shown.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| SavedPlanError::Format {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(SavedPlanError::Format {
                path: shown,
                detail: format!("no `\"format\": \"{FORMAT}\"` field"),
            });
        }
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(SavedPlanError::Version { path: shown, found });
        }
        serde_json::from_value(value).map_err(|e| SavedPlanError::Format {
            path: shown,
            detail: e.to_string(),
        })
    }
}
