//! The control plane's state: organizations, tokens, projects, deployments, schedules,
//! secrets, locks and audit records.
//!
//! One interface ([`Store`]) over two databases: SQLite (a file, the default) and
//! PostgreSQL, both through sqlx's `Any` driver with one SQL dialect (`$n` placeholders
//! numbered in order of first appearance, TEXT keys, BIGINT millisecond timestamps, BIGINT
//! 0/1 flags). Every mutation of a project is one transaction that bumps the project's
//! revision; the revision counts changes of deployments, schedules and secrets (locks and
//! audit records do not change it, so a plan stays current while its apply holds the lock).

pub mod crypto;
mod migrate;
pub mod runs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use zeroize::Zeroizing;

use crate::api::{
    AuditRecord, CreatedToken, Deployment, DeploymentState, LockInfo, LockRequest, NewAuditRecord,
    Project, Role, Schedule, SecretInfo, Snapshot, TokenInfo,
};
use crate::gitrepo::{JobDef, ScheduleDef};
use crypto::{Cipher, KeySource};

pub use migrate::MIGRATIONS;

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "mct_";

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the project is locked by {} ({}) until {}", .0.holder, .0.operation, .0.expires_at)]
    LockHeld(LockInfo),
    #[error("{0}")]
    Key(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The first connection to the database failed (refused, DNS, auth, timeout).
    #[error("{0}")]
    Connect(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The identity behind a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub org: String,
    pub role: Role,
    pub token_id: String,
    pub token_name: Option<String>,
}

/// A decoded page request: its size and the key the page starts after.
#[derive(Debug, Clone, Default)]
pub struct PageReq {
    pub size: u32,
    pub after: Option<Vec<String>>,
}

/// One page of results and the token of the next page, if any.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
    pub size: u32,
}

impl PageReq {
    /// Validates `page_size` (1..=250, default 100) and decodes `page_token`.
    pub fn parse(size: Option<u32>, token: Option<&str>, key_parts: usize) -> Result<PageReq> {
        let size = size.unwrap_or(crate::api::DEFAULT_PAGE_SIZE);
        if size == 0 || size > crate::api::MAX_PAGE_SIZE {
            return Err(StoreError::Invalid(format!(
                "page_size must be between 1 and {}",
                crate::api::MAX_PAGE_SIZE
            )));
        }
        let after = match token {
            None | Some("") => None,
            Some(t) => {
                let parts = decode_token(t)
                    .filter(|p| p.len() == key_parts)
                    .ok_or_else(|| StoreError::Invalid("invalid page_token".into()))?;
                Some(parts)
            }
        };
        Ok(PageReq { size, after })
    }

    fn after(&self, i: usize) -> String {
        self.after
            .as_ref()
            .and_then(|a| a.get(i).cloned())
            .unwrap_or_default()
    }

    fn has_after(&self) -> i64 {
        self.after.is_some() as i64
    }

    fn limit(&self) -> i64 {
        self.size as i64 + 1
    }

    /// Cuts the extra row fetched to learn whether another page follows.
    fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> Vec<String>) -> Paged<T> {
        let next = if items.len() > self.size as usize {
            items.truncate(self.size as usize);
            items.last().map(|last| encode_token(&key(last)))
        } else {
            None
        };
        Paged {
            items,
            next,
            size: self.size,
        }
    }
}

/// Page tokens are the hex of each key part, joined by dots: opaque to clients.
pub fn encode_token(parts: &[String]) -> String {
    parts.iter().map(hex::encode).collect::<Vec<_>>().join(".")
}

fn decode_token(token: &str) -> Option<Vec<String>> {
    token
        .split('.')
        .map(|p| hex::decode(p).ok().and_then(|b| String::from_utf8(b).ok()))
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO 8601 UTC text of a millisecond timestamp.
pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// SHA-256 of a token, hex: the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A slug: lowercase letters, digits and dashes, starting with a letter or digit.
pub fn is_slug(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// How to open a database: a URL (`sqlite://...`, `postgres://...`) or a file path.
#[derive(Debug, Clone)]
pub struct DbTarget {
    pub url: String,
    pub backend: Backend,
    /// The SQLite file, when the backend is SQLite.
    pub sqlite_path: Option<PathBuf>,
}

impl DbTarget {
    pub fn parse(text: &str) -> Result<DbTarget> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DbTarget {
                url: text.to_string(),
                backend: Backend::Postgres,
                sqlite_path: None,
            });
        }
        let path_text = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        let path_text = path_text.split('?').next().unwrap_or_default();
        if path_text.is_empty() || path_text.contains("://") {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL `{text}`: use a file path, sqlite://PATH or postgres://..."
            )));
        }
        let path = std::path::absolute(Path::new(path_text))
            .map_err(|e| StoreError::Invalid(format!("bad database path `{path_text}`: {e}")))?;
        Ok(DbTarget::sqlite(&path))
    }

    pub fn sqlite(path: &Path) -> DbTarget {
        let enc: String = path
            .to_string_lossy()
            .chars()
            .map(|c| match c {
                '%' => "%25".to_string(),
                '?' => "%3F".to_string(),
                '#' => "%23".to_string(),
                c => c.to_string(),
            })
            .collect();
        DbTarget {
            url: format!("sqlite://{enc}?mode=rwc"),
            backend: Backend::Sqlite,
            sqlite_path: Some(path.to_path_buf()),
        }
    }

    /// Where the server key file lives by default: beside the SQLite file, or in the data dir.
    pub fn default_key_file(&self, data_dir: &Path) -> PathBuf {
        match &self.sqlite_path {
            Some(p) => {
                let mut name = p.file_name().unwrap_or_default().to_os_string();
                name.push(".key");
                p.with_file_name(name)
            }
            None => data_dir.join("server.key"),
        }
    }

    /// The URL without a password, for messages.
    pub fn redacted(&self) -> String {
        match self.backend {
            Backend::Sqlite => self
                .sqlite_path
                .as_ref()
                .map(|p| format!("sqlite://{}", p.display()))
                .unwrap_or_default(),
            Backend::Postgres => match self.url.split_once("://") {
                Some((scheme, rest)) => match rest.rsplit_once('@') {
                    Some((cred, host)) => {
                        let user = cred.split(':').next().unwrap_or_default();
                        format!("{scheme}://{user}:***@{host}")
                    }
                    None => self.url.clone(),
                },
                None => self.url.clone(),
            },
        }
    }
}

