//! MLflow's search of logged models as one SQL statement (then the page's details in three
//! more): each condition an indexed test or an `exists` over tags, params or metric points,
//! each order key a column or a metric's latest value (by step) on the datasets asked, models
//! without the value last, newest first to break ties.

use super::logged_models::{Row, SELECT, with_details};
use super::sql::{Arg, Conn, Stmt};
use super::{LoggedModel, LoggedSearch};
use crate::domain::logged_model::{Cmp, Condition, Operand, Ordering, Subject};
use crate::domain::time;
use crate::error::Result;
use uuid::Uuid;

/// Appends SQL for a search to `sql`, binding into `args`.
struct Search<'a, C> {
    args: Vec<Arg>,
    datasets: &'a [(String, Option<String>)],
    conn: std::marker::PhantomData<C>,
}

impl<C: Conn> Search<'_, C> {
    fn bind(&mut self, a: impl Into<Arg>) -> String {
        self.args.push(a.into());
        format!("${}", self.args.len())
    }

    /// `column <cmp> value` for text, LIKE case-sensitive on both dialects.
    fn text(&mut self, column: &str, cmp: Cmp, value: &str) -> String {
        match cmp {
            Cmp::Like => {
                let p = self.bind(C::like_arg(value));
                C::like(column, &p)
            }
            Cmp::ILike => {
                let p = self.bind(value);
                C::ilike(column, &p)
            }
            cmp => {
                let p = self.bind(value);
                format!("{column} {} {p}", cmp.as_sql())
            }
        }
    }

    /// The metrics a condition or order on a metric counts: of the key, on the datasets asked.
    fn metric_scope(&mut self, key: &str, dataset: Option<(&str, Option<&str>)>) -> String {
        let k = self.bind(key);
        let mut scope = format!("x.logged_model_id = lm.id and x.key = {k}");
        let datasets: Vec<(String, Option<String>)> = match dataset {
            Some((n, d)) => vec![(n.to_owned(), d.map(str::to_owned))],
            None => self.datasets.to_vec(),
        };
        if !datasets.is_empty() {
            let mut any = Vec::new();
            for (name, digest) in datasets {
                let n = self.bind(name);
                match digest {
                    Some(d) => {
                        let d = self.bind(d);
                        any.push(format!("(x.dataset_name = {n} and x.dataset_digest = {d})"));
                    }
                    None => any.push(format!("x.dataset_name = {n}")),
                }
            }
            scope.push_str(&format!(" and ({})", any.join(" or ")));
        }
        scope
    }

    fn condition(&mut self, c: &Condition) -> String {
        match (&c.subject, &c.operand) {
            (Subject::Metric(key), Operand::Number(n)) => {
                let scope = self.metric_scope(key, None);
                let n = self.bind(*n);
                format!(
                    "exists (select 1 from logged_model_metrics x where {scope} and x.value {} {n})",
                    c.cmp.as_sql()
                )
            }
            (Subject::CreatedAt | Subject::UpdatedAt, Operand::Number(n)) => {
                let column = if c.subject == Subject::CreatedAt {
                    "lm.created_at"
                } else {
                    "lm.updated_at"
                };
                let at = time::from_micros((*n as i64).saturating_mul(1000));
                let p = self.bind(at);
                format!("{column} {} {p}", c.cmp.as_sql())
            }
            (Subject::Tag(key) | Subject::Param(key), Operand::Text(v)) => {
                let table = if matches!(c.subject, Subject::Tag(_)) {
                    "logged_model_tags"
                } else {
                    "logged_model_params"
                };
                let k = self.bind(key.as_str());
                // != holds for a model without the key, as MLflow's server answers.
                let (cmp, negate) = match c.cmp {
                    Cmp::Ne => (Cmp::Eq, true),
                    other => (other, false),
                };
                let test = self.text("x.value", cmp, v);
                format!(
                    "{}exists (select 1 from {table} x where x.logged_model_id = lm.id \
                     and x.key = {k} and {test})",
                    if negate { "not " } else { "" }
                )
            }
            (Subject::SourceRunId, Operand::Text(v)) => {
                let id = Uuid::try_parse(v.trim_start_matches("m-")).ok();
                match (c.cmp, id) {
                    (Cmp::Eq, Some(id)) => format!("lm.source_version = {}", self.bind(id)),
                    (Cmp::Ne, Some(id)) => format!(
                        "(lm.source_version is null or lm.source_version <> {})",
                        self.bind(id)
                    ),
                    (Cmp::Ne, None) => "1 = 1".to_owned(),
                    _ => "1 = 0".to_owned(),
                }
            }
            (subject, Operand::Text(v)) => {
                let column = match subject {
                    Subject::Name => "lm.name",
                    Subject::Status => "lm.status",
                    _ => "lm.model_type",
                };
                self.text(column, c.cmp, v)
            }
            (_, Operand::Number(_)) => "1 = 0".to_owned(),
        }
    }

    /// An order key's SQL: the latest value (by step, then time) of a metric, a param, or a
    /// column.
    fn order_key(&mut self, o: &Ordering) -> String {
        match &o.subject {
            Subject::Metric(key) => {
                let dataset = o
                    .dataset_name
                    .as_deref()
                    .map(|n| (n, o.dataset_digest.as_deref()));
                let scope = self.metric_scope(key, dataset);
                format!(
                    "(select x.value from logged_model_metrics x where {scope} \
                     order by x.step desc, x.timestamp_ms desc, x.position desc limit 1)"
                )
            }
            Subject::Param(key) => {
                let k = self.bind(key.as_str());
                format!(
                    "(select x.value from logged_model_params x where x.logged_model_id = lm.id \
                     and x.key = {k})"
                )
            }
            Subject::Name => "lm.name".to_owned(),
            Subject::Status => "lm.status".to_owned(),
            Subject::ModelType => "lm.model_type".to_owned(),
            Subject::SourceRunId => "lm.source_version".to_owned(),
            Subject::UpdatedAt => "lm.updated_at".to_owned(),
            Subject::CreatedAt | Subject::Tag(_) => "lm.created_at".to_owned(),
        }
    }
}

