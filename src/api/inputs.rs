//! `POST /api/v1/models/{model}/versions/{version}/inputs`: what a pending version was made
//! from (datasets, for now), added in order; the version's detail lists them. Immutable once
//! the version is ready, as its config is. `GET /api/v1/lineage/datasets` reads them the other
//! way: the versions that used a dataset.

use super::Endpoint;
use super::Items;
use super::extract::{Json, Query, VersionPath, page_limit};
use crate::AppState;
use crate::domain::access::{Principal, Scope};
use crate::domain::cursor;
use crate::domain::inputs::Input;
use crate::error::{Error, Result};
use crate::store::{Actor, DatasetQuery, DatasetUse, Lineage, Page};
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/v1/models/{model}/versions/{version}/inputs",
            Scope::Write,
            add,
        ),
        Endpoint::new(
            Method::GET,
            "/api/v1/lineage/datasets",
            Scope::Read,
            dataset_users,
        ),
        Endpoint::new(
            Method::GET,
            "/api/v1/models/{model}/versions/{version}/lineage",
            Scope::Read,
            lineage,
        ),
    ]
}

/// The deepest lineage read.
const MAX_DEPTH: u32 = 10;

#[derive(Deserialize)]
struct LineageParams {
    direction: Option<String>,
    depth: Option<u32>,
}

/// A version's lineage: its `version` inputs and theirs (`direction=up`, the default) or the
/// versions made from it and theirs (`down`), `depth` levels (1 to 10, default 3). Only
/// versions of models the token may read are shown, and only those reached through them.
async fn lineage(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    principal: Principal,
    Query(p): Query<LineageParams>,
) -> Result<axum::Json<Lineage>> {
    let up = match p.direction.as_deref() {
        None | Some("up") => true,
        Some("down") => false,
        Some(other) => {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                format!("direction {other:?}: up or down"),
            )
            .with_field("direction"));
        }
    };
    let depth = p.depth.unwrap_or(3);
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(Error::bad_request(
            "invalid_query_parameter",
            format!("depth is 1 to {MAX_DEPTH}"),
        )
        .with_field("depth"));
    }
    let graph = state.store.lineage(&model, version, up, depth).await?;
    Ok(axum::Json(visible(graph, |m| principal.sees_model(m))))
}

/// The part of a lineage graph the token may read: its nodes, and those reached from the root
/// (the first node) through them.
fn visible(graph: Lineage, sees: impl Fn(&str) -> bool) -> Lineage {
    let Some(root) = graph.nodes.first().map(|n| n.id.clone()) else {
        return graph;
    };
    let shown: std::collections::HashSet<&str> = graph
        .nodes
        .iter()
        .filter(|n| sees(&n.model))
        .map(|n| n.id.as_str())
        .collect();
    let mut reached: std::collections::HashSet<String> = [root.clone()].into();
    let mut queue = vec![root];
    while let Some(at) = queue.pop() {
        for e in &graph.edges {
            let next = if e.to == at {
                &e.from
            } else if e.from == at {
                &e.to
            } else {
                continue;
            };
            if shown.contains(next.as_str()) && reached.insert(next.clone()) {
                queue.push(next.clone());
            }
        }
    }
    Lineage {
        truncated: graph.truncated,
        edges: graph
            .edges
            .iter()
            .filter(|e| reached.contains(&e.from) && reached.contains(&e.to))
            .cloned()
            .collect(),
        nodes: graph
            .nodes
            .into_iter()
            .filter(|n| reached.contains(&n.id))
            .collect(),
    }
}

#[derive(Deserialize)]
struct DatasetParams {
    digest: Option<String>,
    name: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
    /// `true`: only versions a stage holds now.
    staged: Option<bool>,
}

/// The versions that used a dataset, by `digest` or by `name` (exactly one), within the
/// token's models (with `staged=true`, only those a stage holds now), by model name and newest
/// version first, keyset-paged.
async fn dataset_users(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<DatasetParams>,
) -> Result<axum::Json<Page<DatasetUse>>> {
    let (by_digest, key) = match (p.digest, p.name) {
        (Some(d), None) if !d.is_empty() => (true, d),
        (None, Some(n)) if !n.is_empty() => (false, n),
        _ => {
            return Err(Error::bad_request(
                "invalid_query_parameter",
                "name the dataset by digest or by name (one of them)",
            )
            .with_field("digest"));
        }
    };
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bad = || {
                Error::bad_request("invalid_cursor", "not a cursor of this list")
                    .with_field("cursor")
            };
            let raw = cursor::decode("d", c).map_err(|_| bad())?;
            let (model, version) = raw.rsplit_once(':').ok_or_else(bad)?;
            Some((model.to_owned(), version.parse::<i64>().map_err(|_| bad())?))
        }
    };
    let q = DatasetQuery {
        by_digest,
        key,
        visible: principal.like_patterns(),
        staged: p.staged.unwrap_or(false),
        after,
        limit: page_limit(p.limit, &state)?,
    };
    Ok(axum::Json(state.store.dataset_users(&q).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    inputs: Vec<Input>,
}

/// Adds inputs (one already held, the same dataset for the same use, is not added twice);
/// answers all the version holds.
async fn add(
    State(state): State<AppState>,
    VersionPath(model, version): VersionPath,
    actor: Actor,
    principal: Principal,
    Json(body): Json<AddBody>,
) -> Result<axum::Json<Items<Input>>> {
    readable(&principal, &body.inputs)?;
    let items = state
        .store
        .add_inputs(&model, version, body.inputs, &actor)
        .await?;
    Ok(axum::Json(Items { items }))
}

/// A version input the token may not read is answered as absent, as a read of it would be.
pub(super) fn readable(principal: &Principal, inputs: &[Input]) -> Result<()> {
    for (i, input) in inputs.iter().enumerate() {
        if let Input::Version(v) = input
            && !principal.sees_model(&v.model)
        {
            return Err(Error::model_not_found(&v.model).with_field(format!("inputs[{i}].model")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LineageEdge, LineageNode};

    fn node(id: &str) -> LineageNode {
        let (model, version) = id.split_once(':').unwrap();
        LineageNode {
            id: id.into(),
            model: model.into(),
            version: version.parse().unwrap(),
            status: "ready".into(),
        }
    }

    fn edge(from: &str, to: &str) -> LineageEdge {
        LineageEdge {
            from: from.into(),
            to: to.into(),
            relation: "fine_tuned_from".into(),
        }
    }

    #[test]
    fn a_token_sees_only_what_it_reaches_through_models_it_may_read() {
        // root <- secret:1 <- base:1, and root <- open:1
        let graph = Lineage {
            nodes: vec![
                node("root:1"),
                node("secret:1"),
                node("open:1"),
                node("base:1"),
            ],
            edges: vec![
                edge("secret:1", "root:1"),
                edge("open:1", "root:1"),
                edge("base:1", "secret:1"),
            ],
            truncated: false,
        };
        let seen = visible(graph.clone(), |m| m != "secret");
        let ids: Vec<&str> = seen.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            ["root:1", "open:1"],
            "base:1 is reached only through secret"
        );
        assert_eq!(seen.edges, vec![edge("open:1", "root:1")]);
        assert_eq!(visible(graph, |_| true).nodes.len(), 4);
    }
}
