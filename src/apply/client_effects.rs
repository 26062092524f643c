//! [`Effects`] over the API client.

use super::Effects;
use crate::api::client::Client;
use crate::api::{DeployQuery, DeploymentRequest, SetSecret};

pub struct ClientEffects<'a> {
    pub client: &'a Client,
    pub org: &'a str,
    pub pid: &'a str,
}

impl Effects for ClientEffects<'_> {
    async fn set_secret(&self, name: &str, value: &str, fingerprint: &str) -> Result<(), String> {
        let body = SetSecret {
            name: name.into(),
            value: value.into(),
            fingerprint: Some(fingerprint.into()),
        };
        self.client
            .set_secret(self.org, self.pid, &body)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete_secret(&self, name: &str) -> Result<(), String> {
        self.client
            .delete_secret(self.org, self.pid, name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn deploy(
        &self,
        name: &str,
        environment: &str,
        git_rev: &str,
        force: bool,
        protected: Option<bool>,
    ) -> Result<(), String> {
        let body = DeploymentRequest {
            environment_name: environment.into(),
            git_rev: git_rev.into(),
            protected,
        };
        let query = DeployQuery {
            force: force.then_some(true),
            preserve_git_hash: None,
        };
        self.client
            .deploy(self.org, self.pid, name, &body, &query)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn delete_deployment(&self, name: &str) -> Result<(), String> {
        self.client
            .delete_deployment(self.org, self.pid, name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_schedule_enabled(
        &self,
        deployment: &str,
        schedule: &str,
        enabled: bool,
    ) -> Result<(), String> {
        self.client
            .set_schedule_enabled(self.org, self.pid, deployment, schedule, enabled)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
