//! Spawns the real app on port 0 with a fresh database and talks to it over HTTP.
//!
//! Every case runs on SQLite (a temporary file) and on Postgres (a fresh database per test,
//! dropped afterwards). The Postgres server is `MODELREG_TEST_PG_URL`, else the one on
//! 127.0.0.1:5432, else a throwaway cluster of the suite's own (`crate::pg`); when none can
//! be had the Postgres cases fail, they are never skipped.

use crate::blobs::{Blobs, TestBlobs, start_blobs};
use futures::FutureExt;
use modelreg::config::{AuthMode, Config};
use modelreg::domain::token::{TokenRequest, issue};
use modelreg::store::Actor;
use modelreg::{AppState, store};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::Connection;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How a case's app is set up, beyond its fresh database.
#[derive(Clone, Copy)]
pub struct Setup {
    /// Settings adjusted for the case.
    pub adjust: fn(&mut Config),
    /// Authentication required, with a first admin token ([`TestApp::root_token`]).
    pub auth: bool,
    /// Artifact stores to run the case on, one after the other, each with a fresh database
    /// (none: the default folder).
    pub blobs: &'static [Blobs],
}

impl Setup {
    pub const PLAIN: Setup = Setup {
        adjust: |_| {},
        auth: false,
        blobs: &[],
    };
}

/// Runs one test case against a fresh app on the given backend. The database is dropped
/// even when the case (or the app's start) panics: see [`TestDb`]'s `Drop`.
pub async fn run_case<F: AsyncFn(&TestApp)>(backend: Backend, setup: Setup, case: F) {
    let kinds: Vec<Option<Blobs>> = match setup.blobs {
        [] => vec![None],
        kinds => kinds.iter().copied().map(Some).collect(),
    };
    for kind in kinds {
        let db = TestDb::create(backend).await;
        let blobs = match kind {
            Some(kind) => Some((kind, start_blobs(kind).await)),
            None => None,
        };
        let Setup { adjust, auth, .. } = setup;
        let configure = move |c: &mut Config| {
            adjust(c);
            if auth {
                c.auth = AuthMode::Required;
            }
        };
        let store = blobs.as_ref().map(|(_, b)| b.blobs.clone());
        let mut app = TestApp::spawn_with(db.url.clone(), configure, store).await;
        app.artifacts = blobs;
        if auth {
            app.root = Some(first_admin_token(&app).await);
        }
        let outcome = AssertUnwindSafe(case(&app)).catch_unwind().await;
        app.stop().await;
        db.drop_db().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The first admin token, as `modelreg token create` makes it.
async fn first_admin_token(app: &TestApp) -> String {
    let request = TokenRequest {
        name: "root".into(),
        subject: None,
        scopes: vec!["admin".into()],
        models: None,
        expires_at: None,
    };
    let cli = Actor::named("cli");
    let (record, token) = issue(request, &cli).expect("issue the first token");
    app.state
        .store
        .create_token(&record, &cli)
        .await
        .expect("store the first token");
    token
}

/// One case as a module of tests, one per backend listed (`sqlite Sqlite, postgres Postgres`):
/// what [`backend_tests!`] and [`http_layer_tests!`] expand each case to.
#[macro_export]
macro_rules! case_tests {
    ($setup:expr; $name:ident; $($test:ident $backend:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = $crate::helpers::Backend::$backend;
                    $crate::helpers::run_case(backend, $setup, super::$name).await
                }
            )+
        }
    };
}

/// Declares each listed `async fn name(app: &TestApp)` as `name::sqlite` and `name::postgres`,
/// with `Setup::PLAIN` or the setup given (`backend_tests!(with super::SETUP; a, b)`).
#[macro_export]
macro_rules! backend_tests {
    (with $setup:expr; $($name:ident),* $(,)?) => {$(
        $crate::case_tests!($setup; $name; sqlite Sqlite, postgres Postgres);
    )*};
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(with $crate::helpers::Setup::PLAIN; $($name),*);
    };
}

/// Cases about the HTTP layer (framing, limits, routing, connections), which answers before
/// any backend is asked and is the same code on both: run once, on SQLite, still over a real
/// socket (`name::sqlite`).
#[macro_export]
macro_rules! http_layer_tests {
    (with $setup:expr; $($name:ident),* $(,)?) => {$(
        $crate::case_tests!($setup; $name; sqlite Sqlite);
    )*};
    ($($name:ident),* $(,)?) => {
        $crate::http_layer_tests!(with $crate::helpers::Setup::PLAIN; $($name),*);
    };
}

/// The admin URL of the suite's Postgres: `crate::pg` chooses it once per run.
pub fn pg_admin_url() -> String {
    crate::pg::admin_url()
}

