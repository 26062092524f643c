//! Which control plane, organization and project a command talks to.
//!
//! The control plane comes from `--api-url` / `MELTANO_CLOUD_API_URL`, then
//! `MELTANO_CLOUD_BASE_URL` or the settings file written by `login`, and otherwise is the
//! embedded local control plane (`local`), kept in `.meltano/cloud/control-plane.db` beside
//! the Meltano project.

use std::any::Any;
use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::api::Project;
use crate::api::client::Client;
use crate::cli::GlobalArgs;
use crate::settings::{Settings, settings_path};

/// A connected control plane: the client, the organization and (when one was named or
/// remembered) the project.
pub struct Target {
    pub client: Client,
    pub org: String,
    pub project: Option<Project>,
    /// What every command prints first, e.g.
    /// `Control plane: http://127.0.0.1:8080 (org acme, project jaffle-shop)`.
    pub description: String,
    /// True for the embedded local control plane.
    pub local: bool,
    /// The settings file (read for defaults, written by `project use` / `deployment use`).
    pub settings_path: PathBuf,
    pub settings: Settings,
    /// The embedded control plane's runner, when the command asked for one.
    pub local_runner: Option<crate::runner::Runner>,
    /// Keeps the embedded control plane running as long as the target lives.
    _keepalive: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("client", &self.client)
            .field("org", &self.org)
            .field("project", &self.project)
            .field("local", &self.local)
            .finish()
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum TargetError {
    #[error("no API token for {url}")]
    #[diagnostic(
        code(target::no_token),
        help(
            "log in with `meltano-cloud login --api-url {url}`, or set MELTANO_CLOUD_TOKEN \
             (a token made with `meltano-cloud admin token create`)"
        )
    )]
    NoToken { url: String },
    #[error("no project selected")]
    #[diagnostic(
        code(target::no_project),
        help(
            "name one with --project NAME (or MELTANO_CLOUD_PROJECT), remember one with \
             `meltano-cloud project use --name NAME`, or run where a cloud.yml (--file) names \
             its `project`"
        )
    )]
    NoProject,
    #[error("project `{name}` was not found in organization `{org}`")]
    #[diagnostic(code(target::project_not_found), help("{help}"))]
    ProjectNotFound {
        name: String,
        org: String,
        help: String,
    },
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions<'a> {
    /// Project name or id to use when neither `--project` nor MELTANO_CLOUD_PROJECT is set
    /// (cloud.yml's `project`).
    pub project_hint: Option<&'a str>,
    /// Look the project up (one request). Commands that do not need one skip it.
    pub resolve_project: bool,
}

