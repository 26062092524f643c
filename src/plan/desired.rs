//! The desired state: what cloud.yml (with meltano.yml and the sops metadata) asks for, plus
//! the commit each tracked git rev resolves to in the local repository.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Everything the planner needs from the user's files. Built outside the planner, which
/// does no I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub deployments: BTreeMap<String, DesiredDeployment>,
    pub secrets: BTreeMap<String, DesiredSecret>,
    /// Schedules defined in meltano.yml, by name: what a (re)deploy will create.
    pub meltano_schedules: BTreeMap<String, MeltanoSchedule>,
    pub prune_deployments: bool,
    pub prune_secrets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredDeployment {
    pub name: String,
    pub environment: String,
    pub git_rev: String,
    /// The commit `git_rev` resolves to locally; `None` when it could not be resolved.
    pub commit: Option<String>,
    /// Schedules to enable; every other schedule of the deployment is disabled.
    pub schedules: BTreeSet<String>,
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredSecret {
    pub name: String,
    /// The sops file as written in cloud.yml (relative to it).
    pub file: String,
    pub key_path: String,
    /// Fingerprint of the value's sops ciphertext.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeltanoSchedule {
    pub name: String,
    pub interval: String,
}

/// Secret names the planner never touches (the shared list).
pub use crate::secrets::RESERVED_SECRET_NAMES as RESERVED_SECRETS;

impl DesiredState {
    /// The desired state of a loaded cloud.yml, with `commits` mapping each tracked git_rev
    /// to the commit it resolves to (see [`super::git::resolve_revs`]).
    pub fn from_spec(
        spec: &crate::spec::LoadedSpec,
        commits: &BTreeMap<String, Option<String>>,
    ) -> DesiredState {
        let cloud = &spec.cloud;
        DesiredState {
            deployments: cloud
                .deployments
                .iter()
                .map(|(name, d)| {
                    (
                        name.clone(),
                        DesiredDeployment {
                            name: name.clone(),
                            environment: d.environment.clone(),
                            git_rev: d.git_rev.clone(),
                            commit: commits.get(&d.git_rev).cloned().flatten(),
                            schedules: d.schedules.iter().cloned().collect(),
                            protected: d.protected,
                        },
                    )
                })
                .collect(),
            secrets: spec
                .secrets
                .iter()
                .map(|(name, e)| {
                    (
                        name.clone(),
                        DesiredSecret {
                            name: name.clone(),
                            file: e.file.to_string_lossy().replace('\\', "/"),
                            key_path: e.key_path.clone(),
                            fingerprint: e.fingerprint.clone(),
                        },
                    )
                })
                .collect(),
            meltano_schedules: spec
                .meltano
                .schedules
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        MeltanoSchedule {
                            name: s.name.clone(),
                            interval: s.interval.clone(),
                        },
                    )
                })
                .collect(),
            prune_deployments: cloud.prune.deployments,
            prune_secrets: cloud.prune.secrets,
        }
    }
}
