//! Models: create, create-or-update, read, list, patch and delete, each one transaction.

use super::cards::{CardChange, CardOf, CardView};
use super::rows::ModelRow;
use super::sql::{Conn, Stmt};
use super::{
    Actor, Backend, Model, ModelQuery, NewEvent, NewModel, Page, Patch, PutModel, SqlStore, events,
    page,
};
use crate::domain::change::{self, Change};
use crate::domain::time::{self, Timestamp};
use crate::domain::{Description, ModelName, Tags, cursor};
use crate::error::{Error, Result};
use async_trait::async_trait;
use std::collections::BTreeMap;
use tracing::instrument;
use uuid::Uuid;

#[async_trait]
pub trait ModelStore {
    async fn create_model(&self, new: NewModel, actor: &Actor) -> Result<Model>;
    /// A model's card, or a version's with the fields in effect.
    async fn get_card(&self, model: &ModelName, of: CardOf) -> Result<CardView>;
    /// Replaces or patches a card; records the fields that changed.
    async fn set_card(
        &self,
        model: &ModelName,
        of: CardOf,
        change: CardChange,
        actor: &Actor,
    ) -> Result<CardView>;
    /// Creates or updates; the flag says whether it was created.
    async fn put_model(
        &self,
        name: &ModelName,
        put: PutModel,
        actor: &Actor,
    ) -> Result<(Model, bool)>;
    async fn get_model(&self, name: &ModelName) -> Result<Model>;
    /// A model by its id (the MLflow layer names experiments by id); 404 `model_not_found`.
    async fn get_model_by_id(&self, id: Uuid) -> Result<Model>;
    async fn list_models(&self, query: &ModelQuery) -> Result<Page<Model>>;
    async fn update_model(&self, name: &ModelName, patch: Patch, actor: &Actor) -> Result<Model>;
    async fn delete_model(&self, name: &ModelName, actor: &Actor) -> Result<()>;
}

macro_rules! model_select {
    () => {
        "select id, name, description, tags, last_version, created_at, updated_at, created_by from models "
    };
}

const BY_NAME: &str = concat!(model_select!(), "where name = $1");
const BY_ID: &str = concat!(model_select!(), "where id = $1");
const BY_NAME_LOCKED: &str = concat!(model_select!(), "where name = $1 for update");

/// The model's row; `lock` takes its row lock until commit where the dialect has row locks.
pub(crate) async fn row<C: Conn>(conn: &mut C, name: &ModelName, lock: bool) -> Result<ModelRow> {
    let sql = if lock && C::ROW_LOCKS {
        BY_NAME_LOCKED
    } else {
        BY_NAME
    };
    conn.fetch_optional(Stmt::new(sql).bind(name))
        .await?
        .ok_or_else(|| Error::model_not_found(name.as_str()))
}

/// The stages holding a version, for each of these models (by name), in one query.
async fn stages_of<C: Conn>(
    conn: &mut C,
    names: Vec<String>,
) -> Result<BTreeMap<String, BTreeMap<String, i64>>> {
    let sql = format!(
        "select m.name, s.name, s.version from stages s join models m on m.id = s.model_id \
         where {} and s.version is not null",
        C::in_list("m.name", "$1")
    );
    let rows: Vec<(String, String, i64)> = conn.fetch_all(Stmt::new(sql).bind(names)).await?;
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (model, stage, version) in rows {
        out.entry(model).or_default().insert(stage, version);
    }
    Ok(out)
}

async fn full<C: Conn>(conn: &mut C, row: ModelRow) -> Result<Model> {
    let mut stages = stages_of(conn, vec![row.name.clone()]).await?;
    let own = stages.remove(&row.name).unwrap_or_default();
    Ok(row.into_model(own))
}

