//! Helpers of the runner tests: real `meltano-cloud server` processes (restartable, with
//! a chosen data dir and database), a real git repository, the stand-in meltano script, and
//! an HTTP client for the API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_meltano-cloud");
/// Fixed server key, so that several processes on one database agree.
pub const SERVER_KEY: &str = "4d2f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f1a2c4e6b8d0f2a4c6e8b0d1f";

pub fn tool(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: run `bash .ci/setup.sh` and `source .tools/tools.env`"),
    }
}

/// A running `meltano-cloud server`.
pub struct Server {
    child: Child,
    pub url: String,
    logs: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(database_url: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("MELTANO_CLOUD_SERVER_KEY", SERVER_KEY)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start meltano-cloud server");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        drop(tx);
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", logs.lock().unwrap());
            }
        };
        Server { child, url, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Asks the server to shut down (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: signals the server process this test started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not shut down");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends the process without any chance to clean up, as a crash would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The meltano.yml of the fast tests: one job per behaviour of the stand-in.
pub const STAND_IN_PROJECT: &str = r#"default_environment: dev
environments:
- name: dev
- name: prod
plugins:
  utilities:
  - name: tool
    namespace: tool
jobs:
- name: ok
  tasks: [tool]
- name: fail
  tasks: [tool]
- name: slow
  tasks: [tool]
- name: hang
  tasks: [tool]
- name: secret
  tasks: [tool]
schedules:
- name: hourly-ok
  interval: '@hourly'
  job: ok
- name: hourly-hang
  interval: '@hourly'
  job: hang
- name: once-ok
  interval: '@once'
  job: ok
- name: minutely-elt
  interval: '* * * * *'
  extractor: tap-x
  loader: target-y
"#;

/// A temp dir with a git repository, a stand-in meltano and room for server data.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    /// `files`: (path in the repository, content), committed on branch main.
    pub fn new(files: &[(&str, &str)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = repo.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "project"]);
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let stand_in = bin.join("meltano");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/runner/stand-in-meltano.sh"),
            &stand_in,
        )
        .unwrap();
        World { dir }
    }

    pub fn stand_in() -> World {
        World::new(&[("meltano.yml", STAND_IN_PROJECT)])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    pub fn meltano(&self) -> String {
        self.path("bin/meltano").display().to_string()
    }

    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.path("cloud.db").display())
    }

    /// Sets the time the servers' scheduler sees (`--clock-file`).
    pub fn set_clock(&self, t: chrono::DateTime<chrono::Utc>) {
        let tmp = self.path("now.tmp");
        std::fs::write(&tmp, t.to_rfc3339()).unwrap();
        std::fs::rename(&tmp, self.path("now")).unwrap();
    }

    pub fn clock_file(&self) -> String {
        self.path("now").display().to_string()
    }

    /// Lines the stand-in recorded as its arguments.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("bin/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `meltano-cloud admin` on a database and returns its stdout.
pub fn admin(database_url: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["admin", "--database-url", database_url])
        .args(args)
        .env("MELTANO_CLOUD_SERVER_KEY", SERVER_KEY)
        .output()
        .expect("run admin");
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An org, a project on the world's repository and an owner token.
pub struct Tenant {
    pub org: String,
    pub pid: String,
    pub token: String,
}

pub fn bootstrap(database_url: &str, world: &World) -> Tenant {
    admin(database_url, &["org", "create", "acme"]);
    let repo = world.repo().display().to_string();
    let pid = admin(
        database_url,
        &[
            "project", "create", "--org", "acme", "--name", "demo", "--repo", &repo,
        ],
    );
    let token = admin(
        database_url,
        &["token", "create", "--org", "acme", "--role", "owner"],
    );
    Tenant {
        org: "acme".into(),
        pid: pid.lines().last().unwrap_or_default().trim().to_owned(),
        token: token.lines().last().unwrap_or_default().trim().to_owned(),
    }
}

