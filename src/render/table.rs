//! Tables of the list commands, as aligned terminal text (truncated to the terminal's
//! width), Markdown, or JSON.

use std::io::IsTerminal;

use serde::Serialize;

/// `--format` of list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, truncated to the terminal's width.
    #[default]
    Terminal,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    /// A JSON array of the API objects, pretty-printed.
    Json,
}

/// Rows of cells under a header line.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns users copy from (names, ids): never cut, whatever the width.
    keys: Vec<usize>,
    /// Columns left out, in this order, when the others cannot be narrowed enough.
    optional: Vec<usize>,
}
const GAP: &str = "  ";

fn width_of(s: &str) -> usize {
    s.chars().count()
}

fn truncate(s: &str, width: usize) -> String {
    if width_of(s) <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// The width to fit tables into: `COLUMNS` when set, else the terminal's width when stdout
/// is a terminal, else none (pipes and files get whole cells).
pub fn output_width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(cols);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size().map(|(w, _)| w.0 as usize)
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            keys: Vec::new(),
            optional: Vec::new(),
        }
    }

    /// Marks columns (by index) as keys: names and ids a user copies into the next command
    /// are never cut with `…`; the other columns give up their space first.
    pub fn keys(mut self, columns: &[usize]) -> Table {
        self.keys = columns.to_vec();
        self
    }

    /// Columns (by index) that may be left out on a narrow terminal, first one first.
    pub fn optional(mut self, columns: &[usize]) -> Table {
        self.optional = columns.to_vec();
        self
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    fn cell<'a>(&'a self, row: &'a [String], i: usize) -> &'a str {
        row.get(i).map(String::as_str).unwrap_or("")
    }

    /// Column widths that fit `max` (when given): the widest non-key columns give up space
    /// first, down to their header's width (headers are never cut); then the optional
    /// columns are left out, in the order given to [`Table::optional`]. Key columns keep
    /// their width: when they alone are too wide, the table overflows. `None` marks a column
    /// left out.
    fn widths(&self, max: Option<usize>) -> Vec<Option<usize>> {
        let n = self.headers.len();
        let mut widths: Vec<Option<usize>> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| width_of(self.cell(r, i)))
                    .chain(std::iter::once(width_of(&self.headers[i])))
                    .max()
            })
            .collect();
        let Some(max) = max else { return widths };
        let natural = widths.clone();
        let total = |w: &[Option<usize>]| {
            let shown: Vec<usize> = w.iter().flatten().copied().collect();
            shown.iter().sum::<usize>() + GAP.len() * shown.len().saturating_sub(1)
        };
        let mut optional = self.optional.iter();
        while total(&widths) > max {
            // Shrink the widest column that can still shrink.
            let candidate = (0..n)
                .filter(|i| !self.keys.contains(i))
                .filter_map(|i| widths[i].map(|w| (i, w)))
                .filter(|&(i, w)| w > width_of(&self.headers[i]).max(1))
                .max_by_key(|&(_, w)| w);
            match candidate {
                Some((i, _)) => widths[i] = widths[i].map(|w| w - 1),
                None => match optional.next() {
                    // Leave it out and start narrowing again from the full widths.
                    Some(&i) if i < n => {
                        for (w, full) in widths.iter_mut().zip(&natural) {
                            if w.is_some() {
                                *w = *full;
                            }
                        }
                        widths[i] = None;
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        widths
    }

    /// Aligned columns; cells wider than their column end with `…`.
    pub fn render_terminal(&self, max_width: Option<usize>) -> String {
        let widths = self.widths(max_width);
        let shown: Vec<(usize, usize)> = widths
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (i, w)))
            .collect();
        let mut out = String::new();
        let mut line = |cells: Vec<&str>| {
            let mut l = String::new();
            for (k, &(i, width)) in shown.iter().enumerate() {
                let cell = truncate(cells[i], width);
                l.push_str(&cell);
                if k + 1 < shown.len() {
                    l.push_str(&" ".repeat(width - width_of(&cell)));
                    l.push_str(GAP);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(self.headers.iter().map(String::as_str).collect());
        for row in &self.rows {
            line((0..self.headers.len()).map(|i| self.cell(row, i)).collect());
        }
        out
    }

    /// A Markdown table; `|` in cells is escaped.
    pub fn render_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        out.push_str(&format!(
            "| {} |\n",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        out.push_str(&format!(
            "|{}|\n",
            self.headers
                .iter()
                .map(|_| " --- ")
                .collect::<Vec<_>>()
                .join("|")
        ));
        for row in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| esc(self.cell(row, i)))
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }
}

/// Prints a list in the chosen format: the table for people, `items` as JSON for machines.
/// `more` adds a note (on stderr, so JSON stays parseable) that the limit cut the list.
pub fn print_list<T: Serialize>(
    format: Format,
    table: &Table,
    items: &[T],
    more: bool,
    noun: &str,
    limit_hint: &str,
) -> miette::Result<()> {
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(items)
                .map_err(|e| miette::miette!("cannot render JSON: {e}"))?;
            println!("{json}");
        }
        Format::Markdown => print!("{}", table.render_markdown()),
        Format::Terminal => {
            if table.is_empty() {
                println!("No {noun} found.");
            } else {
                print!("{}", table.render_terminal(output_width()));
            }
        }
    }
    if more {
        eprintln!(
            "Showing the first {} {noun}; more exist. {limit_hint}",
            items.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["NAME", "GIT REV", "DEPLOYED"]);
        t.push(vec![
            "production".into(),
            "main".into(),
            "2026-01-01T00:00:00Z".into(),
        ]);
        t.push(vec![
            "a-very-long-deployment-name-indeed".into(),
            "feature/x".into(),
            "never".into(),
        ]);
        t
    }

    #[test]
    fn aligned_without_limit() {
        let out = sample().render_terminal(None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME                                GIT REV    DEPLOYED"
        );
        assert_eq!(
            lines[2],
            "a-very-long-deployment-name-indeed  feature/x  never"
        );
    }

    #[test]
    fn truncated_to_width() {
        let out = sample().render_terminal(Some(40));
        for line in out.lines() {
            assert!(line.chars().count() <= 40, "{line:?}");
        }
        assert!(out.contains('…'));
    }

    #[test]
    fn key_columns_and_headers_are_never_cut() {
        let table = sample().keys(&[0]);
        let out = table.render_terminal(Some(40));
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[2].starts_with("a-very-long-deployment-name-indeed  "),
            "{out}"
        );
        assert!(
            lines[0].contains("GIT REV") && lines[0].contains("DEPLOYED"),
            "{out}"
        );
        // Cells of the other columns are cut to their header's width at most.
        assert!(lines[1].contains("main     "), "{out}");
        assert!(lines[1].ends_with("2026-01…"), "{out}");
    }

    #[test]
    fn optional_columns_are_left_out_when_too_narrow() {
        let table = sample().keys(&[0]).optional(&[2]);
        let out = table.render_terminal(Some(45));
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "NAME                                GIT REV",
                "production                          main",
                "a-very-long-deployment-name-indeed  feature/x",
            ]
        );
        // Wide enough: nothing is left out.
        assert!(table.render_terminal(Some(80)).contains("DEPLOYED"));
    }

    #[test]
    fn markdown_escapes_pipes() {
        let mut t = Table::new(&["A", "B"]);
        t.push(vec!["x|y".into(), "z".into()]);
        assert_eq!(
            t.render_markdown(),
            "| A | B |\n| --- | --- |\n| x\\|y | z |\n"
        );
    }
}
