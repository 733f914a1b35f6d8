//! MLflow SearchExperiments (and the model search SearchRegisteredModels shares): models by
//! name (`name = '…'`, `name LIKE '…%'` on the model name), in name order, in pages; deleted
//! experiments only when `view_type` asks for them.

use super::super::Endpoint;
use super::super::extract::Json;
use super::experiments::Experiment;
use super::names;
use super::run_search::{clause, clauses};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::filter::{Clause, Field, Op, Value};
use crate::domain::{TagFilter, cursor};
use crate::error::{Error, Result};
use crate::store::{Model, ModelQuery};
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/experiments/search",
            Scope::Read,
            search,
        )
        .confined(),
    ]
}

#[derive(Deserialize, Default)]
struct SearchBody {
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<String>,
    /// `ACTIVE_ONLY` (the default), `DELETED_ONLY` or `ALL` (or their numbers 1, 2, 3).
    #[serde(default)]
    view_type: Option<serde_json::Value>,
}

/// Which experiments a search shows, by their lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Active,
    Deleted,
    All,
}

impl View {
    fn parse(raw: Option<&serde_json::Value>) -> Result<Self> {
        use serde_json::Value as J;
        match raw {
            None | Some(J::Null) => Ok(Self::Active),
            Some(J::String(s)) if s == "ACTIVE_ONLY" => Ok(Self::Active),
            Some(J::String(s)) if s == "DELETED_ONLY" => Ok(Self::Deleted),
            Some(J::String(s)) if s == "ALL" => Ok(Self::All),
            Some(J::Number(n)) if n.as_i64() == Some(1) => Ok(Self::Active),
            Some(J::Number(n)) if n.as_i64() == Some(2) => Ok(Self::Deleted),
            Some(J::Number(n)) if n.as_i64() == Some(3) => Ok(Self::All),
            Some(other) => Err(Error::validation(
                "view_type",
                format!("unknown view_type {other}: ACTIVE_ONLY, DELETED_ONLY or ALL"),
            )),
        }
    }

    fn shows(self, m: &Model) -> bool {
        match self {
            Self::Active => !names::is_deleted(m),
            Self::Deleted => names::is_deleted(m),
            Self::All => true,
        }
    }
}