/// Connects to the control plane and resolves the organization and the project.
pub async fn connect(global: &GlobalArgs, project_hint: Option<&str>) -> miette::Result<Target> {
    connect_with(
        global,
        ConnectOptions {
            project_hint,
            resolve_project: true,
        },
    )
    .await
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// Connects with explicit options.
pub async fn connect_with(
    global: &GlobalArgs,
    options: ConnectOptions<'_>,
) -> miette::Result<Target> {
    connect_with_runner(global, options, None).await
}

/// Connects like [`connect`]; the embedded local control plane then gets a runner with
/// these settings, so that runs execute in this process (a remote control plane has its
/// own runner and ignores them).
pub async fn connect_with_runner(
    global: &GlobalArgs,
    options: ConnectOptions<'_>,
    local_runner: Option<&crate::runner::RunnerArgs>,
) -> miette::Result<Target> {
    let path = settings_path(global.config_path.as_deref())?;
    let settings = Settings::load(&path)?;
    let overridden = settings.clone().with_env_overrides();
    let url = non_empty(&global.api_url).or_else(|| non_empty(&overridden.base_url));
    match url.as_deref() {
        None | Some("local") => connect_local(global, options, path, settings, local_runner).await,
        Some(url) => connect_remote(global, options, url, path, settings).await,
    }
}

async fn connect_remote(
    global: &GlobalArgs,
    options: ConnectOptions<'_>,
    url: &str,
    path: PathBuf,
    settings: Settings,
) -> miette::Result<Target> {
    // The stored token belongs to the URL stored with it: never send it to another server,
    // whether that one comes from --api-url or from MELTANO_CLOUD_BASE_URL.
    let stored_url_matches = settings
        .base_url
        .as_deref()
        .is_some_and(|u| same_url(u, url));
    let stored_token = non_empty(&global.token).is_none();
    let token = non_empty(&global.token).or_else(|| {
        if stored_url_matches {
            non_empty(&settings.token)
        } else {
            None
        }
    });
    let Some(token) = token else {
        return Err(TargetError::NoToken {
            url: url.trim_end_matches('/').to_string(),
        }
        .into());
    };
    let client = Client::builder(url)
        .token(Some(token))
        .trace(global.verbose >= 2)
        .build()?;
    // The stored organization is the stored token's; another token asks whoami.
    let org = match non_empty(&global.org).or_else(|| {
        if stored_url_matches && stored_token {
            non_empty(&settings.org)
        } else {
            None
        }
    }) {
        Some(org) => org,
        None => client.whoami().await?.tenant_resource_key,
    };
    let name = non_empty(&global.project)
        .or_else(|| options.project_hint.map(str::to_string))
        .or_else(|| settings.default_project(&org).map(str::to_string))
        .or_else(|| cloud_yml_project(global));
    let project = match (options.resolve_project, name) {
        (true, Some(name)) => Some(resolve_project(&client, &org, &name).await?),
        _ => None,
    };
    let description = match &project {
        Some(p) => format!(
            "Control plane: {} (org {org}, project {})",
            client.base_url(),
            p.project_name
        ),
        None => format!("Control plane: {} (org {org})", client.base_url()),
    };
    Ok(Target {
        client,
        org,
        project,
        description,
        local: false,
        settings_path: path,
        settings,
        local_runner: None,
        _keepalive: None,
    })
}

/// Finds a project by name, then by id; a diagnostic with "did you mean" otherwise.
pub async fn resolve_project(client: &Client, org: &str, name: &str) -> miette::Result<Project> {
    if let Some(p) = client.find_project(org, name).await? {
        return Ok(p);
    }
    let all = client.all_projects(org, Some(1000)).await?;
    let names: Vec<&str> = all.items.iter().map(|p| p.project_name.as_str()).collect();
    let help = match did_you_mean(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? List projects with `meltano-cloud project list`"),
        None if names.is_empty() => "the organization has no projects yet; create one with \
                                     `meltano-cloud project create`"
            .to_string(),
        None => format!("existing projects: {}", names.join(", ")),
    };
    Err(TargetError::ProjectNotFound {
        name: name.to_string(),
        org: org.to_string(),
        help,
    }
    .into())
}

/// The closest of `candidates` to `name`, when close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Reads a top-level scalar (`project:`, `meltano_project:`) from cloud.yml without the full
/// loader, which would reject a file being edited; only used to place the local plane.
fn top_level_scalar(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let value = rest.split(" #").next()?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// `project:` of the cloud.yml at --file (relative to the current folder), when there is
/// one: the last fallback of the commands that do not load cloud.yml themselves.
fn cloud_yml_project(global: &GlobalArgs) -> Option<String> {
    let text = std::fs::read_to_string(&global.file).ok()?;
    top_level_scalar(&text, "project")
}

/// The Meltano project folder and project name the local plane serves.
fn local_project(global: &GlobalArgs, hint: Option<&str>) -> (PathBuf, String) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cloud_file = cwd.join(&global.file);
    let (dir, from_file) = match std::fs::read_to_string(&cloud_file) {
        Ok(text) => {
            let base = cloud_file.parent().unwrap_or(&cwd).to_path_buf();
            let meltano = top_level_scalar(&text, "meltano_project").unwrap_or_else(|| ".".into());
            (base.join(meltano), top_level_scalar(&text, "project"))
        }
        Err(_) => (cwd.clone(), None),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    let name = non_empty(&global.project)
        .or_else(|| hint.map(str::to_string))
        .or(from_file)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "default".into())
        });
    (dir, name)
}

