//! MLflow SearchRuns: the runs of one experiment, filtered and ordered by translating MLflow's
//! filter and `order_by` strings onto modelreg's filter and order (the version list's own
//! query, not a second engine). `metrics.k > 0.9` is `metric.k > 0.9`; `params.k = 'v'` is
//! `config.k = "v"` (params are stored as strings); `tags.k = 'v'` is `tag.k = "v"`;
//! `attributes.status = 'FINISHED'` is `status = ready`; `attributes.run_name = 'x'` is the
//! `mlflow.runName` tag. Order: `metrics.k [ASC|DESC]` or `attributes.start_time`.

use super::super::Endpoint;
use super::super::extract::Json;
use super::experiments;
use super::run_view::{Run, run_in};
use crate::AppState;
use crate::domain::ModelName;
use crate::domain::TagFilter;
use crate::domain::access::{Principal, Scope};
use crate::domain::filter::{
    Clause, Field, Filter, InputField, MAX_CLAUSES, MAX_LEN, Op, Value, is_metric_key,
};
use crate::domain::order::{OrderBy, SortKey};
use crate::error::{Error, Result};
use crate::store::VersionQuery;
use axum::extract::State;
use axum::http::Method;
use serde::{Deserialize, Serialize};

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/api/2.0/mlflow/runs/search",
            Scope::Read,
            search,
        )
        .confined(),
    ]
}

fn bad(detail: impl Into<String>) -> Error {
    Error::validation("filter", detail)
}

/// Splits on `AND` outside quotes, within the native filter's limits: at most
/// [`MAX_LEN`] characters and [`MAX_CLAUSES`] clauses, or 400 `INVALID_PARAMETER_VALUE`
/// before any clause is read (a translated filter costs what a native one does).
pub(super) fn clauses(filter: &str) -> Result<Vec<String>> {
    let words: Vec<char> = filter.chars().collect();
    if words.len() > MAX_LEN {
        return Err(bad(format!(
            "the filter is longer than {MAX_LEN} characters"
        )));
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < words.len() {
        let c = words[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None => {
                let boundary = i == 0 || words[i - 1].is_whitespace();
                let is_and = words.get(i..i + 4).is_some_and(|w| {
                    w[..3]
                        .iter()
                        .collect::<String>()
                        .eq_ignore_ascii_case("and")
                        && w[3].is_whitespace()
                });
                if boundary && is_and {
                    out.push(std::mem::take(&mut current));
                    if out.len() >= MAX_CLAUSES {
                        return Err(bad(format!(
                            "the filter has more than {MAX_CLAUSES} clauses"
                        )));
                    }
                    i += 3;
                    continue;
                }
            }
        }
        current.push(c);
        i += 1;
    }
    out.push(current);
    Ok(out.into_iter().map(|c| c.trim().to_owned()).collect())
}

/// `metrics.k`, with the key optionally quoted in backticks or double quotes.
fn ident(s: &str) -> (String, String) {
    let (kind, key) = s.split_once('.').unwrap_or(("attributes", s));
    let key = key.trim_matches(|c| c == '`' || c == '"').to_owned();
    (kind.to_ascii_lowercase(), key)
}

fn op_of(s: &str) -> Option<Op> {
    Some(match s {
        "=" | "==" => Op::Eq,
        "!=" | "<>" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        w if w.eq_ignore_ascii_case("LIKE") => Op::Like,
        w if w.eq_ignore_ascii_case("ILIKE") => Op::ILike,
        w if w.eq_ignore_ascii_case("IN") => Op::In,
        _ => return None,
    })
}

pub(super) fn text(value: &str) -> Option<String> {
    let v = value.trim();
    v.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| v.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .map(str::to_owned)
}

/// Where a clause's operator starts and how long it is: symbols, or the word `LIKE`/`ILIKE`
/// (any case) between spaces, outside quotes.
fn operator_at(raw: &str) -> Option<(usize, usize)> {
    let mut quote = None;
    let bytes = raw.as_bytes();
    for (i, c) in raw.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '"' | '`') => quote = Some(c),
            None if matches!(c, '=' | '!' | '<' | '>') => {
                let len = raw[i..]
                    .chars()
                    .take_while(|c| matches!(c, '=' | '!' | '<' | '>'))
                    .count();
                return Some((i, len));
            }
            None if c.is_whitespace() => {
                let start = i + c.len_utf8();
                let rest = raw.get(start..).unwrap_or_default();
                for word in ["LIKE", "ILIKE", "IN"] {
                    let n = word.len();
                    if rest.get(..n).is_some_and(|w| w.eq_ignore_ascii_case(word))
                        && bytes
                            .get(start + n)
                            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'(')
                    {
                        return Some((start, n));
                    }
                }
            }
            None => {}
        }
    }
    None
}

