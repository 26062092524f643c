//! Renderer checks on plans made by the real planner. The full outputs are pinned by the
//! trycmd cases under tests/cmd/plan/ (`show` of saved plans written here).

use std::collections::BTreeMap;

use super::*;
use crate::api::{Deployment, DeploymentState, Project, Schedule, SecretInfo, Snapshot};
use crate::plan::saved::{FORMAT, FORMAT_VERSION, SavedPlan, digest};
use crate::plan::{
    DesiredDeployment, DesiredSecret, DesiredState, MeltanoSchedule, Plan, PlanOptions, plan,
};

const OLD: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
const NEW: &str = "5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
const FP_OLD: &str =
    "sops-ct-sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const FP_NEW: &str =
    "sops-ct-sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";

fn remote(
    name: &str,
    env: &str,
    rev: &str,
    sha: &str,
    scheds: &[(&str, &str, bool)],
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
        schedules: scheds
            .iter()
            .map(|(s, interval, enabled)| Schedule {
                deployment_name: name.into(),
                schedule_name: (*s).into(),
                interval: (*interval).into(),
                enabled: *enabled,
                job_name: None,
            })
            .collect(),
    }
}

fn snapshot(deployments: Vec<DeploymentState>, secrets: Vec<SecretInfo>) -> Snapshot {
    Snapshot {
        project: Project {
            tenant_resource_key: "acme".into(),
            project_id: "01JD0000000000000000000000".into(),
            project_name: "jaffle-shop".into(),
            git_repository: "/srv/git/jaffle-shop".into(),
            project_root_path: ".".into(),
        },
        revision: 42,
        deployments,
        secrets,
        lock: None,
    }
}

fn dep(
    name: &str,
    env: &str,
    rev: &str,
    sha: &str,
    schedules: &[&str],
    protected: bool,
) -> (String, DesiredDeployment) {
    (
        name.into(),
        DesiredDeployment {
            name: name.into(),
            environment: env.into(),
            git_rev: rev.into(),
            commit: Some(sha.into()),
            schedules: schedules.iter().map(|s| s.to_string()).collect(),
            protected,
        },
    )
}

fn secret(name: &str, key: &str, fp: &str) -> (String, DesiredSecret) {
    (
        name.into(),
        DesiredSecret {
            name: name.into(),
            file: "secrets/prod.sops.yaml".into(),
            key_path: key.into(),
            fingerprint: fp.into(),
        },
    )
}

fn meltano(names: &[(&str, &str)]) -> BTreeMap<String, MeltanoSchedule> {
    names
        .iter()
        .map(|(n, i)| {
            (
                (*n).to_string(),
                MeltanoSchedule {
                    name: (*n).into(),
                    interval: (*i).into(),
                },
            )
        })
        .collect()
}

/// A plan with every kind of change: a moved rev, a new schedule enabled after the
/// redeploy, a schedule disabled, a new deployment, secrets created/updated/deleted and
/// an unmanaged deployment.
pub fn representative() -> (PlanContext, Plan) {
    let desired = DesiredState {
        deployments: [
            dep(
                "production",
                "prod",
                "main",
                NEW,
                &["daily-refresh", "hourly-sync"],
                true,
            ),
            dep("staging", "staging", "develop", OLD, &[], false),
        ]
        .into_iter()
        .collect(),
        secrets: [
            secret("TAP_GITLAB_PASSWORD", "tap_gitlab.password", FP_NEW),
            secret(
                "TARGET_SNOWFLAKE_PASSWORD",
                "TARGET_SNOWFLAKE_PASSWORD",
                FP_OLD,
            ),
            secret("TAP_GITHUB_TOKEN", "tap_github.token", FP_NEW),
        ]
        .into_iter()
        .collect(),
        meltano_schedules: meltano(&[
            ("daily-refresh", "0 6 * * *"),
            ("hourly-sync", "@hourly"),
            ("weekly-backfill", "@weekly"),
        ]),
        prune_deployments: false,
        prune_secrets: true,
    };
    let snap = snapshot(
        vec![
            remote(
                "production",
                "prod",
                "main",
                OLD,
                &[
                    ("daily-refresh", "0 6 * * *", true),
                    ("weekly-backfill", "@weekly", true),
                ],
            ),
            remote("legacy", "prod", "v0.9", OLD, &[]),
        ]
        .into_iter()
        .map(|mut d| {
            d.deployment.protected = d.deployment.deployment_name == "production";
            d
        })
        .collect(),
        vec![
            SecretInfo {
                name: "TAP_GITLAB_PASSWORD".into(),
                fingerprint: Some(FP_OLD.into()),
            },
            SecretInfo {
                name: "TARGET_SNOWFLAKE_PASSWORD".into(),
                fingerprint: Some(FP_OLD.into()),
            },
            SecretInfo {
                name: "TAP_GITHUB_TOKEN".into(),
                fingerprint: None,
            },
            SecretInfo {
                name: "OLD_API_KEY".into(),
                fingerprint: Some(FP_OLD.into()),
            },
        ],
    );
    let p = plan(&desired, &snap, &PlanOptions::default()).expect("plan");
    (context(&snap), p)
}

fn context(snap: &Snapshot) -> PlanContext {
    PlanContext {
        control_plane: "Control plane: https://cloud.example.com (org acme, project jaffle-shop)"
            .into(),
        api_url: "https://cloud.example.com".into(),
        org: "acme".into(),
        project_name: snap.project.project_name.clone(),
        project_id: snap.project.project_id.clone(),
        revision: snap.revision,
        targets: vec![],
    }
}