/// The control plane's store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Every write goes here (with SQLite, one connection: the single writer).
    pub(crate) pool: AnyPool,
    /// Reads that need no transaction with a write (with SQLite, separate read-only
    /// connections that WAL lets run beside the writer; with PostgreSQL, the same pool).
    pub(crate) reads: AnyPool,
    pub(crate) backend: Backend,
    cipher: Option<Arc<Cipher>>,
    snapshots: Arc<SnapshotCache>,
}

/// Serialized deployments and secrets of recently read projects, keyed by revision. Every
/// change of those bumps the revision, so an entry whose revision matches the database's
/// is current, also when another replica made the change.
#[derive(Default)]
struct SnapshotCache {
    entries: std::sync::Mutex<HashMap<String, CachedSnapshot>>,
}

#[derive(Clone)]
struct CachedSnapshot {
    revision: i64,
    deployments: Arc<str>,
    secrets: Arc<str>,
}

const SNAPSHOT_CACHE_ENTRIES: usize = 32;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

fn col<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    Ok(row.try_get::<T, _>(name)?)
}

fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        tenant_resource_key: col(row, "org_key")?,
        project_id: col(row, "project_id")?,
        project_name: col(row, "project_name")?,
        git_repository: col(row, "git_repository")?,
        project_root_path: col(row, "root_path")?,
    })
}

fn deployment_from_row(row: &AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        deployment_name: col(row, "deployment_name")?,
        environment_name: col(row, "environment_name")?,
        git_rev: col(row, "git_rev")?,
        git_rev_hash: col(row, "git_rev_hash")?,
        last_deployed_timestamp: iso(col(row, "deployed_at")?),
        protected: col::<i64>(row, "protected")? != 0,
    })
}

fn schedule_from_row(row: &AnyRow) -> Result<Schedule> {
    Ok(Schedule {
        deployment_name: col(row, "deployment_name")?,
        schedule_name: col(row, "schedule_name")?,
        interval: col(row, "cron_interval")?,
        enabled: col::<i64>(row, "enabled")? != 0,
        job_name: col(row, "job_name")?,
    })
}

