//! The runner against a real SQLite file, a real git repository and real processes (a
//! stand-in `meltano` script); only the control plane's store is replaced by a fixed host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::*;

struct FixedHost {
    repo: PathBuf,
    target: RunTarget,
    schedules: Mutex<Vec<EnabledSchedule>>,
}

impl Host for FixedHost {
    fn enabled_schedules(&self) -> BoxFuture<'_, Result<Vec<EnabledSchedule>, HostError>> {
        let s = self.schedules.lock().unwrap().clone();
        async move { Ok(s) }.boxed()
    }
    fn target<'a>(
        &'a self,
        _org: &'a str,
        _project_id: &'a str,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunTarget>, HostError>> {
        let t = (deployment == self.target.deployment_name).then(|| self.target.clone());
        async move { Ok(t) }.boxed()
    }
    fn resolve_name<'a>(
        &'a self,
        _target: &'a RunTarget,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunName>, HostError>> {
        let r = (name != "nope").then(|| RunName::Job(name.to_owned()));
        async move { Ok(r) }.boxed()
    }
    fn secrets<'a>(
        &'a self,
        _org: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Zeroizing<String>)>, HostError>> {
        async move {
            Ok(vec![(
                "HELLO_SECRET".to_owned(),
                Zeroizing::new("s3cr3t-value".to_owned()),
            )])
        }
        .boxed()
    }
    fn repo_dir<'a>(
        &'a self,
        _org: &'a str,
        _project_id: &'a str,
    ) -> BoxFuture<'a, Result<PathBuf, HostError>> {
        let r = self.repo.clone();
        async move { Ok(r) }.boxed()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const STAND_IN: &str = r#"#!/bin/bash
# A stand-in for meltano: behaves according to the job name.
here="$(dirname "$0")"
if [ "$1" = install ]; then echo install >> "$here/installs"; echo "installing plugins"; exit 0; fi
job="$2"
echo "env=$MELTANO_ENVIRONMENT"
case "$job" in
  ok) for i in 1 2 3; do echo "line $i"; done ;;
  fail) echo "boom" >&2; exit 3 ;;
  slow) for i in $(seq 1 15); do echo "tick $i"; sleep 0.1; done ;;
  hang) sleep 300 & echo $! > "$here/child.pid"; wait ;;
  secret) echo "secret=$HELLO_SECRET"; echo "server-env=${SERVER_ONLY:-unset}" ;;
esac
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    runner: Runner,
    host: Arc<FixedHost>,
}

