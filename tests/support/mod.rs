//! Shared test harness: a real `meltano-cloud server` process on 127.0.0.1 over a fresh
//! SQLite file or a fresh PostgreSQL database, admin commands against its database, and
//! throwaway git repositories holding a meltano.yml.
//!
//! Use it from a test file with `mod support;`:
//!
//! ```ignore
//! mod support;
//! use support::{TestRepo, TestServer};
//!
//! let repo = TestRepo::new();
//! let server = TestServer::start_sqlite();            // or start_postgres()
//! let (org, project_id, owner_token) = server.bootstrap(&repo);
//! let url = format!("{}/deployments/v1/{org}/{project_id}", server.url());
//! ```
//!
//! PostgreSQL tests need `MELTANO_CLOUD_TEST_POSTGRES_URL` (a role that may create
//! databases); every server gets its own database, dropped when the last server on it ends.
//! Extra server flags go through [`ServerOptions`] (`TestServer::start(Store::Sqlite,
//! ServerOptions::new().args(["--meltano-bin", path]))`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_meltano-cloud");

/// Message of every failure caused by a missing tool or service.
pub const SETUP_HINT: &str = "run `bash .ci/setup.sh` and `source .tools/tools.env`";

/// Which store a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// A database for test servers: a SQLite file in a temp dir, or a PostgreSQL database
/// created for it and dropped on drop.
pub struct Database {
    pub kind: Store,
    url: String,
    /// Passed as MELTANO_CLOUD_SERVER_KEY (PostgreSQL); SQLite uses its key file.
    key: Option<String>,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{n}_{nanos:x}", std::process::id())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs an async block on a private runtime in its own thread (safe inside or outside
/// a tokio test).
fn block_on_thread<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("database admin thread panicked")
}

/// The URL of the PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    match std::env::var("MELTANO_CLOUD_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!("MELTANO_CLOUD_TEST_POSTGRES_URL is not set: {SETUP_HINT}"),
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl Database {
    pub fn sqlite() -> Arc<Database> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("control-plane.db").display());
        Arc::new(Database {
            kind: Store::Sqlite,
            url,
            key: None,
            _dir: dir,
            pg: None,
        })
    }

    pub fn postgres() -> Arc<Database> {
        let admin_url = postgres_url();
        let name = format!("mct_{}", unique_suffix()).to_lowercase();
        let (u, n) = (admin_url.clone(), name.clone());
        block_on_thread(move || async move {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&u)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL ({e}): {SETUP_HINT}"));
            sqlx::raw_sql(&format!("CREATE DATABASE \"{n}\""))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot create database {n}: {e}"));
            let _ = conn.close().await;
        });
        Arc::new(Database {
            kind: Store::Postgres,
            url: with_database(&admin_url, &name),
            key: Some(random_hex(32)),
            _dir: tempfile::tempdir().expect("tempdir"),
            pg: Some((admin_url, name)),
        })
    }

    pub fn new(kind: Store) -> Arc<Database> {
        match kind {
            Store::Sqlite => Database::sqlite(),
            Store::Postgres => Database::postgres(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SQLite file, for at-rest checks.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.kind {
            Store::Sqlite => Some(PathBuf::from(self.url.trim_start_matches("sqlite://"))),
            Store::Postgres => None,
        }
    }

    /// Environment every process on this database needs.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![];
        if let Some(k) = &self.key {
            env.push(("MELTANO_CLOUD_SERVER_KEY".to_string(), k.clone()));
        }
        env
    }

    /// Runs `meltano-cloud admin --database-url URL ARGS...`.
    pub fn admin_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("admin")
            .arg("--database-url")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(self._dir.path())
            .args(args)
            .env_remove("MELTANO_CLOUD_SERVER_KEY")
            .env_remove("MELTANO_CLOUD_DATABASE_URL");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("run meltano-cloud admin")
    }

    /// Runs an admin command that must succeed; returns its stdout, trimmed.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(
            out.status.success(),
            "admin {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs SQL against this database and returns every column of every row as text (None for NULL or non-text columns)
    /// (PostgreSQL only; use [`Database::sqlite_path`] for SQLite).
    pub fn pg_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        assert_eq!(self.kind, Store::Postgres, "pg_rows needs PostgreSQL");
        let (url, sql) = (self.url.clone(), sql.to_string());
        block_on_thread(move || async move {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::postgres::PgConnection::connect(&url)
                .await
                .expect("connect");
            let rows = sqlx::query(&sql).fetch_all(&mut conn).await.expect("query");
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| r.try_get::<Option<String>, _>(i).ok().flatten())
                        .collect()
                })
                .collect()
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            block_on_thread(move || async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    let _ = conn.close().await;
                }
            });
        }
    }
}

/// Extra flags and environment for a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub extra_server_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ServerOptions {
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends flags to `meltano-cloud server ...`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_server_args
            .extend(args.into_iter().map(Into::into));
        self
    }
    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running `meltano-cloud server --listen 127.0.0.1:0`, killed on drop.
pub struct TestServer {
    pub db: Arc<Database>,
    pub options: ServerOptions,
    child: Option<Child>,
    url: String,
    data_dir: tempfile::TempDir,
    logs: Arc<Mutex<String>>,
}

