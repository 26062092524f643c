//! `meltano-cloud job stop`: stops a running execution.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::target::{ConnectOptions, connect_with_runner};
use crate::runner::RunnerArgs;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Stop a running execution; it then shows as Stopped in `history`.
    Stop(StopArgs),
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Execution id, as shown by `run` and `history`.
    #[arg(long)]
    pub execution_id: String,
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let Command::Stop(args) = cmd;
    // With the local control plane, the run belongs to the `run` process in the foreground
    // of some terminal; this process's runner records the stop request, which that
    // process's runner sees within its lease interval and acts on (killing the run's
    // process group). Its start-up also marks runs whose process vanished as failed.
    let runner_args = RunnerArgs::default();
    let options = ConnectOptions {
        project_hint: None,
        resolve_project: true,
    };
    let target = connect_with_runner(global, options, Some(&runner_args)).await?;
    target.announce(global);
    let (org, pid) = target.ids()?;
    let stopped = target
        .client
        .stop(org, pid, &args.execution_id)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                e.with_hint("list executions with `meltano-cloud history --result running`")
            } else {
                e
            }
        })?;
    println!(
        "Stopped execution {}: {}.",
        stopped.execution_id,
        stopped.reason.trim_end_matches('.')
    );
    if target.local && !stopped.reason.starts_with("stopped") {
        eprintln!(
            "The run is still ending in the `meltano-cloud run` that started it; if it does \
             not end, press ctrl-c in the terminal running it."
        );
    }
    Ok(ExitCode::SUCCESS)
}
