//! What a `PUT` or `PATCH` changes on a record with a description and tags (a model, a
//! version): the rules, once. A request that changes nothing is no change (a retry), so it
//! records no event.

use super::{Description, TagPatch, Tags};
use crate::error::Result;
use serde_json::Value;

/// The description and tags a record holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub description: Option<Description>,
    pub tags: Tags,
}

/// `PATCH` semantics: `description: Some(None)` clears it; tags are merged.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub description: Option<Option<Description>>,
    pub tags: TagPatch,
}

/// The description and tags a record is to hold.
pub type Change = Described;

impl Described {
    /// The event details of a change to this.
    pub fn details(&self) -> Value {
        serde_json::json!({"description": self.description, "tags": self.tags})
    }
}

/// `PUT` semantics: fields given replace the stored ones, fields left out stay; `None` when
/// the result is what is stored.
pub fn put(
    current: &Described,
    description: Option<Description>,
    tags: Option<Tags>,
) -> Option<Change> {
    let next = Described {
        description: description.or_else(|| current.description.clone()),
        tags: tags.unwrap_or_else(|| current.tags.clone()),
    };
    (next != *current).then_some(next)
}

/// Applies a `PATCH`; `None` when it changes nothing.
pub fn patch(current: &Described, patch: &Patch) -> Result<Option<Change>> {
    let next = Described {
        description: match &patch.description {
            Some(d) => d.clone(),
            None => current.description.clone(),
        },
        tags: current.tags.merge(&patch.tags)?,
    };
    Ok((next != *current).then_some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Tags::from_stored(map)
    }

    fn text(d: &str) -> Description {
        Description::from_stored(d.to_owned())
    }

    fn described(description: Option<&str>, t: &[(&str, &str)]) -> Described {
        Described {
            description: description.map(|d| Description::from_stored(d.to_owned())),
            tags: tags(t),
        }
    }

    #[test]
    fn put_keeps_what_it_leaves_out_and_a_retry_changes_nothing() {
        let now = described(Some("a"), &[("team", "x")]);
        assert_eq!(put(&now, None, None), None);
        assert_eq!(
            put(&now, Some(text("a")), Some(tags(&[("team", "x")]))),
            None
        );
        let next = put(&now, Some(text("b")), None).unwrap();
        assert_eq!(next, described(Some("b"), &[("team", "x")]));
        let next = put(&now, None, Some(tags(&[]))).unwrap();
        assert_eq!(next, described(Some("a"), &[]));
    }

    #[test]
    fn patch_clears_merges_and_notices_no_ops() {
        let now = described(Some("a"), &[("team", "x")]);
        let clear = Patch {
            description: Some(None),
            tags: TagPatch::default(),
        };
        assert_eq!(
            patch(&now, &clear).unwrap(),
            Some(described(None, &[("team", "x")]))
        );
        let same = Patch {
            description: Some(Some(text("a"))),
            tags: TagPatch::default(),
        };
        assert_eq!(patch(&now, &same).unwrap(), None);
    }
}
