//! Reading the YAML: every unknown key and wrong type at once, in user terms.
//!
//! serde stops at the first error. To report them all, the document is read into a YAML value
//! first; each time typed deserialisation fails, the error is recorded (with its path) and the
//! offending key removed, and deserialisation is tried again, so the next mistake surfaces —
//! the rest of the file is still checked, defaults stand in for the removed keys, and the
//! semantic checks run on the result. A key that cannot be removed (a required one missing)
//! ends the loop.
//!
//! A Kubernetes ConfigMap manifest is read too: its `data` entry `config.yaml` (or its only
//! entry) is the config, so `gpupool check-config deploy/kubernetes/configmap.yaml` works.

use super::Issue;
use serde_path_to_error::{Path, Segment};
use serde_yaml_ng::Value;

/// At most this many shape errors are collected (each one removes a key).
const MAX_SHAPE_ERRORS: usize = 64;

/// The config document inside `text` (the text itself, or a ConfigMap's config entry).
pub(super) fn document(text: &str) -> Result<Value, (Option<usize>, String)> {
    let v: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| (e.location().map(|l| l.line()), e.to_string()))?;
    let is_configmap = v.get("kind").and_then(Value::as_str) == Some("ConfigMap");
    if !is_configmap {
        return Ok(v);
    }
    let Some(data) = v.get("data").and_then(Value::as_mapping) else {
        return Err((
            None,
            "a ConfigMap without `data`: put the config under data: { config.yaml: | … }".into(),
        ));
    };
    let entry = data
        .get("config.yaml")
        .or_else(|| (data.len() == 1).then(|| data.values().next()).flatten());
    let Some(inner) = entry.and_then(Value::as_str) else {
        return Err((
            None,
            "a ConfigMap whose `data` has no `config.yaml` entry (and more than one other): name \
             the entry config.yaml"
                .into(),
        ));
    };
    serde_yaml_ng::from_str(inner).map_err(|e| {
        (
            e.location().map(|l| l.line()),
            format!("in the ConfigMap's config entry: {e}"),
        )
    })
}

/// Deserialise `T` from `doc`, collecting every shape error; `None` when a required key is
/// missing or an error could not be removed.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    mut doc: Value,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    for _ in 0..MAX_SHAPE_ERRORS {
        match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(t) => return Some(t),
            Err(e) => {
                let path = e.path().clone();
                let raw = e.into_inner().to_string();
                let (shown, message) = humanize(&path, &raw);
                issues.push(Issue {
                    path: shown,
                    message,
                });
                if !remove(&mut doc, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// Remove the value at `path` (the key an unknown-field or type error points at).
fn remove(doc: &mut Value, path: &Path) -> bool {
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = doc;
    for s in parents {
        let next = match s {
            Segment::Map { key } => cur.get_mut(key.as_str()),
            Segment::Seq { index } => cur.get_mut(*index),
            Segment::Enum { .. } | Segment::Unknown => return false,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match last {
        Segment::Map { key } => cur
            .as_mapping_mut()
            .is_some_and(|m| m.remove(key.as_str()).is_some()),
        Segment::Seq { index } => match cur.as_sequence_mut() {
            Some(s) if *index < s.len() => {
                s.remove(*index);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// serde's message → the path to show and a sentence in the config's terms.
fn humanize(path: &Path, raw: &str) -> (String, String) {
    let mut shown = path.to_string();
    if shown == "." {
        shown = "config".into();
    }
    // Messages from serde_yaml_ng end with " at line N column M"; the path says where.
    let raw = raw.split(" at line ").next().unwrap_or(raw);
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let options = backticked(expected);
        return (shown, unknown("key", field, &options));
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let (v, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let options = backticked(expected);
        return (shown, unknown("value", v, &options));
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let at = if shown == "config" {
            field.to_owned()
        } else {
            format!("{shown}.{field}")
        };
        return (at, "is required but missing".into());
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = raw.strip_prefix(prefix)
            && let Some((got, expected)) = rest.split_once(", expected ")
        {
            return (
                shown,
                format!(
                    "must be {}, got {}",
                    in_user_terms(expected),
                    got.replace('`', "")
                ),
            );
        }
    }
    (shown, raw.to_owned())
}

fn unknown(what: &str, name: &str, options: &[String]) -> String {
    let best = options
        .iter()
        .map(|o| (strsim::damerau_levenshtein(name, o), o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, o)) => format!("unknown {what} `{name}`; did you mean `{o}`?"),
        None if options.is_empty() => format!("unknown {what} `{name}`: nothing is allowed here"),
        None => format!("unknown {what} `{name}`; allowed: {}", options.join(", ")),
    }
}

/// The names in serde's "expected one of `a`, `b`" text.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// serde's type names as a config user says them.
fn in_user_terms(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "text".into(),
        "a sequence" => "a list (- item)".into(),
        "a map" => "a mapping (key: value)".into(),
        _ if e.starts_with("struct ") => "a mapping (key: value)".into(),
        _ if e.starts_with("enum ") => format!("one of the allowed names ({})", &e[5..]),
        _ => e.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_in_user_terms() {
        let text = r#"
tick_interval_s: ten
pools:
  - name: a
    requirments: {}
    limits: { max_nodes: 4, min_node: 1 }
    capacity: { fallback: [spot, on-demnd] }
"#;
        let mut issues = Vec::new();
        let cfg: Option<RawConfig> = typed(document(text).unwrap(), &mut issues);
        assert!(
            cfg.is_some(),
            "defaults stand in for removed keys: {issues:?}"
        );
        let lines: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        for want in [
            "tick_interval_s: must be a whole number (0 or more), got string \"ten\"",
            "pools[0].requirments: unknown key `requirments`; did you mean `requirements`?",
            "pools[0].limits.min_node: unknown key `min_node`; did you mean `min_nodes`?",
            "pools[0].capacity.fallback[1]: unknown value `on-demnd`; did you mean `on-demand`?",
        ] {
            assert!(
                lines.iter().any(|l| l == want),
                "missing {want:?} in {lines:#?}"
            );
        }
    }

    #[test]
    fn a_configmap_manifest_is_read_through_its_config_entry() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: gpupool }\ndata:\n  config.yaml: |\n    pools:\n      - name: a\n        requirements: {}\n";
        let doc = document(cm).unwrap();
        let mut issues = Vec::new();
        let cfg: RawConfig = typed(doc, &mut issues).unwrap();
        assert_eq!(cfg.pools[0].name.as_str(), "a");
        assert!(issues.is_empty());
    }
}
