//! The planner: a pure function from the desired state and the control plane's snapshot to a
//! [`Plan`]. No I/O happens here, so every rule is tested as a table of cases.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::desired::{DesiredDeployment, DesiredState, RESERVED_SECRETS};
use super::model::*;
use crate::api::{DeploymentState, Schedule, SecretInfo, Snapshot};

/// Choices that change what is planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Allow a plan that deletes every deployment of the project.
    pub allow_destroy_all: bool,
    /// Plan the deletion of every object cloud.yml declares.
    pub destroy: bool,
    /// Only these addresses (and what they depend on); empty means everything.
    pub targets: Vec<String>,
}

/// A plan the planner refuses to make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error("this plan would delete every deployment of the project ({})", names.join(", "))]
    #[diagnostic(
        code(plan::destroy_all),
        help(
            "check `deployments:` and `prune:` in cloud.yml; if deleting them all is really intended, pass --allow-destroy-all"
        )
    )]
    DestroyAll { names: Vec<String> },

    #[error("deployment `{name}` is protected and cannot be deleted")]
    #[diagnostic(
        code(plan::protected),
        help(
            "remove `protected: true` from deployment `{name}` in cloud.yml and plan again if it must really go"
        )
    )]
    Protected { name: String },

    #[error("deployment `{name}` is protected on the control plane and cannot be deleted")]
    #[diagnostic(
        code(plan::protected_delete),
        help(
            "to delete it, declare it in cloud.yml with `protected: false` and apply first; then remove it (with `prune.deployments: true`) or plan with --destroy"
        )
    )]
    ProtectedDelete { name: String },
}

