//! Model and version cards as stored: a JSON column on the model's row and on the version's,
//! changed under that row's lock and recorded in events (`model.card_updated`,
//! `version.card_updated`). A version's card may change whatever its status: it describes the
//! version, it is not what the version is.

use super::sql::{Conn, Stmt};
use super::{Actor, NewEvent, events, models, versions};
use crate::domain::ModelName;
use crate::domain::card::Card;
use crate::domain::time::{self, Timestamp};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::types::Json;
use uuid::Uuid;

/// The column's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    card: Card,
    updated_at: Timestamp,
    updated_by: String,
}

/// A card as the API shows it: its own fields; for a version, the fields in effect (its own
/// over its model's) too; and when and by whom it was last changed (absent: never set).
#[derive(Debug, Clone, Serialize)]
pub struct CardView {
    pub card: Card,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<Card>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::domain::time::rfc3339::option::serialize"
    )]
    pub updated_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// A change to a card: the whole card (PUT) or some fields (PATCH).
#[derive(Debug, Clone)]
pub enum CardChange {
    Replace(Card),
    Patch(Map<String, Value>),
}

/// Whose card: a model's, or one of its versions'.
#[derive(Debug, Clone, Copy)]
pub enum CardOf {
    Model,
    Version(i64),
}

async fn stored<C: Conn>(conn: &mut C, table: &str, id: Uuid) -> Result<Option<Stored>> {
    let stmt = Stmt::new(format!("select card from {table} where id = $1")).bind(id);
    let row: Option<(Option<Json<Stored>>,)> = conn.fetch_optional(stmt).await?;
    Ok(row.and_then(|(s,)| s).map(|Json(s)| s))
}

fn view(own: Option<Stored>, base: Option<&Card>) -> CardView {
    let (card, updated_at, updated_by) = match own {
        Some(s) => (s.card, Some(s.updated_at), Some(s.updated_by)),
        None => (Card::default(), None, None),
    };
    CardView {
        effective: base.map(|b| card.over(b)),
        card,
        updated_at,
        updated_by,
    }
}

/// A model's card or a version's (with the fields in effect).
pub(crate) async fn get<C: Conn>(conn: &mut C, model: &ModelName, of: CardOf) -> Result<CardView> {
    let m = models::row(conn, model, false).await?;
    let model_card = stored(conn, "models", m.id).await?;
    match of {
        CardOf::Model => Ok(view(model_card, None)),
        CardOf::Version(number) => {
            let v = versions::row(conn, model, number, false).await?;
            let own = stored(conn, "versions", v.id).await?;
            let base = model_card.map(|s| s.card).unwrap_or_default();
            Ok(view(own, Some(&base)))
        }
    }
}

/// Changes a card under its row's lock; records the fields that changed (none: no event).
pub(crate) async fn set<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    of: CardOf,
    change: CardChange,
    actor: &Actor,
) -> Result<CardView> {
    let m = models::row(conn, model, matches!(of, CardOf::Model)).await?;
    let (table, id, action, version) = match of {
        CardOf::Model => ("models", m.id, "model.card_updated", None),
        CardOf::Version(n) => {
            let v = versions::row(conn, model, n, true).await?;
            ("versions", v.id, "version.card_updated", Some(n))
        }
    };
    let before = stored(conn, table, id).await?;
    let held = before.as_ref().map(|s| s.card.clone()).unwrap_or_default();
    let card = match change {
        CardChange::Replace(card) => card,
        CardChange::Patch(fields) => held.patched(fields)?,
    };
    let changes = card.changes_from(&held);
    let base = match of {
        CardOf::Model => None,
        CardOf::Version(_) => Some(
            stored(conn, "models", m.id)
                .await?
                .map(|s| s.card)
                .unwrap_or_default(),
        ),
    };
    if changes.is_empty() {
        return Ok(view(before, base.as_ref()));
    }
    let now = time::now();
    let next = Stored {
        card,
        updated_at: now,
        updated_by: actor.name.clone(),
    };
    let stmt = Stmt::new(format!("update {table} set card = $1 where id = $2"))
        .json(&next)
        .bind(id);
    conn.execute(stmt).await?;
    let mut event =
        NewEvent::model(action, m.id, model.as_str(), now).details(json!({"changed": changes}));
    if let Some(n) = version {
        event = event.version(n);
    }
    events::record(conn, event, actor).await?;
    Ok(view(Some(next), base.as_ref()))
}
