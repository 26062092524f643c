//! `meltano-cloud deployment list|use|create|update|delete`.

use std::process::ExitCode;

use crate::api::{DeployQuery, Deployment, DeploymentRequest};
use crate::cli::GlobalArgs;
use crate::cli::target::{confirm, connect};
use crate::render::table::{Format, Table, print_list};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the project's deployments; `*` marks the default one.
    List(ListArgs),
    /// Remember a deployment as the default for this project.
    Use(NameArgs),
    /// Create a deployment and deploy the latest commit of its git rev.
    Create(CreateArgs),
    /// Change a deployment, or redeploy the latest commit of its git rev.
    Update(UpdateArgs),
    /// Delete a deployment (asks for confirmation; --yes when not on a terminal).
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Show at most this many deployments.
    #[arg(long, default_value_t = 125)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// Name of the deployment.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Name of the deployment: lowercase letters, digits and dashes.
    #[arg(long)]
    pub name: String,
    /// Meltano environment the deployment runs in (from meltano.yml).
    #[arg(long)]
    pub environment: String,
    /// Branch, tag or commit the deployment tracks.
    #[arg(long)]
    pub git_rev: String,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Name of the deployment.
    #[arg(long)]
    pub name: String,
    /// New Meltano environment (unchanged when omitted).
    #[arg(long)]
    pub environment: Option<String>,
    /// New git rev to track (unchanged when omitted).
    #[arg(long)]
    pub git_rev: Option<String>,
    /// Redeploy even when nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Keep the deployed commit; change only the other fields.
    #[arg(long)]
    pub preserve_git_hash: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Name of the deployment.
    #[arg(long)]
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

fn short(hash: &str) -> &str {
    hash.get(..7).unwrap_or(hash)
}

fn print_deployment(verb: &str, d: &Deployment) {
    println!(
        "{verb} deployment `{}`: environment {}, git rev {} at {} (deployed {}).",
        d.deployment_name,
        d.environment_name,
        d.git_rev,
        short(&d.git_rev_hash),
        d.last_deployed_timestamp
    );
}

/// Same rule as the control plane, checked first so the user gets the reason at once.
fn check_slug(name: &str) -> miette::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(miette::miette!(
            code = "deployment::invalid_name",
            help = "use lowercase letters, digits and dashes, e.g. `production` or `staging-eu`",
            "`{name}` is not a valid deployment name"
        ))
    }
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let mut target = connect(global, None).await?;
    target.announce(global);
    let (org, pid) = {
        let (o, p) = target.ids()?;
        (o.to_string(), p.to_string())
    };
    let client = target.client.clone();
    match cmd {
        Command::List(args) => {
            let paged = client.all_deployments(&org, &pid, Some(args.limit)).await?;
            let default = target.default_deployment().map(str::to_string);
            // The first column only holds the `*` of the default deployment.
            let mut table = Table::new(&[
                "",
                "NAME",
                "ENVIRONMENT",
                "GIT REV",
                "COMMIT",
                "LAST DEPLOYED (UTC)",
            ])
            .keys(&[1])
            .optional(&[4, 5, 3]);
            for d in &paged.items {
                let mark = if default.as_deref() == Some(d.deployment_name.as_str()) {
                    "*"
                } else {
                    ""
                };
                table.push(vec![
                    mark.into(),
                    d.deployment_name.clone(),
                    d.environment_name.clone(),
                    d.git_rev.clone(),
                    short(&d.git_rev_hash).into(),
                    d.last_deployed_timestamp.clone(),
                ]);
            }
            print_list(
                args.format,
                &table,
                &paged.items,
                paged.more,
                "deployments",
                "Raise --limit to see more.",
            )?;
        }
        Command::Use(args) => {
            let d = match client.get_deployment(&org, &pid, &args.name).await {
                Ok(d) => d,
                Err(e) => return Err(target.explain_missing_deployment(e, &args.name).await),
            };
            target.remember_deployment(&d.deployment_name)?;
            println!(
                "Default deployment of project `{}` is now `{}`.",
                target.project()?.project_name,
                d.deployment_name
            );
        }
        Command::Create(args) => {
            check_slug(&args.name)?;
            match client.get_deployment(&org, &pid, &args.name).await {
                Ok(_) => {
                    return Err(miette::miette!(
                        code = "deployment::exists",
                        help = format!(
                            "change it with `meltano-cloud deployment update --name {}`",
                            args.name
                        ),
                        "deployment `{}` already exists",
                        args.name
                    ));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            let body = DeploymentRequest {
                environment_name: args.environment,
                git_rev: args.git_rev,
                protected: None,
            };
            let d = client
                .deploy(&org, &pid, &args.name, &body, &DeployQuery::default())
                .await?;
            match d {
                Some(d) => print_deployment("Created", &d),
                None => println!(
                    "Deployment `{}` is already deployed as requested.",
                    args.name
                ),
            }
        }
        Command::Update(args) => {
            let current = match client.get_deployment(&org, &pid, &args.name).await {
                Ok(d) => d,
                Err(e) => return Err(target.explain_missing_deployment(e, &args.name).await),
            };
            let body = DeploymentRequest {
                environment_name: args.environment.unwrap_or(current.environment_name),
                git_rev: args.git_rev.unwrap_or(current.git_rev),
                protected: None,
            };
            let query = DeployQuery {
                force: args.force.then_some(true),
                preserve_git_hash: args.preserve_git_hash.then_some(true),
            };
            match client.deploy(&org, &pid, &args.name, &body, &query).await? {
                Some(d) => print_deployment("Updated", &d),
                None => println!(
                    "Deployment `{}` is up to date: nothing changed (--force redeploys anyway).",
                    args.name
                ),
            }
        }
        Command::Delete(args) => {
            // Check first, so a typo gets "did you mean" before any question is asked.
            if let Err(e) = client.get_deployment(&org, &pid, &args.name).await {
                return Err(target.explain_missing_deployment(e, &args.name).await);
            }
            confirm(&format!("delete deployment `{}`", args.name), args.yes)?;
            client.delete_deployment(&org, &pid, &args.name).await?;
            if target.default_deployment() == Some(args.name.as_str()) {
                let mut s = crate::settings::Settings::load(&target.settings_path)?;
                s.default_deployments.remove(&pid);
                s.save(&target.settings_path)?;
            }
            println!("Deleted deployment `{}`.", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
