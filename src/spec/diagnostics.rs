//! Diagnostics for cloud.yml, meltano.yml and the sops files they reference: miette
//! diagnostics with a label on the exact span, and a flat form (file, line, column, code,
//! message, severity) for `validate --format json` and CI annotations.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// A source file diagnostics point into.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as shown to users.
    pub path: PathBuf,
    pub text: String,
    named: NamedSource<String>,
}

impl SourceFile {
    pub fn new(path: &Path, text: String) -> Arc<Self> {
        let name = path.display().to_string();
        Arc::new(SourceFile {
            path: path.to_path_buf(),
            named: NamedSource::new(name, text.clone()).with_language("yaml"),
            text,
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

fn floor_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a user's file.
#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    /// Stable code such as `spec::unknown_schedule`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    /// The file this is about; absent when the file itself could not be read.
    pub file: Option<Arc<SourceFile>>,
    /// The path shown when there is no source file.
    pub path: PathBuf,
    /// Labelled byte spans, primary first.
    pub labels: Vec<(Range<usize>, String)>,
}

impl SpecDiagnostic {
    pub fn error(code: &'static str, file: &Arc<SourceFile>, message: impl Into<String>) -> Self {
        SpecDiagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            path: file.path.clone(),
            file: Some(file.clone()),
            labels: Vec::new(),
        }
    }

    /// A diagnostic about a path that has no readable text.
    pub fn no_source(code: &'static str, path: &Path, message: impl Into<String>) -> Self {
        SpecDiagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            path: path.to_path_buf(),
            file: None,
            labels: Vec::new(),
        }
    }

    pub fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// 1-based line and column of the primary label (1, 1 without one).
    pub fn line_col(&self) -> (usize, usize) {
        match (&self.file, self.labels.first()) {
            (Some(file), Some((span, _))) => file.line_col(span.start),
            _ => (1, 1),
        }
    }

    pub fn flat(&self) -> FlatDiagnostic {
        let (line, column) = self.line_col();
        FlatDiagnostic {
            file: self.path.display().to_string(),
            line,
            column,
            code: self.code.to_string(),
            severity: self.severity,
            message: self.message.clone(),
            help: self.help.clone(),
        }
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.file.as_ref().map(|f| &f.named as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.file.as_ref()?;
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().enumerate().map(
            |(i, (span, text))| {
                let span = (span.start, span.end - span.start);
                if i == 0 {
                    LabeledSpan::new_primary_with_span(Some(text.clone()), span)
                } else {
                    LabeledSpan::new_with_span(Some(text.clone()), span)
                }
            },
        )))
    }
}

/// A diagnostic as plain data: for JSON output and CI annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlatDiagnostic {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub code: String,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// All problems found while loading a cloud.yml; returned by [`crate::spec::load`].
#[derive(Debug, Clone)]
pub struct SpecError {
    /// The cloud.yml path as given.
    pub path: PathBuf,
    /// Every diagnostic, errors and warnings, in file order.
    pub diagnostics: Vec<SpecDiagnostic>,
}

impl SpecError {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn flat(&self) -> Vec<FlatDiagnostic> {
        self.diagnostics.iter().map(SpecDiagnostic::flat).collect()
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors();
        write!(
            f,
            "{} is invalid: {n} error{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for SpecError {}

impl Diagnostic for SpecError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("spec::invalid"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!(
            "fix the problems listed below; `meltano-cloud validate --file {}` checks the file again",
            self.path.display()
        )))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(
            self.diagnostics.iter().map(|d| d as &dyn Diagnostic),
        ))
    }
}

/// Renders one diagnostic as miette's graphical report, with a fixed width so output does
/// not depend on the terminal.
pub fn render(diagnostic: &dyn Diagnostic, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
        .with_break_words(false)
        .with_word_splitter(textwrap::WordSplitter::NoHyphenation);
    let mut out = String::new();
    if handler.render_report(&mut out, diagnostic).is_err() {
        out = format!("error: {diagnostic}\n");
    }
    out
}

/// The closest candidate to `name`, when one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// "did you mean `x`?" or the list of valid names, for help lines.
pub fn suggestion_help(name: &str, candidates: &[&str], what: &str) -> String {
    if let Some(best) = did_you_mean(name, candidates.iter().copied()) {
        return format!("did you mean `{best}`?");
    }
    if candidates.is_empty() {
        return format!("there are no {what}s to choose from");
    }
    let shown: Vec<String> = candidates
        .iter()
        .take(12)
        .map(|c| format!("`{c}`"))
        .collect();
    let more = if candidates.len() > 12 {
        format!(" and {} more", candidates.len() - 12)
    } else {
        String::new()
    };
    format!("valid {what}s: {}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_characters() {
        let f = SourceFile::new(Path::new("x.yml"), "a: 1\nbé: 2\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(5), (2, 1));
        let pos = f.text.find(": 2").unwrap();
        assert_eq!(f.line_col(pos), (2, 3));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("hourly-snyc", ["daily", "hourly-sync"]),
            Some("hourly-sync")
        );
        assert_eq!(did_you_mean("zzz", ["daily", "hourly-sync"]), None);
        assert_eq!(
            suggestion_help("zzz", &["a", "b"], "environment"),
            "valid environments: `a`, `b`"
        );
    }
}
