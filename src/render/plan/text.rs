//! Terraform-style text. Styles are always written; `anstream` strips them when stdout is
//! not a terminal, NO_COLOR is set or `--color never` was given.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::{PlanContext, summary_line};
use crate::plan::{Action, Change, Plan};

const BOLD: Style = Style::new().bold();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default();
const DIM: Style = Style::new().dimmed();

fn action_style(action: Action) -> Style {
    match action {
        Action::Create => GREEN,
        Action::Update => YELLOW,
        Action::Delete => RED,
        Action::NoOp => Style::new(),
    }
}

/// Shows one attribute value the way the user wrote it, JSON-quoted strings included.
pub fn value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            // Fingerprints are long and only their identity matters when reviewing.
            if let Some(hex) = s.strip_prefix("sops-ct-sha256:") {
                if hex.len() > 12 {
                    return format!("\"sops-ct-sha256:{}…\"", &hex[..12]);
                }
            }
            serde_json::to_string(s).unwrap_or_default()
        }
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The header: control plane, project, revision.
pub fn header(ctx: &PlanContext) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", ctx.control_plane);
    let _ = writeln!(
        out,
        "Project: {} (revision {})",
        ctx.project_name, ctx.revision
    );
    out
}

/// The full plan text, header included.
pub fn render(ctx: &PlanContext, plan: &Plan) -> String {
    let mut out = header(ctx);
    out.push('\n');
    out.push_str(&body(plan));
    out
}

/// Everything below the header: legend, changes, notes and the summary line.
pub fn body(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.has_changes() {
        out.push_str(&legend(plan));
        out.push('\n');
        out.push_str("meltano-cloud will perform the following actions:\n\n");
        for c in plan.effective() {
            out.push_str(&change(c));
            out.push('\n');
        }
    }
    out.push_str(&notes(plan));
    let line = summary_line(plan);
    let _ = writeln!(out, "{BOLD}{line}{BOLD:#}");
    out
}

/// `Resource actions are indicated with the following symbols:` with only the symbols used.
pub fn legend(plan: &Plan) -> String {
    let mut out = String::from("Actions are indicated with the following symbols:\n");
    for (action, text) in [
        (Action::Create, "create"),
        (Action::Update, "update in-place"),
        (Action::Delete, "destroy"),
    ] {
        if plan.effective().any(|c| c.action == action) {
            let st = action_style(action);
            let _ = writeln!(out, "  {st}{}{st:#} {text}", action.symbol());
        }
    }
    out
}

/// The notes block (unmanaged objects, unresolved revs, ...), empty when there are none.
pub fn notes(plan: &Plan) -> String {
    if plan.notes.is_empty() {
        return String::new();
    }
    let mut out = String::from("Notes:\n");
    for n in &plan.notes {
        match &n.address {
            Some(a) => {
                let _ = writeln!(out, "  {BOLD}{a}{BOLD:#}: {}", n.message);
            }
            None => {
                let _ = writeln!(out, "  {}", n.message);
            }
        }
    }
    out.push('\n');
    out
}

/// One change block.
pub fn change(c: &Change) -> String {
    let mut out = String::new();
    let st = action_style(c.action);
    let _ = writeln!(
        out,
        "  {BOLD}# {}{BOLD:#} will be {}",
        c.address,
        c.action.will_be()
    );
    if let Some(reason) = &c.reason {
        let _ = writeln!(out, "  {DIM}# ({reason}){DIM:#}");
    }
    let _ = writeln!(
        out,
        "  {st}{}{st:#} {} \"{}\" {{",
        c.action.symbol(),
        c.kind.as_str(),
        display_name(c)
    );

    let empty = serde_json::Map::new();
    let before = c.before.as_ref().unwrap_or(&empty);
    let after = c.after.as_ref().unwrap_or(&empty);
    let mut keys: Vec<&String> = after.keys().collect();
    for k in before.keys() {
        if !after.contains_key(k) {
            keys.push(k);
        }
    }
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut hidden = 0;
    for key in keys {
        let sensitive = c.sensitive.iter().any(|s| s == key);
        let unknown = c.unknown_after.iter().any(|s| s == key);
        let show = |v: Option<&Value>, after_side: bool| -> String {
            if sensitive {
                "(sensitive value)".into()
            } else if after_side && unknown {
                "(known after apply)".into()
            } else {
                v.map(value).unwrap_or_else(|| "null".into())
            }
        };
        let b = before.get(key);
        let a = after.get(key);
        let line = match c.action {
            Action::Create => Some((Action::Create, show(a, true))),
            Action::Delete => Some((Action::Delete, format!("{} -> null", show(b, false)))),
            Action::Update | Action::NoOp => match (b, a) {
                (None, Some(_)) => Some((Action::Create, show(a, true))),
                (Some(_), None) => Some((Action::Delete, format!("{} -> null", show(b, false)))),
                // A secret update always changes its value, which is never compared.
                _ if sensitive && c.action == Action::Update => {
                    Some((Action::Update, "(sensitive value)".into()))
                }
                _ if !sensitive && (unknown || b != a) => Some((
                    Action::Update,
                    format!("{} -> {}", show(b, false), show(a, true)),
                )),
                _ if key == "name" => Some((Action::NoOp, show(a, false))),
                _ => None,
            },
        };
        match line {
            Some((sym_action, text)) => {
                let ss = action_style(sym_action);
                let _ = writeln!(
                    out,
                    "      {ss}{}{ss:#} {key:<width$} = {text}",
                    sym_action.symbol()
                );
            }
            None => hidden += 1,
        }
    }
    if hidden > 0 {
        let plural = if hidden == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "        {DIM}# ({hidden} unchanged attribute{plural} hidden){DIM:#}"
        );
    }
    out.push_str("    }\n");
    out
}

fn display_name(c: &Change) -> String {
    c.address
        .split_once('.')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| c.name.clone())
}
