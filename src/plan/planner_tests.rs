//! The planner's table of cases: one per rule.

use super::*;
use crate::api::{Deployment, Project};
use crate::plan::desired::{DesiredSecret, MeltanoSchedule};

const OLD: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const NEW: &str = "5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";

fn remote_dep(
    name: &str,
    env: &str,
    rev: &str,
    sha: &str,
    schedules: &[(&str, bool)],
) -> DeploymentState {
    DeploymentState {
        deployment: Deployment {
            deployment_name: name.into(),
            environment_name: env.into(),
            git_rev: rev.into(),
            git_rev_hash: sha.into(),
            last_deployed_timestamp: "2026-01-01T00:00:00Z".into(),
            protected: false,
        },
        schedules: schedules
            .iter()
            .map(|(s, enabled)| Schedule {
                deployment_name: name.into(),
                schedule_name: (*s).into(),
                interval: "@daily".into(),
                enabled: *enabled,
                job_name: None,
            })
            .collect(),
    }
}

fn snapshot(deployments: Vec<DeploymentState>, secrets: &[(&str, Option<&str>)]) -> Snapshot {
    Snapshot {
        project: Project {
            tenant_resource_key: "acme".into(),
            project_id: "01J0000000000000000000000".into(),
            project_name: "jaffle-shop".into(),
            git_repository: "/repo".into(),
            project_root_path: ".".into(),
        },
        revision: 7,
        deployments,
        secrets: secrets
            .iter()
            .map(|(n, fp)| SecretInfo {
                name: (*n).into(),
                fingerprint: fp.map(str::to_string),
            })
            .collect(),
        lock: None,
    }
}

/// name, environment, git_rev, resolved commit, schedules to enable.
type DepRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a [&'a str]);

fn desired(deps: &[DepRow], meltano: &[&str]) -> DesiredState {
    DesiredState {
        deployments: deps
            .iter()
            .map(|(name, env, rev, sha, scheds)| {
                (
                    (*name).to_string(),
                    DesiredDeployment {
                        name: (*name).into(),
                        environment: (*env).into(),
                        git_rev: (*rev).into(),
                        commit: sha.map(str::to_string),
                        schedules: scheds.iter().map(|s| s.to_string()).collect(),
                        protected: false,
                    },
                )
            })
            .collect(),
        secrets: BTreeMap::new(),
        meltano_schedules: meltano
            .iter()
            .map(|s| {
                (
                    (*s).to_string(),
                    MeltanoSchedule {
                        name: (*s).into(),
                        interval: "@daily".into(),
                    },
                )
            })
            .collect(),
        prune_deployments: false,
        prune_secrets: false,
    }
}

fn with_secret(mut d: DesiredState, name: &str, fp: &str) -> DesiredState {
    d.secrets.insert(
        name.into(),
        DesiredSecret {
            name: name.into(),
            file: "secrets/prod.sops.yaml".into(),
            key_path: name.to_lowercase(),
            fingerprint: fp.into(),
        },
    );
    d
}

/// `address action` of every effective change, in order.
fn lines(plan: &Plan) -> Vec<String> {
    plan.effective()
        .map(|c| format!("{} {}", c.address, c.action.as_str()))
        .collect()
}

fn run(d: &DesiredState, s: &Snapshot) -> Plan {
    plan(d, s, &PlanOptions::default()).expect("plan")
}

#[test]
fn nothing_declared_nothing_remote_is_no_changes() {
    let p = run(&desired(&[], &[]), &snapshot(vec![], &[]));
    assert!(!p.has_changes());
    assert!(p.notes.is_empty());
    assert_eq!(p.summary(), Summary::default());
}

#[test]
fn missing_deployment_is_created_and_listed_schedules_enabled_after_it() {
    let d = desired(
        &[("production", "prod", "main", Some(NEW), &["daily"])],
        &["daily", "hourly"],
    );
    let p = run(&d, &snapshot(vec![], &[]));
    assert_eq!(
        lines(&p),
        [
            "deployment.production create",
            "schedule.production/daily create"
        ]
    );
    let sched = p.get("schedule.production/daily").unwrap();
    assert_eq!(sched.depends_on, ["deployment.production"]);
    assert_eq!(
        sched.operation,
        Operation::SetScheduleEnabled {
            deployment: "production".into(),
            schedule: "daily".into(),
            enabled: true
        }
    );
    assert_eq!(
        p.summary(),
        Summary {
            add: 2,
            change: 0,
            destroy: 0
        }
    );
}

#[test]
fn deployment_in_sync_is_no_op() {
    let d = desired(
        &[("production", "prod", "main", Some(OLD), &["daily"])],
        &["daily", "hourly"],
    );
    let s = snapshot(
        vec![remote_dep(
            "production",
            "prod",
            "main",
            OLD,
            &[("daily", true), ("hourly", false)],
        )],
        &[],
    );
    let p = run(&d, &s);
    assert!(!p.has_changes(), "{:?}", lines(&p));
    assert_eq!(p.changes.len(), 3, "no-ops are kept for JSON and apply");
}

#[test]
fn environment_change_is_an_update_with_reason() {
    let d = desired(&[("production", "prod", "main", Some(OLD), &[])], &[]);
    let s = snapshot(
        vec![remote_dep("production", "staging", "main", OLD, &[])],
        &[],
    );
    let p = run(&d, &s);
    let c = p.get("deployment.production").unwrap();
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.reason.as_deref(),
        Some("redeploy: environment changed from staging to prod")
    );
    assert!(matches!(
        c.operation,
        Operation::Deploy { force: false, .. }
    ));
}

