use std::process::ExitCode;

use crate::cli::GlobalArgs;

/// (not yet built)
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_global: &GlobalArgs, _args: Args) -> miette::Result<ExitCode> {
    miette::bail!("`schema` is not built yet")
}
