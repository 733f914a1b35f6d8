//! Integrity checks of what the database records (`modelreg verify`). Each check is one query
//! for the rows that break a rule the flows keep, written once for both dialects, so a sound
//! registry costs a few scans and yields nothing.

use super::sql::{Conn, Stmt};
use super::{Backend, SqlStore};
use crate::domain::metrics::{LEVEL_FACTOR, LEVELS, SUM_SCALE};
use crate::error::Result;
use async_trait::async_trait;
use serde::Serialize;

#[async_trait]
pub trait VerifyStore {
    /// What the database records that breaks one of the registry's rules; empty when sound.
    async fn integrity_findings(&self) -> Result<Vec<Finding>>;
    /// Every artifact row: where its object is and what it must hold.
    async fn artifact_records(&self) -> Result<Vec<ArtifactRecord>>;
}

/// One broken rule, at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which rule: `versions_gapless`, `event_missing`, `stage_stack`, `stage_history`,
    /// `stage_version`, `rollup`, and for artifacts `artifact_missing`, `artifact_size`,
    /// `artifact_checksum`.
    pub check: &'static str,
    pub detail: String,
}

/// An artifact as its row records it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRecord {
    pub model: String,
    pub version: i64,
    pub path: String,
    pub object_key: String,
    pub size: i64,
    pub sha256: String,
}

/// Most findings one check reports.
const MAX_FINDINGS: i64 = 100;

/// `(check, query)`: each query selects one text column describing a broken row.
fn checks() -> Vec<(&'static str, String)> {
    let mut out = vec![
        (
            "versions_gapless",
            "select m.name || ': ' || cast(count(v.id) as text) || ' versions, numbered up to ' \
               || cast(m.last_version as text) || ', highest ' \
               || cast(coalesce(max(v.version), 0) as text) \
             from models m left join versions v on v.model_id = m.id \
             group by m.id, m.name, m.last_version \
             having count(v.id) <> m.last_version or coalesce(max(v.version), 0) <> m.last_version"
                .to_owned(),
        ),
        (
            "event_missing",
            "select 'model ' || m.name || ' has no model.created' from models m \
             where not exists (select 1 from events e \
                               where e.model_id = m.id and e.action = 'model.created')"
                .to_owned(),
        ),
        (
            "event_missing",
            "select m.name || ' v' || cast(v.version as text) || ' has no version.created' \
             from versions v join models m on m.id = v.model_id \
             where not exists (select 1 from events e where e.model_id = v.model_id \
                               and e.version = v.version and e.action = 'version.created')"
                .to_owned(),
        ),
        (
            "event_missing",
            "select m.name || ' v' || cast(v.version as text) || ' is ' || v.status \
               || ' but has no version.finalized' \
             from versions v join models m on m.id = v.model_id \
             where v.status in ('ready', 'archived') \
               and not exists (select 1 from events e where e.model_id = v.model_id \
                               and e.version = v.version and e.action = 'version.finalized')"
                .to_owned(),
        ),
        (
            "event_missing",
            "select m.name || ' v' || cast(v.version as text) || ' artifact ' || a.path \
               || ' has no artifact.uploaded' \
             from artifacts a join versions v on v.id = a.version_id \
             join models m on m.id = v.model_id \
             where not exists (select 1 from events e where e.model_id = v.model_id \
                               and e.version = v.version and e.action = 'artifact.uploaded' \
                               and e.details ->> 'path' = a.path)"
                .to_owned(),
        ),
        (
            "stage_stack",
            "select m.name || '/' || s.name || ': points at ' || coalesce(cast(s.version as text), 'nothing') \
               || ' with depth ' || cast(s.depth as text) || ', its stack disagrees' \
             from stages s join models m on m.id = s.model_id \
             where (s.version is null and s.depth <> 0) or (s.version is not null and s.depth = 0) \
                or s.depth <> (select count(*) from stage_stack k \
                               where k.model_id = s.model_id and k.stage = s.name) \
                or (s.version is not null and not exists ( \
                      select 1 from stage_stack k where k.model_id = s.model_id \
                      and k.stage = s.name and k.position = s.depth and k.version = s.version))"
                .to_owned(),
        ),
        (
            "stage_history",
            "select m.name || '/' || s.name || ': points at ' || coalesce(cast(s.version as text), 'nothing') \
               || ', its last history entry says otherwise' \
             from stages s join models m on m.id = s.model_id \
             where coalesce(s.version, -1) <> coalesce((select e.version from events e \
                      where e.model_id = s.model_id and e.stage = s.name \
                        and e.action in ('stage.promoted', 'stage.rolled_back', 'stage.cleared') \
                      order by e.id desc limit 1), -1) \
                or (s.version is not null and coalesce(s.event_id, -1) <> (select max(e.id) from events e \
                      where e.model_id = s.model_id and e.stage = s.name \
                        and e.action in ('stage.promoted', 'stage.rolled_back', 'stage.cleared')))"
                .to_owned(),
        ),
        (
            "erased_version",
            "select m.name || ' v' || cast(v.version as text) || ' is erased but still has ' || \
                    case when exists (select 1 from artifacts a where a.version_id = v.id) then 'artifacts' \
                         when exists (select 1 from metric_series s where s.version_id = v.id) then 'metrics' \
                         when exists (select 1 from version_inputs i where i.version_id = v.id) then 'inputs' \
                         when exists (select 1 from stage_stack k where k.model_id = v.model_id \
                                      and k.version = v.version) then 'a place in a stage''s stack' \
                         else 'no version.erased event' end \
             from versions v join models m on m.id = v.model_id \
             where v.status = 'erased' and ( \
                   exists (select 1 from artifacts a where a.version_id = v.id) \
                or exists (select 1 from metric_series s where s.version_id = v.id) \
                or exists (select 1 from version_inputs i where i.version_id = v.id) \
                or exists (select 1 from stage_stack k where k.model_id = v.model_id and k.version = v.version) \
                or not exists (select 1 from events e where e.model_id = v.model_id \
                               and e.version = v.version and e.action = 'version.erased'))"
                .to_owned(),
        ),
        (
            "stage_version",
            "select m.name || '/' || s.name || ': v' || cast(s.version as text) || ' is not ready' \
             from stages s join models m on m.id = s.model_id \
             where s.version is not null and not exists (select 1 from versions v \
                   where v.model_id = s.model_id and v.version = s.version and v.status = 'ready')"
                .to_owned(),
        ),
        (
            "metric_last_value",
            "select m.name || ' v' || cast(v.version as text) || ' ' || s.key \
               || ': the series is filed under another model than its version' \
             from metric_series s join versions v on v.id = s.version_id \
             join models m on m.id = v.model_id where s.model_id <> v.model_id"
                .to_owned(),
        ),
        (
            "compaction",
            "select m.name || ' v' || cast(v.version as text) || ' ' || s.key \
               || ': its points could not be packed: ' || s.compact_error \
             from metric_series s join versions v on v.id = s.version_id \
             join models m on m.id = v.model_id where s.compact_error is not null"
                .to_owned(),
        ),
    ];
    out.extend(rollup_checks());
    out
}

