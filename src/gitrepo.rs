//! The control plane's view of a project's git repository: resolve a rev to a commit and
//! read `meltano.yml` (following its `include_paths`) at that commit.
//!
//! Uses the `git` binary. A local path or `file://` URL is read in place (works offline);
//! `https://`, `ssh://` and `user@host:path` remotes go through a cached mirror clone
//! under the server's data dir, fetched on each resolve, with `GIT_SSH_PRIVATE_KEY` as
//! the SSH identity when the project has that secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// A schedule as `meltano.yml` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDef {
    pub name: String,
    pub interval: String,
    /// The job it runs; `None` for extractor/loader schedules.
    pub job: Option<String>,
}

/// A job as `meltano.yml` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobDef {
    pub name: String,
    pub tasks: Vec<String>,
}

/// What the control plane needs from `meltano.yml` and its included files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeltanoConfig {
    pub environments: Vec<String>,
    pub schedules: Vec<ScheduleDef>,
    pub jobs: Vec<JobDef>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The rev names no commit of the repository.
    #[error("git rev `{rev}` was not found in repository {repo}")]
    RevNotFound { repo: String, rev: String },
    /// The repository cannot be read or fetched.
    #[error("cannot read repository {repo}: {detail}")]
    Unavailable { repo: String, detail: String },
    /// meltano.yml is missing or invalid at the commit.
    #[error("{0}")]
    Config(String),
    #[error("cannot run git: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolves revs and reads files, caching mirrors of remote repositories.
