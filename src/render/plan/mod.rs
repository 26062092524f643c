//! Renderings of a plan: Terraform-style text for terminals, a versioned JSON document for
//! machines, and Markdown for pull-request comments.

pub mod json;
pub mod markdown;
pub mod text;

use serde::{Deserialize, Serialize};

/// Where a plan was made: shown above it in every format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanContext {
    /// The `Control plane: ...` line of the target.
    pub control_plane: String,
    /// The control plane's API URL (for machine-readable output).
    #[serde(default)]
    pub api_url: String,
    pub org: String,
    pub project_name: String,
    pub project_id: String,
    /// Project revision the plan was made against.
    pub revision: i64,
    /// `--target` addresses, when the plan was limited to them.
    pub targets: Vec<String>,
}

/// Output formats of `plan` and `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// One-line summary: `Plan: 1 to add, 2 to change, 0 to destroy.` or `No changes. ...`.
pub fn summary_line(plan: &crate::plan::Plan) -> String {
    if plan.has_changes() {
        let s = plan.summary();
        format!(
            "Plan: {} to add, {} to change, {} to destroy.",
            s.add, s.change, s.destroy
        )
    } else {
        "No changes. The control plane matches cloud.yml.".to_string()
    }
}

#[cfg(test)]
mod tests;
