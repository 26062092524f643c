//! `meltano-cloud job stop`: stops a running execution.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::target::connect;

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
    let target = connect(global, None).await?;
    target.announce(global);
    target.require_runner("stop a run")?;
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
    Ok(ExitCode::SUCCESS)
}