async fn fixture(tweak: impl FnOnce(&mut RunnerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join("proj")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("proj/meltano.yml"), "default_environment: dev\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "init"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);

    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let meltano = bin.join("meltano");
    std::fs::write(&meltano, STAND_IN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&meltano, std::fs::Permissions::from_mode(0o755)).unwrap();

    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", root.join("db.sqlite").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("../store/migrations/0002_runs.sql"))
        .execute(&pool)
        .await
        .unwrap();

    let mut cfg = RunnerConfig::new(meltano, root.join("data"));
    cfg.stop_grace = Duration::from_secs(2);
    cfg.lease_interval = Duration::from_millis(200);
    cfg.scheduler_tick = Duration::from_millis(100);
    cfg.clock = Clock::File(root.join("now"));
    tweak(&mut cfg);
    let host = Arc::new(FixedHost {
        repo,
        target: RunTarget {
            org: "acme".into(),
            project_id: "p1".into(),
            deployment_name: "prod".into(),
            environment_name: "prod-env".into(),
            git_rev_hash: head,
            root_path: "proj".into(),
        },
        schedules: Mutex::new(Vec::new()),
    });
    let runner = Runner::new(cfg, pool, host.clone());
    runner.start().await.unwrap();
    Fixture {
        _dir: dir,
        root,
        runner,
        host,
    }
}

async fn wait_end(f: &Fixture, id: &str) -> runs::ExecutionRow {
    for _ in 0..300 {
        let row = runs::get_execution(f.runner.pool(), "p1", id)
            .await
            .unwrap()
            .unwrap();
        if !row.is_running() {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} did not end");
}

async fn log_text(f: &Fixture, id: &str) -> Vec<String> {
    let (lines, _) = runs::read_logs(f.runner.pool(), id, 0, 250).await.unwrap();
    lines.into_iter().map(|l| l.message).collect()
}

#[tokio::test]
async fn success_failure_secrets_and_install_cache() {
    let f = fixture(|_| {}).await;
    let ok = f.runner.run_now("acme", "p1", "prod", "ok").await.unwrap();
    let row = wait_end(&f, &ok.execution_id).await;
    assert_eq!((row.status.as_str(), row.exit_code), ("SUCCEEDED", Some(0)));
    let log = log_text(&f, &ok.execution_id).await;
    let pos = |s: &str| {
        log.iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} in {log:?}"))
    };
    assert!(pos("installing plugins") < pos("env=prod-env"));
    assert!(pos("line 1") < pos("line 2") && pos("line 2") < pos("line 3"));

    let fail = f
        .runner
        .run_now("acme", "p1", "prod", "fail")
        .await
        .unwrap();
    let row = wait_end(&f, &fail.execution_id).await;
    assert_eq!((row.status.as_str(), row.exit_code), ("FAILED", Some(3)));
    assert!(
        log_text(&f, &fail.execution_id)
            .await
            .contains(&"boom".to_owned())
    );

    let secret = f
        .runner
        .run_now("acme", "p1", "prod", "secret")
        .await
        .unwrap();
    wait_end(&f, &secret.execution_id).await;
    let log = log_text(&f, &secret.execution_id).await;
    assert!(log.contains(&"secret=s3cr3t-value".to_owned()), "{log:?}");
    // Installed once for the commit, not once per run.
    let installs = std::fs::read_to_string(f.root.join("bin/installs")).unwrap();
    assert_eq!(installs.lines().count(), 1);

    assert!(matches!(
        f.runner.run_now("acme", "p1", "prod", "nope").await,
        Err(RunError::UnknownName { .. })
    ));
    assert!(matches!(
        f.runner.run_now("acme", "p1", "dev", "ok").await,
        Err(RunError::NoDeployment(_))
    ));
}

#[tokio::test]
async fn stop_ends_the_process_group_and_timeout_fails() {
    let f = fixture(|c| c.run_timeout = Duration::from_secs(2)).await;
    let hang = f
        .runner
        .run_now("acme", "p1", "prod", "hang")
        .await
        .unwrap();
    let pid_file = f.root.join("bin/child.pid");
    for _ in 0..100 {
        if pid_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stopped = f.runner.stop("p1", &hang.execution_id).await.unwrap();
    assert_eq!(stopped.execution_id, hang.execution_id);
    let row = wait_end(&f, &hang.execution_id).await;
    assert_eq!(row.status, "STOPPED");
    // The grandchild `sleep` went with its group (at most a zombie waits to be reaped).
    let mut gone = false;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        if matches!(state, None | Some('Z' | 'X')) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "child {child} survived");
    assert!(matches!(
        f.runner.stop("p1", &hang.execution_id).await,
        Err(RunError::AlreadyEnded { .. })
    ));

    std::fs::remove_file(&pid_file).unwrap();
    let slow = f
        .runner
        .run_now("acme", "p1", "prod", "hang")
        .await
        .unwrap();
    let row = wait_end(&f, &slow.execution_id).await;
    assert_eq!(row.status, "FAILED");
    assert!(row.reason.unwrap().contains("timed out after 2s"));
}

#[tokio::test]
async fn scheduler_fires_once_and_skips_overlaps() {
    let f = fixture(|_| {}).await;
    std::fs::write(f.root.join("now"), "2026-01-01T00:59:00Z").unwrap();
    f.host.schedules.lock().unwrap().push(EnabledSchedule {
        target: f.host.target.clone(),
        schedule_name: "hourly".into(),
        interval: "@hourly".into(),
        job_name: Some("slow".into()),
        enabled_ms: None,
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let history = |f: &Fixture| {
        let pool = f.runner.pool().clone();
        async move {
            runs::list_executions(&pool, "p1", &runs::HistoryFilter::default(), 100, None)
                .await
                .unwrap()
                .0
        }
    };
    assert!(history(&f).await.is_empty(), "nothing due before 01:00");
    std::fs::write(f.root.join("now"), "2026-01-01T01:00:05Z").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = history(&f).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].schedule_name.as_deref(), Some("hourly"));
    // The next hour comes while the 01:00 run still runs: skipped and recorded.
    std::fs::write(f.root.join("now"), "2026-01-01T02:00:01Z").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let h = history(&f).await;
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0].status, "SKIPPED");
    let first = wait_end(&f, &h[1].execution_id).await;
    assert_eq!(first.status, "SUCCEEDED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        history(&f).await.len(),
        2,
        "no fire twice for one occurrence"
    );
}
