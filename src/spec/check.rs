//! The checks behind `validate` and [`super::load`]: schema errors mapped onto spans, then
//! the semantic checks the schema cannot express (meltano.yml environments and schedules,
//! names, sops references), then typed deserialization.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::diagnostics::{SourceFile, SpecDiagnostic, did_you_mean, suggestion_help};
use super::meltano::{self, MeltanoProject, MeltanoReadError, join_clean};
use super::model::{self, CloudFile};
use super::yaml::{Document, SpanMap, escape_token};
use super::{LoadedSpec, parent_dir, schema, yaml_file};
use crate::secrets::metadata::{self, LookupError, SecretEntry, SopsFile, SopsReadError};

/// The span of the value at `pointer`, or of its nearest parent that has one.
pub fn span_at(spans: &SpanMap, pointer: &str) -> Range<usize> {
    let mut p = pointer.to_string();
    loop {
        if let Some(s) = spans.get(&p) {
            return s.value.clone();
        }
        match p.rfind('/') {
            Some(i) => p.truncate(i),
            None => return 0..0,
        }
    }
}

/// The span of the key naming the value at `pointer` (its value span for list items).
pub fn key_span_at(spans: &SpanMap, pointer: &str) -> Range<usize> {
    match spans.get(pointer) {
        Some(s) => s.key.clone().unwrap_or_else(|| s.value.clone()),
        None => span_at(spans, pointer),
    }
}

/// Checks a cloud.yml and everything it refers to. Returns the loaded spec when it could be
/// built (it may still come with errors), and every diagnostic, in file order.
pub fn check_file(path: &Path) -> (Option<LoadedSpec>, Vec<SpecDiagnostic>) {
    let mut diags = Vec::new();
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // Point at the first bad byte: the usual cause is a file saved as Latin-1 or
            // UTF-16 by an editor.
            let at = e.utf8_error().valid_up_to();
            let good = &e.as_bytes()[..at];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            diags.push(
                SpecDiagnostic::no_source(
                    "spec::encoding",
                    path,
                    format!(
                        "{} is not valid UTF-8 (first bad byte at line {line}, column {column}, offset {at})",
                        path.display()
                    ),
                )
                .help("save the file as UTF-8 (YAML files must be UTF-8)"),
            );
            return (None, diags);
        }
        Err(e) => {
            let mut d = SpecDiagnostic::no_source(
                "spec::read",
                path,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            );
            if e.kind() == std::io::ErrorKind::NotFound {
                d = d.help(
                    "run in the folder holding cloud.yml, pass `--file PATH`, or create one with `meltano-cloud init`",
                );
            }
            diags.push(d);
            return (None, diags);
        }
    };
    let Some((source, doc)) = yaml_file(path, text, &mut diags) else {
        return (None, diags);
    };
    let spec = check_document(path, &source, &doc, &mut diags);
    diags.sort_by_key(|d| {
        (
            d.path != path,
            d.path.clone(),
            d.labels.first().map_or(0, |l| l.0.start),
        )
    });
    (spec, diags)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

struct Ctx<'a> {
    source: &'a Arc<SourceFile>,
    spans: &'a SpanMap,
    diags: &'a mut Vec<SpecDiagnostic>,
}

impl Ctx<'_> {
    fn value_span(&self, pointer: &str) -> Range<usize> {
        span_at(self.spans, pointer)
    }

    fn key_span(&self, pointer: &str) -> Range<usize> {
        key_span_at(self.spans, pointer)
    }

    fn error(&self, code: &'static str, message: impl Into<String>) -> SpecDiagnostic {
        SpecDiagnostic::error(code, self.source, message)
    }
}

fn check_document(
    path: &Path,
    source: &Arc<SourceFile>,
    doc: &Document,
    diags: &mut Vec<SpecDiagnostic>,
) -> Option<LoadedSpec> {
    let dir = parent_dir(path);
    let mut cx = Ctx {
        source,
        spans: &doc.spans,
        diags,
    };
    let schema_errors = schema_errors(&mut cx, &doc.value);
    let meltano = check_meltano(&mut cx, &doc.value, &dir);
    check_deployments(&mut cx, &doc.value, meltano.as_ref());
    let secrets = check_secrets(&mut cx, &doc.value, &dir);

    if schema_errors > 0 {
        return None;
    }
    let mut value = doc.value.clone();
    if let Some(map) = value.as_object_mut() {
        map.retain(|k, _| !k.starts_with("x-"));
    }
    let cloud: CloudFile = match serde_json::from_value(value) {
        Ok(c) => c,
        Err(e) => {
            let d = cx
                .error(
                    "spec::type",
                    format!("cloud.yml does not match its format: {e}"),
                )
                .label(cx.value_span(""), "here")
                .help("run `meltano-cloud schema` to see the expected format");
            cx.diags.push(d);
            return None;
        }
    };
    Some(LoadedSpec {
        path: path.to_path_buf(),
        dir,
        cloud,
        meltano: meltano?,
        secrets,
        warnings: Vec::new(),
        source: source.clone(),
        spans: doc.spans.clone(),
    })
}

