//! Settings: command-line flags, each also an environment variable, validated once at start-up.

mod policies;
mod secrets;
mod units;
mod webhooks;

pub use policies::PolicyConfig;
pub use secrets::{redact, scrub};
use units::parse_size_u64;
pub use units::{parse_duration, parse_size, parse_span};
pub use webhooks::WebhookConfig;

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `modelreg serve` needs to know.
#[derive(Args, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MODELREG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Where artifacts are stored: file://DIR, s3://bucket/prefix or memory://.
    #[arg(
        long,
        env = "MODELREG_ARTIFACTS_URL",
        default_value = "file://./modelreg-data/artifacts"
    )]
    pub artifacts_url: String,

    /// Whether requests must carry a bearer token. `disabled` is refused on a non-loopback
    /// address unless --insecure-no-auth is given.
    #[arg(long, env = "MODELREG_AUTH", value_enum, default_value_t = AuthMode::Disabled)]
    pub auth: AuthMode,

    /// Allow `--auth disabled` on a non-loopback address. Anyone who can reach the port can
    /// then change what runs in production.
    #[arg(long, env = "MODELREG_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Largest JSON request body, in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, env = "MODELREG_BODY_LIMIT", default_value = "8MiB", value_parser = parse_size)]
    pub body_limit: usize,

    /// Page size when a list request gives no `limit`.
    #[arg(long, env = "MODELREG_DEFAULT_PAGE_SIZE", default_value_t = 50)]
    pub default_page_size: u32,

    /// Event streams (`GET /api/v1/events/stream`) one token may hold open at once (while
    /// authentication is off, every caller shares one count).
    #[arg(long, env = "MODELREG_EVENT_STREAMS_PER_TOKEN", default_value_t = 16)]
    pub event_streams_per_token: usize,

    /// Largest `limit` a list request may ask for.
    #[arg(long, env = "MODELREG_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: u32,

    /// Most metric points accepted in one request; more get 413 `too_many_points`. At most
    /// 1,000,000 (a batch is held in memory and written in one transaction).
    #[arg(long, env = "MODELREG_MAX_METRIC_POINTS", default_value_t = 10_000)]
    pub max_metric_points: usize,

    /// Largest artifact accepted, in bytes (suffixes KiB, MiB, GiB); unlimited when unset.
    #[arg(long, env = "MODELREG_MAX_ARTIFACT_SIZE", value_parser = parse_size_u64)]
    pub max_artifact_size: Option<u64>,

    /// An admin token (from `modelreg token new`) to create at start-up if its id is not
    /// known yet: how containers bootstrap their first token from a secret.
    #[arg(long, env = "MODELREG_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Origins allowed to call the API from web pages, comma-separated
    /// (`https://dash.example.com,http://localhost:3000`), or `*` for any. CORS is off when
    /// empty.
    #[arg(long, env = "MODELREG_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "MODELREG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a client may take to send a request's headers; also how long a kept-alive
    /// connection may sit idle between requests (500ms, 30s, 2m).
    #[arg(long, env = "MODELREG_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a new connection may wait before it sends its first byte; one that sends
    /// nothing is closed then (it would hold a connection slot for the header timeout).
    #[arg(long, env = "MODELREG_FIRST_BYTE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub first_byte_timeout: Duration,

    /// How long a request may take, body included, before it is answered 408 (a body that
    /// did not arrive) or 503 (the server could not finish). Artifact uploads are exempt:
    /// they are bounded by the idle timeout instead.
    #[arg(long, env = "MODELREG_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an upload may send nothing, and a response may wait for a client that does
    /// not read it, before the connection is closed.
    #[arg(long, env = "MODELREG_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most client connections open at once. At the cap, a new connection closes the one
    /// that has been idle longest (waiting for its first or next request) to take its place;
    /// when none is idle, it waits to be accepted.
    #[arg(
        long = "max-connections",
        env = "MODELREG_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub connection_limit: usize,

    /// After SIGTERM, how long in-flight requests may take to finish before the process
    /// exits anyway.
    #[arg(long, env = "MODELREG_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// A second address serving only `/metrics`, without a token (for a Prometheus that
    /// scrapes a private interface). Unset: `/metrics` is on the main address only.
    #[arg(long, env = "MODELREG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A PEM certificate chain: serve HTTPS (with --tls-key). Reloaded on SIGHUP and when the
    /// file changes.
    #[arg(long, env = "MODELREG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "MODELREG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Pack metric points left in rows into compressed blocks in the background (points from
    /// before an upgrade, tails of finished versions). Turn it off on replicas that should
    /// only serve, or while investigating; reads and writes are correct either way.
    #[arg(long = "compactor", env = "MODELREG_COMPACTOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub compactor: bool,

    /// Evaluate stage guards in the background (any replica may; each guard is judged by one
    /// at a time). Off, guards are still set and shown but never act.
    #[arg(long = "guards", env = "MODELREG_GUARDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub guards: bool,

    /// Apply the models' retention policies in the background (any replica may; each model
    /// is worked on by one at a time). Off, policies are still set and previewed but never
    /// act.
    #[arg(id = "retention_job", long = "retention", env = "MODELREG_RETENTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub retention: bool,

    /// How often a model's retention policy is applied once it has nothing left to do.
    #[arg(long, env = "MODELREG_RETENTION_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// The time background work judges by (the system's; tests set a manual one).
    #[arg(skip)]
    pub clock: crate::clock::Clock,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
    #[command(flatten)]
    pub policies: PolicyConfig,
}

