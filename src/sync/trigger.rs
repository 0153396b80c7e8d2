//! Trigger mode, for roles that cannot replicate: `vectord sync install` adds a change table
//! (`vectord.changes_<job>`: seq, op, id), row triggers and a statement-level TRUNCATE trigger
//! that append to it and `NOTIFY vectord_<job>`. The follower reads the table in `seq` order,
//! re-reads the current rows of the changed ids (so TOAST, ordering between transactions and
//! replays cannot matter: it always writes the source's present state), writes them with a
//! `trigger <seq>` checkpoint, then deletes exactly the changes it applied. It wakes on
//! `LISTEN` and polls every `poll_ms` as a safety net.
//!
//! Why re-read instead of row images: for one id, changes are serialised by row locks, so the
//! last change in `seq` order is the last committed; fetching the row then yields the state
//! after it. Deleting applied changes by their exact `seq` (never a range) means a change from a
//! transaction that committed late, with a smaller `seq`, is still read on the next pass.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::apply::{Applier, Change};
use super::config::{pg_config, JobConfig};
use super::position::Position;
use super::snapshot::{fetch_by_ids, fetch_by_ids_sql};
use super::status::StatusHandle;
use super::{blocking, SyncError};

/// `vectord.changes_<job>`.
pub fn change_table(job: &JobConfig) -> String {
    format!("vectord.\"changes_{}\"", job.name)
}

fn channel(job: &JobConfig) -> String {
    format!("vectord_{}", job.name)
}

/// The install script: change table, capture function, row and TRUNCATE triggers.
pub fn install_sql(job: &JobConfig) -> String {
    let t = change_table(job);
    let f = format!("vectord.\"capture_{}\"", job.name);
    let id = &job.id_column;
    let src = job.qualified_table();
    let ch = channel(job);
    let name = &job.name;
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS vectord;
CREATE TABLE IF NOT EXISTS {t} (
  seq bigserial PRIMARY KEY,
  op "char" NOT NULL,
  id text,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO {t}(op, id) VALUES ('T', NULL);
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO {t}(op, id) VALUES ('D', OLD."{id}"::text);
  ELSIF TG_OP = 'UPDATE' AND OLD."{id}" IS DISTINCT FROM NEW."{id}" THEN
    INSERT INTO {t}(op, id) VALUES ('D', OLD."{id}"::text), ('U', NEW."{id}"::text);
  ELSE
    INSERT INTO {t}(op, id) VALUES ('U', NEW."{id}"::text);
  END IF;
  PERFORM pg_notify('{ch}', '');
  RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS "vectord_{name}_row" ON {src};
CREATE TRIGGER "vectord_{name}_row" AFTER INSERT OR UPDATE OR DELETE ON {src}
  FOR EACH ROW EXECUTE FUNCTION {f}();
DROP TRIGGER IF EXISTS "vectord_{name}_truncate" ON {src};
CREATE TRIGGER "vectord_{name}_truncate" AFTER TRUNCATE ON {src}
  FOR EACH STATEMENT EXECUTE FUNCTION {f}();
"#
    )
}

/// Runs the install script in one transaction.
pub async fn install(client: &mut Client, job: &JobConfig) -> Result<(), SyncError> {
    let tx = client.transaction().await?;
    tx.batch_execute(&install_sql(job)).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the triggers, function and change table.
pub async fn uninstall(client: &Client, job: &JobConfig) -> Result<(), SyncError> {
    let src = job.qualified_table();
    let name = &job.name;
    client
        .batch_execute(&format!(
            r#"DROP TRIGGER IF EXISTS "vectord_{name}_row" ON {src};
               DROP TRIGGER IF EXISTS "vectord_{name}_truncate" ON {src};
               DROP FUNCTION IF EXISTS vectord."capture_{name}"();
               DROP TABLE IF EXISTS {};"#,
            change_table(job)
        ))
        .await?;
    Ok(())
}

/// Fails with a clear message when `vectord sync install` has not been run.
pub async fn check_installed(client: &Client, job: &JobConfig) -> Result<(), SyncError> {
    let name = format!("changes_{}", job.name);
    let found = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'vectord' AND c.relname = $1",
            &[&name],
        )
        .await?
        .is_some();
    if found {
        Ok(())
    } else {
        Err(SyncError::Config(format!(
            "trigger mode needs the change table; run `vectord sync install --job {}` first",
            job.name
        )))
    }
}

