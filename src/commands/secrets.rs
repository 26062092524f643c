//! `meltano-cloud secrets check|list`: the secrets cloud.yml references.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use clap::ValueEnum;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::cli::GlobalArgs;
use crate::render::github;
use crate::secrets::decrypt::{self, SecretRequest, SopsArgs, SopsError};
use crate::secrets::metadata::SecretEntry;
use crate::spec::LoadedSpec;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decrypt every secret cloud.yml references and check that each is non-empty.
    ///
    /// Runs the sops binary once per sops file, with the keys of the usual sops environment
    /// (SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, cloud KMS credentials ...). No value is printed or
    /// written anywhere. Exits 0 when every secret decrypts to a non-empty value, 1 otherwise.
    Check(CheckArgs),
    /// List the secrets cloud.yml references, with their sops file, key and ciphertext
    /// fingerprint. Needs no decryption key.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Check only these secrets (by name); default: all of them.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub sops: SopsArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

/// Version of `secrets list --format json`.
pub const LIST_JSON_FORMAT_VERSION: u32 = 1;

pub async fn run(global: &GlobalArgs, cmd: Command) -> miette::Result<ExitCode> {
    match cmd {
        Command::Check(args) => check(global, args).await,
        Command::List(args) => list(global, args),
    }
}

fn load(global: &GlobalArgs) -> miette::Result<LoadedSpec> {
    crate::spec::load(&global.file).map_err(miette::Report::new)
}

const OK: Style = AnsiColor::Green.on_default().bold();
const FAIL: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();

