//! The details of a page of versions at once — artifacts, metric summaries, inputs and
//! schemas — in four statements whatever the page's size (MLflow's run search answers every run whole).

use super::sql::{Arg, Conn, Stmt};
use super::{Artifact, MetricSummary, Version, VersionDetail};
use crate::domain::ModelName;
use crate::domain::inputs::Input;
use crate::domain::schema::Schema;
use crate::error::Result;
use sqlx::types::Json;
use std::collections::HashMap;

#[derive(sqlx::FromRow)]
struct ArtifactOf {
    version: i64,
    #[sqlx(flatten)]
    artifact: Artifact,
}

#[derive(sqlx::FromRow)]
struct SummaryOf {
    version: i64,
    #[sqlx(flatten)]
    summary: MetricSummary,
}

/// The details of `versions`, all of `model`, in their order.
pub(crate) async fn of_page<C: Conn>(
    conn: &mut C,
    model: &ModelName,
    versions: Vec<Version>,
) -> Result<Vec<VersionDetail>> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    let scope = format!(
        "join versions v on v.id = {{id}} join models m on m.id = v.model_id \
         where m.name = $1 and {}",
        C::in_list("v.version", "$2")
    );
    let page = |sql: String| {
        Stmt::new(sql)
            .bind(model)
            .bind(Arg::I64List(numbers.clone()))
    };
    let artifacts: Vec<ArtifactOf> = conn
        .fetch_all(page(format!(
            "select v.version, a.path, a.size, a.sha256, a.content_type, a.created_at, \
                    a.object_key from artifacts a {} order by v.version, a.path",
            scope.replace("{id}", "a.version_id")
        )))
        .await?;
    let summaries: Vec<SummaryOf> = conn
        .fetch_all(page(format!(
            "select version, key, cast(sum(count) as bigint) as count, \
                    min(first_step) as first_step, max(last_step) as last_step, \
                    min(min) as min, max(max) as max, max(lastv) as last \
             from (select v.version, s.key, r.count, r.first_step, r.last_step, r.min, r.max, \
                          first_value(r.last) over (partition by s.id order by r.last_step desc) \
                            as lastv \
                   from metric_series s join metric_rollups r on r.series_id = s.id and r.level = 3 \
                   {}) x \
             group by version, key order by version, key",
            scope.replace("{id}", "s.version_id")
        )))
        .await?;
    let inputs: Vec<(i64, Json<Input>)> = conn
        .fetch_all(page(format!(
            "select v.version, i.body from version_inputs i {} order by v.version, i.position",
            scope.replace("{id}", "i.version_id")
        )))
        .await?;
    let schemas: Vec<(i64, Option<Json<Schema>>)> = conn
        .fetch_all(page(format!(
            "select v.version, v.interface_schema from versions {} and v.interface_schema is not null",
            scope
                .replace("join versions v on v.id = {id} ", "v ")
        )))
        .await?;
    let mut by_version: HashMap<i64, VersionDetail> = HashMap::new();
    let mut order = Vec::with_capacity(versions.len());
    for v in versions {
        order.push(v.version);
        by_version.insert(
            v.version,
            VersionDetail {
                version: v,
                artifacts: Vec::new(),
                metrics: Vec::new(),
                inputs: Vec::new(),
                schema: None,
            },
        );
    }
    for a in artifacts {
        if let Some(d) = by_version.get_mut(&a.version) {
            d.artifacts.push(a.artifact);
        }
    }
    for s in summaries {
        if let Some(d) = by_version.get_mut(&s.version) {
            d.metrics.push(s.summary);
        }
    }
    for (version, schema) in schemas {
        if let Some(d) = by_version.get_mut(&version) {
            d.schema = schema.map(|s| s.0);
        }
    }
    for (version, Json(input)) in inputs {
        if let Some(d) = by_version.get_mut(&version) {
            d.inputs.push(input);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|n| by_version.remove(&n))
        .collect())
}
