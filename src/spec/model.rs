//! The typed model of `cloud.yml`, version 1. The JSON Schema in `schema/cloud.schema.json`
//! is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Meltano project's cloud setup: its deployments, the schedules enabled on each, and the
/// secrets its runs need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudFile {
    /// Format version of this file. Always `1`.
    pub version: u32,
    /// Name of the control-plane project this file manages.
    pub project: String,
    /// Folder holding `meltano.yml`, relative to this file.
    #[serde(default = "default_meltano_project")]
    pub meltano_project: String,
    /// Deployments by name.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentSpec>,
    /// Project-wide secrets by environment-variable name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Which remote objects that this file does not declare are deleted.
    #[serde(default)]
    pub prune: Prune,
}

pub fn default_meltano_project() -> String {
    ".".to_string()
}

/// One deployment: a Meltano environment tracking a git revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Meltano environment the deployment runs in; must exist in meltano.yml.
    pub environment: String,
    /// Branch, tag or commit the deployment tracks.
    pub git_rev: String,
    /// Schedules enabled on this deployment; every other schedule is disabled.
    #[serde(default)]
    pub schedules: Vec<String>,
    /// When true, apply never deletes this deployment.
    #[serde(default)]
    pub protected: bool,
}

/// A reference to one value in a sops-encrypted file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Path of the sops-encrypted file, relative to cloud.yml.
    pub sops: String,
    /// Path of the value inside the file; defaults to the secret's name.
    #[serde(default)]
    pub key: Option<String>,
}

/// Opt-in deletion of remote objects that this file does not declare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// Delete deployments that are not declared (never protected ones).
    #[serde(default)]
    pub deployments: bool,
    /// Delete secrets that are not declared.
    #[serde(default)]
    pub secrets: bool,
}
