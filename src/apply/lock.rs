//! The project lock held for the whole of an apply: acquired with a client-chosen id (so a
//! retried request is safe), renewed in the background while held, released at the end
//! whatever the outcome.

use std::time::{Duration, Instant};

use crate::api::client::Client;
use crate::api::{LockInfo, LockRenewal, LockRequest};

/// How long the lock lives without renewal; a crashed apply frees it after this.
pub const LOCK_TTL: Duration = Duration::from_secs(120);
/// How often a held lock is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(30);
/// Pause between attempts while waiting with `--lock-timeout`.
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error(
        "the project lock is held by {holder} for {operation} since {acquired_at} (lock id {lock_id}, expires {expires_at})"
    )]
    #[diagnostic(
        code(apply::locked),
        help(
            "wait for that {operation} to finish, or wait for the lock with --lock-timeout 5m; if it is stuck (its process is gone), remove it with `meltano-cloud force-unlock {lock_id}`"
        )
    )]
    Held {
        holder: String,
        operation: String,
        acquired_at: String,
        expires_at: String,
        lock_id: String,
    },
}

impl From<&LockInfo> for LockError {
    fn from(l: &LockInfo) -> Self {
        LockError::Held {
            holder: l.holder.clone(),
            operation: l.operation.clone(),
            acquired_at: l.acquired_at.clone(),
            expires_at: l.expires_at.clone(),
            lock_id: l.lock_id.clone(),
        }
    }
}

/// Who is applying, as shown to whoever finds the lock held.
pub fn holder() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let repo = env("GITHUB_REPOSITORY").unwrap_or_default();
        let run = env("GITHUB_RUN_ID").unwrap_or_default();
        let actor = env("GITHUB_ACTOR").unwrap_or_default();
        return format!("github-actions {repo} run {run} ({actor})");
    }
    if let Some(id) = env("CI_JOB_ID") {
        let project = env("CI_PROJECT_PATH").unwrap_or_default();
        return format!("gitlab-ci {project} job {id}");
    }
    let user = env("USER")
        .or_else(|| env("USERNAME"))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", hostname())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A held lock. Call [`HeldLock::release`]; dropping it only stops the renewals (the TTL
/// then frees the lock).
pub struct HeldLock {
    client: Client,
    org: String,
    pid: String,
    pub info: LockInfo,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldLock {
    /// Takes the lock, waiting up to `timeout` while someone else holds it.
    pub async fn acquire(
        client: &Client,
        org: &str,
        pid: &str,
        operation: &str,
        timeout: Duration,
    ) -> miette::Result<HeldLock> {
        let request = LockRequest {
            lock_id: ulid::Ulid::new().to_string().to_lowercase(),
            holder: holder(),
            operation: operation.into(),
            ttl_seconds: LOCK_TTL.as_secs(),
        };
        let deadline = Instant::now() + timeout;
        let mut told = false;
        let info = loop {
            match client.acquire_lock(org, pid, &request).await {
                Ok(info) => break info,
                Err(err) => {
                    let Some(held) = err.lock_holder().cloned() else {
                        return Err(err.into());
                    };
                    if Instant::now() >= deadline {
                        return Err(LockError::from(&held).into());
                    }
                    if !told {
                        eprintln!(
                            "Waiting for the project lock held by {} for {} (lock id {})...",
                            held.holder, held.operation, held.lock_id
                        );
                        told = true;
                    }
                    tokio::time::sleep(RETRY_EVERY.min(deadline - Instant::now())).await;
                }
            }
        };
        let renewer = {
            let client = client.clone();
            let (org, pid, id) = (org.to_string(), pid.to_string(), info.lock_id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let body = LockRenewal {
                        ttl_seconds: LOCK_TTL.as_secs(),
                    };
                    if let Err(err) = client.renew_lock(&org, &pid, &id, &body).await {
                        eprintln!("Warning: could not renew the project lock: {err}");
                    }
                }
            })
        };
        Ok(HeldLock {
            client: client.clone(),
            org: org.into(),
            pid: pid.into(),
            info,
            renewer,
        })
    }

    /// Stops renewing and releases the lock; a failure is only warned about (the TTL
    /// frees it anyway).
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(err) = self
            .client
            .release_lock(&self.org, &self.pid, &self.info.lock_id)
            .await
        {
            eprintln!(
                "Warning: could not release the project lock {}: {err}\n  It expires by itself within {}s, or run `meltano-cloud force-unlock {}`.",
                self.info.lock_id,
                LOCK_TTL.as_secs(),
                self.info.lock_id
            );
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
