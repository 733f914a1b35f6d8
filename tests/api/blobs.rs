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
    _server: Option<tokio::task::JoinHandle<()>>,
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
                _server: None,
            }
        }
        Blobs::S3 => {
            std::fs::create_dir_all(dir.path().join("models")).unwrap();
            let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(
                "test-key",
                "test-secret",
            ));
            let service = builder.build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let http = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let conn = http
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
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
                _server: Some(server),
            }
        }
    }
}
