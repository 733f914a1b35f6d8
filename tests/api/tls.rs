//! Encryption in transit: to Postgres (`sslmode`, `sslrootcert`) and from clients (the
//! optional TLS listener, reloaded on SIGHUP).

use crate::cluster::Cluster;
use crate::helpers::TestApp;
use crate::pki::TestCa;
use serde_json::json;
use sqlx::Connection;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Postgres that requires TLS, with a certificate from the test's CA: modelreg connects
/// with `sslmode=verify-full` and every one of its sessions is encrypted; a server whose
/// certificate another CA signed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() {
    let ca = TestCa::new("modelreg test CA");
    let leaf = ca.leaf();
    // hostssl only: a connection without TLS is refused by the server itself.
    let cluster = Cluster::init(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        &[("server.crt", &leaf.cert), ("server.key", &leaf.key)],
    );
    let hba = "hostssl all all 127.0.0.1/32 trust\nlocal all all trust\n";
    cluster.write_hba(hba);
    cluster.start();
    let ca_file = cluster.file("ca.pem", &ca.pem());
    let url = cluster.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    ));

    let store = modelreg::store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let app = TestApp::spawn_with_store(url.clone(), store).await;
    app.model("m").await;
    app.version("m", json!({"finalize": true})).await;
    app.post(
        "/api/v1/models/m/stages/production/promote",
        json!({"version": 1}),
    )
    .await
    .ok(200);

    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let (ours, encrypted): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where s.ssl) from pg_stat_activity a \
         join pg_stat_ssl s using (pid) where a.application_name = 'modelreg'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ours > 0, "modelreg has sessions");
    assert_eq!(ours, encrypted, "every modelreg session is encrypted");
    admin.close().await.unwrap();
    // The database restarts: the pool reconnects, over TLS again, without a server restart.
    cluster.stop();
    cluster.start();
    let ok = app.wait_ready().await;
    assert!(ok, "ready again after the database restarted");
    app.version("m", json!({})).await;
    app.stop().await;

    // Without TLS the server refuses; with a CA that did not sign its certificate, modelreg does.
    let plain = cluster.url("?sslmode=disable");
    assert!(modelreg::store::connect(&plain, 1).await.is_err());
    let other = cluster.file("other-ca.pem", &TestCa::new("someone else").pem());
    let wrong = cluster.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        other.display()
    ));
    let e = match modelreg::store::connect(&wrong, 1).await {
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // `require` encrypts without verifying.
    modelreg::store::connect(&cluster.url("?sslmode=require"), 1)
        .await
        .unwrap();
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `GET path` over TLS, trusting only `ca_pem`; the whole answer, or the error.
async fn https_get(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &str,
) -> std::io::Result<String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

/// The server speaks HTTPS with the configured certificate, and takes a new one on SIGHUP
/// without a restart; a broken new one leaves the old in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = TestCa::new("first CA");
    let leaf = first.leaf();
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelreg"))
        .arg("serve")
        .env("MODELREG_LISTEN", "127.0.0.1:0")
        .env(
            "MODELREG_DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .env("MODELREG_ARTIFACTS_URL", "memory://")
        .env("MODELREG_AUTH", "required")
        .env("MODELREG_TLS_CERT", &cert)
        .env("MODELREG_TLS_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = crate::processes::LogReader::new(child.stderr.take().unwrap());
    let addr = log.address();
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(r) = https_get(addr, &first.pem(), "/readyz").await {
            ready = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("HTTPS answers");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let r = https_get(addr, &first.pem(), "/api/v1/models")
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // Plain HTTP gets no answer on the TLS port.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));

    // A new certificate from another CA, then SIGHUP.
    let second = TestCa::new("second CA");
    let leaf = second.leaf();
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup(child.id());
    let mut switched = false;
    for _ in 0..100 {
        if https_get(addr, &second.pem(), "/healthz").await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the new certificate is served after SIGHUP");
    assert!(https_get(addr, &first.pem(), "/healthz").await.is_err());

    // A broken file: the certificate in use stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup(child.id());
    assert!(log.wait_for("not reloaded", Duration::from_secs(10)));
    let r = https_get(addr, &second.pem(), "/healthz").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let _ = child.kill();
    let _ = child.wait();
}