#[derive(Serialize)]
struct Found {
    experiments: Vec<Experiment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// MLflow's filter, as far as names go: `name = 'x'` or `name LIKE 'prefix%'`.
#[derive(Debug, PartialEq)]
enum NameFilter {
    All,
    Exactly(String),
    Prefix(String),
}

fn name_filter(filter: &str) -> Result<NameFilter> {
    let f = filter.trim();
    if f.is_empty() {
        return Ok(NameFilter::All);
    }
    let unsupported = || {
        Error::validation(
            "filter",
            format!(
                "unsupported experiment filter {f:?}: use name = '<name>' or \
                 name LIKE '<prefix>%'"
            ),
        )
    };
    let rest = f
        .strip_prefix("attribute.name")
        .or_else(|| f.strip_prefix("name"))
        .ok_or_else(unsupported)?
        .trim_start();
    let (like, value) = if let Some(v) = rest.strip_prefix('=') {
        (false, v.trim())
    } else if let Some(v) = rest
        .get(..4)
        .filter(|op| op.eq_ignore_ascii_case("like"))
        .map(|_| &rest[4..])
    {
        (true, v.trim())
    } else {
        return Err(unsupported());
    };
    let quoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .ok_or_else(unsupported)?;
    if !like {
        return Ok(NameFilter::Exactly(quoted.to_owned()));
    }
    match quoted.strip_suffix('%') {
        Some(prefix) if !prefix.contains(['%', '_']) => Ok(NameFilter::Prefix(prefix.to_owned())),
        _ => Err(unsupported()),
    }
}

/// MLflow's model filter: at most one name clause, and `tags.k = '…'` / `tags.k != '…'`
/// clauses joined by AND (MLflow's client adds `tag.`mlflow.prompt.is_prompt` != 'true'` to
/// every registered-model search). Tag clauses are checked on each page's models, so a page
/// may hold fewer than `max_results`; its `next_page_token` still continues the search.
fn model_filter(filter: &str) -> Result<(NameFilter, Vec<Clause>)> {
    let mut name = NameFilter::All;
    let mut tags = Vec::new();
    for raw in clauses(filter)?.into_iter().filter(|c| !c.is_empty()) {
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("name") || lower.starts_with("attribute.name") {
            if name != NameFilter::All {
                return Err(Error::validation("filter", "name may be filtered once"));
            }
            name = name_filter(&raw)?;
            continue;
        }
        let c = clause(&raw)?;
        match (&c.field, c.op, &c.value) {
            (Field::Tag(_), Op::Eq | Op::Ne, Value::Text(_)) => tags.push(c),
            _ => {
                return Err(Error::validation(
                    "filter",
                    format!(
                        "unsupported filter {raw:?}: models are filtered by name and by tags \
                         (tags.<key> = '<value>' or !=)"
                    ),
                ));
            }
        }
    }
    Ok((name, tags))
}

fn tag_matches(m: &Model, c: &Clause) -> bool {
    let (Field::Tag(key), Value::Text(want)) = (&c.field, &c.value) else {
        return false;
    };
    let equal = m.tags.as_map().get(key) == Some(want);
    if c.op == Op::Eq { equal } else { !equal }
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> Result<axum::Json<Found>> {
    let view = View::parse(body.view_type.as_ref())?;
    let (models, next_page_token) = find_models(
        &state,
        &principal,
        body.filter.as_deref(),
        body.max_results,
        body.page_token.as_deref(),
        &body.order_by,
    )
    .await?;
    Ok(axum::Json(Found {
        // A page may hold fewer than max_results; next_page_token still continues.
        experiments: models
            .iter()
            .filter(|m| view.shows(m))
            .map(Experiment::from)
            .collect(),
        next_page_token,
    }))
}

/// The models an MLflow search of experiments or registered models names: its name filter,
/// `max_results`, `page_token` and `order_by` (by name only); a page and the next page's token.
pub(super) async fn find_models(
    state: &AppState,
    principal: &Principal,
    filter: Option<&str>,
    max_results: Option<i64>,
    page_token: Option<&str>,
    order_by: &[String],
) -> Result<(Vec<Model>, Option<String>)> {
    if order_by
        .iter()
        .any(|o| !matches!(o.trim(), "name" | "name ASC" | "name asc"))
    {
        return Err(Error::validation(
            "order_by",
            "models are listed by name only (order_by: name ASC)",
        ));
    }
    let limit = super::page_limit(max_results, state.config.max_page_size.min(1000))?;
    let (filter, tags) = model_filter(filter.unwrap_or(""))?;
    let keep = |m: &Model| tags.iter().all(|c| tag_matches(m, c));
    if let NameFilter::Exactly(name) = &filter {
        let found = names::find(state, principal, name)
            .await?
            .into_iter()
            .filter(keep)
            .collect();
        return Ok((found, None));
    }
    let after = match page_token.filter(|t| !t.is_empty()) {
        Some(t) => Some(cursor::decode("m", t).map_err(|_| {
            Error::validation("page_token", "page_token was not made by this search")
        })?),
        None => None,
    };
    let query = ModelQuery {
        prefix: match filter {
            NameFilter::Prefix(p) if !p.is_empty() => Some(p),
            _ => None,
        },
        visible: principal.like_patterns(),
        tags: TagFilter::default(),
        limit,
        after,
    };
    let page = state.store.list_models(&query).await?;
    let models = page.items.into_iter().filter(keep).collect();
    Ok((models, page.next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filters() {
        use NameFilter::*;
        assert_eq!(name_filter("").unwrap(), All);
        assert_eq!(name_filter("name = 'a'").unwrap(), Exactly("a".into()));
        assert_eq!(
            name_filter("attribute.name='a b'").unwrap(),
            Exactly("a b".into())
        );
        assert_eq!(name_filter("name LIKE 'fr%'").unwrap(), Prefix("fr".into()));
        assert_eq!(
            name_filter("name like \"fr%\"").unwrap(),
            Prefix("fr".into())
        );
        let (name, tags) =
            model_filter("name = 'x' AND tag.`mlflow.prompt.is_prompt` != 'true'").unwrap();
        assert_eq!(name, Exactly("x".into()));
        assert_eq!(
            tags[0].to_string(),
            "tag.mlflow.prompt.is_prompt != \"true\""
        );
        assert!(model_filter("name = 'a' and name = 'b'").is_err());
        assert!(model_filter("metrics.auc > 1").is_err());
        for bad in [
            "name LIKE '%x'",
            "name LIKE 'a_%'",
            "tags.x = 'y'",
            "name > 'a'",
            "name = a",
        ] {
            assert!(name_filter(bad).is_err(), "{bad}");
        }
    }
}
