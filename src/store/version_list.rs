//! The version list query, built once for both backends from a [`VersionQuery`]: the status
//! and tag filters, the `filter` clauses, the `order_by` key and the keyset position. Every
//! value is a bound parameter; only fixed SQL fragments are concatenated.
//!
//! Shape by version or creation time:
//! ```sql
//! select * from (
//!   select x.*, null as sort_value
//!   from (<version columns> where v.model_id = $1 and <filters>) x
//! ) y
//! where <after the cursor> order by <key>, y.version desc limit $n
//! ```
//! By a metric's last value, an index walk over the series' last values, then the versions
//! without the metric only if the page is not full (see [`by_metric`]).

use super::VersionQuery;
use super::sql::{Arg, Conn, Dialect, Stmt};
use crate::domain::filter::{
    Clause, Field, Filter, InputField, Op, SortKey, SortValue, Value, version_ref,
};
use crate::error::Result;
use std::marker::PhantomData;
use uuid::Uuid;

/// The last value of a metric (at its highest step) of the version with id `version_id`,
/// as the ingestion transaction keeps it on the series: one index probe.
pub(super) fn metric_last(version_id: &str, key: &str) -> String {
    format!(
        "(select s.last_value from metric_series s \
          where s.version_id = {version_id} and s.key = {key})"
    )
}

fn text(s: String) -> Arg {
    Arg::from(s)
}

/// A JSON argument (a map of strings always serializes).
fn json(map: &std::collections::BTreeMap<String, String>) -> Arg {
    Arg::Json(serde_json::value::to_raw_value(map).ok())
}

/// Builds one statement for the connection type `C`, from its fragments.
struct Builder<C> {
    args: Vec<Arg>,
    conn: PhantomData<C>,
}

impl<C: Conn> Builder<C> {
    fn new() -> Self {
        Self {
            args: Vec::new(),
            conn: PhantomData,
        }
    }

    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// For the Postgres planner's hints only (see `sql.rs`).
    fn pg(&self) -> bool {
        C::DIALECT == Dialect::Postgres
    }

    fn json_path(&mut self, members: &[String]) -> String {
        self.bind(C::json_path_arg(members))
    }

    /// `expr <op> s` for text; LIKE stays case-sensitive on SQLite (whose LIKE ignores ASCII
    /// case) as a GLOB.
    fn text_test(&mut self, expr: &str, op: Op, s: &str) -> String {
        match op {
            Op::Like => {
                let p = self.bind(C::like_arg(s));
                C::like(expr, &p)
            }
            Op::ILike => {
                let p = self.bind(text(s.to_owned()));
                C::ilike(expr, &p)
            }
            op => {
                let p = self.bind(text(s.to_owned()));
                format!("{expr} {} {p}", op.as_sql())
            }
        }
    }

