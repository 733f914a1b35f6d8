//! Config comparison: JSON objects walked to their leaves, each leaf named by its JSON Pointer
//! (RFC 6901). Arrays and scalars are leaves compared whole; an empty object is a leaf too.

use serde_json::{Map, Value};

/// Escapes one reference token: `~` → `~0`, `/` → `~1`.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A differing path and each config's value there.
pub type PathValues<'a> = (String, Vec<Option<&'a Value>>);

/// The paths whose values are not the same in every config, with each config's value
/// (`None` where the path is missing or holds a non-empty object), depth first with members
/// in the byte order of their escaped names; at most `limit` of them, and whether more exist.
/// Paths are built only for what is returned: a deep, wide config costs its size to walk.
pub fn differing_paths<'a>(
    configs: &[&'a Map<String, Value>],
    limit: usize,
) -> (Vec<PathValues<'a>>, bool) {
    let mut out = Vec::new();
    let roots: Vec<Option<&Map<String, Value>>> = configs.iter().map(|c| Some(*c)).collect();
    let truncated = members(&mut String::new(), &roots, &mut out, limit);
    (out, truncated)
}

/// Visits the members of the objects at one path; true when the limit cut the walk short.
fn members<'a>(
    path: &mut String,
    objects: &[Option<&'a Map<String, Value>>],
    out: &mut Vec<PathValues<'a>>,
    limit: usize,
) -> bool {
    let mut keys: Vec<(String, &String)> = objects
        .iter()
        .flatten()
        .flat_map(|m| m.keys())
        .map(|k| (escape(k), k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for (escaped, key) in keys {
        let nodes: Vec<Option<&Value>> =
            objects.iter().map(|m| m.and_then(|m| m.get(key))).collect();
        let len = path.len();
        path.push('/');
        path.push_str(&escaped);
        let cut = node(path, &nodes, out, limit);
        path.truncate(len);
        if cut {
            return true;
        }
    }
    false
}

/// One path: reported if its leaves differ, then walked into where it holds objects.
fn node<'a>(
    path: &mut String,
    nodes: &[Option<&'a Value>],
    out: &mut Vec<PathValues<'a>>,
    limit: usize,
) -> bool {
    let leaves: Vec<Option<&Value>> = nodes
        .iter()
        .map(|n| match n {
            Some(Value::Object(m)) if !m.is_empty() => None,
            other => *other,
        })
        .collect();
    let differ = leaves.iter().any(Option::is_some) && !leaves.windows(2).all(|w| w[0] == w[1]);
    if differ {
        if out.len() == limit {
            return true;
        }
        out.push((path.clone(), leaves));
    }
    let objects: Vec<Option<&Map<String, Value>>> = nodes
        .iter()
        .map(|n| match n {
            Some(Value::Object(m)) if !m.is_empty() => Some(m),
            _ => None,
        })
        .collect();
    objects.iter().any(Option::is_some) && members(path, &objects, out, limit)
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
        let (d, truncated) = differing_paths(&[&a, &b], 100);
        assert!(!truncated);
        let paths: Vec<&str> = d.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/layers", "/optimizer/lr", "/x~1y/~0t"]);
        assert_eq!(d[1].1, [Some(&json!(0.1)), Some(&json!(0.01))]);
    }

    #[test]
    fn missing_and_type_changes() {
        let a = obj(json!({"a": {"b": 1}, "c": {}}));
        let b = obj(json!({"a": 5}));
        let (d, _) = differing_paths(&[&a, &b], 100);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0], ("/a".to_owned(), vec![None, Some(&json!(5))]));
        assert_eq!(d[1], ("/a/b".to_owned(), vec![Some(&json!(1)), None]));
        assert_eq!(d[2], ("/c".to_owned(), vec![Some(&json!({})), None]));
        assert!(differing_paths(&[&a, &a.clone()], 100).0.is_empty());
    }

    #[test]
    fn at_most_the_limit_and_paths_only_for_those() {
        let wide = |v: i64| {
            let inner: Map<String, Value> =
                (0..50).map(|i| (format!("k{i:02}"), json!(v))).collect();
            obj(json!({ "x".repeat(200): { "y".repeat(200): inner } }))
        };
        let (a, b) = (wide(1), wide(2));
        let (d, truncated) = differing_paths(&[&a, &b], 10);
        assert!(truncated);
        assert_eq!(d.len(), 10);
        assert!(d[0].0.ends_with("/k00") && d[9].0.ends_with("/k09"));
        let (all, truncated) = differing_paths(&[&a, &b], 50);
        assert_eq!((all.len(), truncated), (50, false));
    }

    #[test]
    fn three_versions_where_one_differs() {
        let a = obj(json!({"lr": 0.1, "opt": {"name": "adam"}}));
        let c = obj(json!({"lr": 0.1, "opt": {"name": "sgd"}}));
        let b = a.clone();
        let (d, _) = differing_paths(&[&a, &b, &c], 10);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "/opt/name");
        assert_eq!(d[0].1[2], Some(&json!("sgd")));
    }
}
