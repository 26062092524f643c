//! Runs deployments' jobs and schedules inside `meltano-cloud server`.
//!
//! [`Runner`] starts executions (on demand or from the [`scheduler`]), bounds how many run
//! at once, stops them, and keeps a lease on each so that another replica can tell a run
//! whose server died from one still in progress. [`executor`] runs one execution.

pub mod args;
pub mod clock;
pub mod executor;
pub mod host;
pub mod scheduler;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::RngCore;
use tokio::sync::{Semaphore, watch};
use zeroize::Zeroizing;

pub use args::RunnerArgs;
pub use clock::Clock;

use crate::api::types::{RunResponse, StopResponse};
use crate::store::runs::{self, NewExecution};

/// An error of the host (the control plane's store or git), as text for logs and answers.
pub type HostError = Box<dyn std::error::Error + Send + Sync>;

/// The deployment a run executes, with what is needed to check it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    pub org: String,
    pub project_id: String,
    pub deployment_name: String,
    pub environment_name: String,
    /// The deployed commit.
    pub git_rev_hash: String,
    /// Folder of meltano.yml inside the repository (`""` or `.` for the top).
    pub root_path: String,
}

/// An enabled schedule of a deployment, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnabledSchedule {
    pub target: RunTarget,
    pub schedule_name: String,
    pub interval: String,
    /// The job it runs; None for an extractor/loader schedule.
    pub job_name: Option<String>,
    /// When it was enabled (ms since the epoch), if the store knows.
    pub enabled_ms: Option<i64>,
}

/// What a name given to `run` refers to in a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunName {
    Schedule { name: String, job: Option<String> },
    Job(String),
}

/// What the runner needs from the rest of the control plane.
pub trait Host: Send + Sync + 'static {
    /// Every enabled schedule of every deployment.
    fn enabled_schedules(&self) -> BoxFuture<'_, Result<Vec<EnabledSchedule>, HostError>>;
    /// A deployment of a project (None when it does not exist).
    fn target<'a>(
        &'a self,
        org: &'a str,
        project_id: &'a str,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunTarget>, HostError>>;
    /// What `name` is in the deployment: a schedule, a job, or nothing (None).
    fn resolve_name<'a>(
        &'a self,
        target: &'a RunTarget,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunName>, HostError>>;
    /// The project's secrets, decrypted, to inject as environment variables.
    #[allow(clippy::type_complexity)]
    fn secrets<'a>(
        &'a self,
        org: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Zeroizing<String>)>, HostError>>;
    /// A local git repository holding the project's commits.
    fn repo_dir<'a>(
        &'a self,
        org: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<PathBuf, HostError>>;
}

/// Settings of the runner (from `meltano-cloud server` flags).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The meltano executable.
    pub meltano_bin: PathBuf,
    /// Work directories, installed plugins and state live below this.
    pub data_dir: PathBuf,
    pub run_timeout: Duration,
    pub max_concurrent_runs: usize,
    pub scheduler_tick: Duration,
    /// Whether to delay each schedule by its constant pseudo-random offset (up to 7 min).
    pub schedule_spread: bool,
    /// Whether the scheduler runs in this process at all.
    pub scheduler_enabled: bool,
    pub clock: Clock,
    /// Time between SIGTERM and SIGKILL when stopping a run.
    pub stop_grace: Duration,
    /// How often this server renews the leases of its runs.
    pub lease_interval: Duration,
    /// A run whose lease is older than this is considered orphaned.
    pub lease_ttl: Duration,
    /// Mark every RUNNING execution failed at start-up (a database no other server uses,
    /// like a SQLite file); otherwise only those whose lease expired.
    pub exclusive_database: bool,
}

impl RunnerConfig {
    pub fn new(meltano_bin: PathBuf, data_dir: PathBuf) -> Self {
        RunnerConfig {
            meltano_bin,
            data_dir,
            run_timeout: Duration::from_secs(6 * 3600),
            max_concurrent_runs: 4,
            scheduler_tick: Duration::from_secs(10),
            schedule_spread: false,
            scheduler_enabled: true,
            clock: Clock::System,
            stop_grace: Duration::from_secs(10),
            lease_interval: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(30),
            exclusive_database: true,
        }
    }
}

/// Why a run is asked to end early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    Stop,
    Shutdown,
}

