//! The binary against a real server: apply then plan converges, edits give exactly the
//! expected changes, a schedule added by a new commit is redeployed before it is enabled,
//! stale saved plans are refused, the lock serializes applies, a failure part-way leaves a
//! report and the next apply converges, import round-trips.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{BIN, ServerOptions, Store, TestRepo, TestServer};

const CLOUD_YML: &str = r#"version: 1
project: jaffle-shop
deployments:
  production:
    environment: prod
    git_rev: main
    schedules: [daily-refresh]
    protected: true
  staging:
    environment: staging
    git_rev: main
    schedules: []
"#;

struct Env {
    server: TestServer,
    /// Where the CLI is pointed (a replica of `server` once one is started).
    url: String,
    repo: TestRepo,
    org: String,
    pid: String,
    token: String,
    home: tempfile::TempDir,
}

impl Env {
    fn new(store: Store) -> Env {
        Env::with(store, ServerOptions::new())
    }

    fn with(store: Store, options: ServerOptions) -> Env {
        let repo = TestRepo::new();
        let server = TestServer::start(store, options);
        let (org, pid, token) = server.bootstrap(&repo);
        let env = Env {
            url: server.url().to_string(),
            server,
            repo,
            org,
            pid,
            token,
            home: tempfile::tempdir().expect("tempdir"),
        };
        env.write("cloud.yml", CLOUD_YML);
        env
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.repo.path().join(rel), text).expect("write");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.repo.path())
            .env("MELTANO_CLOUD_API_URL", &self.url)
            .env("MELTANO_CLOUD_TOKEN", &self.token)
            .env("MELTANO_CLOUD_ORG", &self.org)
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.home.path().join("config.json"),
            )
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("MELTANO_CLOUD_PROJECT")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run meltano-cloud")
    }

    /// Runs and asserts the exit code; returns stdout.
    fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "meltano-cloud {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        stdout
    }

    /// Effective changes of a JSON plan as `address action`.
    fn changes(&self) -> Vec<String> {
        let out = self.expect(&["plan", "--format", "json"], 0);
        let doc: Value = serde_json::from_str(&out).expect("plan JSON");
        doc["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter(|c| c["actions"][0] != "no-op")
            .map(|c| {
                format!(
                    "{} {}",
                    c["address"].as_str().unwrap(),
                    c["actions"][0].as_str().unwrap()
                )
            })
            .collect()
    }

    fn snapshot(&self) -> Value {
        let url = format!(
            "{}/gitops/v1/{}/{}/snapshot",
            self.server.url(),
            self.org,
            self.pid
        );
        let out = Command::new("curl")
            .args([
                "-sS",
                "-H",
                &format!("Authorization: Bearer {}", self.token),
                &url,
            ])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).expect("snapshot JSON")
    }

    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("{}{}", self.url, path);
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", &format!("Authorization: Bearer {}", self.token)]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = cmd.arg(&url).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.repo.path().join(rel)
    }
}

/// A diagnostic with miette's line wrapping undone.
fn flat(s: &str) -> String {
    s.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_line(out: &str, prefix: &str) -> bool {
    out.lines().any(|l| l.starts_with(prefix))
}

fn apply_then_plan_converges(store: Store) {
    let env = Env::new(store);
    let plan = env.expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        plan.contains("Plan: 3 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    assert!(
        plan.contains("  # deployment.production will be created"),
        "{plan}"
    );
    assert!(
        plan.contains("  # schedule.production/daily-refresh will be created"),
        "{plan}"
    );

    let out = env.expect(&["apply", "--auto-approve"], 0);
    assert!(
        has_line(&out, "deployment.production: Creating... Created ("),
        "{out}"
    );
    assert!(
        has_line(
            &out,
            "schedule.production/daily-refresh: Enabling... Enabled ("
        ),
        "{out}"
    );
    assert!(
        out.contains("Apply complete! Changes: 3 added, 0 changed, 0 destroyed."),
        "{out}"
    );

    let plan = env.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(
        plan.contains("No changes. The control plane matches cloud.yml."),
        "{plan}"
    );

    let snap = env.snapshot();
    let prod = snap["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment_name"] == "production")
        .unwrap();
    assert_eq!(prod["git_rev_hash"], env.repo.head());
    let enabled: Vec<&str> = prod["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["enabled"] == true)
        .map(|s| s["schedule_name"].as_str().unwrap())
        .collect();
    assert_eq!(enabled, ["daily-refresh"]);
    assert!(snap["lock"].is_null(), "the lock is released: {snap}");

    // An audit record of the apply.
    let (code, body) = env.http(
        "GET",
        &format!("/gitops/v1/{}/{}/audit", env.org, env.pid),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"outcome\":\"succeeded\""), "{body}");
    assert!(body.contains("deployment.production"), "{body}");
}

