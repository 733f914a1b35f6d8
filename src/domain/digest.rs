//! A ready version's digest: `sha256:` of its manifest in canonical JSON, fixed when the
//! version becomes ready (its config and artifacts cannot change after that).
//!
//! The manifest:
//! ```json
//! {"artifacts": [{"path": "model/weights.bin", "sha256": "<hex>", "size": 1234}, …],
//!  "config": "sha256:<hex of the config's canonical JSON>",
//!  "format": "modelreg.manifest/1", "model": "fraud-detector", "version": 7}
//! ```
//! Artifacts are ordered by path. Canonical JSON is RFC 8785 (JCS): object members sorted
//! by their names' UTF-16 code units, no whitespace, strings escaped as JSON requires and no
//! more, numbers in ECMAScript's shortest form (`1e+21`, `0.000001`, `1e-7`), except that
//! integers are written as they are, exactly (JCS would round those beyond 2^53).

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The manifest's format, in the manifest itself.
pub const FORMAT: &str = "modelreg.manifest/1";

/// One artifact as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub size: i64,
}

/// `value` in canonical JSON.
pub fn canonical(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else {
                out.push_str(&number(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
    }
}

/// A JSON string as JCS writes it: `"` and `\` escaped, control characters as `\b \t \n
/// \f \r` or `\u00xx`, everything else as it is.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite double as ECMAScript's `Number.prototype.toString` writes it.
fn number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest digits that read back to `x`: `d[.ddd]e<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let n = exp + 1;
    let mut out = String::new();
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    out
}

fn sha256(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The config's digest: `sha256:` of its canonical JSON.
pub fn config_digest(config: &serde_json::Value) -> String {
    sha256(&canonical(config))
}

/// The manifest as canonical JSON; `files` in any order.
pub fn manifest(model: &str, version: i64, config_digest: &str, files: &[ManifestFile]) -> String {
    let mut files: Vec<&ManifestFile> = files.iter().collect();
    files.sort_by(|a, b| a.path.encode_utf16().cmp(b.path.encode_utf16()));
    let artifacts: Vec<serde_json::Value> = files
        .iter()
        .map(|f| serde_json::json!({"path": f.path, "sha256": f.sha256, "size": f.size}))
        .collect();
    canonical(
        &serde_json::json!({"artifacts": artifacts, "config": config_digest,
        "format": FORMAT, "model": model, "version": version}),
    )
}

/// The version's digest: `sha256:` of its manifest.
pub fn version_digest(
    model: &str,
    version: i64,
    config: &serde_json::Value,
    files: &[ManifestFile],
) -> String {
    sha256(&manifest(model, version, &config_digest(config), files))
}

/// The manifest of a version without artifacts, split around its number: what goes before
/// the number and after it (for a statement that learns the number as it inserts).
pub fn manifest_around_number(model: &str, config: &serde_json::Value) -> (String, String) {
    let whole = manifest(model, 0, &config_digest(config), &[]);
    // The number is the manifest's last member: `…,"version":0}`.
    let cut = whole.len() - "0}".len();
    (whole[..cut].to_owned(), "}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_written_as_ecmascript_does() {
        for (x, want) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (333333333.3333333, "333333333.3333333"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (1e-27, "1e-27"),
            (-0.0, "0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
            (295147905179352830000.0, "295147905179352830000"),
            (-1.5e-9, "-1.5e-9"),
            (123.456, "123.456"),
            (0.1, "0.1"),
        ] {
            assert_eq!(number(x), want, "{x:e}");
        }
    }

    #[test]
    fn canonical_json_sorts_by_utf16_and_escapes_only_what_it_must() {
        let v = json!({"b": [1, 2.5, true, null], "a": {"z": "é\u{1}\n\"", "\u{e000}": 1, "\u{1f600}": 2}, "c": 1e21});
        assert_eq!(
            canonical(&v),
            "{\"a\":{\"z\":\"é\\u0001\\n\\\"\",\"\u{1f600}\":2,\"\u{e000}\":1},\"b\":[1,2.5,true,null],\"c\":1e+21}"
        );
        // Integers stay exact.
        assert_eq!(canonical(&json!(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn the_manifest_orders_files_and_the_split_form_agrees() {
        let files = vec![
            ManifestFile {
                path: "model/b.bin".into(),
                sha256: "bb".into(),
                size: 2,
            },
            ManifestFile {
                path: "README.md".into(),
                sha256: "aa".into(),
                size: 1,
            },
        ];
        let config = json!({"lr": 0.1, "layers": [64, 32]});
        let m = manifest("fraud", 7, &config_digest(&config), &files);
        assert!(
            m.starts_with("{\"artifacts\":[{\"path\":\"README.md\""),
            "{m}"
        );
        assert!(
            m.ends_with(",\"format\":\"modelreg.manifest/1\",\"model\":\"fraud\",\"version\":7}"),
            "{m}"
        );
        assert_eq!(
            config_digest(&config),
            sha256("{\"layers\":[64,32],\"lr\":0.1}")
        );
        let (before, after) = manifest_around_number("fraud", &config);
        assert_eq!(
            format!("{before}12{after}"),
            manifest("fraud", 12, &config_digest(&config), &[])
        );
        assert_eq!(
            version_digest("fraud", 12, &config, &[]),
            sha256(&format!("{before}12{after}"))
        );
    }
}