#[test]
fn git_rev_change_is_an_update() {
    let d = desired(&[("production", "prod", "v2", Some(NEW), &[])], &[]);
    let s = snapshot(vec![remote_dep("production", "prod", "v1", OLD, &[])], &[]);
    let c = run(&d, &s).get("deployment.production").unwrap().clone();
    assert_eq!(
        c.reason.as_deref(),
        Some("redeploy: git_rev changed from v1 to v2")
    );
}

#[test]
fn moved_tracked_rev_is_a_forced_redeploy() {
    let d = desired(&[("production", "prod", "main", Some(NEW), &[])], &[]);
    let s = snapshot(
        vec![remote_dep("production", "prod", "main", OLD, &[])],
        &[],
    );
    let c = run(&d, &s).get("deployment.production").unwrap().clone();
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.reason.as_deref(),
        Some("redeploy: tracked rev main moved from 1a2b3c4 to 5d6e7f8")
    );
    assert!(matches!(c.operation, Operation::Deploy { force: true, .. }));
    assert_eq!(c.before.unwrap()["commit"], OLD);
    assert_eq!(c.after.unwrap()["commit"], NEW);
}

#[test]
fn unresolved_rev_is_a_note_not_a_change() {
    let d = desired(&[("production", "prod", "main", None, &[])], &[]);
    let s = snapshot(
        vec![remote_dep("production", "prod", "main", OLD, &[])],
        &[],
    );
    let p = run(&d, &s);
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, "unresolved-rev");
}

#[test]
fn schedule_added_in_meltano_yml_is_created_by_the_redeploy_then_enabled() {
    let d = desired(
        &[(
            "production",
            "prod",
            "main",
            Some(NEW),
            &["daily", "hourly"],
        )],
        &["daily", "hourly"],
    );
    let s = snapshot(
        vec![remote_dep(
            "production",
            "prod",
            "main",
            OLD,
            &[("daily", true)],
        )],
        &[],
    );
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        [
            "deployment.production update",
            "schedule.production/hourly create"
        ]
    );
    let c = p.get("schedule.production/hourly").unwrap();
    assert_eq!(c.depends_on, ["deployment.production"]);
    assert_eq!(
        c.reason.as_deref(),
        Some(
            "added in meltano.yml: the redeploy of deployment.production creates it, then it is enabled"
        )
    );
}

#[test]
fn new_unlisted_schedule_is_not_a_change() {
    let d = desired(
        &[("production", "prod", "main", Some(NEW), &[])],
        &["daily"],
    );
    let s = snapshot(
        vec![remote_dep("production", "prod", "main", OLD, &[])],
        &[],
    );
    assert_eq!(lines(&run(&d, &s)), ["deployment.production update"]);
}

#[test]
fn schedule_removed_from_meltano_yml_is_destroyed_by_the_redeploy() {
    let d = desired(&[("production", "prod", "main", Some(NEW), &[])], &[]);
    let s = snapshot(
        vec![remote_dep(
            "production",
            "prod",
            "main",
            OLD,
            &[("old", true)],
        )],
        &[],
    );
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        [
            "deployment.production update",
            "schedule.production/old delete"
        ]
    );
    assert_eq!(
        p.get("schedule.production/old").unwrap().operation,
        Operation::None
    );
}

#[test]
fn schedules_are_fully_managed_listed_enabled_others_disabled() {
    let d = desired(
        &[("production", "prod", "main", Some(OLD), &["a"])],
        &["a", "b"],
    );
    let s = snapshot(
        vec![remote_dep(
            "production",
            "prod",
            "main",
            OLD,
            &[("a", false), ("b", true)],
        )],
        &[],
    );
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        [
            "schedule.production/a update",
            "schedule.production/b update"
        ]
    );
    assert_eq!(
        p.get("schedule.production/a").unwrap().reason.as_deref(),
        Some("listed in cloud.yml")
    );
    assert_eq!(
        p.get("schedule.production/b").unwrap().reason.as_deref(),
        Some("not listed in cloud.yml")
    );
    assert!(
        p.get("schedule.production/a")
            .unwrap()
            .depends_on
            .is_empty()
    );
}