async fn connect_local(
    global: &GlobalArgs,
    options: ConnectOptions<'_>,
    path: PathBuf,
    settings: Settings,
    local_runner: Option<&crate::runner::RunnerArgs>,
) -> miette::Result<Target> {
    let (dir, name) = local_project(global, options.project_hint);
    let plane = crate::server::local::start_local_with_runner(&dir, &name, local_runner).await?;
    let client = Client::builder(&plane.base_url)
        .token(Some(plane.token.clone()))
        .trace(global.verbose >= 2)
        .build()?;
    let cwd = std::env::current_dir()
        .and_then(|c| c.canonicalize())
        .unwrap_or_default();
    let db = plane.database.clone();
    let shown = db.strip_prefix(&cwd).unwrap_or(&db).display().to_string();
    Ok(Target {
        client,
        org: plane.org.clone(),
        project: Some(plane.project.clone()),
        description: format!("Control plane: local ({shown})"),
        local: true,
        settings_path: path,
        settings,
        local_runner: plane.runner.clone(),
        _keepalive: Some(Box::new(plane)),
    })
}

impl Target {
    /// The project, or a diagnostic saying how to choose one.
    pub fn project(&self) -> miette::Result<&Project> {
        self.project
            .as_ref()
            .ok_or_else(|| TargetError::NoProject.into())
    }

    /// The deployment remembered with `deployment use` for the current project.
    pub fn default_deployment(&self) -> Option<&str> {
        let pid = &self.project.as_ref()?.project_id;
        self.settings.default_deployment(pid)
    }

    /// Remembers `project_id` as the default project of the organization.
    pub fn remember_project(&mut self, project_id: &str) -> miette::Result<()> {
        let mut s = Settings::load(&self.settings_path)?;
        s.default_projects
            .insert(self.org.clone(), project_id.to_string());
        s.save(&self.settings_path)?;
        self.settings = s;
        Ok(())
    }

    /// Remembers `deployment` as the default deployment of the current project.
    pub fn remember_deployment(&mut self, deployment: &str) -> miette::Result<()> {
        let pid = self.project()?.project_id.clone();
        let mut s = Settings::load(&self.settings_path)?;
        s.default_deployments.insert(pid, deployment.to_string());
        s.save(&self.settings_path)?;
        self.settings = s;
        Ok(())
    }

    /// Prints the description on stderr (stdout stays clean for `--format json`).
    pub fn announce(&self, global: &GlobalArgs) {
        if !global.quiet {
            eprintln!("{}", self.description);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names_only() {
        let names = ["production", "staging"];
        assert_eq!(did_you_mean("prodution", names), Some("production".into()));
        assert_eq!(did_you_mean("stagin", names), Some("staging".into()));
        assert_eq!(did_you_mean("xyz", names), None);
    }

    #[test]
    fn scalars_of_cloud_yml() {
        let text =
            "version: 1\nproject: \"jaffle\" # name\nmeltano_project: sub\n  project: nested\n";
        assert_eq!(top_level_scalar(text, "project"), Some("jaffle".into()));
        assert_eq!(
            top_level_scalar(text, "meltano_project"),
            Some("sub".into())
        );
        assert_eq!(top_level_scalar(text, "prune"), None);
    }
}

/// Commands that change or delete things: confirmation on a terminal, `--yes` otherwise.
#[derive(Debug, Error, Diagnostic)]
pub enum ConfirmError {
    #[error("refusing to {action} without confirmation: stdin is not a terminal")]
    #[diagnostic(
        code(cli::confirmation_required),
        help("pass --yes to confirm non-interactively")
    )]
    NotATerminal { action: String },
    #[error("cancelled: {action} was not confirmed")]
    #[diagnostic(code(cli::cancelled))]
    Cancelled { action: String },
}