/// `('a', 'b')`: quoted strings, comma-separated, in parentheses.
fn quoted_list(raw: &str, value: &str) -> Result<Vec<String>> {
    let wrong = || {
        bad(format!(
            "{raw:?}: IN takes a list of quoted strings, ('a', 'b')"
        ))
    };
    let inner = value
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(wrong)?;
    inner
        .split(',')
        .map(|item| text(item).ok_or_else(wrong))
        .collect()
}

pub(super) fn clause(raw: &str) -> Result<Clause> {
    let (at, op_len) = operator_at(raw).ok_or_else(|| {
        bad(format!(
            "cannot read the clause {raw:?}: expected <field> <op> <value>"
        ))
    })?;
    let (name, rest) = raw.split_at(at);
    let (op, value) = rest.split_at(op_len);
    let op = op_of(op).ok_or_else(|| bad(format!("unknown operator {op:?} in {raw:?}")))?;
    let (kind, key) = ident(name.trim());
    let equality = |v: Value| -> Result<Value> {
        if matches!(op, Op::Eq | Op::Ne) {
            Ok(v)
        } else {
            Err(bad(format!("{raw:?}: this compares only with = or !=")))
        }
    };
    // Params, tags and run names compare as text: =, != or (I)LIKE.
    let textual = |v: Value| -> Result<Value> {
        if matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike) {
            Ok(v)
        } else {
            Err(bad(format!(
                "{raw:?}: text compares with =, !=, LIKE or ILIKE"
            )))
        }
    };
    let quoted = || text(value).ok_or_else(|| bad(format!("{raw:?}: the value must be quoted")));
    // Metric keys are native keys; tags and params follow MLflow's key rule (spaces allowed).
    let mlflow_key = (1..=250).contains(&key.chars().count())
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | ' '));
    let valid = match kind.as_str() {
        "attributes" | "attribute" => true,
        "metrics" | "metric" => is_metric_key(&key),
        _ => mlflow_key,
    };
    if !valid {
        return Err(bad(format!("{raw:?}: {key:?} is not a valid key")));
    }
    let (field, value) = match kind.as_str() {
        "metrics" | "metric" => {
            if matches!(op, Op::Like | Op::ILike) {
                return Err(bad(format!("{raw:?}: a metric compares with a number")));
            }
            let n: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| bad(format!("{raw:?}: a metric compares with a number")))?;
            (Field::Metric(key), Value::Number(n))
        }
        "params" | "param" => (Field::Config(vec![key]), textual(Value::Text(quoted()?))?),
        "tags" | "tag" => (Field::Tag(key), textual(Value::Text(quoted()?))?),
        "datasets" | "dataset" if op != Op::In => {
            let field = match key.as_str() {
                "name" => InputField::DatasetName,
                "digest" => InputField::DatasetDigest,
                other => {
                    return Err(bad(format!(
                        "searching runs by datasets.{other} is not supported (name, digest)"
                    )));
                }
            };
            (Field::Input(field), equality(Value::Text(quoted()?))?)
        }
        _ if op == Op::In
            && !(matches!(kind.as_str(), "attributes" | "attribute") && key == "run_id") =>
        {
            return Err(bad(format!("{raw:?}: IN applies to attributes.run_id")));
        }
        "attributes" | "attribute" => match key.as_str() {
            "status" => {
                let status = match quoted()?.as_str() {
                    "RUNNING" | "SCHEDULED" => "pending",
                    "FINISHED" => "ready",
                    "FAILED" | "KILLED" => "failed",
                    other => return Err(bad(format!("unknown run status {other:?}"))),
                };
                (Field::Status, equality(Value::Text(status.to_owned()))?)
            }
            "run_name" => (
                Field::Tag("mlflow.runName".to_owned()),
                textual(Value::Text(quoted()?))?,
            ),
            "run_id" if op == Op::In => (Field::Id, Value::List(quoted_list(raw, value)?)),
            "run_id" => (Field::Id, equality(Value::Text(quoted()?))?),
            other => return Err(bad(format!("searching runs by {other:?} is not supported"))),
        },
        other => return Err(bad(format!("unknown field type {other:?} in {raw:?}"))),
    };
    Ok(Clause { field, op, value })
}