#[test]
fn apply_then_plan_converges_sqlite() {
    apply_then_plan_converges(Store::Sqlite);
}

#[test]
fn apply_then_plan_converges_postgres() {
    apply_then_plan_converges(Store::Postgres);
}

#[test]
fn editing_cloud_yml_gives_exactly_the_expected_changes() {
    let env = Env::new(Store::Sqlite);
    env.expect(&["apply", "--auto-approve"], 0);
    env.write(
        "cloud.yml",
        &CLOUD_YML
            .replace("schedules: [daily-refresh]", "schedules: [hourly-sync]")
            .replace("environment: staging", "environment: dev"),
    );
    assert_eq!(
        env.changes(),
        [
            "deployment.staging update",
            "schedule.production/daily-refresh update",
            "schedule.production/hourly-sync update",
        ]
    );
    let plan = env.expect(&["plan"], 0);
    assert!(
        plan.contains("  # (redeploy: environment changed from staging to dev)"),
        "{plan}"
    );
    assert!(
        plan.contains("      ~ enabled    = true -> false"),
        "{plan}"
    );
    env.expect(&["apply", "--auto-approve"], 0);
    assert!(env.changes().is_empty());
}

#[test]
fn a_schedule_added_by_a_new_commit_is_redeployed_before_it_is_enabled() {
    let env = Env::new(Store::Sqlite);
    env.expect(&["apply", "--auto-approve"], 0);
    let old = env.repo.head();
    let meltano = std::fs::read_to_string(env.path("meltano.yml")).unwrap();
    let new = env.repo.commit_meltano_yml(&format!(
        "{meltano}- name: weekly-backfill\n  interval: '@weekly'\n  job: refresh\n"
    ));
    env.write(
        "cloud.yml",
        &CLOUD_YML.replace(
            "schedules: [daily-refresh]",
            "schedules: [daily-refresh, weekly-backfill]",
        ),
    );

    assert_eq!(
        env.changes(),
        [
            "deployment.production update",
            "deployment.staging update",
            "schedule.production/weekly-backfill create"
        ]
    );
    let plan = env.expect(&["plan"], 0);
    let reason = format!(
        "  # (redeploy: tracked rev main moved from {} to {})",
        &old[..7],
        &new[..7]
    );
    assert!(plan.contains(&reason), "{plan}");
    assert!(plan.contains("added in meltano.yml: the redeploy of deployment.production creates it, then it is enabled"), "{plan}");

    let out = env.expect(&["apply", "--auto-approve", "--parallelism", "1"], 0);
    let pos = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {out}"))
    };
    assert!(
        pos("deployment.production: Redeploying... Redeployed")
            < pos("schedule.production/weekly-backfill: Enabling... Enabled")
    );
    assert!(env.changes().is_empty());
}

