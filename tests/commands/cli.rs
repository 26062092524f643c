//! The commands against a real `meltano-cloud server` on 127.0.0.1 (trycmd cases under
//! tests/cmd/cli/server/), seeded through the admin commands and the API, and against the
//! embedded local control plane.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use meltano_cloud::api::client::Client;
use meltano_cloud::api::{DeployQuery, DeploymentRequest, SetSecret};

use crate::support::{BIN, TestRepo, TestServer};

/// Runs every case of `tests/cmd/cli/server/{name}` with its own settings file, so cases
/// that remember defaults do not see each other's.
fn run_case(server: &TestServer, repo: &TestRepo, token: &str, project: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let cases = trycmd::TestCases::new();
    cases
        .env("MELTANO_CLOUD_API_URL", server.url())
        .env("MELTANO_CLOUD_TOKEN", token)
        .env("MELTANO_CLOUD_PROJECT", project)
        .env("MELTANO_CLOUD_CONFIG_PATH", config.display().to_string())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .insert_var("[URL]", server.url().to_string())
        .unwrap()
        .insert_var("[REPO]", repo.url())
        .unwrap()
        .case(format!("tests/cmd/cli/server/{name}"));
    cases.run();
}

fn seed(server: &TestServer, org: &str, pid: &str, token: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(server.url(), Some(token.to_string())).unwrap();
        let body = DeploymentRequest {
            environment_name: "prod".into(),
            git_rev: "main".into(),
            protected: None,
        };
        c.deploy(org, pid, "production", &body, &DeployQuery::default())
            .await
            .unwrap();
        c.set_schedule_enabled(org, pid, "production", "daily-refresh", true)
            .await
            .unwrap();
        for (name, fingerprint) in [
            ("TAP_GITLAB_PASSWORD", Some("sha256:0f1e".to_string())),
            ("SET_BY_HAND", None),
        ] {
            let s = SetSecret {
                name: name.into(),
                value: "seeded-secret-value".into(),
                fingerprint,
            };
            c.set_secret(org, pid, &s).await.unwrap();
        }
    });
}

#[test]
fn cli_against_a_server_on_sqlite() {
    cli_against(TestServer::start_sqlite());
}

/// The same cases, with the server on PostgreSQL: the answers do not depend on the store.
#[test]
fn cli_against_a_server_on_postgres() {
    cli_against(TestServer::start_postgres());
}

fn cli_against(server: TestServer) {
    let repo = TestRepo::new();
    let (org, pid, owner) = server.bootstrap(&repo);
    for name in ["alpha", "beta"] {
        server.admin(&[
            "project",
            "create",
            "--org",
            &org,
            "--name",
            name,
            "--repo",
            &repo.url(),
        ]);
    }
    server.admin(&[
        "project",
        "create",
        "--org",
        &org,
        "--name",
        "empty-project",
        "--repo",
        &repo.url(),
    ]);
    let reader = server.token(&org, "reader");
    seed(&server, &org, &pid, &owner);

    for case in [
        "projects.md",
        "deployments.md",
        "schedules.md",
        "secrets.md",
        "secret-from-stdin.toml",
        "secret-empty.toml",
        "runs.md",
        "unknown-project.md",
    ] {
        run_case(&server, &repo, &owner, "jaffle-shop", case);
    }
    run_case(&server, &repo, &owner, "empty-project", "empty.md");
    run_case(&server, &repo, &reader, "jaffle-shop", "reader.md");
    run_case(
        &server,
        &repo,
        "mct_not_a_known_token",
        "jaffle-shop",
        "bad-token.md",
    );

    // Neither the seeded secret values nor any token reached the server's logs.
    let logs = server.logs();
    for secret in [
        "seeded-secret-value",
        "not-shown-anywhere",
        "value-from-stdin",
        &owner,
        &reader,
    ] {
        assert!(!logs.contains(secret), "server logs leak {secret}");
    }
}

