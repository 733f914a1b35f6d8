//! The `modelreg` binary: parse settings, start logging, connect, serve.

mod maintenance;

use clap::{CommandFactory, Parser, Subcommand};
use modelreg::blob::BlobStore;
use modelreg::config::{Config, DatabaseConfig, LogFormat};
use modelreg::{AppState, store, telemetry};
use std::process::ExitCode;
use std::sync::Arc;

/// A model registry: versions, configs, metrics, artifacts, and stages with promote and rollback.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve(Box<Config>),
    /// Apply database migrations and exit.
    Migrate(DatabaseConfig),
    /// Delete artifact objects that no artifact row refers to (left by crashes).
    Gc(maintenance::GcArgs),
    /// Check the registry's integrity: the database's rules and every artifact's object.
    /// Exits 1 and lists what is wrong when anything is.
    Verify(maintenance::VerifyArgs),
    /// Copy an embedded registry (SQLite and its artifact folder) into DEST while it serves.
    Backup(maintenance::BackupArgs),
    /// Manage bearer tokens directly in the database (to bootstrap the first admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script: `modelreg completion bash > /etc/bash_completion.d/modelreg`.
    Completion { shell: clap_complete::Shell },
    #[command(flatten)]
    Client(modelreg::client::Command),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is shown only this once).
    Create(TokenCreateArgs),
    /// Print a fresh token without storing it, for MODELREG_BOOTSTRAP_TOKEN.
    New,
}

#[derive(clap::Args)]
struct TokenCreateArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    /// A name for the token; it is the actor recorded in events and stage history.
    #[arg(long)]
    name: String,
    /// Who holds the token: a person or a system (default: the name). Approvals of promotion
    /// requests count distinct subjects, and nobody approves their own request with another
    /// token.
    #[arg(long)]
    subject: Option<String>,
    /// read, write, promote or admin (repeatable; admin implies all).
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Limit the token to models matching this glob, e.g. 'fraud-*' (repeatable).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Make the token expire after this long: 90d, 12h (a bare number is seconds, as in
    /// every setting).
    #[arg(long, value_parser = modelreg::config::parse_span)]
    expires_in: Option<chrono::Duration>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        // `modelreg` alone means `modelreg serve` with flags from the environment.
        match Cli::try_parse_from(["modelreg", "serve"]) {
            Ok(Cli { command: Some(c) }) => c,
            Ok(_) => unreachable!("serve was given"),
            Err(e) => e.exit(),
        }
    });
    if let Command::Completion { shell } = command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "modelreg",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match command {
        Command::Client(c) => return runtime.block_on(modelreg::client::run(c)),
        other => other,
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve(config) => serve(*config).await,
            Command::Migrate(db) => migrate(db).await,
            Command::Gc(args) => maintenance::gc(args).await,
            Command::Verify(args) => maintenance::verify(args).await,
            Command::Backup(args) => maintenance::backup(args).await,
            Command::Token(TokenCommand::Create(args)) => token_create(args).await,
            Command::Token(TokenCommand::New) => {
                let secret = modelreg::domain::token::new_secret()
                    .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
                println!("{}", secret.token);
                Ok(())
            }
            Command::Completion { .. } | Command::Client(_) => {
                unreachable!("handled before the runtime's server commands")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) async fn connect(db: &DatabaseConfig) -> anyhow::Result<Arc<dyn store::Store>> {
    db.validate().map_err(anyhow::Error::msg)?;
    let store = store::connect_with_replicas(
        &db.url,
        db.max_connections,
        &db.read_urls,
        db.replica_max_lag,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the database {}: {}",
            modelreg::config::redact(&db.url),
            modelreg::config::scrub(&format!("{e:#}"), &db.url)
        )
    })?;
    store.migrate().await.map_err(|e| {
        anyhow::anyhow!(
            "database migration failed: {}",
            modelreg::config::scrub(&format!("{e:?}"), &db.url)
        )
    })?;
    Ok(store)
}

async fn migrate(db: DatabaseConfig) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    connect(&db).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn token_create(args: TokenCreateArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    let store = connect(&args.database).await?;
    let body = modelreg::domain::token::TokenRequest {
        name: args.name,
        subject: args.subject,
        scopes: args.scopes,
        models: (!args.models.is_empty()).then_some(args.models),
        expires_at: args.expires_in.map(|d| chrono::Utc::now() + d),
    };
    let actor = modelreg::domain::access::Actor::named("cli");
    let (record, token) = modelreg::domain::token::issue(body, &actor)
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    store
        .create_token(&record, &actor)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "created token {} ({}); it is shown only this once:",
        record.id, record.name
    );
    println!("{token}");
    Ok(())
}

/// Makes sure the bootstrap admin token exists (it is stored as a hash, like any other).
async fn bootstrap(store: &dyn store::Store, token: &str) -> anyhow::Result<()> {
    use modelreg::domain::access::Scope;
    use modelreg::domain::token::{hash_secret, parse_token, secret_matches};
    let Some((id, secret)) = parse_token(token) else {
        anyhow::bail!(
            "MODELREG_BOOTSTRAP_TOKEN is not a modelreg token; make one with `modelreg token new`"
        );
    };
    if secret.len() < 32 {
        anyhow::bail!("MODELREG_BOOTSTRAP_TOKEN is too short; make one with `modelreg token new`");
    }
    match store
        .find_token(id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        Some(t) if secret_matches(secret, &t.secret_hash) => Ok(()),
        Some(_) => anyhow::bail!("MODELREG_BOOTSTRAP_TOKEN's id belongs to another token"),
        None => {
            let record = store::TokenRecord {
                id,
                name: "bootstrap-admin".to_owned(),
                secret_hash: hash_secret(secret),
                scopes: vec![Scope::Admin],
                models: None,
                expires_at: None,
                revoked_at: None,
                created_at: modelreg::domain::time::now(),
                created_by: "bootstrap".to_owned(),
                subject: "bootstrap-admin".to_owned(),
            };
            let actor = modelreg::domain::access::Actor::named("bootstrap");
            store
                .create_token(&record, &actor)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(token_id = %id, "bootstrap admin token created");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    config.validate().map_err(anyhow::Error::msg)?;
    let blobs = BlobStore::from_url(&config.artifacts_url)
        .map_err(|e| anyhow::anyhow!("artifact store: {e}"))?;
    let store = connect(&config.database).await?;
    if let Some(token) = config.bootstrap_token.as_deref().filter(|t| !t.is_empty()) {
        bootstrap(store.as_ref(), token).await?;
    }
    // A certificate that does not load stops the start here, before anything says
    // "listening".
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        modelreg::tls::Acceptor::from_files(cert, key)
            .map_err(|e| anyhow::anyhow!("cannot load the TLS certificate and key: {e}"))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {at} for /metrics: {e}"))?,
        ),
        None => None,
    };
    tracing::info!(
        %addr,
        tls = config.tls_cert.is_some(),
        database = %modelreg::config::redact(&config.database.url),
        "listening"
    );
    let state = AppState {
        store,
        blobs,
        config: Arc::new(config),
        events: Default::default(),
        usage: Default::default(),
        positions: Default::default(),
    };
    // One signal stops every listener.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let metrics = metrics_listener.map(|l| {
        if let Ok(at) = l.local_addr() {
            tracing::info!(addr = %at, "serving /metrics without a token");
        }
        tokio::spawn(modelreg::serve_metrics(
            l,
            state.clone(),
            stopped(stopping.clone()),
        ))
    });
    modelreg::serve(listener, state, stopped(stopping)).await?;
    if let Some(m) = metrics {
        m.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