#[test]
fn a_stale_saved_plan_is_rejected_and_a_fresh_one_applies() {
    let env = Env::new(Store::Sqlite);
    let planfile = env.path("tfplan.json");
    let out = env.expect(&["plan", "-o", planfile.to_str().unwrap()], 0);
    assert!(out.contains("meltano-cloud apply "), "{out}");
    let saved = std::fs::read_to_string(&planfile).unwrap();
    assert!(saved.contains("\"format\": \"meltano-cloud-plan\""));

    // `show` renders it the way plan did.
    let shown = env.expect(&["show", planfile.to_str().unwrap()], 0);
    assert!(
        shown.contains("Plan: 3 to add, 0 to change, 0 to destroy."),
        "{shown}"
    );

    // Someone changes the project by hand in between.
    let (code, body) = env.http(
        "POST",
        &format!("/deployments/v1/{}/{}/hotfix", env.org, env.pid),
        Some(r#"{"environment_name":"dev","git_rev":"main"}"#),
    );
    assert!(code < 300, "{code} {body}");
    let out = env.run(&["apply", planfile.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(flat(&stderr).contains("Saved plan is stale"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        format!("{stdout}{stderr}")
            .matches("Control plane:")
            .count(),
        1,
        "the header is printed once: {stdout}{stderr}"
    );
    assert!(stdout.contains("project jaffle-shop)"), "{stdout}");
    assert!(
        env.snapshot()["deployments"].as_array().unwrap().len() == 1,
        "nothing applied"
    );
    assert!(
        env.snapshot()["lock"].is_null(),
        "lock released after the refusal"
    );

    env.expect(&["plan", "-o", planfile.to_str().unwrap()], 0);
    let out = env.expect(&["apply", planfile.to_str().unwrap()], 0);
    assert!(out.contains("Apply complete!"), "{out}");
    assert!(env.changes().is_empty());
}

#[test]
fn the_lock_serializes_applies() {
    let env = Env::new(Store::Sqlite);
    let lock_path = format!("/gitops/v1/{}/{}/lock", env.org, env.pid);
    let (code, body) = env.http("POST", &lock_path, Some(r#"{"lock_id":"other-apply","holder":"alice@laptop","operation":"apply","ttl_seconds":300}"#));
    assert!(code < 300, "{code} {body}");

    let out = env.run(&["apply", "--auto-approve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        flat(&stderr).contains("the project lock is held by alice@laptop for apply"),
        "{stderr}"
    );
    assert!(
        flat(&stderr).contains("meltano-cloud force-unlock other-apply"),
        "{stderr}"
    );
    assert_eq!(env.snapshot()["deployments"].as_array().unwrap().len(), 0);

    // Waiting: the other holder releases after a moment.
    let child = env
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, _) = env.http("DELETE", &format!("{lock_path}/other-apply"), None);
    assert!(code < 300);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        flat(&stderr).contains("Waiting for the project lock held by alice@laptop"),
        "{stderr}"
    );

    // Two applies at once: both finish, one after the other, and the state converges.
    env.write(
        "cloud.yml",
        &CLOUD_YML.replace("schedules: []", "schedules: [hourly-sync]"),
    );
    let a = env
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = env
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let outs = [
        String::from_utf8_lossy(&a.stdout).to_string(),
        String::from_utf8_lossy(&b.stdout).to_string(),
    ];
    assert_eq!(
        outs.iter()
            .filter(|o| o.contains("Enabling... Enabled"))
            .count(),
        1,
        "only one of them had work left: {outs:#?}"
    );
    assert!(env.changes().is_empty());
}

#[test]
fn force_unlock_removes_a_stuck_lock() {
    let env = Env::new(Store::Sqlite);
    let lock_path = format!("/gitops/v1/{}/{}/lock", env.org, env.pid);
    env.http(
        "POST",
        &lock_path,
        Some(r#"{"lock_id":"stuck","holder":"ci run 7","operation":"apply","ttl_seconds":3600}"#),
    );
    let out = env.run(&["force-unlock", "123"]);
    let stderr = flat(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("force_unlock::other_lock"), "{stderr}");
    assert!(
        stderr.contains("`stuck` is, held by ci run 7 for apply since"),
        "{stderr}"
    );
    // (miette may wrap at the hyphen of `force-unlock`.)
    assert!(stderr.contains("unlock stuck`"), "{stderr}");
    let out = env.run(&["force-unlock", "stuck"]);
    assert_eq!(out.status.code(), Some(1), "asks, and stdin is no terminal");
    assert!(flat(&String::from_utf8_lossy(&out.stderr)).contains("pass --yes"));
    let out = env.expect(&["force-unlock", "stuck", "--yes"], 0);
    assert!(
        out.contains("Lock stuck of project jaffle-shop was removed."),
        "{out}"
    );
    let out = env.expect(&["force-unlock", "stuck"], 0);
    assert!(
        out.contains("No lock is held on project jaffle-shop; nothing to remove."),
        "{out}"
    );
    env.expect(&["apply", "--auto-approve"], 0);
}

#[test]
fn a_failure_part_way_leaves_a_report_and_the_next_apply_converges() {
    let env = Env::new(Store::Sqlite);
    // `qa` exists in the working tree's meltano.yml but not in the commit the control
    // plane deploys, so the server refuses that deployment while the rest goes through.
    let meltano = std::fs::read_to_string(env.path("meltano.yml")).unwrap();
    let with_qa = meltano.replacen("- name: prod\n", "- name: prod\n- name: qa\n", 1);
    assert_ne!(with_qa, meltano);
    env.write("meltano.yml", &with_qa);
    env.write("cloud.yml", &format!("{CLOUD_YML}  qa:\n    environment: qa\n    git_rev: main\n    schedules: [hourly-sync]\n"));

    let out = env.run(&["apply", "--auto-approve"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        has_line(&stdout, "deployment.qa: Creating... Failed ("),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "schedule.qa/hourly-sync: Not applied: depends on deployment.qa, which was not applied"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Applied:\n"), "{stdout}");
    assert!(stdout.contains("  + deployment.production"), "{stdout}");
    assert!(stdout.contains("Failed:\n  + deployment.qa: "), "{stdout}");
    assert!(
        stdout.contains("Not applied:\n  + schedule.qa/hourly-sync"),
        "{stdout}"
    );
    assert!(
        flat(&stderr).contains("Apply failed: 1 change(s) failed, 1 not applied, 3 applied"),
        "{stderr}"
    );
    assert!(
        env.snapshot()["lock"].is_null(),
        "lock released after the failure"
    );
    let (_, audit) = env.http(
        "GET",
        &format!("/gitops/v1/{}/{}/audit", env.org, env.pid),
        None,
    );
    assert!(audit.contains("\"outcome\":\"partial\""), "{audit}");

    assert_eq!(
        env.changes(),
        ["deployment.qa create", "schedule.qa/hourly-sync create"]
    );
    env.repo.commit_meltano_yml(&with_qa);
    let out = env.expect(&["apply", "--auto-approve"], 0);
    assert!(out.contains("Apply complete!"), "{out}");
    assert!(env.changes().is_empty());
}

#[test]
fn apply_asks_and_refuses_without_a_terminal() {
    let env = Env::new(Store::Sqlite);
    let out = env.run(&["apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&stderr).contains("refusing to ask for confirmation: stdin is not a terminal"),
        "{stderr}"
    );
    assert_eq!(env.snapshot()["deployments"].as_array().unwrap().len(), 0);
}

#[test]
fn apply_in_ci_refuses_the_local_fallback() {
    let env = Env::new(Store::Sqlite);
    let out = env
        .command(&["apply", "--auto-approve"])
        .env("CI", "true")
        .env_remove("MELTANO_CLOUD_API_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat(&stderr).contains("refusing to apply to the local control plane in CI"),
        "{stderr}"
    );
}

#[test]
fn destroying_everything_needs_a_flag_and_protected_deployments_stay() {
    let env = Env::new(Store::Sqlite);
    let out = env.expect(&["apply", "--auto-approve"], 0);
    assert!(out.contains("Apply complete"), "{out}");
    let snap = env.snapshot();
    let protected: Vec<(String, bool)> = snap["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deployment_name"].as_str().unwrap().to_string(),
                d["protected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(protected.contains(&("production".into(), true)), "{snap}");
    assert!(protected.contains(&("staging".into(), false)), "{snap}");

    // Removing the entry does not remove the guard: the control plane remembers it.
    let empty = "version: 1\nproject: jaffle-shop\ndeployments: {}\nprune:\n  deployments: true\n";
    env.write("cloud.yml", empty);
    let out = env.run(&["plan"]);
    let stderr = flat(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("plan::protected_delete"), "{stderr}");
    assert!(
        stderr.contains("deployment `production` is protected on the control plane"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`protected: false` and apply first"),
        "{stderr}"
    );

    // Unprotect first (a flag-only update, not a redeploy), then deleting all needs a flag.
    env.write(
        "cloud.yml",
        &CLOUD_YML.replace("protected: true", "protected: false"),
    );
    let out = env.expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        out.contains("# (protected changed from true to false)"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{out}"
    );
    env.expect(&["apply", "--auto-approve"], 0);
    env.write("cloud.yml", empty);
    let out = env.run(&["plan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let flat = flat(&stderr);
    assert!(
        flat.contains(
            "this plan would delete every deployment of the project (production, staging)"
        ),
        "{stderr}"
    );
    assert!(flat.contains("--allow-destroy-all"), "{stderr}");
    let out = env.expect(&["plan", "--allow-destroy-all", "--detailed-exitcode"], 2);
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 2 to destroy."),
        "{out}"
    );

    // Protected in cloud.yml only (not yet applied): --destroy still refuses.
    env.write("cloud.yml", CLOUD_YML);
    let out = env.run(&["plan", "--destroy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("deployment `production` is protected and cannot be deleted")
    );
    // Protected remotely: --destroy refuses whatever cloud.yml says.
    env.expect(&["apply", "--auto-approve"], 0);
    env.write(
        "cloud.yml",
        &CLOUD_YML.replace("protected: true", "protected: false"),
    );
    let out = env.run(&["plan", "--destroy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        flat_str(&out.stderr).contains("deployment `production` is protected on the control plane"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn flat_str(b: &[u8]) -> String {
    flat(&String::from_utf8_lossy(b))
}

#[test]
fn import_writes_a_cloud_yml_that_plans_no_changes() {
    let env = Env::new(Store::Sqlite);
    env.write(
        "cloud.yml",
        &CLOUD_YML.replace("schedules: []", "schedules: [hourly-sync, daily-refresh]"),
    );
    env.expect(&["apply", "--auto-approve"], 0);
    env.http(
        "PUT",
        &format!("/secrets/v1/{}/{}/", env.org, env.pid),
        Some(r#"{"name":"TAP_GITLAB_PASSWORD","value":"by-hand"}"#),
    );

    let out = env.run(&["import"]);
    assert_eq!(out.status.code(), Some(1), "refuses to overwrite");
    let out = env.expect(&["import", "--force", "--project", "jaffle-shop"], 0);
    assert!(
        out.contains("Wrote cloud.yml with 2 deployments and 1 secret reference to fill in."),
        "{out}"
    );
    let written = std::fs::read_to_string(env.path("cloud.yml")).unwrap();
    assert!(
        written.contains("    schedules: [daily-refresh, hourly-sync]"),
        "{written}"
    );
    assert!(
        written.contains("    git_rev: main\n    protected: true\n"),
        "protected round-trips: {written}"
    );
    assert!(
        written.contains("#   TAP_GITLAB_PASSWORD: { sops: secrets/jaffle-shop.sops.yaml }"),
        "{written}"
    );
    // Outside the Meltano project the file is still written, with one warning per problem.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("cloud.yml");
    let out = env.run(&[
        "import",
        "--project",
        "jaffle-shop",
        "--file",
        file.to_str().unwrap(),
    ]);
    let stderr = flat(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(file.exists());
    assert!(stderr.contains("spec::meltano_missing"), "{stderr}");
    assert!(stderr.contains("⚠"), "a warning, not an error: {stderr}");
    assert!(!stderr.contains("×"), "{stderr}");
    assert!(
        stderr.contains("run `import` in the folder that holds meltano.yml"),
        "{stderr}"
    );

    let plan = env.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(plan.contains("No changes."), "{plan}");
    assert!(
        plan.contains("secret.TAP_GITLAB_PASSWORD: not declared in cloud.yml"),
        "{plan}"
    );
}

fn tool(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: {}", crate::support::SETUP_HINT))
}

#[test]
fn secrets_are_planned_without_a_key_and_applied_with_it() {
    let env = Env::new(Store::Sqlite);
    let sops = tool("SOPS_BIN");
    let key = env.home.path().join("age-key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen (install age)");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&key).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key")
        .to_string();

    std::fs::create_dir_all(env.path("secrets")).unwrap();
    let plain = env.home.path().join("plain.yaml");
    std::fs::write(&plain, "tap_gitlab:\n    password: planted-Secret-Value-1\nTARGET_SNOWFLAKE_PASSWORD: planted-Secret-Value-2\n").unwrap();
    let out = Command::new(&sops)
        .args([
            "encrypt",
            "--age",
            &recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ])
        .arg(&plain)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(env.path("secrets/prod.sops.yaml"), &out.stdout).unwrap();
    env.write(
        "cloud.yml",
        &format!("{CLOUD_YML}secrets:\n  TAP_GITLAB_PASSWORD: {{ sops: secrets/prod.sops.yaml, key: tap_gitlab.password }}\n  TARGET_SNOWFLAKE_PASSWORD: {{ sops: secrets/prod.sops.yaml }}\n"),
    );

    // Planning needs no key.
    let planfile = env.path("plan.json");
    let plan = env.expect(&["plan", "-o", planfile.to_str().unwrap()], 0);
    assert!(
        plan.contains("  # secret.TAP_GITLAB_PASSWORD will be created"),
        "{plan}"
    );
    assert!(
        plan.contains("      + value       = (sensitive value)"),
        "{plan}"
    );

    let with_key = |args: &[&str]| {
        let out = env
            .command(args)
            .env("SOPS_AGE_KEY_FILE", &key)
            .env("SOPS_BIN", &sops)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}\n{stdout}\n{stderr}");
        for leak in [&stdout, &stderr] {
            assert!(
                !leak.contains("planted-Secret-Value"),
                "a value leaked: {leak}"
            );
        }
        stdout
    };
    let out = with_key(&["apply", planfile.to_str().unwrap()]);
    assert!(
        has_line(&out, "secret.TAP_GITLAB_PASSWORD: Creating... Created ("),
        "{out}"
    );
    assert!(env.changes().is_empty());

    // Changing one value in the sops file changes exactly that secret.
    let out = Command::new(&sops)
        .args(["set"])
        .arg(env.path("secrets/prod.sops.yaml"))
        .args([
            "[\"tap_gitlab\"][\"password\"]",
            "\"planted-Secret-Value-3\"",
        ])
        .env("SOPS_AGE_KEY_FILE", &key)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.changes(), ["secret.TAP_GITLAB_PASSWORD update"]);
    let plan = env.expect(&["plan"], 0);
    assert!(
        plan.contains("  # (value changed in secrets/prod.sops.yaml)"),
        "{plan}"
    );

    // A saved plan is refused when the value changed after planning: it was not reviewed.
    env.expect(&["plan", "-o", planfile.to_str().unwrap()], 0);
    let out = Command::new(&sops)
        .args(["set"])
        .arg(env.path("secrets/prod.sops.yaml"))
        .args([
            "[\"tap_gitlab\"][\"password\"]",
            "\"planted-Secret-Value-4\"",
        ])
        .env("SOPS_AGE_KEY_FILE", &key)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = env
        .command(&["apply", planfile.to_str().unwrap()])
        .env("SOPS_AGE_KEY_FILE", &key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(flat(&stderr).contains("the value of TAP_GITLAB_PASSWORD changed in secrets/prod.sops.yaml since the plan was made"), "{stderr}");
    with_key(&["apply", "--auto-approve"]);
    assert!(env.changes().is_empty());

    for file in [planfile.clone(), env.server.data_dir().to_path_buf()] {
        if file.is_file() {
            assert!(
                !std::fs::read_to_string(&file)
                    .unwrap()
                    .contains("planted-Secret-Value")
            );
        }
    }
    assert!(!env.server.logs().contains("planted-Secret-Value"));
}

#[test]
fn a_server_failing_mid_apply_leaves_a_report_and_the_next_apply_converges() {
    // Every schedule change fails with 503 (after the client's retries); the deployments
    // before them go through.
    let mut env = Env::with(
        Store::Sqlite,
        ServerOptions::new().args(["--simulate-faults", "PUT:/schedules/*=1@503"]),
    );
    let out = env.run(&["apply", "--auto-approve"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        has_line(&stdout, "deployment.production: Creating... Created ("),
        "{stdout}"
    );
    assert!(
        has_line(
            &stdout,
            "schedule.production/daily-refresh: Enabling... Failed ("
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Failed:\n  + schedule.production/daily-refresh: "),
        "{stdout}"
    );
    assert!(
        flat(&stderr).contains("Apply failed: 1 change(s) failed, 0 not applied, 2 applied"),
        "{stderr}"
    );
    assert!(env.snapshot()["lock"].is_null());

    // The fault goes away (same database, a server without the knob).
    let healthy = env.server.replica(ServerOptions::new());
    env.url = healthy.url().to_string();
    assert_eq!(env.changes(), ["schedule.production/daily-refresh update"]);
    env.expect(&["apply", "--auto-approve"], 0);
    assert!(env.changes().is_empty());
}

#[test]
fn ctrl_c_stops_the_apply_reports_and_releases_the_lock() {
    use std::io::BufRead;
    let env = Env::with(
        Store::Sqlite,
        ServerOptions::new().args(["--simulate-latency", "300ms"]),
    );
    let mut child = env
        .command(&["apply", "--auto-approve", "--parallelism", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("deployment.") && line.contains("Created (") {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            break;
        }
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{seen}\n{stderr}");
    assert!(
        flat(&stderr).contains("Apply interrupted: 1 change(s) applied, 2 not applied"),
        "{seen}\n{stderr}"
    );
    assert!(seen.contains("Not applied:\n"), "{seen}");
    assert!(env.snapshot()["lock"].is_null(), "lock released on ctrl-c");
    env.expect(&["apply", "--auto-approve"], 0);
    assert!(env.changes().is_empty());
}

/// The embedded local control plane (`MELTANO_CLOUD_API_URL=local`): state in
/// `.meltano/cloud/` of the Meltano project, no server and no token.
struct Local {
    repo: TestRepo,
    home: tempfile::TempDir,
}

impl Local {
    fn new() -> Local {
        let local = Local {
            repo: TestRepo::new(),
            home: tempfile::tempdir().expect("tempdir"),
        };
        local.write("cloud.yml", CLOUD_YML);
        local
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.repo.path().join(rel), text).expect("write");
    }

    fn expect(&self, args: &[&str], code: i32) -> (String, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.repo.path())
            .env("MELTANO_CLOUD_API_URL", "local")
            .env(
                "MELTANO_CLOUD_CONFIG_PATH",
                self.home.path().join("config.json"),
            )
            .env("NO_COLOR", "1")
            .env_remove("MELTANO_CLOUD_TOKEN")
            .env_remove("MELTANO_CLOUD_ORG")
            .env_remove("MELTANO_CLOUD_PROJECT")
            .env_remove("GITHUB_ACTIONS")
            .env("CI", "true")
            .stdin(Stdio::null())
            .output()
            .expect("run meltano-cloud");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "meltano-cloud {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        (stdout, stderr)
    }
}

#[test]
fn local_mode_apply_plan_new_schedule_and_stale_plan() {
    // CI=true is set: naming `local` explicitly is allowed.
    let local = Local::new();
    let (plan, _) = local.expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        plan.starts_with("Control plane: local (.meltano/cloud/control-plane.db)\n"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 3 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    let (out, _) = local.expect(&["apply", "--auto-approve"], 0);
    assert!(
        out.contains("Apply complete! Changes: 3 added, 0 changed, 0 destroyed."),
        "{out}"
    );
    let (plan, _) = local.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(plan.contains("No changes."), "{plan}");
    assert!(
        local
            .repo
            .path()
            .join(".meltano/cloud/control-plane.db")
            .is_file()
    );

    // A new commit adds a schedule listed in cloud.yml: redeploy, then enable.
    let meltano = std::fs::read_to_string(local.repo.path().join("meltano.yml")).unwrap();
    local.repo.commit_meltano_yml(&format!(
        "{meltano}- name: weekly-backfill\n  interval: '@weekly'\n  job: refresh\n"
    ));
    local.write(
        "cloud.yml",
        &CLOUD_YML.replace(
            "schedules: [daily-refresh]",
            "schedules: [daily-refresh, weekly-backfill]",
        ),
    );
    let planfile = local.repo.path().join("plan.json");
    let (plan, _) = local.expect(
        &[
            "plan",
            "-o",
            planfile.to_str().unwrap(),
            "--detailed-exitcode",
        ],
        2,
    );
    assert!(
        plan.contains("Plan: 1 to add, 2 to change, 0 to destroy."),
        "{plan}"
    );

    // Applying something else first makes the saved plan stale.
    let stale = local.repo.path().join("stale.json");
    std::fs::copy(&planfile, &stale).unwrap();
    let (out, _) = local.expect(
        &["apply", planfile.to_str().unwrap(), "--parallelism", "1"],
        0,
    );
    let pos = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {out}"))
    };
    assert!(
        pos("deployment.production: Redeploying... Redeployed")
            < pos("schedule.production/weekly-backfill: Enabling... Enabled")
    );
    let (_, err) = local.expect(&["apply", stale.to_str().unwrap()], 1);
    assert!(flat(&err).contains("Saved plan is stale"), "{err}");
    let (plan, _) = local.expect(&["plan", "--detailed-exitcode"], 0);
    assert!(plan.contains("No changes."), "{plan}");
}
