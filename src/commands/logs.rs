use std::process::ExitCode;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// (not yet built)
    Todo,
}

pub async fn run(_global: &GlobalArgs, _cmd: Command) -> miette::Result<ExitCode> {
    miette::bail!("`logs` is not built yet")
}