/// A database that lives as long as one test.
pub struct TestDb {
    pub url: String,
    pub name: String,
    /// Whether the database is still there to drop.
    live: bool,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        let name = format!("modelreg_test_{}", uuid::Uuid::now_v7().simple());
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/modelreg.db", dir.path().display());
                Self {
                    url,
                    name,
                    live: false,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("the Postgres suite needs a server at {admin} (set MODELREG_TEST_PG_URL): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = match admin.rfind('/') {
                    Some(i) => format!("{}/{name}", &admin[..i]),
                    None => panic!("MODELREG_TEST_PG_URL must end in /database"),
                };
                Self {
                    url,
                    name,
                    live: true,
                    _dir: None,
                }
            }
        }
    }

    pub async fn admin(&self, sql: String) {
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("admin statement");
    }

    pub async fn drop_db(mut self) {
        if self.live {
            self.admin(drop_statement(&self.name)).await;
            self.live = false;
        }
    }
}

fn drop_statement(name: &str) -> String {
    format!("drop database if exists {name} with (force)")
}

/// A test that panicked before `drop_db` (its app did not start, say) still leaves no
/// database behind: dropped here, on a thread of its own, since `Drop` cannot await.
impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let statement = drop_statement(&self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A running app and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The state the server runs with: its store and artifact store, for direct checks.
    pub state: AppState,
    pub db_url: String,
    pub client: reqwest::Client,
    /// The artifact store the case runs on, when its setup names one.
    pub artifacts: Option<(Blobs, TestBlobs)>,
    /// The first admin token, when the setup requires authentication.
    pub root: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

/// A response: status, headers, and the body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Asserts a problem+json answer with this status and code, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "not problem+json: {}",
            self.body
        );
        assert_eq!(
            self.body["code"], code,
            "unexpected code; body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        &self.body
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        &self.body
    }
}

impl TestApp {
    /// Runs statements on the case's database, behind the server's back (to age rows, or
    /// to damage them on purpose).
    pub async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.db_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    pub async fn spawn(db_url: String, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_with(db_url, adjust, None).await
    }

    /// With an artifact store that may be unreachable: waits for `/healthz`, not `/readyz`.
    pub async fn spawn_unready(db_url: String, blobs: modelreg::blob::BlobStore) -> Self {
        Self::start(db_url, |_| {}, Some(blobs), "/healthz").await
    }

    /// With a store made by the test (a fault-injecting one, say).
    pub async fn spawn_with_store(db_url: String, store: Arc<dyn store::Store>) -> Self {
        Self::start_with_store(db_url, |_| {}, None, "/readyz", Some(store)).await
    }

    /// Like [`TestApp::spawn`] with a given artifact store.
    pub async fn spawn_with(
        db_url: String,
        adjust: impl FnOnce(&mut Config),
        blobs: Option<modelreg::blob::BlobStore>,
    ) -> Self {
        Self::start(db_url, adjust, blobs, "/readyz").await
    }

    async fn start(
        db_url: String,
        adjust: impl FnOnce(&mut Config),
        blobs: Option<modelreg::blob::BlobStore>,
        ready_path: &str,
    ) -> Self {
        Self::start_with_store(db_url, adjust, blobs, ready_path, None).await
    }

    async fn start_with_store(
        db_url: String,
        adjust: impl FnOnce(&mut Config),
        blobs: Option<modelreg::blob::BlobStore>,
        ready_path: &str,
        store: Option<Arc<dyn store::Store>>,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let mut config = Config::for_database(db_url.clone());
        adjust(&mut config);
        let store = match store {
            Some(s) => s,
            None => store::connect_with_replicas(
                &db_url,
                8,
                &config.database.read_urls,
                config.database.replica_max_lag,
            )
            .await
            .expect("connect to test database"),
        };
        store.migrate().await.expect("migrate test database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let blobs = match blobs {
            Some(b) => b,
            None => {
                modelreg::blob::BlobStore::from_url(&config.artifacts_url).expect("artifact store")
            }
        };
        let state = AppState {
            store,
            blobs,
            config: Arc::new(config),
            events: Default::default(),
            usage: Default::default(),
            positions: Default::default(),
        };
        let kept = state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            modelreg::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        let app = Self {
            addr,
            state: kept,
            db_url: db_url.clone(),
            client: reqwest::Client::new(),
            artifacts: None,
            root: None,
            shutdown: Some(tx),
            handle,
        };
        wait_for(&app.client, app.addr, ready_path).await;
        app
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await;
    }

