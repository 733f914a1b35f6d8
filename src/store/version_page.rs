//! A version list page from the list query's rows, cut at its limit or its byte budget.

use super::rows::ListedVersionRow;
use super::{Page, Version, VersionQuery};
use crate::domain::filter::{After, SortKey, SortValue};
use crate::error::Result;

/// Most bytes of configs and sources one page carries: a page ends early (with a cursor)
/// once its versions hold this much, however many `limit` allows. A single larger version
/// still makes a page of its own.
pub(crate) const PAGE_BYTES: usize = 8 << 20;

/// The page from the query's rows (at most `limit + 1` are asked for), read one at a time
/// and no further than the page needs; its cursor at the last version's sort position.
pub(crate) async fn collect_page<S>(mut rows: S, q: &VersionQuery) -> Result<Page<Version>>
where
    S: futures::Stream<Item = Result<ListedVersionRow>> + Unpin,
{
    use futures::StreamExt;
    let mut items: Vec<(Version, Option<f64>)> = Vec::new();
    let mut bytes = 0;
    let mut more = false;
    while let Some(row) = rows.next().await {
        let row = row?;
        if items.len() >= q.limit as usize || bytes >= PAGE_BYTES {
            more = true;
            break;
        }
        bytes += row.row.config.0.get().len() + row.row.source.0.get().len();
        items.push((row.row.into_version()?, row.sort_value));
    }
    let next_cursor = match items.last() {
        Some((v, sort_value)) if more => {
            let value = match q.order.key {
                SortKey::Metric(_) => sort_value.map_or(SortValue::Missing, SortValue::Number),
                SortKey::CreatedAt => SortValue::Time(v.created_at),
                SortKey::Version => SortValue::Version,
            };
            Some(q.order.encode_cursor(&After {
                value,
                version: v.version,
            }))
        }
        _ => None,
    };
    Ok(Page {
        items: items.into_iter().map(|(v, _)| v).collect(),
        next_cursor,
    })
}
