//! The scale benchmark, shared by `cargo bench --bench scale` (full size, release build)
//! and a smoke-size run in `tests/faults.rs` (so it cannot rot).
//!
//! Everything runs against a real `meltano-cloud server` on 127.0.0.1 (SQLite) started
//! with `--simulate-latency`, filled with `meltano-cloud admin seed`, driven by the real
//! binary as a user would run it:
//! - plan: HTTP requests made (counted in the server's request log), wall time, and wall
//!   time divided by the injected latency;
//! - apply of many schedule changes: throughput with the default concurrency and with
//!   `--parallelism 1`, and their ratio;
//! - validate and plan: CPU time and peak memory of the process (wait4 rusage).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, SETUP_HINT, Store, TestRepo, TestServer};

/// Sizes and knobs; `from_env` reads the `SCALE_*` variables.
#[derive(Debug, Clone)]
pub struct Config {
    pub deployments: usize,
    pub schedules: usize,
    pub secrets: usize,
    /// Injected per-request latency for the plan figures.
    pub plan_latency: Duration,
    /// Schedule changes applied with the default concurrency.
    pub apply_changes: usize,
    /// Schedule changes applied with `--parallelism 1` (the sequential baseline).
    pub sequential_changes: usize,
    /// Injected per-request latency for the apply figures.
    pub apply_latency: Duration,
    /// Plan runs whose median is reported.
    pub plan_runs: usize,
    /// Where the table is written.
    pub out: PathBuf,
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a whole number")),
        _ => default,
    }
}

impl Config {
    /// The full size of the issue: 1,000 deployments x 50 schedules x 500 secrets, 50 ms.
    pub fn from_env() -> Config {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        Config {
            deployments: env_usize("SCALE_DEPLOYMENTS", 1000),
            schedules: env_usize("SCALE_SCHEDULES", 50),
            secrets: env_usize("SCALE_SECRETS", 500),
            plan_latency: Duration::from_millis(env_usize("SCALE_LATENCY_MS", 50) as u64),
            apply_changes: env_usize("SCALE_APPLY_CHANGES", 10_000),
            sequential_changes: env_usize("SCALE_SEQUENTIAL_CHANGES", 1_000),
            apply_latency: Duration::from_millis(env_usize("SCALE_APPLY_LATENCY_MS", 50) as u64),
            plan_runs: env_usize("SCALE_PLAN_RUNS", 3).max(1),
            out: std::env::var("SCALE_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| Path::new(&target).join("bench-results/scale.md")),
        }
    }

    /// A size that runs in seconds, for CI.
    pub fn smoke(out: PathBuf) -> Config {
        Config {
            deployments: 20,
            schedules: 5,
            secrets: 10,
            plan_latency: Duration::from_millis(20),
            apply_changes: 40,
            sequential_changes: 10,
            apply_latency: Duration::from_millis(10),
            plan_runs: 1,
            out,
        }
    }
}

/// What a measured child process did.
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
    /// User + system CPU of the process and the children it waited for.
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Runs `cmd` to the end and measures it with wait4's rusage.
// The child is reaped by wait4, which std does not know about.
#[allow(clippy::zombie_processes)]
pub fn measure(cmd: &mut Command) -> Measured {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meltano-cloud");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, zero is a valid value; the child is ours and not yet
    // reaped (std only reaps in wait/try_wait, which are not called).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let wall = start.elapsed();
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        code,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    }
}

/// meltano.yml with `schedules` schedules `schedule-NNN` (as `admin seed` names them).
pub fn meltano_yml(schedules: usize) -> String {
    let mut s = String::from(
        "version: 1\ndefault_environment: prod\nproject_id: 6c1e9a2f-0000-4000-8000-000000000002\nenvironments:\n- name: prod\nplugins:\n  extractors:\n  - name: tap-smoke-test\n    pip_url: tap-smoke-test\n  loaders:\n  - name: target-jsonl\n    pip_url: target-jsonl\njobs:\n",
    );
    for i in 0..schedules {
        let _ = writeln!(
            s,
            "- name: job-{i:03}\n  tasks:\n  - tap-smoke-test target-jsonl"
        );
    }
    s.push_str("schedules:\n");
    for i in 0..schedules {
        let _ = writeln!(
            s,
            "- name: schedule-{i:03}\n  interval: '@daily'\n  job: job-{i:03}"
        );
    }
    s
}

