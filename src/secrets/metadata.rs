//! Reading sops files without decrypting them.
//!
//! sops keeps key names in plaintext and encrypts each value separately into an
//! `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` entry, and it keeps an unchanged
//! value's entry byte-identical when the file is edited. So without any key we can list the
//! keys a file holds, the recipients it is encrypted for, and a fingerprint of each value's
//! ciphertext that changes exactly when that value changes.
//!
//! Formats: YAML, JSON and dotenv (chosen by file extension: `.yaml`/`.yml`, `.json`,
//! `.env`; anything else is read as YAML, which also accepts JSON).
//!
//! Key paths: a dotted path (`tap_gitlab.password`, list items by index: `hosts.0`) or a
//! JSON pointer (`/tap_gitlab/password`), which is needed when a key itself contains a dot
//! or a slash. A path starting with `/` is a JSON pointer; anything else is dotted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of every secret fingerprint: the hash algorithm and what was hashed.
pub const FINGERPRINT_PREFIX: &str = "sops-ct-sha256:";

/// One secret referenced by cloud.yml, resolved to its sops file and ciphertext entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEntry {
    /// Environment-variable name of the secret.
    pub name: String,
    /// The sops file as written in cloud.yml (relative to cloud.yml's folder).
    pub file: PathBuf,
    /// Key path inside the file, as written (or defaulted to the name).
    pub key_path: String,
    /// `sops-ct-sha256:<hex>` of the value's sops ciphertext entry.
    pub fingerprint: String,
    /// Recipients the file is encrypted for, such as `age:age1...` or `pgp:FINGERPRINT`.
    pub recipients: Vec<String>,
}

/// The sops file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SopsFormat {
    Yaml,
    Json,
    Dotenv,
}

impl SopsFormat {
    /// The format sops itself would pick for this path.
    pub fn for_path(path: &Path) -> SopsFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".json") {
            SopsFormat::Json
        } else if name.ends_with(".env") {
            SopsFormat::Dotenv
        } else {
            SopsFormat::Yaml
        }
    }

    /// The value for `sops --input-type`/`--output-type`.
    pub fn sops_type(self) -> &'static str {
        match self {
            SopsFormat::Yaml => "yaml",
            SopsFormat::Json => "json",
            SopsFormat::Dotenv => "dotenv",
        }
    }
}

/// A key a file is encrypted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `age`, `pgp`, `kms`, `gcp_kms`, `azure_kv` or `hc_vault`.
    pub kind: String,
    /// The age public key, PGP fingerprint, KMS ARN, key resource or vault key URL.
    pub id: String,
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// What sits at one key path of a sops file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SopsValue {
    /// An encrypted value: its `ENC[...]` entry.
    Encrypted { ciphertext: String },
    /// A value sops left in plaintext (`unencrypted_suffix` and similar rules).
    Unencrypted,
    /// A mapping; its keys.
    Mapping(Vec<String>),
    /// A list of this many items.
    Sequence(usize),
}

/// The plaintext structure of a sops file.
#[derive(Debug, Clone)]
pub struct SopsFile {
    pub path: PathBuf,
    pub format: SopsFormat,
    /// Every node but the root and the `sops` metadata, by key path segments.
    pub values: BTreeMap<Vec<String>, SopsValue>,
    pub recipients: Vec<Recipient>,
}

/// Why a file could not be read as a sops file.
#[derive(Debug)]
pub enum SopsReadError {
    NotFound,
    Io(std::io::Error),
    /// Not valid YAML/JSON/dotenv.
    Parse(String),
    /// Valid, but without sops metadata: the file was never encrypted.
    NotEncrypted,
}

impl fmt::Display for SopsReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SopsReadError::NotFound => f.write_str("file not found"),
            SopsReadError::Io(e) => write!(f, "cannot read the file: {e}"),
            SopsReadError::Parse(e) => write!(f, "cannot parse the file: {e}"),
            SopsReadError::NotEncrypted => {
                f.write_str("the file is not sops-encrypted (it has no `sops` metadata)")
            }
        }
    }
}

impl std::error::Error for SopsReadError {}

/// Why a key path could not be resolved to an encrypted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No such key. `parent` is the deepest existing prefix, `siblings` its keys.
    Missing {
        parent: Vec<String>,
        siblings: Vec<String>,
    },
    /// The path names a mapping or list, not one value.
    NotScalar { children: Vec<String> },
    /// The value is stored in plaintext.
    Unencrypted,
}

