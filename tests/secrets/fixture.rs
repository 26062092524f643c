//! Real sops files encrypted with real age keys made for each test.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Removes from this test process every variable that would give sops a key or change
/// where output goes (a developer's own age key, or GitHub Actions when CI runs there),
/// and points HOME at an empty folder, so every case sees the same clean environment.
/// Every test calls it first; `Once` makes the others wait until it is done, so no test
/// spawns a process while the environment changes.
pub fn clean_env() -> &'static Path {
    static HOME: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let home = tempfile::tempdir().expect("temp home");
        for var in [
            "SOPS_AGE_KEY",
            "SOPS_AGE_KEY_FILE",
            "SOPS_AGE_KEY_CMD",
            "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
            "XDG_CONFIG_HOME",
            "GITHUB_ACTIONS",
            "GITHUB_STEP_SUMMARY",
            "GITHUB_OUTPUT",
            "GITHUB_WORKSPACE",
        ] {
            // SAFETY: runs once, inside OnceLock initialisation, before any test of this
            // binary reads the environment or spawns a process (they all call this first).
            unsafe { std::env::remove_var(var) };
        }
        // SAFETY: as above.
        unsafe { std::env::set_var("HOME", home.path()) };
        home
    })
    .path()
}

/// The real sops binary, found only through SOPS_BIN as set by .ci/setup.sh.
pub fn sops_bin() -> PathBuf {
    clean_env();
    match std::env::var_os("SOPS_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => panic!(
            "SOPS_BIN is not set: these tests need the real sops binary; run `bash .ci/setup.sh` \
             and `source .tools/tools.env`"
        ),
    }
}

fn tool(name: &str) -> Command {
    let status = Command::new(name).arg("--version").output();
    if status.is_err() {
        panic!(
            "`{name}` is not on PATH: these tests need the real age tools; run `bash .ci/setup.sh` \
             and `source .tools/tools.env`"
        );
    }
    Command::new(name)
}

/// A temp folder with an age key pair and helpers to write sops-encrypted files.
pub struct SopsFixture {
    pub dir: TempDir,
    pub key_file: PathBuf,
    pub public_key: String,
}

impl SopsFixture {
    pub fn new() -> SopsFixture {
        clean_env();
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("age-key.txt");
        let out = tool("age-keygen")
            .arg("-o")
            .arg(&key_file)
            .output()
            .expect("run age-keygen");
        assert!(out.status.success(), "age-keygen failed: {out:?}");
        let text = std::fs::read_to_string(&key_file).expect("read key");
        let public_key = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("public key line")
            .trim()
            .to_string();
        SopsFixture {
            dir,
            key_file,
            public_key,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `plaintext` to `rel` and encrypts it in place for this fixture's key.
    pub fn encrypt(&self, rel: &str, plaintext: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, plaintext).unwrap();
        let out = self
            .sops()
            .arg("encrypt")
            .arg("--age")
            .arg(&self.public_key)
            .arg("-i")
            .arg(&path)
            .output()
            .expect("run sops encrypt");
        assert!(
            out.status.success(),
            "sops encrypt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// `sops set FILE PATH JSON_VALUE` with this fixture's key.
    pub fn set(&self, rel: &str, index: &str, json_value: &str) {
        let out = self
            .sops()
            .arg("set")
            .arg(self.path(rel))
            .arg(index)
            .arg(json_value)
            .output()
            .expect("run sops set");
        assert!(
            out.status.success(),
            "sops set failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// sops with this fixture's key and no other.
    pub fn sops(&self) -> Command {
        let mut cmd = Command::new(sops_bin());
        isolate(&mut cmd, self.dir.path());
        cmd.env("SOPS_AGE_KEY_FILE", &self.key_file);
        cmd
    }

    /// A wrapper script usable as --sops-bin: runs the real sops with this fixture's key
    /// (or with no key at all), and counts its runs in `sops-calls.log`.
    pub fn wrapper(&self, with_key: bool) -> PathBuf {
        let name = if with_key {
            "sops-with-key"
        } else {
            "sops-no-key"
        };
        let path = self.path(name);
        let key = if with_key {
            format!("export SOPS_AGE_KEY_FILE='{}'", self.key_file.display())
        } else {
            "unset SOPS_AGE_KEY_FILE".to_string()
        };
        let script = format!(
            "#!/bin/sh\nunset SOPS_AGE_KEY SOPS_AGE_KEY_CMD SOPS_AGE_SSH_PRIVATE_KEY_FILE\n{key}\n\
             export HOME='{home}' XDG_CONFIG_HOME='{home}/.config'\n\
             echo \"$@\" >> '{log}'\nexec '{sops}' \"$@\"\n",
            home = self.dir.path().join("home").display(),
            log = self.path("sops-calls.log").display(),
            sops = sops_bin().display(),
        );
        std::fs::write(&path, script).unwrap();
        make_executable(&path);
        path
    }

    /// How many times a wrapper ran sops.
    pub fn sops_calls(&self) -> usize {
        std::fs::read_to_string(self.path("sops-calls.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// Keeps sops away from the developer's own keys and the network.
pub fn isolate(cmd: &mut Command, dir: &Path) {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    cmd.env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("SOPS_DISABLE_VERSION_CHECK", "1");
}

pub fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).unwrap();
}
