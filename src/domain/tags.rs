//! Tags: string → string maps on models and versions, their patches and filters.

use super::names::is_key_char;
use crate::error::Error;
use serde::Serialize;
use std::collections::BTreeMap;

const MAX_VALUE_LEN: usize = 1024;
const MAX_TAGS: usize = 256;

/// A validated tag map. Keys `^[A-Za-z0-9_.:/-]{1,128}$`, values ≤ 1024 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

/// A tag merge: `Some(v)` sets, `None` (JSON `null`) deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagPatch(BTreeMap<String, Option<String>>);

/// `?tag=k:v` filters; all must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter(BTreeMap<String, String>);

fn check_key(field: &str, k: &str) -> Result<(), Error> {
    if k.is_empty() || k.len() > 128 || !k.bytes().all(is_key_char) {
        return Err(Error::validation(
            format!("{field}.{k}"),
            format!("invalid tag key {k:?}: use 1-128 of A-Z a-z 0-9 _ . : / -"),
        ));
    }
    Ok(())
}

/// MLflow's tag rule, for tags set through its API: keys of 1-250 letters, digits and
/// `_ . - / :` or spaces (MLflow's own `^[/\w.\- :]*$`), values up to 8,000 characters.
/// Native writes keep the native rule; such tags are stored and shown as they are.
const MLFLOW_KEY_LEN: usize = 250;
const MLFLOW_VALUE_LEN: usize = 8000;

fn check_mlflow(field: &str, k: &str, v: Option<&str>) -> Result<(), Error> {
    let key_ok = (1..=MLFLOW_KEY_LEN).contains(&k.chars().count())
        && k.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | ' '));
    if !key_ok {
        return Err(Error::validation(
            format!("{field}.{k}"),
            format!(
                "invalid tag key {k:?}: use 1-{MLFLOW_KEY_LEN} letters, digits, spaces or _ . - / :"
            ),
        ));
    }
    if let Some(v) = v
        && v.chars().count() > MLFLOW_VALUE_LEN
    {
        return Err(Error::validation(
            format!("{field}.{k}"),
            format!("tag value is longer than {MLFLOW_VALUE_LEN} characters"),
        ));
    }
    Ok(())
}

fn check_value(field: &str, k: &str, v: &str) -> Result<(), Error> {
    if v.len() > MAX_VALUE_LEN {
        return Err(Error::validation(
            format!("{field}.{k}"),
            format!("tag value is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

fn check_count(field: &str, n: usize) -> Result<(), Error> {
    if n > MAX_TAGS {
        return Err(Error::validation(
            field,
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    Ok(())
}

impl Tags {
    pub fn parse(field: &str, raw: BTreeMap<String, String>) -> Result<Self, Error> {
        check_count(field, raw.len())?;
        for (k, v) in &raw {
            check_key(field, k)?;
            check_value(field, k, v)?;
        }
        Ok(Self(raw))
    }

    /// Tags set through the MLflow API, by MLflow's rule (see [`check_mlflow`]).
    pub fn parse_mlflow(field: &str, raw: BTreeMap<String, String>) -> Result<Self, Error> {
        check_count(field, raw.len())?;
        for (k, v) in &raw {
            check_mlflow(field, k, Some(v))?;
        }
        Ok(Self(raw))
    }

    /// Tags as stored: already validated when written.
    pub fn from_stored(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies a merge patch; the result is bounded like any tag map.
    pub fn merge(&self, patch: &TagPatch) -> Result<Tags, Error> {
        let mut out = self.0.clone();
        for (k, v) in &patch.0 {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        check_count("tags", out.len())?;
        Ok(Tags(out))
    }
}

impl TagPatch {
    pub fn parse(field: &str, raw: BTreeMap<String, Option<String>>) -> Result<Self, Error> {
        check_count(field, raw.len())?;
        for (k, v) in &raw {
            check_key(field, k)?;
            if let Some(v) = v {
                check_value(field, k, v)?;
            }
        }
        Ok(Self(raw))
    }

    /// A patch through the MLflow API, by MLflow's rule.
    pub fn parse_mlflow(field: &str, raw: BTreeMap<String, Option<String>>) -> Result<Self, Error> {
        check_count(field, raw.len())?;
        for (k, v) in &raw {
            check_mlflow(field, k, v.as_deref())?;
        }
        Ok(Self(raw))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TagFilter {
    /// Parses repeated `k:v` query values. The key ends at the first `:` that is followed by
    /// the value, so keys may not contain `:` here; use the filter grammar for those.
    pub fn parse(raw: &[String]) -> Result<Self, Error> {
        let mut out = BTreeMap::new();
        for item in raw {
            let Some((k, v)) = item.split_once(':') else {
                return Err(Error::validation(
                    "tag",
                    format!("tag filter {item:?} must look like key:value"),
                ));
            };
            check_key("tag", k)?;
            check_value("tag", k, v)?;
            if let Some(prev) = out.insert(k.to_owned(), v.to_owned())
                && prev != v
            {
                return Err(Error::validation(
                    "tag",
                    format!("tag filter names key {k:?} twice with different values"),
                ));
            }
        }
        Ok(Self(out))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_and_values_are_checked() {
        assert!(Tags::parse("tags", map(&[("team/owner", "ml"), ("a:b.c-d_e", "")])).is_ok());
        let e = Tags::parse("tags", map(&[("bad key", "x")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags.bad key"));
        assert!(Tags::parse("tags", map(&[("", "x")])).is_err());
        assert!(Tags::parse("tags", map(&[("k", &"x".repeat(1025))])).is_err());
        assert!(Tags::parse("tags", map(&[(&"k".repeat(129), "x")])).is_err());
    }

    #[test]
    fn merge_sets_and_deletes() {
        let tags = Tags::parse("tags", map(&[("a", "1"), ("b", "2")])).unwrap();
        let patch = TagPatch::parse(
            "tags",
            [
                ("a".to_string(), None),
                ("c".to_string(), Some("3".to_string())),
                ("b".to_string(), Some("22".to_string())),
            ]
            .into_iter()
            .collect(),
        )
        .unwrap();
        assert_eq!(
            tags.merge(&patch).unwrap().as_map(),
            &map(&[("b", "22"), ("c", "3")])
        );
    }

    #[test]
    fn filters() {
        let f = TagFilter::parse(&["dataset:v2".into(), "team:a:b".into()]).unwrap();
        assert_eq!(f.as_map(), &map(&[("dataset", "v2"), ("team", "a:b")]));
        assert!(TagFilter::parse(&["novalue".into()]).is_err());
        assert!(TagFilter::parse(&["k:1".into(), "k:2".into()]).is_err());
        assert!(TagFilter::parse(&["k:1".into(), "k:1".into()]).is_ok());
    }
}
