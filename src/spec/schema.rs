//! The JSON Schema of cloud.yml, generated from [`super::model`] (draft 2020-12).
//! `schema/cloud.schema.json` is this output, committed; `tests/spec.rs` fails when it drifts.

use std::sync::OnceLock;

use serde_json::Value;

use super::model::CloudFile;

/// The schema as a JSON value.
pub fn cloud_schema() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<CloudFile>();
    // Identification first, definitions last: easier to read in the committed file.
    let order = [
        "$schema",
        "$id",
        "title",
        "description",
        "type",
        "required",
        "properties",
        "patternProperties",
        "additionalProperties",
        "examples",
    ];
    match schema.to_value() {
        Value::Object(mut map) => {
            let mut out = serde_json::Map::new();
            for key in order {
                if let Some(v) = map.remove(key) {
                    out.insert(key.to_string(), v);
                }
            }
            out.extend(map);
            Value::Object(out)
        }
        other => other,
    }
}

/// The schema as committed: pretty JSON with a final newline.
pub fn cloud_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&cloud_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The compiled validator, built once per process.
///
/// The schema is published as draft 2020-12, but it only uses keywords that mean the same
/// in draft 7 (`$ref` to `#/$defs/...` carries only annotations beside it), and the
/// `jsonschema` crate's 2020-12 set-up (its meta-schema with `$dynamicRef`) costs about
/// 80 ms of CPU per process against about 10 ms for draft 7, most of `validate`'s run
/// time. So the CLI evaluates with the draft-7 rules; a test checks both drafts report the
/// same errors on every fixture and example.
pub fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| build_validator(jsonschema::Draft::Draft7))
}

/// Compiles the cloud.yml schema with the rules of `draft`.
pub fn build_validator(draft: jsonschema::Draft) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(draft)
        .build(&cloud_schema())
        .expect("the generated schema compiles")
}

/// The sub-schema describing the value at `pointer` of a cloud.yml, following `$ref`,
/// `properties`, `additionalProperties` and `items`.
pub fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut cur = resolve(root, root)?;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = if let Some(p) = cur.get("properties").and_then(|p| p.get(&token)) {
            p
        } else if let Some(a) = cur.get("additionalProperties").filter(|a| a.is_object()) {
            a
        } else {
            cur.get("items").filter(|i| i.is_object())?
        };
        cur = resolve(root, next)?;
    }
    Some(cur)
}

fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => node = root.pointer(r.strip_prefix('#')?)?,
            None => {
                // `Option<T>` fields are `anyOf [T, null]` or `type: [.., null]`.
                if let Some(any) = node.get("anyOf").and_then(Value::as_array) {
                    if let Some(first) = any
                        .iter()
                        .find(|s| s.get("type") != Some(&Value::from("null")))
                    {
                        if first.get("$ref").is_some() {
                            node = first;
                            continue;
                        }
                    }
                }
                return Some(node);
            }
        }
    }
    None
}

/// Names of the properties allowed at `pointer`.
pub fn fields_at(root: &Value, pointer: &str) -> Vec<String> {
    schema_at(root, pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The description of the property at `pointer`, on one line.
pub fn description_at(root: &Value, pointer: &str) -> Option<String> {
    schema_at(root, pointer)
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_2020_12_and_closed() {
        let s = cloud_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(
            fields_at(&s, "/deployments/prod"),
            vec!["environment", "git_rev", "schedules", "protected"]
        );
        assert_eq!(fields_at(&s, "/secrets/X"), vec!["sops", "key"]);
        assert!(
            description_at(&s, "/deployments/prod/git_rev")
                .unwrap()
                .contains("Branch")
        );
    }

    #[test]
    fn every_property_has_title_description_and_examples() {
        let s = cloud_schema();
        for ptr in ["", "/deployments/x", "/secrets/X", "/prune"] {
            let node = schema_at(&s, ptr).unwrap();
            for (name, prop) in node["properties"].as_object().unwrap() {
                for key in ["title", "description", "examples"] {
                    assert!(prop.get(key).is_some(), "{ptr}/{name} lacks {key}");
                }
            }
        }
    }
}