/// Inserts a model unless the name is taken; whether it did.
async fn insert<C: Conn>(
    conn: &mut C,
    id: Uuid,
    name: &ModelName,
    description: &Option<Description>,
    tags: &Tags,
    now: Timestamp,
    actor: &Actor,
) -> Result<bool> {
    let stmt = Stmt::new(
        "insert into models (id, name, description, tags, created_at, updated_at, created_by) \
         values ($1, $2, $3, $4, $5, $5, $6) on conflict (name) do nothing",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .json(tags)
    .bind(now)
    .bind(&actor.name);
    let details = serde_json::json!({"description": description, "tags": tags});
    if conn.execute(stmt).await? != 1 {
        return Ok(false);
    }
    let event = NewEvent::model("model.created", id, name.as_str(), now).details(details);
    events::record(conn, event, actor).await?;
    Ok(true)
}

/// Writes a model's new description and tags and records `model.updated`.
async fn write_change<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    name: &ModelName,
    change: Change,
    actor: &Actor,
) -> Result<()> {
    let now = time::now();
    let stmt =
        Stmt::new("update models set description = $2, tags = $3, updated_at = $4 where id = $1")
            .bind(model_id)
            .bind(&change.description)
            .json(&change.tags)
            .bind(now);
    conn.execute(stmt).await?;
    let event =
        NewEvent::model("model.updated", model_id, name.as_str(), now).details(change.details());
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn create<C: Conn>(conn: &mut C, new: NewModel, actor: &Actor) -> Result<Model> {
    let id = Uuid::now_v7();
    if !insert(
        conn,
        id,
        &new.name,
        &new.description,
        &new.tags,
        time::now(),
        actor,
    )
    .await?
    {
        return Err(Error::conflict(
            "model_exists",
            format!("model '{}' already exists", new.name),
        ));
    }
    Ok(row(conn, &new.name, false)
        .await?
        .into_model(BTreeMap::new()))
}

async fn put<C: Conn>(
    conn: &mut C,
    name: &ModelName,
    put: PutModel,
    actor: &Actor,
) -> Result<(Model, bool)> {
    let tags = put.tags.clone().unwrap_or_default();
    if insert(
        conn,
        Uuid::now_v7(),
        name,
        &put.description,
        &tags,
        time::now(),
        actor,
    )
    .await?
    {
        let model = row(conn, name, false).await?.into_model(BTreeMap::new());
        return Ok((model, true));
    }
    let current = row(conn, name, true).await?;
    let (id, stored) = (current.id, current.described());
    match change::put(&stored, put.description, put.tags) {
        None => Ok((full(conn, current).await?, false)),
        Some(change) => {
            write_change(conn, id, name, change, actor).await?;
            let updated = row(conn, name, false).await?;
            Ok((full(conn, updated).await?, false))
        }
    }
}

async fn update<C: Conn>(
    conn: &mut C,
    name: &ModelName,
    patch: Patch,
    actor: &Actor,
) -> Result<Model> {
    let current = row(conn, name, true).await?;
    if let Some(change) = change::patch(&current.described(), &patch)? {
        write_change(conn, current.id, name, change, actor).await?;
    }
    let updated = row(conn, name, false).await?;
    full(conn, updated).await
}

async fn delete<C: Conn>(conn: &mut C, name: &ModelName, actor: &Actor) -> Result<()> {
    let current = row(conn, name, true).await?;
    if current.last_version > 0 {
        return Err(Error::conflict(
            "model_not_empty",
            format!(
                "model '{name}' has {} versions; only a model without versions can be deleted",
                current.last_version
            ),
        ));
    }
    // MLflow's logged models (made in the experiment, never registered) hold files too: the
    // model is not empty while it has any.
    let logged: i64 = conn
        .scalar(
            Stmt::new("select count(*) from logged_models where model_id = $1").bind(current.id),
        )
        .await?;
    if logged > 0 {
        return Err(Error::conflict(
            "model_not_empty",
            format!(
                "model '{name}' has {logged} logged models (MLflow); delete it with cascade=true to delete them too"
            ),
        ));
    }
    // Stage rows can only be empty here (a stage needs a version); they and the stages'
    // policies go with the model.
    conn.execute(Stmt::new("delete from stages where model_id = $1").bind(current.id))
        .await?;
    conn.execute(Stmt::new("delete from stage_guards where model_id = $1").bind(current.id))
        .await?;
    conn.execute(Stmt::new("delete from retention_policies where model_id = $1").bind(current.id))
        .await?;
    conn.execute(Stmt::new("delete from stage_policies where model_id = $1").bind(current.id))
        .await?;
    conn.execute(Stmt::new("delete from models where id = $1").bind(current.id))
        .await?;
    let event = NewEvent::model("model.deleted", current.id, name.as_str(), time::now());
    events::record(conn, event, actor).await?;
    Ok(())
}

async fn list<C: Conn>(conn: &mut C, q: &ModelQuery) -> Result<Page<Model>> {
    let sql = format!(
        concat!(
            model_select!(),
            "where ($1 is null or {}) and ($2 is null or {}) \
               and (cast($3 as text) is null or name > $3) and ($5 is null or {}) \
             order by name limit $4"
        ),
        C::starts_with("name", "$1"),
        C::contains_tags("tags", "$2"),
        C::like_any("name", "$5"),
    );
    let mut stmt = Stmt::new(sql).bind(q.prefix.clone());
    stmt = if q.tags.is_empty() {
        stmt.bind(super::sql::Arg::Json(None))
    } else {
        stmt.json(q.tags.as_map())
    };
    let stmt = stmt
        .bind(q.after.clone())
        .bind(i64::from(q.limit) + 1)
        .bind(q.visible.clone());
    let rows: Vec<ModelRow> = conn.fetch_all(stmt).await?;
    let mut stages = stages_of(conn, rows.iter().map(|r| r.name.clone()).collect()).await?;
    let items = rows
        .into_iter()
        .map(|r| {
            let own = stages.remove(&r.name).unwrap_or_default();
            r.into_model(own)
        })
        .collect();
    Ok(page(items, q.limit, |m: &Model| {
        cursor::encode("m", &m.name)
    }))
}

#[async_trait]
impl<B: Backend> ModelStore for SqlStore<B> {
    async fn get_card(&self, model: &ModelName, of: CardOf) -> Result<CardView> {
        let mut conn = self.db.read().await?;
        super::cards::get(&mut *conn, model, of).await
    }

    #[instrument(skip_all, fields(model = %model))]
    async fn set_card(
        &self,
        model: &ModelName,
        of: CardOf,
        change: CardChange,
        actor: &Actor,
    ) -> Result<CardView> {
        transaction!(self.db, |c| super::cards::set(c, model, of, change, actor))
    }

    #[instrument(skip_all, fields(model = %new.name))]
    async fn create_model(&self, new: NewModel, actor: &Actor) -> Result<Model> {
        transaction!(self.db, |c| create(c, new, actor))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn put_model(
        &self,
        name: &ModelName,
        p: PutModel,
        actor: &Actor,
    ) -> Result<(Model, bool)> {
        transaction!(self.db, |c| put(c, name, p, actor))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn get_model(&self, name: &ModelName) -> Result<Model> {
        let mut conn = self.db.read().await?;
        let r = row(&mut *conn, name, false).await?;
        full(&mut *conn, r).await
    }

    #[instrument(skip_all, fields(model_id = %id))]
    async fn get_model_by_id(&self, id: Uuid) -> Result<Model> {
        let mut conn = self.db.read().await?;
        let r: ModelRow = conn
            .fetch_optional(Stmt::new(BY_ID).bind(id))
            .await?
            .ok_or_else(|| Error::model_not_found(&id.to_string()))?;
        full(&mut *conn, r).await
    }

    #[instrument(skip_all)]
    async fn list_models(&self, q: &ModelQuery) -> Result<Page<Model>> {
        let mut conn = self.db.read().await?;
        list(&mut *conn, q).await
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn update_model(&self, name: &ModelName, patch: Patch, actor: &Actor) -> Result<Model> {
        transaction!(self.db, |c| update(c, name, patch, actor))
    }

    #[instrument(skip_all, fields(model = %name))]
    async fn delete_model(&self, name: &ModelName, actor: &Actor) -> Result<()> {
        transaction!(self.db, |c| delete(c, name, actor))
    }
}
