//! Output for GitHub Actions (`GITHUB_ACTIONS=true`): workflow-command annotations for
//! errors, the Markdown plan appended to the job's step summary, step outputs, and
//! `::add-mask::` for decrypted values so the runner hides them in every later log line.
//!
//! Workflow commands are read by the runner from stdout, one per line; their data and
//! properties are escaped as the runner expects (`%`, CR, LF, and in properties `:` `,`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use miette::Diagnostic;

/// GitHub's step summary is capped at 1 MiB per step; stay below it.
const MAX_SUMMARY_BYTES: usize = 1024 * 1024 - 1024;

/// True when running as a GitHub Actions step.
pub fn is_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escapes the data part of a workflow command (after `::`).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command (`file=`, `title=` ...).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Annotation severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// One workflow annotation. Lines and columns are 1-based, as GitHub shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub level: Level,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub title: Option<String>,
    pub message: String,
}

impl Annotation {
    pub fn new(level: Level, message: impl Into<String>) -> Annotation {
        Annotation {
            level,
            file: None,
            line: None,
            col: None,
            end_line: None,
            end_column: None,
            title: None,
            message: message.into(),
        }
    }

    /// The `::error file=...,line=...,col=...,title=...::message` line.
    pub fn to_command(&self) -> String {
        let mut props = Vec::new();
        if let Some(file) = &self.file {
            props.push(format!("file={}", escape_property(file)));
        }
        if let Some(line) = self.line {
            props.push(format!("line={line}"));
        }
        if let Some(col) = self.col {
            props.push(format!("col={col}"));
        }
        if let Some(end_line) = self.end_line {
            props.push(format!("endLine={end_line}"));
        }
        if let Some(end_column) = self.end_column {
            props.push(format!("endColumn={end_column}"));
        }
        if let Some(title) = &self.title {
            props.push(format!("title={}", escape_property(title)));
        }
        let sep = if props.is_empty() { "" } else { " " };
        format!(
            "::{}{sep}{}::{}",
            self.level.command(),
            props.join(","),
            escape_data(&self.message)
        )
    }
}

/// Writes annotations to stdout, where the runner picks them up.
pub fn print_annotations(annotations: &[Annotation]) {
    if annotations.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    for annotation in annotations {
        let _ = writeln!(out, "{}", annotation.to_command());
    }
    let _ = out.flush();
}

/// A path as GitHub wants it in annotations: relative to the repository checkout
/// (`GITHUB_WORKSPACE`) when it lies inside it, with `/` separators.
pub fn workspace_relative(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let absolute = normalize(&absolute);
    if let Some(workspace) = std::env::var_os("GITHUB_WORKSPACE").filter(|w| !w.is_empty()) {
        let workspace = normalize(Path::new(&workspace));
        if let Ok(rel) = absolute.strip_prefix(&workspace) {
            return slash(rel);
        }
        // The checkout may be reached through a symlink (e.g. /tmp on macOS).
        if let (Ok(a), Ok(w)) = (absolute.canonicalize(), workspace.canonicalize()) {
            if let Ok(rel) = a.strip_prefix(&w) {
                return slash(rel);
            }
        }
    }
    slash(path)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn slash(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Annotations for a diagnostic and its related ones: each labelled span becomes a
/// located annotation (file, line, column from the diagnostic's source); a diagnostic
/// without labels becomes one unlocated annotation. The help line is appended.
pub fn annotations_for(diagnostic: &dyn Diagnostic) -> Vec<Annotation> {
    let mut out = Vec::new();
    collect_annotations(diagnostic, None, &mut out);
    out
}

fn collect_annotations<'a>(
    diagnostic: &'a dyn Diagnostic,
    parent_source: Option<&'a dyn miette::SourceCode>,
    out: &mut Vec<Annotation>,
) {
    let level = match diagnostic.severity() {
        Some(miette::Severity::Warning) => Level::Warning,
        Some(miette::Severity::Advice) => Level::Notice,
        _ => Level::Error,
    };
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str("\nhelp: ");
        message.push_str(&help.to_string());
    }
    let title = diagnostic.code().map(|c| c.to_string());
    let source = diagnostic.source_code().or(parent_source);
    let related: Vec<&dyn Diagnostic> = diagnostic
        .related()
        .map(|r| r.collect())
        .unwrap_or_default();

    let mut located = false;
    if let (Some(labels), Some(source)) = (diagnostic.labels(), source) {
        for label in labels {
            let Ok(span) = source.read_span(label.inner(), 0, 0) else {
                continue;
            };
            // The label's text is left out: the annotation already sits on that span.
            let mut annotation = Annotation::new(level, message.clone());
            annotation.title = title.clone();
            annotation.file = span.name().map(|n| workspace_relative(Path::new(n)));
            annotation.line = Some(span.line() + 1);
            annotation.col = Some(span.column() + 1);
            out.push(annotation);
            located = true;
        }
    }
    // A wrapper whose related diagnostics carry the detail needs no annotation of its own.
    if !located && related.is_empty() {
        let mut annotation = Annotation::new(level, message);
        annotation.title = title;
        out.push(annotation);
    }
    for child in related {
        collect_annotations(child, source, out);
    }
}