fn cli(dir: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env("MELTANO_CLOUD_CONFIG_PATH", config)
        .env("NO_COLOR", "1")
        .env_remove("MELTANO_CLOUD_API_URL")
        .env_remove("MELTANO_CLOUD_BASE_URL")
        .env_remove("MELTANO_CLOUD_TOKEN")
        .env_remove("MELTANO_CLOUD_ORG")
        .env_remove("MELTANO_CLOUD_PROJECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn login_stores_the_token_privately_and_commands_use_it() {
    let repo = TestRepo::new();
    let server = TestServer::start_sqlite();
    let (_org, pid, owner) = server.bootstrap(&repo);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nested").join("config.json");

    // A wrong token is refused and nothing is stored.
    let out = cli(
        dir.path(),
        &config,
        &["login", "--api-url", server.url(), "--token-stdin"],
        Some("mct_wrong\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api::unauthorized") && err.contains("log in again"),
        "{err}"
    );
    assert!(
        !err.contains("mct_wrong"),
        "the token must not be echoed: {err}"
    );
    assert!(!config.exists());

    let out = cli(
        dir.path(),
        &config,
        &["login", "--api-url", server.url(), "--token-stdin"],
        Some(&format!("{owner}\n")),
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("as owner of organization `acme`"), "{err}");
    assert!(!err.contains(&owner));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(stored["org"], "acme");
    assert_eq!(stored["token"], owner.as_str());

    // With no project named or remembered, the commands use cloud.yml's `project`.
    std::fs::write(
        dir.path().join("cloud.yml"),
        "version: 1\nproject: jaffle-shop\n",
    )
    .unwrap();
    let out = cli(dir.path(), &config, &["deployment", "list"], None);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(org acme, project jaffle-shop)"), "{err}");
    // ... also through --file and --chdir.
    std::fs::rename(dir.path().join("cloud.yml"), dir.path().join("other.yml")).unwrap();
    let out = cli(dir.path(), &config, &["deployment", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("target::no_project"));
    let out = cli(
        dir.path(),
        &config,
        &["--file", "other.yml", "deployment", "list"],
        None,
    );
    ok(&out);
    std::fs::remove_file(dir.path().join("other.yml")).unwrap();

    // Without --api-url or a token, the stored ones are used; defaults are remembered.
    // A project is found by id as well as by name.
    let out = cli(dir.path(), &config, &["project", "use", "--id", &pid], None);
    assert!(ok(&out).contains(&format!("`jaffle-shop` ({pid})")));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(stored["default_projects"]["acme"], pid.as_str());
    let out = cli(dir.path(), &config, &["deployment", "list"], None);
    let stdout = ok(&out);
    assert!(stdout.contains("No deployments found."), "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "Control plane: {} (org acme, project jaffle-shop)",
            server.url()
        )),
        "{err}"
    );
    ok(&cli(
        dir.path(),
        &config,
        &[
            "deployment",
            "create",
            "--name",
            "prod",
            "--environment",
            "prod",
            "--git-rev",
            "main",
        ],
        None,
    ));
    ok(&cli(
        dir.path(),
        &config,
        &["deployment", "use", "--name", "prod"],
        None,
    ));
    // `--deployment` falls back to the remembered one.
    let out = cli(
        dir.path(),
        &config,
        &["schedule", "enable", "--schedule", "hourly-sync"],
        None,
    );
    assert!(ok(&out).contains("Enabled schedule `hourly-sync` on deployment `prod`"));

    // The stored token is never sent to another URL.
    let out = cli(
        dir.path(),
        &config,
        &["--api-url", "http://127.0.0.1:1", "project", "list"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token for http://127.0.0.1:1"));
    // MELTANO_CLOUD_BASE_URL overrides the stored URL the same way, without editing the file.
    let before = std::fs::read_to_string(&config).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["project", "list"])
        .env("MELTANO_CLOUD_CONFIG_PATH", &config)
        .env("MELTANO_CLOUD_BASE_URL", "http://127.0.0.1:1")
        .env_remove("MELTANO_CLOUD_API_URL")
        .env_remove("MELTANO_CLOUD_TOKEN")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token for http://127.0.0.1:1"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    let out = cli(dir.path(), &config, &["logout"], None);
    ok(&out);
    let stored = std::fs::read_to_string(&config).unwrap();
    assert!(!stored.contains(&owner));
    let out = cli(dir.path(), &config, &["project", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));
}

#[test]
fn commands_work_against_the_local_control_plane() {
    let repo = TestRepo::new();
    let dir = repo.path();
    let cfg_dir = tempfile::tempdir().unwrap();
    let config = cfg_dir.path().join("config.json");
    let run = |args: &[&str]| cli(dir, &config, args, None);

    let out = run(&["--api-url", "local", "deployment", "list"]);
    assert!(ok(&out).contains("No deployments found."));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.starts_with("Control plane: local (.meltano/cloud/control-plane.db)"),
        "{err}"
    );
    // No --api-url and no login: local is the default.
    let out = run(&[
        "deployment",
        "create",
        "--name",
        "production",
        "--environment",
        "prod",
        "--git-rev",
        "main",
    ]);
    assert!(ok(&out).contains("Created deployment `production`"));
    assert!(dir.join(".meltano/cloud/control-plane.db").exists());
    let out = run(&[
        "schedule",
        "enable",
        "--deployment",
        "production",
        "--schedule",
        "daily-refresh",
    ]);
    ok(&out);
    // Terminal tables fit the width they are given, cutting long cells with `…`.
    let narrow = Command::new(BIN)
        .current_dir(dir)
        .args(["schedule", "list"])
        .env("MELTANO_CLOUD_CONFIG_PATH", &config)
        .env("COLUMNS", "50")
        .env_remove("MELTANO_CLOUD_API_URL")
        .env_remove("MELTANO_CLOUD_TOKEN")
        .env_remove("MELTANO_CLOUD_PROJECT")
        .output()
        .unwrap();
    let table = ok(&narrow);
    assert!(table.lines().count() == 3, "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 50), "{table}");
    // Names a user copies into the next command are never cut; headers neither.
    assert!(table.contains("production  daily-refresh"), "{table}");
    assert!(table.lines().next().unwrap().contains("ENABLED"), "{table}");
    // Too narrow for the key columns: the table overflows rather than cut a name.
    let narrow = Command::new(BIN)
        .current_dir(dir)
        .args(["schedule", "list"])
        .env("MELTANO_CLOUD_CONFIG_PATH", &config)
        .env("COLUMNS", "20")
        .env_remove("MELTANO_CLOUD_API_URL")
        .env_remove("MELTANO_CLOUD_TOKEN")
        .env_remove("MELTANO_CLOUD_PROJECT")
        .output()
        .unwrap();
    let table = ok(&narrow);
    assert!(table.contains("production  daily-refresh"), "{table}");
    let out = run(&["schedule", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let enabled: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["enabled"] == true)
        .map(|s| s["schedule_name"].as_str().unwrap())
        .collect();
    assert_eq!(enabled, ["daily-refresh"]);
    let out = run(&[
        "schedule",
        "describe",
        "--deployment",
        "production",
        "--schedule",
        "daily-refresh",
    ]);
    assert!(ok(&out).contains("Runs/day:   1"));
    ok(&cli(
        dir,
        &config,
        &["config", "env", "set", "--key", "LOCAL_SECRET"],
        Some("v\n"),
    ));
    let out = run(&["config", "env", "list"]);
    assert!(ok(&out).contains("LOCAL_SECRET"));
    let out = run(&["project", "list"]);
    assert!(ok(&out).contains("local") || out.status.success());
    let out = run(&["history"]);
    assert!(ok(&out).contains("No executions found."));
    // Runs execute in the foreground (tests/commands/local_runs.rs); without meltano the
    // command says so before starting anything.
    let out = run(&[
        "run",
        "daily-refresh",
        "--deployment",
        "production",
        "--meltano-bin",
        "/nonexistent/meltano",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot find the meltano executable"), "{err}");
    let out = run(&["config", "env", "delete", "LOCAL_SECRET", "--yes"]);
    ok(&out);
    let out = run(&["deployment", "delete", "--name", "production", "--yes"]);
    ok(&out);
    let out = run(&["deployment", "list", "--format", "json"]);
    assert_eq!(ok(&out).trim(), "[]");
}