/// Splits a key path into segments: JSON pointer when it starts with `/`, dotted otherwise.
pub fn parse_key_path(key: &str) -> Vec<String> {
    if let Some(rest) = key.strip_prefix('/') {
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect()
    } else {
        key.split('.').map(str::to_string).collect()
    }
}

/// Joins segments as a dotted path (or a JSON pointer when a segment holds a dot).
pub fn display_key_path(segments: &[String]) -> String {
    if segments.iter().any(|s| s.contains('.') || s.is_empty()) {
        segments
            .iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect()
    } else {
        segments.join(".")
    }
}

/// `sops-ct-sha256:<hex>` of a ciphertext entry.
pub fn fingerprint(ciphertext: &str) -> String {
    let digest = Sha256::digest(ciphertext.as_bytes());
    format!("{FINGERPRINT_PREFIX}{}", hex::encode(digest))
}

/// Reads a sops file's plaintext structure, recipients and ciphertext entries.
pub fn read_sops_file(path: &Path) -> Result<SopsFile, SopsReadError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SopsReadError::NotFound
        } else {
            SopsReadError::Io(e)
        }
    })?;
    parse_sops(path, &text)
}

/// Parses sops file text; the format follows `path`'s extension.
pub fn parse_sops(path: &Path, text: &str) -> Result<SopsFile, SopsReadError> {
    let format = SopsFormat::for_path(path);
    let root = match format {
        SopsFormat::Json => {
            serde_json::from_str::<Value>(text).map_err(|e| SopsReadError::Parse(e.to_string()))?
        }
        SopsFormat::Yaml => {
            let (doc, _) =
                crate::spec::yaml::parse(text).map_err(|p| SopsReadError::Parse(p.message))?;
            doc.value
        }
        SopsFormat::Dotenv => parse_dotenv(text)?,
    };
    let Value::Object(mut top) = root else {
        return Err(SopsReadError::NotEncrypted);
    };
    let Some(meta) = top.remove("sops") else {
        return Err(SopsReadError::NotEncrypted);
    };
    if !meta.get("mac").is_some_and(Value::is_string) {
        return Err(SopsReadError::NotEncrypted);
    }
    let mut recipients = Vec::new();
    collect_recipients(&meta, &mut recipients);
    if let Some(groups) = meta.get("key_groups").and_then(Value::as_array) {
        for g in groups {
            collect_recipients(g, &mut recipients);
        }
    }
    let mut values = BTreeMap::new();
    walk(&mut Vec::new(), &Value::Object(top), &mut values);
    values.remove(&Vec::new());
    Ok(SopsFile {
        path: path.to_path_buf(),
        format,
        values,
        recipients,
    })
}

fn collect_recipients(meta: &Value, out: &mut Vec<Recipient>) {
    let kinds: [(&str, &[&str]); 6] = [
        ("age", &["recipient"]),
        ("pgp", &["fp"]),
        ("kms", &["arn"]),
        ("gcp_kms", &["resource_id"]),
        ("azure_kv", &["vault_url", "name"]),
        ("hc_vault", &["vault_address", "engine_path", "key_name"]),
    ];
    for (kind, fields) in kinds {
        for item in meta
            .get(kind)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let parts: Vec<&str> = fields
                .iter()
                .filter_map(|f| item.get(*f).and_then(Value::as_str))
                .collect();
            if !parts.is_empty() {
                out.push(Recipient {
                    kind: kind.to_string(),
                    id: parts.join("/"),
                });
            }
        }
    }
}

fn walk(path: &mut Vec<String>, value: &Value, out: &mut BTreeMap<Vec<String>, SopsValue>) {
    let entry = match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                walk(path, v, out);
                path.pop();
            }
            SopsValue::Mapping(map.keys().cloned().collect())
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(path, v, out);
                path.pop();
            }
            SopsValue::Sequence(items.len())
        }
        Value::String(s) if s.starts_with("ENC[") && s.ends_with(']') => SopsValue::Encrypted {
            ciphertext: s.clone(),
        },
        _ => SopsValue::Unencrypted,
    };
    out.insert(path.clone(), entry);
}

/// Parses a dotenv file; sops' flattened metadata (`sops_age__list_0__map_recipient=...`)
/// is rebuilt into a `sops` object like the YAML and JSON formats have.
fn parse_dotenv(text: &str) -> Result<Value, SopsReadError> {
    let mut top = serde_json::Map::new();
    let mut meta = Value::Object(serde_json::Map::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(SopsReadError::Parse(format!(
                "line {}: expected KEY=VALUE",
                n + 1
            )));
        };
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(flat) => insert_flat(&mut meta, flat, value),
            None => {
                top.insert(key.to_string(), Value::String(value));
            }
        }
    }
    if meta.as_object().is_some_and(|m| !m.is_empty()) {
        top.insert("sops".into(), meta);
    }
    Ok(Value::Object(top))
}

