//! Secrets from sops files: [`metadata`] reads key names, recipients and ciphertext
//! fingerprints without any key (for `validate` and `plan`); [`decrypt`] runs `sops` to
//! decrypt values (for `apply` and `secrets check`).

pub mod decrypt;
pub mod metadata;
