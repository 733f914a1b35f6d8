//! Reading the registry: login, models, versions, one version, a comparison, stages, the
//! history of a stage, and the event log.

use super::credentials::{self, Login};
use super::http::{Api, parse_server};
use super::print::{self, cell, short, tags, time};
use super::sse::{EventStream, Frame};
use super::{Conn, Exit, Failure, Target, resolve_version};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Read the token from this file instead of standard input.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Only names starting with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only models with this tag, `key:value` (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct VersionsArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    /// A filter expression: 'metric.accuracy > 0.9 and tag.dataset = "v2"'.
    #[arg(long)]
    pub filter: Option<String>,
    /// metric.accuracy:desc, created_at:asc, …
    #[arg(long)]
    pub order_by: Option<String>,
    /// Metric columns: the last value of each, `a,b`.
    #[arg(long)]
    pub metrics: Option<String>,
    /// pending, ready, failed or archived.
    #[arg(long)]
    pub status: Option<String>,
    /// Only versions with this tag, `key:value` (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// MODEL, MODEL/VERSION or MODEL@STAGE.
    pub target: Target,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    /// Two to ten version numbers.
    #[arg(num_args = 2..=10, required = true)]
    pub versions: Vec<i64>,
}

#[derive(clap::Args, Debug)]
pub struct StagesArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub conn: Conn,
    pub model: String,
    pub stage: String,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Only this model's events.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this action, e.g. stage.promoted.
    #[arg(long)]
    pub action: Option<String>,
    /// Start after this event id.
    #[arg(long)]
    pub after: Option<i64>,
    /// Keep streaming new events as they happen (reconnects, missing nothing).
    #[arg(long, short)]
    pub follow: bool,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

pub async fn login(args: LoginArgs) -> Result<Exit, Failure> {
    let server = match &args.conn.server {
        Some(s) => s.clone(),
        None => {
            return Err(Failure::usage(
                "name the server: modelreg login --server URL (or MODELREG_URL)",
            ));
        }
    };
    let base = parse_server(&server)?;
    let token = read_token(args.token_file.as_deref())?;
    let api = Api::new(base.clone(), Some(token.clone()), args.conn.timeout)?;
    let me = api.get(&["whoami"], &[]).await?;
    if me["token_id"].is_null() {
        return Err(Failure::new(
            Exit::Auth,
            format!("{base} does not require tokens; nothing to save"),
        ));
    }
    let mut saved = credentials::load()?.unwrap_or_default();
    let key = base.as_str().to_owned();
    saved
        .servers
        .retain(|url, _| parse_server(url).map(|u| u != base).unwrap_or(true));
    saved.servers.insert(
        key.clone(),
        Login {
            token,
            name: me["name"].as_str().map(str::to_owned),
        },
    );
    saved.default = Some(key);
    let path = credentials::store(&saved)?;
    if args.conn.json {
        print::json(&me);
    } else {
        println!(
            "logged in to {base} as {} ({}); saved in {}",
            cell(&me["name"]),
            scopes(&me),
            path.display()
        );
    }
    Ok(Exit::Ok)
}

/// The token: from a file, else standard input (one line; a prompt when it is a terminal).
fn read_token(file: Option<&std::path::Path>) -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("token: ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| Failure::usage(format!("cannot read the token: {e}")))?;
            line
        }
    };
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Failure::usage("no token given (one line, no spaces)"));
    }
    Ok(token.to_owned())
}

pub fn logout(args: LogoutArgs) -> Result<Exit, Failure> {
    let Some(mut saved) = credentials::load()? else {
        return Err(Failure::new(Exit::NotFound, "no saved token"));
    };
    let server = match args.conn.server.clone().or_else(|| saved.default.clone()) {
        Some(s) => parse_server(&s)?,
        None => return Err(Failure::new(Exit::NotFound, "no saved token")),
    };
    let before = saved.servers.len();
    saved
        .servers
        .retain(|url, _| parse_server(url).map(|u| u != server).unwrap_or(true));
    if saved.servers.len() == before {
        return Err(Failure::new(
            Exit::NotFound,
            format!("no token saved for {server}"),
        ));
    }
    if saved
        .default
        .as_deref()
        .and_then(|d| parse_server(d).ok())
        .is_some_and(|d| d == server)
    {
        saved.default = None;
    }
    credentials::store(&saved)?;
    if !args.conn.json {
        println!("forgot the token for {server}");
    }
    Ok(Exit::Ok)
}

