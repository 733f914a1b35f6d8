//! Changing stages: promote and roll back (always against the version the operator saw),
//! and the promotion requests of stages that need approvals.

use super::http::Api;
use super::print::{self, cell, short, time};
use super::{Conn, Exit, Failure};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// `--expect 4`, or `--expect none` for a stage believed empty.
#[derive(Debug, Clone, Copy)]
pub struct Expect(Option<i64>);

impl std::str::FromStr for Expect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Self(None));
        }
        s.parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .map(|v| Self(Some(v)))
            .ok_or_else(|| format!("{s:?}: a version number, or none for an empty stage"))
    }
}

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    pub stage: String,
    pub version: i64,
    /// Why, recorded in the stage's history.
    #[arg(long)]
    pub reason: Option<String>,
    /// The version you believe the stage holds (`none`: empty). Without it the stage is read
    /// first and what it held is sent: a change by someone else in between is a conflict
    /// (exit 1), never overwritten.
    #[arg(long)]
    pub expect: Option<Expect>,
    /// Run the stage's policy checks and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Promote past every policy check (admin token, --reason required); recorded as forced.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    pub stage: String,
    /// Roll back to this version (it must be beneath the current one on the stage's stack).
    #[arg(long)]
    pub to: Option<i64>,
    #[arg(long)]
    pub reason: Option<String>,
    /// The version you believe the stage holds; read first when not given, so two
    /// operators rolling back at once pop one version, not two.
    #[arg(long)]
    pub expect: Option<Expect>,
}

#[derive(clap::Args, Debug)]
pub struct GuardArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    pub stage: String,
    /// End the hold after a trip (the guard judges the live version again).
    #[arg(long)]
    pub rearm: bool,
}

#[derive(clap::Args, Debug)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    /// pending, approved, rejected, cancelled or expired.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    /// The request's id (`modelreg requests MODEL` lists them).
    pub id: String,
    #[arg(long)]
    pub comment: Option<String>,
}

/// What the stage holds now: its version, or `None` when it is empty.
async fn current(api: &Api, model: &str, stage: &str) -> Result<Option<i64>, Failure> {
    match api.get(&["models", model, "stages", stage], &[]).await {
        Ok(s) => Ok(s["version"].as_i64()),
        Err(f)
            if f.problem
                .as_ref()
                .is_some_and(|p| p["code"] == "stage_empty") =>
        {
            Ok(None)
        }
        Err(f) => Err(f),
    }
}

async fn expected(
    api: &Api,
    model: &str,
    stage: &str,
    given: Option<Expect>,
) -> Result<Option<i64>, Failure> {
    match given {
        Some(Expect(v)) => Ok(v),
        None => current(api, model, stage).await.map_err(|mut f| {
            if f.exit == Exit::Auth {
                f.message.push_str(
                    "\n  (reading the stage needs the read scope; or pass --expect VERSION|none)",
                );
            }
            f
        }),
    }
}

pub async fn promote(args: PromoteArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let expected = expected(&api, &args.model, &args.stage, args.expect).await?;
    let mut body = Map::new();
    body.insert("version".into(), json!(args.version));
    body.insert("expected_version".into(), json!(expected));
    if let Some(r) = &args.reason {
        body.insert("reason".into(), json!(r));
    }
    if args.dry_run {
        body.insert("dry_run".into(), json!(true));
    }
    if args.force {
        body.insert("force".into(), json!(true));
    }
    let (status, answer) = api
        .call(
            Method::POST,
            &["models", &args.model, "stages", &args.stage, "promote"],
            Some(&Value::Object(body)),
        )
        .await?;
    let place = format!("{}@{}", args.model, args.stage);
    if args.dry_run {
        let allowed = answer["allowed"] == Value::Bool(true);
        if args.conn.json {
            print::json(&answer);
        } else {
            println!(
                "{place}: promoting {} {}",
                args.version,
                if allowed {
                    "would pass every check"
                } else {
                    "would be refused"
                }
            );
            checks(&answer["checks"]);
        }
        return Ok(if allowed { Exit::Ok } else { Exit::Refused });
    }
    if status == StatusCode::ACCEPTED {
        if args.conn.json {
            print::json(&answer);
        } else {
            println!(
                "{place} needs approvals: opened promotion request {} for version {}",
                cell(&answer["request_id"]),
                args.version
            );
            checks(&answer["checks"]);
            println!(
                "approve with: modelreg approve {} {}",
                args.model,
                cell(&answer["request_id"])
            );
        }
        // The stage did not change: a script that goes on to deploy must not.
        return Ok(Exit::Refused);
    }
    report_change(&args.conn, &place, &answer, "promoted");
    Ok(Exit::Ok)
}

pub async fn rollback(args: RollbackArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let expected = expected(&api, &args.model, &args.stage, args.expect).await?;
    let mut body = Map::new();
    body.insert("expected_version".into(), json!(expected));
    if let Some(to) = args.to {
        body.insert("to_version".into(), json!(to));
    }
    if let Some(r) = &args.reason {
        body.insert("reason".into(), json!(r));
    }
    let (_, answer) = api
        .call(
            Method::POST,
            &["models", &args.model, "stages", &args.stage, "rollback"],
            Some(&Value::Object(body)),
        )
        .await?;
    let place = format!("{}@{}", args.model, args.stage);
    report_change(&args.conn, &place, &answer, "rolled back");
    Ok(Exit::Ok)
}