impl TestServer {
    pub fn start_sqlite() -> TestServer {
        TestServer::start(Store::Sqlite, ServerOptions::default())
    }

    pub fn start_postgres() -> TestServer {
        TestServer::start(Store::Postgres, ServerOptions::default())
    }

    pub fn start(kind: Store, options: ServerOptions) -> TestServer {
        TestServer::start_on(Database::new(kind), options)
    }

    /// A server on an existing database (a restart, or a second replica).
    pub fn start_on(db: Arc<Database>, options: ServerOptions) -> TestServer {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut server = TestServer {
            db,
            options,
            child: None,
            url: String::new(),
            data_dir,
            logs: Arc::new(Mutex::new(String::new())),
        };
        server.spawn();
        server
    }

    /// Another server process on the same database (e.g. a second replica).
    pub fn replica(&self, options: ServerOptions) -> TestServer {
        TestServer::start_on(self.db.clone(), options)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(self.db.url())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(&self.options.extra_server_args)
            .env_remove("MELTANO_CLOUD_SERVER_KEY")
            .env_remove("MELTANO_CLOUD_DATABASE_URL")
            .env(
                "RUST_LOG",
                std::env::var("MELTANO_CLOUD_TEST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.db.env() {
            cmd.env(k, v);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn meltano-cloud server");
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr");
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let _ = tx.send(rest.trim().to_string());
                }
                let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) => {
                    self.url = url;
                    break;
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!(
                            "the server exited ({status}) before listening:\n{}",
                            self.logs()
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("the server did not start within 60 s:\n{}", self.logs());
                    }
                }
            }
        }
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn database_url(&self) -> &str {
        self.db.url()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything the server printed so far (stderr and stdout), for leak checks.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The process id, e.g. to send a signal.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn admin(&self, args: &[&str]) -> String {
        self.db.admin(args)
    }

    pub fn admin_output(&self, args: &[&str]) -> Output {
        self.db.admin_output(args)
    }

    /// Creates an organization, a project on `repo` and an owner token:
    /// `(org, project_id, owner_token)`. The org is `acme` unless it exists, then `acme-N`.
    pub fn bootstrap(&self, repo: &TestRepo) -> (String, String, String) {
        let mut org = "acme".to_string();
        let mut n = 1;
        while !self.admin_output(&["org", "create", &org]).status.success() {
            n += 1;
            org = format!("acme-{n}");
        }
        let pid = self.admin(&[
            "project",
            "create",
            "--org",
            &org,
            "--name",
            "jaffle-shop",
            "--repo",
            &repo.url(),
        ]);
        let token = self.admin(&[
            "token", "create", "--org", &org, "--role", "owner", "--name", "owner",
        ]);
        (org, pid, token)
    }

    /// A token of `role` (owner, maintainer, reader) for `org`.
    pub fn token(&self, org: &str, role: &str) -> String {
        self.admin(&[
            "token", "create", "--org", org, "--role", role, "--name", role,
        ])
    }

    /// Sends SIGTERM and waits (up to 30 s) for a graceful exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts it again on the same database and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The meltano.yml every [`TestRepo::new`] starts with.
pub const DEFAULT_MELTANO_YML: &str = r#"version: 1
default_environment: dev
project_id: 6c1e9a2f-0000-4000-8000-000000000001
environments:
- name: dev
- name: staging
- name: prod
plugins:
  extractors:
  - name: tap-smoke-test
    pip_url: tap-smoke-test
  loaders:
  - name: target-jsonl
    pip_url: target-jsonl
jobs:
- name: refresh
  tasks:
  - tap-smoke-test target-jsonl
- name: sync
  tasks:
  - tap-smoke-test target-jsonl
schedules:
- name: daily-refresh
  interval: '@daily'
  job: refresh
- name: hourly-sync
  interval: '0 * * * *'
  job: sync
"#;

/// A throwaway git repository (branch `main`) holding a Meltano project at its top level.
pub struct TestRepo {
    dir: tempfile::TempDir,
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// A repository whose first commit holds [`DEFAULT_MELTANO_YML`].
    pub fn new() -> TestRepo {
        TestRepo::with_meltano_yml(DEFAULT_MELTANO_YML)
    }

    pub fn with_meltano_yml(meltano_yml: &str) -> TestRepo {
        let repo = TestRepo::empty();
        repo.commit_file("meltano.yml", meltano_yml);
        repo
    }

    /// An initialized repository without commits.
    pub fn empty() -> TestRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = TestRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "tests@example.com"]);
        repo.git(&["config", "user.name", "Tests"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What to pass as the project's repository (its path).
    pub fn url(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Runs git in the repository; panics on failure; returns stdout trimmed.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `rel` (creating folders) and commits it on the current branch; returns the
    /// new commit's sha.
    pub fn commit_file(&self, rel: &str, content: &str) -> String {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, content).expect("write file");
        self.git(&["add", "--", rel]);
        self.git(&["commit", "-q", "-m", &format!("update {rel}")]);
        self.head()
    }

    /// Rewrites meltano.yml and commits it.
    pub fn commit_meltano_yml(&self, content: &str) -> String {
        self.commit_file("meltano.yml", content)
    }

    /// The sha of HEAD.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A reqwest client sending `Authorization: Bearer <token>`.
pub fn client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}
