//! Secrets from sops files: [`metadata`] reads key names, recipients and ciphertext
//! fingerprints without any key (for `validate` and `plan`); [`decrypt`] runs `sops` to
//! decrypt values (for `apply` and `secrets check`).

pub mod decrypt;
pub mod metadata;

/// The project's git deploy key: the control plane reads it to clone the repository, and
/// it is set with `meltano-cloud config env set`, never from cloud.yml.
pub const GIT_SSH_PRIVATE_KEY: &str = "GIT_SSH_PRIVATE_KEY";

/// The one list of secret names users cannot declare in cloud.yml; the planner never
/// touches them, the executor never passes them from the secrets, and the server refuses to
/// store the ones the executor sets. Why each is reserved:
/// - `GIT_SSH_PRIVATE_KEY`: the project's git deploy key (see [`GIT_SSH_PRIVATE_KEY`]).
/// - `MELTANO_ENVIRONMENT`: set by the executor on each run from the deployment; a secret
///   could only be silently ignored.
/// - `MELTANO_SYS_DIR_ROOT`: set by the executor to where the run's plugins are installed.
/// - `MELTANO_CLOUD_EXECUTION_ID`: set by the executor to the id of each run.
/// - `PATH`, `HOME`: passed by the executor from the server's environment; replacing `PATH`
///   hides `meltano` and its plugins.
///
/// Everything after the first entry is set by the executor ([`set_by_executor`]).
pub const RESERVED_SECRET_NAMES: &[&str] = &[
    GIT_SSH_PRIVATE_KEY,
    "MELTANO_ENVIRONMENT",
    "MELTANO_SYS_DIR_ROOT",
    "MELTANO_CLOUD_EXECUTION_ID",
    "PATH",
    "HOME",
];

/// Why `name` is reserved and what to do instead (a diagnostic's help), or `None` when it
/// is not reserved.
pub fn reserved_reason(name: &str) -> Option<&'static str> {
    if !RESERVED_SECRET_NAMES.contains(&name) {
        return None;
    }
    Some(match name {
        GIT_SSH_PRIVATE_KEY => {
            "the control plane reads it itself to clone the repository (the project's git deploy key); set it with `meltano-cloud config env set` instead of declaring it in cloud.yml"
        }
        "PATH" | "HOME" => {
            "each run takes it from the server's environment (replacing it would hide `meltano` and its plugins); choose another name"
        }
        _ => {
            "each run sets it itself, after the secrets, so a secret of this name would never take effect; choose another name"
        }
    })
}

/// Whether the executor sets `name` itself on every run (so it can never be a secret, not
/// even one set with `config env set`).
pub fn set_by_executor(name: &str) -> bool {
    name != GIT_SSH_PRIVATE_KEY && RESERVED_SECRET_NAMES.contains(&name)
}

#[cfg(test)]
mod reserved_tests {
    use super::*;

    #[test]
    fn every_reserved_name_has_a_reason_and_only_the_clone_key_is_settable() {
        for name in RESERVED_SECRET_NAMES {
            assert!(reserved_reason(name).is_some(), "{name}");
            assert_eq!(
                set_by_executor(name),
                *name != GIT_SSH_PRIVATE_KEY,
                "{name}"
            );
        }
        assert!(reserved_reason("TAP_PASSWORD").is_none());
        assert!(!set_by_executor("path"));
    }
}