fn insert_flat(meta: &mut Value, flat: &str, value: String) {
    let mut segments = flat.split("__");
    let Some(first) = segments.next() else { return };
    let mut cur = meta;
    let mut key = Segment::Key(first.to_string());
    for seg in segments {
        let next = if let Some(i) = seg.strip_prefix("list_").and_then(|i| i.parse().ok()) {
            Segment::Index(i)
        } else if let Some(k) = seg.strip_prefix("map_") {
            Segment::Key(k.to_string())
        } else {
            Segment::Key(seg.to_string())
        };
        let empty = match next {
            Segment::Index(_) => Value::Array(Vec::new()),
            Segment::Key(_) => Value::Object(serde_json::Map::new()),
        };
        cur = match child(cur, &key, empty) {
            Some(c) => c,
            None => return,
        };
        key = next;
    }
    if let Some(slot) = child(cur, &key, Value::Null) {
        *slot = Value::String(value);
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn child<'a>(cur: &'a mut Value, seg: &Segment, empty: Value) -> Option<&'a mut Value> {
    match (cur, seg) {
        (Value::Object(m), Segment::Key(k)) => Some(m.entry(k.clone()).or_insert(empty)),
        (Value::Array(a), Segment::Index(i)) => {
            if *i > 1024 {
                return None;
            }
            while a.len() <= *i {
                a.push(Value::Null);
            }
            if a[*i].is_null() {
                a[*i] = empty;
            }
            Some(&mut a[*i])
        }
        _ => None,
    }
}

impl SopsFile {
    /// Recipients as `kind:id` strings.
    pub fn recipient_strings(&self) -> Vec<String> {
        self.recipients.iter().map(Recipient::to_string).collect()
    }

    /// Paths of every value (not mappings or lists), dotted where possible.
    pub fn leaf_paths(&self) -> Vec<String> {
        self.values
            .iter()
            .filter(|(_, v)| matches!(v, SopsValue::Encrypted { .. } | SopsValue::Unencrypted))
            .map(|(k, _)| display_key_path(k))
            .collect()
    }

    /// The ciphertext entry at `key` (dotted path or JSON pointer, see the module docs).
    pub fn lookup(&self, key: &str) -> Result<&str, LookupError> {
        let mut segments = parse_key_path(key);
        if !self.values.contains_key(&segments) && !key.starts_with('/') {
            // A top-level key that itself contains dots.
            let whole = vec![key.to_string()];
            if self.values.contains_key(&whole) {
                segments = whole;
            }
        }
        match self.values.get(&segments) {
            Some(SopsValue::Encrypted { ciphertext }) => Ok(ciphertext),
            Some(SopsValue::Unencrypted) => Err(LookupError::Unencrypted),
            Some(SopsValue::Mapping(keys)) => Err(LookupError::NotScalar {
                children: keys.clone(),
            }),
            Some(SopsValue::Sequence(n)) => Err(LookupError::NotScalar {
                children: (0..*n).map(|i| i.to_string()).collect(),
            }),
            None => {
                let mut parent = segments;
                parent.pop();
                while !parent.is_empty() && !self.values.contains_key(&parent) {
                    parent.pop();
                }
                let siblings = if parent.is_empty() {
                    self.values
                        .keys()
                        .filter(|k| k.len() == 1)
                        .map(|k| k[0].clone())
                        .collect()
                } else {
                    match self.values.get(&parent) {
                        Some(SopsValue::Mapping(keys)) => keys.clone(),
                        Some(SopsValue::Sequence(n)) => (0..*n).map(|i| i.to_string()).collect(),
                        _ => Vec::new(),
                    }
                };
                Err(LookupError::Missing { parent, siblings })
            }
        }
    }

