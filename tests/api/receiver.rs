//! A webhook receiver the test runs on 127.0.0.1: records every request and answers as
//! scripted (204 by default); can be stopped and started again on the same port.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A scripted "answer" that never comes: the request hangs.
pub const HANG: u16 = 0;

#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether one of the signatures is the spec's HMAC of this request with `secret`,
    /// computed here with another implementation (aws-lc-rs) than the server's.
    pub fn signed_with(&self, secret: &str) -> bool {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("base64 secret");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
        let mut signed = format!("{}.{}.", self.id, self.timestamp).into_bytes();
        signed.extend_from_slice(&self.body);
        let expected = format!(
            "v1,{}",
            STANDARD.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref())
        );
        self.signature.split(' ').any(|s| s == expected)
    }
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    server: Option<tokio::task::JoinHandle<()>>,
}

async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    s.received.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    let status = s.script.lock().unwrap().pop_front().unwrap_or(204);
    if status == HANG {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Self {
            addr: listener.local_addr().unwrap(),
            shared: Shared::default(),
            server: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops listening: connections are refused until [`Receiver::restart`].
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// The next answers, in order; 204 after them.
    pub fn answer(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for `n` requests; all of them so far.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} requests, got {:?}", self.received());
    }

    /// Asserts that nothing more than `n` requests arrive within `quiet`.
    pub async fn settle(&self, n: usize, quiet: Duration) -> Vec<Received> {
        tokio::time::sleep(quiet).await;
        let got = self.received();
        assert_eq!(got.len(), n, "unexpected requests: {got:?}");
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}
