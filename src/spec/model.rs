//! The typed model of `cloud.yml`, version 1. The JSON Schema in `schema/cloud.schema.json`
//! is generated from these types (`meltano-cloud schema`); every field's doc comment is its
//! description there, and shows on hover in editors using the YAML language server.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of deployment names: lowercase letters, digits and dashes, starting and ending with
/// a letter or digit (at most 63 characters, checked separately).
pub const DEPLOYMENT_NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";
/// Pattern of secret names: environment-variable names.
pub const SECRET_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Longest deployment name (a DNS label).
pub const MAX_DEPLOYMENT_NAME: usize = 63;

/// A Meltano project's cloud setup: its deployments, the schedules enabled on each, and the
/// secrets its runs need. Checked by `meltano-cloud validate`; applied by `meltano-cloud plan`
/// and `meltano-cloud apply`. Top-level keys starting with `x-` are ignored, so they can
/// hold YAML anchors shared by several entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "meltano-cloud cloud.yml",
    example = example_cloud_file(),
    extend(
        "$id" = "https://github.com/meltano-cloud/meltano-cloud/raw/main/schema/cloud.schema.json",
        "patternProperties" = {
            "^x-": {
                "title": "Extension field",
                "description": "Ignored by meltano-cloud: a place for YAML anchors shared by several entries, e.g. `x-defaults: &defaults {git_rev: main}` merged with `<<: *defaults`."
            }
        }
    )
)]
pub struct CloudFile {
    /// Format version of this file. Always `1`.
    #[schemars(title = "Format version", range(min = 1, max = 1), example = 1)]
    pub version: u32,
    /// Name of the control-plane project this file manages (as created with `meltano-cloud
    /// admin project create` or in Meltano Cloud).
    #[schemars(title = "Project", length(min = 1, max = 100), example = &"jaffle-shop")]
    pub project: String,
    /// Folder holding `meltano.yml`, relative to this file. Defaults to this file's folder.
    #[serde(default = "default_meltano_project")]
    #[schemars(title = "Meltano project folder", length(min = 1), example = &".", example = &"meltano")]
    pub meltano_project: String,
    /// Deployments by name. A name is lowercase letters, digits and dashes (at most 63
    /// characters). Each deployment runs one Meltano environment at one git revision.
    #[serde(default)]
    #[schemars(
        title = "Deployments",
        example = example_deployments(),
        extend("propertyNames" = {"pattern": DEPLOYMENT_NAME_PATTERN, "maxLength": MAX_DEPLOYMENT_NAME})
    )]
    pub deployments: BTreeMap<String, DeploymentSpec>,
    /// Project-wide secrets by environment-variable name, each a reference to one value in a
    /// sops-encrypted file. Runs of every deployment get them as environment variables.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(
        with = "Option<BTreeMap<String, SecretRef>>",
        title = "Secrets",
        example = example_secrets(),
        extend("propertyNames" = {"pattern": SECRET_NAME_PATTERN})
    )]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Which remote objects that this file does not declare are deleted by `apply`. Off by
    /// default: undeclared objects are only reported.
    #[serde(default)]
    #[schemars(title = "Prune", example = Prune { deployments: true, secrets: false })]
    pub prune: Prune,
}

/// Accepts `null` (a key whose entries are all commented out) as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub fn default_meltano_project() -> String {
    ".".to_string()
}

/// One deployment: a Meltano environment tracking a git revision, with the schedules
/// enabled on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Deployment", example = example_deployment())]
pub struct DeploymentSpec {
    /// Meltano environment the deployment runs in; must be one of the `environments` in
    /// meltano.yml.
    #[schemars(title = "Environment", length(min = 1), example = &"prod")]
    pub environment: String,
    /// Branch, tag or commit the deployment tracks. Apply redeploys when it moves.
    #[schemars(title = "Git revision", length(min = 1), example = &"main", example = &"v1.4.0")]
    pub git_rev: String,
    /// Names of the meltano.yml schedules enabled on this deployment; every other schedule
    /// is disabled on it. Empty (or left with only comments) enables none.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schemars(
        with = "Option<Vec<String>>",
        title = "Enabled schedules",
        example = vec!["daily-refresh", "hourly-sync"],
        extend("uniqueItems" = true)
    )]
    pub schedules: Vec<String>,
    /// When true, `apply` never deletes this deployment, even under `prune.deployments`.
    #[serde(default)]
    #[schemars(title = "Protected", example = true)]
    pub protected: bool,
}

/// A reference to one value in a sops-encrypted file. Only the key names are read by
/// `validate` and `plan`; `apply` decrypts with the keys in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Secret reference", example = example_secret())]
pub struct SecretRef {
    /// Path of the sops-encrypted file (YAML, JSON or dotenv), relative to cloud.yml.
    #[schemars(title = "sops file", length(min = 1), example = &"secrets/prod.sops.yaml")]
    pub sops: String,
    /// Path of the value inside the file: dotted (`tap_gitlab.password`) or a JSON pointer
    /// (`/tap_gitlab/password`, needed when a key contains a dot). Defaults to the secret's
    /// name.
    #[serde(default)]
    #[schemars(
        title = "Key path",
        length(min = 1),
        example = &"tap_gitlab.password",
        example = &"/tap_gitlab/password"
    )]
    pub key: Option<String>,
}

/// Opt-in deletion of remote objects that this file does not declare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Prune", example = Prune::default())]
pub struct Prune {
    /// Delete deployments that are not declared (never protected ones).
    #[serde(default)]
    #[schemars(title = "Prune deployments", example = false)]
    pub deployments: bool,
    /// Delete secrets that are not declared.
    #[serde(default)]
    #[schemars(title = "Prune secrets", example = false)]
    pub secrets: bool,
}

fn example_deployment() -> DeploymentSpec {
    DeploymentSpec {
        environment: "prod".into(),
        git_rev: "main".into(),
        schedules: vec!["daily-refresh".into()],
        protected: true,
    }
}

fn example_deployments() -> BTreeMap<String, DeploymentSpec> {
    BTreeMap::from([("production".to_string(), example_deployment())])
}

fn example_secret() -> SecretRef {
    SecretRef {
        sops: "secrets/prod.sops.yaml".into(),
        key: Some("tap_gitlab.password".into()),
    }
}

fn example_secrets() -> BTreeMap<String, SecretRef> {
    BTreeMap::from([("TAP_GITLAB_PASSWORD".to_string(), example_secret())])
}

fn example_cloud_file() -> CloudFile {
    CloudFile {
        version: 1,
        project: "jaffle-shop".into(),
        meltano_project: ".".into(),
        deployments: example_deployments(),
        secrets: example_secrets(),
        prune: Prune::default(),
    }
}
