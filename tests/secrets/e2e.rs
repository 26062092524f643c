//! Secrets end to end: `plan` without any key, `apply` with the key against a real
//! `meltano-cloud server`, `sops set` of one value, every sops failure through `apply`, and
//! LEAK checks: planted values must never appear in stdout, stderr, plan files (every
//! format), the audit record, the server's logs or its database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixture::{clean_env, isolate, sops_bin};
use crate::support::{BIN, ServerOptions, Store, TestRepo, TestServer, client};

/// Distinctive values, one per secret; made unique per test run so that a stale file can
/// never make a leak check pass or fail by accident.
struct Canaries {
    gitlab: String,
    snowflake: String,
    slack: String,
    changed: String,
}

impl Canaries {
    fn new() -> Canaries {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Canaries {
            gitlab: format!("glpat-CANARY{run}gitlab"),
            snowflake: format!("sf-CANARY{run}snowflake"),
            slack: format!("https://hooks.example.test/CANARY{run}slack"),
            changed: format!("glpat-CANARY{run}rotated"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.gitlab, &self.snowflake, &self.slack, &self.changed]
    }

    /// The distinctive middle of each value too, so a truncated value is caught as well.
    fn needles(&self) -> Vec<String> {
        let mut out: Vec<String> = self.all().iter().map(|s| s.to_string()).collect();
        for v in self.all() {
            let start = v.find("CANARY").unwrap();
            out.push(v[start..].to_string());
        }
        out
    }
}

/// A Meltano project in a git repository with cloud.yml and sops files encrypted for a
/// fresh age key, registered on a real server.
struct Project {
    repo: TestRepo,
    server: TestServer,
    org: String,
    project_id: String,
    token: String,
    key_dir: tempfile::TempDir,
    /// Everything every command printed, for the leak checks.
    transcript: std::cell::RefCell<String>,
}

const CLOUD_YML: &str = "version: 1
project: jaffle-shop
deployments:
  production:
    environment: prod
    git_rev: main
    schedules: [daily-refresh]
secrets:
  TAP_GITLAB_PASSWORD: { sops: secrets/prod.sops.yaml, key: tap_gitlab.password }
  TARGET_SNOWFLAKE_PASSWORD: { sops: secrets/prod.sops.yaml }
  SLACK_WEBHOOK: { sops: secrets/app.env }
";

impl Project {
    fn new(store: Store, canaries: &Canaries) -> Project {
        clean_env();
        let key_dir = tempfile::tempdir().unwrap();
        let key_file = key_dir.path().join("age-key.txt");
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&key_file)
            .output()
            .expect("age-keygen is on PATH (run `bash .ci/setup.sh`)");
        assert!(out.status.success());
        let public = std::fs::read_to_string(&key_file)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
            .unwrap();