#[derive(Debug)]
pub struct GitResolver {
    cache_dir: PathBuf,
    /// One fetch at a time per mirror.
    fetch_locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// Where a repository's objects are read from.
#[derive(Debug, Clone)]
pub struct RepoDir {
    pub dir: PathBuf,
    pub display: String,
}

/// A local path when `repo` is one (a path or `file://` URL).
pub fn local_path(repo: &str) -> Option<PathBuf> {
    if let Some(rest) = repo.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if repo.contains("://") {
        return None;
    }
    // scp-like `user@host:path` (but not a Windows drive letter).
    if let Some((host, _)) = repo.split_once(':') {
        if !host.contains('/') && host.len() > 1 {
            return None;
        }
    }
    Some(PathBuf::from(repo))
}

fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command) -> Result<(bool, Vec<u8>, String), GitError> {
    let out = cmd.output().await?;
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

impl GitResolver {
    pub fn new(cache_dir: PathBuf) -> GitResolver {
        GitResolver {
            cache_dir,
            fetch_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The directory to read `repo` from: the path itself, or a freshly fetched mirror.
    pub async fn repo_dir(&self, repo: &str, ssh_key: Option<&str>) -> Result<RepoDir, GitError> {
        if let Some(path) = local_path(repo) {
            let path = std::path::absolute(&path).unwrap_or(path);
            if !path.exists() {
                return Err(GitError::Unavailable {
                    repo: repo.to_string(),
                    detail: format!("{} does not exist", path.display()),
                });
            }
            return Ok(RepoDir {
                dir: path,
                display: repo.to_string(),
            });
        }
        let digest = hex::encode(Sha256::digest(repo.as_bytes()));
        let dir = self.cache_dir.join(format!("{}.git", &digest[..24]));
        let lock = {
            let mut locks = self.fetch_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(dir.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        std::fs::create_dir_all(&self.cache_dir)?;
        let key_file = match ssh_key {
            Some(key) => Some(write_key_file(&self.cache_dir, key)?),
            None => None,
        };
        // Network faults are retried with backoff: fetching is idempotent.
        let mut attempt = 0;
        let (ok, err) = loop {
            attempt += 1;
            let mut cmd = git();
            if let Some(kf) = &key_file {
                cmd.env(
                    "GIT_SSH_COMMAND",
                    format!(
                        "ssh -i '{}' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o BatchMode=yes",
                        kf.path().display()
                    ),
                );
            }
            if dir.join("HEAD").exists() {
                cmd.arg("-C")
                    .arg(&dir)
                    .args(["fetch", "--prune", "--quiet", "origin"]);
            } else {
                let tmp = dir.with_extension("tmp");
                let _ = std::fs::remove_dir_all(&tmp);
                cmd.args(["clone", "--mirror", "--quiet", "--"])
                    .arg(repo)
                    .arg(&tmp);
            }
            let (ok, _, err) = output(cmd).await?;
            if ok || attempt >= 3 || !is_transient(&err) {
                break (ok, err);
            }
            tracing::warn!(%repo, attempt, "git fetch failed; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
        };
        drop(key_file);
        if !ok {
            return Err(GitError::Unavailable {
                repo: repo.to_string(),
                detail: err,
            });
        }
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::rename(&tmp, &dir)?;
        }
        Ok(RepoDir {
            dir,
            display: repo.to_string(),
        })
    }

    /// The commit `rev` names in `repo`.
    pub async fn resolve(
        &self,
        repo: &str,
        rev: &str,
        ssh_key: Option<&str>,
    ) -> Result<String, GitError> {
        let dir = self.repo_dir(repo, ssh_key).await?;
        resolve_in(&dir, rev).await
    }
}

/// Whether a failed fetch looks like a network problem worth retrying.
fn is_transient(stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    [
        "could not resolve host",
        "connection timed out",
        "connection reset",
        "connection refused",
        "early eof",
        "the remote end hung up",
        "operation timed out",
        "temporary failure",
        "502",
        "503",
        "504",
    ]
    .iter()
    .any(|p| e.contains(p))
}

/// The commit `rev` names in an already available repository directory.
pub async fn resolve_in(dir: &RepoDir, rev: &str) -> Result<String, GitError> {
    if rev.is_empty()
        || rev.starts_with('-')
        || rev.contains("..")
        || rev.chars().any(char::is_whitespace)
    {
        return Err(GitError::RevNotFound {
            repo: dir.display.clone(),
            rev: rev.to_string(),
        });
    }
    let mut cmd = git();
    cmd.arg("-C")
        .arg(&dir.dir)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"));
    let (ok, out, err) = output(cmd).await?;
    if ok {
        return Ok(String::from_utf8_lossy(&out).trim().to_string());
    }
    // Not a git repository at all is a different problem from an unknown rev.
    let mut check = git();
    check
        .arg("-C")
        .arg(&dir.dir)
        .args(["rev-parse", "--git-dir"]);
    let (is_repo, _, check_err) = output(check).await?;
    if !is_repo {
        return Err(GitError::Unavailable {
            repo: dir.display.clone(),
            detail: if check_err.is_empty() { err } else { check_err },
        });
    }
    Err(GitError::RevNotFound {
        repo: dir.display.clone(),
        rev: rev.to_string(),
    })
}

struct KeyFile(PathBuf);

impl KeyFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_key_file(dir: &Path, key: &str) -> std::io::Result<KeyFile> {
    use std::io::Write;
    let path = dir.join(format!(".ssh-key-{}", ulid::Ulid::new()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(key.trim_end().as_bytes())?;
    f.write_all(b"\n")?;
    Ok(KeyFile(path))
}

async fn show_file(dir: &RepoDir, commit: &str, path: &str) -> Result<Option<String>, GitError> {
    let mut cmd = git();
    cmd.arg("-C")
        .arg(&dir.dir)
        .arg("show")
        .arg(format!("{commit}:{path}"));
    let (ok, out, _) = output(cmd).await?;
    if !ok {
        return Ok(None);
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| GitError::Config(format!("{path} at commit {commit} is not UTF-8")))
}

async fn list_files(dir: &RepoDir, commit: &str, root: &str) -> Result<Vec<String>, GitError> {
    let mut cmd = git();
    cmd.arg("-C")
        .arg(&dir.dir)
        .args(["ls-tree", "-r", "-z", "--name-only", "--full-tree"])
        .arg(commit);
    if root != "." {
        cmd.arg("--").arg(root);
    }
    let (ok, out, err) = output(cmd).await?;
    if !ok {
        return Err(GitError::Unavailable {
            repo: dir.display.clone(),
            detail: err,
        });
    }
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

fn join_root(root: &str, rel: &str) -> String {
    if root == "." || root.is_empty() {
        rel.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

/// Reads `meltano.yml` under `root` at `commit`, following `include_paths`.
pub async fn read_meltano_config(
    dir: &RepoDir,
    commit: &str,
    root: &str,
) -> Result<MeltanoConfig, GitError> {
    let main_path = join_root(root, "meltano.yml");
    let text = show_file(dir, commit, &main_path).await?.ok_or_else(|| {
        GitError::Config(format!(
            "{main_path} was not found at commit {}",
            &commit[..commit.len().min(12)]
        ))
    })?;
    let main = yaml::to_json(&text).map_err(|e| GitError::Config(format!("{main_path}: {e}")))?;
    let mut config = MeltanoConfig::default();
    merge_into(&mut config, &main, &main_path)?;

    let patterns: Vec<String> = match main.get("include_paths") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if !patterns.is_empty() {
        let mut builder = globset::GlobSetBuilder::new();
        for p in &patterns {
            let p = p.trim_start_matches("./");
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    GitError::Config(format!("{main_path}: bad include_paths pattern `{p}`: {e}"))
                })?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| GitError::Config(format!("{main_path}: include_paths: {e}")))?;
        let prefix = if root == "." {
            String::new()
        } else {
            format!("{root}/")
        };
        let mut files: Vec<String> = list_files(dir, commit, root)
            .await?
            .into_iter()
            .filter(|f| f.starts_with(&prefix))
            .filter(|f| set.is_match(&f[prefix.len()..]))
            .filter(|f| *f != main_path)
            .collect();
        files.sort();
        for f in files {
            if let Some(text) = show_file(dir, commit, &f).await? {
                let doc =
                    yaml::to_json(&text).map_err(|e| GitError::Config(format!("{f}: {e}")))?;
                merge_into(&mut config, &doc, &f)?;
            }
        }
    }
    Ok(config)
}

fn merge_into(
    config: &mut MeltanoConfig,
    doc: &serde_json::Value,
    file: &str,
) -> Result<(), GitError> {
    use serde_json::Value;
    if doc.is_null() {
        return Ok(());
    }
    let Some(map) = doc.as_object() else {
        return Err(GitError::Config(format!(
            "{file}: expected a mapping at the top level"
        )));
    };
    let entries = |key: &str| -> Vec<&serde_json::Map<String, Value>> {
        match map.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        }
    };
    let text = |m: &serde_json::Map<String, Value>, k: &str| -> Option<String> {
        match m.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    };
    for env in entries("environments") {
        if let Some(name) = text(env, "name") {
            if !config.environments.contains(&name) {
                config.environments.push(name);
            }
        }
    }
    for s in entries("schedules") {
        let Some(name) = text(s, "name") else {
            return Err(GitError::Config(format!("{file}: a schedule has no name")));
        };
        let interval = text(s, "interval").ok_or_else(|| {
            GitError::Config(format!("{file}: schedule `{name}` has no interval"))
        })?;
        config.schedules.retain(|x| x.name != name);
        config.schedules.push(ScheduleDef {
            name,
            interval,
            job: text(s, "job"),
        });
    }
    for j in entries("jobs") {
        let Some(name) = text(j, "name") else {
            continue;
        };
        let tasks = match j.get("tasks") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        config.jobs.retain(|x| x.name != name);
        config.jobs.push(JobDef { name, tasks });
    }
    Ok(())
}

/// Writes the tree of `commit` into `dest` (which must exist), e.g. for a run's checkout.
pub async fn export_tree(dir: &RepoDir, commit: &str, dest: &Path) -> Result<(), GitError> {
    let mut archive = git();
    archive
        .arg("-C")
        .arg(&dir.dir)
        .args(["archive", "--format=tar"])
        .arg(commit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = archive.spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| GitError::Unavailable {
        repo: dir.display.clone(),
        detail: "no output from git archive".into(),
    })?;
    let stdout: Stdio = stdout.try_into()?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(stdout)
        .output()
        .await?;
    let archived = child.wait_with_output().await?;
    if !archived.status.success() || !tar.status.success() {
        return Err(GitError::Unavailable {
            repo: dir.display.clone(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&archived.stderr).trim(),
                String::from_utf8_lossy(&tar.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// A small YAML to JSON reader for meltano.yml: block and flow collections, anchors,
/// aliases and `<<` merge keys, core-schema scalars.
pub mod yaml {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    use serde_json::{Map, Number, Value};
    use std::collections::HashMap;

    enum Frame {
        Seq(Vec<Value>, usize),
        Map(Map<String, Value>, Option<String>, usize),
    }

    fn scalar(text: &str, style: ScalarStyle) -> Value {
        if style != ScalarStyle::Plain {
            return Value::String(text.to_string());
        }
        match text {
            "" | "~" | "null" | "Null" | "NULL" => Value::Null,
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            _ => {
                if let Ok(i) = text.parse::<i64>() {
                    Value::Number(i.into())
                } else if text.chars().any(|c| c.is_ascii_digit())
                    && !text
                        .chars()
                        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
                {
                    text.parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(text.to_string()))
                } else {
                    Value::String(text.to_string())
                }
            }
        }
    }

    fn key_text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// Parses the first document of `text`.
    pub fn to_json(text: &str) -> Result<Value, String> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut anchors: HashMap<usize, Value> = HashMap::new();
        let mut root: Option<Value> = None;
        for item in Parser::new_from_str(text) {
            let (event, span) = item.map_err(|e| e.to_string())?;
            let (value, anchor) = match event {
                Event::Scalar(t, style, anchor, _) => (scalar(&t, style), anchor),
                Event::Alias(id) => (
                    anchors
                        .get(&id)
                        .cloned()
                        .ok_or_else(|| format!("line {}: unknown alias", span.start.line()))?,
                    0,
                ),
                Event::SequenceStart(anchor, _) => {
                    stack.push(Frame::Seq(Vec::new(), anchor));
                    continue;
                }
                Event::MappingStart(anchor, _) => {
                    stack.push(Frame::Map(Map::new(), None, anchor));
                    continue;
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(items, anchor)) => (Value::Array(items), anchor),
                    _ => return Err("unbalanced sequence".into()),
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map(map, _, anchor)) => (Value::Object(map), anchor),
                    _ => return Err("unbalanced mapping".into()),
                },
                Event::DocumentEnd => {
                    if root.is_some() {
                        break;
                    }
                    continue;
                }
                _ => continue,
            };
            if anchor > 0 {
                anchors.insert(anchor, value.clone());
            }
            match stack.last_mut() {
                None => root = Some(value),
                Some(Frame::Seq(items, _)) => items.push(value),
                Some(Frame::Map(map, key, _)) => match key.take() {
                    None => *key = Some(key_text(&value)),
                    Some(k) if k == "<<" => match value {
                        Value::Object(m) => {
                            for (k, v) in m {
                                map.entry(k).or_insert(v);
                            }
                        }
                        Value::Array(ms) => {
                            for m in ms.into_iter().filter_map(|m| match m {
                                Value::Object(m) => Some(m),
                                _ => None,
                            }) {
                                for (k, v) in m {
                                    map.entry(k).or_insert(v);
                                }
                            }
                        }
                        _ => return Err("a `<<` merge key needs a mapping".into()),
                    },
                    Some(k) => {
                        map.insert(k, value);
                    }
                },
            }
        }
        Ok(root.unwrap_or(Value::Null))
    }

    #[cfg(test)]
    mod tests {
        use super::to_json;
        use serde_json::json;

        #[test]
        fn reads_blocks_flows_anchors() {
            let v = to_json(
                "a: &x {b: 1, c: [d, 'e']}\nf: *x\ng:\n  <<: *x\n  b: 2\nh: '@daily'\ni: 0 * * * *\nj:\n",
            )
            .unwrap();
            assert_eq!(v["a"], json!({"b": 1, "c": ["d", "e"]}));
            assert_eq!(v["f"], v["a"]);
            assert_eq!(v["g"]["b"], json!(2));
            assert_eq!(v["g"]["c"], json!(["d", "e"]));
            assert_eq!(v["h"], json!("@daily"));
            assert_eq!(v["i"], json!("0 * * * *"));
            assert_eq!(v["j"], json!(null));
        }

        #[test]
        fn reports_errors() {
            assert!(to_json("a: [b\n").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_repositories() {
        assert_eq!(local_path("/srv/repo"), Some(PathBuf::from("/srv/repo")));
        assert_eq!(
            local_path("file:///srv/repo"),
            Some(PathBuf::from("/srv/repo"))
        );
        assert_eq!(local_path("https://github.com/a/b.git"), None);
        assert_eq!(local_path("git@github.com:a/b.git"), None);
        assert_eq!(local_path("./repo"), Some(PathBuf::from("./repo")));
    }

    #[test]
    fn merges_schedules_and_jobs() {
        let doc = yaml::to_json(
            "environments:\n- name: dev\n- name: prod\nschedules:\n- name: daily\n  interval: '@daily'\n  job: j\n- name: el\n  extractor: tap-x\n  loader: target-y\n  interval: 0 * * * *\njobs:\n- name: j\n  tasks:\n  - tap-x target-y\n  - [dbt:run, dbt:test]\n",
        )
        .unwrap();
        let mut c = MeltanoConfig::default();
        merge_into(&mut c, &doc, "meltano.yml").unwrap();
        assert_eq!(c.environments, vec!["dev", "prod"]);
        assert_eq!(c.schedules.len(), 2);
        assert_eq!(c.schedules[0].job.as_deref(), Some("j"));
        assert_eq!(c.schedules[1].job, None);
        assert_eq!(c.jobs[0].tasks, vec!["tap-x target-y", "dbt:run dbt:test"]);
    }
}
