//! Carrying out a plan: phases in the plan's order, independent changes of a phase run
//! concurrently (bounded), work that depends on a failed change is skipped, and every
//! change ends applied, failed or skipped in the report.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

pub mod client_effects;
pub mod lock;

use futures::StreamExt;
use zeroize::Zeroizing;

use crate::plan::{Action, Change, Kind, Operation, Plan};

/// How many calls run at once within a phase.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The calls apply makes. Implemented over the API client; errors are messages already
/// fit to show (never a secret value).
pub trait Effects: Sync {
    fn set_secret(
        &self,
        name: &str,
        value: &str,
        fingerprint: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn delete_secret(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn deploy(
        &self,
        name: &str,
        environment: &str,
        git_rev: &str,
        force: bool,
        protected: Option<bool>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn delete_deployment(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    fn set_schedule_enabled(
        &self,
        deployment: &str,
        schedule: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Decrypted secret values by secret name, zeroized on drop.
pub type SecretValues = BTreeMap<String, Zeroizing<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied { elapsed: Duration },
    Failed { error: String, elapsed: Duration },
    Skipped { reason: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub address: String,
    pub action: Action,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub results: Vec<ChangeResult>,
    /// Set when apply stopped early (ctrl-c).
    pub interrupted: bool,
}

impl Report {
    pub fn applied(&self) -> impl Iterator<Item = &ChangeResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Applied { .. }))
    }
    pub fn failed(&self) -> impl Iterator<Item = &ChangeResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }
    pub fn skipped(&self) -> impl Iterator<Item = &ChangeResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skipped { .. }))
    }
    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.failed().count() == 0 && self.skipped().count() == 0
    }
    /// `succeeded`, `partial` or `failed`, as recorded in the audit log.
    pub fn outcome(&self) -> &'static str {
        if self.succeeded() {
            "succeeded"
        } else if self.applied().count() > 0 {
            "partial"
        } else {
            "failed"
        }
    }
}

/// Present and past tense of what a change does, for progress lines.
pub fn verbs(c: &Change) -> (&'static str, &'static str) {
    match (&c.operation, c.action) {
        (Operation::SetScheduleEnabled { enabled: true, .. }, _) => ("Enabling", "Enabled"),
        (Operation::SetScheduleEnabled { enabled: false, .. }, _) => ("Disabling", "Disabled"),
        (Operation::Deploy { .. }, Action::Update) if crate::plan::planner::is_redeploy(c) => {
            ("Redeploying", "Redeployed")
        }
        (_, Action::Create) => ("Creating", "Created"),
        (_, Action::Update) => ("Updating", "Updated"),
        (_, Action::Delete) => ("Destroying", "Destroyed"),
        (_, Action::NoOp) => ("Checking", "Unchanged"),
    }
}

/// The progress line of a finished change, e.g.
/// `deployment.production: Creating... Created (0.4s)`.
pub fn progress_line(c: &Change, outcome: &Outcome) -> String {
    let (doing, done) = verbs(c);
    match outcome {
        Outcome::Applied { elapsed } => {
            if matches!(c.operation, Operation::None) {
                let by = c
                    .depends_on
                    .first()
                    .map(String::as_str)
                    .unwrap_or("its deployment");
                format!("{}: {done} by {by}", c.address)
            } else {
                format!(
                    "{}: {doing}... {done} ({:.1}s)",
                    c.address,
                    elapsed.as_secs_f64()
                )
            }
        }
        Outcome::Failed { error, elapsed } => format!(
            "{}: {doing}... Failed ({:.1}s): {error}",
            c.address,
            elapsed.as_secs_f64()
        ),
        Outcome::Skipped { reason } => format!("{}: Not applied: {reason}", c.address),
    }
}

fn phase(c: &Change) -> u8 {
    match (c.kind, c.action) {
        (Kind::Secret, Action::Delete) => 4,
        (Kind::Secret, _) => 0,
        (Kind::Deployment, Action::Delete) => 3,
        (Kind::Deployment, _) => 1,
        (Kind::Schedule, _) => 2,
    }
}

async fn perform<E: Effects>(
    effects: &E,
    c: &Change,
    secrets: &SecretValues,
) -> Result<(), String> {
    match &c.operation {
        Operation::SetSecret {
            name, fingerprint, ..
        } => {
            let value = secrets
                .get(name)
                .ok_or_else(|| format!("the value of {name} was not decrypted"))?;
            effects.set_secret(name, value, fingerprint).await
        }
        Operation::DeleteSecret { name } => effects.delete_secret(name).await,
        Operation::Deploy {
            name,
            environment,
            git_rev,
            force,
            protected,
        } => {
            effects
                .deploy(name, environment, git_rev, *force, *protected)
                .await
        }
        Operation::DeleteDeployment { name } => effects.delete_deployment(name).await,
        Operation::SetScheduleEnabled {
            deployment,
            schedule,
            enabled,
        } => {
            effects
                .set_schedule_enabled(deployment, schedule, *enabled)
                .await
        }
        Operation::None => Ok(()),
    }
}

/// Applies the plan's effective changes, calling `progress` as each one ends.
pub async fn apply<E: Effects>(
    plan: &Plan,
    effects: &E,
    secrets: &SecretValues,
    concurrency: usize,
    progress: &(dyn Fn(&Change, &Outcome) + Sync),
) -> Report {
    let changes: Vec<&Change> = plan.effective().collect();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut any_failed = false;
    for ph in 0..=4u8 {
        let mut runnable = Vec::new();
        for c in changes.iter().copied().filter(|c| phase(c) == ph) {
            let blocked = c.depends_on.iter().find(|d| {
                outcomes
                    .get(*d)
                    .is_some_and(|o| !matches!(o, Outcome::Applied { .. }))
            });
            let skip = if let Some(dep) = blocked {
                Some(format!("depends on {dep}, which was not applied"))
            } else if any_failed && c.action == Action::Delete {
                // Deletions are the hardest to undo: never after something went wrong.
                Some("an earlier change failed; deletions are not attempted".to_string())
            } else {
                None
            };
            match skip {
                Some(reason) => {
                    let o = Outcome::Skipped { reason };
                    progress(c, &o);
                    outcomes.insert(c.address.clone(), o);
                }
                None => runnable.push(c),
            }
        }
        let results: Vec<(String, Outcome)> = futures::stream::iter(runnable)
            .map(|c| async move {
                let start = Instant::now();
                let result = perform(effects, c, secrets).await;
                let elapsed = start.elapsed();
                let o = match result {
                    Ok(()) => Outcome::Applied { elapsed },
                    Err(error) => Outcome::Failed { error, elapsed },
                };
                progress(c, &o);
                (c.address.clone(), o)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (address, o) in results {
            if matches!(o, Outcome::Failed { .. }) {
                any_failed = true;
            }
            outcomes.insert(address, o);
        }
    }
    Report {
        results: changes
            .iter()
            .map(|c| ChangeResult {
                address: c.address.clone(),
                action: c.action,
                outcome: outcomes.remove(&c.address).unwrap_or(Outcome::Skipped {
                    reason: "not reached".into(),
                }),
            })
            .collect(),
        interrupted: false,
    }
}

#[cfg(test)]
mod tests;