/// MLflow's filter string as a modelreg filter (`None`: no filter).
pub fn translate_filter(filter: &str) -> Result<Option<Filter>> {
    if filter.trim().is_empty() {
        return Ok(None);
    }
    let clauses = clauses(filter)?
        .iter()
        .map(|c| clause(c))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Filter { clauses }))
}

/// MLflow's `order_by` (one key) as a modelreg order; MLflow's default is newest first.
pub fn translate_order(order_by: &[String]) -> Result<OrderBy> {
    let key_of = |name: &str| {
        let (kind, key) = ident(name);
        match (kind.as_str(), key.as_str()) {
            ("metrics" | "metric", k) if is_metric_key(k) => Some(SortKey::Metric(k.to_owned())),
            ("attributes" | "attribute", "start_time" | "created") => Some(SortKey::CreatedAt),
            _ => None,
        }
    };
    super::order_by(
        order_by,
        key_of,
        "runs can be ordered by metrics.<key> or attributes.start_time",
    )
}

#[derive(Deserialize)]
struct SearchBody {
    #[serde(default)]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: Option<String>,
}

#[derive(Serialize)]
struct Found {
    runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// The most experiments one search names (MLflow's `search_all_experiments` names every one
/// the caller sees).
const MAX_EXPERIMENTS: usize = 1000;

/// Where a page starts: the experiment (by its place in the request's list) and the cursor
/// within it. One experiment's token is its list's cursor; several experiments' is
/// `<place>:<cursor>`.
fn page_start(token: Option<&str>, experiments: usize) -> Result<(usize, Option<String>)> {
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok((0, None));
    };
    if experiments == 1 {
        return Ok((0, Some(t.to_owned())));
    }
    let (place, cursor) = t
        .split_once(':')
        .and_then(|(p, c)| Some((p.parse::<usize>().ok()?, c)))
        .filter(|(p, _)| *p < experiments)
        .ok_or_else(|| Error::validation("page_token", "not a page token of this search"))?;
    Ok((place, Some(cursor.to_owned()).filter(|c| !c.is_empty())))
}

