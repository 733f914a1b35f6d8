//! MLflow names and modelreg models. MLflow accepts any experiment or registered-model name
//! (`MLflow Quickstart`, `/Users/me/exp`); a model name is 1–128 of `a-z 0-9 . _ -`. A name
//! that is a model name is that model (identity, as before), `Default` is the model
//! `default`, and any other name maps to a model whose name is derived from it: a readable
//! slug and ten hex digits of its sha256 (`mlflow-quickstart-3f2a9c1b0e`), unique and stable.
//! The original is kept in the model's tag [`NAME_TAG`], which native readers see, MLflow's
//! answers show as the name, and lookups by name use (it is the one thing a rename changes).

use super::KeyValue;
use super::experiments::{DEFAULT_EXPERIMENT, DEFAULT_MODEL};
use crate::AppState;
use crate::domain::access::Principal;
use crate::domain::change::Patch;
use crate::domain::{ModelName, TagFilter, TagPatch, Tags};
use crate::error::{Error, Result};
use crate::store::{Actor, Model, ModelQuery};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The model tag that keeps an MLflow name which is not the model's own.
pub const NAME_TAG: &str = "mlflow.name";

/// The model tag that marks a deleted experiment (`experiments/delete`; `restore` removes
/// it): MLflow shows it `deleted`, searches leave it out unless asked, and it takes no new
/// runs. Its model and versions are untouched.
pub const DELETED_TAG: &str = "mlflow.lifecycle";
pub const DELETED: &str = "deleted";

/// Whether a model is a deleted experiment.
pub fn is_deleted(model: &Model) -> bool {
    model.tags.as_map().get(DELETED_TAG).map(String::as_str) == Some(DELETED)
}

/// Longest MLflow name kept (a tag value's limit).
const MAX_NAME: usize = 1024;

/// The model a new experiment or registered model named `name` becomes, and the original
/// name to keep in [`NAME_TAG`] when it is not the model's own.
pub fn new_model(name: &str) -> Result<(ModelName, Option<String>)> {
    if name == DEFAULT_EXPERIMENT {
        return Ok((ModelName::parse("name", DEFAULT_MODEL)?, None));
    }
    if let Ok(model) = ModelName::parse("name", name) {
        return Ok((model, None));
    }
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::validation(
            "name",
            format!("a name is 1 to {MAX_NAME} bytes without control characters"),
        ));
    }
    Ok((derived(name)?, Some(name.to_owned())))
}

/// `name`'s derived model name: a slug of its letters and digits, and 10 hex digits of its
/// sha256.
fn derived(name: &str) -> Result<ModelName> {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 100 {
            break;
        }
    }
    let slug = slug.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let slug = if slug.is_empty() { "mlflow" } else { slug };
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    ModelName::parse("name", &format!("{slug}-{}", &hash[..10]))
}

/// The model an MLflow name stands for, if it exists and the caller may see it.
pub async fn find(state: &AppState, principal: &Principal, name: &str) -> Result<Option<Model>> {
    let (model, kept) = match new_model(name) {
        Ok(found) => found,
        // A name that could not be made names nothing.
        Err(_) => return Ok(None),
    };
    if kept.is_none() {
        if !principal.sees_model(model.as_str()) {
            return Ok(None);
        }
        return match state.store.get_model(&model).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.code == "model_not_found" => Ok(None),
            Err(e) => Err(e),
        };
    }
    let query = ModelQuery {
        prefix: None,
        visible: principal.like_patterns(),
        tags: TagFilter::parse(&[format!("{NAME_TAG}:{name}")])?,
        limit: 1,
        after: None,
    };
    Ok(state
        .store
        .list_models(&query)
        .await?
        .items
        .into_iter()
        .next())
}

/// Refuses a tag key MLflow's tag calls may not set or delete: the kept name and the deleted
/// mark (renaming, deleting and restoring are calls of their own).
pub fn check_tag_key(key: &str) -> Result<()> {
    if key == NAME_TAG || key == DELETED_TAG {
        return Err(Error::validation(
            "key",
            format!(
                "{key} is kept by modelreg (the MLflow name, or a deleted experiment's mark); \
                 rename, delete or restore instead"
            ),
        ));
    }
    Ok(())
}

