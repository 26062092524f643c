//! Markdown for pull-request comments: the summary first, the changes in a collapsed
//! `<details>` diff block, and always under GitHub's 65,536-character comment limit.

use std::fmt::Write as _;

use super::{PlanContext, summary_line, text};
use crate::plan::{Kind, Plan};

/// GitHub refuses comments longer than this many characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;
/// What the rendering aims at, leaving room for text a CI step may wrap around it.
pub const DEFAULT_BUDGET: usize = 60_000;
/// Notes shown in the summary; more are counted.
const MAX_NOTES: usize = 20;

/// Markdown within [`DEFAULT_BUDGET`] characters.
pub fn render(ctx: &PlanContext, plan: &Plan) -> String {
    render_within(ctx, plan, DEFAULT_BUDGET)
}

/// Markdown within `budget` characters: the details are cut at a line, never the summary.
pub fn render_within(ctx: &PlanContext, plan: &Plan, budget: usize) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "### meltano-cloud plan: `{}`\n", ctx.project_name);
    let _ = writeln!(head, "**{}**\n", summary_line(plan));
    let _ = writeln!(
        head,
        "{} · revision {}\n",
        escape(&ctx.control_plane),
        ctx.revision
    );
    if !ctx.targets.is_empty() {
        let _ = writeln!(
            head,
            "> [!WARNING]\n> Limited to `--target` {}: the plan may be incomplete.\n",
            ctx.targets
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if plan.has_changes() {
        head.push_str("| | add | change | destroy |\n|---|---:|---:|---:|\n");
        for kind in [Kind::Deployment, Kind::Schedule, Kind::Secret] {
            let (mut a, mut c, mut d) = (0, 0, 0);
            for ch in plan.effective().filter(|ch| ch.kind == kind) {
                match ch.action {
                    crate::plan::Action::Create => a += 1,
                    crate::plan::Action::Update => c += 1,
                    crate::plan::Action::Delete => d += 1,
                    crate::plan::Action::NoOp => {}
                }
            }
            if a + c + d > 0 {
                let _ = writeln!(head, "| {}s | {a} | {c} | {d} |", kind.as_str());
            }
        }
        head.push('\n');
    }
    if !plan.notes.is_empty() {
        head.push_str("Notes:\n");
        for n in plan.notes.iter().take(MAX_NOTES) {
            match &n.address {
                Some(a) => {
                    let _ = writeln!(head, "- `{a}`: {}", escape(&n.message));
                }
                None => {
                    let _ = writeln!(head, "- {}", escape(&n.message));
                }
            }
        }
        if plan.notes.len() > MAX_NOTES {
            let _ = writeln!(head, "- … and {} more", plan.notes.len() - MAX_NOTES);
        }
        head.push('\n');
    }
    if !plan.has_changes() {
        return head;
    }

    let count = plan.effective().count();
    let open = format!(
        "<details><summary>Show {count} change{}</summary>\n\n```diff\n",
        if count == 1 { "" } else { "s" }
    );
    let close = "```\n\n</details>\n";
    let diff = diff_lines(plan);

    let fixed = head.chars().count() + open.chars().count() + close.chars().count();
    // Room for the truncation notice, whose numbers are not known yet.
    let reserve = 300;
    let room = budget.saturating_sub(fixed + reserve);
    let total_lines = diff.len();
    let mut used = 0;
    let mut kept = 0;
    for line in &diff {
        let n = line.chars().count() + 1;
        if used + n > room {
            break;
        }
        used += n;
        kept += 1;
    }

    let mut out = head;
    out.push_str(&open);
    for line in &diff[..kept] {
        out.push_str(line);
        out.push('\n');
    }
    if kept < total_lines {
        let _ = writeln!(out, "... {} more lines not shown", total_lines - kept);
    }
    out.push_str(close);
    if kept < total_lines {
        let _ = writeln!(
            out,
            "\n> [!NOTE]\n> The details were truncated to fit a comment ({kept} of {total_lines} lines shown). The full plan is in the job log; `meltano-cloud show PLANFILE` renders a saved plan."
        );
    }
    out
}

/// The text rendering without styles, with each line's action symbol moved to column 0
/// so that GitHub's `diff` highlighting colors it.
fn diff_lines(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for c in plan.effective() {
        let block = anstream::adapter::strip_str(&text::change(c)).to_string();
        for line in block.lines() {
            lines.push(diff_line(line));
        }
        lines.push(String::new());
    }
    lines.pop();
    lines
}

fn diff_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    let mut chars = trimmed.chars();
    let symbol = match chars.next() {
        Some('+') => '+',
        Some('-') => '-',
        Some('~') => '!',
        _ => return line.to_string(),
    };
    if !matches!(chars.next(), Some(' ')) {
        return line.to_string();
    }
    // The symbol moves to column 0 (where `diff` highlighting looks for it) and its old
    // place becomes a space, so every line keeps the text renderer's alignment.
    let rest = &trimmed[1..];
    format!("{symbol}{}{rest}", " ".repeat(indent))
}

fn escape(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}
