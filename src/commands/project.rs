//! `meltano-cloud project list|use|create`.

use std::process::ExitCode;

use crate::api::CreateProject;
use crate::cli::GlobalArgs;
use crate::cli::target::{ConnectOptions, connect_with, resolve_project};
use crate::render::table::{Format, Table, print_list};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the organization's projects; `*` marks the default one.
    List(ListArgs),
    /// Remember a project as the default for this organization.
    Use(UseArgs),
    /// Create a project from a git repository.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Show at most this many projects.
    #[arg(long, default_value_t = 125)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct UseArgs {
    /// Name of the project.
    #[arg(long)]
    pub name: Option<String>,
    /// Id of the project.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Name of the new project.
    #[arg(long)]
    pub name: String,
    /// URL or path of the git repository holding the Meltano project (`--repo` works too,
    /// as in `admin project create`).
    #[arg(long, alias = "repo", value_name = "URL")]
    pub repo_url: String,
    /// Folder inside the repository that holds meltano.yml.
    #[arg(long, value_name = "PATH")]
    pub root_path: Option<String>,
}

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    let options = ConnectOptions {
        project_hint: None,
        resolve_project: false,
    };
    let mut target = connect_with(global, options).await?;
    target.announce(global);
    let org = target.org.clone();
    match cmd {
        Command::List(args) => {
            let paged = target.client.all_projects(&org, Some(args.limit)).await?;
            let default = target
                .project
                .as_ref()
                .map(|p| p.project_id.clone())
                .or_else(|| target.settings.default_project(&org).map(str::to_string));
            let mut table = Table::new(&["", "NAME", "GIT REPOSITORY", "ROOT PATH", "ID"])
                .keys(&[1, 4])
                .optional(&[3, 2]);
            for p in &paged.items {
                let mark = if default.as_deref() == Some(p.project_id.as_str()) {
                    "*"
                } else {
                    ""
                };
                table.push(vec![
                    mark.into(),
                    p.project_name.clone(),
                    p.git_repository.clone(),
                    p.project_root_path.clone(),
                    p.project_id.clone(),
                ]);
            }
            print_list(
                args.format,
                &table,
                &paged.items,
                paged.more,
                "projects",
                "Raise --limit to see more.",
            )?;
        }
        Command::Use(args) => {
            let wanted = args.name.or(args.id).unwrap_or_default();
            let project = resolve_project(&target.client, &org, &wanted).await?;
            target.remember_project(&project.project_id)?;
            println!(
                "Default project of organization `{org}` is now `{}` ({}).",
                project.project_name, project.project_id
            );
        }
        Command::Create(args) => {
            let body = CreateProject {
                project_name: args.name.clone(),
                git_repository: args.repo_url,
                project_root_path: args.root_path,
            };
            let project = match target.client.create_project(&org, &body).await {
                Ok(p) => p,
                Err(e) if e.is_conflict() => {
                    return Err(e
                        .with_hint(format!(
                            "a project named `{}` already exists; pick another name, or select it with `meltano-cloud project use --name {}`",
                            args.name, args.name
                        ))
                        .into());
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "Created project `{}` ({}).",
                project.project_name, project.project_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
