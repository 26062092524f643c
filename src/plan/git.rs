//! Client side: resolving tracked revs to commits in the user's checkout with the `git`
//! binary, best effort (`None` when unknown), `origin/<rev>` first. Kept apart from the
//! planner, which does no I/O. The control plane resolves revs authoritatively in its own
//! mirrors with `crate::gitrepo` (errors, clone keys); a rev this module cannot resolve only
//! makes the plan note that a moved rev is not detected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tokio::process::Command;

async fn rev_parse(dir: &Path, spec: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options", spec])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (sha.len() >= 40 && sha.chars().all(|c| c.is_ascii_hexdigit())).then_some(sha)
}

/// The commit `rev` points to. A branch is looked up as `origin/<rev>` first: the control
/// plane deploys what was pushed, not a local branch that may be ahead or behind.
pub async fn resolve_rev(dir: &Path, rev: &str) -> Option<String> {
    if rev.starts_with('-') {
        return None;
    }
    if let Some(sha) = rev_parse(dir, &format!("refs/remotes/origin/{rev}^{{commit}}")).await {
        return Some(sha);
    }
    rev_parse(dir, &format!("{rev}^{{commit}}")).await
}

/// Resolves every rev once.
pub async fn resolve_revs<'a>(
    dir: &Path,
    revs: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Option<String>> {
    let unique: BTreeSet<&str> = revs.into_iter().collect();
    let resolved = futures::future::join_all(unique.iter().map(|rev| resolve_rev(dir, rev))).await;
    unique
        .into_iter()
        .map(str::to_string)
        .zip(resolved)
        .collect()
}

/// The commit checked out in `dir`, if it is in a git repository.
pub async fn head(dir: &Path) -> Option<String> {
    rev_parse(dir, "HEAD^{commit}").await
}