fn schema_value() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(schema::cloud_schema)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "true/false",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn schema_type_name(t: &str) -> &'static str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "nothing (null)",
        _ => "another type",
    }
}

/// Adds one diagnostic per schema error; returns how many.
fn schema_errors(cx: &mut Ctx<'_>, value: &Value) -> usize {
    let root = schema_value();
    let mut count = 0;
    let mut new = Vec::new();
    // A misspelled required field is reported once, as the unknown field with its
    // suggestion: (mapping pointer, suggested field) of such typos, and the missing-field
    // diagnostics to drop when they match one.
    let mut typos: Vec<(String, String)> = Vec::new();
    let mut missing: Vec<(usize, String, String)> = Vec::new();
    for err in schema::validator().iter_errors(value) {
        let ptr = err.instance_path.as_str().to_string();
        let described = |p: &str| schema::description_at(root, p);
        match &err.kind {
            // Checked with better messages by the semantic checks.
            ValidationErrorKind::PropertyNames { .. } | ValidationErrorKind::UniqueItems => {
                continue;
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let fields = schema::fields_at(root, &ptr);
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                for name in unexpected {
                    if let Some(best) = did_you_mean(name, fields.iter().copied()) {
                        typos.push((ptr.clone(), best.to_string()));
                    }
                    let child = format!("{ptr}/{}", escape_token(name));
                    let d = cx
                        .error("schema::unknown_field", format!("unknown field `{name}`"))
                        .label(cx.key_span(&child), "not a field here")
                        .help(suggestion_help(name, &fields, "field"));
                    new.push(d);
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let child = format!("{ptr}/{}", escape_token(name));
                let what = if ptr.is_empty() {
                    "cloud.yml".to_string()
                } else {
                    format!("`{}`", ptr.rsplit('/').next().unwrap_or_default())
                };
                let mut help = format!("add `{name}:`");
                if let Some(desc) = described(&child) {
                    help.push_str(&format!(" ({})", first_sentence(&desc)));
                }
                let d = cx
                    .error("schema::missing_field", format!("missing field `{name}`"))
                    .label(cx.key_span(&ptr), format!("{what} needs `{name}`"))
                    .help(help);
                missing.push((new.len(), ptr.clone(), name.to_string()));
                new.push(d);
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    TypeKind::Single(t) => schema_type_name(&t.to_string()).to_string(),
                    TypeKind::Multiple(set) => {
                        let names: Vec<&str> = set
                            .iter()
                            .map(|t| schema_type_name(&t.to_string()))
                            .collect();
                        names.join(" or ")
                    }
                };
                let d = if ptr.is_empty() && err.instance.is_null() {
                    cx.error("schema::empty_file", "the file is empty")
                        .label(cx.value_span(&ptr), "nothing here")
                        .help("run `meltano-cloud init` to write a starting one")
                } else {
                    let d = cx
                        .error(
                            "schema::type",
                            format!("expected {expected}, found {}", type_name(&err.instance)),
                        )
                        .label(cx.value_span(&ptr), format!("expected {expected}"));
                    if expected == "true or false" && err.instance.is_string() {
                        // YAML 1.1 booleans (`yes`, `on`) are strings in YAML 1.2.
                        d.help("write `true` or `false` (in YAML 1.2 `yes`, `no`, `on` and `off` are strings)")
                    } else {
                        match described(&ptr) {
                            Some(desc) => {
                                d.help(format!("write {expected} here ({})", first_sentence(&desc)))
                            }
                            None => d.help(format!("write {expected} here")),
                        }
                    }
                };
                new.push(d);
            }
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. }
                if ptr == "/version" =>
            {
                let d = cx
                    .error(
                        "schema::version",
                        format!("unsupported cloud.yml version `{}`", err.instance),
                    )
                    .label(cx.value_span(&ptr), "unsupported version")
                    .help("this meltano-cloud reads `version: 1`");
                new.push(d);
            }
            ValidationErrorKind::MinLength { .. } if err.instance.as_str() == Some("") => {
                let d = cx
                    .error("schema::empty", "this value must not be empty")
                    .label(cx.value_span(&ptr), "empty");
                let d = match described(&ptr) {
                    Some(desc) => d.help(desc),
                    None => d,
                };
                new.push(d);
            }
            _ => {
                let mut d = cx
                    .error("schema::invalid", err.to_string())
                    .label(cx.value_span(&ptr), "invalid value");
                if let Some(desc) = described(&ptr) {
                    d = d.help(desc);
                }
                new.push(d);
            }
        }
    }
    let drop: Vec<usize> = missing
        .into_iter()
        .filter(|(_, ptr, name)| typos.iter().any(|(p, n)| p == ptr && n == name))
        .map(|(i, _, _)| i)
        .collect();
    let new: Vec<_> = new
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, d)| d)
        .collect();
    count += new.len();
    cx.diags.extend(new);
    count
}

