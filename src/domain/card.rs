//! Model cards: what a model is for, who owns it, its license and where it fails, with a
//! markdown readme; a version's card adds its own fields (evaluation notes, say) over its
//! model's. Bounded in size; set whole (PUT) or field by field (PATCH, `null` removes one).

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The longest readme, in bytes of markdown.
pub const MAX_README: usize = 64 << 10;
/// The longest `intended_use`, `limitations` and `evaluation`, in bytes.
pub const MAX_NOTE: usize = 16 << 10;
/// The longest license and owner, in bytes.
pub const MAX_SHORT: usize = 256;
/// Owners a card may name.
pub const MAX_OWNERS: usize = 20;

/// A card's fields; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// Markdown, shown on the model's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme: Option<String>,
    /// An SPDX identifier or a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
    /// How it was evaluated and what that showed (markdown; usually a version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<String>,
}

/// The field names, in the order shown.
pub const FIELDS: [&str; 6] = [
    "readme",
    "license",
    "owners",
    "intended_use",
    "limitations",
    "evaluation",
];

fn text(field: &str, value: &str, max: usize, one_line: bool) -> Result<(), Error> {
    let bad_char = |c: char| c.is_control() && (one_line || (c != '\n' && c != '\t' && c != '\r'));
    if value.len() > max || value.chars().any(bad_char) {
        return Err(Error::validation(
            format!("card.{field}"),
            format!(
                "{field} is at most {max} bytes of text{}",
                if one_line {
                    " on one line"
                } else {
                    " without control characters other than line breaks and tabs"
                }
            ),
        ));
    }
    Ok(())
}

impl Card {
    /// Reads a card as sent (PUT), checked against the limits.
    pub fn parse(value: Value) -> Result<Self, Error> {
        // serde would read a struct from an array, field by field in order.
        if !value.is_object() {
            return Err(Error::validation(
                "card",
                "a card is an object of its fields",
            ));
        }
        let card: Card = serde_json::from_value(value)
            .map_err(|e| Error::validation("card", format!("not a card: {e}")))?;
        card.check()?;
        Ok(card)
    }

    fn check(&self) -> Result<(), Error> {
        if let Some(r) = &self.readme {
            text("readme", r, MAX_README, false)?;
        }
        if let Some(l) = &self.license {
            text("license", l, MAX_SHORT, true)?;
        }
        for (name, v) in [
            ("intended_use", &self.intended_use),
            ("limitations", &self.limitations),
            ("evaluation", &self.evaluation),
        ] {
            if let Some(v) = v {
                text(name, v, MAX_NOTE, false)?;
            }
        }
        if let Some(owners) = &self.owners {
            if owners.len() > MAX_OWNERS {
                return Err(Error::validation(
                    "card.owners",
                    format!("at most {MAX_OWNERS} owners"),
                ));
            }
            for o in owners {
                if o.trim().is_empty() {
                    return Err(Error::validation("card.owners", "an owner is not blank"));
                }
                text("owners", o, MAX_SHORT, true)?;
            }
        }
        Ok(())
    }

    /// The card with a PATCH applied: each field given replaces the one held, `null` removes
    /// it, a field not given stays.
    pub fn patched(&self, patch: Map<String, Value>) -> Result<Self, Error> {
        let mut fields = match serde_json::to_value(self).map_err(Error::internal)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in patch {
            if !FIELDS.contains(&k.as_str()) {
                return Err(Error::validation(
                    format!("card.{k}"),
                    format!("a card has {}", FIELDS.join(", ")),
                ));
            }
            if v.is_null() {
                fields.remove(&k);
            } else {
                fields.insert(k, v);
            }
        }
        Self::parse(Value::Object(fields))
    }

    /// This card's fields over `base`'s (a version's card over its model's).
    pub fn over(&self, base: &Card) -> Card {
        Card {
            readme: self.readme.clone().or_else(|| base.readme.clone()),
            license: self.license.clone().or_else(|| base.license.clone()),
            owners: self.owners.clone().or_else(|| base.owners.clone()),
            intended_use: self
                .intended_use
                .clone()
                .or_else(|| base.intended_use.clone()),
            limitations: self
                .limitations
                .clone()
                .or_else(|| base.limitations.clone()),
            evaluation: self.evaluation.clone().or_else(|| base.evaluation.clone()),
        }
    }

    /// What changed from `before`, for the event: each changed field's new value (`null`:
    /// removed), the readme as its size and digest.
    pub fn changes_from(&self, before: &Card) -> Map<String, Value> {
        let (now, was) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(before).unwrap_or_default(),
        );
        let mut out = Map::new();
        for f in FIELDS {
            let (a, b) = (now.get(f), was.get(f));
            if a == b {
                continue;
            }
            let shown = match (f, a) {
                ("readme", Some(Value::String(r))) => json!({
                    "bytes": r.len(),
                    "sha256": hex::encode(Sha256::digest(r.as_bytes())),
                }),
                (_, Some(v)) => v.clone(),
                (_, None) => Value::Null,
            };
            out.insert(f.to_owned(), shown);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field() {
        for (bad, field) in [
            (json!({"readme": "x".repeat(MAX_README + 1)}), "card.readme"),
            (json!({"license": "MIT\nand more"}), "card.license"),
            (json!({"owners": vec!["a"; 21]}), "card.owners"),
            (json!({"owners": [" "]}), "card.owners"),
            (json!({"limitations": "bell\u{7}"}), "card.limitations"),
            (json!({"color": "red"}), "card"),
            (json!({"owners": "ana"}), "card"),
            (json!(["readme"]), "card"),
        ] {
            let e = Card::parse(bad.clone()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{bad}");
        }
        let ok = Card::parse(json!({"readme": "# Fraud\n\n| a | b |\n\tcode", "owners": ["ana"]}));
        assert!(ok.is_ok());
    }

    #[test]
    fn patches_merge_and_null_removes() {
        let card =
            Card::parse(json!({"license": "MIT", "owners": ["ana"], "readme": "hi"})).unwrap();
        let patch = json!({"license": null, "limitations": "not for minors"});
        let Value::Object(patch) = patch else {
            unreachable!()
        };
        let next = card.patched(patch).unwrap();
        assert_eq!(next.license, None);
        assert_eq!(next.owners, Some(vec!["ana".to_owned()]));
        assert_eq!(next.limitations.as_deref(), Some("not for minors"));
        let changes = next.changes_from(&card);
        assert_eq!(changes["license"], Value::Null);
        assert_eq!(changes["limitations"], "not for minors");
        assert!(!changes.contains_key("readme"));
        let Value::Object(bad) = json!({"colour": 1}) else {
            unreachable!()
        };
        assert!(card.patched(bad).is_err());
    }

    #[test]
    fn a_versions_fields_come_over_its_models() {
        let model =
            Card::parse(json!({"license": "MIT", "intended_use": "fraud scoring"})).unwrap();
        let version =
            Card::parse(json!({"evaluation": "AUC 0.93 on 2026-11", "license": "Apache-2.0"}))
                .unwrap();
        let both = version.over(&model);
        assert_eq!(both.license.as_deref(), Some("Apache-2.0"));
        assert_eq!(both.intended_use.as_deref(), Some("fraud scoring"));
        assert_eq!(both.evaluation.as_deref(), Some("AUC 0.93 on 2026-11"));
        let readme = Card::parse(json!({"readme": "abc"})).unwrap();
        assert_eq!(readme.changes_from(&Card::default())["readme"]["bytes"], 3);
    }
}