    /// The fingerprint of the value at `key`.
    pub fn fingerprint_of(&self, key: &str) -> Result<String, LookupError> {
        self.lookup(key).map(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"tap_gitlab:
    password: ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]
    hosts:
        - ENC[AES256_GCM,data:aDE=,iv:aXY=,tag:dGFn,type:str]
TARGET_SNOWFLAKE_PASSWORD: ENC[AES256_GCM,data:cHc=,iv:aXY=,tag:dGFn,type:str]
"dotted.key": ENC[AES256_GCM,data:ZG90,iv:aXY=,tag:dGFn,type:str]
note_unencrypted: hello
sops:
    age:
        - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
            -----END AGE ENCRYPTED FILE-----
    pgp:
        - fp: 85D77543B3D624B63CEA9E6DBC17301B491B3F21
    lastmodified: "2026-11-30T04:00:00Z"
    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
    unencrypted_suffix: _unencrypted
    version: 3.11.0
"#;

    fn yaml() -> SopsFile {
        parse_sops(Path::new("s.sops.yaml"), YAML).unwrap()
    }

    #[test]
    fn dotted_and_pointer_paths_resolve() {
        let f = yaml();
        let ct = "ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]";
        assert_eq!(f.lookup("tap_gitlab.password"), Ok(ct));
        assert_eq!(f.lookup("/tap_gitlab/password"), Ok(ct));
        assert!(f.lookup("tap_gitlab.hosts.0").is_ok());
        assert!(f.lookup("dotted.key").is_ok());
        assert!(f.lookup("/dotted.key").is_ok());
        assert_eq!(
            f.fingerprint_of("tap_gitlab.password").unwrap(),
            fingerprint(ct)
        );
        assert!(fingerprint(ct).starts_with("sops-ct-sha256:"));
        assert_eq!(fingerprint(ct).len(), FINGERPRINT_PREFIX.len() + 64);
    }

    #[test]
    fn lookup_errors_say_what_is_there() {
        let f = yaml();
        match f.lookup("tap_gitlab.pasword") {
            Err(LookupError::Missing { parent, siblings }) => {
                assert_eq!(parent, vec!["tap_gitlab".to_string()]);
                assert_eq!(siblings, vec!["password".to_string(), "hosts".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.lookup("tap_gitlab"),
            Err(LookupError::NotScalar { .. })
        ));
        assert_eq!(f.lookup("note_unencrypted"), Err(LookupError::Unencrypted));
        assert!(f.lookup("sops.mac").is_err());
    }

    #[test]
    fn recipients_are_listed() {
        assert_eq!(
            yaml().recipient_strings(),
            vec![
                "age:age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".to_string(),
                "pgp:85D77543B3D624B63CEA9E6DBC17301B491B3F21".to_string()
            ]
        );
    }

    #[test]
    fn json_and_dotenv_formats() {
        let json = r#"{"db": {"password": "ENC[AES256_GCM,data:eA==,iv:aXY=,tag:dGFn,type:str]"},
            "sops": {"kms": [{"arn": "arn:aws:kms:eu-west-1:1:key/k"}], "mac": "ENC[x]", "version": "3.11.0"}}"#;
        let f = parse_sops(Path::new("x.json"), json).unwrap();
        assert_eq!(f.format, SopsFormat::Json);
        assert!(f.lookup("db.password").is_ok());
        assert_eq!(
            f.recipient_strings(),
            vec!["kms:arn:aws:kms:eu-west-1:1:key/k"]
        );

        let env = "API_TOKEN=ENC[AES256_GCM,data:eA==,iv:aXY=,tag:dGFn,type:str]\n\
            sops_age__list_0__map_enc=-----BEGIN AGE ENCRYPTED FILE-----\\nabc\\n\n\
            sops_age__list_0__map_recipient=age1abc\n\
            sops_lastmodified=2026-11-30T04:00:00Z\n\
            sops_mac=ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]\n\
            sops_version=3.11.0\n";
        let f = parse_sops(Path::new("prod.env"), env).unwrap();
        assert_eq!(f.format, SopsFormat::Dotenv);
        assert!(f.lookup("API_TOKEN").is_ok());
        assert_eq!(f.recipient_strings(), vec!["age:age1abc"]);
    }

    #[test]
    fn plain_files_are_not_encrypted() {
        assert!(matches!(
            parse_sops(Path::new("x.yaml"), "a: b\n"),
            Err(SopsReadError::NotEncrypted)
        ));
        assert!(matches!(
            parse_sops(Path::new("x.env"), "A=b\n"),
            Err(SopsReadError::NotEncrypted)
        ));
        assert!(matches!(
            parse_sops(Path::new("x.json"), "{"),
            Err(SopsReadError::Parse(_))
        ));
    }

    #[test]
    fn key_paths_round_trip() {
        assert_eq!(parse_key_path("/a~1b/c~0d"), vec!["a/b", "c~d"]);
        assert_eq!(display_key_path(&["a".into(), "b".into()]), "a.b");
        assert_eq!(display_key_path(&["a.b".into()]), "/a.b");
    }
}
