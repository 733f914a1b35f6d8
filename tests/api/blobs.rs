//! The artifact stores a case can run on: a temporary folder, or an in-process S3 server.

use modelreg::blob::BlobStore;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Blobs {
    Folder,
    S3,
}

/// An artifact store for one test: a temporary folder, or an s3s-fs server on a loopback port.
pub(crate) struct TestBlobs {
    pub blobs: BlobStore,
    pub dir: tempfile::TempDir,
    /// `MODELREG_ARTIFACTS_URL` and `AWS_*` for a server process using the same store.
    pub env: Vec<(String, String)>,
    pub server: Option<S3Server>,
}

/// An s3s-fs server on a loopback port, which a test can stop (dropping every connection, as
/// a crash would) and start again on the same port.
pub(crate) struct S3Server {
    pub addr: std::net::SocketAddr,
    root: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
}

impl S3Server {
    fn serve(listener: tokio::net::TcpListener, root: std::path::PathBuf) -> Self {
        let addr = listener.local_addr().unwrap();
        let fs = s3s_fs::FileSystem::new(&root).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            "test-key",
            "test-secret",
        ));
        let service = builder.build();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let mut until = stopped.clone();
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => return,
                    },
                    _ = until.changed() => return,
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Self { addr, root, stop }
    }

    /// Stops accepting and drops every open connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// A new server on the same port, over the same files.
    pub async fn restart(&mut self) {
        self.stop();
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        *self = Self::serve(listener.expect("the port is free again"), self.root.clone());
    }
}

pub(crate) async fn start_blobs(kind: Blobs) -> TestBlobs {
    let dir = tempfile::tempdir().unwrap();
    match kind {
        Blobs::Folder => {
            let url = format!("file://{}", dir.path().display());
            let blobs = BlobStore::from_url(&url).unwrap();
            TestBlobs {
                blobs,
                dir,
                env: vec![("MODELREG_ARTIFACTS_URL".to_owned(), url)],
                server: None,
            }
        }
        Blobs::S3 => {
            std::fs::create_dir_all(dir.path().join("models")).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = S3Server::serve(listener, dir.path().to_owned());
            let options = [
                ("aws_endpoint", format!("http://{addr}")),
                ("aws_access_key_id", "test-key".to_owned()),
                ("aws_secret_access_key", "test-secret".to_owned()),
                ("aws_region", "us-east-1".to_owned()),
                ("aws_allow_http", "true".to_owned()),
                ("aws_virtual_hosted_style_request", "false".to_owned()),
            ];
            let blobs = BlobStore::from_url_with(
                "s3://models/registry",
                options.iter().map(|(k, v)| ((*k).to_owned(), v.clone())),
            )
            .unwrap();
            let mut env = vec![(
                "MODELREG_ARTIFACTS_URL".to_owned(),
                "s3://models/registry".to_owned(),
            )];
            env.extend(
                options
                    .iter()
                    .map(|(k, v)| (k.to_ascii_uppercase(), v.clone())),
            );
            TestBlobs {
                blobs,
                dir,
                env,
                server: Some(server),
            }
        }
    }
}
