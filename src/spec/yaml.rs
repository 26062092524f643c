//! A YAML tree that keeps source spans, built on `saphyr-parser`'s event stream.
//!
//! Why saphyr-parser: `serde_yaml` is archived and unmaintained; saphyr-parser is the
//! maintained pure-Rust YAML 1.2 parser (the successor of yaml-rust2) and reports a span for
//! every event, which is all we need to point diagnostics at the user's text. We build our own
//! small tree from its events (see docs/yaml-parser.md) so that one parse gives:
//! - a [`serde_json::Value`] to check against the JSON Schema and deserialize into the model,
//! - a map from JSON pointer to byte span (of the key and of the value),
//! - diagnostics for syntax errors, duplicate keys and oversized alias expansions.
//!
//! Anchors and aliases are expanded (an alias is a copy of the anchored node, keeping the
//! anchor's spans), `<<` merge keys are applied (explicit keys win over merged ones), and
//! scalars are resolved with the YAML 1.2 core schema (quoted scalars are always strings).

use std::collections::HashMap;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// Deepest nesting of collections accepted; deeper documents are refused, not recursed into.
pub const MAX_DEPTH: usize = 64;
/// Most nodes that alias expansion may create in one document (guards against
/// "billion laughs" documents that expand exponentially).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// One node of the tree with its byte span in the source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar {
        value: String,
        /// Quoted and block scalars are always strings; plain ones are resolved by the core schema.
        plain: bool,
        /// A `!!str`, `!!int`... tag suffix, when present.
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar { .. } => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// A problem found while reading YAML, with the byte spans it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlProblem {
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    /// Primary label first.
    pub labels: Vec<(Range<usize>, String)>,
}

/// Spans of the key and the value at one JSON pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct Spans {
    /// Span of the mapping key naming this value (absent for the root and sequence items).
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// JSON pointer (RFC 6901) to spans.
pub type SpanMap = HashMap<String, Spans>;

/// The result of reading one YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub spans: SpanMap,
}

/// Maps saphyr's character indexes to byte offsets.
struct Offsets {
    /// Byte offset of every character, plus the text length; empty when the text is ASCII.
    starts: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let starts = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        Offsets {
            starts,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.starts.is_empty() {
            char_index.min(self.len)
        } else {
            self.starts.get(char_index).copied().unwrap_or(self.len)
        }
    }

    fn range(&self, span: Span) -> Range<usize> {
        let start = self.byte(span.start.index());
        let end = self.byte(span.end.index()).max(start);
        start..end
    }
}

