//! TLS for the listener, for single-binary deployments without a proxy: a certificate chain
//! and private key from PEM files (`MODELREG_TLS_CERT`, `MODELREG_TLS_KEY`), served with
//! rustls, and reloaded without a restart on SIGHUP or when either file changes (checked
//! every few seconds). A reload that fails keeps the certificate in use and logs why.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Accepts TLS connections with the current certificate.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
}

/// Hands out whatever certificate was loaded last.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a chain and key; errors name the file and never quote the key.
fn load_key(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("cannot read the TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("the TLS certificate {} is not PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate file {} holds no certificate",
            cert.display()
        );
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read a private key from {}: {e}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| {
        anyhow::anyhow!(
            "the TLS key {} does not fit the certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(certified))
}

impl Acceptor {
    /// Loads the certificate and key; fails (at start-up) when either is unusable.
    pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let resolver = Arc::new(Resolver {
            current: RwLock::new(load_key(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.inner.accept(io).await
    }

    /// Loads the files again; the certificate in use stays when they are unusable.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load_key(&self.resolver.cert, &self.resolver.key)?;
        if let Ok(mut current) = self.resolver.current.write() {
            *current = fresh;
        }
        Ok(())
    }

    /// Reloads on SIGHUP and whenever a file's modification time changes, until the process
    /// ends. Runs as a background task.
    pub async fn watch(self, every: Duration) {
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let stamps = |r: &Resolver| (stamp(&r.cert), stamp(&r.key));
        let mut seen: (Option<SystemTime>, Option<SystemTime>) = stamps(&self.resolver);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let why = tokio::select! {
                () = signalled => "SIGHUP",
                () = tokio::time::sleep(every) => {
                    let now = stamps(&self.resolver);
                    if now == seen {
                        continue;
                    }
                    "a file changed"
                }
            };
            seen = stamps(&self.resolver);
            match self.reload() {
                Ok(()) => tracing::info!(reason = why, "TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    reason = why,
                    error = %e,
                    "TLS certificate not reloaded; the previous one stays in use"
                ),
            }
        }
    }
}
