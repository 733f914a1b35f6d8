//! Webhooks: what a subscription may say (its URL, event and model patterns), how a delivery
//! is signed (the Standard Webhooks spec) and when a failed attempt is tried again.

use super::access::Glob;
pub use super::address::is_forbidden;
use super::time::Timestamp;
use crate::error::{Error, Kind, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::Duration;

/// Signing secrets look like `whsec_<base64 of 32 random bytes>`; the key is those bytes.
pub const SECRET_PREFIX: &str = "whsec_";
const MAX_URL_LEN: usize = 2048;
const MAX_PATTERN_LEN: usize = 64;
const MAX_PATTERNS: usize = 64;

/// The error of a URL that may not be called.
pub fn url_not_allowed(detail: impl Into<String>) -> Error {
    Error::new(Kind::Unprocessable, "webhook_url_not_allowed", detail).with_field("url")
}

/// A receiver's URL: `http` or `https`, a host, no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

/// Where a host name or address points, as far as the URL alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl WebhookUrl {
    /// Checks the form, and the address when the URL names one (names are checked where they
    /// are resolved: at creation and before every attempt).
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self> {
        if raw.len() > MAX_URL_LEN {
            return Err(Error::validation("url", "at most 2048 characters"));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| Error::validation("url", format!("not an absolute URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(url_not_allowed(format!(
                "scheme {:?}: only http and https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::validation(
                "url",
                "credentials in the URL would be shown to every admin; authenticate with the signature",
            ));
        }
        let this = Self(url);
        match this.host() {
            None => return Err(Error::validation("url", "the URL has no host")),
            Some(Host::Ip(ip)) if !allow_private && is_forbidden(ip) => {
                return Err(url_not_allowed(format!(
                    "{ip} is a loopback, private, link-local or unspecified address"
                )));
            }
            Some(Host::Name(name)) if !allow_private && is_local_name(&name) => {
                return Err(url_not_allowed(format!("{name} names this machine")));
            }
            _ => {}
        }
        Ok(this)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> Option<Host> {
        match self.0.host()? {
            url::Host::Ipv4(ip) => Some(Host::Ip(IpAddr::V4(ip))),
            url::Host::Ipv6(ip) => Some(Host::Ip(IpAddr::V6(ip))),
            url::Host::Domain(d) => Some(Host::Name(d.to_owned())),
        }
    }

    /// The port the URL connects to.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(80)
    }
}

/// `localhost` and its subdomains resolve to this machine without asking DNS.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Action patterns (`stage.*`, `version.finalized`): lower-case words, dots, `*` and `?`.
pub fn event_patterns(raw: Option<Vec<String>>) -> Result<Vec<Glob>> {
    let raw = raw.unwrap_or_else(|| vec!["*".to_owned()]);
    if raw.is_empty() || raw.len() > MAX_PATTERNS {
        return Err(Error::validation(
            "events",
            "between 1 and 64 action patterns (leave it out for every event)",
        ));
    }
    raw.into_iter()
        .map(|p| {
            let ok = !p.is_empty()
                && p.len() <= MAX_PATTERN_LEN
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || matches!(b, b'.' | b'_' | b'*' | b'?'));
            if ok {
                Ok(Glob::from_stored(p))
            } else {
                Err(Error::validation(
                    "events",
                    format!("invalid action pattern {p:?}: such as stage.* or version.finalized"),
                ))
            }
        })
        .collect()
}

/// Model-name globs; `None` (or left out): every model.
pub fn model_patterns(raw: Option<Vec<String>>) -> Result<Option<Vec<Glob>>> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.is_empty() || raw.len() > MAX_PATTERNS {
        return Err(Error::validation(
            "models",
            "between 1 and 64 model globs (null for every model)",
        ));
    }
    raw.iter()
        .map(|g| Glob::parse("models", g))
        .collect::<Result<_>>()
        .map(Some)
}

/// A fresh signing secret.
pub fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the secret's bytes;
/// `None` for a secret that is not a `whsec_` secret (never stored by this server).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret in use, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// When failed attempts are tried again: exponential from `base`, at most `cap` apart, with
/// ±20% jitter, until `give_up_after` has passed since the delivery was queued.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// About 20 attempts over a day: 5 s, 10 s, 20 s, … then every 2 h.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(2 * 3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt; `jitter` in `[0, 1)`.
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = 2f64.powi(attempts.saturating_sub(1).min(62) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        Duration::from_secs_f64(raw * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
    }

    /// When to try again after a failed attempt at `now`; `None`: give up.
    pub fn next_attempt(
        &self,
        queued_at: Timestamp,
        now: Timestamp,
        attempts: u32,
        jitter: f64,
    ) -> Option<Timestamp> {
        let next = now + chrono::Duration::from_std(self.delay(attempts, jitter)).ok()?;
        let deadline = queued_at + chrono::Duration::from_std(self.give_up_after).ok()?;
        (next <= deadline).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks reference implementations.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        let two = signature_header([secret, secret], "m", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
        assert_eq!(sign("nope", "m", 1, b"{}"), None);
    }

    #[test]
    fn secrets_are_fresh_and_decode() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert!(sign(&a, "id", 1, b"x").is_some());
    }

    #[test]
    fn urls() {
        let ok = WebhookUrl::parse("https://hooks.example.com/x?y=1", false).unwrap();
        assert_eq!(ok.port(), 443);
        for (raw, code) in [
            ("ftp://example.com/", "webhook_url_not_allowed"),
            ("http://127.0.0.1:9/", "webhook_url_not_allowed"),
            ("http://[::1]/", "webhook_url_not_allowed"),
            ("http://[::ffff:10.0.0.1]/", "webhook_url_not_allowed"),
            ("http://169.254.169.254/latest", "webhook_url_not_allowed"),
            ("http://0.0.0.0/", "webhook_url_not_allowed"),
            ("http://localhost:80/", "webhook_url_not_allowed"),
            ("http://a.localhost./", "webhook_url_not_allowed"),
            ("http://user:pw@example.com/", "validation_failed"),
            ("not a url", "validation_failed"),
        ] {
            assert_eq!(
                WebhookUrl::parse(raw, false).unwrap_err().code,
                code,
                "{raw}"
            );
        }
        assert!(WebhookUrl::parse("http://127.0.0.1:9/", true).is_ok());
    }

    #[test]
    fn patterns() {
        assert_eq!(event_patterns(None).unwrap()[0].as_str(), "*");
        assert!(event_patterns(Some(vec!["stage.*".into()])).unwrap()[0].matches("stage.promoted"));
        assert!(event_patterns(Some(vec![])).is_err());
        assert!(event_patterns(Some(vec!["Stage.*".into()])).is_err());
        assert_eq!(model_patterns(None).unwrap(), None);
        assert!(model_patterns(Some(vec!["bad glob".into()])).is_err());
    }

    #[test]
    fn backoff_grows_is_capped_and_gives_up_after_about_a_day() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(10));
        assert_eq!(p.delay(40, 0.5), Duration::from_secs(7200));
        assert!(
            p.delay(1, 0.0) >= Duration::from_secs(4) && p.delay(1, 0.99) < Duration::from_secs(6)
        );
        let start = crate::domain::time::now();
        let (mut now, mut attempts) = (start, 1);
        while let Some(next) = p.next_attempt(start, now, attempts, 0.5) {
            now = next;
            attempts += 1;
        }
        let elapsed = now - start;
        assert!(elapsed <= chrono::Duration::hours(24) && elapsed > chrono::Duration::hours(20));
        assert!((15..30).contains(&attempts), "{attempts}");
    }
}
