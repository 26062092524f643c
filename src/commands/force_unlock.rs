use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::target;
use crate::commands::plan::print;

/// Remove a stuck project lock (left by an apply whose process is gone).
///
/// The lock id is printed by the apply that finds the lock held. Removing a lock that a
/// running apply still holds lets two applies run at once: check that it is really stuck.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Id of the lock to remove.
    #[arg(value_name = "LOCK_ID")]
    pub lock_id: String,

    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UnlockError {
    #[error("refusing to ask for confirmation: stdin is not a terminal")]
    #[diagnostic(code(force_unlock::no_terminal), help("pass --yes to remove the lock"))]
    NotATerminal,
    #[error("Force-unlock cancelled.")]
    #[diagnostic(code(force_unlock::cancelled), help("only `yes` removes the lock"))]
    Cancelled,
}

/// cloud.yml's `project`, when the file can be read, to pick the project.
pub fn project_hint(global: &GlobalArgs) -> Option<String> {
    crate::spec::load(&global.file)
        .ok()
        .map(|s| s.cloud.project)
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let hint = project_hint(global);
    let target = target::connect(global, hint.as_deref()).await?;
    let project = target.project()?.clone();
    target.announce(global);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(UnlockError::NotATerminal.into());
        }
        print(&format!(
            "Do you really want to force-unlock lock {} of project {}?\n  A running apply holding it would no longer be protected.\n  Only 'yes' will be accepted to confirm.\n\n  Enter a value: ",
            args.lock_id, project.project_name
        ))?;
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if line.trim() != "yes" {
            return Err(UnlockError::Cancelled.into());
        }
    }
    target
        .client
        .force_unlock(&target.org, &project.project_id, &args.lock_id)
        .await?;
    print(&format!(
        "Lock {} of project {} was removed.\n",
        args.lock_id, project.project_name
    ))?;
    Ok(ExitCode::SUCCESS)
}