/// A session whose notifications arrive on a channel (the `LISTEN` side).
async fn listening_client(
    job: &JobConfig,
) -> Result<(Client, mpsc::UnboundedReceiver<()>), SyncError> {
    let cfg = pg_config(&job.url)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let client = if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        let (client, mut conn) = cfg.connect(NoTls).await?;
        tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, AsyncMessage::Notification(_)) {
                    let _ = tx.send(());
                }
            }
        });
        client
    } else {
        // Over TLS the follower polls (every `poll_ms`) instead of listening.
        let client = super::connect::connect(job).await?;
        drop(tx);
        client
    };
    Ok((client, rx))
}

/// Follows the change table until shutdown (or until it is empty, with `until_caught_up`).
pub async fn follow(
    job: &JobConfig,
    mut applier: Applier,
    status: &StatusHandle,
    shutdown: &mut watch::Receiver<bool>,
    until_caught_up: bool,
) -> Result<Applier, SyncError> {
    let (client, mut wake) = listening_client(job).await?;
    client
        .batch_execute(&format!("LISTEN \"{}\"", channel(job)))
        .await?;
    let t = change_table(job);
    let read = client
        .prepare(&format!(
            "SELECT seq, op::text, id FROM {t} ORDER BY seq LIMIT {}",
            job.batch_rows
        ))
        .await?;
    let fetch_sql = fetch_by_ids_sql(job, applier.mapper().kinds()[0]);
    let fetch = client
        .prepare_typed(&fetch_sql, &[Type::TEXT_ARRAY])
        .await?;
    let prune = client
        .prepare_typed(
            &format!("DELETE FROM {t} WHERE seq = ANY($1)"),
            &[Type::INT8_ARRAY],
        )
        .await?;
    let lag = client
        .prepare(&format!(
            "SELECT count(*)::int8, COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(at)), 0)::float8 FROM {t}"
        ))
        .await?;
    status.lock().phase = "follow".into();
    loop {
        let changes = client.query(&read, &[]).await?;
        if changes.is_empty() {
            {
                let mut st = status.lock();
                st.lag_rows = 0;
                st.lag_seconds = 0.0;
                st.set_caught_up(true);
            }
            if until_caught_up || *shutdown.borrow() {
                return Ok(applier);
            }
            tokio::select! {
                _ = wake.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(job.poll_ms)) => {}
                _ = shutdown.changed() => return Ok(applier),
            }
            // Coalesce a burst of notifications into one read.
            while wake.try_recv().is_ok() {}
            continue;
        }
        let mut seqs = Vec::with_capacity(changes.len());
        let mut group: Vec<String> = Vec::new();
        let mut max_seq = 0i64;
        for row in &changes {
            let seq: i64 = row.try_get(0)?;
            let op: String = row.try_get(1)?;
            let id: Option<String> = row.try_get(2)?;
            seqs.push(seq);
            max_seq = max_seq.max(seq);
            if op == "T" {
                fetch_by_ids(&client, &fetch, &mut applier, &mut group).await?;
                let (a, r) = blocking(applier, |a| a.push(Change::Truncate)).await?;
                applier = a;
                r?;
            } else if let Some(id) = id {
                group.push(id);
            }
        }
        fetch_by_ids(&client, &fetch, &mut applier, &mut group).await?;
        let pos = Position::Trigger { seq: max_seq }.encode();
        let (a, r) = blocking(applier, move |a| a.flush(Some(pos))).await?;
        applier = a;
        let flushed = r?;
        client.execute(&prune, &[&seqs]).await?;
        let row = client.query_one(&lag, &[]).await?;
        let mut st = status.lock();
        st.applied += flushed.upserted;
        st.deleted += flushed.deleted;
        st.position = Some(max_seq.to_string());
        st.skipped = applier.skips.clone();
        st.last_skip = applier.last_skip.clone();
        st.lag_rows = u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
        st.lag_seconds = row.try_get::<_, f64>(1)?;
        let caught_up = st.lag_rows == 0;
        st.set_caught_up(caught_up);
    }
}