/// cloud.yml declaring `deploy-0000..` with `enabled(d)` of the `schedule-NNN` enabled on
/// deployment d, and `SECRET_0000..` from `secrets.sops.env`.
pub fn cloud_yml(
    project: &str,
    deployments: usize,
    enabled: impl Fn(usize) -> usize,
    secrets: usize,
) -> String {
    let mut s = format!("version: 1\nproject: {project}\ndeployments:\n");
    for d in 0..deployments {
        let list: Vec<String> = (0..enabled(d))
            .map(|i| format!("schedule-{i:03}"))
            .collect();
        let _ = writeln!(
            s,
            "  deploy-{d:04}:\n    environment: prod\n    git_rev: main\n    schedules: [{}]",
            list.join(", ")
        );
    }
    if secrets > 0 {
        s.push_str("secrets:\n");
        for k in 0..secrets {
            let _ = writeln!(s, "  SECRET_{k:04}: {{ sops: secrets.sops.env }}");
        }
    }
    s
}

fn tool(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: {SETUP_HINT}"),
    }
}

/// Writes `secrets.sops.env` holding `count` values, encrypted with a new age key.
fn write_sops_file(dir: &Path, count: usize) {
    let sops = tool("SOPS_BIN");
    let key = dir.join("age-key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap_or_else(|e| panic!("age-keygen: {e}: {SETUP_HINT}"));
    assert!(out.status.success(), "age-keygen failed");
    let text = std::fs::read_to_string(&key).expect("age key");
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key")
        .to_string();
    let mut plain = String::new();
    for k in 0..count {
        let _ = writeln!(plain, "SECRET_{k:04}=bench-value-{k}");
    }
    let plain_path = dir.join("plain.env");
    std::fs::write(&plain_path, plain).expect("write plaintext");
    let out = Command::new(&sops)
        .args(["encrypt", "--age", &recipient])
        .args(["--input-type", "dotenv", "--output-type", "dotenv"])
        .arg(&plain_path)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .expect("run sops");
    assert!(
        out.status.success(),
        "sops encrypt failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&plain_path).expect("remove plaintext");
    std::fs::write(dir.join("secrets.sops.env"), &out.stdout).expect("write sops file");
}

/// Runs SQL statements on the server's SQLite file.
fn sqlite_exec(db: &Path, statements: Vec<String>) {
    let url = format!("sqlite://{}", db.display());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::sqlite::SqliteConnection::connect(&url)
                    .await
                    .expect("open SQLite");
                let mut tx = conn.begin().await.expect("begin");
                for sql in statements {
                    sqlx::query(&sql)
                        .execute(&mut *tx)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
                tx.commit().await.expect("commit");
            })
    })
    .join()
    .expect("SQLite thread");
}

/// A project seeded on the server, with a repository whose cloud.yml matches it.
struct Seeded {
    repo: TestRepo,
    project: String,
}

/// Creates project `name` on `repo`, seeds it, and makes its deployments point at the
/// repository's HEAD and its secrets carry the fingerprints of `secrets.sops.env`, so that
/// the seeded state is what `cloud` describes, up to the schedules it enables (seeded
/// schedules are disabled).
fn seed_project(
    server: &TestServer,
    org: &str,
    name: &str,
    size: (usize, usize, usize),
    cloud: &str,
) -> Seeded {
    let (deployments, schedules, secrets) = size;
    let repo = TestRepo::with_meltano_yml(&meltano_yml(schedules));
    if secrets > 0 {
        write_sops_file(repo.path(), secrets);
        repo.git(&["add", "secrets.sops.env"]);
    }
    let head = repo.commit_file("cloud.yml", cloud);
    let pid = server.admin(&[
        "project",
        "create",
        "--org",
        org,
        "--name",
        name,
        "--repo",
        &repo.url(),
    ]);
    server.admin(&[
        "seed",
        "--org",
        org,
        "--project",
        name,
        "--deployments",
        &deployments.to_string(),
        "--schedules",
        &schedules.to_string(),
        "--secrets",
        &secrets.to_string(),
    ]);
    let mut sql = vec![format!(
        "UPDATE deployments SET git_rev_hash = '{head}' WHERE project_id = '{pid}'"
    )];
    if secrets > 0 {
        let file =
            meltano_cloud::secrets::metadata::read_sops_file(&repo.path().join("secrets.sops.env"))
                .expect("read the sops file");
        for k in 0..secrets {
            let key = format!("SECRET_{k:04}");
            let fp = file.fingerprint_of(&key).expect("fingerprint");
            sql.push(format!(
                "UPDATE secrets SET fingerprint = '{fp}' WHERE project_id = '{pid}' AND name = '{key}'"
            ));
        }
    }
    let db = server.db.sqlite_path().expect("a SQLite server");
    sqlite_exec(&db, sql);
    Seeded {
        repo,
        project: name.to_string(),
    }
}