/// Order in which apply runs the groups of changes.
fn phase(c: &Change) -> u8 {
    match (c.kind, c.action) {
        (Kind::Secret, Action::Delete) => 4,
        (Kind::Secret, _) => 0,
        (Kind::Deployment, Action::Delete) => 3,
        (Kind::Deployment, _) => 1,
        (Kind::Schedule, _) => 2,
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// Diff `desired` against `actual`.
pub fn plan(
    desired: &DesiredState,
    actual: &Snapshot,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let mut changes = Vec::new();
    let mut notes = Vec::new();

    plan_secrets(desired, &actual.secrets, options, &mut changes, &mut notes);
    plan_deployments(
        desired,
        &actual.deployments,
        options,
        &mut changes,
        &mut notes,
    )?;

    changes.sort_by(|a, b| {
        phase(a)
            .cmp(&phase(b))
            .then_with(|| a.address.cmp(&b.address))
    });

    let mut plan = Plan { changes, notes };
    if !options.targets.is_empty() {
        apply_targets(&mut plan, &options.targets);
    }
    check_destroy_all(&plan, &actual.deployments, options)?;
    Ok(plan)
}

fn plan_secrets(
    desired: &DesiredState,
    remote: &[SecretInfo],
    options: &PlanOptions,
    changes: &mut Vec<Change>,
    notes: &mut Vec<Note>,
) {
    let remote_by_name: BTreeMap<&str, &SecretInfo> =
        remote.iter().map(|s| (s.name.as_str(), s)).collect();

    for (name, want) in &desired.secrets {
        let address = secret_address(name);
        let have = remote_by_name.get(name.as_str()).copied();
        if options.destroy {
            if let Some(have) = have {
                changes.push(secret_delete(
                    have,
                    "cloud.yml declares it and --destroy was given",
                ));
            }
            continue;
        }
        let source = format!("{}#{}", want.file, want.key_path);
        let after = attrs(&[
            ("name", json!(name)),
            ("source", json!(source)),
            ("value", Value::Null),
            ("fingerprint", json!(want.fingerprint)),
        ]);
        let operation = Operation::SetSecret {
            name: name.clone(),
            file: want.file.clone(),
            key_path: want.key_path.clone(),
            fingerprint: want.fingerprint.clone(),
        };
        let (action, before, reason) = match have {
            None => (
                Action::Create,
                None,
                Some(format!("declared in cloud.yml, value from {}", want.file)),
            ),
            Some(have) => {
                let mut before = attrs(&[("name", json!(name)), ("value", Value::Null)]);
                if let Some(fp) = &have.fingerprint {
                    before.insert("fingerprint".into(), json!(fp));
                }
                // The source is not stored remotely; show it as unchanged rather than new.
                before.insert("source".into(), json!(source));
                match &have.fingerprint {
                    Some(fp) if *fp == want.fingerprint => (Action::NoOp, Some(before), None),
                    Some(_) => (
                        Action::Update,
                        Some(before),
                        Some(format!("value changed in {}", want.file)),
                    ),
                    None => (
                        Action::Update,
                        Some(before),
                        Some("set by hand: no fingerprint".to_string()),
                    ),
                }
            }
        };
        changes.push(Change {
            address,
            kind: Kind::Secret,
            name: name.clone(),
            action,
            before,
            after: Some(after),
            sensitive: vec!["value".into()],
            unknown_after: vec![],
            reason,
            depends_on: vec![],
            operation: if action == Action::NoOp {
                Operation::None
            } else {
                operation
            },
        });
    }

    if options.destroy {
        return;
    }
    for have in remote {
        if desired.secrets.contains_key(&have.name) {
            continue;
        }
        if RESERVED_SECRETS.contains(&have.name.as_str()) {
            continue;
        }
        if desired.prune_secrets {
            changes.push(secret_delete(
                have,
                "not declared in cloud.yml and prune.secrets is on",
            ));
        } else {
            notes.push(Note {
                address: Some(secret_address(&have.name)),
                kind: "unmanaged".into(),
                message:
                    "not declared in cloud.yml; left alone (set `prune.secrets: true` to delete it)"
                        .into(),
            });
        }
    }
}

fn secret_delete(have: &SecretInfo, reason: &str) -> Change {
    let mut before = attrs(&[("name", json!(have.name)), ("value", Value::Null)]);
    if let Some(fp) = &have.fingerprint {
        before.insert("fingerprint".into(), json!(fp));
    }
    Change {
        address: secret_address(&have.name),
        kind: Kind::Secret,
        name: have.name.clone(),
        action: Action::Delete,
        before: Some(before),
        after: None,
        sensitive: vec!["value".into()],
        unknown_after: vec![],
        reason: Some(reason.to_string()),
        depends_on: vec![],
        operation: Operation::DeleteSecret {
            name: have.name.clone(),
        },
    }
}

fn deployment_attrs(d: &DeploymentState) -> Map<String, Value> {
    attrs(&[
        ("name", json!(d.deployment.deployment_name)),
        ("environment", json!(d.deployment.environment_name)),
        ("git_rev", json!(d.deployment.git_rev)),
        ("commit", json!(d.deployment.git_rev_hash)),
        ("protected", json!(d.deployment.protected)),
    ])
}

fn deployment_delete(have: &DeploymentState, reason: &str) -> Change {
    let name = &have.deployment.deployment_name;
    Change {
        address: deployment_address(name),
        kind: Kind::Deployment,
        name: name.clone(),
        action: Action::Delete,
        before: Some(deployment_attrs(have)),
        after: None,
        sensitive: vec![],
        unknown_after: vec![],
        reason: Some(reason.to_string()),
        depends_on: vec![],
        operation: Operation::DeleteDeployment { name: name.clone() },
    }
}

fn plan_deployments(
    desired: &DesiredState,
    remote: &[DeploymentState],
    options: &PlanOptions,
    changes: &mut Vec<Change>,
    notes: &mut Vec<Note>,
) -> Result<(), PlanError> {
    let remote_by_name: BTreeMap<&str, &DeploymentState> = remote
        .iter()
        .map(|d| (d.deployment.deployment_name.as_str(), d))
        .collect();

    for (name, want) in &desired.deployments {
        let have = remote_by_name.get(name.as_str()).copied();
        if options.destroy {
            if let Some(have) = have {
                if have.deployment.protected {
                    return Err(PlanError::ProtectedDelete { name: name.clone() });
                }
                if want.protected {
                    return Err(PlanError::Protected { name: name.clone() });
                }
                changes.push(deployment_delete(
                    have,
                    "cloud.yml declares it and --destroy was given",
                ));
            }
            continue;
        }
        let deploy = plan_one_deployment(want, have, notes);
        let redeploys = is_redeploy(&deploy);
        plan_schedules(desired, want, have, redeploys, changes, notes);
        changes.push(deploy);
    }

    if options.destroy {
        return Ok(());
    }
    for have in remote {
        let name = &have.deployment.deployment_name;
        if desired.deployments.contains_key(name) {
            continue;
        }
        if desired.prune_deployments {
            // The flag recorded remotely guards even once the entry left cloud.yml.
            if have.deployment.protected {
                return Err(PlanError::ProtectedDelete { name: name.clone() });
            }
            changes.push(deployment_delete(
                have,
                "not declared in cloud.yml and prune.deployments is on",
            ));
        } else {
            notes.push(Note {
                address: Some(deployment_address(name)),
                kind: "unmanaged".into(),
                message: "not declared in cloud.yml; left alone (set `prune.deployments: true` to delete it)".into(),
            });
        }
    }
    Ok(())
}

/// Whether a deployment change replaces its commit and schedule set (a change of only the
/// `protected` flag does not).
pub fn is_redeploy(c: &Change) -> bool {
    match c.action {
        Action::Create => true,
        Action::Update => c
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("redeploy:")),
        _ => false,
    }
}

fn plan_one_deployment(
    want: &DesiredDeployment,
    have: Option<&DeploymentState>,
    notes: &mut Vec<Note>,
) -> Change {
    let name = &want.name;
    let address = deployment_address(name);
    let commit = want
        .commit
        .as_ref()
        .map(|c| json!(c))
        .unwrap_or(Value::Null);
    let after = attrs(&[
        ("name", json!(name)),
        ("environment", json!(want.environment)),
        ("git_rev", json!(want.git_rev)),
        ("commit", commit),
        ("protected", json!(want.protected)),
    ]);
    let unknown_after = if want.commit.is_none() {
        vec!["commit".to_string()]
    } else {
        vec![]
    };
    if want.commit.is_none() {
        notes.push(Note {
            address: Some(address.clone()),
            kind: "unresolved-rev".into(),
            message: format!(
                "git_rev `{}` could not be resolved in the local repository, so a moved rev is not detected (fetch it, or track a commit sha)",
                want.git_rev
            ),
        });
    }
    let Some(have) = have else {
        return Change {
            address,
            kind: Kind::Deployment,
            name: name.clone(),
            action: Action::Create,
            before: None,
            after: Some(after),
            sensitive: vec![],
            unknown_after,
            reason: Some("declared in cloud.yml".into()),
            depends_on: vec![],
            operation: Operation::Deploy {
                name: name.clone(),
                environment: want.environment.clone(),
                git_rev: want.git_rev.clone(),
                force: false,
                protected: Some(want.protected),
            },
        };
    };

    let d = &have.deployment;
    let mut reasons = Vec::new();
    if d.environment_name != want.environment {
        reasons.push(format!(
            "environment changed from {} to {}",
            d.environment_name, want.environment
        ));
    }
    let rev_changed = d.git_rev != want.git_rev;
    if rev_changed {
        reasons.push(format!(
            "git_rev changed from {} to {}",
            d.git_rev, want.git_rev
        ));
    }
    let moved = match &want.commit {
        Some(c) => *c != d.git_rev_hash,
        None => false,
    };
    if moved && !rev_changed {
        reasons.push(format!(
            "tracked rev {} moved from {} to {}",
            want.git_rev,
            short(&d.git_rev_hash),
            short(want.commit.as_deref().unwrap_or_default())
        ));
    }
    // A flag-only change updates the deployment in place; it is not a redeploy.
    let redeploy = !reasons.is_empty();
    if d.protected != want.protected {
        reasons.push(format!(
            "protected changed from {} to {}",
            d.protected, want.protected
        ));
    }
    let before = deployment_attrs(have);
    if reasons.is_empty() {
        return Change {
            address,
            kind: Kind::Deployment,
            name: name.clone(),
            action: Action::NoOp,
            before: Some(before),
            after: Some(after),
            sensitive: vec![],
            unknown_after: vec![],
            reason: None,
            depends_on: vec![],
            operation: Operation::None,
        };
    }
    let only_moved = moved && !rev_changed && d.environment_name == want.environment;
    Change {
        address,
        kind: Kind::Deployment,
        name: name.clone(),
        action: Action::Update,
        before: Some(before),
        after: Some(after),
        sensitive: vec![],
        unknown_after,
        reason: Some(if redeploy {
            format!("redeploy: {}", reasons.join("; "))
        } else {
            reasons.join("; ")
        }),
        depends_on: vec![],
        operation: Operation::Deploy {
            name: name.clone(),
            environment: want.environment.clone(),
            git_rev: want.git_rev.clone(),
            force: only_moved,
            protected: Some(want.protected),
        },
    }
}

fn schedule_attrs(
    deployment: &str,
    name: &str,
    interval: &str,
    enabled: bool,
) -> Map<String, Value> {
    attrs(&[
        ("deployment", json!(deployment)),
        ("name", json!(name)),
        ("interval", json!(interval)),
        ("enabled", json!(enabled)),
    ])
}

fn plan_schedules(
    desired: &DesiredState,
    want: &DesiredDeployment,
    have: Option<&DeploymentState>,
    redeploys: bool,
    changes: &mut Vec<Change>,
    notes: &mut Vec<Note>,
) {
    let dep = &want.name;
    let dep_address = deployment_address(dep);
    let remote: BTreeMap<&str, &Schedule> = have
        .map(|h| {
            h.schedules
                .iter()
                .map(|s| (s.schedule_name.as_str(), s))
                .collect()
        })
        .unwrap_or_default();

    let enable_change = |name: &str,
                         interval: &str,
                         before: Option<&Schedule>,
                         enabled: bool,
                         reason: String,
                         depends: bool| {
        let before_attrs = before.map(|s| schedule_attrs(dep, name, &s.interval, s.enabled));
        let action = match (before, enabled) {
            (None, _) => Action::Create,
            (Some(s), e) if s.enabled == e => Action::NoOp,
            _ => Action::Update,
        };
        Change {
            address: schedule_address(dep, name),
            kind: Kind::Schedule,
            name: name.to_string(),
            action,
            before: before_attrs,
            after: Some(schedule_attrs(dep, name, interval, enabled)),
            sensitive: vec![],
            unknown_after: vec![],
            reason: if action == Action::NoOp {
                None
            } else {
                Some(reason)
            },
            depends_on: if depends && action != Action::NoOp {
                vec![dep_address.clone()]
            } else {
                vec![]
            },
            operation: if action == Action::NoOp {
                Operation::None
            } else {
                Operation::SetScheduleEnabled {
                    deployment: dep.clone(),
                    schedule: name.to_string(),
                    enabled,
                }
            },
        }
    };

    let why = |enabled: bool| {
        if enabled {
            "listed in cloud.yml".to_string()
        } else {
            "not listed in cloud.yml".to_string()
        }
    };

    if redeploys {
        // The redeploy replaces the schedule set with meltano.yml's, keeping the enabled flag
        // of schedules that still exist and adding new ones disabled.
        for (name, s) in &desired.meltano_schedules {
            let enabled = want.schedules.contains(name);
            match remote.get(name.as_str()) {
                None if enabled => changes.push(enable_change(
                    name,
                    &s.interval,
                    None,
                    true,
                    if have.is_some() {
                        format!("added in meltano.yml: the redeploy of {dep_address} creates it, then it is enabled")
                    } else {
                        format!("created by the deploy of {dep_address}, then enabled")
                    },
                    true,
                )),
                None => {}
                Some(current) => changes.push(enable_change(
                    name,
                    &s.interval,
                    Some(current),
                    enabled,
                    why(enabled),
                    true,
                )),
            }
        }
        for (name, current) in &remote {
            if desired.meltano_schedules.contains_key(*name) {
                continue;
            }
            changes.push(Change {
                address: schedule_address(dep, name),
                kind: Kind::Schedule,
                name: name.to_string(),
                action: Action::Delete,
                before: Some(schedule_attrs(
                    dep,
                    name,
                    &current.interval,
                    current.enabled,
                )),
                after: None,
                sensitive: vec![],
                unknown_after: vec![],
                reason: Some(format!(
                    "no longer in meltano.yml: the redeploy of {dep_address} removes it"
                )),
                depends_on: vec![dep_address.clone()],
                operation: Operation::None,
            });
        }
        for name in &want.schedules {
            if !desired.meltano_schedules.contains_key(name) {
                notes.push(Note {
                    address: Some(schedule_address(dep, name)),
                    kind: "missing-schedule".into(),
                    message: format!("listed for {dep_address} but meltano.yml does not define it"),
                });
            }
        }
    } else {
        for (name, current) in &remote {
            let enabled = want.schedules.contains(*name);
            changes.push(enable_change(
                name,
                &current.interval,
                Some(current),
                enabled,
                why(enabled),
                false,
            ));
        }
        let listed: BTreeSet<&str> = want.schedules.iter().map(String::as_str).collect();
        for name in listed {
            if !remote.contains_key(name) {
                notes.push(Note {
                    address: Some(schedule_address(dep, name)),
                    kind: "missing-schedule".into(),
                    message: format!(
                        "listed for {dep_address} but its deployed commit does not define it; commit the schedule to meltano.yml on `{}` so the next plan redeploys",
                        want.git_rev
                    ),
                });
            }
        }
    }
}

/// Keeps the targeted changes and the changes they depend on.
fn apply_targets(plan: &mut Plan, targets: &[String]) {
    let matches = |address: &str| {
        targets.iter().any(|t| {
            address == t
                || t.strip_prefix("deployment.").is_some_and(|dep| {
                    address
                        .strip_prefix("schedule.")
                        .and_then(|rest| rest.split_once('/'))
                        .is_some_and(|(d, _)| d == dep)
                })
        })
    };
    let mut keep: BTreeSet<String> = plan
        .changes
        .iter()
        .filter(|c| matches(&c.address))
        .map(|c| c.address.clone())
        .collect();
    let deps: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| keep.contains(&c.address))
        .flat_map(|c| c.depends_on.clone())
        .collect();
    keep.extend(deps);
    for t in targets {
        let hits = plan.changes.iter().any(|c| {
            c.address == *t
                || t.strip_prefix("deployment.")
                    .is_some_and(|dep| c.address.starts_with(&format!("schedule.{dep}/")))
        });
        if !hits {
            plan.notes.push(Note {
                address: Some(t.clone()),
                kind: "target".into(),
                message: "--target matches no object of this plan".into(),
            });
        }
    }
    plan.changes.retain(|c| keep.contains(&c.address));
    plan.notes
        .retain(|n| n.kind == "target" || n.address.as_ref().is_none_or(|a| keep.contains(a)));
}

fn check_destroy_all(
    plan: &Plan,
    remote: &[DeploymentState],
    options: &PlanOptions,
) -> Result<(), PlanError> {
    if options.allow_destroy_all || remote.is_empty() {
        return Ok(());
    }
    let deleted: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.kind == Kind::Deployment && c.action == Action::Delete)
        .map(|c| c.name.as_str())
        .collect();
    if remote
        .iter()
        .all(|d| deleted.contains(d.deployment.deployment_name.as_str()))
    {
        return Err(PlanError::DestroyAll {
            names: deleted.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