enum Frame {
    Seq {
        anchor: usize,
        start: usize,
        end: usize,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        start: usize,
        end: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Parses the first document of `text` into a tree. `Ok(None)` for an empty stream.
pub fn parse_tree(text: &str) -> Result<Option<Node>, YamlProblem> {
    let offsets = Offsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(pair) => pair,
            Err(err) => {
                let at = offsets.byte(err.marker().index());
                let end = next_char_boundary(text, at);
                let mut labels = vec![(at..end, err.info().to_string())];
                // Inside a `[...]` or `{...}` the parser reads on across lines, so the error
                // often shows up well after the real mistake: an unclosed bracket.
                let open_flow = stack.iter().rev().find_map(|f| {
                    let start = match f {
                        Frame::Seq { start, .. } | Frame::Map { start, .. } => *start,
                    };
                    match text.as_bytes().get(start) {
                        Some(b'[') => Some((start, "list", ']')),
                        Some(b'{') => Some((start, "mapping", '}')),
                        _ => None,
                    }
                });
                let help = if err.info().contains("tab") {
                    "indent with spaces; YAML does not allow tabs for indentation".to_string()
                } else if let Some((start, what, close)) = open_flow {
                    labels.push((start..start + 1, format!("this {what} is still open here")));
                    format!(
                        "the error is at or before the marked place; check that the {what} opened with `{}` is closed with `{close}`",
                        &text[start..start + 1]
                    )
                } else {
                    "the error is at or before the marked place; fix the YAML syntax there"
                        .to_string()
                };
                return Err(YamlProblem {
                    code: "yaml::syntax",
                    message: format!("invalid YAML: {}", err.info()),
                    help: Some(help),
                    labels,
                });
            }
        };
        let range = offsets.range(span);
        let completed: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlProblem {
                        code: "yaml::multiple_documents",
                        message: "expected a single YAML document, found another one".into(),
                        help: Some("remove the `---` separator and everything after it, or merge the documents".into()),
                        labels: vec![(range, "second document starts here".into())],
                    });
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    alias_nodes += node.size();
                    if alias_nodes > MAX_ALIAS_NODES {
                        return Err(YamlProblem {
                            code: "yaml::alias_expansion",
                            message: format!(
                                "aliases expand to more than {MAX_ALIAS_NODES} nodes"
                            ),
                            help: Some(
                                "this document repeats aliases of aliases; write the values out or use fewer levels of aliases".into(),
                            ),
                            labels: vec![(range, "expansion limit reached here".into())],
                        });
                    }
                    Some((node.clone(), 0))
                }
                None => {
                    return Err(YamlProblem {
                        code: "yaml::unknown_anchor",
                        message: "alias refers to an anchor that is not defined before it".into(),
                        help: Some(
                            "define the anchor (`&name`) before using the alias (`*name`)".into(),
                        ),
                        labels: vec![(range, "unknown anchor".into())],
                    });
                }
            },
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.and_then(|t| {
                    if t.is_yaml_core_schema() {
                        Some(t.suffix.clone())
                    } else {
                        None
                    }
                });
                Some((
                    Node {
                        kind: NodeKind::Scalar {
                            value: value.into_owned(),
                            plain: style == ScalarStyle::Plain,
                            tag,
                        },
                        span: range,
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlProblem {
                        code: "yaml::too_deep",
                        message: format!(
                            "collections are nested more than {MAX_DEPTH} levels deep"
                        ),
                        help: Some("flatten the document".into()),
                        labels: vec![(range, "too deep here".into())],
                    });
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        anchor,
                        start: range.start,
                        end: range.end,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        anchor,
                        start: range.start,
                        end: range.end,
                        entries: Vec::new(),
                        key: None,
                    }
                };
                stack.push(frame);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    anchor,
                    start,
                    end,
                    items,
                }) => {
                    let end = items
                        .last()
                        .map_or(range.end.max(end), |n| n.span.end.max(end));
                    Some((
                        Node {
                            kind: NodeKind::Seq(items),
                            span: start..end,
                        },
                        anchor,
                    ))
                }
                Some(Frame::Map {
                    anchor,
                    start,
                    end,
                    entries,
                    ..
                }) => {
                    let end = entries
                        .last()
                        .map_or(range.end.max(end), |(_, v)| v.span.end.max(end));
                    Some((
                        Node {
                            kind: NodeKind::Map(entries),
                            span: start..end,
                        },
                        anchor,
                    ))
                }
                None => None,
            },
        };
        if let Some((node, anchor)) = completed {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => {
                    if root.is_none() {
                        root = Some(node);
                    }
                }
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                },
            }
        }
    }
    Ok(root)
}

fn next_char_boundary(text: &str, at: usize) -> usize {
    let mut end = (at + 1).min(text.len());
    while end < text.len() && !text.is_char_boundary(end) {
        end += 1;
    }
    end.max(at)
}

/// Parses `text` and converts it to JSON with spans. Problems that do not stop the
/// conversion (duplicate keys, non-scalar keys) are returned alongside the document.
pub fn parse(text: &str) -> Result<(Document, Vec<YamlProblem>), YamlProblem> {
    let root = parse_tree(text)?;
    let mut spans = SpanMap::new();
    let mut problems = Vec::new();
    let value = match &root {
        Some(node) => to_json(node, String::new(), None, &mut spans, &mut problems),
        None => {
            spans.insert(
                String::new(),
                Spans {
                    key: None,
                    value: 0..0,
                },
            );
            Value::Null
        }
    };
    Ok((Document { value, spans }, problems))
}