fn report_change(conn: &Conn, place: &str, answer: &Value, verb: &str) {
    if conn.json {
        print::json(answer);
        return;
    }
    if answer["previous_version"] == answer["version"] {
        println!(
            "{place} already holds {}; nothing changed",
            cell(&answer["version"])
        );
    } else {
        println!(
            "{place}: {} → {} ({verb}, event {})",
            answer["previous_version"]
                .as_i64()
                .map_or_else(|| "empty".to_owned(), |v| v.to_string()),
            cell(&answer["version"]),
            cell(&answer["event_id"])
        );
    }
}

fn checks(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                cell(&c["check"]),
                if c["ok"] == Value::Bool(true) {
                    "ok"
                } else {
                    "FAILED"
                }
                .to_owned(),
                short(&cell(&c["detail"]), 80),
            ]
        })
        .collect();
    print::table(&["check", "result", "detail"], rows);
}

/// A stage's guard: its state and each condition's verdict on the live version now.
pub async fn guard(args: GuardArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let g = if args.rearm {
        api.call(
            Method::POST,
            &[
                "models",
                &args.model,
                "stages",
                &args.stage,
                "guard",
                "rearm",
            ],
            None,
        )
        .await?
        .1
    } else {
        api.get(
            &["models", &args.model, "stages", &args.stage, "guard"],
            &[],
        )
        .await?
    };
    if args.conn.json {
        print::json(&g);
        return Ok(Exit::Ok);
    }
    print::fields(&[
        ("stage", format!("{}@{}", args.model, args.stage)),
        ("state", cell(&g["state"])),
        (
            "judging",
            g["version"]
                .as_i64()
                .map_or("-".to_owned(), |v| format!("version {v}")),
        ),
        (
            "action",
            format!(
                "{} when breached, every {}",
                cell(&g["action"]),
                cell(&g["period"])
            ),
        ),
        ("grace until", time(&g["grace_until"])),
    ]);
    if let Some(trip) = g["trip"].as_object() {
        println!(
            "tripped {} on version {}: {}",
            time(&trip["at"]),
            cell(&trip["version"]),
            cell(&trip["reason"])
        );
        println!(
            "re-arm with: modelreg guard {} {} --rearm",
            args.model, args.stage
        );
    }
    let rows: Vec<Vec<String>> = g["evaluation"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            vec![
                cell(&v["metric"]),
                cell(&v["state"]),
                cell(&v["observed"]),
                cell(&v["limit"]),
                cell(&v["points"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print::table(&["metric", "state", "observed", "limit", "points"], rows);
    }
    Ok(Exit::Ok)
}

pub async fn requests(args: RequestsArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let query: Vec<(&str, String)> = args.status.map(|s| ("status", s)).into_iter().collect();
    let items = api
        .list(
            &["models", &args.model, "promotion-requests"],
            &query,
            args.limit,
        )
        .await?;
    if args.conn.json {
        print::json(&json!({ "items": items }));
        return Ok(Exit::Ok);
    }
    if items.is_empty() {
        println!("no promotion requests");
    }
    print::table(
        &[
            "id",
            "status",
            "stage",
            "version",
            "by",
            "approvals",
            "opened",
        ],
        items
            .iter()
            .map(|r| {
                vec![
                    cell(&r["id"]),
                    cell(&r["status"]),
                    cell(&r["stage"]),
                    cell(&r["version"]),
                    cell(&r["requested_by"]),
                    format!(
                        "{}/{}",
                        r["approvals"].as_array().map_or(0, Vec::len),
                        cell(&r["approvals_needed"])
                    ),
                    time(&r["created_at"]),
                ]
            })
            .collect(),
    );
    Ok(Exit::Ok)
}

pub async fn decide(args: DecideArgs, verb: &str) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let body = match &args.comment {
        Some(c) => json!({ "comment": c }),
        None => json!({}),
    };
    let (_, answer) = api
        .call(
            Method::POST,
            &["models", &args.model, "promotion-requests", &args.id, verb],
            Some(&body),
        )
        .await?;
    if args.conn.json {
        print::json(&answer);
        return Ok(Exit::Ok);
    }
    println!(
        "request {}: {} ({} of {} approvals; {}@{} version {})",
        cell(&answer["id"]),
        cell(&answer["status"]),
        answer["approvals"].as_array().map_or(0, Vec::len),
        cell(&answer["approvals_needed"]),
        args.model,
        cell(&answer["stage"]),
        cell(&answer["version"]),
    );
    if answer["status"] == "rejected" {
        checks(&answer["checks"]);
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_takes_a_version_or_none() {
        assert_eq!("none".parse::<Expect>().map(|e| e.0), Ok(None));
        assert_eq!("4".parse::<Expect>().map(|e| e.0), Ok(Some(4)));
        assert!("0".parse::<Expect>().is_err());
        assert!("x".parse::<Expect>().is_err());
    }
}