/// Gives `model` a new MLflow name. Only a model whose MLflow name is not its own can be
/// renamed: the model and its identity (stages, tokens' globs, webhooks, URLs) stay, and only
/// the name MLflow shows and finds it by changes. A model name is a native identity, so a
/// model named by it keeps it, and no other can take one.
pub async fn rename(
    state: &AppState,
    actor: &Actor,
    model: &Model,
    new_name: &str,
) -> Result<Model> {
    if !model.tags.as_map().contains_key(NAME_TAG) {
        return Err(Error::validation(
            "new_name",
            format!(
                "'{}' is a modelreg model name, the model's identity (named by its stages, \
                 tokens, webhooks and URLs), and is not renamed",
                mlflow_name(model)
            ),
        ));
    }
    let (_, kept) = new_model(new_name)?;
    let Some(kept) = kept else {
        return Err(Error::validation(
            "new_name",
            format!("'{new_name}' is a modelreg model name, which only that model may hold"),
        ));
    };
    if let Some(other) = find(state, &Principal::anonymous(), &kept).await?
        && other.id != model.id
    {
        return Err(Error::conflict(
            "model_exists",
            format!("'{kept}' already exists"),
        ));
    }
    set_tag(state, actor, model, NAME_TAG, Some(kept)).await
}

/// Sets (or, with `None`, removes) one tag of a model: what MLflow's tag calls on
/// experiments and registered models, rename, delete and restore come down to.
pub async fn set_tag(
    state: &AppState,
    actor: &Actor,
    model: &Model,
    key: &str,
    value: Option<String>,
) -> Result<Model> {
    let patch = Patch {
        description: None,
        tags: TagPatch::parse_mlflow("key", BTreeMap::from([(key.to_owned(), value)]))?,
    };
    let name = ModelName::parse("name", &model.name)?;
    state.store.update_model(&name, patch, actor).await
}

/// The name MLflow's answers give a model.
pub fn mlflow_name(model: &Model) -> String {
    match model.tags.as_map().get(NAME_TAG) {
        Some(original) => original.clone(),
        None if model.name == DEFAULT_MODEL => DEFAULT_EXPERIMENT.to_owned(),
        None => model.name.clone(),
    }
}

/// A model's tags as MLflow lists them: without the kept name.
pub fn shown_tags(tags: &Tags) -> Vec<KeyValue> {
    KeyValue::list(tags)
        .into_iter()
        .filter(|kv| kv.key != NAME_TAG && kv.key != DELETED_TAG)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_themselves_and_others_are_derived_stably() {
        let (m, kept) = new_model("fraud-v2").unwrap();
        assert_eq!((m.as_str(), kept), ("fraud-v2", None));
        assert_eq!(new_model("Default").unwrap().0.as_str(), "default");
        let (m, kept) = new_model("MLflow Quickstart").unwrap();
        assert!(
            m.as_str().starts_with("mlflow-quickstart-"),
            "{}",
            m.as_str()
        );
        assert_eq!(m.as_str().len(), "mlflow-quickstart-".len() + 10);
        assert_eq!(kept.as_deref(), Some("MLflow Quickstart"));
        assert_eq!(new_model("MLflow Quickstart").unwrap().0, m, "stable");
        assert_ne!(new_model("mlflow quickstart").unwrap().0, m, "case matters");
        for odd in [
            "/Users/me/exp",
            "Ünïcode ✓",
            "---",
            "a".repeat(500).as_str(),
            "É",
        ] {
            let (m, kept) = new_model(odd).unwrap();
            assert!(
                ModelName::parse("x", m.as_str()).is_ok(),
                "{odd}: {}",
                m.as_str()
            );
            assert_eq!(kept.as_deref(), Some(odd));
        }
        assert!(
            new_model("/Users/me/exp")
                .unwrap()
                .0
                .as_str()
                .starts_with("users-me-exp-")
        );
        for bad in ["", "  ", "a\nb", &"x".repeat(MAX_NAME + 1)] {
            assert!(new_model(bad).is_err(), "{bad:?}");
        }
    }
}