/// Asks `Do you really want to {action}? [y/N]` on a terminal; `yes` skips the question.
/// Fails when stdin is not a terminal and `yes` was not given.
pub fn confirm(action: &str, yes: bool) -> miette::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(ConfirmError::NotATerminal {
            action: action.to_string(),
        }
        .into());
    }
    eprint!("Do you really want to {action}? Only `y` or `yes` proceeds: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(ConfirmError::Cancelled {
            action: action.to_string(),
        }
        .into()),
    }
}

#[derive(Debug, Error, Diagnostic)]
#[error("no deployment given")]
#[diagnostic(
    code(cli::no_deployment),
    help(
        "pass --deployment NAME, or remember a default with `meltano-cloud deployment use \
         --name NAME`"
    )
)]
pub struct NoDeployment;

impl Target {
    /// The project's org and id, for API calls.
    pub fn ids(&self) -> miette::Result<(&str, &str)> {
        Ok((self.org.as_str(), self.project()?.project_id.as_str()))
    }

    /// `--deployment`, else the remembered default deployment.
    pub fn deployment_or_default(&self, flag: Option<String>) -> miette::Result<String> {
        flag.or_else(|| self.default_deployment().map(str::to_string))
            .ok_or_else(|| NoDeployment.into())
    }

    /// Turns a 404 about a deployment into a diagnostic with "did you mean" (one extra call
    /// to list deployments; only made on the error path).
    pub async fn explain_missing_deployment(
        &self,
        err: crate::api::client::ApiError,
        name: &str,
    ) -> miette::Report {
        if !err.is_not_found() {
            return err.into();
        }
        let Ok((org, pid)) = self.ids() else {
            return err.into();
        };
        match self.client.all_deployments(org, pid, Some(1000)).await {
            Ok(all) if all.items.iter().all(|d| d.deployment_name != name) => {
                let names: Vec<&str> = all
                    .items
                    .iter()
                    .map(|d| d.deployment_name.as_str())
                    .collect();
                let err = err.with_subject(format!("deployment `{name}`"));
                match did_you_mean(name, names.iter().copied()) {
                    Some(s) => err.with_hint(format!("did you mean `{s}`?")).into(),
                    None if names.is_empty() => err
                        .with_hint("the project has no deployments yet; create one with `meltano-cloud deployment create`")
                        .into(),
                    None => err
                        .with_hint(format!("existing deployments: {}", names.join(", ")))
                        .into(),
                }
            }
            _ => err.into(),
        }
    }

    /// Like [`Target::explain_missing_deployment`], for a schedule of a deployment.
    pub async fn explain_missing_schedule(
        &self,
        err: crate::api::client::ApiError,
        deployment: &str,
        schedule: &str,
    ) -> miette::Report {
        if !err.is_not_found() {
            return err.into();
        }
        let Ok((org, pid)) = self.ids() else {
            return err.into();
        };
        match self
            .client
            .all_schedules(org, pid, Some(deployment), Some(1000))
            .await
        {
            Ok(all) => {
                let names: Vec<&str> = all.items.iter().map(|s| s.schedule_name.as_str()).collect();
                let err = err.with_subject(format!(
                    "schedule `{schedule}` on deployment `{deployment}`"
                ));
                match did_you_mean(schedule, names.iter().copied()) {
                    Some(s) => err.with_hint(format!("did you mean `{s}`?")).into(),
                    None if names.is_empty() => err
                        .with_hint(format!(
                            "deployment `{deployment}` has no schedules; schedules come from \
                             meltano.yml at the deployed commit (redeploy with `meltano-cloud \
                             deployment update --name {deployment}` after adding one)"
                        ))
                        .into(),
                    None => err
                        .with_hint(format!("schedules of `{deployment}`: {}", names.join(", ")))
                        .into(),
                }
            }
            // The deployment itself is missing.
            Err(e) if e.is_not_found() => self.explain_missing_deployment(err, deployment).await,
            Err(_) => err.into(),
        }
    }
}
