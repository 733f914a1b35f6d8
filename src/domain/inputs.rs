//! A version's inputs: what it was made from. An ordered list set while the version is
//! pending and immutable once it is ready: datasets (what MLflow's `log_input` and autolog
//! send), other versions (fine-tuned from, distilled from, …) and code. A `version` input
//! names a version that is not pending: its own inputs are final, so lineage has no cycles.

use super::document;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Inputs one version may hold.
pub const MAX_INPUTS: usize = 100;
/// Longest dataset name and digest, in bytes.
const MAX_NAME: usize = 500;
const MAX_DIGEST: usize = 256;
/// Longest uri, source type, source and context.
const MAX_TEXT: usize = 4096;
/// Largest schema and profile, as compact JSON (each).
const MAX_DOC: usize = 256 << 10;

/// One input of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    Dataset(Dataset),
    Version(VersionRef),
    Code(Code),
}

/// Another version this one was made from or with, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRef {
    pub model: String,
    pub version: i64,
    /// `fine_tuned_from`, `distilled_from`, `ensemble_member`, `evaluated_with`,
    /// `copied_from`, or another lower-case word.
    pub relation: String,
}

/// The code a version was built by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A dataset a version used: named, identified by its digest, with where it came from and,
/// optionally, its schema and profile (any JSON, bounded), and what it was used for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `training`, `validation`, `evaluation`, … (MLflow's `mlflow.data.context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// MLflow's dataset source: its type (`local`, `http`, `code`, …) and the source itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Value>,
    /// Other tags the input was logged with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Input {
    /// Checks an input against the limits; the error names the field at fault.
    pub fn check(&self, field: &str) -> Result<(), Error> {
        match self {
            Self::Dataset(d) => d.check(field),
            Self::Version(v) => {
                super::ModelName::parse(&format!("{field}.model"), &v.model)?;
                if v.version < 1 {
                    return Err(Error::validation(
                        format!("{field}.version"),
                        "a version number is 1 or more",
                    ));
                }
                let word = !v.relation.is_empty()
                    && v.relation.len() <= 64
                    && v.relation
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_');
                if !word {
                    return Err(Error::validation(
                        format!("{field}.relation"),
                        "a relation is a lower-case word (fine_tuned_from, distilled_from, \
                         ensemble_member, evaluated_with, copied_from, …), at most 64 letters \
                         and _",
                    ));
                }
                Ok(())
            }
            Self::Code(c) => {
                text(&format!("{field}.uri"), &c.uri, MAX_TEXT, true)?;
                if let Some(commit) = &c.commit {
                    text(&format!("{field}.commit"), commit, MAX_DIGEST, true)?;
                }
                Ok(())
            }
        }
    }

    /// Whether two inputs are the same use of the same thing (logging it again adds nothing).
    pub fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Dataset(a), Self::Dataset(b)) => {
                (&a.name, &a.digest, &a.context) == (&b.name, &b.digest, &b.context)
            }
            (Self::Version(a), Self::Version(b)) => a == b,
            (Self::Code(a), Self::Code(b)) => a == b,
            _ => false,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dataset(_) => "dataset",
            Self::Version(_) => "version",
            Self::Code(_) => "code",
        }
    }

    /// The columns lineage reads look inputs up by: a dataset's name and digest; a version
    /// input's model and number (as text); a code input's uri and commit.
    pub fn keys(&self) -> (Option<String>, Option<String>) {
        match self {
            Self::Dataset(d) => (Some(d.name.clone()), Some(d.digest.clone())),
            Self::Version(v) => (Some(v.model.clone()), Some(v.version.to_string())),
            Self::Code(c) => (Some(c.uri.clone()), c.commit.clone()),
        }
    }
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), Error> {
    if (required && value.trim().is_empty())
        || value.len() > max
        || value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::validation(
            field,
            format!(
                "{field} must be {}at most {max} bytes of text without control characters",
                if required { "1 to " } else { "" }
            ),
        ));
    }
    Ok(())
}

fn doc(field: &str, value: &Value) -> Result<(), Error> {
    let mut wrapped = Map::new();
    wrapped.insert("value".to_owned(), value.clone());
    document::check(field, &wrapped)?;
    if serde_json::to_vec(value).map_err(Error::internal)?.len() > MAX_DOC {
        return Err(Error::validation(
            field,
            format!("{field} is larger than {MAX_DOC} bytes as JSON"),
        ));
    }
    Ok(())
}

