//! A version's inputs as stored: one row each, in order, kept whole as JSON with the fields
//! lineage reads look up by beside it. Added while the version is pending (under its row
//! lock), never after.

use super::sql::{Conn, Stmt};
use super::{Actor, NewEvent, events, models, versions};
use crate::domain::ModelName;
use crate::domain::VersionStatus;
use crate::domain::inputs::{self, Input};
use crate::domain::time;
use crate::error::{Error, Result};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// A version's inputs, in order.
pub(crate) async fn of<C: Conn>(conn: &mut C, version_id: Uuid) -> Result<Vec<Input>> {
    let stmt = Stmt::new("select body from version_inputs where version_id = $1 order by position")
        .bind(version_id);
    let rows: Vec<(Json<Input>,)> = conn.fetch_all(stmt).await?;
    Ok(rows.into_iter().map(|(Json(i),)| i).collect())
}

/// A `version` input must name a version that exists, is not the version itself, and is not
/// pending (its own inputs are final, so no chain of inputs can come back: lineage has no
/// cycles). Whether the caller may read it is the API's check.
async fn check_version_input<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    position: usize,
    v: &inputs::VersionRef,
) -> Result<()> {
    let field = format!("inputs[{position}]");
    if v.model == model.as_str() && v.version == version {
        return Err(Error::validation(
            field,
            "a version cannot be an input of itself",
        ));
    }
    let target = ModelName::parse(&format!("{field}.model"), &v.model)?;
    let row = versions::row(conn, &target, v.version, false)
        .await
        .map_err(|e| e.with_field(field.clone()))?;
    if VersionStatus::from_stored(&row.status)? == VersionStatus::Pending {
        return Err(Error::conflict(
            "input_pending",
            format!(
                "version {} of '{}' is pending: a version input must be final (ready, failed or \
                 archived), so that lineage never loops",
                v.version, v.model
            ),
        )
        .with_field(field));
    }
    Ok(())
}

/// Whether a version is an input of another: a pending one that is gains no version inputs,
/// so that a registration copying a pending run (an MLflow run still going) cannot close a
/// loop through it.
async fn is_an_input<C: Conn>(conn: &mut C, model: &ModelName, version: i64) -> Result<bool> {
    let stmt = Stmt::new(
        "select 1 from version_inputs where kind = 'version' and name = $1 and digest = $2 \
         limit 1",
    )
    .bind(model.as_str())
    .bind(version.to_string());
    Ok(conn.fetch_optional::<(i32,)>(stmt).await?.is_some())
}

/// Writes inputs at positions `first`, `first + 1`, … of a version.
async fn insert_rows<C: Conn>(
    conn: &mut C,
    version_id: Uuid,
    first: usize,
    inputs: &[Input],
    now: time::Timestamp,
) -> Result<()> {
    for (i, input) in inputs.iter().enumerate() {
        let (name, digest) = input.keys();
        let stmt = Stmt::new(
            "insert into version_inputs (version_id, position, kind, name, digest, body, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(version_id)
        .bind(i64::try_from(first + i).map_err(Error::internal)?)
        .bind(input.kind())
        .bind(name)
        .bind(digest)
        .json(input)
        .bind(now);
        conn.execute(stmt).await?;
    }
    Ok(())
}

/// Checks the `version` inputs of a registration before it writes (the fast path writes in
/// one statement): each must exist and not be pending. A version that exists and is not
/// pending stays so, and none can be the version being registered (its number is higher than
/// any that exists now), so the check holds when the write comes.
pub(crate) async fn check_before_registration<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    given: &[Input],
) -> Result<()> {
    for (i, input) in given.iter().enumerate() {
        if let Input::Version(v) = input {
            // The number the registration would take is the version itself, as the
            // transaction's check (which runs after the number is taken) would say.
            let next = if v.model == model.as_str() {
                models::row(conn, model, false).await?.last_version + 1
            } else {
                0
            };
            check_version_input(conn, model, next, i, v).await?;
        }
    }
    Ok(())
}

