//! The control plane over HTTP: a real `meltano-cloud server` on 127.0.0.1, on SQLite and
//! on PostgreSQL (every test body in server/cases.rs runs on both), with real git
//! repositories. PostgreSQL comes from MELTANO_CLOUD_TEST_POSTGRES_URL.

mod support;

#[path = "server/cases.rs"]
mod cases;

use std::os::unix::process::CommandExt;
use std::process::Command;

use support::{BIN, Database, TestRepo};

/// Runs each named async case `fn(Store)` once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::cases::$name(crate::support::Store::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::cases::$name(crate::support::Store::Postgres).await
                }
            )*
        }
    };
}

on_both_stores!(
    deploy_enable_snapshot,
    v1_endpoints,
    paging,
    auth_matrix,
    tenant_isolation,
    locks,
    revisions,
    deployment_follows_new_commit,
    secrets_encrypted_at_rest,
    restart_keeps_state,
    seed_and_snapshot,
    simulated_latency_and_faults,
    load_200_clients,
    snapshot_current_across_replicas,
    protected_deployments,
);

/// A server started with another key than the database's is refused with a clear message.
#[test]
fn wrong_server_key_is_refused() {
    let db = Database::sqlite();
    db.admin(&["org", "create", "acme"]);
    let data = tempfile::tempdir().unwrap();
    let key_a = "a".repeat(64);
    let key_b = "b".repeat(64);
    let run = |key: &str| {
        Command::new(BIN)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                db.url(),
                "--data-dir",
            ])
            .arg(data.path())
            .env("MELTANO_CLOUD_SERVER_KEY", key)
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // first start records the key
    let mut first = run(&key_a);
    let stderr = first.stderr.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    first.kill().unwrap();
    first.wait().unwrap();
    // another key: refused
    let out = run(&key_b).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = flat(&out.stderr);
    assert!(err.contains("server::key"), "{err}");
    assert!(
        err.contains("is not the key this database's secrets were encrypted with"),
        "{err}"
    );
    // a malformed key: refused
    let out = run("short").wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        flat(&out.stderr).contains("not 64 hex characters"),
        "{}",
        flat(&out.stderr)
    );
}

