//! Secrets from sops: decryption with the real sops binary and real age keys, `secrets`
//! commands, and checks that no decrypted value leaks anywhere.

#[path = "secrets/cli.rs"]
mod cli;
#[path = "secrets/decrypt.rs"]
mod decrypt;
#[path = "secrets/e2e.rs"]
mod e2e;
#[path = "secrets/fixture.rs"]
mod fixture;
#[path = "support/mod.rs"]
mod support;