/// Annotations for validation results (`validate`'s flat diagnostics).
pub fn annotations_from_flat(diagnostics: &[crate::spec::FlatDiagnostic]) -> Vec<Annotation> {
    diagnostics
        .iter()
        .map(|d| {
            let level = match d.severity {
                crate::spec::Severity::Error => Level::Error,
                crate::spec::Severity::Warning => Level::Warning,
            };
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            let mut annotation = Annotation::new(level, message);
            annotation.file = Some(workspace_relative(Path::new(&d.file)));
            annotation.line = Some(d.line);
            annotation.col = Some(d.column);
            annotation.title = Some(d.code.clone());
            annotation
        })
        .collect()
}

/// In GitHub Actions, prints annotations for a failed command's diagnostic.
pub fn annotate_report(report: &miette::Report) {
    if is_github_actions() {
        print_annotations(&annotations_for(report.as_ref()));
    }
}

/// Registers a value with the runner's log masking. Printed immediately and flushed, so
/// the mask is in place before anything else could print the value.
pub fn add_mask(value: &str) {
    let commands = mask_commands(value);
    if commands.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    for command in commands {
        let _ = writeln!(out, "{command}");
    }
    let _ = out.flush();
}

/// The `::add-mask::` lines for a value. Multi-line values are also masked line by line,
/// since the runner matches log lines one at a time.
pub fn mask_commands(value: &str) -> Vec<String> {
    if value.trim().is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!("::add-mask::{}", escape_data(value))];
    if value.contains('\n') || value.contains('\r') {
        for line in value.lines() {
            let line = line.trim_end_matches('\r');
            if !line.trim().is_empty() {
                out.push(format!("::add-mask::{}", escape_data(line)));
            }
        }
    }
    out
}

/// Appends Markdown to the job's step summary (`GITHUB_STEP_SUMMARY`). Returns whether
/// there was a summary file to write to.
pub fn append_step_summary(markdown: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    append_summary_file(Path::new(&path), markdown, MAX_SUMMARY_BYTES)?;
    Ok(true)
}

/// Appends Markdown to a summary file that may hold at most `cap` bytes: text beyond the
/// cap is cut at a line boundary, with a note saying so.
pub fn append_summary_file(path: &Path, markdown: &str, cap: usize) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let existing = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let budget = cap.saturating_sub(existing);
    let mut text = String::with_capacity(markdown.len() + 1);
    if markdown.len() < budget {
        text.push_str(markdown);
    } else {
        let note =
            "\n\n_The rest of this output was cut: GitHub's step summary holds at most 1 MiB._\n";
        let keep = budget.saturating_sub(note.len());
        let mut cut = keep.min(markdown.len());
        while cut > 0 && !markdown.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = markdown[..cut].rfind('\n').map(|i| i + 1).unwrap_or(cut);
        text.push_str(&markdown[..cut]);
        text.push_str(note);
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    file.write_all(text.as_bytes())
}