pub(super) async fn search<C: Conn>(
    conn: &mut C,
    s: &LoggedSearch,
) -> Result<(Vec<LoggedModel>, bool)> {
    if s.model_ids.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut q = Search::<C> {
        args: Vec::new(),
        datasets: &s.datasets,
        conn: std::marker::PhantomData,
    };
    let scope: Vec<String> = s.model_ids.iter().map(|id| q.bind(*id)).collect();
    let mut wheres = vec![
        format!("lm.model_id in ({})", scope.join(", ")),
        "lm.deleted_at is null".to_owned(),
    ];
    for c in &s.conditions {
        wheres.push(q.condition(c));
    }
    let mut orders = Vec::new();
    for o in &s.order {
        let key = q.order_key(o);
        // Models without the value come last either way, as on MLflow's server.
        orders.push(format!("case when {key} is null then 1 else 0 end"));
        orders.push(format!(
            "{key} {}",
            if o.ascending { "asc" } else { "desc" }
        ));
    }
    orders.push("lm.created_at desc".to_owned());
    orders.push("lm.id desc".to_owned());
    let limit = q.bind(s.limit + 1);
    let offset = q.bind(s.offset);
    let sql = format!(
        "{SELECT}where {} order by {} limit {limit} offset {offset}",
        wheres.join(" and "),
        orders.join(", ")
    );
    let mut stmt = Stmt::new(sql);
    stmt.args = q.args;
    let mut rows: Vec<Row> = conn.fetch_all(stmt).await?;
    let more = rows.len() as i64 > s.limit;
    rows.truncate(usize::try_from(s.limit).unwrap_or(0));
    Ok((with_details(conn, rows).await?, more))
}
