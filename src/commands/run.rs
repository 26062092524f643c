//! `meltano-cloud run JOB_OR_SCHEDULE`: starts a job or schedule now.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::cli::target::{connect, did_you_mean};

/// Run a job or schedule of a deployment now, without waiting for its schedule.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of a job or schedule in the deployed meltano.yml.
    pub job_or_schedule: String,
    /// Deployment to run on (default: the remembered deployment).
    #[arg(long)]
    pub deployment: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let target = connect(global, None).await?;
    target.announce(global);
    target.require_runner("start a run")?;
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
