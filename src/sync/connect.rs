//! Connections to the source: SQL sessions (tokio-postgres, TLS through rustls unless
//! `sslmode=disable`), the replication transport's settings, and the table's column types.

use std::sync::{Arc, Once};

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

use super::config::{pg_config, JobConfig};
use super::value::ColumnKind;
use super::SyncError;

/// rustls has two crypto backends compiled in (ours and the replication crate's); pick one
/// process-wide before anything builds a TLS config.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only means another provider was installed first, which is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

fn tls_config(job: &JobConfig) -> Result<rustls::ClientConfig, SyncError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &job.ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| SyncError::Config(format!("ca_file {}: {e}", path.display())))?;
        for c in certs {
            let c = c.map_err(|e| SyncError::Config(format!("ca_file {}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| SyncError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Opens a SQL session; the connection is driven by a spawned task that ends with the client.
pub async fn connect(job: &JobConfig) -> Result<Client, SyncError> {
    let mut cfg = pg_config(&job.url)?;
    cfg.application_name(format!("vectord-sync-{}", job.name));
    let client = if cfg.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = cfg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        client
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(job)?);
        let (client, conn) = cfg.connect(tls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        client
    };
    Ok(client)
}

/// The replication transport's settings for the job (same host, user, database and TLS rule).
pub fn replication_config(
    job: &JobConfig,
    start: pgwire_replication::Lsn,
) -> Result<ReplicationConfig, SyncError> {
    let cfg = pg_config(&job.url)?;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("postgres").to_string();
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let db = cfg.get_dbname().unwrap_or(&user).to_string();
    let tls = match cfg.get_ssl_mode() {
        SslMode::Disable | SslMode::Prefer => TlsConfig::disabled(),
        _ => TlsConfig::verify_full(job.ca_file.clone()),
    };
    if cfg.get_ssl_mode() != SslMode::Disable {
        install_crypto_provider();
    }
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        db,
        job.slot_name(),
        job.publication_name(),
    )
    .with_port(port)
    .with_tls(tls)
    .with_binary(true)
    .with_start_lsn(start)
    .with_ack_lsn(start)
    .with_application_name(format!("vectord-sync-{}", job.name))
    .with_status_interval(std::time::Duration::from_secs(1)))
}

/// The source columns' decoders, in [`JobConfig::columns`] order, checked against the job:
/// every column exists, the embedding is a vector, the document is text.
pub async fn column_kinds(client: &Client, job: &JobConfig) -> Result<Vec<ColumnKind>, SyncError> {
    let (schema, table) = job.schema_table();
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema, &table],
        )
        .await?;
    if rows.is_empty() {
        return Err(SyncError::Config(format!("table {} not found", job.table)));
    }
    let types: std::collections::HashMap<String, String> = rows
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut kinds = Vec::new();
    for (i, col) in job.columns().enumerate() {
        let ty = types
            .get(col)
            .ok_or_else(|| SyncError::Config(format!("column {col} not found in {}", job.table)))?;
        let kind = ColumnKind::from_type_name(ty).ok_or_else(|| {
            SyncError::Config(format!(
                "column {col} has type {ty}, which sync cannot read"
            ))
        })?;
        let fits = match i {
            0 => matches!(
                kind,
                ColumnKind::Uuid
                    | ColumnKind::Text
                    | ColumnKind::Int2
                    | ColumnKind::Int4
                    | ColumnKind::Int8
            ),
            1 => kind.is_vector(),
            2 if job.document_column.is_some() => kind == ColumnKind::Text,
            _ => true,
        };
        if !fits {
            return Err(SyncError::Config(format!(
                "column {col} has type {ty}, which cannot be the {}",
                ["id", "embedding", "document"][i.min(2)]
            )));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

/// A shared handle to a SQL session.
pub type SharedClient = Arc<Client>;