/// Rollups against what they summarize: level 1 against the points, each level above against
/// the one below. Sums are compared within a rounding bound (the order of additions differs).
fn rollup_checks() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    // Level 1 is checked against the points by `verify_points`: packed points need decoding.
    for (level, _) in LEVELS.iter().skip(1) {
        let (source, group, parts) = {
            let below = level - 1;
            (
                format!(
                    "select series_id, block / {LEVEL_FACTOR} as block, sum(count) as c, \
                     min(min) as mn, max(max) as mx, sum(scaled_sum) as ss, \
                     min(first_step) as fs, max(last_step) as ls \
                     from metric_rollups where level = {below} \
                     group by series_id, block / {LEVEL_FACTOR}"
                ),
                format!(
                    "select distinct series_id, block / {LEVEL_FACTOR} as block \
                     from metric_rollups where level = {below}"
                ),
                format!(
                    "(select q.last from metric_rollups q where q.series_id = r.series_id \
                      and q.level = {below} and q.last_step = r.last_step)"
                ),
            )
        };
        out.push((
            "rollup",
            format!(
                "select 'series ' || cast(r.series_id as text) || ' level {level} block ' \
                   || cast(r.block as text) || ' disagrees with what it summarizes' \
                 from metric_rollups r left join ({source}) p \
                   on p.series_id = r.series_id and p.block = r.block \
                 where r.level = {level} and (p.c is null or p.c <> r.count or p.mn <> r.min \
                   or p.mx <> r.max or p.fs <> r.first_step or p.ls <> r.last_step \
                   or abs(p.ss - r.scaled_sum) > 1e-9 * {SUM_SCALE:e} * r.count \
                      * (abs(r.min) * 0.5 + abs(r.max) * 0.5) * 2 + 1e-300 \
                   or coalesce({parts}, r.last + 1) <> r.last)"
            ),
        ));
        out.push((
            "rollup",
            format!(
                "select 'series ' || cast(p.series_id as text) || ' level {level} block ' \
                   || cast(p.block as text) || ' is missing' from ({group}) p \
                 where not exists (select 1 from metric_rollups r where r.series_id = p.series_id \
                   and r.level = {level} and r.block = p.block)"
            ),
        ));
    }
    out
}

async fn findings<C: Conn>(conn: &mut C) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for (check, sql) in checks() {
        let sql = format!("{sql} limit {MAX_FINDINGS}");
        let rows: Vec<(String,)> = conn.fetch_all(Stmt::new(sql)).await?;
        out.extend(rows.into_iter().map(|(detail,)| Finding { check, detail }));
    }
    out.extend(super::verify_points::findings(conn, MAX_FINDINGS as usize).await?);
    out.extend(super::digests::findings(conn, MAX_FINDINGS as usize).await?);
    Ok(out)
}

#[async_trait]
impl<B: Backend> VerifyStore for SqlStore<B> {
    async fn integrity_findings(&self) -> Result<Vec<Finding>> {
        let mut conn = self.db.read().await?;
        findings(&mut *conn).await
    }

    async fn artifact_records(&self) -> Result<Vec<ArtifactRecord>> {
        let mut conn = self.db.read().await?;
        let stmt = Stmt::new(
            "select m.name as model, v.version, a.path, a.object_key, a.size, a.sha256 \
             from artifacts a join versions v on v.id = a.version_id \
             join models m on m.id = v.model_id order by m.name, v.version, a.path",
        );
        conn.fetch_all(stmt).await
    }
}
