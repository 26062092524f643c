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
    #[error(
        "lock `{asked}` is not the lock held on project {project}: `{held}` is, held by {holder} for {operation} since {since}"
    )]
    #[diagnostic(
        code(force_unlock::other_lock),
        help(
            "check the id; if that lock is the stuck one, run `meltano-cloud force-unlock {held}`"
        )
    )]
    OtherLock {
        asked: String,
        project: String,
        held: String,
        holder: String,
        operation: String,
        since: String,
    },
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
    // Look first, so a wrong id or a lock already gone is told before anything is asked.
    let snapshot = target
        .client
        .snapshot(&target.org, &project.project_id)
        .await?;
    match snapshot.lock {
        None => {
            print(&format!(
                "No lock is held on project {}; nothing to remove.\n",
                project.project_name
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(held) if held.lock_id != args.lock_id => {
            return Err(UnlockError::OtherLock {
                asked: args.lock_id.clone(),
                project: project.project_name.clone(),
                held: held.lock_id,
                holder: held.holder,
                operation: held.operation,
                since: held.acquired_at,
            }
            .into());
        }
        Some(_) => {}
    }
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