impl Dataset {
    fn check(&self, field: &str) -> Result<(), Error> {
        text(&format!("{field}.name"), &self.name, MAX_NAME, true)?;
        text(&format!("{field}.digest"), &self.digest, MAX_DIGEST, true)?;
        for (name, value) in [
            ("uri", &self.uri),
            ("context", &self.context),
            ("source_type", &self.source_type),
            ("source", &self.source),
        ] {
            if let Some(v) = value {
                text(&format!("{field}.{name}"), v, MAX_TEXT, false)?;
            }
        }
        for (name, value) in [("schema", &self.schema), ("profile", &self.profile)] {
            if let Some(v) = value {
                doc(&format!("{field}.{name}"), v)?;
            }
        }
        if self.tags.len() > 20 {
            return Err(Error::validation(
                format!("{field}.tags"),
                "at most 20 tags an input",
            ));
        }
        for (k, v) in &self.tags {
            text(&format!("{field}.tags"), k, 250, true)?;
            text(&format!("{field}.tags.{k}"), v, MAX_TEXT, false)?;
        }
        Ok(())
    }
}

/// Checks inputs to add and leaves out those already held (or given twice): what to store.
pub fn to_add(held: &[Input], new: Vec<Input>) -> Result<Vec<Input>, Error> {
    let mut out: Vec<Input> = Vec::new();
    for (i, input) in new.into_iter().enumerate() {
        input.check(&format!("inputs[{i}]"))?;
        if !held.iter().chain(&out).any(|h| h.same_as(&input)) {
            out.push(input);
        }
    }
    if held.len() + out.len() > MAX_INPUTS {
        return Err(Error::validation(
            "inputs",
            format!("a version holds at most {MAX_INPUTS} inputs"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dataset(name: &str, digest: &str, context: Option<&str>) -> Input {
        Input::Dataset(Dataset {
            name: name.into(),
            digest: digest.into(),
            uri: None,
            context: context.map(str::to_owned),
            source_type: None,
            source: None,
            schema: None,
            profile: None,
            tags: BTreeMap::new(),
        })
    }

    #[test]
    fn the_same_use_of_a_dataset_is_kept_once() {
        let held = vec![dataset("iris", "abc", Some("training"))];
        let new = vec![
            dataset("iris", "abc", Some("training")),
            dataset("iris", "abc", Some("evaluation")),
            dataset("iris", "def", Some("training")),
            dataset("iris", "def", Some("training")),
        ];
        let added = to_add(&held, new).unwrap();
        assert_eq!(added.len(), 2);
    }

    #[test]
    fn inputs_are_bounded_and_read_with_their_kind() {
        let input: Input = serde_json::from_value(json!({
            "kind": "dataset", "name": "iris", "digest": "sha256:ab", "context": "training",
            "schema": {"columns": ["a"]}
        }))
        .unwrap();
        assert!(input.check("inputs[0]").is_ok());
        assert_eq!(serde_json::to_value(&input).unwrap()["kind"], "dataset");
        for bad in [
            json!({"kind": "dataset", "name": "", "digest": "x"}),
            json!({"kind": "dataset", "name": "a", "digest": "x".repeat(300)}),
            json!({"kind": "dataset", "name": "a\u{0}", "digest": "x"}),
        ] {
            let input: Input = serde_json::from_value(bad.clone()).unwrap();
            assert!(input.check("inputs[0]").is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Input>(json!({"kind": "table", "name": "a"})).is_err());
        assert!(
            serde_json::from_value::<Input>(
                json!({"kind": "dataset", "name": "a", "digest": "b", "x": 1})
            )
            .is_err()
        );
        for good in [
            json!({"kind": "version", "model": "base", "version": 3, "relation": "fine_tuned_from"}),
            json!({"kind": "code", "uri": "https://git.example/repo", "commit": "0a1b2c"}),
            json!({"kind": "code", "uri": "s3://code/train.py"}),
        ] {
            let input: Input = serde_json::from_value(good.clone()).unwrap();
            assert!(input.check("inputs[0]").is_ok(), "{good}");
            assert_eq!(serde_json::to_value(&input).unwrap(), good);
        }
        for bad in [
            json!({"kind": "version", "model": "Base", "version": 3, "relation": "x"}),
            json!({"kind": "version", "model": "base", "version": 0, "relation": "x"}),
            json!({"kind": "version", "model": "base", "version": 3, "relation": "Fine-Tuned"}),
            json!({"kind": "version", "model": "base", "version": 3, "relation": ""}),
            json!({"kind": "code", "uri": ""}),
            json!({"kind": "code", "uri": "x", "commit": ""}),
        ] {
            let input: Input = serde_json::from_value(bad.clone()).unwrap();
            assert!(input.check("inputs[0]").is_err(), "{bad}");
        }
        let a: Input = serde_json::from_value(
            json!({"kind": "version", "model": "b", "version": 1, "relation": "fine_tuned_from"}),
        )
        .unwrap();
        let b: Input = serde_json::from_value(
            json!({"kind": "version", "model": "b", "version": 1, "relation": "evaluated_with"}),
        )
        .unwrap();
        assert_eq!(
            to_add(std::slice::from_ref(&a), vec![a.clone(), b])
                .unwrap()
                .len(),
            1
        );
        let many: Vec<Input> = (0..=MAX_INPUTS)
            .map(|i| dataset(&format!("d{i}"), "x", None))
            .collect();
        assert!(to_add(&[], many).is_err());
    }
}
