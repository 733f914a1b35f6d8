//! An S3-compatible server on a folder (s3s-fs), for the artifact benchmark:
//! `s3_server ROOT ADDR ACCESS_KEY SECRET_KEY`. Buckets are the folders under ROOT.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, addr, key, secret] = args.as_slice() else {
        return Err("usage: s3_server ROOT ADDR ACCESS_KEY SECRET_KEY".into());
    };
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("{root}: {e:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        key.as_str(),
        secret.as_str(),
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    eprintln!("s3 server on {addr}, root {root}");
    let http = Builder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