fn first_sentence(text: &str) -> String {
    let t = text.split("\n\n").next().unwrap_or(text).replace('\n', " ");
    match t.find(". ") {
        Some(i) => t[..i + 1].to_string(),
        None => t,
    }
}

fn check_meltano(cx: &mut Ctx<'_>, value: &Value, dir: &Path) -> Option<MeltanoProject> {
    let folder = value
        .get("meltano_project")
        .and_then(Value::as_str)
        .unwrap_or(".");
    let meltano_dir = join_clean(dir, folder);
    match meltano::read_project(&meltano_dir, cx.diags) {
        Ok(p) => Some(p),
        Err(MeltanoReadError::NotFound(file)) => {
            let (span, label) = if value.get("meltano_project").is_some() {
                (
                    cx.value_span("/meltano_project"),
                    "no meltano.yml in this folder".to_string(),
                )
            } else {
                let at = cx.value_span("").start;
                (
                    at..at,
                    "`meltano_project` defaults to this file's folder".to_string(),
                )
            };
            let d = cx
                .error(
                    "spec::meltano_missing",
                    format!("meltano.yml not found: {}", file.display()),
                )
                .label(span, label)
                .help("set `meltano_project` to the folder holding meltano.yml (relative to cloud.yml)");
            cx.diags.push(d);
            None
        }
        Err(MeltanoReadError::Io(file, e)) => {
            let d = cx
                .error(
                    "spec::meltano_read",
                    format!("cannot read {}: {}", file.display(), io_reason(&e)),
                )
                .label(cx.value_span("/meltano_project"), "here");
            cx.diags.push(d);
            None
        }
    }
}

