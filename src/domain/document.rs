//! Limits of a version's `config` and `source`: JSON objects of any shape, bounded so that
//! what a registry does with them (store, list, compare, filter) costs memory in proportion
//! to what is sensible to keep there, not to what a client can send.

use crate::error::Error;
use serde_json::{Map, Value};

/// Largest document, as compact JSON.
pub const MAX_BYTES: usize = 1 << 20;
/// Deepest nesting of objects and arrays inside the document (its members are at depth 1).
pub const MAX_DEPTH: usize = 32;
/// Longest object member name, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Checks a `config` or `source` against the limits; the error names the member at fault.
pub fn check(field: &str, doc: &Map<String, Value>) -> Result<(), Error> {
    walk_object(field, doc, 0)?;
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, doc).map_err(Error::internal)?;
    if counter.0 > MAX_BYTES {
        return Err(Error::validation(
            field,
            format!(
                "{field} is {} bytes as JSON; at most {MAX_BYTES} are kept (put large things in artifacts)",
                counter.0
            ),
        ));
    }
    Ok(())
}

fn walk_object(path: &str, map: &Map<String, Value>, depth: usize) -> Result<(), Error> {
    for (k, v) in map {
        if k.len() > MAX_KEY_BYTES {
            return Err(Error::validation(
                path,
                format!(
                    "a member name is {} bytes long; at most {MAX_KEY_BYTES}",
                    k.len()
                ),
            ));
        }
        walk(&format!("{path}.{k}"), v, depth)?;
    }
    Ok(())
}

fn walk(path: &str, v: &Value, depth: usize) -> Result<(), Error> {
    let nested = match v {
        Value::Object(_) | Value::Array(_) => depth + 1,
        _ => return Ok(()),
    };
    if nested > MAX_DEPTH {
        return Err(Error::validation(
            path,
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    match v {
        Value::Object(m) => walk_object(path, m, nested),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| walk(&format!("{path}[{i}]"), item, nested)),
        _ => Ok(()),
    }
}

/// Counts bytes written, keeping none.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ordinary_configs_pass() {
        let c =
            obj(json!({"optimizer": {"lr": 0.1, "betas": [0.9, 0.999]}, "layers": [[1, 2], [3]]}));
        assert!(check("config", &c).is_ok());
    }

    #[test]
    fn size_depth_and_key_length_are_bounded() {
        let big = obj(json!({"blob": "x".repeat(MAX_BYTES)}));
        let e = check("config", &big).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("config"));

        let nest = |n: usize, array: bool| {
            let mut v = json!(1);
            for _ in 0..n {
                v = if array { json!([v]) } else { json!({ "d": v }) };
            }
            v
        };
        // The document itself plus MAX_DEPTH levels inside it.
        assert!(check("config", nest(MAX_DEPTH + 1, false).as_object().unwrap()).is_ok());
        let e = check("config", nest(MAX_DEPTH + 2, false).as_object().unwrap()).unwrap_err();
        assert!(e.field.unwrap().starts_with("config.d.d"));
        assert!(check("config", &obj(json!({ "a": nest(MAX_DEPTH, true) }))).is_ok());
        assert!(check("config", &obj(json!({ "a": nest(MAX_DEPTH + 1, true) }))).is_err());

        let long_key = obj(json!({"a": {"k".repeat(MAX_KEY_BYTES + 1): 1}}));
        let e = check("source", &long_key).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("source.a"));
        assert!(check("source", &obj(json!({"k".repeat(MAX_KEY_BYTES): 1}))).is_ok());
    }
}
