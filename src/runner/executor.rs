//! Runs one execution: a checkout of the deployed commit, `meltano install` when that
//! commit's plugins are not installed yet, then the meltano command, with its output
//! streamed into the store line by line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{EndCause, Inner, RunTarget};
use crate::store::runs::{self, NewLogLine};

/// Longest log line kept whole; longer output is split.
const MAX_LINE: usize = 64 * 1024;
/// Flush buffered log lines at least this often while a run writes.
const LOG_FLUSH: Duration = Duration::from_millis(200);

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: &'static str,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

impl Outcome {
    fn failed(reason: impl Into<String>) -> Self {
        Outcome {
            status: runs::FAILED,
            exit_code: None,
            reason: Some(reason.into()),
        }
    }
}

/// What one execution runs.
pub(crate) struct Job {
    pub execution_id: String,
    pub target: RunTarget,
    /// Arguments of meltano, e.g. `["run", "say-hello"]`.
    pub args: Vec<String>,
    pub stop: watch::Receiver<Option<EndCause>>,
}

/// Writes a run's log lines to the store in batches, numbering them in arrival order.
#[derive(Clone)]
pub(crate) struct LogSink {
    tx: mpsc::UnboundedSender<NewLogLine>,
}

impl LogSink {
    pub fn line(&self, message: impl Into<String>) {
        let _ = self.tx.send(NewLogLine {
            ts_ms: chrono::Utc::now().timestamp_millis(),
            message: message.into(),
        });
    }

    /// A line written by the control plane itself rather than by meltano.
    pub fn note(&self, message: impl AsRef<str>) {
        self.line(format!("[meltano-cloud] {}", message.as_ref()));
    }
}

/// Starts the task that stores log lines; it ends when every sink is dropped.
pub(crate) fn log_writer(
    pool: sqlx::AnyPool,
    execution_id: String,
) -> (LogSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<NewLogLine>();
    let task = tokio::spawn(async move {
        let mut next_no = 1i64;
        let mut batch = Vec::new();
        loop {
            let first = rx.recv().await;
            let Some(first) = first else { break };
            batch.push(first);
            // Gather what arrives shortly after, so a chatty run costs few transactions.
            let deadline = Instant::now() + LOG_FLUSH;
            while batch.len() < 500 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(line)) => batch.push(line),
                    _ => break,
                }
            }
            let now = chrono::Utc::now().timestamp_millis();
            let mut attempt = 0;
            loop {
                match runs::append_logs(&pool, &execution_id, next_no, &batch, now).await {
                    Ok(()) => break,
                    Err(err) if attempt < 5 => {
                        attempt += 1;
                        tracing::warn!(execution_id, error = %err, "storing log lines failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(err) => {
                        tracing::error!(execution_id, error = %err, lines = batch.len(), "dropping log lines");
                        break;
                    }
                }
            }
            next_no += batch.len() as i64;
            batch.clear();
        }
    });
    (LogSink { tx }, task)
}

/// Runs a job to its end and returns how it ended. Never panics on a failing step; each
/// failure becomes a FAILED outcome with a reason also written to the run's log.
pub(crate) async fn execute(inner: Arc<Inner>, mut job: Job, log: LogSink) -> Outcome {
    let t = &job.target;
    log.note(format!(
        "execution {} of deployment `{}` (environment `{}`) at commit {}: meltano {}",
        job.execution_id,
        t.deployment_name,
        t.environment_name,
        short(&t.git_rev_hash),
        job.args.join(" ")
    ));

    // A free slot first: the server runs at most --max-concurrent-runs at a time.
    let permit = match inner.slots.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            log.note(format!(
                "waiting for a free run slot ({} runs at a time on this server)",
                inner.cfg.max_concurrent_runs
            ));
            tokio::select! {
                p = inner.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return Outcome::failed("the server is shutting down"),
                },
                cause = wait_end(&mut job.stop) => return ended_before_start(cause),
            }
        }
    };
    let deadline = Instant::now() + inner.cfg.run_timeout;

    let work = inner.cfg.data_dir.join("runs").join(&job.execution_id);
    let outcome = run_in(&inner, &mut job, &log, &work, deadline).await;
    drop(permit);
    if let Err(err) = tokio::fs::remove_dir_all(&work).await {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(execution_id = job.execution_id, error = %err, "removing the work directory failed");
        }
    }
    match &outcome.reason {
        Some(reason) => log.note(format!("{}: {reason}", outcome.status)),
        None => log.note(outcome.status),
    }
    outcome
}

