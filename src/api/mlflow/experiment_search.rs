//! MLflow SearchExperiments: models by name (`name = '…'`, `name LIKE '…%'`), in name order,
//! in pages.

use super::super::Endpoint;
use super::super::extract::Json;
use super::experiments::{Experiment, model_name};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::{TagFilter, cursor};
use crate::error::{Error, Result};
use crate::store::ModelQuery;
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

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> Result<axum::Json<Found>> {
    if body
        .order_by
        .iter()
        .any(|o| !matches!(o.trim(), "name" | "name ASC" | "name asc"))
    {
        return Err(Error::validation(
            "order_by",
            "experiments are listed by name only (order_by: name ASC)",
        ));
    }
    let limit = match body.max_results {
        None => state.config.max_page_size.min(1000),
        Some(n) if n >= 1 && n <= i64::from(state.config.max_page_size) => n as u32,
        Some(n) => {
            return Err(Error::validation(
                "max_results",
                format!(
                    "max_results {n} is out of range 1..={}",
                    state.config.max_page_size
                ),
            ));
        }
    };
    let filter = name_filter(body.filter.as_deref().unwrap_or(""))?;
    if let NameFilter::Exactly(name) = &filter {
        let found = match model_name(name) {
            Ok(n) if principal.sees_model(n.as_str()) => match state.store.get_model(&n).await {
                Ok(m) => vec![Experiment::from(&m)],
                Err(e) if e.code == "model_not_found" => Vec::new(),
                Err(e) => return Err(e),
            },
            _ => Vec::new(),
        };
        return Ok(axum::Json(Found {
            experiments: found,
            next_page_token: None,
        }));
    }
    let after = match body.page_token.as_deref().filter(|t| !t.is_empty()) {
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
    Ok(axum::Json(Found {
        experiments: page.items.iter().map(Experiment::from).collect(),
        next_page_token: page.next_cursor,
    }))
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
