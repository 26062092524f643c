//! Plan latency against a large project over a slow network.
//!
//! Starts a real `meltano-cloud server` on 127.0.0.1 with `--simulate-latency`, seeds a
//! project of 200 deployments x 20 schedules x 100 secrets (`admin seed`), then runs the
//! plan path a command runs (connect and resolve the project, fetch the snapshot, diff)
//! and reports the HTTP requests made and the wall time as a multiple of one round trip.
//!
//! `cargo bench --bench plan_latency [-- LATENCY_MS [DEPLOYMENTS SCHEDULES SECRETS]]`
//! (defaults: 50 ms; 200 20 100). Target: at most 3 round trips.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use meltano_cloud::cli::{ColorChoice, GlobalArgs};
use meltano_cloud::plan::{
    DesiredDeployment, DesiredSecret, DesiredState, MeltanoSchedule, PlanOptions,
};
use support::{ServerOptions, Store, TestRepo, TestServer};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// What the seeded project looks like, declared: every deployment tracking main at the
/// seeded commit with its schedules disabled, every secret with its seeded fingerprint.
fn desired(deployments: usize, schedules: usize, secrets: usize) -> DesiredState {
    DesiredState {
        deployments: (0..deployments)
            .map(|d| {
                let name = format!("deploy-{d:04}");
                (
                    name.clone(),
                    DesiredDeployment {
                        name,
                        environment: "prod".into(),
                        git_rev: "main".into(),
                        commit: Some("0".repeat(40)),
                        schedules: Default::default(),
                        protected: false,
                    },
                )
            })
            .collect(),
        secrets: (0..secrets)
            .map(|k| {
                let name = format!("SECRET_{k:04}");
                (
                    name.clone(),
                    DesiredSecret {
                        name,
                        file: "secrets/prod.sops.yaml".into(),
                        key_path: format!("secret_{k:04}"),
                        fingerprint: format!("seed-{k}"),
                    },
                )
            })
            .collect(),
        meltano_schedules: (0..schedules)
            .map(|s| {
                let name = format!("schedule-{s:03}");
                (
                    name.clone(),
                    MeltanoSchedule {
                        name,
                        interval: "@daily".into(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        prune_deployments: false,
        prune_secrets: false,
    }
}

fn global(url: &str, token: &str, org: &str, config: PathBuf) -> GlobalArgs {
    GlobalArgs {
        chdir: None,
        file: PathBuf::from("cloud.yml"),
        color: ColorChoice::Never,
        quiet: true,
        verbose: 0,
        api_url: Some(url.to_string()),
        token: Some(token.to_string()),
        org: Some(org.to_string()),
        project: None,
        config_path: Some(config),
    }
}

fn main() {
    let latency_ms = arg(1, 50) as u64;
    let (deployments, schedules, secrets) = (arg(2, 200), arg(3, 20), arg(4, 100));

    let repo = TestRepo::new();
    let server = TestServer::start(
        Store::Sqlite,
        ServerOptions::new().args(["--simulate-latency", &format!("{latency_ms}ms")]),
    );
    let (org, _pid, token) = server.bootstrap(&repo);
    server.admin(&[
        "seed",
        "--org",
        &org,
        "--project",
        "jaffle-shop",
        "--deployments",
        &deployments.to_string(),
        "--schedules",
        &schedules.to_string(),
        "--secrets",
        &secrets.to_string(),
    ]);
    let home = tempfile::tempdir().expect("tempdir");
    let global = global(server.url(), &token, &org, home.path().join("config.json"));
    let state = desired(deployments, schedules, secrets);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // One round trip, measured on the same connection pool the plan uses.
        let target = meltano_cloud::cli::target::connect(&global, Some("jaffle-shop"))
            .await
            .expect("connect");
        let mut rtts = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            target.client.whoami().await.expect("whoami");
            rtts.push(t.elapsed());
        }
        rtts.sort();
        let rtt = rtts[rtts.len() / 2];

        let mut walls = Vec::new();
        let mut requests = 0;
        let mut changes = 0;
        let mut parts = Default::default();
        for _ in 0..5 {
            let t = Instant::now();
            let target = meltano_cloud::cli::target::connect(&global, Some("jaffle-shop"))
                .await
                .expect("connect");
            let connected = t.elapsed();
            let project = target.project().expect("project").clone();
            let snapshot = target
                .client
                .snapshot(&target.org, &project.project_id)
                .await
                .expect("snapshot");
            let fetched = t.elapsed();
            let plan = meltano_cloud::plan::plan(&state, &snapshot, &PlanOptions::default())
                .expect("plan");
            walls.push(t.elapsed());
            parts = (connected, fetched - connected, t.elapsed() - fetched);
            requests = target.client.requests_made();
            changes = plan.changes.len();
            assert!(!plan.has_changes(), "the declared state matches the seeded one");
        }
        walls.sort();
        let wall = walls[walls.len() / 2];
        let ratio = wall.as_secs_f64() / rtt.as_secs_f64();
        println!(
            "plan of {deployments} deployments x {schedules} schedules x {secrets} secrets ({changes} objects compared)"
        );
        println!("  simulated latency: {latency_ms} ms; one round trip (median of 5): {rtt:.1?}");
        println!("  HTTP requests per plan: {requests}");
        println!(
            "  wall time (median of 5): {wall:.1?} = {ratio:.2} round trips (target: <= 3)"
        );
        let (connect, fetch, diff) = parts;
        println!("  last run: connect {connect:.1?}, snapshot {fetch:.1?}, diff {diff:.1?}");
        if ratio > 3.0 {
            eprintln!("warning: above the 3 round-trip target");
        }
    });
}