/// Lowercase, dashes for anything else, trimmed to 63 characters.
fn slugify(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    s.chars()
        .take(model::MAX_DEPLOYMENT_NAME)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// Whether `name` is a deployment slug (pattern only; length checked apart).
pub fn is_slug(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is an environment-variable name.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_deployments(cx: &mut Ctx<'_>, value: &Value, meltano: Option<&MeltanoProject>) {
    let Some(deployments) = value.get("deployments").and_then(Value::as_object) else {
        return;
    };
    for (name, d) in deployments {
        let ptr = format!("/deployments/{}", escape_token(name));
        if name.chars().count() > model::MAX_DEPLOYMENT_NAME {
            let e = cx
                .error(
                    "spec::deployment_name",
                    format!(
                        "deployment name is {} characters long; at most {} are allowed",
                        name.chars().count(),
                        model::MAX_DEPLOYMENT_NAME
                    ),
                )
                .label(cx.key_span(&ptr), "too long")
                .help(format!("use a shorter name, e.g. `{}`", slugify(name)));
            cx.diags.push(e);
        } else if !is_slug(name) {
            let suggestion = slugify(name);
            let mut help = "use lowercase letters, digits and dashes, starting and ending with a letter or digit".to_string();
            if !suggestion.is_empty() {
                help.push_str(&format!(", e.g. `{suggestion}`"));
            }
            let e = cx
                .error(
                    "spec::deployment_name",
                    format!("deployment name `{name}` is not a valid slug"),
                )
                .label(cx.key_span(&ptr), "invalid name")
                .help(help);
            cx.diags.push(e);
        }
        let Some(meltano) = meltano else { continue };
        if let Some(env) = d.get("environment").and_then(Value::as_str) {
            if !env.is_empty() && !meltano.has_environment(env) {
                let envs: Vec<&str> = meltano.environments.iter().map(String::as_str).collect();
                let e = cx
                    .error(
                        "spec::unknown_environment",
                        format!(
                            "environment `{env}` is not defined in {}",
                            meltano.file.display()
                        ),
                    )
                    .label(
                        cx.value_span(&format!("{ptr}/environment")),
                        "unknown environment",
                    )
                    .help(suggestion_help(env, &envs, "environment"));
                cx.diags.push(e);
            }
        }
        let Some(schedules) = d.get("schedules").and_then(Value::as_array) else {
            continue;
        };
        let names: Vec<&str> = meltano.schedules.iter().map(|s| s.name.as_str()).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, s) in schedules.iter().enumerate() {
            let Some(s) = s.as_str() else { continue };
            let item = format!("{ptr}/schedules/{i}");
            if let Some(first) = seen.get(s) {
                let e = cx
                    .error(
                        "spec::duplicate_schedule",
                        format!("schedule `{s}` is listed twice"),
                    )
                    .label(cx.value_span(&item), "listed again here")
                    .label(
                        cx.value_span(&format!("{ptr}/schedules/{first}")),
                        "first listed here",
                    )
                    .help("remove one of them");
                cx.diags.push(e);
                continue;
            }
            seen.insert(s, i);
            if meltano.schedule(s).is_none() {
                let e = cx
                    .error(
                        "spec::unknown_schedule",
                        format!(
                            "schedule `{s}` is not defined in {}",
                            meltano.file.display()
                        ),
                    )
                    .label(cx.value_span(&item), "unknown schedule")
                    .help(suggestion_help(s, &names, "schedule"));
                cx.diags.push(e);
            }
        }
    }
}

fn check_secrets(cx: &mut Ctx<'_>, value: &Value, dir: &Path) -> BTreeMap<String, SecretEntry> {
    let mut out = BTreeMap::new();
    let Some(secrets) = value.get("secrets").and_then(Value::as_object) else {
        return out;
    };
    let mut files: HashMap<PathBuf, Result<SopsFile, String>> = HashMap::new();
    for (name, r) in secrets {
        let ptr = format!("/secrets/{}", escape_token(name));
        if !is_env_var_name(name) {
            let suggestion: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let suggestion = if suggestion.starts_with(|c: char| c.is_ascii_digit()) {
                format!("_{suggestion}")
            } else {
                suggestion
            };
            let e = cx
                .error(
                    "spec::secret_name",
                    format!("secret name `{name}` is not a valid environment-variable name"),
                )
                .label(cx.key_span(&ptr), "invalid name")
                .help(format!(
                    "use letters, digits and underscores, not starting with a digit, e.g. `{suggestion}`"
                ));
            cx.diags.push(e);
        } else if let Some(why) = crate::secrets::reserved_reason(name) {
            let e = cx
                .error(
                    "spec::reserved_secret",
                    format!("secret name `{name}` is reserved"),
                )
                .label(cx.key_span(&ptr), "reserved name")
                .help(why);
            cx.diags.push(e);
            continue;
        }
        let Some(sops) = r.get("sops").and_then(Value::as_str) else {
            continue;
        };
        if sops.is_empty() {
            continue;
        }
        let key = r.get("key").and_then(Value::as_str).unwrap_or(name);
        let file = join_clean(dir, sops);
        let sops_span = cx.value_span(&format!("{ptr}/sops"));
        let loaded = files.entry(file.clone()).or_insert_with(|| {
            metadata::read_sops_file(&file).map_err(|e| match e {
                SopsReadError::NotFound => "missing".to_string(),
                other => other.to_string(),
            })
        });
        let sops_file = match loaded {
            Ok(f) => f,
            Err(reason) => {
                let e = if reason == "missing" {
                    cx.error(
                        "spec::sops_file_missing",
                        format!("sops file `{sops}` not found"),
                    )
                    .label(sops_span, "no such file")
                    .help(format!(
                        "paths are relative to the folder of cloud.yml ({}); create the file with `sops encrypt`",
                        display_dir(dir)
                    ))
                } else if reason.contains("not sops-encrypted") {
                    cx.error(
                        "spec::sops_not_encrypted",
                        format!("`{sops}` is not a sops-encrypted file"),
                    )
                    .label(sops_span, "no sops metadata in this file")
                    .help(format!(
                        "encrypt it in place with `sops encrypt --in-place {}` (a .sops.yaml says which keys to use)",
                        file.display()
                    ))
                } else {
                    cx.error(
                        "spec::sops_unreadable",
                        format!("cannot read sops file `{sops}`: {reason}"),
                    )
                    .label(sops_span, "unreadable")
                    .help("sops files must be YAML, JSON or dotenv, as written by `sops encrypt`")
                };
                cx.diags.push(e);
                continue;
            }
        };
        let (key_span, key_label) = if r.get("key").is_some() {
            (cx.value_span(&format!("{ptr}/key")), "this key")
        } else {
            (cx.key_span(&ptr), "the key defaults to the secret's name")
        };
        match sops_file.lookup(key) {
            Ok(ciphertext) => {
                out.insert(
                    name.clone(),
                    SecretEntry {
                        name: name.clone(),
                        file: PathBuf::from(sops),
                        key_path: key.to_string(),
                        fingerprint: metadata::fingerprint(ciphertext),
                        recipients: sops_file.recipient_strings(),
                    },
                );
            }
            Err(LookupError::Missing { .. }) => {
                let leaves = sops_file.leaf_paths();
                let leaves: Vec<&str> = leaves.iter().map(String::as_str).collect();
                let e = cx
                    .error(
                        "spec::sops_key_missing",
                        format!("key `{key}` not found in `{sops}`"),
                    )
                    .label(key_span, key_label)
                    .help(suggestion_help(key, &leaves, "key"));
                cx.diags.push(e);
            }
            Err(LookupError::NotScalar { children }) => {
                let example = children
                    .first()
                    .map(|c| format!(", e.g. `{key}.{c}`"))
                    .unwrap_or_default();
                let e = cx
                    .error(
                        "spec::sops_key_not_value",
                        format!("`{key}` in `{sops}` holds several values, not one"),
                    )
                    .label(key_span, key_label)
                    .help(format!("reference one value inside it{example}"));
                cx.diags.push(e);
            }
            Err(LookupError::Unencrypted) => {
                let e = cx
                    .error(
                        "spec::sops_value_unencrypted",
                        format!("`{key}` is stored unencrypted in `{sops}`"),
                    )
                    .label(key_span, key_label)
                    .help("secrets must be encrypted: rename the key so sops' unencrypted rules do not match it, then re-encrypt the file");
                cx.diags.push(e);
            }
        }
    }
    out
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_env_names() {
        assert!(is_slug("prod-1"));
        assert!(!is_slug("Prod"));
        assert!(!is_slug("-x"));
        assert!(!is_slug(""));
        assert_eq!(slugify("My_Prod  Env"), "my-prod-env");
        assert!(is_env_var_name("_A1"));
        assert!(!is_env_var_name("1A"));
        assert!(!is_env_var_name("A-B"));
    }

    const SOPS: &str = "db:\n    password: ENC[AES256_GCM,data:cHc=,iv:aXY=,tag:dGFn,type:str]\nAPI_TOKEN: ENC[AES256_GCM,data:dG9r,iv:aXY=,tag:dGFn,type:str]\nsops:\n    age:\n        - recipient: age1demo\n          enc: x\n    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]\n    version: 3.11.0\n";
    const MELTANO: &str = "environments:\n- name: dev\n- name: prod\nschedules:\n- name: daily\n  interval: '@daily'\n  job: all\n- name: hourly-sync\n  interval: '@hourly'\n  job: all\njobs:\n- name: all\n  tasks: [tap-a target-b]\n";

    fn project(cloud: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cloud.yml"), cloud).unwrap();
        std::fs::create_dir(tmp.path().join("meltano")).unwrap();
        std::fs::write(tmp.path().join("meltano/meltano.yml"), MELTANO).unwrap();
        std::fs::create_dir(tmp.path().join("secrets")).unwrap();
        std::fs::write(tmp.path().join("secrets/prod.sops.yaml"), SOPS).unwrap();
        tmp
    }

    #[test]
    fn loads_a_valid_file_with_anchors() {
        let tmp = project(
            "version: 1\nproject: demo\nmeltano_project: meltano\ndeployments:\n  prod: &d\n    environment: prod\n    git_rev: main\n    schedules: [daily]\n    protected: true\n  dev:\n    <<: *d\n    environment: dev\n    protected: false\nsecrets:\n  DB_PASSWORD: {sops: secrets/prod.sops.yaml, key: db.password}\n  API_TOKEN: {sops: secrets/prod.sops.yaml}\n",
        );
        let spec = super::super::load(&tmp.path().join("cloud.yml")).unwrap();
        assert_eq!(spec.cloud.deployments["dev"].schedules, vec!["daily"]);
        assert_eq!(spec.cloud.deployments["dev"].environment, "dev");
        assert!(!spec.cloud.deployments["dev"].protected);
        assert_eq!(spec.meltano.schedules.len(), 2);
        let s = &spec.secrets["DB_PASSWORD"];
        assert_eq!(s.file, PathBuf::from("secrets/prod.sops.yaml"));
        assert_eq!(s.key_path, "db.password");
        assert_eq!(
            s.fingerprint,
            metadata::fingerprint("ENC[AES256_GCM,data:cHc=,iv:aXY=,tag:dGFn,type:str]")
        );
        assert_eq!(s.recipients, vec!["age:age1demo"]);
        assert_eq!(spec.secrets["API_TOKEN"].key_path, "API_TOKEN");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let tmp = project(
            "version: 1\nproject: demo\nmeltano_project: meltano\ndeployments:\n  Prod_1:\n    environment: prd\n    git_rev: main\n    schedules: [hourly-snyc, daily, daily]\n    protectd: true\nsecrets:\n  GIT_SSH_PRIVATE_KEY: {sops: secrets/prod.sops.yaml}\n  DB: {sops: secrets/prod.sops.yaml, key: db.pasword}\n  X: {sops: secrets/nope.yaml}\n",
        );
        let err = super::super::load(&tmp.path().join("cloud.yml")).unwrap_err();
        let codes: Vec<&str> = err.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            vec![
                "spec::deployment_name",
                "spec::unknown_environment",
                "spec::unknown_schedule",
                "spec::duplicate_schedule",
                "schema::unknown_field",
                "spec::reserved_secret",
                "spec::sops_key_missing",
                "spec::sops_file_missing",
            ]
        );
        let by_code = |c: &str| err.diagnostics.iter().find(|d| d.code == c).unwrap();
        assert_eq!(
            by_code("spec::unknown_environment").help.as_deref(),
            Some("did you mean `prod`?")
        );
        assert_eq!(
            by_code("spec::unknown_schedule").help.as_deref(),
            Some("did you mean `hourly-sync`?")
        );
        assert_eq!(
            by_code("schema::unknown_field").help.as_deref(),
            Some("did you mean `protected`?")
        );
        assert_eq!(
            by_code("spec::sops_key_missing").help.as_deref(),
            Some("did you mean `db.password`?")
        );
        assert_eq!(by_code("schema::unknown_field").flat().line, 9);
        assert_eq!(by_code("schema::unknown_field").flat().column, 5);
    }

    #[test]
    fn missing_files_are_diagnostics() {
        let tmp = tempfile::tempdir().unwrap();
        let err = super::super::load(&tmp.path().join("cloud.yml")).unwrap_err();
        assert_eq!(err.diagnostics[0].code, "spec::read");
        std::fs::write(tmp.path().join("cloud.yml"), "version: 1\nproject: x\n").unwrap();
        let err = super::super::load(&tmp.path().join("cloud.yml")).unwrap_err();
        assert_eq!(err.diagnostics[0].code, "spec::meltano_missing");
    }

    #[test]
    fn spec_error_renders_every_diagnostic() {
        let tmp = project(
            "version: 1\nproject: demo\nmeltano_project: meltano\ndeployments:\n  prod:\n    environment: prd\n    git_rev: main\n    schedules: [nope]\n",
        );
        let err = super::super::load(&tmp.path().join("cloud.yml")).unwrap_err();
        let text = super::super::diagnostics::render(&err, false);
        assert!(text.contains("cloud.yml is invalid: 2 errors"), "{text}");
        assert!(text.contains("environment `prd` is not defined"), "{text}");
        assert!(text.contains("schedule `nope` is not defined"), "{text}");
        assert!(text.contains("6 │     environment: prd"), "{text}");
    }
}
