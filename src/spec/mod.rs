//! Loading and validating cloud.yml and meltano.yml.
//!
//! One YAML parse ([`yaml`]) gives a JSON value with a span for every JSON pointer. That value
//! is checked against the generated JSON Schema ([`schema`], all errors), checked for meaning
//! ([`check`]: environments, schedules, names, sops references) and deserialized into the
//! typed [`model`]. Every problem becomes a [`diagnostics::SpecDiagnostic`] pointing at the
//! exact place in the user's file.

pub mod check;
pub mod diagnostics;
pub mod meltano;
pub mod model;
pub mod schema;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostics::{FlatDiagnostic, Severity, SpecDiagnostic, SpecError};

use crate::secrets::metadata::SecretEntry;
use diagnostics::SourceFile;

/// A cloud.yml with everything it refers to, validated.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The cloud.yml path as given.
    pub path: PathBuf,
    /// Its folder; sops paths and `meltano_project` are relative to it.
    pub dir: PathBuf,
    pub cloud: model::CloudFile,
    pub meltano: meltano::MeltanoProject,
    /// Every declared secret, resolved to its sops ciphertext entry.
    pub secrets: BTreeMap<String, SecretEntry>,
    /// Warnings found while loading (errors make [`load`] fail instead).
    pub warnings: Vec<SpecDiagnostic>,
    /// The cloud.yml text, for diagnostics that later steps attach to it.
    pub source: Arc<SourceFile>,
    /// Spans of every JSON pointer of cloud.yml.
    pub spans: yaml::SpanMap,
}

impl LoadedSpec {
    /// The span of the value at a JSON pointer (or of its nearest existing parent).
    pub fn span_of(&self, pointer: &str) -> std::ops::Range<usize> {
        check::span_at(&self.spans, pointer)
    }
}

/// Loads and validates a cloud.yml, its meltano.yml and the sops files it references
/// (without decrypting them). On failure the error carries every diagnostic found.
pub fn load(path: &Path) -> Result<LoadedSpec, SpecError> {
    let (spec, diagnostics) = check::check_file(path);
    match spec {
        Some(mut spec) if diagnostics.iter().all(|d| d.severity != Severity::Error) => {
            spec.warnings = diagnostics;
            Ok(spec)
        }
        _ => Err(SpecError {
            path: path.to_path_buf(),
            diagnostics,
        }),
    }
}

/// Checks a cloud.yml and returns its diagnostics as plain data (file, line, column, code,
/// severity, message, help), in file order: for `validate --format json` and CI annotations.
/// The spec is returned too when it could be built.
pub fn validate(path: &Path) -> (Option<LoadedSpec>, Vec<FlatDiagnostic>) {
    let (spec, diagnostics) = check::check_file(path);
    let flat = diagnostics.iter().map(SpecDiagnostic::flat).collect();
    (spec, flat)
}

/// The folder a file is in (`.` for a bare file name is left empty, so joined paths stay
/// relative and short).
pub fn parent_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Parses a YAML file into a document, turning YAML problems into diagnostics. Returns
/// `None` when the text is not YAML at all.
pub(crate) fn yaml_file(
    path: &Path,
    text: String,
    diags: &mut Vec<SpecDiagnostic>,
) -> Option<(Arc<SourceFile>, yaml::Document)> {
    let source = SourceFile::new(path, text);
    let problem = |p: yaml::YamlProblem| {
        let mut d = SpecDiagnostic::error(p.code, &source, p.message);
        d.help = p.help;
        d.labels = p.labels;
        d
    };
    match yaml::parse(&source.text) {
        Ok((doc, problems)) => {
            diags.extend(problems.into_iter().map(problem));
            Some((source, doc))
        }
        Err(p) => {
            diags.push(problem(p));
            None
        }
    }
}
