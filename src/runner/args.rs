//! The `meltano-cloud server` flags of the runner and scheduler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Clock, Runner, RunnerConfig, parse_duration};
use crate::gitrepo::GitResolver;
use crate::store::{Backend, Store};

/// Runs and schedules.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Runs and schedules")]
pub struct RunnerArgs {
    /// The meltano executable runs use [default: `meltano` on PATH].
    #[arg(long, env = "MELTANO_CLOUD_MELTANO_BIN", value_name = "PATH")]
    pub meltano_bin: Option<PathBuf>,

    /// Longest a run may take; then its processes are stopped and it is recorded FAILED.
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_duration)]
    pub run_timeout: Duration,

    /// Most runs this server executes at once; further runs wait for a free slot.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_runs: u16,

    /// How often the scheduler looks for due schedules.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub scheduler_tick: Duration,

    /// Start each schedule's runs a constant pseudo-random 0-7 minutes after their cron
    /// time (as the original service did), so that schedules sharing a time spread out.
    #[arg(long)]
    pub schedule_spread: bool,

    /// Don't fire schedules from this process (runs on demand still work), e.g. for an
    /// API-only replica.
    #[arg(long)]
    pub no_scheduler: bool,

    /// Time between SIGTERM and SIGKILL when a run is stopped or times out.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,

    /// Testing aid: the scheduler reads the current time (RFC 3339) from this file.
    #[arg(long, value_name = "FILE", hide = true)]
    pub clock_file: Option<PathBuf>,

    /// Testing aid: how long a run may go without its server renewing its lease before
    /// another server marks it failed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, hide = true)]
    pub run_lease_ttl: Duration,
}

impl RunnerArgs {
    pub fn config(&self, data_dir: &Path, backend: Backend) -> RunnerConfig {
        let mut cfg = RunnerConfig::new(
            self.meltano_bin
                .clone()
                .unwrap_or_else(|| PathBuf::from("meltano")),
            data_dir.to_path_buf(),
        );
        cfg.run_timeout = self.run_timeout;
        cfg.max_concurrent_runs = usize::from(self.max_concurrent_runs);
        cfg.scheduler_tick = self.scheduler_tick;
        cfg.schedule_spread = self.schedule_spread;
        cfg.scheduler_enabled = !self.no_scheduler;
        cfg.stop_grace = self.stop_grace;
        cfg.clock = match &self.clock_file {
            Some(path) => Clock::File(path.clone()),
            None => Clock::System,
        };
        cfg.lease_ttl = self.run_lease_ttl;
        cfg.lease_interval =
            (self.run_lease_ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(2));
        // A SQLite file serves one server; with PostgreSQL other replicas may be running.
        cfg.exclusive_database = backend == Backend::Sqlite;
        cfg
    }

    /// Creates the runner of a server over its store, cleans up after a previous crash and
    /// starts the scheduler.
    pub async fn start(
        &self,
        store: &Store,
        git: Arc<GitResolver>,
        data_dir: &Path,
    ) -> Result<Runner, sqlx::Error> {
        let cfg = self.config(data_dir, store.backend());
        let host = Arc::new(super::host::StoreHost {
            store: store.clone(),
            git,
        });
        let runner = Runner::new(cfg, store.pool.clone(), host);
        runner.start().await?;
        Ok(runner)
    }
}

/// Parses no flags: the defaults, with MELTANO_CLOUD_MELTANO_BIN when set.
impl Default for RunnerArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            runner: RunnerArgs,
        }
        <Wrap as clap::Parser>::try_parse_from(["meltano-cloud"])
            .map(|w| w.runner)
            .unwrap_or_else(|_| RunnerArgs {
                meltano_bin: None,
                run_timeout: Duration::from_secs(6 * 3600),
                max_concurrent_runs: 4,
                scheduler_tick: Duration::from_secs(10),
                schedule_spread: false,
                no_scheduler: true,
                stop_grace: Duration::from_secs(10),
                clock_file: None,
                run_lease_ttl: Duration::from_secs(30),
            })
    }
}

impl RunnerArgs {
    /// The runner of the embedded local control plane: runs on demand only (a CLI process
    /// is too short-lived to fire schedules), and it shares its SQLite file with other CLI
    /// processes, so at start-up only runs whose lease expired count as orphaned, never
    /// the foreground run of another terminal.
    pub async fn start_local(
        &self,
        store: &Store,
        git: Arc<GitResolver>,
        data_dir: &Path,
    ) -> Result<Runner, sqlx::Error> {
        let mut cfg = self.config(data_dir, store.backend());
        cfg.scheduler_enabled = false;
        cfg.exclusive_database = false;
        let host = Arc::new(super::host::StoreHost {
            store: store.clone(),
            git,
        });
        let runner = Runner::new(cfg, store.pool.clone(), host);
        runner.start().await?;
        Ok(runner)
    }
}