    fn clause(&mut self, c: &Clause) -> String {
        let op = c.op.as_sql();
        match (&c.field, &c.value) {
            (Field::Status, Value::Text(s)) => {
                let p = self.bind(text(s.clone()));
                format!("v.status {op} {p}")
            }
            (Field::Metric(key), Value::Number(n)) => {
                let k = self.bind(text(key.clone()));
                let n = self.bind(Arg::from(*n));
                format!("{} {op} {n}", metric_last("v.id", &k))
            }
            (Field::Tag(key), Value::Text(s)) => {
                let k = self.bind(C::json_key_arg(key));
                let expr = C::json_text("v.tags", &k);
                self.text_test(&expr, c.op, s)
            }
            (Field::Config(path), Value::Number(n)) => {
                let p = self.json_path(path);
                let n = self.bind(Arg::from(*n));
                format!(
                    "{} {op} {}",
                    C::json_path_number("v.config", &p),
                    C::numeric(&n)
                )
            }
            (Field::Config(path), Value::Text(s)) => {
                let p = self.json_path(path);
                let expr = C::json_path_text("v.config", &p);
                self.text_test(&expr, c.op, s)
            }
            (Field::Id, Value::List(ids)) if c.op == Op::In => {
                let ids: Vec<Uuid> = ids.iter().filter_map(|i| Uuid::try_parse(i).ok()).collect();
                if ids.is_empty() {
                    return "false".to_owned();
                }
                let list: Vec<String> = ids.into_iter().map(|i| self.bind(Arg::from(i))).collect();
                format!("v.id in ({})", list.join(", "))
            }
            (Field::Id, Value::Text(id)) if matches!(c.op, Op::Eq | Op::Ne) => {
                match Uuid::try_parse(id) {
                    Ok(id) => format!("v.id {op} {}", self.bind(Arg::from(id))),
                    Err(_) if c.op == Op::Ne => "true".to_owned(),
                    Err(_) => "false".to_owned(),
                }
            }
            (Field::Input(field), Value::Text(s)) if matches!(c.op, Op::Eq | Op::Ne) => {
                let test = match field {
                    InputField::DatasetName => {
                        format!(
                            "i.kind = 'dataset' and i.name = {}",
                            self.bind(text(s.clone()))
                        )
                    }
                    InputField::DatasetDigest => format!(
                        "i.kind = 'dataset' and i.digest = {}",
                        self.bind(text(s.clone()))
                    ),
                    InputField::Version => {
                        let Some((model, number)) = version_ref(s) else {
                            return "false".to_owned();
                        };
                        let m = self.bind(text(model.to_owned()));
                        let n = self.bind(text(number.to_string()));
                        format!("i.kind = 'version' and i.name = {m} and i.digest = {n}")
                    }
                };
                let not = if c.op == Op::Ne { "not " } else { "" };
                format!(
                    "{not}exists (select 1 from version_inputs i where i.version_id = v.id and {test})"
                )
            }
            // The parsers admit no other pairing; an impossible one matches nothing.
            _ => "false".to_owned(),
        }
    }
}

/// The clauses of the filter `expression` that a version does not satisfy, written back (none:
/// it satisfies them all). The same SQL as the list's, one clause at a time.
pub(super) async fn failing_clauses<C: Conn>(
    conn: &mut C,
    model_id: Uuid,
    version: i64,
    expression: &str,
) -> Result<Vec<String>> {
    let filter = Filter::parse(expression).map_err(|e| e.with_field("require"))?;
    let mut b = Builder::<C> {
        args: vec![Arg::from(model_id), Arg::from(version)],
        conn: PhantomData,
    };
    let parts: Vec<String> = filter
        .clauses
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "select cast({i} as bigint) as i, \
                        cast(case when {} then 1 else 0 end as bigint) as ok \
                   from versions v where v.model_id = $1 and v.version = $2",
                b.clause(c)
            )
        })
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = Stmt::new(parts.join(" union all "));
    stmt.args = b.args;
    let rows: Vec<(i64, i64)> = conn.fetch_all(stmt).await?;
    Ok(filter
        .clauses
        .iter()
        .enumerate()
        .filter(|(i, _)| !rows.iter().any(|&(j, ok)| j == *i as i64 && ok == 1))
        .map(|(_, c)| c.to_string())
        .collect())
}