/// The API of one server, as one tenant.
pub struct Api {
    pub base: String,
    pub t: Arc<Tenant>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(server: &Server, tenant: Arc<Tenant>) -> Api {
        Api {
            base: server.url.clone(),
            t: tenant,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.t.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn deploy(&self, deployment: &str, environment: &str) {
        let path = format!("/deployments/v1/{}/{}/{deployment}", self.t.org, self.t.pid);
        let body = json!({"environment_name": environment, "git_rev": "main"});
        let (status, body) = self.call(reqwest::Method::POST, &path, Some(body)).await;
        assert!((200..300).contains(&status), "deploy: {status} {body}");
    }

    pub async fn enable(&self, deployment: &str, schedule: &str, on: bool) {
        let path = format!(
            "/schedules/v1/{}/{}/{deployment}/{schedule}/enabled",
            self.t.org, self.t.pid
        );
        let (status, body) = self
            .call(reqwest::Method::PUT, &path, Some(json!(on)))
            .await;
        assert!((200..300).contains(&status), "enable: {status} {body}");
    }

    pub async fn set_secret(&self, name: &str, value: &str) {
        let path = format!("/secrets/v1/{}/{}/", self.t.org, self.t.pid);
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &path,
                Some(json!({"name": name, "value": value})),
            )
            .await;
        assert!((200..300).contains(&status), "secret: {status} {body}");
    }

    /// Starts a run; returns its execution id.
    pub async fn run(&self, deployment: &str, name: &str) -> String {
        let (status, body) = self.try_run(deployment, name).await;
        assert_eq!(status, 200, "run {name}: {body}");
        body["execution_id"].as_str().unwrap().to_owned()
    }

    pub async fn try_run(&self, deployment: &str, name: &str) -> (u16, Value) {
        let path = format!(
            "/run/v1/external/{}/{}/{deployment}/{name}",
            self.t.org, self.t.pid
        );
        self.call(reqwest::Method::POST, &path, None).await
    }

    pub async fn history(&self, query: &str) -> Value {
        let path = format!("/jobs/v1/{}/{}?{query}", self.t.org, self.t.pid);
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "history: {body}");
        body
    }

    pub async fn executions(&self) -> Vec<Value> {
        self.history("page_size=250").await["results"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn execution(&self, id: &str) -> Value {
        self.executions()
            .await
            .into_iter()
            .find(|e| e["execution_id"] == id)
            .unwrap_or_else(|| panic!("execution {id} not in history"))
    }

    /// Waits until the execution is no longer RUNNING and returns it.
    pub async fn wait_end(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let e = self.execution(id).await;
            if e["status"] != "RUNNING" {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} still running: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn logs_page(&self, id: &str, token: Option<&str>) -> (u16, Value) {
        let mut path = format!("/logs/v1/{}/{}/tail/{id}", self.t.org, self.t.pid);
        if let Some(t) = token {
            path += &format!("?page_token={t}");
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// Every log message of an execution so far, following pages.
    pub async fn log_messages(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (status, page) = self.logs_page(id, token.as_deref()).await;
            assert_eq!(status, 200, "logs: {page}");
            let results = page["results"].as_array().unwrap();
            out.extend(
                results
                    .iter()
                    .map(|l| l["message"].as_str().unwrap().to_owned()),
            );
            match page["pagination"]["next_page_token"].as_str() {
                Some(t) if !results.is_empty() => token = Some(t.to_owned()),
                _ => return out,
            }
        }
    }
}

/// Waits for `cond` to hold, polling.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh PostgreSQL database for one test, dropped at the end.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let admin_url = tool("MELTANO_CLOUD_TEST_POSTGRES_URL");
        let name = format!("mc_runner_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .expect("connect to MELTANO_CLOUD_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        PgDb {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }

    pub async fn drop_db(self) {
        if let Ok(mut conn) =
            <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Whether a process exists and is not a zombie waiting to be reaped.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}
