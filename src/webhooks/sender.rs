//! Sends one signed attempt: an HTTP client that follows no redirect, resolves names only to
//! public addresses (unless private ones are allowed), and reads at most a little of the
//! answer.

use crate::domain::webhook::{Host, WebhookUrl, is_forbidden, url_not_allowed};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The answer's body is not needed; this much of it is read so the connection can be reused.
const MAX_ANSWER: usize = 64 * 1024;
/// `last_error` is cut to this.
pub const MAX_ERROR: usize = 1024;

/// What an attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Answer {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            status: None,
            error: Some(cut(error.into())),
        }
    }
}

/// Cuts `s` to at most [`MAX_ERROR`] bytes on a character boundary.
pub fn cut(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Resolves names and refuses those with a forbidden address among theirs: checked on the
/// addresses the connection will use, so a name that changes its answer (DNS rebinding)
/// gains nothing.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                let e = format!(
                    "webhook_url_not_allowed: {host} resolves to {}, a loopback, private, \
                     link-local or unspecified address",
                    bad.ip()
                );
                return Err(e.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Refuses a URL whose host name resolves (now) to a forbidden address. A name that does not
/// resolve yet is accepted: it is checked again before every attempt.
pub async fn check_resolution(url: &WebhookUrl) -> crate::error::Result<()> {
    let Some(Host::Name(name)) = url.host() else {
        return Ok(());
    };
    let lookup = tokio::net::lookup_host((name.as_str(), url.port()));
    let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(3), lookup).await else {
        return Ok(());
    };
    for addr in addrs {
        if is_forbidden(addr.ip()) {
            return Err(url_not_allowed(format!(
                "{name} resolves to {}, a special-purpose (non-public) address",
                addr.ip()
            )));
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// A client that ignores the proxy environment (`HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY`): a proxy would resolve and reach the target itself, past the address
    /// check, so webhooks always connect directly.
    pub fn new(
        timeout: Duration,
        connect_timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(connect_timeout.min(timeout))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("modelreg-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
        })
    }

    /// POSTs `body` with the Standard Webhooks headers. Never fails: a failure is an answer
    /// without a status and with an error that names neither the URL nor the body.
    pub async fn send(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        signature: &str,
        body: Vec<u8>,
    ) -> Answer {
        // The URL was checked when it was stored; addresses are checked again now, since
        // the settings may have changed (names are checked by the resolver).
        let url = match WebhookUrl::parse(url, self.allow_private) {
            Ok(u) => u,
            Err(e) => return Answer::failed(format!("{}: {}", e.code, e.detail)),
        };
        if let Some(Host::Ip(ip)) = url.host()
            && !self.allow_private
            && is_forbidden(ip)
        {
            return Answer::failed(format!("webhook_url_not_allowed: {ip}"));
        }
        let sent = self
            .client
            .post(url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Answer::failed(describe(&e)),
        };
        let status = response.status();
        let mut read = 0;
        // Drain a little of the answer (its content is not kept); a slow or endless one is
        // cut off by the client's timeout or the cap.
        while read < MAX_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Answer {
            status: Some(status.as_u16()),
            error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
        }
    }
}

/// A transport error in words, from its chain of causes, without the URL (which may carry a
/// credential in its path).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirected"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1000);
        let cut = cut(long);
        assert!(cut.len() <= MAX_ERROR && cut.len() >= MAX_ERROR - 1);
        assert_eq!(super::cut("short".into()), "short");
    }
}
