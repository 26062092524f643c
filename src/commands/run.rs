//! `meltano-cloud run JOB_OR_SCHEDULE`: starts a job or schedule now; with the local
//! control plane, runs it in the foreground.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use miette::miette;

use crate::api::{Execution, HistoryQuery};
use crate::cli::GlobalArgs;
use crate::cli::target::{ConnectOptions, Target, connect_with_runner, did_you_mean};
use crate::runner::{RunnerArgs, parse_duration};

/// Run a job or schedule of a deployment now, without waiting for its schedule.
///
/// With a control plane server, the server runs it and this prints the execution id. With
/// the local control plane (MELTANO_CLOUD_API_URL=local), it runs here in the foreground:
/// its log lines are printed as they come, ctrl-c stops it, and the exit status is 0 only
/// when it succeeded.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of a job or schedule in the deployed meltano.yml.
    pub job_or_schedule: String,
    /// Deployment to run on (default: the remembered deployment).
    #[arg(long)]
    pub deployment: Option<String>,
    /// Local control plane only: the meltano executable [default: `meltano` on PATH].
    #[arg(long, env = "MELTANO_CLOUD_MELTANO_BIN", value_name = "PATH")]
    pub meltano_bin: Option<PathBuf>,
    /// Local control plane only: longest the run may take; then it is stopped and recorded
    /// FAILED.
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_duration)]
    pub run_timeout: Duration,
    /// Local control plane only: time between SIGTERM and SIGKILL when the run is stopped.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,
}

