//! `run`, `history`, `logs print --follow` and `job stop` against a real server that runs
//! jobs with a stand-in `meltano` (a shell script written by the test: it prints lines,
//! fails with exit code 3, or hangs until stopped).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{BIN, ServerOptions, Store, TestRepo, TestServer};

const MELTANO_YML: &str = r#"version: 1
default_environment: dev
environments:
- name: dev
- name: prod
jobs:
- name: ok
  tasks: [tap-a target-b]
- name: fail
  tasks: [tap-a target-b]
- name: hang
  tasks: [tap-a target-b]
schedules:
- name: nightly-ok
  interval: '@daily'
  job: ok
"#;

const STAND_IN: &str = r#"#!/usr/bin/env bash
set -u
case "${1:-}" in
  install) exit 0 ;;
  run) job="${2:-}" ;;
  schedule) job="${3:-}" ;;
  *) echo "unexpected arguments: $*" >&2; exit 64 ;;
esac
case "$job" in
  ok|nightly-ok) for i in 1 2 3; do echo "line $i"; sleep 0.3; done ;;
  fail) echo "something broke" >&2; exit 3 ;;
  hang) exec sleep 300 ;;
  *) echo "unknown job $job" >&2; exit 65 ;;
esac
"#;

struct Ctx {
    server: TestServer,
    token: String,
    config: tempfile::TempDir,
}

impl Ctx {
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("MELTANO_CLOUD_API_URL", self.server.url())
            .env("MELTANO_CLOUD_TOKEN", &self.token)
            .env("MELTANO_CLOUD_PROJECT", "jaffle-shop")
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.config.path().join("config.json"),
            )
            .env("NO_COLOR", "1")
            .env_remove("MELTANO_CLOUD_ORG")
            .env_remove("COLUMNS")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn history_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["history", "--format", "json", "--limit", "100"];
        all.extend_from_slice(args);
        serde_json::from_str::<serde_json::Value>(&self.ok(&all))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until the execution has the result label `label`.
    fn wait_for(&self, id: &str, label: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .history_json(&[])
                .into_iter()
                .find(|e| e["execution_id"] == id);
            if let Some(e) = &found {
                if e["result"] == label {
                    return e.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} never became {label}: {found:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run(&self, job: &str) -> String {
        let out = self.ok(&["run", job, "--deployment", "production"]);
        // "Started `ok` on deployment `production`: execution <id>."
        let id = out
            .trim()
            .trim_end_matches('.')
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 32, "{out}");
        id
    }
}

fn stand_in(dir: &Path) -> String {
    let path = dir.join("meltano");
    std::fs::write(&path, STAND_IN).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path.display().to_string()
}

#[test]
fn run_history_logs_and_stop() {
    let tools = tempfile::tempdir().unwrap();
    let meltano = stand_in(tools.path());
    let repo = TestRepo::with_meltano_yml(MELTANO_YML);
    let server = TestServer::start(
        Store::Sqlite,
        ServerOptions::new().args([
            "--meltano-bin",
            meltano.as_str(),
            "--stop-grace",
            "2s",
            "--no-scheduler",
        ]),
    );
    let (_org, _pid, token) = server.bootstrap(&repo);
    let ctx = Ctx {
        server,
        token,
        config: tempfile::tempdir().unwrap(),
    };
    ctx.ok(&[
        "deployment",
        "create",
        "--name",
        "production",
        "--environment",
        "prod",
        "--git-rev",
        "main",
    ]);

    // A run's logs, followed until it ends, arrive whole and in order.
    let ok_id = ctx.run("ok");
    let logs = ctx.ok(&["logs", "print", "--execution-id", &ok_id, "--follow"]);
    let lines: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, m)| m))
        .filter(|m| m.starts_with("line "))
        .collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3"], "{logs}");
    assert!(logs.lines().all(|l| l.starts_with("[20")), "{logs}");
    let e = ctx.wait_for(&ok_id, "Success");
    assert_eq!(e["job_name"], "ok");
    // Without --follow, the same lines once.
    let again = ctx.ok(&["logs", "print", "--execution-id", &ok_id]);
    assert_eq!(again.matches("line 2").count(), 1);

    // A failure shows its exit code.
    let fail_id = ctx.run("fail");
    ctx.wait_for(&fail_id, "Failed");
    let table = ctx.ok(&["history", "--result", "failed"]);
    assert!(
        table.contains(&fail_id) && table.contains("Failed (exit 3)"),
        "{table}"
    );
    assert!(!table.contains(&ok_id));

    // A stopped run shows as Stopped, not Failed.
    let hang_id = ctx.run("hang");
    ctx.wait_for(&hang_id, "Running");
    let out = ctx.ok(&["job", "stop", "--execution-id", &hang_id]);
    assert!(
        out.starts_with(&format!("Stopped execution {hang_id}")),
        "{out}"
    );
    let e = ctx.wait_for(&hang_id, "Stopped");
    assert_eq!(e["status"], "STOPPED");
    let table = ctx.ok(&["history"]);
    let row = table.lines().find(|l| l.contains(&hang_id)).unwrap();
    assert!(row.trim_end().ends_with("Stopped"), "{row}");

    // A schedule runs by name too, and the schedule filters find it.
    let sched_id = ctx.run("nightly-ok");
    ctx.wait_for(&sched_id, "Success");
    let by_exact = ctx.history_json(&["--schedule", "nightly-ok"]);
    assert_eq!(by_exact.len(), 1);
    assert_eq!(by_exact[0]["execution_id"], sched_id.as_str());
    assert_eq!(ctx.history_json(&["--schedule-prefix", "night"]).len(), 1);
    assert_eq!(ctx.history_json(&["--schedule-contains", "tly-o"]).len(), 1);
    assert_eq!(ctx.history_json(&["--schedule", "nightly"]).len(), 0);

    // Filters and limits.
    assert_eq!(ctx.history_json(&["--deployment-prefix", "prod"]).len(), 4);
    assert_eq!(
        ctx.history_json(&["--deployment-contains", "duct"]).len(),
        4
    );
    assert_eq!(ctx.history_json(&["--deployment", "prod"]).len(), 0);
    assert_eq!(ctx.history_json(&["--result", "stopped"]).len(), 1);
    assert_eq!(ctx.history_json(&["--lookback", "1h"]).len(), 4);
    let out = ctx.cli(&["history", "--limit", "2"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "header and two rows: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Showing the first 2 executions; more exist."),
        "{stderr}"
    );

    // Stopping a finished run is refused by the server with a diagnostic.
    let out = ctx.cli(&["job", "stop", "--execution-id", &ok_id]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api::"), "{stderr}");
}