/// The list query and its parameters.
pub(crate) fn build<C: Conn>(model_id: Uuid, q: &VersionQuery) -> Stmt {
    let mut b = Builder::<C>::new();
    let mut conditions = vec![format!("v.model_id = {}", b.bind(Arg::from(model_id)))];
    if let Some(status) = q.status {
        let p = b.bind(text(status.as_str().to_owned()));
        conditions.push(format!("v.status = {p}"));
    }
    if !q.tags.is_empty() {
        let p = b.bind(json(q.tags.as_map()));
        conditions.push(C::contains_tags("v.tags", &p));
    }
    for c in q.filter.iter().flat_map(|f| &f.clauses) {
        conditions.push(b.clause(c));
    }

    if let SortKey::Metric(key) = &q.order.key {
        return by_metric(b, conditions, (model_id, key), q);
    }
    let sort_value = if b.pg() {
        "cast(null as double precision)"
    } else {
        "null"
    };
    let column = match q.order.key {
        SortKey::Metric(_) => "y.sort_value",
        SortKey::CreatedAt => "y.created_at",
        SortKey::Version => "y.version",
    };
    let (dir, cmp) = if q.order.descending {
        ("desc", "<")
    } else {
        ("asc", ">")
    };

    let keyset = match &q.after {
        None => "true".to_owned(),
        Some(after) => {
            let version = b.bind(Arg::from(after.version));
            match (&q.order.key, &after.value) {
                (SortKey::Version, _) => format!("y.version {cmp} {version}"),
                (SortKey::CreatedAt, SortValue::Time(t)) => {
                    let t = b.bind(Arg::from(*t));
                    format!("({column} {cmp} {t} or ({column} = {t} and y.version < {version}))")
                }
                (SortKey::Metric(_), SortValue::Number(n)) => {
                    let n = b.bind(Arg::from(*n));
                    format!(
                        "({column} {cmp} {n} or ({column} = {n} and y.version < {version}) \
                          or {column} is null)"
                    )
                }
                (SortKey::Metric(_), SortValue::Missing) => {
                    format!("({column} is null and y.version < {version})")
                }
                // A cursor's value always matches its order (checked when decoding it).
                _ => "false".to_owned(),
            }
        }
    };
    let order = match q.order.key {
        SortKey::Version => format!("y.version {dir}"),
        SortKey::CreatedAt => format!("y.created_at {dir}, y.version desc"),
        SortKey::Metric(_) => {
            format!("(y.sort_value is null), y.sort_value {dir}, y.version desc")
        }
    };
    let limit = b.bind(Arg::from(i64::from(q.limit) + 1));
    // Postgres would inline the sort value into the keyset and the order, computing it two or
    // three times a row; `offset 0` keeps the subquery whole so it is computed once.
    let fence = if b.pg() { " offset 0" } else { "" };
    let sql = format!(
        "select * from (select x.*, {sort_value} as sort_value from ({}where {}) x{fence}) y \
         where {keyset} order by {order} limit {limit}",
        version_select!(),
        conditions.join(" and ")
    );
    let mut stmt = Stmt::new(sql);
    stmt.args = b.args;
    stmt
}

