//! The machine-readable plan, `format_version` 1.0. Documented in the README (Plan and apply, Output formats).
//! Sensitive attributes are removed from `before`/`after` and only named in
//! `sensitive_attributes`: the document never holds a secret value.

use serde_json::{Map, Value, json};

use super::PlanContext;
use crate::plan::{Change, Plan};

/// Version of the JSON document; the minor part grows with compatible additions.
pub const FORMAT_VERSION: &str = "1.0";

fn strip(attrs: &Option<Map<String, Value>>, sensitive: &[String]) -> Value {
    match attrs {
        None => Value::Null,
        Some(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !sensitive.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    }
}

pub fn change(c: &Change) -> Value {
    json!({
        "address": c.address,
        "type": c.kind.as_str(),
        "name": c.name,
        "actions": [c.action.as_str()],
        "before": strip(&c.before, &c.sensitive),
        "after": strip(&c.after, &c.sensitive),
        "after_unknown": c.unknown_after,
        "sensitive_attributes": c.sensitive,
        "reason": c.reason,
        "depends_on": c.depends_on,
    })
}

pub fn document(ctx: &PlanContext, plan: &Plan) -> Value {
    let s = plan.summary();
    json!({
        "format_version": FORMAT_VERSION,
        "meltano_cloud_version": env!("CARGO_PKG_VERSION"),
        "control_plane": {
            "url": ctx.api_url,
            "org": ctx.org,
            "project": ctx.project_name,
        },
        "org": ctx.org,
        "project": { "id": ctx.project_id, "name": ctx.project_name },
        "revision": ctx.revision,
        "targets": ctx.targets,
        "has_changes": plan.has_changes(),
        "summary": { "add": s.add, "change": s.change, "destroy": s.destroy },
        "changes": plan.changes.iter().map(change).collect::<Vec<_>>(),
        "notes": plan.notes,
    })
}

pub fn render(ctx: &PlanContext, plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(&document(ctx, plan)).unwrap_or_default();
    text.push('\n');
    text
}
