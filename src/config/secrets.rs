//! Secrets in database URLs: redacted wherever a URL is shown (the settings' `Debug`
//! included), scrubbed from error messages.

use super::{Config, DatabaseConfig};
use std::fmt;

/// Query parameters of a database URL that carry secrets.
const SECRET_PARAMETERS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// Hides every credential in a URL: the password of the user info
/// (`postgres://u:secret@h/db` → `postgres://u:***@h/db`) and secret query parameters
/// (`?password=secret` → `?password=***`).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_parameter(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_parameter(key: &str) -> bool {
    let key = form_urlencoded::parse(key.as_bytes())
        .next()
        .map(|(k, _)| k.to_ascii_lowercase())
        .unwrap_or_default();
    SECRET_PARAMETERS.contains(&key.as_str())
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The secrets a URL holds, raw and percent-decoded, to scrub from messages that may quote it.
fn secrets_of(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((_, rest)) = base.split_once("://")
        && let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        out.push(password.to_owned());
    }
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && is_secret_parameter(k)
        {
            out.push(v.to_owned());
        }
    }
    let decoded: Vec<String> = out
        .iter()
        .filter_map(|s| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty());
    out
}

/// A message about `url` (a connection error, say) with the URL's secrets replaced by `***`,
/// wherever the message quotes them.
pub fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for secret in secrets_of(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Settings as logged at start-up: every URL redacted.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field(
                "read_urls",
                &self.read_urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("replica_max_lag", &self.replica_max_lag)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("artifacts_url", &redact(&self.artifacts_url))
            .field("auth", &self.auth)
            .field("body_limit", &self.body_limit)
            .field("default_page_size", &self.default_page_size)
            .field("max_page_size", &self.max_page_size)
            .field("event_streams_per_token", &self.event_streams_per_token)
            .field("cors_origins", &self.cors_origins)
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("connection_limit", &self.connection_limit)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("metrics_listen", &self.metrics_listen)
            .field("tls", &self.tls_cert.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://a:b@h/db?PassWord=x&sslpassword=y"),
            "postgres://a:***@h/db?PassWord=***&sslpassword=***"
        );
        let url = "postgres://u:p%40ss@h/db?password=hunter%202";
        let msg = "cannot connect to u:p%40ss / p@ss / hunter 2 / hunter%202";
        let scrubbed = scrub(msg, url);
        for secret in ["p%40ss", "p@ss", "hunter 2", "hunter%202"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        let c = Config::for_database("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