async fn check(global: &GlobalArgs, args: CheckArgs) -> miette::Result<ExitCode> {
    let spec = load(global)?;
    let entries = select(&spec, &args.names)?;
    if entries.is_empty() {
        if !global.quiet {
            println!("{} references no secrets.", spec.path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sops = args.sops.resolve();
    let files: BTreeSet<&Path> = entries.iter().map(|e| e.file.as_path()).collect();
    if !global.quiet {
        anstream::println!(
            "Checking {} in {}",
            plural(entries.len(), "secret"),
            plural(files.len(), "sops file"),
        );
        if global.verbose > 0 {
            anstream::println!("{DIM}sops binary: {}{DIM:#}", sops.program.display());
        }
    }

    let requests: Vec<SecretRequest<'_>> =
        entries.iter().map(|e| SecretRequest::from(*e)).collect();
    let outcomes = decrypt::check_requests(&spec.dir, &requests, &sops).await;

    let name_width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let file_width = entries
        .iter()
        .map(|e| e.file.display().to_string().len())
        .max()
        .unwrap_or(0);
    let key_width = entries.iter().map(|e| e.key_path.len()).max().unwrap_or(0);
    let mut failures: Vec<ReferencedError> = Vec::new();
    let mut reported_files: BTreeSet<&Path> = BTreeSet::new();
    let mut summary_rows = Vec::new();
    for (entry, outcome) in entries.iter().zip(&outcomes) {
        let (mark, style, note) = match &outcome.result {
            Ok(_) => ("ok", OK, String::new()),
            Err(err) => ("error", FAIL, format!("  {}", short_reason(err))),
        };
        if !global.quiet || outcome.result.is_err() {
            // Pad the key only when a note follows, so no line ends in spaces.
            let key = if note.is_empty() {
                entry.key_path.clone()
            } else {
                format!("{:<key_width$}", entry.key_path)
            };
            anstream::println!(
                "  {style}{mark:<5}{style:#} {:<name_width$}  {:<file_width$}  {DIM}{key}{DIM:#}{note}",
                entry.name,
                entry.file.display().to_string(),
            );
        }
        summary_rows.push(summary_row(entry, &outcome.result));
        if let Err(err) = &outcome.result {
            // A whole-file failure is reported once, at the first reference to that file.
            if err.is_file_level() && !reported_files.insert(entry.file.as_path()) {
                continue;
            }
            // The same failure for every file (sops not installed) is reported once.
            if failures.iter().any(|f| &f.inner == err) {
                continue;
            }
            failures.push(ReferencedError::new(&spec, entry, err.clone()));
        }
    }

    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if github::is_github_actions() {
        for failure in &failures {
            github::print_annotations(&github::annotations_for(failure));
        }
        github::step_summary(&step_summary(&summary_rows, entries.len(), failed));
    }

    if failed == 0 {
        if !global.quiet {
            if entries.len() == 1 {
                anstream::println!("{OK}The secret decrypts to a non-empty value.{OK:#}");
            } else {
                anstream::println!(
                    "{OK}All {} secrets decrypt to non-empty values.{OK:#}",
                    entries.len()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let color = anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
    let mut err = std::io::stderr().lock();
    for failure in &failures {
        let _ = writeln!(err);
        let _ = write!(err, "{}", crate::spec::diagnostics::render(failure, color));
    }
    let _ = writeln!(
        err,
        "\nerror: {failed} of {} failed the check",
        plural(entries.len(), "secret")
    );
    Ok(ExitCode::from(1))
}

/// The entries to work on: all, or the named ones (unknown names are an error).
fn select<'s>(spec: &'s LoadedSpec, names: &[String]) -> miette::Result<Vec<&'s SecretEntry>> {
    if names.is_empty() {
        return Ok(spec.secrets.values().collect());
    }
    let mut out = Vec::new();
    for name in names {
        match spec.secrets.get(name) {
            Some(entry) => out.push(entry),
            None => {
                let known: Vec<&str> = spec.secrets.keys().map(String::as_str).collect();
                return Err(miette::miette!(
                    code = "secrets::unknown_secret",
                    help = crate::spec::diagnostics::suggestion_help(name, &known, "secret name"),
                    "{} declares no secret `{name}`",
                    spec.path.display()
                ));
            }
        }
    }
    Ok(out)
}

fn short_reason(err: &SopsError) -> String {
    match err {
        SopsError::NoKey { .. } => "no key could decrypt the file".into(),
        SopsError::Missing { .. } => "file missing".into(),
        SopsError::MacMismatch { .. } => "MAC mismatch: file tampered with".into(),
        SopsError::Damaged { .. } => "damaged ciphertext".into(),
        SopsError::NotEncrypted { .. } => "file not encrypted".into(),
        SopsError::NotInstalled { .. } => "sops not installed".into(),
        SopsError::KeyNotFound { .. } => "key not found".into(),
        SopsError::Empty { .. } => "empty value".into(),
        SopsError::NotScalar { kind, .. } => format!("{kind}, not a value"),
        SopsError::TimedOut { .. } => "sops timed out".into(),
        other => other.to_string(),
    }
}

fn summary_row(entry: &SecretEntry, result: &Result<decrypt::SecretValue, SopsError>) -> String {
    let result = match result {
        Ok(_) => "✅ decrypts, non-empty".to_string(),
        Err(err) => format!("❌ {}", short_reason(err)),
    };
    format!(
        "| `{}` | `{}` | `{}` | {} |",
        md_cell(&entry.name),
        md_cell(&entry.file.display().to_string()),
        md_cell(&entry.key_path),
        md_cell(&result)
    )
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn step_summary(rows: &[String], total: usize, failed: usize) -> String {
    let mut out = String::from("### meltano-cloud secrets check\n\n");
    if failed == 0 {
        out.push_str(&format!(
            "{} decrypt to non-empty values.\n\n",
            plural(total, "secret")
        ));
    } else {
        out.push_str(&format!(
            "**{failed} of {} failed the check.**\n\n",
            plural(total, "secret")
        ));
    }
    out.push_str("| Secret | File | Key | Result |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(row);
        out.push('\n');
    }
    out
}

fn list(global: &GlobalArgs, args: ListArgs) -> miette::Result<ExitCode> {
    let spec = load(global)?;
    match args.format {
        ListFormat::Json => {
            let secrets: Vec<serde_json::Value> = spec
                .secrets
                .values()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name,
                        "file": e.file.display().to_string(),
                        "key": e.key_path,
                        "fingerprint": e.fingerprint,
                        "recipients": e.recipients,
                    })
                })
                .collect();
            let report = serde_json::json!({
                "format_version": LIST_JSON_FORMAT_VERSION,
                "file": spec.path.display().to_string(),
                "secrets": secrets,
            });
            let text = serde_json::to_string_pretty(&report).map_err(|e| miette::miette!("{e}"))?;
            println!("{text}");
        }
        ListFormat::Text => {
            if spec.secrets.is_empty() {
                println!("{} references no secrets.", spec.path.display());
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<[String; 4]> = spec
                .secrets
                .values()
                .map(|e| {
                    [
                        e.name.clone(),
                        e.file.display().to_string(),
                        e.key_path.clone(),
                        short_fingerprint(&e.fingerprint),
                    ]
                })
                .collect();
            let header = ["NAME", "FILE", "KEY", "FINGERPRINT"].map(String::from);
            let mut widths = [0usize; 4];
            for row in std::iter::once(&header).chain(&rows) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |row: &[String; 4]| {
                format!(
                    "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                )
            };
            let bold = Style::new().bold();
            anstream::println!("{bold}{}{bold:#}", line(&header).trim_end());
            for row in &rows {
                println!("{}", line(row).trim_end());
            }
            if global.verbose > 0 {
                let recipients: BTreeSet<&str> = spec
                    .secrets
                    .values()
                    .flat_map(|e| e.recipients.iter().map(String::as_str))
                    .collect();
                println!();
                println!("Encrypted for:");
                for r in recipients {
                    println!("  {r}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sops-ct-sha256:0123456789ab…` is enough to tell fingerprints apart in a table.
fn short_fingerprint(fingerprint: &str) -> String {
    match fingerprint.split_once(':') {
        Some((kind, hex)) if hex.len() > 12 => format!("{kind}:{}", &hex[..12]),
        _ => fingerprint.to_string(),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A decryption failure pointed at the secret's reference in cloud.yml.
#[derive(Debug)]
struct ReferencedError {
    inner: SopsError,
    source: NamedSource<String>,
    /// None for failures that are not about one file (sops not installed).
    span: Option<Range<usize>>,
    label: String,
}

impl ReferencedError {
    fn new(spec: &LoadedSpec, entry: &SecretEntry, inner: SopsError) -> ReferencedError {
        let name = escape_pointer(&entry.name);
        let (pointer, label) = if inner.is_file_level() {
            (
                format!("/secrets/{name}/sops"),
                "this sops file".to_string(),
            )
        } else {
            (format!("/secrets/{name}"), format!("secret {}", entry.name))
        };
        ReferencedError {
            source: NamedSource::new(
                spec.source.path.display().to_string(),
                spec.source.text.clone(),
            )
            .with_language("yaml"),
            span: inner.file().map(|_| spec.span_of(&pointer)),
            label,
            inner,
        }
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl fmt::Display for ReferencedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for ReferencedError {}

impl Diagnostic for ReferencedError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.code()
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.help()
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.span.as_ref().map(|_| &self.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let range = self.span.as_ref()?;
        let span = (range.start, range.end.saturating_sub(range.start));
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), span),
        )))
    }
}