/// Escapes one JSON-pointer reference token.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn to_json(
    node: &Node,
    pointer: String,
    key_span: Option<Range<usize>>,
    spans: &mut SpanMap,
    problems: &mut Vec<YamlProblem>,
) -> Value {
    let value = match &node.kind {
        NodeKind::Scalar { value, plain, tag } => resolve_scalar(value, *plain, tag.as_deref()),
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, format!("{pointer}/{i}"), None, spans, problems))
                .collect(),
        ),
        NodeKind::Map(entries) => {
            let mut map = Map::new();
            // Explicit keys first: they win over merged ones whatever their order.
            let mut seen: HashMap<String, Range<usize>> = HashMap::new();
            let mut merges: Vec<&Node> = Vec::new();
            for (k, v) in entries {
                let Some(name) = key_text(k) else {
                    problems.push(YamlProblem {
                        code: "yaml::complex_key",
                        message: "mapping keys must be plain text, not a list or a mapping".into(),
                        help: Some("use a string as the key".into()),
                        labels: vec![(k.span.clone(), "complex key".into())],
                    });
                    continue;
                };
                if is_merge_key(k) {
                    merges.push(v);
                    continue;
                }
                if let Some(first) = seen.get(&name) {
                    problems.push(YamlProblem {
                        code: "yaml::duplicate_key",
                        message: format!("duplicate key `{name}`"),
                        help: Some(
                            "a key may appear once per mapping; remove or rename one of them"
                                .into(),
                        ),
                        labels: vec![
                            (k.span.clone(), "defined again here".into()),
                            (first.clone(), "first defined here".into()),
                        ],
                    });
                    continue;
                }
                seen.insert(name.clone(), k.span.clone());
                let child = format!("{pointer}/{}", escape_token(&name));
                let v = to_json(v, child, Some(k.span.clone()), spans, problems);
                map.insert(name, v);
            }
            for source in merges {
                let sources: Vec<&Node> = match &source.kind {
                    NodeKind::Seq(items) => items.iter().collect(),
                    _ => vec![source],
                };
                for src in sources {
                    let NodeKind::Map(merged) = &src.kind else {
                        problems.push(YamlProblem {
                            code: "yaml::merge_not_mapping",
                            message: "a `<<` merge key takes a mapping or a list of mappings"
                                .into(),
                            help: Some("merge an anchored mapping: `<<: *defaults`".into()),
                            labels: vec![(src.span.clone(), "not a mapping".into())],
                        });
                        continue;
                    };
                    // Build the merged mapping on its own so its nested merges apply too.
                    let merged_node = Node {
                        kind: NodeKind::Map(merged.clone()),
                        span: src.span.clone(),
                    };
                    let mut scratch = SpanMap::new();
                    let mut scratch_problems = Vec::new();
                    if let Value::Object(m) = to_json(
                        &merged_node,
                        pointer.clone(),
                        None,
                        &mut scratch,
                        &mut scratch_problems,
                    ) {
                        for (name, v) in m {
                            if map.contains_key(&name) {
                                continue;
                            }
                            let child = format!("{pointer}/{}", escape_token(&name));
                            for (p, s) in &scratch {
                                if p == &child || p.starts_with(&format!("{child}/")) {
                                    spans.entry(p.clone()).or_insert_with(|| s.clone());
                                }
                            }
                            map.insert(name, v);
                        }
                    }
                }
            }
            Value::Object(map)
        }
    };
    spans.insert(
        pointer,
        Spans {
            key: key_span,
            value: node.span.clone(),
        },
    );
    value
}

fn is_merge_key(k: &Node) -> bool {
    matches!(&k.kind, NodeKind::Scalar { value, plain: true, tag: None } if value == "<<")
}

fn key_text(k: &Node) -> Option<String> {
    match &k.kind {
        NodeKind::Scalar { value, plain, tag } => {
            Some(match resolve_scalar(value, *plain, tag.as_deref()) {
                Value::Null if *plain => "null".to_string(),
                Value::String(s) => s,
                // Keys stay as written (`1`, `true`), as a JSON object needs strings.
                _ => value.clone(),
            })
        }
        _ => None,
    }
}