/// In GitHub Actions, appends to the step summary; outside it, does nothing. Failures to
/// write are reported as a warning, never as a failure of the command.
pub fn step_summary(markdown: &str) {
    if !is_github_actions() {
        return;
    }
    if let Err(err) = append_step_summary(markdown) {
        print_annotations(&[Annotation::new(
            Level::Warning,
            format!("could not write the step summary (GITHUB_STEP_SUMMARY): {err}"),
        )]);
    }
}

/// Sets a step output (`GITHUB_OUTPUT`), using a delimiter that cannot occur in the value.
/// Returns whether there was an output file to write to.
pub fn set_output(name: &str, value: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let mut delimiter = String::from("MELTANO_CLOUD_EOF");
    while value.contains(&delimiter) {
        delimiter.push('_');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(PathBuf::from(path))?;
    writeln!(file, "{name}<<{delimiter}\n{value}\n{delimiter}")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_data_and_properties() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }

    #[test]
    fn formats_located_annotations() {
        let mut a = Annotation::new(
            Level::Error,
            "unknown field `enviroment`\nhelp: did you mean `environment`?",
        );
        a.file = Some("infra/cloud.yml".into());
        a.line = Some(7);
        a.col = Some(5);
        a.title = Some("spec::unknown_field, schema".into());
        assert_eq!(
            a.to_command(),
            "::error file=infra/cloud.yml,line=7,col=5,title=spec%3A%3Aunknown_field%2C schema::unknown field `enviroment`%0Ahelp: did you mean `environment`?"
        );
        assert_eq!(
            Annotation::new(Level::Warning, "w").to_command(),
            "::warning::w"
        );
    }

    #[test]
    fn masks_whole_values_and_each_line() {
        assert_eq!(mask_commands("s3cr3t%"), ["::add-mask::s3cr3t%25"]);
        assert_eq!(
            mask_commands("-----BEGIN KEY-----\r\nabc\n\n-----END KEY-----"),
            [
                "::add-mask::-----BEGIN KEY-----%0D%0Aabc%0A%0A-----END KEY-----",
                "::add-mask::-----BEGIN KEY-----",
                "::add-mask::abc",
                "::add-mask::-----END KEY-----",
            ]
        );
        assert!(mask_commands("  ").is_empty());
    }

    #[test]
    fn summary_is_cut_at_a_line_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        append_summary_file(&path, "# first\n", 1000).unwrap();
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        append_summary_file(&path, &long, 300).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 300, "{}", text.len());
        assert!(text.starts_with("# first\nline 0\n"));
        assert!(text.ends_with("holds at most 1 MiB._\n"), "{text}");
        // Whole lines only.
        let before_note = text.split("\n\n_The rest").next().unwrap();
        assert!(
            before_note
                .lines()
                .all(|l| l == "# first" || l.starts_with("line "))
        );
    }

    #[derive(Debug, thiserror::Error, Diagnostic)]
    #[error("bad value")]
    #[diagnostic(code(test::bad), help("fix it"))]
    struct Located {
        #[source_code]
        src: miette::NamedSource<String>,
        #[label("here")]
        span: miette::SourceSpan,
    }

    #[test]
    fn diagnostics_with_labels_become_located_annotations() {
        let src = "version: 1\nproject: x\ndeployments:\n  prod: 3\n";
        let offset = src.find('3').unwrap();
        let diag = Located {
            src: miette::NamedSource::new("cloud.yml", src.to_string()),
            span: (offset, 1).into(),
        };
        let anns = annotations_for(&diag);
        assert_eq!(anns.len(), 1);
        assert_eq!(anns[0].line, Some(4));
        assert_eq!(anns[0].col, Some(9));
        assert_eq!(anns[0].title.as_deref(), Some("test::bad"));
        assert_eq!(anns[0].message, "bad value\nhelp: fix it");
        assert!(anns[0].file.as_deref().unwrap().ends_with("cloud.yml"));
    }
}