async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<SearchBody>,
) -> Result<axum::Json<Found>> {
    let experiments = &body.experiment_ids;
    if experiments.is_empty() || experiments.len() > MAX_EXPERIMENTS {
        return Err(Error::validation(
            "experiment_ids",
            format!("name 1 to {MAX_EXPERIMENTS} experiments"),
        ));
    }
    let limit = super::page_limit(body.max_results, state.config.max_page_size.min(1000))?;
    let order = translate_order(&body.order_by)?;
    let filter = translate_filter(body.filter.as_deref().unwrap_or(""))?;
    let (mut place, mut cursor) = page_start(body.page_token.as_deref(), experiments.len())?;
    let mut runs = Vec::new();
    let mut next_page_token = None;
    // Experiment by experiment, each in the order asked, until the page is full.
    while place < experiments.len() {
        let model = experiments::model_by_id(&state, &principal, &experiments[place]).await?;
        let after = match cursor.take() {
            Some(t) => Some(order.decode_cursor(&t)?),
            None => None,
        };
        let query = VersionQuery {
            status: None,
            tags: TagFilter::default(),
            filter: filter.clone(),
            order: order.clone(),
            after,
            limit: limit - u32::try_from(runs.len()).unwrap_or(limit),
            metrics: Vec::new(),
        };
        let name = ModelName::parse("experiment_ids", &model.name)?;
        // A page costs the same few statements whatever its size: the list, then the details
        // of every version on it at once.
        let page = state.store.list_versions(&name, &query).await?;
        let experiment_id = experiments::experiment_id(&model);
        let ids: Vec<uuid::Uuid> = page.items.iter().map(|v| v.id).collect();
        let links = state.store.run_models(&ids).await?;
        runs.extend(
            state
                .store
                .version_details(&name, page.items)
                .await?
                .into_iter()
                .map(|d| run_in(experiment_id.clone(), d, &links)),
        );
        let single = experiments.len() == 1;
        if let Some(c) = page.next_cursor {
            next_page_token = Some(if single { c } else { format!("{place}:{c}") });
            break;
        }
        place += 1;
        if runs.len() >= limit as usize {
            if place < experiments.len() {
                next_page_token = Some(format!("{place}:"));
            }
            break;
        }
    }
    Ok(axum::Json(Found {
        runs,
        next_page_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_filters_become_modelreg_filters() {
        let f = |s: &str| {
            translate_filter(s)
                .unwrap()
                .unwrap()
                .clauses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            f("metrics.auc > 0.9 and params.lr = '0.1' AND tags.team = \"risk\""),
            [
                "metric.auc > 0.9",
                "config.lr = \"0.1\"",
                "tag.team = \"risk\""
            ]
        );
        assert_eq!(f("metrics.`val/acc` >= 0.5"), ["metric.val/acc >= 0.5"]);
        assert_eq!(f("attributes.status = 'FINISHED'"), ["status = \"ready\""]);
        assert_eq!(
            f("attributes.run_name != 'x and y'"),
            ["tag.mlflow.runName != \"x and y\""]
        );
        assert!(translate_filter("  ").unwrap().is_none());
        // Any text is read without panicking, multi-byte characters included.
        for odd in [
            "é",
            "éé and ü",
            "tags.ключ = 'значение'",
            "metrics.a > 1 andé",
            "\u{1F600}and x",
            "tags.a\u{3000}LIKE\u{3000}'x'",
            "tags.a é LIKEé 'x'",
            "tags.a LIKé",
        ] {
            let _ = translate_filter(odd);
        }
        assert_eq!(
            f("tags.t = 'é' and tags.u = 'ü'"),
            ["tag.t = \"é\"", "tag.u = \"ü\""]
        );
        // LIKE on text, as load_table searches a run's logged tables.
        assert_eq!(
            f("tags.mlflow.loggedArtifacts LIKE '%\"path\"%:%\"t.json\",%'"),
            ["tag.mlflow.loggedArtifacts LIKE \"%\\\"path\\\"%:%\\\"t.json\\\",%\""]
        );
        assert_eq!(
            f("attributes.run_id IN ('a', 'b') and attributes.run_id = 'c'"),
            ["id IN (\"a\", \"b\")", "id = \"c\""]
        );
        assert_eq!(
            f("params.opt ilike 'AD%' and tags.`Training Info` = 'x'"),
            ["config.opt ILIKE \"AD%\"", "tag.Training Info = \"x\""]
        );
        for bad in [
            "metrics.auc > 'high'",
            "params.lr > '0.1'",
            "params.lr = 0.1",
            "metrics.auc LIKE '1%'",
            "attributes.status LIKE 'F%'",
            "tags.`a\"b` = 'x'",
            "tags.t IN ('a')",
            "attributes.run_id IN 'a'",
            "attributes.run_id IN ('a', b)",
            "attributes.run_id > 'a'",
            "attributes.status = 'DONE'",
            "attributes.artifact_uri = 'x'",
            "metrics.auc",
            "weird.k = 1",
        ] {
            assert!(translate_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn translated_filters_keep_the_native_limits() {
        let many = |n: usize| vec!["metrics.a > 0"; n].join(" AND ");
        assert_eq!(
            translate_filter(&many(MAX_CLAUSES))
                .unwrap()
                .unwrap()
                .clauses
                .len(),
            MAX_CLAUSES
        );
        assert!(translate_filter(&many(MAX_CLAUSES + 1)).is_err());
        assert!(translate_filter(&many(32_000)).is_err());
        let long = format!("tags.t = '{}'", "x".repeat(MAX_LEN));
        assert!(translate_filter(&long).is_err());
        // Quoted "and" is not a clause boundary, so it does not count.
        let quoted = format!("tags.t = '{}'", vec!["x"; 100].join(" and "));
        assert!(translate_filter(&quoted).is_ok());
    }

    #[test]
    fn mlflow_orders_become_modelreg_orders() {
        let o = |s: &[&str]| {
            translate_order(&s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>())
                .map(|o| o.canonical())
        };
        assert_eq!(o(&["metrics.auc DESC"]).unwrap(), "metric.auc:desc");
        assert_eq!(o(&["attributes.start_time"]).unwrap(), "created_at:asc");
        assert_eq!(o(&[]).unwrap(), OrderBy::newest_first().canonical());
        assert!(o(&["params.lr"]).is_err());
        assert!(o(&["metrics.a", "metrics.b"]).is_err());
    }
}
