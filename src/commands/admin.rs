use std::process::ExitCode;

use miette::miette;

use crate::api::Role;
use crate::cli::GlobalArgs;
use crate::commands::server::{StoreArgs, attach_key, open_store};
use crate::store::{SeedSize, Store, StoreError};

/// Bootstrap a control plane by working on its database directly: organizations,
/// projects, API tokens.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Fill a project with N deployments, M schedules each and K secrets (benchmarks, load tests).
    Seed(SeedArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create {
        /// Name, e.g. `acme`: lowercase letters, digits and dashes (the API calls it the tenant resource key).
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print its id.
    Create {
        /// Organization name, e.g. `acme`.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// Project name, unique in the organization.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Git repository: a URL (https://, ssh://, git@host:path) or a local path.
        #[arg(long, value_name = "URL_OR_PATH")]
        repo: String,
        /// Folder inside the repository that holds meltano.yml.
        #[arg(long, value_name = "PATH", default_value = ".")]
        root_path: String,
    },
    /// List an organization's projects.
    List {
        /// Organization name, e.g. `acme`.
        #[arg(long, value_name = "ORG")]
        org: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// Organization name, e.g. `acme`.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// owner, maintainer or reader.
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// A label, e.g. `ci` or `alice`.
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
    },
    /// List an organization's tokens (ids and roles, never the tokens).
    List {
        /// Organization name, e.g. `acme`.
        #[arg(long, value_name = "ORG")]
        org: String,
    },
    /// Revoke a token by id.
    Revoke {
        /// Organization name, e.g. `acme`.
        #[arg(long, value_name = "ORG")]
        org: String,
        /// The token id (`tok_...`) from `token list`.
        token_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Organization name, e.g. `acme`.
    #[arg(long, value_name = "ORG")]
    pub org: String,
    /// Project name or id.
    #[arg(long, value_name = "PROJECT")]
    pub project: String,
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub deployments: usize,
    #[arg(long, value_name = "M", default_value_t = 5)]
    pub schedules: usize,
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub secrets: usize,
}

fn store_error(e: StoreError) -> miette::Report {
    match e {
        StoreError::NotFound(d) => miette!(
            code = "admin::not_found",
            help = "create it first, e.g. `meltano-cloud admin org create NAME`",
            "{d}"
        ),
        StoreError::Conflict(d) => miette!(code = "admin::exists", "{d}"),
        StoreError::Invalid(d) => miette!(code = "admin::invalid", "{d}"),
        other => miette!(code = "admin::database", "{other}"),
    }
}

pub async fn run(_global: &GlobalArgs, args: Args) -> miette::Result<ExitCode> {
    let (data_dir, target) = args.store.resolve()?;
    let store = open_store(&target).await?;
    let result = command(&store, &target, &data_dir, args.command).await;
    store.close().await;
    result
}

async fn command(
    store: &Store,
    target: &crate::store::DbTarget,
    data_dir: &std::path::Path,
    command: Command,
) -> miette::Result<ExitCode> {
    match command {
        Command::Org(OrgCommand::Create { name }) => {
            store.create_org(&name).await.map_err(store_error)?;
            eprintln!("created organization {name}");
        }
        Command::Project(ProjectCommand::Create {
            org,
            name,
            repo,
            root_path,
        }) => {
            let repo = match crate::gitrepo::local_path(&repo) {
                // A relative path means nothing to a server started elsewhere.
                Some(p) if !repo.starts_with("file://") => std::path::absolute(&p)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or(repo),
                _ => repo,
            };
            let project = store
                .create_project(&org, &name, &repo, &root_path)
                .await
                .map_err(store_error)?;
            println!("{}", project.project_id);
        }
        Command::Project(ProjectCommand::List { org }) => {
            let mut token = None;
            let mut rows = vec![[
                "PROJECT ID".to_string(),
                "NAME".into(),
                "REPOSITORY".into(),
                "ROOT".into(),
            ]];
            loop {
                let req = crate::store::PageReq::parse(Some(250), token.as_deref(), 1)
                    .map_err(store_error)?;
                let page = store
                    .list_projects(&org, None, None, &req)
                    .await
                    .map_err(store_error)?;
                for p in page.items {
                    rows.push([
                        p.project_id,
                        p.project_name,
                        p.git_repository,
                        p.project_root_path,
                    ]);
                }
                match page.next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            print_table(&rows);
        }
        Command::Token(TokenCommand::Create { org, role, name }) => {
            let created = store
                .create_token(&org, role, name.as_deref())
                .await
                .map_err(store_error)?;
            eprintln!(
                "created {} token {} for organization {org}; it is shown only once:",
                role.as_str(),
                created.info.token_id
            );
            println!("{}", created.token);
        }
        Command::Token(TokenCommand::List { org }) => {
            let tokens = store.list_tokens(&org).await.map_err(store_error)?;
            let mut rows = vec![[
                "TOKEN ID".to_string(),
                "ROLE".into(),
                "NAME".into(),
                "CREATED".into(),
            ]];
            for t in tokens {
                rows.push([
                    t.token_id,
                    t.role.as_str().to_string(),
                    t.name.unwrap_or_else(|| "-".into()),
                    t.created_at,
                ]);
            }
            print_table(&rows);
        }
        Command::Token(TokenCommand::Revoke { org, token_id }) => {
            store
                .revoke_token(&org, &token_id)
                .await
                .map_err(store_error)?;
            eprintln!("revoked token {token_id}");
        }
        Command::Seed(seed) => {
            let store = attach_key(store.clone(), target, data_dir).await?;
            let project = store
                .find_project(&seed.org, &seed.project)
                .await
                .map_err(store_error)?;
            let started = std::time::Instant::now();
            let revision = store
                .seed(
                    &project.project_id,
                    SeedSize {
                        deployments: seed.deployments,
                        schedules: seed.schedules,
                        secrets: seed.secrets,
                    },
                    &"0".repeat(40),
                )
                .await
                .map_err(|e| match e {
                    StoreError::Db(db) => miette!(
                        code = "admin::seed",
                        help = "seed an empty project: the generated names must not exist yet",
                        "{db}"
                    ),
                    other => store_error(other),
                })?;
            eprintln!(
                "seeded project {} with {} deployments x {} schedules and {} secrets in {:.2?} (revision {revision})",
                project.project_name,
                seed.deployments,
                seed.schedules,
                seed.secrets,
                started.elapsed()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}
