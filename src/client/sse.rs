//! A reader of `GET /api/v1/events/stream` that never loses an event: it reconnects with
//! `Last-Event-ID` after a cut, a server restart or a stalled connection, with backoff.

use super::http::{Api, append_query, chain};
use super::{Exit, Failure};
use reqwest::{Method, Response};
use serde_json::Value;
use std::time::Duration;

pub enum Frame {
    /// One event, as `GET /api/v1/events` lists them.
    Event(Value),
    /// The stream is (again) open: events from now on arrive in order, none missed since the
    /// last one seen. A client that derives state from events re-reads it here.
    Connected,
    /// The stream was cut; it reconnects after a pause.
    Reconnecting(String),
}

pub struct EventStream<'a> {
    api: &'a Api,
    query: Vec<(&'static str, String)>,
    last_id: Option<String>,
    open: Option<Response>,
    buffer: Vec<u8>,
    pause: Duration,
    cut: bool,
}

const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(15);

impl<'a> EventStream<'a> {
    /// `query` takes `model` and `action`; `after` is the event id to start after.
    pub fn new(api: &'a Api, query: Vec<(&'static str, String)>, after: Option<String>) -> Self {
        Self {
            api,
            query,
            last_id: after,
            open: None,
            buffer: Vec::new(),
            pause: FIRST_PAUSE,
            cut: false,
        }
    }

    /// The next frame. Only a refusal that retrying cannot fix (a bad token, a missing
    /// model, a bad filter) ends the stream with an error.
    pub async fn next(&mut self) -> Result<Frame, Failure> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(frame);
            }
            let Some(resp) = self.open.as_mut() else {
                if self.cut {
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
                match self.connect().await {
                    Ok(resp) => {
                        self.open = Some(resp);
                        self.buffer.clear();
                        self.cut = false;
                        return Ok(Frame::Connected);
                    }
                    Err(f) if f.exit == Exit::Unavailable => {
                        self.cut = true;
                        return Ok(Frame::Reconnecting(f.message));
                    }
                    Err(f) => return Err(f),
                }
            };
            let why = match resp.chunk().await {
                Ok(Some(bytes)) => {
                    self.buffer.extend_from_slice(&bytes);
                    if self.buffer.len() > MAX_FRAME {
                        "an event larger than 16 MiB".to_owned()
                    } else {
                        self.pause = FIRST_PAUSE;
                        continue;
                    }
                }
                Ok(None) => "the server closed the stream".to_owned(),
                Err(e) => chain(&e),
            };
            self.open = None;
            self.cut = true;
            return Ok(Frame::Reconnecting(why));
        }
    }

    async fn connect(&self) -> Result<Response, Failure> {
        let mut url = self.api.url(&["events", "stream"]);
        append_query(&mut url, &self.query);
        let mut req = self
            .api
            .request(Method::GET, url)
            .header("accept", "text/event-stream");
        if let Some(id) = &self.last_id {
            req = req.header("last-event-id", id);
        }
        super::http::ok(self.api.send(req).await?).await
    }

    /// Takes one complete frame off the buffer; comments (heartbeats) are skipped.
    fn take_frame(&mut self) -> Option<Frame> {
        loop {
            let (end, sep) = frame_end(&self.buffer)?;
            let raw: Vec<u8> = self.buffer.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut data = String::new();
            let mut id = None;
            for line in text.lines() {
                if let Some(rest) = field(line, "data") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(rest);
                } else if let Some(rest) = field(line, "id") {
                    id = Some(rest.to_owned());
                }
            }
            if let Some(id) = id {
                self.last_id = Some(id);
            }
            if data.is_empty() {
                continue;
            }
            if let Ok(event) = serde_json::from_str::<Value>(&data) {
                return Some(Frame::Event(event));
            }
        }
    }
}

/// Most bytes one frame may take before the reader gives up on the connection.
const MAX_FRAME: usize = 16 << 20;

/// Where the first frame ends (its length, and the separator's).
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

fn field<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> EventStream<'static> {
        let api = Box::leak(Box::new(
            Api::new(
                url::Url::parse("http://127.0.0.1:1").unwrap_or_else(|_| unreachable!()),
                None,
                Duration::from_secs(1),
            )
            .unwrap_or_else(|_| unreachable!()),
        ));
        EventStream::new(api, Vec::new(), None)
    }

    #[test]
    fn frames_are_split_and_comments_skipped() {
        let mut s = stream();
        s.buffer.extend_from_slice(
            b": heartbeat\n\nid: 7\nevent: stage.promoted\ndata: {\"event_id\": 7}\n\nid: 8\nda",
        );
        match s.take_frame() {
            Some(Frame::Event(e)) => assert_eq!(e["event_id"], 7),
            _ => panic!("an event"),
        }
        assert_eq!(s.last_id.as_deref(), Some("7"));
        assert!(
            s.take_frame().is_none(),
            "the second frame is not whole yet"
        );
        s.buffer.extend_from_slice(b"ta: {\"event_id\": 8}\r\n\r\n");
        match s.take_frame() {
            Some(Frame::Event(e)) => assert_eq!(e["event_id"], 8),
            _ => panic!("an event"),
        }
        assert_eq!(s.last_id.as_deref(), Some("8"));
    }
}