pub async fn whoami(args: WhoamiArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let me = api.get(&["whoami"], &[]).await?;
    if args.conn.json {
        print::json(&me);
    } else {
        print::fields(&[
            ("server", api.base().to_string()),
            ("name", cell(&me["name"])),
            ("subject", cell(&me["subject"])),
            ("token", cell(&me["token_id"])),
            ("scopes", scopes(&me)),
            ("models", list_or_all(&me["models"])),
        ]);
    }
    Ok(Exit::Ok)
}

fn scopes(me: &Value) -> String {
    list_or_all(&me["scopes"])
}

fn list_or_all(v: &Value) -> String {
    match v.as_array() {
        Some(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        None => "all".to_owned(),
    }
}

pub async fn models(args: ModelsArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let mut query = Vec::new();
    if let Some(p) = args.prefix {
        query.push(("q", p));
    }
    query.extend(args.tag.into_iter().map(|t| ("tag", t)));
    let items = api.list(&["models"], &query, args.limit).await?;
    if args.conn.json {
        print::json(&json!({ "items": items }));
        return Ok(Exit::Ok);
    }
    print::table(
        &["name", "latest", "stages", "updated", "description"],
        items
            .iter()
            .map(|m| {
                vec![
                    cell(&m["name"]),
                    cell(&m["latest_version"]),
                    stage_list(&m["stages"]),
                    time(&m["updated_at"]),
                    short(&cell(&m["description"]), 60),
                ]
            })
            .collect(),
    );
    Ok(Exit::Ok)
}

fn stage_list(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(s, v)| format!("{s}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".to_owned(),
    }
}

pub async fn versions(args: VersionsArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let mut query = Vec::new();
    for (k, v) in [
        ("filter", args.filter),
        ("order_by", args.order_by),
        ("status", args.status),
        ("metrics", args.metrics.clone()),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    query.extend(args.tag.into_iter().map(|t| ("tag", t)));
    let items = api
        .list(&["models", &args.model, "versions"], &query, args.limit)
        .await?;
    if args.conn.json {
        print::json(&json!({ "items": items }));
        return Ok(Exit::Ok);
    }
    let metric_keys: Vec<String> = args
        .metrics
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let mut header = vec!["version", "status", "created", "by"];
    header.extend(metric_keys.iter().map(String::as_str));
    header.push("tags");
    let rows = items
        .iter()
        .map(|v| {
            let mut row = vec![
                cell(&v["version"]),
                cell(&v["status"]),
                time(&v["created_at"]),
                cell(&v["created_by"]),
            ];
            row.extend(
                metric_keys
                    .iter()
                    .map(|k| cell(&v["last_metrics"][k.as_str()])),
            );
            row.push(short(&tags(&v["tags"]), 60));
            row
        })
        .collect();
    print::table(&header, rows);
    Ok(Exit::Ok)
}

pub async fn show(args: ShowArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let Target::Model(model) = &args.target else {
        let (model, version) = resolve_version(&api, &args.target).await?;
        let v = api
            .get(&["models", &model, "versions", &version.to_string()], &[])
            .await?;
        if args.conn.json {
            print::json(&v);
        } else {
            let stages = api.get(&["models", &model], &[]).await?;
            show_version(&v, &stages["stages"], version);
        }
        return Ok(Exit::Ok);
    };
    let m = api.get(&["models", model], &[]).await?;
    if args.conn.json {
        print::json(&m);
        return Ok(Exit::Ok);
    }
    print::fields(&[
        ("model", cell(&m["name"])),
        ("description", cell(&m["description"])),
        ("tags", tags(&m["tags"])),
        ("latest version", cell(&m["latest_version"])),
        ("stages", stage_list(&m["stages"])),
        (
            "created",
            format!("{} by {}", time(&m["created_at"]), cell(&m["created_by"])),
        ),
    ]);
    Ok(Exit::Ok)
}

fn show_version(v: &Value, stages: &Value, version: i64) {
    let on: Vec<String> = stages
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_i64() == Some(version))
        .map(|(s, _)| s.clone())
        .collect();
    let mut rows = vec![
        ("model", cell(&v["model"])),
        ("version", cell(&v["version"])),
        ("status", cell(&v["status"])),
        (
            "stages",
            if on.is_empty() {
                "-".to_owned()
            } else {
                on.join(" ")
            },
        ),
        (
            "created",
            format!("{} by {}", time(&v["created_at"]), cell(&v["created_by"])),
        ),
        ("description", cell(&v["description"])),
        ("tags", tags(&v["tags"])),
        ("config", cell(&v["config"])),
        ("source", cell(&v["source"])),
    ];
    if !v["status_reason"].is_null() {
        rows.push(("reason", cell(&v["status_reason"])));
    }
    print::fields(&rows);
    let metrics = v["metrics"].as_array().cloned().unwrap_or_default();
    if !metrics.is_empty() {
        println!();
        print::table(
            &["metric", "last", "min", "max", "steps", "count"],
            metrics
                .iter()
                .map(|m| {
                    vec![
                        cell(&m["key"]),
                        cell(&m["last"]),
                        cell(&m["min"]),
                        cell(&m["max"]),
                        format!("{}..{}", cell(&m["first_step"]), cell(&m["last_step"])),
                        cell(&m["count"]),
                    ]
                })
                .collect(),
        );
    }
    let artifacts = v["artifacts"].as_array().cloned().unwrap_or_default();
    if !artifacts.is_empty() {
        println!();
        print::table(
            &["artifact", "size", "sha256"],
            artifacts
                .iter()
                .map(|a| {
                    vec![
                        cell(&a["path"]),
                        a["size"]
                            .as_u64()
                            .map(print::bytes)
                            .unwrap_or_else(|| "-".into()),
                        short(&cell(&a["sha256"]), 17),
                    ]
                })
                .collect(),
        );
    }
}

pub async fn diff(args: DiffArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let list = args
        .versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let c = api
        .get(&["models", &args.model, "compare"], &[("versions", list)])
        .await?;
    if args.conn.json {
        print::json(&c);
        return Ok(Exit::Ok);
    }
    let names: Vec<String> = args.versions.iter().map(i64::to_string).collect();
    let per_version = |values: &Value| -> Vec<String> {
        names.iter().map(|n| cell(&values[n.as_str()])).collect()
    };
    let mut header = vec!["".to_owned()];
    header.extend(names.iter().map(|n| format!("v{n}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut printed = false;
    let mut section = |title: &str, rows: Vec<Vec<String>>| {
        if rows.is_empty() {
            return;
        }
        if printed {
            println!();
        }
        printed = true;
        let mut h = header.clone();
        h[0] = title;
        print::table(&h, rows);
    };
    section(
        "config",
        c["config"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let mut row = vec![cell(&d["path"])];
                row.extend(per_version(&d["values"]));
                row
            })
            .collect(),
    );
    section(
        "metric (last)",
        c["metrics"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, by)| {
                let mut row = vec![key.clone()];
                row.extend(names.iter().map(|n| cell(&by[n.as_str()]["last"])));
                row
            })
            .collect(),
    );
    section(
        "tag",
        c["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let mut row = vec![cell(&d["key"])];
                row.extend(per_version(&d["values"]));
                row
            })
            .collect(),
    );
    section(
        "artifact",
        c["artifacts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["same"] != Value::Bool(true))
            .map(|a| {
                let mut row = vec![cell(&a["path"])];
                row.extend(
                    names
                        .iter()
                        .map(|n| short(&cell(&a["sha256"][n.as_str()]), 13)),
                );
                row
            })
            .collect(),
    );
    let schema_changes = c["schema_diff"]["changes"]
        .as_array()
        .filter(|d| !d.is_empty());
    if let Some(changes) = schema_changes {
        let verdict = if c["schema_diff"]["compatible"] == Value::Bool(false) {
            "breaking"
        } else {
            "compatible"
        };
        println!("\nschema ({verdict}):");
        for change in changes {
            println!("  {}", schema_change(change));
        }
    }
    if !printed && schema_changes.is_none() {
        println!("no differences in config, metrics, tags or artifacts");
    }
    Ok(Exit::Ok)
}

fn schema_change(change: &Value) -> String {
    match change.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        None => cell(change),
    }
}

pub async fn stages(args: StagesArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let s = api.get(&["models", &args.model, "stages"], &[]).await?;
    if args.conn.json {
        print::json(&s);
        return Ok(Exit::Ok);
    }
    let guards = api.get(&["models", &args.model, "guards"], &[]).await?;
    let guard_of = |stage: &Value| -> String {
        guards["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| &g["stage"] == stage)
            .map_or("-".to_owned(), |g| cell(&g["state"]))
    };
    let items = s["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("{} has no version on any stage", args.model);
    }
    print::table(
        &["stage", "version", "since", "guard"],
        items
            .iter()
            .map(|i| {
                vec![
                    cell(&i["stage"]),
                    cell(&i["version"]),
                    time(&i["since"]),
                    guard_of(&i["stage"]),
                ]
            })
            .collect(),
    );
    Ok(Exit::Ok)
}

pub async fn history(args: HistoryArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let items = api
        .list(
            &["models", &args.model, "stages", &args.stage, "history"],
            &[],
            args.limit,
        )
        .await?;
    if args.conn.json {
        print::json(&json!({ "items": items }));
        return Ok(Exit::Ok);
    }
    if items.is_empty() {
        println!("{}@{} has no history", args.model, args.stage);
    }
    print::table(
        &["at", "action", "from", "to", "actor", "reason"],
        items
            .iter()
            .map(|e| {
                vec![
                    time(&e["at"]),
                    cell(&e["action"]),
                    cell(&e["from_version"]),
                    cell(&e["to_version"]),
                    cell(&e["actor"]),
                    short(&cell(&e["reason"]), 60),
                ]
            })
            .collect(),
    );
    Ok(Exit::Ok)
}

pub async fn events(args: EventsArgs) -> Result<Exit, Failure> {
    let api = Api::connect(&args.conn)?;
    let mut query = Vec::new();
    if let Some(m) = &args.model {
        query.push(("model", m.clone()));
    }
    if let Some(a) = &args.action {
        query.push(("action", a.clone()));
    }
    if !args.follow {
        if let Some(after) = args.after {
            query.push(("after", after.to_string()));
        }
        let items = api.list(&["events"], &query, args.limit).await?;
        if args.conn.json {
            print::json(&json!({ "items": items }));
        } else {
            event_rows(&items);
        }
        return Ok(Exit::Ok);
    }
    let mut stream = EventStream::new(&api, query, args.after.map(|a| a.to_string()));
    loop {
        match stream.next().await? {
            Frame::Event(e) => {
                if args.conn.json {
                    println!("{e}");
                } else {
                    println!("{}", event_line(&e));
                }
            }
            Frame::Connected => {}
            Frame::Reconnecting(why) => eprintln!("reconnecting: {why}"),
        }
    }
}

fn event_rows(items: &[Value]) {
    print::table(
        &["id", "at", "action", "model", "version", "stage", "actor"],
        items
            .iter()
            .map(|e| {
                vec![
                    cell(&e["event_id"]),
                    time(&e["at"]),
                    cell(&e["action"]),
                    cell(&e["model"]),
                    cell(&e["version"]),
                    cell(&e["stage"]),
                    cell(&e["actor"]),
                ]
            })
            .collect(),
    );
}

fn event_line(e: &Value) -> String {
    let mut line = format!(
        "{} {} {}",
        time(&e["at"]),
        cell(&e["event_id"]),
        cell(&e["action"])
    );
    if let Some(m) = e["model"].as_str() {
        line.push_str(&format!(" {m}"));
        if let Some(v) = e["version"].as_i64() {
            line.push_str(&format!("/{v}"));
        }
        if let Some(s) = e["stage"].as_str() {
            line.push_str(&format!(" @{s}"));
        }
    }
    line.push_str(&format!(" by {}", cell(&e["actor"])));
    line
}
