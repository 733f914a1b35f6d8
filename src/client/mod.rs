//! The operator's client and the deployment agent, in the same binary as the server.
//!
//! Every command speaks only the server's public HTTP API. People get tables, scripts get
//! `--json`; every command ends with one of the documented exit codes ([`Exit`]), and an
//! error from the server is printed as one line with its problem code.

mod credentials;
mod http;
mod print;
mod registry;
mod signed;
mod sse;
mod stages;
mod sync;
mod transfer;

pub use http::Api;

use crate::domain::names::{ModelName, StageName};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

/// How a client command ended. The numbers are documented and scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Refused by a rule: a stage conflict, a policy check, a promotion that needs
    /// approvals, a checksum that does not match, a state that does not allow it.
    Refused = 1,
    /// The command line, or what it asked the server, is not valid.
    Usage = 2,
    /// The model, version, stage, request or artifact does not exist.
    NotFound = 3,
    /// No token, a bad or expired token, or one without the scope or the model.
    Auth = 4,
    /// The server cannot be reached, is overloaded, or failed.
    Unavailable = 5,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Why a command failed: its exit code, one line for people, and the server's problem
/// (printed on stdout with `--json`, for scripts).
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub problem: Option<Value>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            problem: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Exit::Refused, message)
    }

    /// A problem+json answer (or any error answer) as a failure.
    pub fn from_problem(status: reqwest::StatusCode, problem: Value) -> Self {
        let code = problem["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{}", status.as_u16()));
        let detail = problem["detail"]
            .as_str()
            .or_else(|| problem["title"].as_str())
            .or_else(|| status.canonical_reason())
            .unwrap_or("error")
            .to_owned();
        let exit = match (status.as_u16(), code.as_str()) {
            (_, "checksum_mismatch") => Exit::Refused,
            (401 | 403, _) => Exit::Auth,
            (404, _) => Exit::NotFound,
            (400 | 405 | 413 | 414 | 415 | 422, _) => Exit::Usage,
            (429, _) => Exit::Unavailable,
            (s, _) if s >= 500 => Exit::Unavailable,
            _ => Exit::Refused,
        };
        let mut message = format!("{detail} [{code}]");
        for check in problem["checks"].as_array().into_iter().flatten() {
            if check["ok"] == Value::Bool(false) {
                message.push_str(&format!(
                    "\n  failed check {}: {}",
                    print::cell(&check["check"]),
                    print::cell(&check["detail"])
                ));
            }
        }
        Self {
            exit,
            message,
            problem: (problem.is_object()).then_some(problem),
        }
    }
}

/// How to reach the server, shared by every client command.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The server's URL (default: the one `modelreg login` saved, else http://127.0.0.1:8080).
    /// The token comes from MODELREG_TOKEN, else from the file `modelreg login` wrote.
    #[arg(long, env = "MODELREG_URL")]
    pub server: Option<String>,
    /// Print JSON for scripts instead of tables.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the server to answer (or to send more of a download).
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

/// The client commands; `modelreg --help` lists them with the server's.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Save a token for a server (checked with whoami; the file is readable by you alone).
    Login(registry::LoginArgs),
    /// Forget the saved token of a server.
    Logout(registry::LogoutArgs),
    /// Who the token is: name, scopes, models.
    Whoami(registry::WhoamiArgs),
    /// List models.
    Models(registry::ModelsArgs),
    /// List a model's versions, newest first (filter, order, metric columns).
    Versions(registry::VersionsArgs),
    /// Show a model, a version (MODEL/3) or what a stage holds (MODEL@production).
    Show(registry::ShowArgs),
    /// Compare two or more versions: config, metrics, tags, artifacts, schema.
    Diff(registry::DiffArgs),
    /// What each stage of a model holds.
    Stages(registry::StagesArgs),
    /// A stage's changes, newest first.
    History(registry::HistoryArgs),
    /// Put a version on a stage (checks that the stage still holds what you saw).
    Promote(stages::PromoteArgs),
    /// Put back the version beneath the current one (or --to an older one).
    Rollback(stages::RollbackArgs),
    /// A stage's guard: its state and each condition's verdict now (--rearm ends a hold).
    Guard(stages::GuardArgs),
    /// List a model's promotion requests.
    Requests(stages::RequestsArgs),
    /// Approve a promotion request.
    Approve(stages::DecideArgs),
    /// Reject a promotion request.
    Reject(stages::DecideArgs),
    /// Upload files (or a folder's files) as a pending version's artifacts.
    Upload(transfer::UploadArgs),
    /// Download a version's artifacts into a folder, every file's sha256 checked.
    Download(transfer::DownloadArgs),
    /// The event log; --follow streams new events as they happen.
    Events(registry::EventsArgs),
    /// Keep a folder in step with a stage: DEST/current is the stage's version, always whole.
    Sync(sync::SyncArgs),
}

