//! Config comparison: JSON objects walked to their leaves, each leaf named by its JSON Pointer
//! (RFC 6901). Arrays and scalars are leaves compared whole; an empty object is a leaf too.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn leaves<'a>(prefix: &str, map: &'a Map<String, Value>, out: &mut BTreeMap<String, &'a Value>) {
    for (k, v) in map {
        let path = format!("{prefix}/{}", escape(k));
        match v {
            Value::Object(inner) if !inner.is_empty() => leaves(&path, inner, out),
            _ => {
                out.insert(path, v);
            }
        }
    }
}

/// The paths whose values are not the same in every config, with each config's value
/// (`None` where the path is missing), in path order.
pub fn differing_paths<'a>(
    configs: &[&'a Map<String, Value>],
) -> Vec<(String, Vec<Option<&'a Value>>)> {
    let per: Vec<BTreeMap<String, &Value>> = configs
        .iter()
        .map(|c| {
            let mut m = BTreeMap::new();
            leaves("", c, &mut m);
            m
        })
        .collect();
    let mut all: Vec<&String> = per.iter().flat_map(|m| m.keys()).collect();
    all.sort();
    all.dedup();
    all.into_iter()
        .filter_map(|path| {
            let values: Vec<Option<&Value>> = per.iter().map(|m| m.get(path).copied()).collect();
            let same = values.windows(2).all(|w| w[0] == w[1]);
            (!same).then(|| (path.clone(), values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reports_only_differing_leaves() {
        let a = obj(
            json!({"optimizer": {"lr": 0.1, "name": "adam"}, "layers": [1, 2], "seed": 1, "x/y": {"~t": 1}}),
        );
        let b = obj(
            json!({"optimizer": {"lr": 0.01, "name": "adam"}, "layers": [1, 2, 3], "seed": 1, "x/y": {"~t": 2}}),
        );
        let d = differing_paths(&[&a, &b]);
        let paths: Vec<&str> = d.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/layers", "/optimizer/lr", "/x~1y/~0t"]);
        assert_eq!(d[1].1, [Some(&json!(0.1)), Some(&json!(0.01))]);
    }

    #[test]
    fn missing_and_type_changes() {
        let a = obj(json!({"a": {"b": 1}, "c": {}}));
        let b = obj(json!({"a": 5}));
        let d = differing_paths(&[&a, &b]);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0], ("/a".to_owned(), vec![None, Some(&json!(5))]));
        assert_eq!(d[1], ("/a/b".to_owned(), vec![Some(&json!(1)), None]));
        assert_eq!(d[2], ("/c".to_owned(), vec![Some(&json!({})), None]));
        assert!(differing_paths(&[&a, &a.clone()]).is_empty());
    }
}