fn lock_from_row(row: &AnyRow) -> Result<LockInfo> {
    Ok(LockInfo {
        lock_id: col(row, "lock_id")?,
        holder: col(row, "holder")?,
        operation: col(row, "operation")?,
        acquired_at: iso(col(row, "acquired_at")?),
        expires_at: iso(col(row, "expires_at")?),
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenInfo> {
    let role: String = col(row, "role")?;
    Ok(TokenInfo {
        token_id: col(row, "token_id")?,
        name: col(row, "name")?,
        role: role.parse().map_err(StoreError::Invalid)?,
        created_at: iso(col(row, "created_at")?),
    })
}

const PROJECT_COLS: &str = "project_id, org_key, project_name, git_repository, root_path";
const DEPLOYMENT_COLS: &str =
    "deployment_name, environment_name, git_rev, git_rev_hash, deployed_at, protected";
const SCHEDULE_COLS: &str = "deployment_name, schedule_name, cron_interval, job_name, enabled";
const LOCK_COLS: &str = "lock_id, holder, operation, acquired_at, expires_at";

/// What a deploy writes: the deployment and what meltano.yml says at its commit.
#[derive(Debug, Clone)]
pub struct DeployWrite {
    pub deployment_name: String,
    pub environment_name: String,
    pub git_rev: String,
    pub git_rev_hash: String,
    pub protected: bool,
    pub schedules: Vec<ScheduleDef>,
    pub jobs: Vec<JobDef>,
}

/// Sizes for [`Store::seed`].
#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    pub deployments: usize,
    pub schedules: usize,
    pub secrets: usize,
}

/// Creates the SQLite file owner-only (0600) before SQLite does, and narrows existing files:
/// it holds token hashes, audit records and encrypted secrets. SQLite gives its `-wal` and
/// `-shm` files the mode of the database file.
fn private_sqlite_files(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let invalid = |e: std::io::Error| {
            StoreError::Invalid(format!("cannot create {}: {e}", path.display()))
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(invalid)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(invalid)?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// How long the first PostgreSQL connection may take before the server gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes one connection before building the pool: the pool retries failed connections until
/// its acquire timeout and then reports only "pool timed out", losing the real cause.
async fn check_reachable(target: &DbTarget) -> Result<()> {
    use sqlx::Connection;
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(&target.url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::Connect(format!(
            "cannot connect to {}: {e}",
            target.redacted()
        ))),
        Err(_) => Err(StoreError::Connect(format!(
            "cannot connect to {}: no answer within {} s",
            target.redacted(),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

impl Store {
    /// Opens (creating a SQLite file when missing) and migrates the database.
    pub async fn open(target: &DbTarget) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let pool = match target.backend {
            Backend::Sqlite => {
                if let Some(dir) = target.sqlite_path.as_ref().and_then(|p| p.parent()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                if let Some(path) = target.sqlite_path.as_ref() {
                    private_sqlite_files(path)?;
                }
                // One connection: SQLite has a single writer, and a lone connection never
                // meets SQLITE_BUSY on a read-to-write transaction upgrade.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = NORMAL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&target.url)
                    .await?
            }
            Backend::Postgres => {
                check_reachable(target).await?;
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect(&target.url)
                    .await?
            }
        };
        let reads = match target.backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(60))
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        for pragma in ["PRAGMA busy_timeout = 10000", "PRAGMA query_only = ON"] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
                .connect_lazy(&target.url)?,
            Backend::Postgres => pool.clone(),
        };
        let store = Store {
            pool,
            reads,
            backend: target.backend,
            cipher: None,
            snapshots: Arc::new(SnapshotCache::default()),
        };
        migrate::run(&store).await?;
        Ok(store)
    }

    /// Loads the server key and checks it against the one this database was set up with.
    pub async fn with_key(mut self, source: &KeySource) -> Result<Store> {
        let cipher = Cipher::load(source).map_err(|e| StoreError::Key(e.to_string()))?;
        const CHECK_CONTEXT: &str = "meltano-cloud/server-key-check";
        let fresh = cipher.encrypt(CHECK_CONTEXT, b"meltano-cloud");
        sqlx::query(
            "INSERT INTO server_meta (meta_key, meta_value) VALUES ($1, $2) ON CONFLICT (meta_key) DO NOTHING",
        )
        .bind("key_check")
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let stored: String = sqlx::query("SELECT meta_value FROM server_meta WHERE meta_key = $1")
            .bind("key_check")
            .fetch_one(&self.pool)
            .await?
            .try_get("meta_value")?;
        if cipher.decrypt(CHECK_CONTEXT, &stored).is_none() {
            return Err(StoreError::Key(format!(
                "the server key from {} is not the key this database's secrets were encrypted with; \
                 start the server with the original key (MELTANO_CLOUD_SERVER_KEY or its key file)",
                source.describe()
            )));
        }
        self.cipher = Some(Arc::new(cipher));
        Ok(self)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn cipher(&self) -> Result<&Cipher> {
        self.cipher
            .as_deref()
            .ok_or_else(|| StoreError::Key("no server key loaded".into()))
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    /// Begins a transaction in which the project row is locked and its revision bumped.
    /// Dropping the transaction without commit undoes the bump.
    pub(crate) async fn begin_mutation(
        &self,
        project_id: &str,
    ) -> Result<(Transaction<'static, Any>, i64)> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE projects SET revision = revision + 1 WHERE project_id = $1 RETURNING revision",
        )
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project `{project_id}` not found")))?;
        let revision: i64 = row.try_get("revision")?;
        Ok((tx, revision))
    }

    // ------------------------------------------------------------ organizations

    pub async fn create_org(&self, org: &str) -> Result<()> {
        if !is_slug(org) {
            return Err(StoreError::Invalid(format!(
                "invalid organization name `{org}`: use lowercase letters, digits and dashes"
            )));
        }
        let done = sqlx::query(
            "INSERT INTO orgs (org_key, created_at) VALUES ($1, $2) ON CONFLICT (org_key) DO NOTHING",
        )
        .bind(org)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "organization `{org}` already exists"
            )));
        }
        Ok(())
    }

    pub async fn org_exists(&self, org: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT org_key FROM orgs WHERE org_key = $1")
            .bind(org)
            .fetch_optional(&self.reads)
            .await?
            .is_some())
    }

    async fn require_org(&self, org: &str) -> Result<()> {
        if self.org_exists(org).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "organization `{org}` not found"
            )))
        }
    }

    // ------------------------------------------------------------ tokens

    /// Creates a token; the returned value is the only time the token itself exists.
    pub async fn create_token(
        &self,
        org: &str,
        role: Role,
        name: Option<&str>,
    ) -> Result<CreatedToken> {
        self.require_org(org).await?;
        let token = new_token();
        let id = format!("tok_{}", ulid::Ulid::new().to_string().to_lowercase());
        let created = now_ms();
        sqlx::query(
            "INSERT INTO tokens (token_id, org_key, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(org)
        .bind(name.map(str::to_string))
        .bind(role.as_str())
        .bind(hash_token(&token))
        .bind(created)
        .execute(&self.pool)
        .await?;
        Ok(CreatedToken {
            info: TokenInfo {
                token_id: id,
                name: name.map(str::to_string),
                role,
                created_at: iso(created),
            },
            token,
        })
    }

    pub async fn list_tokens(&self, org: &str) -> Result<Vec<TokenInfo>> {
        self.require_org(org).await?;
        let rows = sqlx::query(
            "SELECT token_id, name, role, created_at FROM tokens WHERE org_key = $1 AND revoked_at IS NULL ORDER BY token_id",
        )
        .bind(org)
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn revoke_token(&self, org: &str, token_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE token_id = $2 AND org_key = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(token_id)
        .bind(org)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "token `{token_id}` not found in organization `{org}`"
            )));
        }
        Ok(())
    }

    /// The principal a bearer token stands for, if it is valid.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT token_id, org_key, name, role FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.reads)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = col(&row, "role")?;
        Ok(Some(Principal {
            org: col(&row, "org_key")?,
            role: role.parse().map_err(StoreError::Invalid)?,
            token_id: col(&row, "token_id")?,
            token_name: col(&row, "name")?,
        }))
    }

    // ------------------------------------------------------------ projects

    pub async fn create_project(
        &self,
        org: &str,
        name: &str,
        repository: &str,
        root_path: &str,
    ) -> Result<Project> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("project_name must not be empty".into()));
        }
        if repository.trim().is_empty() {
            return Err(StoreError::Invalid(
                "git_repository must not be empty".into(),
            ));
        }
        self.require_org(org).await?;
        let id = ulid::Ulid::new().to_string();
        let root = normalize_root(root_path);
        let done = sqlx::query(
            "INSERT INTO projects (project_id, org_key, project_name, git_repository, root_path, revision, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (org_key, project_name) DO NOTHING",
        )
        .bind(&id)
        .bind(org)
        .bind(name)
        .bind(repository)
        .bind(&root)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a project named `{name}` already exists in organization `{org}`"
            )));
        }
        Ok(Project {
            tenant_resource_key: org.to_string(),
            project_id: id,
            project_name: name.to_string(),
            git_repository: repository.to_string(),
            project_root_path: root,
        })
    }

    pub async fn list_projects(
        &self,
        org: &str,
        project_id: Option<&str>,
        project_name: Option<&str>,
        page: &PageReq,
    ) -> Result<Paged<Project>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE org_key = $1 \
             AND ($2 = '' OR project_id = $2) AND ($3 = '' OR project_name = $3) \
             AND ($4 = 0 OR project_name > $5) ORDER BY project_name LIMIT $6"
        ))
        .bind(org)
        .bind(project_id.unwrap_or_default().to_string())
        .bind(project_name.unwrap_or_default().to_string())
        .bind(page.has_after())
        .bind(page.after(0))
        .bind(page.limit())
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .iter()
            .map(project_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |p| vec![p.project_name.clone()]))
    }

    /// A project of the organization; NotFound also when it belongs to another one.
    pub async fn get_project(&self, org: &str, project_id: &str) -> Result<Project> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE org_key = $1 AND project_id = $2"
        ))
        .bind(org)
        .bind(project_id)
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project `{project_id}` not found")))?;
        project_from_row(&row)
    }

    /// A project by id or name.
    pub async fn find_project(&self, org: &str, id_or_name: &str) -> Result<Project> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE org_key = $1 AND (project_id = $2 OR project_name = $2)"
        ))
        .bind(org)
        .bind(id_or_name)
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project `{id_or_name}` not found")))?;
        project_from_row(&row)
    }

    pub async fn project_revision(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT revision FROM projects WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(&self.reads)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project `{project_id}` not found")))?;
        col(&row, "revision")
    }

    // ------------------------------------------------------------ deployments

    pub async fn list_deployments(
        &self,
        project_id: &str,
        page: &PageReq,
    ) -> Result<Paged<Deployment>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE project_id = $1 \
             AND ($2 = 0 OR deployment_name > $3) ORDER BY deployment_name LIMIT $4"
        ))
        .bind(project_id)
        .bind(page.has_after())
        .bind(page.after(0))
        .bind(page.limit())
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |d| vec![d.deployment_name.clone()]))
    }

    pub async fn find_deployment(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<Option<Deployment>> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE project_id = $1 AND deployment_name = $2"
        ))
        .bind(project_id)
        .bind(name)
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    pub async fn get_deployment(&self, project_id: &str, name: &str) -> Result<Deployment> {
        self.find_deployment(project_id, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("deployment `{name}` not found")))
    }

    /// The jobs of a deployment's commit: name and tasks.
    pub async fn deployment_jobs(&self, project_id: &str, deployment: &str) -> Result<Vec<JobDef>> {
        let rows = sqlx::query(
            "SELECT job_name, tasks FROM deployment_jobs WHERE project_id = $1 AND deployment_name = $2 ORDER BY job_name",
        )
        .bind(project_id)
        .bind(deployment)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                let tasks: String = col(r, "tasks")?;
                Ok(JobDef {
                    name: col(r, "job_name")?,
                    tasks: serde_json::from_str(&tasks).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Creates or redeploys a deployment, replacing its schedule set with `write.schedules`
    /// while keeping the enabled flag of schedules that still exist (new ones disabled).
    /// Returns the deployment and whether it was created.
    pub async fn upsert_deployment(
        &self,
        project_id: &str,
        write: &DeployWrite,
    ) -> Result<(Deployment, bool)> {
        let (mut tx, _rev) = self.begin_mutation(project_id).await?;
        let existing = sqlx::query(
            "SELECT deployment_name FROM deployments WHERE project_id = $1 AND deployment_name = $2",
        )
        .bind(project_id)
        .bind(&write.deployment_name)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        let now = now_ms();
        if existing {
            sqlx::query(
                "UPDATE deployments SET environment_name = $1, git_rev = $2, git_rev_hash = $3, deployed_at = $4, \
                 protected = $7 WHERE project_id = $5 AND deployment_name = $6",
            )
            .bind(&write.environment_name)
            .bind(&write.git_rev)
            .bind(&write.git_rev_hash)
            .bind(now)
            .bind(project_id)
            .bind(&write.deployment_name)
            .bind(write.protected as i64)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO deployments (project_id, deployment_name, environment_name, git_rev, git_rev_hash, deployed_at, protected) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(project_id)
            .bind(&write.deployment_name)
            .bind(&write.environment_name)
            .bind(&write.git_rev)
            .bind(&write.git_rev_hash)
            .bind(now)
            .bind(write.protected as i64)
            .execute(&mut *tx)
            .await?;
        }
        let old = sqlx::query(
            "SELECT schedule_name, enabled, enabled_at FROM schedules WHERE project_id = $1 AND deployment_name = $2",
        )
        .bind(project_id)
        .bind(&write.deployment_name)
        .fetch_all(&mut *tx)
        .await?;
        let mut flags: HashMap<String, (i64, Option<i64>)> = HashMap::new();
        for r in &old {
            flags.insert(
                col(r, "schedule_name")?,
                (col(r, "enabled")?, col(r, "enabled_at")?),
            );
        }
        sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND deployment_name = $2")
            .bind(project_id)
            .bind(&write.deployment_name)
            .execute(&mut *tx)
            .await?;
        for s in &write.schedules {
            let (enabled, enabled_at) = flags.get(&s.name).cloned().unwrap_or((0, None));
            sqlx::query(
                "INSERT INTO schedules (project_id, deployment_name, schedule_name, cron_interval, job_name, enabled, enabled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(project_id)
            .bind(&write.deployment_name)
            .bind(&s.name)
            .bind(&s.interval)
            .bind(s.job.clone())
            .bind(enabled)
            .bind(enabled_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM deployment_jobs WHERE project_id = $1 AND deployment_name = $2")
            .bind(project_id)
            .bind(&write.deployment_name)
            .execute(&mut *tx)
            .await?;
        for j in &write.jobs {
            sqlx::query(
                "INSERT INTO deployment_jobs (project_id, deployment_name, job_name, tasks) VALUES ($1, $2, $3, $4)",
            )
            .bind(project_id)
            .bind(&write.deployment_name)
            .bind(&j.name)
            .bind(serde_json::to_string(&j.tasks).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((
            Deployment {
                deployment_name: write.deployment_name.clone(),
                environment_name: write.environment_name.clone(),
                git_rev: write.git_rev.clone(),
                git_rev_hash: write.git_rev_hash.clone(),
                last_deployed_timestamp: iso(now),
                protected: write.protected,
            },
            !existing,
        ))
    }

    pub async fn delete_deployment(&self, project_id: &str, name: &str) -> Result<()> {
        let (mut tx, _) = self.begin_mutation(project_id).await?;
        // Checked inside the transaction so a concurrent deploy cannot protect it meanwhile.
        let protected = sqlx::query(
            "SELECT protected FROM deployments WHERE project_id = $1 AND deployment_name = $2",
        )
        .bind(project_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| col::<i64>(&r, "protected"))
        .transpose()?;
        if protected.unwrap_or(0) != 0 {
            return Err(StoreError::Conflict(format!(
                "deployment `{name}` is protected and cannot be deleted; to delete it, set \
                 `protected: false` on it in cloud.yml and apply, or POST the deployment with \
                 `\"protected\": false`, then delete it"
            )));
        }
        for table in ["schedules", "deployment_jobs"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE project_id = $1 AND deployment_name = $2"
            ))
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        let done =
            sqlx::query("DELETE FROM deployments WHERE project_id = $1 AND deployment_name = $2")
                .bind(project_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "deployment `{name}` not found"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ schedules

    pub async fn list_schedules(
        &self,
        project_id: &str,
        deployment: Option<&str>,
        page: &PageReq,
    ) -> Result<Paged<Schedule>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = $1 \
             AND ($2 = '' OR deployment_name = $2) \
             AND ($3 = 0 OR deployment_name > $4 OR (deployment_name = $4 AND schedule_name > $5)) \
             ORDER BY deployment_name, schedule_name LIMIT $6"
        ))
        .bind(project_id)
        .bind(deployment.unwrap_or_default().to_string())
        .bind(page.has_after())
        .bind(page.after(0))
        .bind(page.after(1))
        .bind(page.limit())
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .iter()
            .map(schedule_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |s| {
            vec![s.deployment_name.clone(), s.schedule_name.clone()]
        }))
    }

    pub async fn get_schedule(
        &self,
        project_id: &str,
        deployment: &str,
        name: &str,
    ) -> Result<Schedule> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = $1 AND deployment_name = $2 AND schedule_name = $3"
        ))
        .bind(project_id)
        .bind(deployment)
        .bind(name)
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "schedule `{name}` not found on deployment `{deployment}`"
            ))
        })?;
        schedule_from_row(&row)
    }

    /// Enables or disables a schedule; returns whether anything changed (only a change
    /// bumps the revision).
    pub async fn set_schedule_enabled(
        &self,
        project_id: &str,
        deployment: &str,
        name: &str,
        enabled: bool,
    ) -> Result<bool> {
        let (mut tx, _) = self.begin_mutation(project_id).await?;
        let row = sqlx::query(
            "SELECT enabled FROM schedules WHERE project_id = $1 AND deployment_name = $2 AND schedule_name = $3",
        )
        .bind(project_id)
        .bind(deployment)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let dep = sqlx::query(
                "SELECT deployment_name FROM deployments WHERE project_id = $1 AND deployment_name = $2",
            )
            .bind(project_id)
            .bind(deployment)
            .fetch_optional(&mut *tx)
            .await?;
            return Err(StoreError::NotFound(match dep {
                None => format!("deployment `{deployment}` not found"),
                Some(_) => format!("schedule `{name}` not found on deployment `{deployment}`"),
            }));
        };
        let current = col::<i64>(&row, "enabled")? != 0;
        if current == enabled {
            // Dropping the transaction undoes the revision bump.
            return Ok(false);
        }
        sqlx::query(
            "UPDATE schedules SET enabled = $1, enabled_at = $2 WHERE project_id = $3 AND deployment_name = $4 AND schedule_name = $5",
        )
        .bind(enabled as i64)
        .bind(if enabled { Some(now_ms()) } else { None })
        .bind(project_id)
        .bind(deployment)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ------------------------------------------------------------ secrets

    pub async fn list_secrets(
        &self,
        project_id: &str,
        page: &PageReq,
    ) -> Result<Paged<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, fingerprint FROM secrets WHERE project_id = $1 AND ($2 = 0 OR name > $3) ORDER BY name LIMIT $4",
        )
        .bind(project_id)
        .bind(page.has_after())
        .bind(page.after(0))
        .bind(page.limit())
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: col(r, "name")?,
                    fingerprint: col(r, "fingerprint")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |s| vec![s.name.clone()]))
    }

    fn secret_context(project_id: &str, name: &str) -> String {
        format!("secret/{project_id}/{name}")
    }

    pub async fn set_secret(
        &self,
        project_id: &str,
        name: &str,
        value: &str,
        fingerprint: Option<&str>,
    ) -> Result<()> {
        if !is_env_name(name) {
            return Err(StoreError::Invalid(format!(
                "invalid secret name `{name}`: use letters, digits and underscores, not starting with a digit"
            )));
        }
        let ciphertext = self
            .cipher()?
            .encrypt(&Self::secret_context(project_id, name), value.as_bytes());
        let (mut tx, _) = self.begin_mutation(project_id).await?;
        sqlx::query(
            "INSERT INTO secrets (project_id, name, ciphertext, fingerprint, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (project_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, \
             fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(ciphertext)
        .bind(fingerprint.map(str::to_string))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_secret(&self, project_id: &str, name: &str) -> Result<()> {
        let (mut tx, _) = self.begin_mutation(project_id).await?;
        let done = sqlx::query("DELETE FROM secrets WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("secret `{name}` not found")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// One secret's plaintext, for the server's own use (cloning with GIT_SSH_PRIVATE_KEY).
    pub async fn secret_value(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<Option<Zeroizing<String>>> {
        let row = sqlx::query("SELECT ciphertext FROM secrets WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .fetch_optional(&self.reads)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let ct: String = col(&row, "ciphertext")?;
        self.decrypt_secret(project_id, name, &ct).map(Some)
    }

    fn decrypt_secret(&self, project_id: &str, name: &str, ct: &str) -> Result<Zeroizing<String>> {
        let plain = self
            .cipher()?
            .decrypt(&Self::secret_context(project_id, name), ct)
            .ok_or_else(|| {
                StoreError::Key(format!(
                    "secret `{name}` cannot be decrypted with the server key"
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Key(format!("secret `{name}` is not UTF-8")))
    }

    /// Every secret of a project in plaintext, to inject into runs. Never log these.
    pub async fn secret_values(
        &self,
        project_id: &str,
    ) -> Result<Vec<(String, Zeroizing<String>)>> {
        let rows =
            sqlx::query("SELECT name, ciphertext FROM secrets WHERE project_id = $1 ORDER BY name")
                .bind(project_id)
                .fetch_all(&self.reads)
                .await?;
        rows.iter()
            .map(|r| {
                let name: String = col(r, "name")?;
                let ct: String = col(r, "ciphertext")?;
                let value = self.decrypt_secret(project_id, &name, &ct)?;
                Ok((name, value))
            })
            .collect()
    }

    // ------------------------------------------------------------ snapshot

    /// Everything a plan needs, read in one consistent transaction.
    pub async fn snapshot(&self, project: &Project) -> Result<Snapshot> {
        let mut tx = self.reads.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let pid = &project.project_id;
        let revision: i64 = sqlx::query("SELECT revision FROM projects WHERE project_id = $1")
            .bind(pid)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project `{pid}` not found")))?
            .try_get("revision")?;
        let deployments = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE project_id = $1 ORDER BY deployment_name"
        ))
        .bind(pid)
        .fetch_all(&mut *tx)
        .await?;
        let schedules = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE project_id = $1 ORDER BY deployment_name, schedule_name"
        ))
        .bind(pid)
        .fetch_all(&mut *tx)
        .await?;
        let secrets = sqlx::query(
            "SELECT name, fingerprint FROM secrets WHERE project_id = $1 ORDER BY name",
        )
        .bind(pid)
        .fetch_all(&mut *tx)
        .await?;
        let lock = sqlx::query(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE project_id = $1 AND expires_at > $2"
        ))
        .bind(pid)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut by_dep: HashMap<String, Vec<Schedule>> = HashMap::new();
        for r in &schedules {
            let s = schedule_from_row(r)?;
            by_dep.entry(s.deployment_name.clone()).or_default().push(s);
        }
        let deployments = deployments
            .iter()
            .map(|r| {
                let d = deployment_from_row(r)?;
                let schedules = by_dep.remove(&d.deployment_name).unwrap_or_default();
                Ok(DeploymentState {
                    deployment: d,
                    schedules,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let secrets = secrets
            .iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: col(r, "name")?,
                    fingerprint: col(r, "fingerprint")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Snapshot {
            project: project.clone(),
            revision,
            deployments,
            secrets,
            lock: lock.as_ref().map(lock_from_row).transpose()?,
        })
    }

    /// The snapshot as JSON, reusing the serialized state of an unchanged revision.
    pub async fn snapshot_json(&self, project: &Project) -> Result<String> {
        let pid = &project.project_id;
        let revision = self.project_revision(pid).await?;
        let cached = {
            let entries = self
                .snapshots
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            entries.get(pid).filter(|c| c.revision == revision).cloned()
        };
        let (entry, lock) = match cached {
            Some(entry) => (entry, self.current_lock(pid).await?),
            None => {
                let snap = self.snapshot(project).await?;
                // Lists of wire types always serialize.
                let entry = CachedSnapshot {
                    revision: snap.revision,
                    deployments: serde_json::to_string(&snap.deployments)
                        .unwrap_or_else(|_| "[]".into())
                        .into(),
                    secrets: serde_json::to_string(&snap.secrets)
                        .unwrap_or_else(|_| "[]".into())
                        .into(),
                };
                let mut entries = self
                    .snapshots
                    .entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if entries.len() >= SNAPSHOT_CACHE_ENTRIES && !entries.contains_key(pid) {
                    if let Some(k) = entries.keys().next().cloned() {
                        entries.remove(&k);
                    }
                }
                entries.insert(pid.clone(), entry.clone());
                (entry, snap.lock)
            }
        };
        let project_json = serde_json::to_string(project).unwrap_or_default();
        let lock_json = serde_json::to_string(&lock).unwrap_or_else(|_| "null".into());
        let mut out = String::with_capacity(
            entry.deployments.len() + entry.secrets.len() + project_json.len() + 128,
        );
        out.push_str("{\"project\":");
        out.push_str(&project_json);
        out.push_str(",\"revision\":");
        out.push_str(&entry.revision.to_string());
        out.push_str(",\"deployments\":");
        out.push_str(&entry.deployments);
        out.push_str(",\"secrets\":");
        out.push_str(&entry.secrets);
        out.push_str(",\"lock\":");
        out.push_str(&lock_json);
        out.push('}');
        Ok(out)
    }

    // ------------------------------------------------------------ locks

    /// Acquires the project lock. Retrying with the same `lock_id` while holding it
    /// succeeds again (and renews the TTL); an expired lock is free.
    pub async fn acquire_lock(&self, project_id: &str, req: &LockRequest) -> Result<LockInfo> {
        if req.lock_id.trim().is_empty() || req.lock_id.len() > 200 {
            return Err(StoreError::Invalid(
                "lock_id must be 1 to 200 characters".into(),
            ));
        }
        if req.ttl_seconds == 0 || req.ttl_seconds > 86_400 {
            return Err(StoreError::Invalid(
                "ttl_seconds must be between 1 and 86400".into(),
            ));
        }
        if req.holder.trim().is_empty() || req.operation.trim().is_empty() {
            return Err(StoreError::Invalid(
                "holder and operation must not be empty".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        // Serializes lock requests on PostgreSQL (a row lock on the project).
        let found = sqlx::query("UPDATE projects SET revision = revision WHERE project_id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "project `{project_id}` not found"
            )));
        }
        let now = now_ms();
        let current = sqlx::query(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE project_id = $1"
        ))
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?;
        let expires = now + (req.ttl_seconds as i64) * 1000;
        if let Some(row) = current {
            let held_by: String = col(&row, "lock_id")?;
            let expires_at: i64 = col(&row, "expires_at")?;
            if held_by == req.lock_id {
                sqlx::query("UPDATE locks SET expires_at = $1 WHERE project_id = $2")
                    .bind(expires)
                    .bind(project_id)
                    .execute(&mut *tx)
                    .await?;
                let acquired: i64 = col(&row, "acquired_at")?;
                tx.commit().await?;
                return Ok(LockInfo {
                    lock_id: held_by,
                    holder: col(&row, "holder")?,
                    operation: col(&row, "operation")?,
                    acquired_at: iso(acquired),
                    expires_at: iso(expires),
                });
            }
            if expires_at > now {
                return Err(StoreError::LockHeld(lock_from_row(&row)?));
            }
            sqlx::query("DELETE FROM locks WHERE project_id = $1")
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO locks (project_id, lock_id, holder, operation, acquired_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(project_id)
        .bind(&req.lock_id)
        .bind(&req.holder)
        .bind(&req.operation)
        .bind(now)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LockInfo {
            lock_id: req.lock_id.clone(),
            holder: req.holder.clone(),
            operation: req.operation.clone(),
            acquired_at: iso(now),
            expires_at: iso(expires),
        })
    }

    /// Extends a lock this `lock_id` still has (even past its expiry, as long as nobody
    /// else took it since).
    pub async fn renew_lock(
        &self,
        project_id: &str,
        lock_id: &str,
        ttl_seconds: u64,
    ) -> Result<LockInfo> {
        if ttl_seconds == 0 || ttl_seconds > 86_400 {
            return Err(StoreError::Invalid(
                "ttl_seconds must be between 1 and 86400".into(),
            ));
        }
        let expires = now_ms() + (ttl_seconds as i64) * 1000;
        let done =
            sqlx::query("UPDATE locks SET expires_at = $1 WHERE project_id = $2 AND lock_id = $3")
                .bind(expires)
                .bind(project_id)
                .bind(lock_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "lock `{lock_id}` is not held (it was released or taken over after expiring)"
            )));
        }
        let row = sqlx::query(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE project_id = $1"
        ))
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?;
        lock_from_row(&row)
    }

    /// Releases a lock by id. Returns whether a lock was removed.
    pub async fn release_lock(&self, project_id: &str, lock_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM locks WHERE project_id = $1 AND lock_id = $2")
            .bind(project_id)
            .bind(lock_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn current_lock(&self, project_id: &str) -> Result<Option<LockInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE project_id = $1 AND expires_at > $2"
        ))
        .bind(project_id)
        .bind(now_ms())
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(lock_from_row).transpose()
    }

    // ------------------------------------------------------------ audit

    pub async fn append_audit(
        &self,
        project_id: &str,
        token_name: Option<&str>,
        record: &NewAuditRecord,
    ) -> Result<AuditRecord> {
        const OUTCOMES: [&str; 3] = ["succeeded", "partial", "failed"];
        if !OUTCOMES.contains(&record.outcome.as_str()) {
            return Err(StoreError::Invalid(format!(
                "outcome `{}` is not one of succeeded, partial, failed",
                record.outcome
            )));
        }
        if record.actor.trim().is_empty() {
            return Err(StoreError::Invalid("actor must not be empty".into()));
        }
        let id = ulid::Ulid::new().to_string();
        let now = now_ms();
        let body = serde_json::to_string(record)
            .map_err(|e| StoreError::Invalid(format!("cannot encode the audit record: {e}")))?;
        sqlx::query(
            "INSERT INTO audit_records (audit_id, project_id, recorded_at, token_name, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(project_id)
        .bind(now)
        .bind(token_name.map(str::to_string))
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(AuditRecord {
            audit_id: id,
            recorded_at: iso(now),
            token_name: token_name.map(str::to_string),
            record: record.clone(),
        })
    }

    /// Audit records, newest first.
    pub async fn list_audit(&self, project_id: &str, page: &PageReq) -> Result<Paged<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT audit_id, recorded_at, token_name, body FROM audit_records WHERE project_id = $1 \
             AND ($2 = 0 OR audit_id < $3) ORDER BY audit_id DESC LIMIT $4",
        )
        .bind(project_id)
        .bind(page.has_after())
        .bind(page.after(0))
        .bind(page.limit())
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let body: String = col(r, "body")?;
                Ok(AuditRecord {
                    audit_id: col(r, "audit_id")?,
                    recorded_at: iso(col(r, "recorded_at")?),
                    token_name: col(r, "token_name")?,
                    record: serde_json::from_str(&body)
                        .map_err(|e| StoreError::Invalid(format!("corrupt audit record: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, |a| vec![a.audit_id.clone()]))
    }

    // ------------------------------------------------------------ seeding

    /// Fills a project with `size` deployments, schedules and secrets in one transaction
    /// (for benchmarks and load tests). Deployments are named `deploy-NNNN`, schedules
    /// `schedule-NNN`, secrets `SECRET_NNNN`.
    pub async fn seed(&self, project_id: &str, size: SeedSize, git_rev_hash: &str) -> Result<i64> {
        let cipher = self.cipher()?;
        let (mut tx, rev) = self.begin_mutation(project_id).await?;
        let now = now_ms();
        let text = |s: &str| SeedValue::Text(s.to_string());
        let deployments: Vec<Vec<SeedValue>> = (0..size.deployments)
            .map(|d| {
                vec![
                    text(project_id),
                    SeedValue::Text(format!("deploy-{d:04}")),
                    text("prod"),
                    text("main"),
                    text(git_rev_hash),
                    SeedValue::Int(now),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "deployments (project_id, deployment_name, environment_name, git_rev, git_rev_hash, deployed_at)",
            deployments,
        )
        .await?;
        let schedules: Vec<Vec<SeedValue>> = (0..size.deployments)
            .flat_map(|d| (0..size.schedules).map(move |s| (d, s)))
            .map(|(d, s)| {
                vec![
                    text(project_id),
                    SeedValue::Text(format!("deploy-{d:04}")),
                    SeedValue::Text(format!("schedule-{s:03}")),
                    text("@daily"),
                    SeedValue::Text(format!("job-{s:03}")),
                    SeedValue::Int(0),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "schedules (project_id, deployment_name, schedule_name, cron_interval, job_name, enabled)",
            schedules,
        )
        .await?;
        let secrets: Vec<Vec<SeedValue>> = (0..size.secrets)
            .map(|k| {
                let name = format!("SECRET_{k:04}");
                let ct = cipher.encrypt(
                    &Self::secret_context(project_id, &name),
                    format!("seed-value-{k}").as_bytes(),
                );
                vec![
                    text(project_id),
                    SeedValue::Text(name),
                    SeedValue::Text(ct),
                    SeedValue::Text(format!("seed-{k}")),
                    SeedValue::Int(now),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            "secrets (project_id, name, ciphertext, fingerprint, updated_at)",
            secrets,
        )
        .await?;
        tx.commit().await?;
        Ok(rev)
    }
}

enum SeedValue {
    Text(String),
    Int(i64),
}

/// Multi-row INSERTs, a few hundred rows per statement (fewer round trips).
async fn insert_rows(
    tx: &mut Transaction<'static, Any>,
    table_and_columns: &str,
    rows: Vec<Vec<SeedValue>>,
) -> Result<()> {
    const ROWS_PER_STATEMENT: usize = 200;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<SeedValue>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let mut sql = format!("INSERT INTO {table_and_columns} VALUES ");
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for j in 0..row.len() {
                n += 1;
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    SeedValue::Text(t) => query.bind(t),
                    SeedValue::Int(i) => query.bind(i),
                };
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// A root path inside a repository, normalized: no leading `./` or `/`, no trailing `/`,
/// `.` for the top level.
pub fn normalize_root(root: &str) -> String {
    let mut parts = Vec::new();
    for part in root.split(['/', '\\']) {
        match part {
            "" | "." => {}
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let t = encode_token(&["a.b".to_string(), "c".to_string()]);
        assert_eq!(decode_token(&t).unwrap(), vec!["a.b", "c"]);
        assert!(PageReq::parse(Some(251), None, 1).is_err());
        assert!(PageReq::parse(Some(0), None, 1).is_err());
        assert!(PageReq::parse(None, Some("zz"), 1).is_err());
        assert_eq!(PageReq::parse(None, None, 1).unwrap().size, 100);
    }

    #[test]
    fn roots_are_normalized() {
        assert_eq!(normalize_root(""), ".");
        assert_eq!(normalize_root("./"), ".");
        assert_eq!(normalize_root("./a/b/"), "a/b");
    }

    #[test]
    fn db_targets() {
        let t = DbTarget::parse("sqlite:///tmp/x.db").unwrap();
        assert_eq!(t.backend, Backend::Sqlite);
        assert_eq!(t.sqlite_path.unwrap(), PathBuf::from("/tmp/x.db"));
        let p = DbTarget::parse("postgres://u:pw@h:5432/db").unwrap();
        assert_eq!(p.redacted(), "postgres://u:***@h:5432/db");
        assert!(DbTarget::parse("mysql://x").is_err());
    }
}