/// The list in the order of a metric's last value: versions holding the metric first, walked
/// down the index (model_id, key, last_value) and stopped at the page's end, then — only when
/// they do not fill the page — the versions without it, newest first. Cost grows with the
/// page, not with the number of versions.
fn by_metric<C: Conn>(
    mut b: Builder<C>,
    conditions: Vec<String>,
    (model_id, key): (Uuid, &str),
    q: &VersionQuery,
) -> Stmt {
    let (dir, cmp) = if q.order.descending {
        ("desc", "<")
    } else {
        ("asc", ">")
    };
    let model = b.bind(Arg::from(model_id));
    let k = b.bind(text(key.to_owned()));
    let (with_value, without_value) = match &q.after {
        None => ("true".to_owned(), "true".to_owned()),
        Some(after) => {
            let version = b.bind(Arg::from(after.version));
            match after.value {
                SortValue::Number(n) => {
                    let n = b.bind(Arg::from(n));
                    (
                        format!(
                            "(s.last_value {cmp} {n} or (s.last_value = {n} and v.version < {version}))"
                        ),
                        "true".to_owned(),
                    )
                }
                SortValue::Missing => ("false".to_owned(), format!("v.version < {version}")),
                // A cursor's value always matches its order (checked when decoding it).
                _ => ("false".to_owned(), "false".to_owned()),
            }
        }
    };
    let limit = b.bind(Arg::from(i64::from(q.limit) + 1));
    let null = if b.pg() {
        "cast(null as double precision)"
    } else {
        "null"
    };
    // Postgres takes the first rows in the index's own order (the last value), ties
    // included, and orders ties by version outside: a plan that needs no sort of every
    // version holding the metric, whatever the statistics say. Right after a sweep loaded
    // thousands of versions, before autovacuum analyzed them, the planner expected one row,
    // sorted all of them by (value, version), and a top-10 took 100+ ms instead of 1 ms.
    let first = if b.pg() {
        format!("order by s.last_value {dir} fetch first {limit} rows with ties")
    } else {
        format!("order by s.last_value {dir}, v.version desc limit {limit}")
    };
    let conditions = conditions.join(" and ");
    let columns = "v.id, m.name as model, v.version, v.status, v.description, v.config, \
                   v.source, v.tags, v.status_reason, v.created_at, v.updated_at, v.created_by, \
                   v.erased_at, v.erased_by, v.digest, v.signed_by";
    let sql = format!(
        "with a as (select {columns}, s.last_value as sort_value \
            from metric_series s join versions v on v.id = s.version_id \
            join models m on m.id = v.model_id \
            where s.model_id = {model} and s.key = {k} and s.last_value is not null \
              and {conditions} and {with_value} \
            {first}), \
         b as (select {columns}, {null} as sort_value \
            from versions v join models m on m.id = v.model_id \
            where {conditions} and {without_value} \
              and (select count(*) from a) < {limit} \
              and not exists (select 1 from metric_series s where s.version_id = v.id \
                              and s.key = {k} and s.last_value is not null) \
            order by v.version desc limit {limit}) \
         select * from (select * from a union all select * from b) y \
         order by (y.sort_value is null), y.sort_value {dir}, y.version desc limit {limit}"
    );
    let mut stmt = Stmt::new(sql);
    stmt.args = b.args;
    stmt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TagFilter;
    use crate::domain::filter::{After, Filter, OrderBy};

    fn query(filter: &str, order: &str, after: Option<After>) -> VersionQuery {
        VersionQuery {
            status: None,
            tags: TagFilter::default(),
            filter: Some(Filter::parse(filter).unwrap()),
            order: OrderBy::parse(order).unwrap(),
            after,
            limit: 10,
            metrics: Vec::new(),
        }
    }

    #[test]
    fn every_value_is_a_parameter() {
        let q = query(
            r#"metric.acc > 0.5 and tag.team = "x'; drop table versions; --" and config.a.b = "y""#,
            "metric.acc:desc",
            Some(After {
                value: SortValue::Number(0.7),
                version: 3,
            }),
        );
        for stmt in [
            build::<sqlx::PgConnection>(Uuid::nil(), &q),
            build::<sqlx::SqliteConnection>(Uuid::nil(), &q),
        ] {
            let (sql, args) = (stmt.sql, stmt.args);
            assert!(!sql.contains("drop table"), "{sql}");
            assert!(!sql.contains("0.5") && !sql.contains("0.7"), "{sql}");
            // model, acc key+value, tag key+value, config path+value, the index walk's model
            // and key, cursor 2, limit
            assert_eq!(args.len(), 12, "{sql}");
            assert!(sql.contains(&format!("${}", args.len())));
            assert!(!sql.contains(&format!("${}", args.len() + 1)));
        }
    }

    #[test]
    fn postgres_walks_the_index_order_and_orders_ties_outside() {
        let q = query("metric.acc > 0.5", "metric.acc:desc", None);
        let sql = build::<sqlx::PgConnection>(Uuid::nil(), &q).sql;
        assert!(
            sql.contains("order by s.last_value desc fetch first $"),
            "{sql}"
        );
        assert!(sql.contains("rows with ties"), "{sql}");
        assert!(
            sql.contains("y.sort_value desc, y.version desc limit"),
            "{sql}"
        );
    }

    #[test]
    fn missing_values_sort_last_and_page_after_the_rest() {
        let q = query(
            "metric.acc >= 0",
            "metric.acc:asc",
            Some(After {
                value: SortValue::Missing,
                version: 9,
            }),
        );
        let sql = build::<sqlx::SqliteConnection>(Uuid::nil(), &q).sql;
        // After a missing value: no version with the metric, the rest newest first.
        assert!(sql.contains("and false order by s.last_value asc"), "{sql}");
        assert!(sql.contains("and v.version < $"), "{sql}");
        assert!(
            sql.contains("order by (y.sort_value is null), y.sort_value asc, y.version desc"),
            "{sql}"
        );
    }
}