/// Database settings, shared by every subcommand.
/// The largest metric batch the settings may allow.
pub const MAX_METRIC_POINTS: usize = 1_000_000;

#[derive(Args, Clone)]
pub struct DatabaseConfig {
    /// postgres://user:pass@host/db or sqlite://path (created if missing).
    #[arg(
        long = "database-url",
        env = "MODELREG_DATABASE_URL",
        default_value = "sqlite://./modelreg-data/modelreg.db"
    )]
    pub url: String,

    /// Largest number of database connections (Postgres).
    #[arg(
        long = "db-max-connections",
        env = "MODELREG_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,

    /// Postgres read replicas (comma-separated URLs): the reads that may be served from a
    /// replica go to one that is within the allowed lag, or has replayed the writes the
    /// caller must see (`Modelreg-Consistency`); every other read and every write goes to
    /// the primary.
    #[arg(
        long = "database-read-urls",
        env = "MODELREG_DATABASE_READ_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_urls: Vec<String>,

    /// A replica further behind the primary than this serves no read.
    #[arg(
        long = "replica-max-lag",
        env = "MODELREG_REPLICA_MAX_LAG",
        default_value = "1s",
        value_parser = parse_duration
    )]
    pub replica_max_lag: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    Required,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Checks what flags alone cannot: the combinations.
    pub fn validate(&self) -> Result<(), String> {
        self.database.validate()?;
        // A TLS listener is meant to be reached from elsewhere: treated as non-loopback.
        if self.auth == AuthMode::Disabled && !self.is_local_only() && !self.insecure_no_auth {
            let how = if self.tls_cert.is_some() {
                "with TLS (a listener meant to be reached from elsewhere)"
            } else {
                "on a non-loopback address"
            };
            return Err(format!(
                "refusing to listen on {} {how} without authentication: set \
                 MODELREG_AUTH=required (and create a token with `modelreg token create`), \
                 listen on a loopback address without TLS, or pass --insecure-no-auth if you \
                 really mean it",
                self.listen
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("TLS needs both MODELREG_TLS_CERT and MODELREG_TLS_KEY".to_owned());
        }
        for (name, d) in [
            ("header timeout", self.header_timeout),
            ("first byte timeout", self.first_byte_timeout),
            ("request timeout", self.request_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("the {name} must be longer than 0"));
            }
        }
        if self.connection_limit == 0 || self.connection_limit > u32::MAX as usize {
            return Err("max connections must be between 1 and 4294967295".to_owned());
        }
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return Err(format!(
                "default page size {} must be between 1 and the max page size {}",
                self.default_page_size, self.max_page_size
            ));
        }
        if self.body_limit < 1024 {
            return Err("body limit must be at least 1KiB".to_owned());
        }
        if !(1..=MAX_METRIC_POINTS).contains(&self.max_metric_points) {
            return Err(format!(
                "max metric points must be between 1 and {MAX_METRIC_POINTS}"
            ));
        }
        check_cors_origins(&self.cors_origins)?;
        self.webhooks.validate()?;
        Ok(())
    }
}