#[test]
fn listed_schedule_missing_from_deployed_commit_is_a_note() {
    let d = desired(
        &[("production", "prod", "main", Some(OLD), &["new"])],
        &["new"],
    );
    let s = snapshot(
        vec![remote_dep("production", "prod", "main", OLD, &[])],
        &[],
    );
    let p = run(&d, &s);
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].kind, "missing-schedule");
    assert_eq!(
        p.notes[0].address.as_deref(),
        Some("schedule.production/new")
    );
}

#[test]
fn secret_rules() {
    let d = with_secret(
        with_secret(
            with_secret(
                with_secret(desired(&[], &[]), "NEW_ONE", "fp1"),
                "SAME",
                "fp2",
            ),
            "CHANGED",
            "fp3",
        ),
        "BY_HAND",
        "fp4",
    );
    let s = snapshot(
        vec![],
        &[
            ("SAME", Some("fp2")),
            ("CHANGED", Some("old")),
            ("BY_HAND", None),
        ],
    );
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        [
            "secret.BY_HAND update",
            "secret.CHANGED update",
            "secret.NEW_ONE create"
        ]
    );
    assert_eq!(p.get("secret.SAME").unwrap().action, Action::NoOp);
    assert_eq!(
        p.get("secret.BY_HAND").unwrap().reason.as_deref(),
        Some("set by hand: no fingerprint")
    );
    assert_eq!(
        p.get("secret.CHANGED").unwrap().reason.as_deref(),
        Some("value changed in secrets/prod.sops.yaml")
    );
    for c in &p.changes {
        assert_eq!(c.sensitive, ["value"]);
        assert_eq!(c.after.as_ref().unwrap()["value"], Value::Null);
    }
}

#[test]
fn undeclared_secret_is_a_note_unless_pruned_and_reserved_is_never_pruned() {
    let s = snapshot(vec![], &[("EXTRA", None), ("GIT_SSH_PRIVATE_KEY", None)]);
    let p = run(&desired(&[], &[]), &s);
    assert!(!p.has_changes());
    assert_eq!(p.notes.len(), 1);
    assert_eq!(p.notes[0].address.as_deref(), Some("secret.EXTRA"));
    assert_eq!(p.notes[0].kind, "unmanaged");

    let mut d = desired(&[], &[]);
    d.prune_secrets = true;
    let p = run(&d, &s);
    assert_eq!(lines(&p), ["secret.EXTRA delete"]);
}

#[test]
fn undeclared_deployment_is_a_note_unless_pruned() {
    let s = snapshot(
        vec![
            remote_dep("production", "prod", "main", OLD, &[]),
            remote_dep("legacy", "prod", "main", OLD, &[("x", true)]),
        ],
        &[],
    );
    let mut d = desired(&[("production", "prod", "main", Some(OLD), &[])], &[]);
    let p = run(&d, &s);
    assert!(!p.has_changes());
    assert_eq!(p.notes[0].address.as_deref(), Some("deployment.legacy"));

    d.prune_deployments = true;
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        ["deployment.legacy delete"],
        "its schedules go with it"
    );
}