/// The inputs of a version being registered (checked by [`inputs::to_add`] already): each
/// `version` input checked as [`add`] does; then, for a registration that copies another
/// version (an MLflow registration of a run's model), that version as a `copied_from` input
/// (pending or not: the new version is ready at once and nothing lists it yet) and the
/// datasets it used, so that "which versions were trained on this dataset" finds the copy.
pub(crate) async fn at_registration<C: Conn>(
    conn: &mut C,
    (version_id, model, number): (Uuid, &ModelName, i64),
    given: &[Input],
    copied_from: Option<&(ModelName, i64)>,
    now: time::Timestamp,
) -> Result<usize> {
    for (i, input) in given.iter().enumerate() {
        if let Input::Version(v) = input {
            check_version_input(conn, model, number, i, v).await?;
        }
    }
    let mut all = given.to_vec();
    if let Some((source, source_version)) = copied_from {
        let from = versions::row(conn, source, *source_version, false).await?;
        let copied = Input::Version(inputs::VersionRef {
            model: source.as_str().to_owned(),
            version: *source_version,
            relation: "copied_from".to_owned(),
        });
        let datasets: Vec<Input> = of(conn, from.id)
            .await?
            .into_iter()
            .filter(|i| matches!(i, Input::Dataset(_)))
            .collect();
        let extra = inputs::to_add(&all, std::iter::once(copied).chain(datasets).collect())?;
        all.extend(extra);
    }
    insert_rows(conn, version_id, 0, &all, now).await?;
    Ok(all.len())
}

/// Adds inputs to a pending version (those it holds already are left out), records
/// `version.inputs_added`; answers every input it holds.
pub(crate) async fn add<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    new: Vec<Input>,
    actor: &Actor,
) -> Result<Vec<Input>> {
    let row = versions::pending_row(conn, model, version, "inputs are").await?;
    let mut held = of(conn, row.id).await?;
    let added = inputs::to_add(&held, new)?;
    let adds_versions = added.iter().any(|i| matches!(i, Input::Version(_)));
    if adds_versions && is_an_input(conn, model, version).await? {
        return Err(Error::conflict(
            "input_pending",
            format!(
                "version {version} of '{model}' is already an input of another version (a \
                 registration copied it): it gains no version inputs while pending, so that \
                 lineage never loops"
            ),
        )
        .with_field("inputs"));
    }
    for (i, input) in added.iter().enumerate() {
        if let Input::Version(v) = input {
            check_version_input(conn, model, version, i, v).await?;
        }
    }
    if added.is_empty() {
        return Ok(held);
    }
    let now = time::now();
    insert_rows(conn, row.id, held.len(), &added, now).await?;
    let model_id = models::row(conn, model, false).await?.id;
    let event = NewEvent::model("version.inputs_added", model_id, model.as_str(), now)
        .version(version)
        .details(json!({"inputs": added}));
    events::record(conn, event, actor).await?;
    held.extend(added);
    Ok(held)
}

/// A version that used a dataset: which, for what, and the stages holding it now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatasetUse {
    pub model: String,
    pub version: i64,
    pub status: String,
    pub name: String,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub stages: Vec<String>,
    #[serde(serialize_with = "crate::domain::time::rfc3339::serialize")]
    pub created_at: crate::domain::time::Timestamp,
}

/// Which versions used a dataset, by digest or by name.
#[derive(Debug, Clone)]
pub struct DatasetQuery {
    /// `true`: `key` is a digest; `false`: a name.
    pub by_digest: bool,
    pub key: String,
    /// The token's model globs as LIKE patterns (`None`: every model).
    pub visible: Option<Vec<String>>,
    /// Only versions a stage holds now ("which live versions were trained on it").
    pub staged: bool,
    /// After this (model, version) in the order (model name, then newest version first).
    pub after: Option<(String, i64)>,
    pub limit: u32,
}

#[derive(sqlx::FromRow)]
struct UseRow {
    model: String,
    version: i64,
    status: String,
    name: Option<String>,
    digest: Option<String>,
    body: Json<Input>,
    created_at: crate::domain::time::Timestamp,
    version_id: Uuid,
}

