//! The HTTP ceiling for BENCHMARKS.md: axum answering `GET /` with nothing to do, on the same
//! runtime settings as modelreg.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("noop server on {addr}");
    let app = Router::new().route("/", get(|| async { "ok" }));
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
