//! Encryption of secret values at rest: AES-256-GCM under the server key.
//!
//! The key comes from `MELTANO_CLOUD_SERVER_KEY` (64 hex characters or base64 of 32 bytes)
//! or from a key file created with mode 0600 on first start. Each ciphertext is bound to
//! the project and secret name it belongs to (associated data), so rows cannot be swapped.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use zeroize::Zeroizing;

/// Environment variable holding the server key.
pub const SERVER_KEY_ENV: &str = "MELTANO_CLOUD_SERVER_KEY";

const FORMAT_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Where the server key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The key itself (from the environment).
    Value(Zeroizing<String>),
    /// A key file, created on first use.
    File(PathBuf),
}

impl KeySource {
    /// The environment variable when set, else the given key file.
    pub fn from_env_or_file(file: PathBuf) -> Self {
        match std::env::var(SERVER_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => KeySource::Value(Zeroizing::new(v)),
            _ => KeySource::File(file),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            KeySource::Value(_) => format!("${SERVER_KEY_ENV}"),
            KeySource::File(p) => format!("key file {}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read or create the key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Encrypts and decrypts secret values.
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

fn parse_key(text: &str, origin: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let text = text.trim();
    let mut key = Zeroizing::new([0u8; 32]);
    let bytes: Zeroizing<Vec<u8>> =
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Zeroizing::new(hex::decode(text).map_err(|e| KeyError::Invalid(e.to_string()))?)
        } else {
            Zeroizing::new(B64.decode(text).map_err(|_| {
                KeyError::Invalid(format!(
                    "the server key in {origin} is not 64 hex characters nor base64 of 32 bytes"
                ))
            })?)
        };
    if bytes.len() != 32 {
        return Err(KeyError::Invalid(format!(
            "the server key in {origin} has {} bytes; AES-256 needs 32",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A fresh random key, hex encoded.
pub fn generate_key_hex() -> Zeroizing<String> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    Zeroizing::new(hex::encode(key.as_ref()))
}

fn load_or_create_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(Zeroizing::new(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
    }
    let key = generate_key_hex();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(format!("{}\n", key.as_str()).as_bytes())
                .map_err(io)?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(io),
        Err(e) => Err(io(e)),
    }
}

impl Cipher {
    pub fn load(source: &KeySource) -> Result<Cipher, KeyError> {
        let text = match source {
            KeySource::Value(v) => v.clone(),
            KeySource::File(p) => load_or_create_file(p)?,
        };
        let key = parse_key(&text, &source.describe())?;
        let aead = Aes256Gcm::new_from_slice(key.as_ref())
            .map_err(|_| KeyError::Invalid("invalid key length".into()))?;
        Ok(Cipher { aead })
    }

    pub fn from_key_text(text: &str) -> Result<Cipher, KeyError> {
        Cipher::load(&KeySource::Value(Zeroizing::new(text.to_string())))
    }

    /// Encrypts `plaintext` bound to `context`; returns printable text.
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!("{FORMAT_PREFIX}{}", B64.encode(blob))
    }

    /// Decrypts what [`Cipher::encrypt`] produced for the same `context`.
    pub fn decrypt(&self, context: &str, stored: &str) -> Option<Zeroizing<Vec<u8>>> {
        let blob = B64.decode(stored.strip_prefix(FORMAT_PREFIX)?).ok()?;
        if blob.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let c = Cipher::from_key_text(&generate_key_hex()).unwrap();
        let ct = c.encrypt("p1/A", b"hunter2");
        assert!(!ct.contains("hunter2"));
        assert_eq!(c.decrypt("p1/A", &ct).unwrap().as_slice(), b"hunter2");
        assert!(c.decrypt("p1/B", &ct).is_none());
        let other = Cipher::from_key_text(&generate_key_hex()).unwrap();
        assert!(other.decrypt("p1/A", &ct).is_none());
    }

    #[test]
    fn rejects_short_keys() {
        assert!(Cipher::from_key_text("abcd").is_err());
    }
}