/// YAML 1.2 core schema resolution of a scalar.
pub fn resolve_scalar(value: &str, plain: bool, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::String(value.to_string()),
        Some("null") => return Value::Null,
        Some("bool") | Some("int") | Some("float") => {}
        _ if !plain => return Value::String(value.to_string()),
        _ => {}
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(value) {
        return Value::Number(n);
    }
    if let Some(f) = parse_float(value) {
        if let Some(n) = Number::from_f64(f) {
            return Value::Number(n);
        }
        // .inf and .nan have no JSON form: keep the text.
        return Value::String(value.to_string());
    }
    Value::String(value.to_string())
}

fn parse_int(s: &str) -> Option<Number> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0o") {
        (8, rest)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if neg {
        let v = i64::try_from(magnitude).ok()?;
        Some(Number::from(-v))
    } else {
        Some(Number::from(magnitude))
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // Core schema: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let ok_mantissa = match frac {
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && digits(int),
    };
    let ok_exp = match exp {
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
        None => true,
    };
    if ok_mantissa && ok_exp && (frac.is_some() || exp.is_some()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(text: &str) -> (Document, Vec<YamlProblem>) {
        parse(text).expect("parses")
    }

    #[test]
    fn scalars_resolve_with_the_core_schema() {
        let (d, p) =
            doc("a: 1\nb: true\nc: ~\nd: '1'\ne: 1.5\nf: hello\ng: 0x1f\nh: !!str 2\ni: -3\n");
        assert!(p.is_empty());
        assert_eq!(
            d.value,
            json!({"a": 1, "b": true, "c": null, "d": "1", "e": 1.5, "f": "hello", "g": 31, "h": "2", "i": -3})
        );
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "top:\n  inner: value\nlist:\n  - x\n  - y\n";
        let (d, _) = doc(text);
        let s = &d.spans["/top/inner"];
        assert_eq!(&text[s.key.clone().unwrap()], "inner");
        assert_eq!(&text[s.value.clone()], "value");
        assert_eq!(&text[d.spans["/list/1"].value.clone()], "y");
        assert_eq!(&text[d.spans["/list"].key.clone().unwrap()], "list");
    }

    #[test]
    fn non_ascii_text_gets_byte_spans() {
        let text = "name: \"café ☕\"\nnext: ok\n";
        let (d, _) = doc(text);
        assert_eq!(&text[d.spans["/next"].value.clone()], "ok");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text = "base: &b\n  env: prod\n  rev: main\nx:\n  <<: *b\n  rev: v1\ny: *b\nz:\n  <<: [*b, {extra: 1}]\n";
        let (d, p) = doc(text);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(d.value["x"], json!({"rev": "v1", "env": "prod"}));
        assert_eq!(d.value["y"], json!({"env": "prod", "rev": "main"}));
        assert_eq!(
            d.value["z"],
            json!({"env": "prod", "rev": "main", "extra": 1})
        );
        // Merged values point at where they were written.
        assert_eq!(&text[d.spans["/x/env"].value.clone()], "prod");
    }

    #[test]
    fn duplicate_keys_point_at_both_places() {
        let text = "a: 1\nb: 2\na: 3\n";
        let (d, p) = doc(text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].code, "yaml::duplicate_key");
        assert_eq!(p[0].labels[0].0, 10..11);
        assert_eq!(p[0].labels[1].0, 0..1);
        assert_eq!(d.value["a"], json!(1));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.code, "yaml::syntax");
        assert!(!err.labels.is_empty());
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            text.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.code, "yaml::alias_expansion");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse(&text).unwrap_err().code, "yaml::too_deep");
    }

    #[test]
    fn empty_document_is_null() {
        let (d, _) = doc("# only a comment\n");
        assert_eq!(d.value, Value::Null);
    }

    #[test]
    fn second_document_is_an_error() {
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").unwrap_err().code,
            "yaml::multiple_documents"
        );
    }
}