/// Why a run could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("deployment `{0}` not found")]
    NoDeployment(String),
    #[error("`{name}` is neither a schedule nor a job of deployment `{deployment}`")]
    UnknownName { deployment: String, name: String },
    #[error("execution `{0}` not found")]
    NoExecution(String),
    #[error("execution `{id}` already ended ({status})")]
    AlreadyEnded { id: String, status: String },
    #[error("{0}")]
    Host(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
}

/// The run manager of one server process.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: RunnerConfig,
    pub(crate) pool: sqlx::AnyPool,
    pub(crate) host: Arc<dyn Host>,
    /// Identifies this process in leases and schedule fires.
    pub(crate) runner_id: String,
    pub(crate) slots: Arc<Semaphore>,
    active: Mutex<HashMap<String, watch::Sender<Option<EndCause>>>>,
    install_locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    pub(crate) fn install_lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.install_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(dir.to_path_buf()).or_default().clone()
    }
}

/// A new execution id: 32 lowercase hex characters.
pub fn new_execution_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `90s`, `10m`, `2h`, `1h30m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut rest = text.chars().peekable();
    let bad = || format!("`{text}` is not a duration like 90s, 10m, 2h or 1h30m");
    while let Some(c) = rest.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = if c == 'm' && rest.peek() == Some(&'s') {
            rest.next();
            Duration::from_millis(1)
        } else {
            match c {
                's' => Duration::from_secs(1),
                'm' => Duration::from_secs(60),
                'h' => Duration::from_secs(3600),
                'd' => Duration::from_secs(86400),
                _ => return Err(bad()),
            }
        };
        total += unit * u32::try_from(n).map_err(|_| bad())?;
    }
    if !number.is_empty() || total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

/// Renders a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

impl Runner {
    pub fn new(cfg: RunnerConfig, pool: sqlx::AnyPool, host: Arc<dyn Host>) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent_runs.max(1)));
        Runner {
            inner: Arc::new(Inner {
                cfg,
                pool,
                host,
                runner_id: ulid::Ulid::new().to_string(),
                slots,
                active: Mutex::new(HashMap::new()),
                install_locks: Mutex::new(HashMap::new()),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.inner.cfg
    }

    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.inner.pool
    }

    /// Cleans up after a previous crash, then starts the lease keeper and the scheduler.
    pub async fn start(&self) -> Result<(), sqlx::Error> {
        let inner = &self.inner;
        let now = chrono::Utc::now().timestamp_millis();
        let expired_before = if inner.cfg.exclusive_database {
            i64::MAX
        } else {
            now - inner.cfg.lease_ttl.as_millis() as i64
        };
        let reaped = runs::reap_orphans(&inner.pool, &inner.runner_id, expired_before, now).await?;
        if !reaped.is_empty() {
            tracing::warn!(
                count = reaped.len(),
                "marked executions left running by a previous server as failed"
            );
        }
        remove_stale_work_dirs(inner).await;
        let leases = tokio::spawn(lease_loop(inner.clone()));
        let mut tasks = inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(leases);
        if inner.cfg.scheduler_enabled {
            tasks.push(tokio::spawn(scheduler_loop(inner.clone())));
        }
        Ok(())
    }

    /// Ends every run of this process (recorded as FAILED: the server shut down) and stops
    /// the background loops.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        for task in inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let senders: Vec<_> = {
            let active = inner.active.lock().unwrap_or_else(|e| e.into_inner());
            active.values().cloned().collect()
        };
        for tx in &senders {
            let _ = tx.send(Some(EndCause::Shutdown));
        }
        // Give runs their SIGTERM grace to record how they ended.
        let deadline = tokio::time::Instant::now() + inner.cfg.stop_grace + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            if inner
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a run of a job or schedule of a deployment now.
    pub async fn run_now(
        &self,
        org: &str,
        project_id: &str,
        deployment: &str,
        name: &str,
    ) -> Result<RunResponse, RunError> {
        let inner = &self.inner;
        let target = inner
            .host
            .target(org, project_id, deployment)
            .await
            .map_err(|e| RunError::Host(e.to_string()))?
            .ok_or_else(|| RunError::NoDeployment(deployment.to_owned()))?;
        let what = inner
            .host
            .resolve_name(&target, name)
            .await
            .map_err(|e| RunError::Host(e.to_string()))?
            .ok_or_else(|| RunError::UnknownName {
                deployment: deployment.to_owned(),
                name: name.to_owned(),
            })?;
        let (schedule_name, job_name, args) = match what {
            RunName::Job(job) => (None, Some(job.clone()), vec!["run".to_owned(), job]),
            RunName::Schedule { name, job } => {
                let args = schedule_args(&name, job.as_deref());
                (Some(name), job, args)
            }
        };
        let execution_id = new_execution_id();
        launch(
            inner,
            execution_id.clone(),
            target,
            schedule_name,
            job_name,
            args,
        )
        .await?;
        Ok(RunResponse {
            execution_id,
            deployment_name: deployment.to_owned(),
            job_or_schedule_name: name.to_owned(),
        })
    }

    /// Stops a running execution, wherever it runs, and waits a little for it to end.
    pub async fn stop(
        &self,
        project_id: &str,
        execution_id: &str,
    ) -> Result<StopResponse, RunError> {
        let inner = &self.inner;
        let row = runs::get_execution(&inner.pool, project_id, execution_id)
            .await?
            .ok_or_else(|| RunError::NoExecution(execution_id.to_owned()))?;
        if !row.is_running() {
            return Err(RunError::AlreadyEnded {
                id: execution_id.to_owned(),
                status: row.status,
            });
        }
        runs::request_stop(&inner.pool, execution_id).await?;
        let local = {
            let active = inner.active.lock().unwrap_or_else(|e| e.into_inner());
            active.get(execution_id).cloned()
        };
        if let Some(tx) = local {
            let _ = tx.send(Some(EndCause::Stop));
        }
        // The replica running it notices within a lease interval; SIGTERM then has its grace.
        let deadline = tokio::time::Instant::now()
            + inner.cfg.lease_interval
            + inner.cfg.stop_grace
            + Duration::from_secs(3);
        loop {
            let row = runs::get_execution(&inner.pool, project_id, execution_id).await?;
            if let Some(row) = row.filter(|r| !r.is_running()) {
                return Ok(StopResponse {
                    execution_id: execution_id.to_owned(),
                    reason: format!("stopped (status {})", row.status),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(StopResponse {
                    execution_id: execution_id.to_owned(),
                    reason: "stop requested; the execution is still shutting down".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The meltano arguments of a schedule's run.
fn schedule_args(schedule: &str, job: Option<&str>) -> Vec<String> {
    match job {
        Some(job) => vec!["run".into(), job.into()],
        None => vec!["schedule".into(), "run".into(), schedule.into()],
    }
}

/// Starts a fired schedule's run, or records it SKIPPED while its previous run goes on.
pub(crate) async fn start_scheduled(
    inner: &Arc<Inner>,
    s: &EnabledSchedule,
    execution_id: String,
) -> Result<(), RunError> {
    let t = &s.target;
    let args = schedule_args(&s.schedule_name, s.job_name.as_deref());
    if let Some(running) = runs::running_for_schedule(
        &inner.pool,
        &t.project_id,
        &t.deployment_name,
        &s.schedule_name,
    )
    .await?
    {
        let now = chrono::Utc::now().timestamp_millis();
        let reason =
            format!("skipped: the previous run {running} of this schedule is still running");
        runs::insert_execution(
            &inner.pool,
            &NewExecution {
                execution_id: execution_id.clone(),
                org: t.org.clone(),
                project_id: t.project_id.clone(),
                deployment_name: t.deployment_name.clone(),
                schedule_name: Some(s.schedule_name.clone()),
                job_name: s.job_name.clone(),
                command: args.join(" "),
                environment_name: t.environment_name.clone(),
                git_rev_hash: t.git_rev_hash.clone(),
                status: runs::SKIPPED.into(),
                reason: Some(reason.clone()),
                start_ms: now,
                end_ms: Some(now),
                runner_id: Some(inner.runner_id.clone()),
            },
        )
        .await?;
        runs::append_system_line(
            &inner.pool,
            &execution_id,
            now,
            &format!("[meltano-cloud] {reason}"),
        )
        .await?;
        tracing::info!(
            execution_id,
            previous = running,
            schedule = s.schedule_name,
            "schedule run skipped"
        );
        return Ok(());
    }
    launch(
        inner,
        execution_id,
        t.clone(),
        Some(s.schedule_name.clone()),
        s.job_name.clone(),
        args,
    )
    .await
}

/// Records a new RUNNING execution and spawns it.
async fn launch(
    inner: &Arc<Inner>,
    execution_id: String,
    target: RunTarget,
    schedule_name: Option<String>,
    job_name: Option<String>,
    args: Vec<String>,
) -> Result<(), RunError> {
    let now = chrono::Utc::now().timestamp_millis();
    runs::insert_execution(
        &inner.pool,
        &NewExecution {
            execution_id: execution_id.clone(),
            org: target.org.clone(),
            project_id: target.project_id.clone(),
            deployment_name: target.deployment_name.clone(),
            schedule_name: schedule_name.clone(),
            job_name: job_name.clone(),
            command: args.join(" "),
            environment_name: target.environment_name.clone(),
            git_rev_hash: target.git_rev_hash.clone(),
            status: runs::RUNNING.into(),
            reason: None,
            start_ms: now,
            end_ms: None,
            runner_id: Some(inner.runner_id.clone()),
        },
    )
    .await?;
    let (tx, rx) = watch::channel(None);
    inner
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(execution_id.clone(), tx);
    tracing::info!(
        execution_id,
        deployment = target.deployment_name,
        schedule = schedule_name.as_deref().unwrap_or(""),
        job = job_name.as_deref().unwrap_or(""),
        "execution started"
    );
    let inner = inner.clone();
    tokio::spawn(async move {
        let (log, writer) = executor::log_writer(inner.pool.clone(), execution_id.clone());
        let job = executor::Job {
            execution_id: execution_id.clone(),
            target,
            args,
            stop: rx,
        };
        let outcome = executor::execute(inner.clone(), job, log.clone()).await;
        drop(log);
        // Every line is stored before the end is recorded, so a reader that sees the end
        // has seen the whole log.
        let _ = writer.await;
        let end = chrono::Utc::now().timestamp_millis();
        let mut attempt = 0u64;
        loop {
            match runs::finish_execution(
                &inner.pool,
                &execution_id,
                outcome.status,
                outcome.exit_code,
                outcome.reason.as_deref(),
                end,
            )
            .await
            {
                Ok(_) => break,
                Err(err) if attempt < 10 => {
                    attempt += 1;
                    tracing::warn!(execution_id, error = %err, "recording the end of an execution failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
                Err(err) => {
                    tracing::error!(execution_id, error = %err, "could not record the end of an execution");
                    break;
                }
            }
        }
        tracing::info!(
            execution_id,
            status = outcome.status,
            exit_code = outcome.exit_code,
            "execution ended"
        );
        inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&execution_id);
    });
    Ok(())
}

/// Removes the work directories that runs of a crashed server left behind.
async fn remove_stale_work_dirs(inner: &Arc<Inner>) {
    let Ok(mut entries) = tokio::fs::read_dir(inner.cfg.data_dir.join("runs")).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        match runs::execution_status(&inner.pool, &name).await {
            Ok(Some(status)) if status == runs::RUNNING => continue,
            Ok(_) => {
                if let Err(err) = tokio::fs::remove_dir_all(entry.path()).await {
                    tracing::warn!(path = %entry.path().display(), error = %err, "removing a stale work directory failed");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "checking stale work directories failed");
                return;
            }
        }
    }
}

async fn lease_loop(inner: Arc<Inner>) {
    let mut every = tokio::time::interval(inner.cfg.lease_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = chrono::Utc::now().timestamp_millis();
        match runs::renew_leases(&inner.pool, &inner.runner_id, now).await {
            Ok(stops) => {
                let active = inner.active.lock().unwrap_or_else(|e| e.into_inner());
                for id in stops {
                    if let Some(tx) = active.get(&id) {
                        if tx.borrow().is_none() {
                            let _ = tx.send(Some(EndCause::Stop));
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "renewing run leases failed"),
        }
        let expired_before = now - inner.cfg.lease_ttl.as_millis() as i64;
        match runs::reap_orphans(&inner.pool, &inner.runner_id, expired_before, now).await {
            Ok(reaped) if !reaped.is_empty() => {
                tracing::warn!(
                    count = reaped.len(),
                    "marked executions of a vanished server as failed"
                )
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "checking for orphaned executions failed"),
        }
    }
}

async fn scheduler_loop(inner: Arc<Inner>) {
    let mut every = tokio::time::interval(inner.cfg.scheduler_tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        scheduler::tick(&inner).await;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn execution_ids_are_32_hex() {
        let id = new_execution_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
