//! The runner's view of the control plane: deployments, schedules, jobs and secrets from
//! the [`Store`], repositories through the [`GitResolver`].

use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use zeroize::Zeroizing;

use super::{EnabledSchedule, Host, HostError, RunName, RunTarget};
use crate::gitrepo::GitResolver;
use crate::store::{Store, runs};

/// The secret holding the SSH key that clones the repository: used for git, never
/// injected into runs.
pub const GIT_SSH_KEY_SECRET: &str = "GIT_SSH_PRIVATE_KEY";

pub struct StoreHost {
    pub store: Store,
    pub git: Arc<GitResolver>,
}

impl Host for StoreHost {
    fn enabled_schedules(&self) -> BoxFuture<'_, Result<Vec<EnabledSchedule>, HostError>> {
        async move { Ok(runs::enabled_schedules(&self.store.pool).await?) }.boxed()
    }

    fn target<'a>(
        &'a self,
        org: &'a str,
        project_id: &'a str,
        deployment: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunTarget>, HostError>> {
        async move {
            let project = self.store.get_project(org, project_id).await?;
            let Some(d) = self.store.find_deployment(project_id, deployment).await? else {
                return Ok(None);
            };
            Ok(Some(RunTarget {
                org: org.to_owned(),
                project_id: project_id.to_owned(),
                deployment_name: d.deployment_name,
                environment_name: d.environment_name,
                git_rev_hash: d.git_rev_hash,
                root_path: project.project_root_path,
            }))
        }
        .boxed()
    }

    fn resolve_name<'a>(
        &'a self,
        target: &'a RunTarget,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunName>, HostError>> {
        async move {
            match self
                .store
                .get_schedule(&target.project_id, &target.deployment_name, name)
                .await
            {
                Ok(s) => {
                    return Ok(Some(RunName::Schedule {
                        name: s.schedule_name,
                        job: s.job_name,
                    }));
                }
                Err(crate::store::StoreError::NotFound(_)) => {}
                Err(other) => return Err(other.into()),
            }
            let jobs = self
                .store
                .deployment_jobs(&target.project_id, &target.deployment_name)
                .await?;
            Ok(jobs
                .into_iter()
                .find(|j| j.name == name)
                .map(|j| RunName::Job(j.name)))
        }
        .boxed()
    }

    fn secrets<'a>(
        &'a self,
        _org: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Zeroizing<String>)>, HostError>> {
        async move {
            let mut values = self.store.secret_values(project_id).await?;
            values.retain(|(name, _)| name != GIT_SSH_KEY_SECRET);
            Ok(values)
        }
        .boxed()
    }

    fn repo_dir<'a>(
        &'a self,
        org: &'a str,
        project_id: &'a str,
    ) -> BoxFuture<'a, Result<PathBuf, HostError>> {
        async move {
            let project = self.store.get_project(org, project_id).await?;
            let key = self
                .store
                .secret_value(project_id, GIT_SSH_KEY_SECRET)
                .await?;
            let dir = self
                .git
                .repo_dir(&project.git_repository, key.as_ref().map(|k| k.as_str()))
                .await?;
            Ok(dir.dir)
        }
        .boxed()
    }
}