/// A plan creating `n` schedules' worth of changes.
pub fn large(n: usize) -> (PlanContext, Plan) {
    let names: Vec<String> = (0..n).map(|i| format!("schedule-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let intervals: Vec<(&str, &str)> = refs.iter().map(|n| (*n, "*/15 * * * *")).collect();
    let desired = DesiredState {
        deployments: [dep("production", "prod", "main", NEW, &refs, false)]
            .into_iter()
            .collect(),
        meltano_schedules: meltano(&intervals),
        ..Default::default()
    };
    let snap = snapshot(vec![], vec![]);
    let p = plan(&desired, &snap, &PlanOptions::default()).expect("plan");
    (context(&snap), p)
}

fn saved(ctx: &PlanContext, plan: &Plan) -> SavedPlan {
    SavedPlan {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        meltano_cloud_version: "0.1.0".into(),
        created_at: "2026-11-30T04:00:00Z".into(),
        control_plane: ctx.control_plane.clone(),
        api_url: ctx.api_url.clone(),
        org: ctx.org.clone(),
        project_id: ctx.project_id.clone(),
        project_name: ctx.project_name.clone(),
        revision: ctx.revision,
        inputs_digest: digest(&"fixture"),
        git_commit: Some(NEW.into()),
        targets: vec![],
        plan: plan.clone(),
    }
}

/// The trycmd cases read saved plans made from these fixtures; rewrite them with
/// `MELTANO_CLOUD_WRITE_FIXTURES=1 cargo test --lib render::plan`.
#[test]
fn fixtures_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd/plan/show.in");
    for (name, (ctx, plan)) in [
        ("representative.plan.json", representative()),
        ("no-changes.plan.json", {
            let (ctx, mut p) = representative();
            p.changes.retain(|c| !c.is_change());
            p.notes.clear();
            (ctx, p)
        }),
    ] {
        let path = dir.join(name);
        let mut want = serde_json::to_string_pretty(&saved(&ctx, &plan)).unwrap();
        want.push('\n');
        if std::env::var_os("MELTANO_CLOUD_WRITE_FIXTURES").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: rerun with MELTANO_CLOUD_WRITE_FIXTURES=1",
            path.display()
        );
    }
}

#[test]
fn text_shows_summary_legend_headers_and_hides_secrets() {
    let (ctx, p) = representative();
    let out = anstream::adapter::strip_str(&text::render(&ctx, &p)).to_string();
    assert!(
        out.contains("Plan: 2 to add, 4 to change, 1 to destroy."),
        "{out}"
    );
    assert!(out.contains("  # deployment.production will be updated in-place\n  # (redeploy: tracked rev main moved from 1a2b3c4 to 5d6e7f8)"), "{out}");
    assert!(
        out.contains("      ~ value       = (sensitive value)"),
        "{out}"
    );
    assert!(out.contains("unchanged attributes hidden"), "{out}");
    assert!(
        !out.contains("  ~ update in-place\n  ~"),
        "legend lists each symbol once"
    );
}

#[test]
fn json_is_versioned_and_has_no_secret_values() {
    let (ctx, p) = representative();
    let doc = json::document(&ctx, &p);
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(
        doc["control_plane"],
        serde_json::json!({"url": "https://cloud.example.com", "org": "acme", "project": "jaffle-shop"})
    );
    let changes = doc["changes"].as_array().unwrap();
    for c in changes {
        assert!(c["address"].is_string() && c["actions"].is_array());
        if c["type"] == "secret" {
            for side in ["before", "after"] {
                if let Some(o) = c[side].as_object() {
                    assert!(!o.contains_key("value"), "{c}");
                }
            }
            assert_eq!(c["sensitive_attributes"], serde_json::json!(["value"]));
        }
    }
}

#[test]
fn markdown_keeps_the_summary_and_fits_a_comment_with_2000_changes() {
    let (ctx, p) = large(2000);
    assert_eq!(p.summary().add, 2001);
    let md = markdown::render(&ctx, &p);
    assert!(
        md.chars().count() < markdown::GITHUB_COMMENT_LIMIT,
        "{}",
        md.len()
    );
    assert!(md.contains("**Plan: 2001 to add, 0 to change, 0 to destroy.**"));
    assert!(md.contains("The details were truncated to fit a comment"));
    assert!(md.contains("</details>"));
    // The kept part ends on a whole line and the code block is closed.
    assert_eq!(md.matches("```").count(), 2);

    let (ctx, p) = representative();
    let md = markdown::render(&ctx, &p);
    assert!(!md.contains("truncated"));
    assert!(md.starts_with("### meltano-cloud plan: `jaffle-shop`\n\n**Plan: 2 to add, 4 to change, 1 to destroy.**"), "{md}");
}

#[test]
fn markdown_within_a_tiny_budget_still_has_the_summary() {
    let (ctx, p) = large(50);
    let md = markdown::render_within(&ctx, &p, 2_000);
    assert!(md.contains("**Plan: 51 to add, 0 to change, 0 to destroy.**"));
    assert!(md.chars().count() < 2_400, "{}", md.chars().count());
}

#[test]
fn markdown_diff_lines_keep_the_text_alignment() {
    let (ctx, p) = representative();
    let md = markdown::render(&ctx, &p);
    let text = anstream::adapter::strip_str(&text::render(&ctx, &p)).to_string();
    assert!(
        text.contains("\n      ~ value       = (sensitive value)\n"),
        "{text}"
    );
    assert!(
        md.contains("\n!       value       = (sensitive value)\n"),
        "{md}"
    );
    assert!(
        md.contains("\n!   secret \"TAP_GITLAB_PASSWORD\" {\n"),
        "{md}"
    );
    assert!(
        md.contains("\n        name        = \"TAP_GITLAB_PASSWORD\"\n"),
        "{md}"
    );
}
