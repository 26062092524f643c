//! The settings file written by `login`: control plane URL, token, organization, and the
//! remembered default project (per organization) and deployment (per project).
//!
//! Stored as JSON in the platform's config dir (`~/.config/meltano-cloud/config.json` on
//! Linux), or at `--config-path`, with mode 0600 because it holds a token. Any setting can
//! be overridden with `MELTANO_CLOUD_<SETTING>` (e.g. `MELTANO_CLOUD_BASE_URL`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What `login` stores.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Control plane URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API token for `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Organization (tenant resource key) of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Default project id per organization (`project use`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_projects: BTreeMap<String, String>,
    /// Default deployment name per project id (`deployment use`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_deployments: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "(sensitive value)"))
            .field("org", &self.org)
            .field("default_projects", &self.default_projects)
            .field("default_deployments", &self.default_deployments)
            .finish()
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum SettingsError {
    #[error("cannot determine where to keep settings: no config directory on this platform")]
    #[diagnostic(
        code(settings::no_config_dir),
        help("pass --config-path PATH or set MELTANO_CLOUD_CONFIG_PATH")
    )]
    NoConfigDir,
    #[error("cannot read settings file {path}: {message}")]
    #[diagnostic(
        code(settings::read),
        help("check the file's permissions, or pass another --config-path")
    )]
    Read { path: PathBuf, message: String },
    #[error("settings file {path} is not valid: {message}")]
    #[diagnostic(
        code(settings::invalid),
        help("fix or delete the file, then run `meltano-cloud login` again")
    )]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write settings file {path}: {message}")]
    #[diagnostic(
        code(settings::write),
        help("check that the directory is writable, or pass another --config-path")
    )]
    Write { path: PathBuf, message: String },
}

/// Where the settings file lives: `explicit` (from `--config-path`) or the platform default.
pub fn settings_path(explicit: Option<&Path>) -> Result<PathBuf, SettingsError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    dirs::config_dir()
        .map(|d| d.join("meltano-cloud").join("config.json"))
        .ok_or(SettingsError::NoConfigDir)
}

impl Settings {
    /// Reads the file; a missing file is empty settings. Environment overrides are NOT
    /// applied (see [`Settings::with_env_overrides`]), so that saving does not persist them.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => {
                return Err(SettingsError::Read {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_json::from_str(&text).map_err(|e| SettingsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies `MELTANO_CLOUD_BASE_URL`, `MELTANO_CLOUD_TOKEN` and `MELTANO_CLOUD_ORG`
    /// (empty values are ignored).
    pub fn with_env_overrides(mut self) -> Settings {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("MELTANO_CLOUD_BASE_URL") {
            self.base_url = Some(v);
        }
        if let Some(v) = env("MELTANO_CLOUD_TOKEN") {
            self.token = Some(v);
        }
        if let Some(v) = env("MELTANO_CLOUD_ORG") {
            self.org = Some(v);
        }
        self
    }

    /// Writes the file atomically with mode 0600 (created that way, never world-readable
    /// even for an instant).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let err = |e: std::io::Error| SettingsError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut json = serde_json::to_string_pretty(self).map_err(|e| SettingsError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        json.push('\n');
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let result = (|| {
            let mut file = options.open(&tmp)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(json.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    /// The default project id remembered for `org`.
    pub fn default_project(&self, org: &str) -> Option<&str> {
        self.default_projects.get(org).map(String::as_str)
    }

    /// The default deployment remembered for project `pid`.
    pub fn default_deployment(&self, pid: &str) -> Option<&str> {
        self.default_deployments.get(pid).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let mut s = Settings {
            base_url: Some("http://127.0.0.1:1".into()),
            token: Some("mct_secret".into()),
            org: Some("acme".into()),
            ..Settings::default()
        };
        s.default_projects.insert("acme".into(), "01P".into());
        s.default_deployments.insert("01P".into(), "prod".into());
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
        assert!(!format!("{s:?}").contains("mct_secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn invalid_file_is_a_diagnostic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Settings::load(&path).unwrap_err();
        assert!(matches!(err, SettingsError::Invalid { .. }));
    }
}
