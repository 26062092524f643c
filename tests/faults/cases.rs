use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scale::{cloud_yml, meltano_yml};
use crate::support::{BIN, ServerOptions, Store, TestRepo, TestServer};

/// A project on a server, with a repository holding meltano.yml (`schedules` schedules
/// `schedule-NNN`, environment `prod`) and the CLI environment to drive it.
struct Env {
    server: TestServer,
    repo: TestRepo,
    org: String,
    pid: String,
    token: String,
    home: tempfile::TempDir,
}

impl Env {
    fn new(schedules: usize, server_args: &[&str]) -> Env {
        Env::on(Store::Sqlite, schedules, server_args)
    }

    fn on(store: Store, schedules: usize, server_args: &[&str]) -> Env {
        let repo = TestRepo::with_meltano_yml(&meltano_yml(schedules));
        let server = TestServer::start(
            store,
            ServerOptions::new().args(server_args.iter().copied()),
        );
        let (org, pid, token) = server.bootstrap(&repo);
        Env {
            server,
            repo,
            org,
            pid,
            token,
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Replaces the server by one on the same database with other flags.
    fn restart_with(&mut self, server_args: &[&str]) {
        self.server.kill();
        self.server = self
            .server
            .replica(ServerOptions::new().args(server_args.iter().copied()));
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.repo.path().join(rel), text).expect("write");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.repo.path())
            .env("MELTANO_CLOUD_API_URL", self.server.url())
            .env("MELTANO_CLOUD_TOKEN", &self.token)
            .env("MELTANO_CLOUD_ORG", &self.org)
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.home.path().join("config.json"),
            )
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("MELTANO_CLOUD_PROJECT")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run meltano-cloud")
    }

    fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let (stdout, stderr) = texts(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "meltano-cloud {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        stdout
    }

    /// GET over HTTP, repeated while the (faulty) server fails, as a careful client would.
    fn get(&self, path: &str) -> Value {
        let url = format!("{}{}", self.server.url(), path);
        for _ in 0..50 {
            let out = Command::new("curl")
                .args(["-sS", "-f", "-H"])
                .arg(format!("Authorization: Bearer {}", self.token))
                .arg(&url)
                .output()
                .expect("curl");
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).expect("JSON");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("GET {path} kept failing");
    }

    fn snapshot(&self) -> Value {
        self.get(&format!("/gitops/v1/{}/{}/snapshot", self.org, self.pid))
    }

    /// Audit records, newest first.
    fn audit(&self) -> Vec<Value> {
        let page = self.get(&format!(
            "/gitops/v1/{}/{}/audit?limit=100",
            self.org, self.pid
        ));
        page["results"]
            .as_array()
            .or_else(|| page.as_array())
            .cloned()
            .unwrap_or_else(|| panic!("audit page: {page}"))
    }

    /// Enabled schedules per deployment, as `deployment/schedule`.
    fn enabled(&self) -> Vec<String> {
        let snap = self.snapshot();
        let mut out = Vec::new();
        for d in snap["deployments"].as_array().expect("deployments") {
            for s in d["schedules"].as_array().expect("schedules") {
                if s["enabled"] == true {
                    out.push(format!(
                        "{}/{}",
                        d["deployment_name"].as_str().unwrap(),
                        s["schedule_name"].as_str().unwrap()
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// Server log lines of answered requests matching `method` and a path prefix.
    fn answered(&self, method: &str, path_prefix: &str, status_prefix: &str) -> usize {
        let m = format!("method={method} path={path_prefix}");
        let s = format!("status={status_prefix}");
        self.server
            .logs()
            .lines()
            .filter(|l| l.contains(&m) && l.contains(&s))
            .count()
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A diagnostic with miette's line wrapping undone.
fn flat(s: &str) -> String {
    s.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn all_enabled(deployments: usize, schedules: usize) -> Vec<String> {
    let mut v = Vec::new();
    for d in 0..deployments {
        for s in 0..schedules {
            v.push(format!("deploy-{d:04}/schedule-{s:03}"));
        }
    }
    v
}

#[test]
fn scale_benchmark_runs_at_smoke_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("scale.md");
    let f = crate::scale::run(&crate::scale::Config::smoke(out.clone()));
    let table = std::fs::read_to_string(&out).expect("the table is written");
    assert!(table.contains("| plan: HTTP requests |"), "{table}");
    assert!(table.contains("throughput ratio"), "{table}");
    assert!(f.plan_requests > 0, "the plan made requests: {f:?}");
    assert!(
        f.plan_rtts >= 1.0,
        "a plan costs at least one round trip: {f:?}"
    );
    assert!(f.plan_cpu > Duration::ZERO && f.plan_rss_kib > 0, "{f:?}");
    assert!(
        f.concurrent_per_s > f.sequential_per_s,
        "concurrent apply is faster than sequential: {f:?}"
    );
}

/// 20% of the calls apply makes fail (503, or the connection dropped after the server did
/// the work): apply retries and converges, every mutation happens once, the audit record
/// (a non-idempotent POST) is never written twice, and a re-run has nothing to do.
#[test]
fn apply_converges_on_a_flaky_network_without_double_applying() {
    const D: usize = 8;
    const S: usize = 6;
    let env = Env::new(
        S,
        &[
            "--simulate-faults",
            "/deployments/*=0.2,/schedules/*=0.2,/gitops/*=0.2",
        ],
    );
    env.write("cloud.yml", &cloud_yml("jaffle-shop", D, |_| S, 0));
    let revision_before = env.snapshot()["revision"].as_i64().expect("revision");

    let mut executed = 0;
    let mut converged = false;
    for attempt in 0..6 {
        let out = env.run(&["apply", "--auto-approve"]);
        let (stdout, stderr) = texts(&out);
        if stdout.contains("Apply complete!") || stderr.contains("Apply failed:") {
            executed += 1;
        }
        if out.status.success() {
            converged = true;
            break;
        }
        // A failure says exactly what: the changes that failed (with the call's error) or
        // the request that could not be made.
        assert_eq!(out.status.code(), Some(1), "attempt {attempt}: {stderr}");
        let all = flat(&format!("{stdout}\n{stderr}"));
        assert!(
            all.contains("Failed:") || all.contains("api::"),
            "attempt {attempt} does not say what failed:\n{stdout}\n{stderr}"
        );
    }
    assert!(converged, "apply did not converge in 6 attempts");
    let logs = env.server.logs();
    assert!(
        logs.contains("simulated fault: 503")
            && logs.contains("simulated fault: connection dropped"),
        "both kinds of fault were injected"
    );
    assert_eq!(env.enabled(), all_enabled(D, S));
    assert!(env.snapshot()["lock"].is_null(), "the lock is released");

    // Every change was performed exactly once, however often its call was retried: a
    // repeated deploy of the same commit and a repeated enable are no-ops (204 / no
    // revision bump), so the revision grew by exactly the number of planned changes.
    let deploys_performed = env
        .server
        .logs()
        .lines()
        .filter(|l| l.contains(" deployed") && l.contains("created="))
        .count();
    assert_eq!(deploys_performed, D, "each deployment deployed once");
    let revision = env.snapshot()["revision"].as_i64().expect("revision");
    assert_eq!(
        revision - revision_before,
        (D + D * S) as i64,
        "one revision per performed change"
    );

    // The audit POST is not retried after an unknown outcome: at most one record per
    // apply that ran, and exactly one per record request the server carried out.
    let records = env.audit();
    assert!(
        records.len() <= executed,
        "{} audit records for {executed} applies",
        records.len()
    );
    assert_eq!(
        records.len(),
        env.answered(
            "POST",
            &format!("/gitops/v1/{}/{}/audit", env.org, env.pid),
            "2"
        ),
        "one record per carried-out audit request"
    );

    // A re-run (still on the flaky network) has nothing to do.
    let mut clean = false;
    for _ in 0..3 {
        let out = env.run(&["plan", "--detailed-exitcode"]);
        if out.status.code() == Some(0) {
            assert!(texts(&out).0.contains("No changes."));
            clean = true;
            break;
        }
        assert_ne!(
            out.status.code(),
            Some(2),
            "the plan after convergence has changes: {}",
            texts(&out).0
        );
    }
    assert!(clean, "plan after convergence kept failing");
}

/// A route that always fails: apply reports exactly those changes as failed (the rest
/// applied), releases the lock, and a re-run on a healthy network converges.
#[test]
fn persistent_failures_are_reported_per_change_and_the_lock_released() {
    const D: usize = 3;
    const S: usize = 2;
    let mut env = Env::new(S, &[]);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", D, |_| 0, 0));
    env.expect(&["apply", "--auto-approve"], 0);

    let pid = env.pid.clone();
    env.restart_with(&[
        "--simulate-faults",
        &format!("PUT:/schedules/v1/*/{pid}/deploy-0001/*=1@503"),
    ]);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", D, |_| S, 0));
    let out = env.run(&["apply", "--auto-approve"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let stderr_flat = flat(&stderr);
    assert!(
        stderr_flat.contains("Apply failed: 2 change(s) failed, 0 not applied, 4 applied"),
        "{stderr}"
    );
    let failed: Vec<&str> = stdout
        .split("Failed:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Failed section:\n{stdout}"))
        .lines()
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(failed.len(), 2, "{stdout}");
    for (line, s) in failed.iter().zip(["schedule-000", "schedule-001"]) {
        assert!(
            line.contains(&format!("schedule.deploy-0001/{s}")) && line.contains("503"),
            "{line}"
        );
    }
    let mut expected = all_enabled(D, S);
    expected.retain(|a| !a.starts_with("deploy-0001/"));
    assert_eq!(env.enabled(), expected);
    assert!(
        env.snapshot()["lock"].is_null(),
        "the lock is released after a failed apply"
    );
    let records = env.audit();
    assert_eq!(records[0]["outcome"], "partial", "{:?}", records[0]);

    env.restart_with(&[]);
    env.expect(&["apply", "--auto-approve"], 0);
    assert_eq!(env.enabled(), all_enabled(D, S));
    let plan = env.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(plan.contains("No changes."), "{plan}");
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An apply killed mid-way leaves its lock: the next apply is refused naming it, and
/// force-unlock frees it. A lock nobody renews expires after its TTL.
#[test]
fn a_crashed_apply_leaves_a_lock_that_force_unlock_or_the_ttl_frees() {
    const D: usize = 4;
    const S: usize = 5;
    let env = Env::new(S, &["--simulate-latency", "150ms"]);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", D, |_| S, 0));
    let mut child: Child = env
        .command(&["apply", "--auto-approve", "--parallelism", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apply");
    wait_for("the first applied change", Duration::from_secs(60), || {
        env.snapshot()["deployments"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    });
    child.kill().expect("kill apply");
    let _ = child.wait();

    let snap = env.snapshot();
    let lock = snap["lock"].clone();
    assert!(lock.is_object(), "the killed apply's lock is left: {snap}");
    let lock_id = lock["lock_id"].as_str().expect("lock id").to_string();

    let out = env.run(&["apply", "--auto-approve"]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stderr = flat(&stderr);
    assert!(stderr.contains("apply::locked"), "{stderr}");
    assert!(stderr.contains(&lock_id), "names the lock: {stderr}");

    env.expect(&["force-unlock", "--yes", &lock_id], 0);
    env.expect(&["apply", "--auto-approve"], 0);
    assert_eq!(env.enabled(), all_enabled(D, S));
    assert!(env.snapshot()["lock"].is_null());

    // A holder that stopped renewing: its lock expires after the TTL it asked for.
    let body = r#"{"lock_id":"crashed-holder-lock","holder":"ci@gone","operation":"apply","ttl_seconds":15}"#;
    let out = Command::new("curl")
        .args(["-sS", "-f", "-X", "POST", "-H"])
        .arg(format!("Authorization: Bearer {}", env.token))
        .args(["-H", "Content-Type: application/json", "--data", body])
        .arg(format!(
            "{}/gitops/v1/{}/{}/lock",
            env.server.url(),
            env.org,
            env.pid
        ))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", texts(&out).1);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", D, |_| 1, 0));
    let out = env.run(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(flat(&texts(&out).1).contains("crashed-holder-lock"));
    // Long enough that the refused apply above cannot outlive it on a loaded machine;
    // then wait for the expiry itself rather than for a fixed time.
    wait_for(
        "the abandoned lock to expire",
        Duration::from_secs(40),
        || env.snapshot()["lock"].is_null(),
    );
    env.expect(&["apply", "--auto-approve"], 0);
    assert_eq!(env.enabled().len(), D);
}

fn variant(i: usize) -> String {
    // Deployment deploy-0000 with only schedule i enabled.
    cloud_yml("jaffle-shop", 1, |_| 0, 0)
        .replace("schedules: []", &format!("schedules: [schedule-{i:03}]"))
}

/// 8 saved plans made at the same revision, applied at once: one applies fully, the
/// others are refused as stale, and the state is the applied plan's.
fn concurrent_applies_of_saved_plans_apply_one_and_refuse_the_rest_as_stale(store: Store) {
    let env = Env::on(store, 8, &["--simulate-latency", "5ms"]);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", 1, |_| 0, 0));
    env.expect(&["apply", "--auto-approve"], 0);
    for i in 0..8 {
        env.write("cloud.yml", &variant(i));
        env.expect(&["plan", "-o", &format!("plan-{i}.json")], 0);
    }
    let children: Vec<Child> = (0..8)
        .map(|i| {
            env.command(&["apply", &format!("plan-{i}.json"), "--lock-timeout", "60s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    let mut applied = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        let (stdout, stderr) = texts(&out);
        match out.status.code() {
            Some(0) => {
                assert!(stdout.contains("Apply complete!"), "{stdout}");
                applied.push(i);
            }
            Some(1) => assert!(
                flat(&stderr).contains("Saved plan is stale"),
                "plan {i} neither applied nor refused as stale:\n{stdout}\n{stderr}"
            ),
            other => panic!("plan {i} exited {other:?}:\n{stdout}\n{stderr}"),
        }
    }
    assert_eq!(
        applied.len(),
        1,
        "exactly one saved plan applies: {applied:?}"
    );
    assert_eq!(
        env.enabled(),
        [format!("deploy-0000/schedule-{:03}", applied[0])]
    );
    assert!(env.snapshot()["lock"].is_null());
    let records = env.audit();
    assert_eq!(records.len(), 2, "the first apply and the one saved plan");
}

/// 8 fresh applies of different files at once take turns through the lock: all succeed,
/// each after planning from the state the previous one left.
fn concurrent_fresh_applies_take_turns_through_the_lock(store: Store) {
    let env = Env::on(store, 8, &["--simulate-latency", "20ms"]);
    env.write("cloud.yml", &cloud_yml("jaffle-shop", 1, |_| 0, 0));
    env.expect(&["apply", "--auto-approve"], 0);
    for i in 0..8 {
        env.write(&format!("cloud-{i}.yml"), &variant(i));
    }
    let children: Vec<Child> = (0..8)
        .map(|i| {
            env.command(&[
                "--file",
                &format!("cloud-{i}.yml"),
                "apply",
                "--auto-approve",
                "--lock-timeout",
                "120s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn apply")
        })
        .collect();
    let mut waited = 0;
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "apply {i}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("Apply complete!"), "{stdout}");
        if stderr.contains("Waiting for the project lock") {
            waited += 1;
        }
    }
    assert!(waited >= 1, "some apply waited for the lock");
    let records = env.audit();
    assert_eq!(records.len(), 9, "one record per apply");
    assert!(records.iter().all(|r| r["outcome"] == "succeeded"));
    let enabled = env.enabled();
    assert_eq!(enabled.len(), 1, "{enabled:?}");
    // The state is the last apply's: the newest record enabled that schedule.
    let last: Vec<&str> = records[0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    assert!(
        last.contains(&format!("schedule.{}", enabled[0]).as_str()),
        "{last:?} vs {enabled:?}"
    );
    assert!(env.snapshot()["lock"].is_null());
}

#[test]
fn concurrent_saved_plans_sqlite() {
    concurrent_applies_of_saved_plans_apply_one_and_refuse_the_rest_as_stale(Store::Sqlite);
}

#[test]
fn concurrent_saved_plans_postgres() {
    concurrent_applies_of_saved_plans_apply_one_and_refuse_the_rest_as_stale(Store::Postgres);
}

#[test]
fn concurrent_fresh_applies_sqlite() {
    concurrent_fresh_applies_take_turns_through_the_lock(Store::Sqlite);
}

#[test]
fn concurrent_fresh_applies_postgres() {
    concurrent_fresh_applies_take_turns_through_the_lock(Store::Postgres);
}