    /// Waits (up to 10 s) for `/readyz` to answer 200; whether it did.
    pub async fn wait_ready(&self) -> bool {
        for _ in 0..100 {
            if self.get("/readyz").await.status == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The artifact store of a case set up with one: its kind and the folder behind it.
    #[track_caller]
    pub fn artifact_store(&self) -> (Blobs, &std::path::Path) {
        let (kind, blobs) = self
            .artifacts
            .as_ref()
            .expect("a setup with artifact stores");
        (*kind, blobs.dir.path())
    }

    /// The first admin token of a case set up with authentication.
    #[track_caller]
    pub fn root_token(&self) -> &str {
        self.root.as_deref().expect("a setup with authentication")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        into_resp(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    /// A GET's body as text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.text().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(self.client.post(self.url(path))).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.client.put(self.url(path)).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(self.client.patch(self.url(path)).json(&body))
            .await
    }

    pub async fn raw(&self, method: reqwest::Method, path: &str, body: &'static str) -> Resp {
        self.send(
            self.client
                .request(method, self.url(path))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Creates a model and returns its name.
    pub async fn model(&self, name: &str) -> String {
        self.post("/api/v1/models", serde_json::json!({"name": name}))
            .await
            .ok(201);
        name.to_owned()
    }

    /// Registers a version and returns its number.
    pub async fn version(&self, model: &str, body: Value) -> i64 {
        let r = self
            .post(&format!("/api/v1/models/{model}/versions"), body)
            .await;
        r.ok(201)["version"].as_i64().expect("version number")
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn wait_ready(client: &reqwest::Client, addr: SocketAddr) {
    wait_for(client, addr, "/readyz").await;
}

async fn wait_for(client: &reqwest::Client, addr: SocketAddr, path: &str) {
    let url = format!("http://{addr}{path}");
    for _ in 0..200 {
        if let Ok(r) = client.get(&url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {addr} did not become ready");
}

/// Sends a request by hand, as much of the body as the server takes, and returns the reply.
pub async fn raw_exchange(app: &TestApp, head: &str, body: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes())
        .await
        .unwrap();
    // The server may answer and close before the body is through: stop writing then.
    for chunk in body.chunks(64 << 10) {
        if tokio::io::AsyncWriteExt::write_all(&mut tcp, chunk)
            .await
            .is_err()
        {
            break;
        }
    }
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The harness's one random source: xorshift64, seeded by `MODELREG_TEST_SEED` or a fixed
/// default, so a failing case names its seed and replays with it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Seeded from `MODELREG_TEST_SEED` when set; the seed, for messages.
    pub fn from_env() -> (Self, u64) {
        let seed = std::env::var("MODELREG_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        (Self::new(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn below_i64(&mut self, n: i64) -> i64 {
        self.below(n.max(1) as u64) as i64
    }
}

/// Transactions committed by a Postgres database, from its statistics: what counts
/// statements per call. Read from the admin database, so that the reads count in neither
/// window; around each window every session of the database is ended, since a backend
/// reports its counts as it exits, where an idle one may hold them for 10 s. The app's pool
/// opens new connections on its next use.
pub struct Commits {
    admin: sqlx::PgConnection,
    url: String,
    name: String,
    /// Sessions left alone (a transaction the case holds open).
    kept: Vec<i32>,
}

impl Commits {
    pub async fn connect(url: &str) -> Self {
        use sqlx::Connection;
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        Self {
            admin: sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap(),
            url: url.to_owned(),
            name: options.get_database().unwrap().to_owned(),
            kept: Vec::new(),
        }
    }

    /// Leaves the session with this backend pid open: it is not counted until it ends.
    pub fn keep(&mut self, pid: i32) {
        self.kept.push(pid);
    }

    /// Turns autovacuum off for the database's tables: its analyze of tables just filled
    /// would count in the windows.
    pub async fn quiet_tables(&mut self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(
            "do $$ declare t record; begin \
               for t in select tablename from pg_tables where schemaname = 'public' loop \
                 execute format('alter table %I set (autovacuum_enabled = false)', t.tablename); \
               end loop; end $$",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    /// Ends every session of the database and waits until they are gone: their counts are
    /// in the statistics then.
    async fn flush(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 = sqlx::query_scalar(
                "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = $1 and pid <> pg_backend_pid() and pid <> all($2)) t",
            )
            .bind(&self.name)
            .bind(&self.kept)
            .fetch_one(&mut self.admin)
            .await
            .unwrap();
            if left == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sessions of {} did not end",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn now(&mut self) -> i64 {
        self.flush().await;
        sqlx::raw_sql("select pg_stat_clear_snapshot()")
            .execute(&mut self.admin)
            .await
            .unwrap();
        sqlx::query_scalar("select xact_commit from pg_stat_database where datname = $1")
            .bind(&self.name)
            .fetch_one(&mut self.admin)
            .await
            .unwrap()
    }

    /// The transactions `call` costs.
    pub async fn of<F: std::future::Future<Output = ()>>(&mut self, call: F) -> i64 {
        let before = self.now().await;
        call.await;
        self.now().await - before
    }
}