/// A page of the versions that used a dataset, with the stages holding each now: two
/// statements whatever the page's size (the index on the dataset's digest or name, then
/// the stages of the page's versions).
pub(crate) async fn users<C: Conn>(
    conn: &mut C,
    q: &DatasetQuery,
) -> Result<crate::store::Page<DatasetUse>> {
    let column = if q.by_digest { "i.digest" } else { "i.name" };
    let sql = format!(
        "select m.name as model, v.version, v.status, i.name, i.digest, i.body, v.created_at, \
                v.id as version_id \
         from version_inputs i join versions v on v.id = i.version_id \
         join models m on m.id = v.model_id \
         where i.kind = 'dataset' and {column} = $1 and ($2 is null or {}) \
           and (cast($3 as text) is null or m.name > $3 or (m.name = $3 and v.version < $4)){staged} \
         order by m.name, v.version desc, i.position limit $5",
        C::like_any("m.name", "$2"),
        staged = if q.staged {
            " and exists (select 1 from stages s where s.model_id = v.model_id and s.version = v.version)"
        } else {
            ""
        }
    );
    let (after_model, after_version) = match &q.after {
        Some((m, v)) => (Some(m.clone()), Some(*v)),
        None => (None, None),
    };
    let stmt = Stmt::new(sql)
        .bind(q.key.clone())
        .bind(q.visible.clone())
        .bind(after_model)
        .bind(after_version)
        .bind(i64::from(q.limit) + 1);
    let mut rows: Vec<UseRow> = conn.fetch_all(stmt).await?;
    // A version that used the dataset twice (two contexts) is listed once per use.
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let mut stages: std::collections::HashMap<Uuid, Vec<String>> = Default::default();
    if !rows.is_empty() {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.version_id).collect();
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let mut stmt = Stmt::new(format!(
            "select v.id, s.name from stages s join versions v \
               on v.model_id = s.model_id and v.version = s.version \
             where v.id in ({}) order by s.name",
            list.join(", ")
        ));
        for id in &ids {
            stmt = stmt.bind(*id);
        }
        let held: Vec<(Uuid, String)> = conn.fetch_all(stmt).await?;
        for (id, stage) in held {
            stages.entry(id).or_default().push(stage);
        }
    }
    let next_cursor = if more {
        rows.last()
            .map(|r| crate::domain::cursor::encode("d", &format!("{}:{}", r.model, r.version)))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| {
            let context = match &r.body.0 {
                Input::Dataset(d) => d.context.clone(),
                _ => None,
            };
            DatasetUse {
                stages: stages.get(&r.version_id).cloned().unwrap_or_default(),
                model: r.model,
                version: r.version,
                status: r.status,
                name: r.name.unwrap_or_default(),
                digest: r.digest.unwrap_or_default(),
                context,
                created_at: r.created_at,
            }
        })
        .collect();
    Ok(crate::store::Page { items, next_cursor })
}

/// A version in a lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineageNode {
    /// `model:version`, what edges name.
    pub id: String,
    pub model: String,
    pub version: i64,
    pub status: String,
}

/// `from` was an input of `to`, in this relation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineageEdge {
    pub from: String,
    pub to: String,
    pub relation: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
    /// The graph reached [`MAX_NODES`] before its depth: what is shown is a part of it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The most versions one lineage read returns (and reads a level at a time).
pub const MAX_NODES: usize = 1000;

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: Uuid,
    model: String,
    version: i64,
    status: String,
}

impl NodeRow {
    fn node(&self) -> LineageNode {
        LineageNode {
            id: format!("{}:{}", self.model, self.version),
            model: self.model.clone(),
            version: self.version,
            status: self.status.clone(),
        }
    }
}

const NODE: &str = "select v.id, m.name as model, v.version, v.status \
    from versions v join models m on m.id = v.model_id where ";

fn list(first: usize, n: usize) -> String {
    let l: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    l.join(", ")
}

/// The versions named by (model, number) pairs, in one statement.
async fn nodes_named<C: Conn>(conn: &mut C, pairs: &[(String, i64)]) -> Result<Vec<NodeRow>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let ors: Vec<String> = (0..pairs.len())
        .map(|i| format!("(m.name = ${} and v.version = ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let mut stmt = Stmt::new(format!("{NODE}{}", ors.join(" or ")));
    for (m, v) in pairs {
        stmt = stmt.bind(m.as_str()).bind(*v);
    }
    conn.fetch_all(stmt).await
}

async fn nodes_by_id<C: Conn>(conn: &mut C, ids: &[Uuid]) -> Result<Vec<NodeRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = Stmt::new(format!("{NODE}v.id in ({})", list(1, ids.len())));
    for id in ids {
        stmt = stmt.bind(*id);
    }
    conn.fetch_all(stmt).await
}