impl Config {
    /// Whether only this machine can reach the server: a loopback address, plain HTTP.
    pub fn is_local_only(&self) -> bool {
        self.listen.ip().is_loopback() && self.tls_cert.is_none()
    }
}

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), String> {
        let u = &self.url;
        if !(u.starts_with("postgres://")
            || u.starts_with("postgresql://")
            || u.starts_with("sqlite:"))
        {
            return Err(format!(
                "database URL {} is not supported: use postgres://… or sqlite://…",
                redact(u)
            ));
        }
        if self.max_connections == 0 {
            return Err("db max connections must be at least 1".to_owned());
        }
        let postgres = u.starts_with("postgres://") || u.starts_with("postgresql://");
        for r in &self.read_urls {
            if !postgres {
                return Err(
                    "read replicas (MODELREG_DATABASE_READ_URLS) need a Postgres database"
                        .to_owned(),
                );
            }
            if !(r.starts_with("postgres://") || r.starts_with("postgresql://")) {
                return Err(format!(
                    "read replica URL {} is not a postgres://… URL",
                    redact(r)
                ));
            }
        }
        // The Postgres driver cannot decrypt client keys, and would log the parameter's value
        // as unrecognized: say so instead.
        let query = u.split_once('?').map_or("", |(_, q)| q);
        if form_urlencoded::parse(query.as_bytes())
            .any(|(k, _)| k.eq_ignore_ascii_case("sslpassword"))
        {
            return Err(
                "sslpassword is not supported: use an unencrypted client key (sslkey) readable \
                 only by the server's user"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// The configured CORS origins, trimmed, empty entries dropped (an empty variable means none).
pub fn cors_origins(raw: &[String]) -> Vec<&str> {
    raw.iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect()
}

/// `*` alone, or origins as browsers send them: `http(s)://host[:port]`, nothing after.
fn check_cors_origins(origins: &[String]) -> Result<(), String> {
    let origins = cors_origins(origins);
    if origins.contains(&"*") {
        if origins.len() > 1 {
            return Err("CORS origins: `*` allows any origin and cannot be combined".to_owned());
        }
        return Ok(());
    }
    for o in origins {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let ok = rest.is_some_and(|host| {
            !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        });
        if !ok {
            return Err(format!(
                "CORS origin {o:?} is not an origin: use scheme://host[:port], e.g. https://dash.example.com"
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Settings for tests and embedding: loopback, auth off, defaults elsewhere.
    pub fn for_database(url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: DatabaseConfig {
                url: url.into(),
                max_connections: 16,
                read_urls: Vec::new(),
                replica_max_lag: Duration::from_secs(1),
            },
            artifacts_url: "memory://".to_owned(),
            auth: AuthMode::Disabled,
            insecure_no_auth: false,
            body_limit: 8 << 20,
            default_page_size: 50,
            event_streams_per_token: 16,
            max_page_size: 1000,
            max_metric_points: 10_000,
            max_artifact_size: None,
            bootstrap_token: None,
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            header_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            connection_limit: 1024,
            shutdown_timeout: Duration::from_secs(30),
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            compactor: true,
            guards: true,
            retention: true,
            retention_interval: Duration::from_secs(600),
            clock: Default::default(),
            webhooks: WebhookConfig::default(),
            policies: PolicyConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting has a name of its own (clap checks it only when the command is built:
    /// at start-up, which the in-process tests never reach).
    #[test]
    fn the_settings_make_a_valid_command() {
        use clap::Args;
        Config::augment_args(clap::Command::new("serve")).debug_assert();
        let parsed = Config::augment_args(clap::Command::new("serve"))
            .try_get_matches_from(["serve", "--retention", "false", "--guards", "false"])
            .unwrap();
        assert_eq!(parsed.get_one::<bool>("retention_job"), Some(&false));
    }

    #[test]
    fn cors_origins() {
        let ok =
            |v: &[&str]| check_cors_origins(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&[]).is_ok());
        assert!(ok(&[""]).is_ok());
        assert!(ok(&["https://a.example", " https://b.example "]).is_ok());
        assert!(ok(&["*"]).is_ok());
        assert!(
            ok(&[
                "https://dash.example.com",
                "http://localhost:3000",
                "http://[::1]:8000"
            ])
            .is_ok()
        );
        assert!(ok(&["*", "https://a.example"]).is_err());
        assert!(ok(&["dash.example.com"]).is_err());
        assert!(ok(&["https://dash.example.com/"]).is_err());
        assert!(ok(&["ftp://x"]).is_err());
        assert!(ok(&["https://"]).is_err());
    }

    /// Flag names, env names and defaults are consistent (clap checks on first parse at run
    /// time; this checks here).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            config: Config,
        }
        Serve::command().debug_assert();
    }

    #[test]
    fn tls_counts_as_reachable_from_elsewhere() {
        let mut c = Config::for_database("sqlite://x.db");
        c.tls_cert = Some("c.pem".into());
        c.tls_key = Some("k.pem".into());
        assert!(c.validate().unwrap_err().contains("with TLS"));
        c.auth = AuthMode::Required;
        assert!(c.validate().is_ok());
        c.tls_key = None;
        assert!(c.validate().unwrap_err().contains("both"));
    }

    #[test]
    fn no_auth_only_on_loopback() {
        let mut c = Config::for_database("sqlite://x.db");
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(c.validate().unwrap_err().contains("without authentication"));
        c.insecure_no_auth = true;
        assert!(c.validate().is_ok());
        c.insecure_no_auth = false;
        c.auth = AuthMode::Required;
        assert!(c.validate().is_ok());
        c.listen = "[::1]:8080".parse().unwrap();
        c.auth = AuthMode::Disabled;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn metric_batches_are_bounded() {
        let mut c = Config::for_database("sqlite://x.db");
        c.max_metric_points = MAX_METRIC_POINTS;
        assert!(c.validate().is_ok());
        c.max_metric_points = MAX_METRIC_POINTS + 1;
        assert!(c.validate().unwrap_err().contains("max metric points"));
        c.max_metric_points = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn bad_database_urls() {
        let mut c = Config::for_database("mysql://x");
        assert!(c.validate().unwrap_err().contains("not supported"));
        c.database.url = "postgres://u:pw@h/db".into();
        c.database.max_connections = 0;
        assert!(c.validate().is_err());
        c.database.max_connections = 1;
        c.database.url = "postgres://h/db?sslmode=verify-full&SSLPassword=hunter2".into();
        let e = c.validate().unwrap_err();
        assert!(e.contains("sslpassword") && !e.contains("hunter2"), "{e}");
        // Read replicas: Postgres URLs, behind a Postgres primary.
        c.database.url = "postgres://h/db".into();
        c.database.read_urls = vec!["postgres://u:pw@replica/db".into()];
        assert!(c.validate().is_ok());
        c.database.read_urls = vec!["mysql://u:secret@replica/db".into()];
        let e = c.validate().unwrap_err();
        assert!(e.contains("not a postgres") && !e.contains("secret"), "{e}");
        c.database.url = "sqlite://./x.db".into();
        c.database.read_urls = vec!["postgres://replica/db".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .contains("need a Postgres database")
        );
    }
}
