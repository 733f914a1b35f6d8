//! The maintenance commands: `gc`, `verify` and `backup`.

use crate::connect;
use modelreg::blob::BlobStore;
use modelreg::config::{DatabaseConfig, LogFormat};
use modelreg::telemetry;

/// Where a registry keeps its records and its artifacts.
#[derive(clap::Args)]
pub(crate) struct Registry {
    #[command(flatten)]
    database: DatabaseConfig,
    /// Where artifacts are stored: file://DIR, s3://bucket/prefix.
    #[arg(
        long,
        env = "MODELREG_ARTIFACTS_URL",
        default_value = "file://./modelreg-data/artifacts"
    )]
    artifacts_url: String,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    registry: Registry,
    /// Also read every artifact and check its sha256 (reads every byte).
    #[arg(long)]
    deep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    registry: Registry,
    /// A new (or empty) folder for the copy: DEST/modelreg.db and DEST/artifacts/.
    dest: std::path::PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    registry: Registry,
    /// Leave objects younger than this alone (uploads may still be in flight): 24h, 30m, 7d
    /// (a bare number is seconds, as in every setting).
    #[arg(long, default_value = "24h", value_parser = modelreg::config::parse_span)]
    grace: chrono::Duration,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn gc(args: GcArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    let store = connect(&args.registry.database).await?;
    let blobs = BlobStore::from_url(&args.registry.artifacts_url)?;
    let report = modelreg::gc::collect(store.as_ref(), &blobs, args.grace, args.dry_run).await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for (key, size) in &report.orphans {
        println!("{verb} {key} ({size} bytes)");
    }
    for leftover in &report.abandoned {
        println!(
            "{verb} abandoned upload {} ({} bytes)",
            leftover.what, leftover.bytes
        );
    }
    let bytes: u64 = report.orphans.iter().map(|o| o.1).sum();
    println!(
        "{} objects scanned, {} orphans ({bytes} bytes) {verb}, {} abandoned uploads {verb}, \
         {} objects of erased artifacts deleted",
        report.scanned,
        report.orphans.len(),
        report.abandoned.len(),
        report.erased
    );
    Ok(())
}

pub(crate) async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    refuse_missing_file(&args.registry.database.url)?;
    let store = connect(&args.registry.database).await?;
    let blobs = BlobStore::from_url(&args.registry.artifacts_url)?;
    let report = modelreg::verify::run(store.as_ref(), &blobs, args.deep).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("{}: {}", f.check, f.detail);
        }
        println!(
            "{} artifacts checked{}, {} problems",
            report.artifacts_checked,
            if args.deep {
                format!(" ({} bytes hashed)", report.bytes_hashed)
            } else {
                String::new()
            },
            report.findings.len()
        );
    }
    if report.is_clean() {
        Ok(())
    } else {
        anyhow::bail!(
            "the registry is damaged: {} problems",
            report.findings.len()
        )
    }
}

pub(crate) async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text);
    args.registry
        .database
        .validate()
        .map_err(anyhow::Error::msg)?;
    let report = modelreg::backup::run(
        &args.registry.database.url,
        &args.registry.artifacts_url,
        &args.dest,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(modelreg::config::scrub(
            &format!("{e:#}"),
            &args.registry.database.url
        ))
    })?;
    for key in &report.deleted_meanwhile {
        println!("left out {key}: its artifact was deleted while the backup ran");
    }
    println!(
        "backed up the database to {} and {} artifacts ({} bytes) to {}",
        report.database.display(),
        report.artifacts,
        report.bytes,
        args.dest.join("artifacts").display()
    );
    Ok(())
}

/// Checking a registry must not create one: a mistyped SQLite path would otherwise verify as
/// an empty, sound registry.
fn refuse_missing_file(url: &str) -> anyhow::Result<()> {
    if !url.starts_with("sqlite:") {
        return Ok(());
    }
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
    let file = options.get_filename();
    if !file.exists() {
        anyhow::bail!("there is no registry at {}", file.display());
    }
    Ok(())
}