/// Diagnostic text with miette's line wrapping undone.
fn flat(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Admin commands print what scripts need and fail with diagnostics.
#[test]
fn admin_commands() {
    let db = Database::sqlite();
    let out = db.admin_output(&["org", "create", "Bad Name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid organization name"));
    db.admin(&["org", "create", "acme"]);
    let out = db.admin_output(&["org", "create", "acme"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let pid = db.admin(&[
        "project",
        "create",
        "--org",
        "acme",
        "--name",
        "p",
        "--repo",
        "/srv/repo",
    ]);
    assert_eq!(pid.len(), 26, "a ULID: {pid}");
    let out = db.admin_output(&[
        "project",
        "create",
        "--org",
        "nope",
        "--name",
        "p",
        "--repo",
        "/srv/repo",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("organization `nope` not found"));
    let token = db.admin(&[
        "token", "create", "--org", "acme", "--role", "reader", "--name", "ci",
    ]);
    assert!(
        token.starts_with("mct_") && !token.contains('\n'),
        "{token}"
    );
    let list = db.admin(&["token", "list", "--org", "acme"]);
    assert!(list.starts_with("TOKEN ID"), "{list}");
    assert!(list.contains("reader") && list.contains("ci"));
    assert!(!list.contains(&token));
    let id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    db.admin(&["token", "revoke", "--org", "acme", &id]);
    assert_eq!(
        db.admin(&["token", "list", "--org", "acme"])
            .lines()
            .count(),
        1
    );
    let out = db.admin_output(&["token", "create", "--org", "acme", "--role", "admin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected owner, maintainer or reader"));
    let projects = db.admin(&["project", "list", "--org", "acme"]);
    assert!(projects.contains(&pid) && projects.contains("/srv/repo"));
}

/// The embedded local control plane creates its project from the enclosing repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_control_plane() {
    let repo = TestRepo::empty();
    repo.commit_file("warehouse/meltano.yml", support::DEFAULT_MELTANO_YML);
    let dir = repo.path().join("warehouse");
    let plane = meltano_cloud::server::local::start_local(&dir, "jaffle-shop")
        .await
        .unwrap();
    assert_eq!(plane.org, "local");
    assert_eq!(plane.project.project_root_path, "warehouse");
    assert!(dir.join(".meltano/cloud/control-plane.db").exists());
    let http = support::client(&plane.token);
    let me: serde_json::Value = http
        .get(format!("{}/gitops/v1/whoami", plane.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner");
    let r = http
        .post(format!(
            "{}/deployments/v1/local/{}/dev",
            plane.base_url, plane.project.project_id
        ))
        .json(&serde_json::json!({"environment_name": "dev", "git_rev": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let first_id = plane.project.project_id.clone();
    let token = plane.token.clone();
    plane.stop().await;
    // the token lived only in memory; the state and the project persist
    let db = std::fs::read(dir.join(".meltano/cloud/control-plane.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
    let again = meltano_cloud::server::local::start_local(&dir, "jaffle-shop")
        .await
        .unwrap();
    assert_eq!(again.project.project_id, first_id);
    assert_ne!(again.token, token);
    let r = support::client(&token)
        .get(format!("{}/gitops/v1/whoami", again.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an earlier process's token is not valid");
}

/// The committed OpenAPI document is the one the routes generate.
#[test]
fn openapi_document_is_current() {
    let out = Command::new(BIN)
        .args(["server", "--print-openapi"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/projects/v1/{org}",
        "/deployments/v1/{org}/{pid}/{name}",
        "/schedules/v1/{org}/{pid}/{deployment}/{schedule}/enabled",
        "/secrets/v1/{org}/{pid}/",
        "/gitops/v1/{org}/{pid}/snapshot",
        "/gitops/v1/{org}/{pid}/lock/{lock_id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is missing from the document"
        );
    }
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/openapi.json");
    if std::env::var_os("MELTANO_CLOUD_UPDATE_SCHEMAS").is_some() {
        std::fs::write(committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/openapi.json is out of date with the server's routes; regenerate it with\n  \
         cargo run -- server --print-openapi > schema/openapi.json\n\
         (or run this test with MELTANO_CLOUD_UPDATE_SCHEMAS=1)"
    );
}

/// The `server` and `admin` command lines, pinned as text (tests/cmd/server/).
/// Update with `TRYCMD=overwrite cargo test --test server cli_cases` and review the diff.
#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .register_bin("meltano-cloud", std::path::Path::new(BIN))
        .env("NO_COLOR", "1")
        .case("tests/cmd/server/*.toml")
        .case("tests/cmd/server/*.md");
}

/// A remote repository (here `git://` from a local `git daemon`) is cloned as a mirror into
/// the data dir and fetched again on the next deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_repository_through_a_mirror() {
    let repo = TestRepo::new();
    let parent = repo.path().parent().unwrap().to_path_buf();
    let name = repo
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            // `git daemon` runs git-daemon as a child: end the whole process group.
            unsafe {
                libc::kill(-(self.0.id() as i32), libc::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
    let _daemon = Daemon(
        Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", parent.display()))
            .arg(&parent)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("git daemon"),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 20, "git daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let server = support::TestServer::start_sqlite();
    server.admin(&["org", "create", "acme"]);
    let url = format!("git://127.0.0.1:{port}/{name}");
    let pid = server.admin(&[
        "project", "create", "--org", "acme", "--name", "remote", "--repo", &url,
    ]);
    let token = server.token("acme", "maintainer");
    let http = support::client(&token);
    let deploy = || {
        http.post(format!("{}/deployments/v1/acme/{pid}/prod", server.url()))
            .json(&serde_json::json!({"environment_name": "prod", "git_rev": "main"}))
            .send()
    };
    let r = deploy().await.unwrap();
    assert_eq!(r.status(), 201);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["git_rev_hash"], repo.head());
    let mirrors: Vec<_> = std::fs::read_dir(server.data_dir().join("git-cache"))
        .unwrap()
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror clone");

    let second = repo.commit_meltano_yml(&format!(
        "{}- name: weekly\n  interval: '@weekly'\n  job: refresh\n",
        support::DEFAULT_MELTANO_YML
    ));
    let r = deploy().await.unwrap();
    assert_eq!(r.status(), 200);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["git_rev_hash"], second, "the mirror was fetched");
    let schedules: serde_json::Value = http
        .get(format!(
            "{}/schedules/v1/acme/{pid}/prod/weekly",
            server.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(schedules["interval"], "@weekly");
}

/// An unreachable PostgreSQL fails at once with the cause and the redacted URL, not after
/// the pool's acquire timeout with "pool timed out".
#[test]
fn unreachable_postgres_fails_fast_with_the_cause() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:hunter2@127.0.0.1:{port}/db");
    let data = tempfile::tempdir().unwrap();
    for (command, rest) in [
        ("admin", vec!["org", "create", "zz"]),
        ("server", vec!["--listen", "127.0.0.1:0"]),
    ] {
        let args = [command, "--database-url", &url];
        let started = std::time::Instant::now();
        let out = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .args(&rest)
            .env_remove("MELTANO_CLOUD_DATABASE_URL")
            .env("MELTANO_CLOUD_SERVER_KEY", "a".repeat(64))
            .output()
            .unwrap();
        let stderr = flat(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(stderr.contains("store::connect"), "{stderr}");
        assert!(
            stderr.to_lowercase().contains("connection refused"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("postgres://u:***@127.0.0.1:{port}/db")),
            "{stderr}"
        );
        assert!(stderr.contains("is PostgreSQL running"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// The SQLite database and its WAL files are owner-only, like the key file beside them.
#[test]
fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = Database::sqlite();
    db.admin(&["org", "create", "acme"]);
    let path = db.sqlite_path().unwrap();
    let dir = path.parent().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("control-plane.db") {
            seen += 1;
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        }
    }
    assert!(seen >= 1, "no database file in {}", dir.display());

    // A database created before files were private is narrowed on the next open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    db.admin(&["project", "list", "--org", "acme"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// With no flags beyond `--listen` the server creates its SQLite database and key file in
/// the platform data dir and serves the API (also once its stderr is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_only_listen() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("MELTANO_CLOUD_DATABASE_URL")
        .env_remove("MELTANO_CLOUD_DATA_DIR")
        .env_remove("MELTANO_CLOUD_SERVER_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let url = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .expect("the listening line");
    let health = reqwest::get(format!("{url}/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success(), "SIGTERM ends it cleanly");
    let dir = home.path().join("data/meltano-cloud");
    assert!(dir.join("meltano-cloud.db").exists());
    assert!(dir.join("meltano-cloud.db.key").exists());
}

/// The local control plane needs the Meltano project to be in a git repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_control_plane_outside_git() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meltano.yml"), support::DEFAULT_MELTANO_YML).unwrap();
    let err = meltano_cloud::server::local::start_local(dir.path(), "p")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not inside a git repository"),
        "{err}"
    );
    let help = err.help().map(|h| h.to_string()).unwrap_or_default();
    assert!(help.contains("git init"), "{help}");
}