        let repo = TestRepo::new();
        let dir = repo.path();
        std::fs::write(
            dir.join(".sops.yaml"),
            format!("creation_rules:\n  - age: {public}\n"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        std::fs::write(
            dir.join("secrets/prod.sops.yaml"),
            format!(
                "tap_gitlab:\n  password: {}\nTARGET_SNOWFLAKE_PASSWORD: {}\n",
                canaries.gitlab, canaries.snowflake
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("secrets/app.env"),
            format!("SLACK_WEBHOOK={}\n", canaries.slack),
        )
        .unwrap();
        for file in ["secrets/prod.sops.yaml", "secrets/app.env"] {
            let mut cmd = Command::new(sops_bin());
            isolate(&mut cmd, key_dir.path());
            let out = cmd
                .current_dir(dir)
                .args(["encrypt", "-i", file])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(dir.join("cloud.yml"), CLOUD_YML).unwrap();
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "cloud.yml and secrets"]);

        // The most verbose server logging: nothing it logs may hold a value.
        let server = TestServer::start(store, ServerOptions::new().args(["-vv"]));
        let (org, project_id, _owner) = server.bootstrap(&repo);
        let token = server.token(&org, "maintainer");
        Project {
            repo,
            server,
            org,
            project_id,
            token,
            key_dir,
            transcript: Default::default(),
        }
    }

    fn key_file(&self) -> PathBuf {
        self.key_dir.path().join("age-key.txt")
    }

    /// `meltano-cloud ARGS` in the project, against the server, with or without the key.
    fn run(&self, args: &[&str], with_key: bool) -> Output {
        self.run_with(args, with_key, &[])
    }

    fn run_with(&self, args: &[&str], with_key: bool, env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().map(|(k, v)| (*k, *v)));
        isolate(&mut cmd, self.key_dir.path());
        cmd.current_dir(self.repo.path())
            .args(args)
            .env("MELTANO_CLOUD_API_URL", self.server.url())
            .env("MELTANO_CLOUD_TOKEN", &self.token)
            .env("MELTANO_CLOUD_ORG", &self.org)
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.key_dir.path().join("settings.toml"),
            )
            .env("SOPS_BIN", sops_bin())
            .env("NO_COLOR", "1")
            .env_remove("CI");
        if with_key {
            cmd.env("SOPS_AGE_KEY_FILE", self.key_file());
        }
        let out = cmd.output().unwrap();
        let mut t = self.transcript.borrow_mut();
        t.push_str(&format!("$ meltano-cloud {}\n", args.join(" ")));
        t.push_str(&String::from_utf8_lossy(&out.stdout));
        t.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    fn sops_set(&self, file: &str, index: &str, json: &str) {
        let mut cmd = Command::new(sops_bin());
        isolate(&mut cmd, self.key_dir.path());
        let out = cmd
            .current_dir(self.repo.path())
            .env("SOPS_AGE_KEY_FILE", self.key_file())
            .args(["set", file, index, json])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn audit(&self) -> String {
        let url = format!(
            "{}/gitops/v1/{}/{}/audit",
            self.server.url(),
            self.org,
            self.project_id
        );
        let resp = client(&self.token).get(url).send().await.unwrap();
        assert!(resp.status().is_success(), "audit: {}", resp.status());
        resp.text().await.unwrap()
    }

    async fn snapshot(&self) -> serde_json::Value {
        let url = format!(
            "{}/gitops/v1/{}/{}/snapshot",
            self.server.url(),
            self.org,
            self.project_id
        );
        client(&self.token)
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every byte the store keeps: the SQLite files, or every row of every table.
    fn database_dump(&self) -> Vec<u8> {
        match self.server.db.sqlite_path() {
            Some(path) => {
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let p = PathBuf::from(format!("{}{suffix}", path.display()));
                    if let Ok(b) = std::fs::read(&p) {
                        bytes.extend(b);
                    }
                }
                assert!(!bytes.is_empty(), "no SQLite file at {}", path.display());
                bytes
            }
            None => {
                let tables = self.server.db.pg_rows(
                    "select table_name from information_schema.tables where table_schema = 'public'",
                );
                let mut dump = String::new();
                for row in tables {
                    let table = row[0].clone().unwrap();
                    for r in self
                        .server
                        .db
                        .pg_rows(&format!("select t::text from \"{table}\" t"))
                    {
                        dump.push_str(r[0].as_deref().unwrap_or(""));
                        dump.push('\n');
                    }
                }
                dump.into_bytes()
            }
        }
    }

    /// Fails when any planted value appears anywhere we can look.
    async fn assert_no_leak(&self, canaries: &Canaries, extra_files: &[&Path]) {
        let transcript = self.transcript.borrow().clone();
        let audit = self.audit().await;
        let mut places: Vec<(String, Vec<u8>)> = vec![
            ("command output".into(), transcript.into_bytes()),
            ("server logs".into(), self.server.logs().into_bytes()),
            ("audit record".into(), audit.into_bytes()),
            ("database".into(), self.database_dump()),
        ];
        for file in extra_files {
            places.push((file.display().to_string(), std::fs::read(file).unwrap()));
        }
        // Nothing decrypted may be left in the project folder either.
        for file in walk(self.repo.path()) {
            if !file.components().any(|c| c.as_os_str() == ".git") {
                places.push((file.display().to_string(), std::fs::read(&file).unwrap()));
            }
        }
        // Positive controls: each place really holds what it should, so a check that
        // looks at nothing cannot pass.
        let find = |name: &str| {
            let (_, bytes) = places.iter().find(|(p, _)| p == name).unwrap();
            String::from_utf8_lossy(bytes).into_owned()
        };
        assert!(
            find("server logs").contains("/gitops/v1/"),
            "the server logs hold no requests"
        );
        if self.snapshot().await["secrets"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            assert!(
                find("database").contains("TAP_GITLAB_PASSWORD"),
                "the database dump holds no secret rows"
            );
            assert!(
                find("audit record").contains("secret.TAP_GITLAB_PASSWORD"),
                "{}",
                find("audit record")
            );
        }
        for (place, bytes) in &places {
            let text = String::from_utf8_lossy(bytes);
            for needle in canaries.needles() {
                assert!(
                    !text.contains(&needle),
                    "a secret value leaked into {place}: found `{needle}`"
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn secret_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("# secret."))
        .map(|l| l.trim().to_string())
        .collect()
}

async fn plan_apply_plan(store: Store) {
    let canaries = Canaries::new();
    let p = Project::new(store, &canaries);
    let plans = tempfile::tempdir().unwrap();

    // Plan without any key: the three secrets will be created.
    let out = p.run(&["plan", "--detailed-exitcode"], false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        secret_lines(&out),
        [
            "# secret.SLACK_WEBHOOK will be created",
            "# secret.TAP_GITLAB_PASSWORD will be created",
            "# secret.TARGET_SNOWFLAKE_PASSWORD will be created",
        ],
        "{}",
        text(&out)
    );
    // Every plan format, saved and shown, verbose too.
    let saved = plans.path().join("plan.json");
    let out = p.run(&["plan", "-o", saved.to_str().unwrap()], false);
    assert!(out.status.success(), "{}", text(&out));
    for format in ["json", "markdown", "text"] {
        let out = p.run(&["-vv", "plan", "--format", format], false);
        assert!(out.status.success(), "{}", text(&out));
        let out = p.run(
            &["show", saved.to_str().unwrap(), "--format", format],
            false,
        );
        assert!(out.status.success(), "{}", text(&out));
    }

    // Apply without the key fails with the no-key diagnostic and sets nothing.
    let out = p.run(&["apply", "--auto-approve"], false);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("secrets::no_key"), "{err}");
    assert!(err.contains("SOPS_AGE_KEY_FILE"), "{err}");

    // Apply with the key sets them; the next plan shows no change.
    let out = p.run(&["-vv", "apply", "--auto-approve"], true);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["plan", "--detailed-exitcode"], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(secret_lines(&out).is_empty(), "{}", text(&out));

    // The control plane keeps the fingerprints the metadata reader computes.
    let snapshot = p.snapshot().await;
    let remote: Vec<(String, String)> = snapshot["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["fingerprint"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let spec = meltano_cloud::spec::load(&p.repo.path().join("cloud.yml")).unwrap();
    let local: Vec<(String, String)> = spec
        .secrets
        .values()
        .map(|e| (e.name.clone(), e.fingerprint.clone()))
        .collect();
    assert_eq!(remote, local);

    // `sops set` of one value: exactly one secret change, found without a key.
    p.sops_set(
        "secrets/prod.sops.yaml",
        r#"["tap_gitlab"]["password"]"#,
        &format!("\"{}\"", canaries.changed),
    );
    let saved2 = plans.path().join("plan2.json");
    let out = p.run(
        &[
            "plan",
            "--detailed-exitcode",
            "-o",
            saved2.to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        secret_lines(&out),
        ["# secret.TAP_GITLAB_PASSWORD will be updated in-place"],
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("value changed in secrets/prod.sops.yaml"),
        "{}",
        text(&out)
    );
    // Apply the saved plan with the key; then nothing is left to do.
    let out = p.run(&["apply", saved2.to_str().unwrap()], true);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["plan", "--detailed-exitcode"], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A value set by hand (no fingerprint) is planned as an update, so cloud.yml wins.
    let url = format!("{}/secrets/v1/{}/{}/", p.server.url(), p.org, p.project_id);
    let resp = client(&p.token)
        .put(url)
        .json(&serde_json::json!({"name": "SLACK_WEBHOOK", "value": "set-by-hand"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let out = p.run(&["plan", "--detailed-exitcode"], false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        secret_lines(&out),
        ["# secret.SLACK_WEBHOOK will be updated in-place"],
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("set by hand"), "{}", text(&out));

    p.assert_no_leak(&canaries, &[&saved, &saved2]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_without_key_apply_with_key_sqlite() {
    plan_apply_plan(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_without_key_apply_with_key_postgres() {
    plan_apply_plan(Store::Postgres).await;
}

/// Each sops failure stops apply before anything is sent, with its diagnostic, and leaks
/// nothing (the values are in the files, the failures are around them).
#[tokio::test(flavor = "multi_thread")]
async fn apply_failures_print_their_diagnostic_and_leak_nothing() {
    let canaries = Canaries::new();
    let p = Project::new(Store::Sqlite, &canaries);
    let dir = p.repo.path().to_path_buf();
    let original = std::fs::read_to_string(dir.join("secrets/prod.sops.yaml")).unwrap();

    // sops not installed.
    let out = p.run(
        &["apply", "--auto-approve", "--sops-bin", "/nonexistent/sops"],
        true,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("secrets::sops_not_installed"),
        "{}",
        text(&out)
    );

    // A value's ciphertext edited by hand: plan still works (it is a change), apply fails.
    let start = original.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
    let mut damaged = original.clone().into_bytes();
    damaged[start] = if damaged[start] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("secrets/prod.sops.yaml"), &damaged).unwrap();
    let out = p.run(&["-vv", "apply", "--auto-approve"], true);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("secrets::ciphertext_damaged") || t.contains("secrets::mac_mismatch"),
        "{t}"
    );

    // MAC mismatch: the file's MAC no longer matches (a value removed without sops).
    let tampered: String = original
        .lines()
        .filter(|l| !l.starts_with("TARGET_SNOWFLAKE_PASSWORD:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("secrets/prod.sops.yaml"), &tampered).unwrap();
    std::fs::write(
        dir.join("cloud.yml"),
        CLOUD_YML.replace(
            "  TARGET_SNOWFLAKE_PASSWORD: { sops: secrets/prod.sops.yaml }\n",
            "",
        ),
    )
    .unwrap();
    let out = p.run(&["apply", "--auto-approve"], true);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("secrets::mac_mismatch"),
        "{}",
        text(&out)
    );

    // No key.
    std::fs::write(dir.join("secrets/prod.sops.yaml"), &original).unwrap();
    std::fs::write(dir.join("cloud.yml"), CLOUD_YML).unwrap();
    let out = p.run(&["apply", "--auto-approve"], false);
    assert!(!out.status.success());
    assert!(text(&out).contains("secrets::no_key"), "{}", text(&out));

    // Nothing was set by any of the failed applies.
    let snapshot = p.snapshot().await;
    assert_eq!(
        snapshot["secrets"].as_array().map(Vec::len),
        Some(0),
        "{snapshot}"
    );

    // With the file restored, every value decrypts again.
    let out = p.run(&["secrets", "check"], true);
    assert!(out.status.success(), "{}", text(&out));
    p.assert_no_leak(&canaries, &[]).await;
}

/// In GitHub Actions, apply registers every value it decrypted with `::add-mask::` before
/// it prints anything about applying, and nowhere else does a value appear.
#[tokio::test(flavor = "multi_thread")]
async fn apply_in_github_actions_masks_every_value_first() {
    let canaries = Canaries::new();
    let p = Project::new(Store::Sqlite, &canaries);
    let summary = p.key_dir.path().join("summary.md");
    let out = p.run_with(
        &["apply", "--auto-approve"],
        true,
        &[
            ("GITHUB_ACTIONS", Path::new("true")),
            ("GITHUB_STEP_SUMMARY", &summary),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let masks: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("::add-mask::"))
        .collect();
    let mut masked: Vec<&str> = masks
        .iter()
        .map(|&i| lines[i].trim_start_matches("::add-mask::"))
        .collect();
    masked.sort();
    let mut expected = vec![
        canaries.gitlab.as_str(),
        canaries.slack.as_str(),
        canaries.snowflake.as_str(),
    ];
    expected.sort();
    assert_eq!(masked, expected, "{stdout}");
    // Every mask comes before the first line about a secret being set.
    let first_secret_line = lines
        .iter()
        .position(|l| l.starts_with("secret."))
        .expect("progress lines for the secrets");
    assert!(masks.iter().all(|&i| i < first_secret_line), "{stdout}");
    // No value anywhere but in the mask commands.
    for (i, line) in lines.iter().enumerate() {
        if !masks.contains(&i) {
            for needle in canaries.needles() {
                assert!(!line.contains(&needle), "line {i} holds a value: {line}");
            }
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    for needle in canaries.needles() {
        assert!(!stderr.contains(&needle), "stderr holds a value");
        assert!(!summary.contains(&needle), "the step summary holds a value");
    }
}