/// Finds `name` on PATH, or checks that a path exists.
fn find_executable(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let runner_args = RunnerArgs {
        meltano_bin: args.meltano_bin.clone(),
        run_timeout: args.run_timeout,
        stop_grace: args.stop_grace,
        no_scheduler: true,
        ..RunnerArgs::default()
    };
    let options = ConnectOptions {
        project_hint: None,
        resolve_project: true,
    };
    let target = connect_with_runner(global, options, Some(&runner_args)).await?;
    target.announce(global);
    if target.local {
        let bin = runner_args
            .meltano_bin
            .clone()
            .unwrap_or_else(|| PathBuf::from("meltano"));
        if find_executable(&bin).is_none() {
            return Err(miette!(
                code = "run::no_meltano",
                help = "install Meltano (e.g. `pipx install meltano`), or pass --meltano-bin PATH \
                        (or set MELTANO_CLOUD_MELTANO_BIN)",
                "cannot find the meltano executable `{}`",
                bin.display()
            ));
        }
    }
    // Listen for ctrl-c before the run exists, so that none arriving while it starts is lost.
    let interrupt = target.local.then(Interrupt::new);
    let (org, pid) = target.ids()?;
    let deployment = target.deployment_or_default(args.deployment)?;
    let started = match target
        .client
        .run(org, pid, &deployment, &args.job_or_schedule)
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            return Err(target.explain_missing_deployment(e, &deployment).await);
        }
        Err(e) if e.status() == Some(400) => {
            // Unknown job or schedule: suggest a schedule of this deployment.
            let names = match target
                .client
                .all_schedules(org, pid, Some(&deployment), Some(1000))
                .await
            {
                Ok(all) => {
                    let mut names: Vec<String> = Vec::new();
                    for s in all.items {
                        names.extend(s.job_name);
                        names.push(s.schedule_name);
                    }
                    names
                }
                Err(_) => Vec::new(),
            };
            let hint = match did_you_mean(&args.job_or_schedule, names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "jobs and schedules come from meltano.yml at the deployed commit; list the \
                     schedules with `meltano-cloud schedule list --deployment {deployment}`"
                ),
            };
            return Err(e.with_hint(hint).into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(interrupt) = interrupt {
        return foreground(global, &target, &started, interrupt).await;
    }
    println!(
        "Started `{}` on deployment `{}`: execution {}.",
        started.job_or_schedule_name, started.deployment_name, started.execution_id
    );
    if !global.quiet {
        eprintln!(
            "Follow it with `meltano-cloud logs print --execution-id {} --follow`.",
            started.execution_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows a run of the local control plane's runner (in this process) until it ends,
/// stopping it on ctrl-c; the exit status tells how it ended.
async fn foreground(
    global: &GlobalArgs,
    target: &Target,
    started: &crate::api::RunResponse,
    mut interrupt: Interrupt,
) -> miette::Result<ExitCode> {
    let id = started.execution_id.as_str();
    if !global.quiet {
        eprintln!(
            "Running `{}` on deployment `{}` in the foreground: execution {id} (ctrl-c stops it).",
            started.job_or_schedule_name, started.deployment_name
        );
    }
    let follow = super::logs::print_lines(target, id, Some(Duration::from_millis(200)));
    tokio::pin!(follow);
    let mut interrupted = false;
    let mut stopping: Option<tokio::task::JoinHandle<()>> = None;
    let followed = loop {
        tokio::select! {
            r = &mut follow => break r,
            _ = interrupt.recv(), if !interrupted => {
                interrupted = true;
                eprintln!("Stopping execution {id}...");
                if let (Some(runner), Ok(pid)) = (target.local_runner.clone(), target.ids().map(|(_, p)| p.to_string())) {
                    let id = id.to_string();
                    // The stop kills the run's process group and records STOPPED; the
                    // follow loop then prints the last lines and ends.
                    stopping = Some(tokio::spawn(async move {
                        if let Err(e) = runner.stop(&pid, &id).await {
                            tracing::warn!(error = %e, "stopping the run failed");
                        }
                    }));
                }
            }
        }
    };
    if let Err(e) = followed {
        // Never leave a run behind in a process that is about to exit.
        if let Some(runner) = &target.local_runner {
            runner.shutdown().await;
        }
        return Err(e);
    }
    if let Some(task) = stopping {
        let _ = task.await;
    }
    let execution = final_state(target, id).await?;
    Ok(report(global, &execution, interrupted))
}

/// The execution as the history records it.
async fn final_state(target: &Target, id: &str) -> miette::Result<Execution> {
    let (org, pid) = target.ids()?;
    let all = target
        .client
        .all_history(org, pid, &HistoryQuery::default(), Some(1000))
        .await?;
    all.items
        .into_iter()
        .find(|e| e.execution_id == id)
        .ok_or_else(|| miette!(code = "run::lost", "execution {id} is not in the history"))
}

/// Prints how the run ended and picks the exit status: 0 for success, meltano's own exit
/// code for a failure when it has one, 130 after ctrl-c, 1 otherwise.
fn report(global: &GlobalArgs, e: &Execution, interrupted: bool) -> ExitCode {
    let id = &e.execution_id;
    let reason = e
        .reason
        .as_deref()
        .map(|r| format!(": {}", r.trim_end_matches('.')))
        .unwrap_or_default();
    match e.status.as_str() {
        "SUCCEEDED" => {
            if !global.quiet {
                eprintln!("Execution {id} SUCCEEDED.");
            }
            ExitCode::SUCCESS
        }
        "FAILED" => {
            match e.exit_code {
                // The reason then only repeats the exit code.
                Some(code) if reason.ends_with(&format!("exited with code {code}")) => {
                    eprintln!("Execution {id} FAILED with exit code {code}.")
                }
                Some(code) => eprintln!("Execution {id} FAILED with exit code {code}{reason}."),
                None => eprintln!("Execution {id} FAILED{reason}."),
            }
            match e
                .exit_code
                .and_then(|c| u8::try_from(c).ok())
                .filter(|c| *c != 0)
            {
                Some(code) => ExitCode::from(code),
                None => ExitCode::FAILURE,
            }
        }
        status => {
            eprintln!("Execution {id} {status}{reason}.");
            if interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// ctrl-c (SIGINT), listened for from the moment this is created.
struct Interrupt {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    fn new() -> Interrupt {
        Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        match &mut self.signal {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