/// A version's lineage to `depth` levels: its `version` inputs and theirs (`up`), or the
/// versions that list it as an input and theirs (down). Two statements a level.
pub(crate) async fn lineage<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    version: i64,
    up: bool,
    depth: u32,
) -> Result<Lineage> {
    let root = nodes_named(conn, &[(model.as_str().to_owned(), version)])
        .await?
        .pop()
        .ok_or_else(|| Error::version_not_found(model.as_str(), version))?;
    let mut out = Lineage::default();
    let mut seen: std::collections::HashSet<Uuid> = [root.id].into();
    out.nodes.push(root.node());
    let mut frontier = vec![root];
    for _ in 0..depth {
        if frontier.is_empty() {
            break;
        }
        let (links, next): (Vec<(String, String, String)>, Vec<NodeRow>) = if up {
            let ids: Vec<Uuid> = frontier.iter().map(|n| n.id).collect();
            let mut stmt = Stmt::new(format!(
                "select version_id, body from version_inputs \
                 where kind = 'version' and version_id in ({}) order by version_id, position \
                 limit {}",
                list(1, ids.len()),
                MAX_NODES + 1
            ));
            for id in &ids {
                stmt = stmt.bind(*id);
            }
            let rows: Vec<(Uuid, Json<Input>)> = conn.fetch_all(stmt).await?;
            out.truncated |= rows.len() > MAX_NODES;
            let mut links = Vec::new();
            let mut wanted = Vec::new();
            for (child, Json(input)) in rows {
                if let Input::Version(v) = input
                    && let Some(c) = frontier.iter().find(|n| n.id == child)
                {
                    links.push((
                        format!("{}:{}", v.model, v.version),
                        c.node().id,
                        v.relation.clone(),
                    ));
                    wanted.push((v.model, v.version));
                }
            }
            (links, nodes_named(conn, &wanted).await?)
        } else {
            let ors: Vec<String> = (0..frontier.len())
                .map(|i| format!("(name = ${} and digest = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let mut stmt = Stmt::new(format!(
                "select version_id, body from version_inputs where kind = 'version' and ({}) \
                 order by version_id, position limit {}",
                ors.join(" or "),
                MAX_NODES + 1
            ));
            for n in &frontier {
                stmt = stmt.bind(n.model.as_str()).bind(n.version.to_string());
            }
            let mut rows: Vec<(Uuid, Json<Input>)> = conn.fetch_all(stmt).await?;
            out.truncated |= rows.len() > MAX_NODES;
            rows.truncate(MAX_NODES);
            let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
            let users = nodes_by_id(conn, &ids).await?;
            let mut links = Vec::new();
            for (user, Json(input)) in rows {
                if let (Input::Version(v), Some(u)) = (input, users.iter().find(|n| n.id == user)) {
                    links.push((
                        format!("{}:{}", v.model, v.version),
                        u.node().id,
                        v.relation,
                    ));
                }
            }
            (links, users)
        };
        for (from, to, relation) in links {
            let edge = LineageEdge { from, to, relation };
            if !out.edges.contains(&edge) {
                out.edges.push(edge);
            }
        }
        frontier = Vec::new();
        for n in next {
            if out.nodes.len() >= MAX_NODES {
                out.truncated = true;
                break;
            }
            if seen.insert(n.id) {
                out.nodes.push(n.node());
                frontier.push(n);
            }
        }
    }
    // An edge to a version left out by the bound goes too.
    let ids: std::collections::HashSet<&str> = out.nodes.iter().map(|n| n.id.as_str()).collect();
    let edges = std::mem::take(&mut out.edges);
    out.edges = edges
        .into_iter()
        .filter(|e| ids.contains(e.from.as_str()) && ids.contains(e.to.as_str()))
        .collect();
    Ok(out)
}
