//! The plan: an ordered list of changes, each with an address, an action, the attributes
//! before and after, a reason, and the operation apply performs for it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a change does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    NoOp,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
        }
    }

    /// The phrase of the `# address will be ...` header.
    pub fn will_be(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Update => "updated in-place",
            Action::Delete => "destroyed",
            Action::NoOp => "left unchanged",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
}

/// The kind of object an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Secret,
    Deployment,
    Schedule,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Deployment => "deployment",
            Kind::Schedule => "schedule",
        }
    }
}

/// The call apply makes for a change. Carries everything apply needs, and no secret value:
/// a secret's value is read from its sops file only at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// `PUT /secrets/v1/...` with the decrypted value and its fingerprint.
    SetSecret {
        name: String,
        /// The sops file, relative to cloud.yml.
        file: String,
        key_path: String,
        fingerprint: String,
    },
    DeleteSecret {
        name: String,
    },
    /// `POST /deployments/v1/...`: creates or redeploys.
    Deploy {
        name: String,
        environment: String,
        git_rev: String,
        /// Redeploy even when environment and git_rev are unchanged (the tracked rev moved).
        force: bool,
        /// The `protected` flag to record; `None` (plans saved before the flag existed)
        /// keeps the remote value.
        #[serde(default)]
        protected: Option<bool>,
    },
    DeleteDeployment {
        name: String,
    },
    SetScheduleEnabled {
        deployment: String,
        schedule: String,
        enabled: bool,
    },
    /// Nothing to call: a no-op, or a change another change carries out (a schedule that a
    /// redeploy adds or removes).
    None,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `deployment.<name>`, `schedule.<deployment>/<schedule>` or `secret.<NAME>`.
    pub address: String,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// Attributes before the change (`None` when the object does not exist yet).
    pub before: Option<Map<String, Value>>,
    /// Attributes after the change (`None` when the object is deleted).
    pub after: Option<Map<String, Value>>,
    /// Attribute names whose values are sensitive: never shown, never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Attribute names whose new value is known only after apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_after: Vec<String>,
    /// Why the change is planned, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Addresses of changes that must succeed before this one runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub operation: Operation,
}

impl Change {
    pub fn is_change(&self) -> bool {
        self.action != Action::NoOp
    }
}

/// Something worth telling the user that is not a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The object the note is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `unmanaged`, `unresolved-rev`, `missing-schedule`, `target`, ...
    pub kind: String,
    pub message: String,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.add + self.change + self.destroy
    }
}

/// The planner's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Changes in the order apply runs them; includes no-ops (renderers hide them).
    pub changes: Vec<Change>,
    pub notes: Vec<Note>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.destroy += 1,
                Action::NoOp => {}
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(Change::is_change)
    }

    /// The changes that do something, in apply order.
    pub fn effective(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.is_change())
    }

    pub fn get(&self, address: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.address == address)
    }
}

pub fn deployment_address(name: &str) -> String {
    format!("deployment.{name}")
}

pub fn schedule_address(deployment: &str, schedule: &str) -> String {
    format!("schedule.{deployment}/{schedule}")
}

pub fn secret_address(name: &str) -> String {
    format!("secret.{name}")
}
