//! What people read: aligned tables and short cells; and what scripts read: JSON.

use comfy_table::{Table, presets};
use serde_json::Value;

/// A JSON value as a table cell: strings bare, `-` for nothing, objects compact.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A timestamp to the second: `2026-12-07 14:34:10Z`.
pub fn time(v: &Value) -> String {
    match v.as_str() {
        Some(t) if t.len() >= 19 => format!("{} {}Z", &t[..10], &t[11..19]),
        _ => cell(v),
    }
}

/// `k=v k=v` for a tags object.
pub fn tags(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".to_owned(),
    }
}

/// At most `n` characters, with an ellipsis when cut.
pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table with a header row and no borders, as `kubectl get` prints them.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        return;
    }
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        t.add_row(row);
    }
    // The preset pads each column on both sides; the first column starts at the margin.
    for line in t.to_string().lines() {
        println!("{}", line.strip_prefix(' ').unwrap_or(line).trim_end());
    }
}

/// `key: value` lines, the keys aligned.
pub fn fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:width$}  {v}", width = width + 1, k = format!("{k}:"));
    }
}

pub fn json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_are_short_and_plain() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(0.5)), "0.5");
        assert_eq!(
            time(&json!("2026-12-07T14:34:10.123456Z")),
            "2026-12-07 14:34:10Z"
        );
        assert_eq!(tags(&json!({"a": "1", "b": "2"})), "a=1 b=2");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(50 * 1024 * 1024), "50.0 MiB");
    }
}
