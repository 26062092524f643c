//! The embedded local control plane (`MELTANO_CLOUD_API_URL=local`): the same service,
//! served in-process on 127.0.0.1 over a SQLite file under `.meltano/cloud/` of the
//! Meltano project, with the enclosing git repository as the project's repository.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, miette};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{AppState, ServerConfig};
use crate::api::{Project, Role};
use crate::store::crypto::KeySource;
use crate::store::{DbTarget, Principal, Store, StoreError, normalize_root};

/// The organization every local control plane uses.
pub const LOCAL_ORG: &str = "local";

/// A running local control plane; stops when dropped.
pub struct LocalPlane {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// An owner token of [`LOCAL_ORG`] that exists only in this process's memory.
    pub token: String,
    pub org: String,
    pub project: Project,
    /// The SQLite file.
    pub database: PathBuf,
    /// The runner, when one was asked for (`run`, `job stop`).
    pub runner: Option<crate::runner::Runner>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPlane")
            .field("base_url", &self.base_url)
            .field("org", &self.org)
            .field("project", &self.project)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl LocalPlane {
    /// Stops serving and waits for in-flight requests to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LocalPlane {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn git_toplevel(dir: &Path) -> miette::Result<PathBuf> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .await
        .map_err(|e| miette!(code = "local::git", "cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(miette!(
            code = "local::not_a_repository",
            help = "run `git init` and commit meltano.yml; deployments read it from git commits",
            "the Meltano project at {} is not inside a git repository",
            dir.display()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Opens (or creates) the local control plane of the Meltano project in
/// `meltano_project_dir` and serves it on 127.0.0.1 on a free port.
pub async fn start_local(
    meltano_project_dir: &Path,
    project_name: &str,
) -> miette::Result<LocalPlane> {
    start_local_with_runner(meltano_project_dir, project_name, None).await
}

/// Like [`start_local`], with a runner (work dirs, installs and state under
/// `.meltano/cloud/`) that runs jobs in this process.
pub async fn start_local_with_runner(
    meltano_project_dir: &Path,
    project_name: &str,
    runner: Option<&crate::runner::RunnerArgs>,
) -> miette::Result<LocalPlane> {
    let dir = std::fs::canonicalize(meltano_project_dir).map_err(|e| {
        miette!(
            code = "local::project_dir",
            "cannot open {}: {e}",
            meltano_project_dir.display()
        )
    })?;
    let top = git_toplevel(&dir).await?;
    let top = std::fs::canonicalize(&top).unwrap_or(top);
    let root = dir
        .strip_prefix(&top)
        .map(|p| normalize_root(&p.to_string_lossy()))
        .unwrap_or_else(|_| ".".to_string());

    let data_dir = dir.join(".meltano").join("cloud");
    let db_path = data_dir.join("control-plane.db");
    let target = DbTarget::sqlite(&db_path);
    let store_err = |e: StoreError| {
        miette!(
            code = "local::store",
            help = "the file is the embedded control plane's state; move it away to start afresh",
            "cannot open the local control plane at {}: {e}",
            db_path.display()
        )
    };
    let store = Store::open(&target).await.map_err(store_err)?;
    let key = KeySource::from_env_or_file(target.default_key_file(&data_dir));
    let store = store.with_key(&key).await.map_err(store_err)?;

    match store.create_org(LOCAL_ORG).await {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(store_err(e)),
    }
    let repo = top.to_string_lossy().into_owned();
    let project = match store.find_project(LOCAL_ORG, project_name).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => store
            .create_project(LOCAL_ORG, project_name, &repo, &root)
            .await
            .map_err(store_err)?,
        Err(e) => return Err(store_err(e)),
    };

    let token = format!(
        "{}local_{}",
        crate::store::TOKEN_PREFIX,
        crate::store::crypto::generate_key_hex().as_str()
    );
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        database: target.redacted(),
        simulate: Default::default(),
    };
    let mut state = AppState::new(store.clone(), config);
    if let Some(args) = runner {
        let r = args
            .start_local(&store, state.git.clone(), &data_dir)
            .await
            .map_err(|e| miette!(code = "local::runner", "cannot start the runner: {e}"))?;
        state.runner = Some(r);
    }
    let runner = state.runner.clone();
    state.add_ephemeral_token(
        &token,
        Principal {
            org: LOCAL_ORG.to_string(),
            role: Role::Owner,
            token_id: "local".to_string(),
            token_name: Some("local".to_string()),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .into_diagnostic()?;
    let addr = listener.local_addr().into_diagnostic()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = super::serve(listener, state, shutdown).await {
            tracing::error!(error = %e, "local control plane stopped");
        }
    });
    Ok(LocalPlane {
        base_url: format!("http://{addr}"),
        token,
        org: LOCAL_ORG.to_string(),
        project,
        database: db_path,
        runner,
        shutdown: Some(tx),
        task: Some(task),
    })
}
