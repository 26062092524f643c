//! The apply engine against an in-memory control plane that can be told to fail.

use std::sync::Mutex;

use super::*;
use crate::plan::{Change, Kind, Note, Plan};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    fail: Vec<String>,
}

impl Recorder {
    fn call(&self, what: String) -> Result<(), String> {
        self.calls.lock().unwrap().push(what.clone());
        if self.fail.iter().any(|f| what.starts_with(f.as_str())) {
            Err(format!("{what} failed: 503 Service Unavailable"))
        } else {
            Ok(())
        }
    }
}

impl Effects for Recorder {
    async fn set_secret(&self, name: &str, value: &str, _fp: &str) -> Result<(), String> {
        assert_eq!(value, "s3cret");
        self.call(format!("set_secret {name}"))
    }
    async fn delete_secret(&self, name: &str) -> Result<(), String> {
        self.call(format!("delete_secret {name}"))
    }
    async fn deploy(
        &self,
        name: &str,
        _e: &str,
        _r: &str,
        _f: bool,
        _p: Option<bool>,
    ) -> Result<(), String> {
        self.call(format!("deploy {name}"))
    }
    async fn delete_deployment(&self, name: &str) -> Result<(), String> {
        self.call(format!("delete_deployment {name}"))
    }
    async fn set_schedule_enabled(&self, d: &str, s: &str, e: bool) -> Result<(), String> {
        self.call(format!("schedule {d}/{s} {e}"))
    }
}

fn change(address: &str, kind: Kind, action: Action, op: Operation, deps: &[&str]) -> Change {
    // As the planner words it: a deploy that updates is a redeploy.
    let reason = matches!(op, Operation::Deploy { .. }).then(|| "redeploy: rev moved".to_string());
    Change {
        address: address.into(),
        kind,
        name: address.rsplit('.').next().unwrap().into(),
        action,
        before: None,
        after: None,
        sensitive: vec![],
        unknown_after: vec![],
        reason,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        operation: op,
    }
}

fn sample() -> Plan {
    Plan {
        changes: vec![
            change(
                "secret.S",
                Kind::Secret,
                Action::Create,
                Operation::SetSecret {
                    name: "S".into(),
                    file: "f".into(),
                    key_path: "k".into(),
                    fingerprint: "fp".into(),
                },
                &[],
            ),
            change(
                "deployment.a",
                Kind::Deployment,
                Action::Update,
                Operation::Deploy {
                    name: "a".into(),
                    environment: "prod".into(),
                    git_rev: "main".into(),
                    force: true,
                    protected: Some(false),
                },
                &[],
            ),
            change(
                "deployment.b",
                Kind::Deployment,
                Action::Create,
                Operation::Deploy {
                    name: "b".into(),
                    environment: "prod".into(),
                    git_rev: "main".into(),
                    force: false,
                    protected: Some(false),
                },
                &[],
            ),
            change(
                "schedule.a/x",
                Kind::Schedule,
                Action::Create,
                Operation::SetScheduleEnabled {
                    deployment: "a".into(),
                    schedule: "x".into(),
                    enabled: true,
                },
                &["deployment.a"],
            ),
            change(
                "schedule.a/gone",
                Kind::Schedule,
                Action::Delete,
                Operation::None,
                &["deployment.a"],
            ),
            change(
                "schedule.b/y",
                Kind::Schedule,
                Action::Create,
                Operation::SetScheduleEnabled {
                    deployment: "b".into(),
                    schedule: "y".into(),
                    enabled: true,
                },
                &["deployment.b"],
            ),
            change(
                "deployment.old",
                Kind::Deployment,
                Action::Delete,
                Operation::DeleteDeployment { name: "old".into() },
                &[],
            ),
            change(
                "secret.OLD",
                Kind::Secret,
                Action::Delete,
                Operation::DeleteSecret { name: "OLD".into() },
                &[],
            ),
        ],
        notes: Vec::<Note>::new(),
    }
}

fn values() -> SecretValues {
    let mut v = SecretValues::new();
    v.insert("S".into(), Zeroizing::new("s3cret".to_string()));
    v
}

#[tokio::test]
async fn applies_everything_in_phase_order() {
    let rec = Recorder::default();
    let report = apply(&sample(), &rec, &values(), 4, &|_, _| {}).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.outcome(), "succeeded");
    let calls = rec.calls.lock().unwrap().clone();
    let pos = |s: &str| {
        calls
            .iter()
            .position(|c| c == s)
            .unwrap_or_else(|| panic!("{s} not in {calls:?}"))
    };
    assert!(pos("set_secret S") < pos("deploy a"));
    assert!(pos("deploy a") < pos("schedule a/x true"));
    assert!(pos("deploy b") < pos("schedule b/y true"));
    assert!(pos("schedule b/y true") < pos("delete_deployment old"));
    assert!(pos("delete_deployment old") < pos("delete_secret OLD"));
    assert_eq!(calls.len(), 7, "the removed schedule needs no call");
}

#[tokio::test]
async fn failure_skips_dependents_and_deletions_but_not_independent_work() {
    let rec = Recorder {
        fail: vec!["deploy a".into()],
        ..Default::default()
    };
    let lines = Mutex::new(Vec::new());
    let report = apply(&sample(), &rec, &values(), 4, &|c, o| {
        lines.lock().unwrap().push(progress_line(c, o))
    })
    .await;
    assert!(!report.succeeded());
    assert_eq!(report.outcome(), "partial");
    let outcome = |a: &str| {
        report
            .results
            .iter()
            .find(|r| r.address == a)
            .unwrap()
            .outcome
            .as_str()
    };
    assert_eq!(outcome("deployment.a"), "failed");
    assert_eq!(outcome("schedule.a/x"), "skipped");
    assert_eq!(outcome("schedule.a/gone"), "skipped");
    assert_eq!(outcome("deployment.b"), "applied");
    assert_eq!(outcome("schedule.b/y"), "applied");
    assert_eq!(outcome("deployment.old"), "skipped");
    assert_eq!(outcome("secret.OLD"), "skipped");
    let lines = lines.into_inner().unwrap();
    assert!(
        lines.contains(
            &"schedule.a/x: Not applied: depends on deployment.a, which was not applied"
                .to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("deployment.a: Redeploying... Failed (")
                && l.ends_with("deploy a failed: 503 Service Unavailable")),
        "{lines:#?}"
    );
}

#[test]
fn progress_line_shape() {
    let c = change(
        "deployment.production",
        Kind::Deployment,
        Action::Create,
        Operation::Deploy {
            name: "production".into(),
            environment: "prod".into(),
            git_rev: "main".into(),
            force: false,
            protected: Some(false),
        },
        &[],
    );
    assert_eq!(
        progress_line(
            &c,
            &Outcome::Applied {
                elapsed: Duration::from_millis(420)
            }
        ),
        "deployment.production: Creating... Created (0.4s)"
    );
}