/// Lines of the server's request log (one per answered request).
fn requests_logged(server: &TestServer) -> usize {
    server
        .logs()
        .lines()
        .filter(|l| l.contains("request{") && l.contains("status="))
        .count()
}

fn cli(server: &TestServer, dir: &Path, token: &str, org: &str, home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("MELTANO_CLOUD_API_URL", server.url())
        .env("MELTANO_CLOUD_TOKEN", token)
        .env("MELTANO_CLOUD_ORG", org)
        .env("MELTANO_CLOUD_CONFIG_PATH", home.join("config.json"))
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("MELTANO_CLOUD_PROJECT");
    cmd
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn median(mut v: Vec<Measured>) -> Measured {
    v.sort_by_key(|m| m.wall);
    let mid = v.len() / 2;
    v.swap_remove(mid)
}

fn goal(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Figures of one run, in the order of the table.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub plan_requests: usize,
    pub plan_wall: Duration,
    pub plan_rtts: f64,
    pub plan_cpu: Duration,
    pub plan_rss_kib: u64,
    pub validate_cpu: Duration,
    pub validate_rss_kib: u64,
    pub concurrent_per_s: f64,
    pub sequential_per_s: f64,
}

/// Runs every measurement, prints the table, writes it to `config.out`, returns figures.
pub fn run(config: &Config) -> Figures {
    let started = Instant::now();
    let mut figures = Figures::default();
    let home = tempfile::tempdir().expect("tempdir");
    let binding_repo = TestRepo::new();
    let lat = |d: Duration| format!("{}ms", d.as_millis());

    // --- plan, validate ---------------------------------------------------------------
    let server = TestServer::start(
        Store::Sqlite,
        crate::support::ServerOptions::new()
            .args(["--simulate-latency", &lat(config.plan_latency)]),
    );
    let (org, _, token) = server.bootstrap(&binding_repo);
    let size = (config.deployments, config.schedules, config.secrets);
    let seed_start = Instant::now();
    let yml = cloud_yml("scale-plan", config.deployments, |_| 0, config.secrets);
    let big = seed_project(&server, &org, "scale-plan", size, &yml);
    let seed_time = seed_start.elapsed();
    let yml_bytes = std::fs::metadata(big.repo.path().join("cloud.yml"))
        .map(|m| m.len())
        .unwrap_or(0);

    let validate =
        measure(cli(&server, big.repo.path(), &token, &org, home.path()).arg("validate"));
    assert_eq!(
        validate.code,
        Some(0),
        "validate failed:\n{}{}",
        validate.stdout,
        validate.stderr
    );
    let mut runs = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..config.plan_runs {
        let before = requests_logged(&server);
        let m = measure(
            cli(&server, big.repo.path(), &token, &org, home.path())
                .args(["plan", "--detailed-exitcode"]),
        );
        assert_eq!(
            m.code,
            Some(0),
            "the plan of the seeded project should have no changes:\n{}{}",
            m.stdout.lines().take(40).collect::<Vec<_>>().join("\n"),
            m.stderr
        );
        assert!(
            m.stdout.contains("No changes."),
            "unexpected plan: {}",
            m.stdout
        );
        // The log line of the last answer can trail the client's exit by a moment.
        std::thread::sleep(Duration::from_millis(200));
        requests.push(requests_logged(&server) - before);
        runs.push(m);
    }
    requests.sort_unstable();
    let plan = median(runs);
    figures.plan_requests = requests[requests.len() / 2];
    figures.plan_wall = plan.wall;
    figures.plan_rtts = plan.wall.as_secs_f64() / config.plan_latency.as_secs_f64().max(1e-9);
    figures.plan_cpu = plan.cpu;
    figures.plan_rss_kib = plan.max_rss_kib;
    figures.validate_cpu = validate.cpu;
    figures.validate_rss_kib = validate.max_rss_kib;
    drop(server);

    // --- apply throughput ---------------------------------------------------------------
    let server = TestServer::start(
        Store::Sqlite,
        crate::support::ServerOptions::new()
            .args(["--simulate-latency", &lat(config.apply_latency)]),
    );
    let (org, _, token) = server.bootstrap(&binding_repo);
    let s = config.schedules.max(1);
    let apply_run = |name: &str, changes: usize, parallelism: Option<usize>| {
        let deployments = changes.div_ceil(s);
        // Enable `changes` seeded schedules: all of each deployment's, the rest on the last.
        let yml = cloud_yml(name, deployments, |d| s.min(changes - d * s), 0);
        let seeded = seed_project(&server, &org, name, (deployments, s, 0), &yml);
        let mut cmd = cli(&server, seeded.repo.path(), &token, &org, home.path());
        cmd.args(["apply", "--auto-approve"]);
        if let Some(p) = parallelism {
            cmd.args(["--parallelism", &p.to_string()]);
        }
        let m = measure(&mut cmd);
        assert_eq!(
            m.code,
            Some(0),
            "apply of {} failed:\n{}",
            seeded.project,
            m.stderr
        );
        let applied = m
            .stdout
            .lines()
            .filter(|l| l.contains(": Enabling... Enabled ("))
            .count();
        assert_eq!(applied, changes, "every schedule change applied");
        (changes as f64 / m.wall.as_secs_f64(), m.wall)
    };
    let (concurrent, concurrent_wall) = apply_run("scale-apply", config.apply_changes, None);
    let (sequential, sequential_wall) =
        apply_run("scale-apply-seq", config.sequential_changes, Some(1));
    figures.concurrent_per_s = concurrent;
    figures.sequential_per_s = sequential;
    drop(server);

    // --- the table ----------------------------------------------------------------------
    let lat_ms = config.plan_latency.as_secs_f64() * 1000.0;
    let cpu_budget = Duration::from_millis(100);
    let plan_ok = plan.wall.as_secs_f64() <= 3.0 * config.plan_latency.as_secs_f64() + 0.1;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Scale benchmark: {} deployments x {} schedules x {} secrets\n",
        config.deployments, config.schedules, config.secrets
    );
    let _ = writeln!(
        t,
        "cloud.yml: {:.1} KiB; seeded with `admin seed` in {}; {} build; SQLite server on 127.0.0.1.\n",
        yml_bytes as f64 / 1024.0,
        ms(seed_time),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let _ = writeln!(t, "| Measurement | Figure | Goal | |");
    let _ = writeln!(t, "|---|---|---|---|");
    let _ = writeln!(t, "| plan: HTTP requests | {} | | |", figures.plan_requests);
    let _ = writeln!(
        t,
        "| plan: wall time at {lat_ms:.0} ms latency (median of {}) | {} | <= 3 RTT + 100 ms = {} | {} |",
        config.plan_runs,
        ms(plan.wall),
        ms(config.plan_latency * 3 + cpu_budget),
        goal(plan_ok)
    );
    let _ = writeln!(
        t,
        "| plan: wall time / injected round trip | {:.2} RTT | | |",
        figures.plan_rtts
    );
    let _ = writeln!(
        t,
        "| plan: CPU time (user+sys) | {} | < 100 ms | {} |",
        ms(plan.cpu),
        goal(plan.cpu < cpu_budget)
    );
    let _ = writeln!(
        t,
        "| plan: peak memory (max RSS) | {} | < 100 MiB | {} |",
        mib(plan.max_rss_kib),
        goal(plan.max_rss_kib < 100 * 1024)
    );
    let _ = writeln!(
        t,
        "| validate: CPU time (user+sys) | {} | < 200 ms | {} |",
        ms(validate.cpu),
        goal(validate.cpu < Duration::from_millis(200))
    );
    let _ = writeln!(
        t,
        "| validate: peak memory (max RSS) | {} | < 100 MiB | {} |",
        mib(validate.max_rss_kib),
        goal(validate.max_rss_kib < 100 * 1024)
    );
    let _ = writeln!(
        t,
        "| apply: {} changes, default concurrency ({}), {} ms latency | {:.1} changes/s ({:.1} s) | | |",
        config.apply_changes,
        meltano_cloud::apply::DEFAULT_CONCURRENCY,
        config.apply_latency.as_millis(),
        concurrent,
        concurrent_wall.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| apply: {} changes, `--parallelism 1` (baseline) | {:.1} changes/s ({:.1} s) | | |",
        config.sequential_changes,
        sequential,
        sequential_wall.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| apply: throughput ratio, default / sequential | {:.2}x | | |",
        concurrent / sequential
    );
    let _ = writeln!(
        t,
        "\nTotal benchmark time {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    println!("{t}");
    if let Some(parent) = config.out.parent() {
        std::fs::create_dir_all(parent).expect("create the results folder");
    }
    std::fs::write(&config.out, &t).expect("write the results table");
    println!("Wrote {}", config.out.display());
    figures
}