#[test]
fn deleting_every_deployment_needs_allow_destroy_all() {
    let s = snapshot(
        vec![
            remote_dep("a", "prod", "main", OLD, &[]),
            remote_dep("b", "prod", "main", OLD, &[]),
        ],
        &[],
    );
    let mut d = desired(&[], &[]);
    d.prune_deployments = true;
    let err = plan(&d, &s, &PlanOptions::default()).unwrap_err();
    assert_eq!(
        err,
        PlanError::DestroyAll {
            names: vec!["a".into(), "b".into()]
        }
    );
    let p = plan(
        &d,
        &s,
        &PlanOptions {
            allow_destroy_all: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.summary().destroy, 2);
}

#[test]
fn destroy_deletes_declared_objects_and_refuses_protected_ones() {
    let s = snapshot(
        vec![
            remote_dep("a", "prod", "main", OLD, &[]),
            remote_dep("keep", "prod", "main", OLD, &[]),
        ],
        &[("S", Some("fp"))],
    );
    let d = with_secret(
        desired(&[("a", "prod", "main", Some(OLD), &[])], &[]),
        "S",
        "fp",
    );
    let opts = PlanOptions {
        destroy: true,
        ..Default::default()
    };
    let p = plan(&d, &s, &opts).unwrap();
    assert_eq!(lines(&p), ["deployment.a delete", "secret.S delete"]);

    let mut d = d;
    d.deployments.get_mut("a").unwrap().protected = true;
    assert_eq!(
        plan(&d, &s, &opts).unwrap_err(),
        PlanError::Protected { name: "a".into() }
    );
}

#[test]
fn changes_are_ordered_secrets_deployments_schedules_deletes() {
    let s = snapshot(
        vec![
            remote_dep("old", "prod", "main", OLD, &[]),
            remote_dep("production", "prod", "main", OLD, &[("daily", false)]),
        ],
        &[("GONE", None)],
    );
    let mut d = with_secret(
        desired(
            &[
                ("production", "prod", "main", Some(NEW), &["daily"]),
                ("staging", "staging", "develop", Some(NEW), &[]),
            ],
            &["daily"],
        ),
        "NEW",
        "fp",
    );
    d.prune_deployments = true;
    d.prune_secrets = true;
    let p = run(&d, &s);
    assert_eq!(
        lines(&p),
        [
            "secret.NEW create",
            "deployment.production update",
            "deployment.staging create",
            "schedule.production/daily update",
            "deployment.old delete",
            "secret.GONE delete",
        ]
    );
    assert_eq!(
        p.summary(),
        Summary {
            add: 2,
            change: 2,
            destroy: 2
        }
    );
}

#[test]
fn target_keeps_the_targeted_changes_and_their_dependencies() {
    let d = with_secret(
        desired(
            &[
                ("production", "prod", "main", Some(NEW), &["daily"]),
                ("staging", "staging", "develop", Some(NEW), &[]),
            ],
            &["daily"],
        ),
        "S",
        "fp",
    );
    let s = snapshot(vec![], &[]);
    let opts = PlanOptions {
        targets: vec!["schedule.production/daily".into()],
        ..Default::default()
    };
    let p = plan(&d, &s, &opts).unwrap();
    assert_eq!(
        lines(&p),
        [
            "deployment.production create",
            "schedule.production/daily create"
        ]
    );

    let opts = PlanOptions {
        targets: vec!["deployment.production".into()],
        ..Default::default()
    };
    let p = plan(&d, &s, &opts).unwrap();
    assert_eq!(
        lines(&p),
        [
            "deployment.production create",
            "schedule.production/daily create"
        ]
    );

    let opts = PlanOptions {
        targets: vec!["deployment.nope".into()],
        ..Default::default()
    };
    let p = plan(&d, &s, &opts).unwrap();
    assert!(!p.has_changes());
    assert_eq!(p.notes.last().unwrap().kind, "target");
}

#[test]
fn a_remotely_protected_deployment_is_never_planned_for_deletion() {
    let mut prod = remote_dep("production", "prod", "main", OLD, &[]);
    prod.deployment.protected = true;
    let s = snapshot(vec![prod, remote_dep("dev", "prod", "main", OLD, &[])], &[]);
    // The entry left cloud.yml and prune is on: the remote flag still guards it.
    let mut d = desired(&[("dev", "prod", "main", Some(OLD), &[])], &[]);
    d.prune_deployments = true;
    let err = plan(&d, &s, &PlanOptions::default()).unwrap_err();
    assert_eq!(
        err,
        PlanError::ProtectedDelete {
            name: "production".into()
        }
    );
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(
        help.contains("`protected: false` and apply first"),
        "{help}"
    );

    // --destroy with the entry declared unprotected but not yet applied.
    let d = desired(&[("production", "prod", "main", Some(OLD), &[])], &[]);
    let opts = PlanOptions {
        destroy: true,
        ..Default::default()
    };
    assert_eq!(
        plan(&d, &s, &opts).unwrap_err(),
        PlanError::ProtectedDelete {
            name: "production".into()
        }
    );
}

#[test]
fn a_changed_protected_flag_is_an_update_that_is_not_a_redeploy() {
    let s = snapshot(
        vec![remote_dep(
            "production",
            "prod",
            "main",
            OLD,
            &[("daily", true)],
        )],
        &[],
    );
    let mut d = desired(
        &[("production", "prod", "main", Some(OLD), &["daily"])],
        &["daily"],
    );
    d.deployments.get_mut("production").unwrap().protected = true;
    let p = run(&d, &s);
    assert_eq!(lines(&p), ["deployment.production update"]);
    let c = p.effective().next().unwrap();
    assert_eq!(
        c.reason.as_deref(),
        Some("protected changed from false to true")
    );
    assert_eq!(c.before.as_ref().unwrap()["protected"], false);
    assert_eq!(c.after.as_ref().unwrap()["protected"], true);
    assert!(matches!(
        c.operation,
        Operation::Deploy {
            force: false,
            protected: Some(true),
            ..
        }
    ));
    assert!(!crate::plan::planner::is_redeploy(c));

    // Once recorded, the same cloud.yml plans nothing.
    let mut s = s;
    s.deployments[0].deployment.protected = true;
    assert!(!run(&d, &s).has_changes());
}