/// Runs a client command and prints its outcome; the exit code is the command's.
pub async fn run(command: Command) -> ExitCode {
    let json = match &command {
        Command::Login(a) => a.conn.json,
        Command::Logout(a) => a.conn.json,
        Command::Whoami(a) => a.conn.json,
        Command::Models(a) => a.conn.json,
        Command::Versions(a) => a.conn.json,
        Command::Show(a) => a.conn.json,
        Command::Diff(a) => a.conn.json,
        Command::Stages(a) => a.conn.json,
        Command::History(a) => a.conn.json,
        Command::Promote(a) => a.conn.json,
        Command::Rollback(a) => a.conn.json,
        Command::Guard(a) => a.conn.json,
        Command::Requests(a) => a.conn.json,
        Command::Approve(a) | Command::Reject(a) => a.conn.json,
        Command::Upload(a) => a.conn.json,
        Command::Download(a) => a.conn.json,
        Command::Events(a) => a.conn.json,
        Command::Sync(a) => a.conn.json,
    };
    let outcome = match command {
        Command::Login(a) => registry::login(a).await,
        Command::Logout(a) => registry::logout(a),
        Command::Whoami(a) => registry::whoami(a).await,
        Command::Models(a) => registry::models(a).await,
        Command::Versions(a) => registry::versions(a).await,
        Command::Show(a) => registry::show(a).await,
        Command::Diff(a) => registry::diff(a).await,
        Command::Stages(a) => registry::stages(a).await,
        Command::History(a) => registry::history(a).await,
        Command::Promote(a) => stages::promote(a).await,
        Command::Rollback(a) => stages::rollback(a).await,
        Command::Guard(a) => stages::guard(a).await,
        Command::Requests(a) => stages::requests(a).await,
        Command::Approve(a) => stages::decide(a, "approve").await,
        Command::Reject(a) => stages::decide(a, "reject").await,
        Command::Upload(a) => transfer::upload(a).await,
        Command::Download(a) => transfer::download(a).await,
        Command::Events(a) => registry::events(a).await,
        Command::Sync(a) => sync::run(a).await,
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(failure) => {
            if json && let Some(problem) = &failure.problem {
                print::json(problem);
            }
            eprintln!("error: {}", failure.message);
            failure.exit.into()
        }
    }
}

/// What a command names: a model, one of its versions, or what one of its stages holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Model(String),
    Version(String, i64),
    Stage(String, String),
}

impl Target {
    pub fn model(&self) -> &str {
        match self {
            Target::Model(m) | Target::Version(m, _) | Target::Stage(m, _) => m,
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `MODEL`, `MODEL/VERSION` or `MODEL@STAGE`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("{s:?}: {what} (write MODEL, MODEL/VERSION or MODEL@STAGE)");
        if let Some((model, version)) = s.split_once('/') {
            let v: i64 = version
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version is not a positive number"))?;
            ModelName::parse("model", model).map_err(|_| bad("not a model name"))?;
            return Ok(Target::Version(model.to_owned(), v));
        }
        if let Some((model, stage)) = s.split_once('@') {
            ModelName::parse("model", model).map_err(|_| bad("not a model name"))?;
            StageName::parse("stage", stage).map_err(|_| bad("not a stage name"))?;
            return Ok(Target::Stage(model.to_owned(), stage.to_owned()));
        }
        ModelName::parse("model", s).map_err(|_| bad("not a model name"))?;
        Ok(Target::Model(s.to_owned()))
    }
}

/// The version a target names: as written, or what its stage holds now (404 when empty).
pub async fn resolve_version(api: &Api, target: &Target) -> Result<(String, i64), Failure> {
    match target {
        Target::Version(m, v) => Ok((m.clone(), *v)),
        Target::Stage(m, s) => {
            let stage = api.get(&["models", m, "stages", s], &[]).await?;
            match stage["version"].as_i64() {
                Some(v) => Ok((m.clone(), v)),
                None => Err(Failure::new(
                    Exit::NotFound,
                    format!("{m}@{s} holds no version [stage_empty]"),
                )),
            }
        }
        Target::Model(m) => Err(Failure::usage(format!(
            "{m}: name a version (MODEL/VERSION) or a stage (MODEL@STAGE)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde_json::json;

    #[test]
    fn targets_parse() {
        assert_eq!("fraud".parse(), Ok(Target::Model("fraud".into())));
        assert_eq!("fraud/12".parse(), Ok(Target::Version("fraud".into(), 12)));
        assert_eq!(
            "fraud@production".parse(),
            Ok(Target::Stage("fraud".into(), "production".into()))
        );
        for bad in ["fraud/0", "fraud/x", "Fraud", "fraud@Prod", "", "a/1/2"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_map_to_exit_codes() {
        let cases = [
            (409, "stage_conflict", Exit::Refused),
            (409, "policy_violation", Exit::Refused),
            (404, "model_not_found", Exit::NotFound),
            (401, "unauthorized", Exit::Auth),
            (403, "forbidden", Exit::Auth),
            (400, "invalid_filter", Exit::Usage),
            (422, "validation_failed", Exit::Usage),
            (422, "checksum_mismatch", Exit::Refused),
            (503, "unavailable", Exit::Unavailable),
            (429, "too_many_streams", Exit::Unavailable),
        ];
        for (status, code, exit) in cases {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            let f = Failure::from_problem(status, json!({"code": code, "detail": "d"}));
            assert_eq!(f.exit, exit, "{code}");
            assert_eq!(f.message, format!("d [{code}]"));
        }
    }

    #[test]
    fn failed_checks_are_listed() {
        let problem = json!({"code": "policy_violation", "detail": "refused", "checks": [
            {"check": "require", "ok": true, "detail": "fine"},
            {"check": "no_regression", "ok": false, "detail": "accuracy fell"}]});
        let f = Failure::from_problem(StatusCode::CONFLICT, problem);
        assert_eq!(
            f.message,
            "refused [policy_violation]\n  failed check no_regression: accuracy fell"
        );
        assert_eq!(f.exit, Exit::Refused);
    }
}
