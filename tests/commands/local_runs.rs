//! `run`, `history`, `logs print` and `job stop` against the embedded local control plane
//! (MELTANO_CLOUD_API_URL=local): runs execute in the foreground of the `run` process with
//! a stand-in `meltano` (a shell script written by the test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, TestRepo};

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
"#;

/// Prints lines, fails with exit code 3, or waits with a child in its process group,
/// writing both pids beside itself.
const STAND_IN: &str = r#"#!/usr/bin/env bash
set -u
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  install) exit 0 ;;
  run) job="${2:-}" ;;
  *) echo "unexpected arguments: $*" >&2; exit 64 ;;
esac
case "$job" in
  ok) for i in 1 2 3; do echo "line $i"; sleep 0.2; done ;;
  fail) echo "something broke" >&2; exit 3 ;;
  hang)
    sleep 300 &
    echo "$!" > "$here/child.pid.tmp"
    mv "$here/child.pid.tmp" "$here/child.pid"
    echo "$$" > "$here/leader.pid"
    echo "waiting"
    wait
    ;;
  *) echo "unknown job $job" >&2; exit 65 ;;
esac
"#;

struct Ctx {
    repo: TestRepo,
    tools: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Ctx {
    fn new() -> Ctx {
        let tools = tempfile::tempdir().unwrap();
        let path = tools.path().join("meltano");
        std::fs::write(&path, STAND_IN).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ctx = Ctx {
            repo: TestRepo::with_meltano_yml(MELTANO_YML),
            tools,
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
        ctx
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.repo.path())
            .args(args)
            .env("MELTANO_CLOUD_API_URL", "local")
            .env(
                "MELTANO_CLOUD_MELTANO_BIN",
                self.tools.path().join("meltano"),
            )
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.config.path().join("c.json"),
            )
            .env("NO_COLOR", "1")
            .env_remove("MELTANO_CLOUD_TOKEN")
            .env_remove("MELTANO_CLOUD_PROJECT")
            .env_remove("MELTANO_CLOUD_ORG")
            .env_remove("COLUMNS");
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
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

    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["history", "--format", "json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.tools.path().join(name)
    }

    /// Starts `run hang` in the background and waits until the stand-in is waiting.
    fn start_hang(&self) -> Child {
        let _ = std::fs::remove_file(self.pid_file("child.pid"));
        let _ = std::fs::remove_file(self.pid_file("leader.pid"));
        let child = self
            .command(&[
                "run",
                "hang",
                "--deployment",
                "production",
                "--stop-grace",
                "2s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.pid_file("leader.pid").exists() {
            assert!(Instant::now() < deadline, "the hang job never started");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    fn pids(&self) -> Vec<i32> {
        ["leader.pid", "child.pid"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(self.pid_file(f))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the process did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_all(mut r: impl std::io::Read) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    s
}

fn log_messages(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, m)| m))
        .collect()
}

fn assert_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "processes of the run still alive: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn foreground_runs_history_logs_and_stops() {
    let ctx = Ctx::new();

    // A successful run streams its lines and exits 0.
    let out = ctx.cli(&["run", "ok", "--deployment", "production"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = log_messages(&stdout)
        .into_iter()
        .filter(|m| m.starts_with("line "))
        .collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3"], "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("[20")), "{stdout}");
    let first = stderr.lines().nth(1).unwrap_or_default();
    assert!(
        first.starts_with("Running `ok` on deployment `production` in the foreground: execution "),
        "{stderr}"
    );
    let ok_id = first
        .rsplit_once("execution ")
        .unwrap()
        .1
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(ok_id.len(), 32, "{stderr}");
    assert!(
        stderr.contains(&format!("Execution {ok_id} SUCCEEDED.")),
        "{stderr}"
    );

    // A failing run exits with meltano's exit code and says so.
    let out = ctx.cli(&["run", "fail", "--deployment", "production"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("something broke"), "{stdout}");
    assert!(stderr.contains("FAILED with exit code 3"), "{stderr}");

    // Both are in the history, and their logs stay readable.
    let history = ctx.history();
    let results: Vec<(&str, &str)> = history
        .iter()
        .map(|e| {
            (
                e["job_name"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [("fail", "Failed"), ("ok", "Success")],
        "{history:?}"
    );
    let logs = ctx.ok(&["logs", "print", "--execution-id", &ok_id]);
    assert_eq!(logs.matches("line 2").count(), 1, "{logs}");
    assert!(logs.contains("line 3"), "{logs}");

    // ctrl-c stops the run: its process group is killed, it is recorded STOPPED.
    let mut child = ctx.start_hang();
    let pids = ctx.pids();
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    // SAFETY: kill(2) on the pid of a child process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let stderr = read_all(child.stderr.take().unwrap());
    let stdout = read_all(child.stdout.take().unwrap());
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("waiting"), "{stdout}");
    assert!(stderr.contains("Stopping execution "), "{stderr}");
    assert!(stderr.contains(" STOPPED"), "{stderr}");
    assert_gone(&pids);
    let history = ctx.history();
    assert_eq!(history[0]["job_name"], "hang");
    assert_eq!(history[0]["status"], "STOPPED");
    assert_eq!(history[0]["result"], "Stopped");

    // `job stop` from another process stops a foreground run too.
    let mut child = ctx.start_hang();
    let pids = ctx.pids();
    let running = ctx.ok(&["history", "--result", "running", "--format", "json"]);
    let running: serde_json::Value = serde_json::from_str(&running).unwrap();
    let id = running[0]["execution_id"].as_str().unwrap().to_string();
    let out = ctx.ok(&["job", "stop", "--execution-id", &id]);
    assert_eq!(
        out.trim(),
        format!("Stopped execution {id}: stopped (status STOPPED)."),
    );
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let stderr = read_all(child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("Execution {id} STOPPED")),
        "{stderr}"
    );
    assert_gone(&pids);
    assert_eq!(ctx.history().len(), 4);
}

#[test]
fn a_missing_meltano_is_named_before_anything_runs() {
    let ctx = Ctx::new();
    let out = ctx.cli(&[
        "run",
        "ok",
        "--deployment",
        "production",
        "--meltano-bin",
        "/nonexistent/meltano",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot find the meltano executable `/nonexistent/meltano`"),
        "{stderr}"
    );
    assert!(ctx.history().is_empty());
    let _: &Path = ctx.repo.path();
}