fn ended_before_start(cause: EndCause) -> Outcome {
    match cause {
        EndCause::Stop => Outcome {
            status: runs::STOPPED,
            exit_code: None,
            reason: Some("stopped by request before it started".into()),
        },
        EndCause::Shutdown => Outcome::failed("the server shut down before the run started"),
    }
}

async fn wait_end(stop: &mut watch::Receiver<Option<EndCause>>) -> EndCause {
    loop {
        if let Some(cause) = *stop.borrow_and_update() {
            return cause;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: nobody can stop this run any more.
            std::future::pending::<()>().await;
        }
    }
}

async fn run_in(
    inner: &Arc<Inner>,
    job: &mut Job,
    log: &LogSink,
    work: &Path,
    deadline: Instant,
) -> Outcome {
    let t = job.target.clone();
    let repo_dir = match inner.host.repo_dir(&t.org, &t.project_id).await {
        Ok(dir) => dir,
        Err(err) => {
            return Outcome::failed(format!("the project's repository is unavailable: {err}"));
        }
    };
    if let Err(err) = checkout(&repo_dir, &t.git_rev_hash, work).await {
        return Outcome::failed(format!(
            "checking out commit {}: {err}",
            short(&t.git_rev_hash)
        ));
    }
    let project_dir = if t.root_path.is_empty() || t.root_path == "." {
        work.to_path_buf()
    } else {
        work.join(t.root_path.trim_matches('/'))
    };
    if !project_dir.join("meltano.yml").is_file() {
        return Outcome::failed(format!(
            "no meltano.yml at `{}` in commit {}",
            t.root_path,
            short(&t.git_rev_hash)
        ));
    }

    let secrets = match inner.host.secrets(&t.org, &t.project_id).await {
        Ok(s) => s,
        Err(err) => return Outcome::failed(format!("reading the project's secrets: {err}")),
    };

    // Plugins are installed once per commit (and project folder) into a shared system
    // directory that outlives the per-execution checkout; the state database is per
    // deployment so incremental state carries over from one commit to the next.
    let key = hex::encode(&Sha256::digest(t.root_path.as_bytes())[..6]);
    let sys_dir = inner
        .cfg
        .data_dir
        .join("installs")
        .join(&t.project_id)
        .join(format!("{}-{key}", t.git_rev_hash));
    let state_dir = inner
        .cfg
        .data_dir
        .join("state")
        .join(&t.project_id)
        .join(&t.deployment_name);
    for dir in [&sys_dir, &state_dir] {
        if let Err(err) = tokio::fs::create_dir_all(dir).await {
            return Outcome::failed(format!("creating {}: {err}", dir.display()));
        }
    }
    let env = RunEnv {
        meltano_environment: t.environment_name.clone(),
        sys_dir: sys_dir.clone(),
        database_uri: format!("sqlite:///{}", state_dir.join("meltano.db").display()),
        execution_id: job.execution_id.clone(),
        secrets,
    };

    let marker = sys_dir.join(".meltano-cloud-installed");
    let install_lock = inner.install_lock(&sys_dir);
    {
        let _guard = install_lock.lock().await;
        if !marker.exists() {
            log.note("meltano install (first run of this commit)");
            let cmd = meltano_command(&inner.cfg.meltano_bin, &["install"], &project_dir, &env);
            match run_process(cmd, log, &mut job.stop, deadline, inner.cfg.stop_grace).await {
                ProcessEnd::Exited(0) => {
                    if let Err(err) = tokio::fs::write(&marker, b"").await {
                        tracing::warn!(error = %err, "recording the install failed");
                    }
                }
                ProcessEnd::Exited(code) => {
                    return Outcome {
                        status: runs::FAILED,
                        exit_code: Some(code),
                        reason: Some(format!("meltano install failed with exit code {code}")),
                    };
                }
                other => return other.into_outcome(inner.cfg.run_timeout, "meltano install"),
            }
        }
    }

    let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
    let cmd = meltano_command(&inner.cfg.meltano_bin, &args, &project_dir, &env);
    match run_process(cmd, log, &mut job.stop, deadline, inner.cfg.stop_grace).await {
        ProcessEnd::Exited(0) => Outcome {
            status: runs::SUCCEEDED,
            exit_code: Some(0),
            reason: None,
        },
        ProcessEnd::Exited(code) => Outcome {
            status: runs::FAILED,
            exit_code: Some(code),
            reason: Some(format!("meltano exited with code {code}")),
        },
        other => other.into_outcome(inner.cfg.run_timeout, "meltano"),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Writes the tree of `commit` into `dest` (which must not exist yet).
async fn checkout(repo_dir: &Path, commit: &str, dest: &Path) -> Result<(), String> {
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let tar = dest.join(".checkout.tar");
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_dir)
        .args(["archive", "--format=tar", "-o"])
        .arg(&tar)
        .arg(commit)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git archive failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running tar: {e}"))?;
    let _ = tokio::fs::remove_file(&tar).await;
    if !out.status.success() {
        return Err(format!(
            "extracting the archive failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The environment of a meltano process.
struct RunEnv {
    meltano_environment: String,
    sys_dir: PathBuf,
    database_uri: String,
    execution_id: String,
    secrets: Vec<(String, Zeroizing<String>)>,
}

/// Variables of the server's own environment passed on to runs; everything else is left
/// out so that nothing of the server (its key, its database URL) leaks into a job.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

fn meltano_command(bin: &Path, args: &[&str], cwd: &Path, env: &RunEnv) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd).env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DATABASE_URI", &env.database_uri)
        .env("MELTANO_CLOUD_EXECUTION_ID", &env.execution_id);
    // Secrets may override the defaults above (a state database elsewhere, for one), but
    // not the deployment's environment or where plugins are installed.
    // Names the executor sets itself are refused when secrets are stored; skip any stored
    // before that, so they cannot replace PATH or HOME.
    for (name, value) in &env.secrets {
        if crate::secrets::set_by_executor(name) {
            continue;
        }
        cmd.env(name, value.as_str());
    }
    cmd.env("MELTANO_ENVIRONMENT", &env.meltano_environment)
        .env("MELTANO_SYS_DIR_ROOT", &env.sys_dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that stopping it reaches every process it started.
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

#[derive(Debug, PartialEq, Eq)]
enum ProcessEnd {
    Exited(i64),
    Stopped,
    TimedOut,
    Shutdown,
    SpawnFailed(String),
}

impl ProcessEnd {
    fn into_outcome(self, timeout: Duration, what: &str) -> Outcome {
        match self {
            ProcessEnd::Exited(code) => Outcome {
                status: if code == 0 {
                    runs::SUCCEEDED
                } else {
                    runs::FAILED
                },
                exit_code: Some(code),
                reason: None,
            },
            ProcessEnd::Stopped => Outcome {
                status: runs::STOPPED,
                exit_code: None,
                reason: Some("stopped by request".into()),
            },
            ProcessEnd::TimedOut => Outcome::failed(format!(
                "timed out after {} (the server's --run-timeout)",
                super::format_duration(timeout)
            )),
            ProcessEnd::Shutdown => Outcome::failed("the server shut down during the run"),
            ProcessEnd::SpawnFailed(err) => Outcome::failed(format!("starting {what}: {err}")),
        }
    }
}

/// Sends `signal` to every process of the group led by `pgid`.
fn kill_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // involved, and a group that no longer exists only yields ESRCH.
            unsafe {
                libc::kill(-pgid, signal);
            }
        }
    }
}

/// Runs a process to its end, streaming its output, and ends its whole process group when
/// it is stopped, times out, or exits leaving children behind.
async fn run_process(
    mut cmd: Command,
    log: &LogSink,
    stop: &mut watch::Receiver<Option<EndCause>>,
    deadline: Instant,
    grace: Duration,
) -> ProcessEnd {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => return ProcessEnd::SpawnFailed(err.to_string()),
    };
    let pgid = child.id().unwrap_or(0);
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, log.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, log.clone()))),
    ];

    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => ProcessEnd::Exited(exit_code(status)),
            Err(err) => ProcessEnd::SpawnFailed(err.to_string()),
        },
        _ = tokio::time::sleep_until(deadline) => ProcessEnd::TimedOut,
        cause = wait_end(stop) => match cause {
            EndCause::Stop => ProcessEnd::Stopped,
            EndCause::Shutdown => ProcessEnd::Shutdown,
        },
    };
    if !matches!(ended, ProcessEnd::Exited(_) | ProcessEnd::SpawnFailed(_)) {
        // SIGTERM first so meltano and its plugins can clean up, then SIGKILL.
        kill_group(pgid, libc::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            log.note(format!(
                "still running {} after SIGTERM; sending SIGKILL",
                super::format_duration(grace)
            ));
        }
    }
    // Whatever the leader left behind goes too; otherwise a stray child holding the
    // output pipes would keep the run open forever.
    kill_group(pgid, libc::SIGKILL);
    let _ = child.wait().await;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    ended
}

fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}

/// Copies a stream into the log line by line (lossy UTF-8, long lines split).
async fn pump(stream: impl AsyncRead + Unpin, log: LogSink) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = {
            let mut limited = (&mut reader).take(MAX_LINE as u64);
            limited.read_until(b'\n', &mut buf).await
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                log.line(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}
