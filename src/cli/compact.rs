//! `vectord compact`: purging deleted records from a folder no server is using.

use anyhow::Context;

use vectord::catalog::{Catalog, CollectionSelector};

/// `vectord compact`: purges deleted records from the selected collection (or every one) of
/// a stopped server's folder, printing one JSON report per collection. Every collection is
/// attempted; any failure makes the exit status non-zero.
pub fn compact_command(
    path: &std::path::Path,
    sel: Option<CollectionSelector>,
) -> anyhow::Result<()> {
    let catalog = Catalog::open(path).with_context(|| {
        format!(
            "opening {} (if a server is running, use POST /api/v2/admin/collections/{{id}}/compact)",
            path.display()
        )
    })?;
    let entries = match &sel {
        Some(sel) => vec![catalog.select(sel)?],
        None => catalog.all_collections(),
    };
    let mut failed = 0;
    for entry in entries {
        let started = std::time::Instant::now();
        let result = entry
            .engine()
            .map_err(anyhow::Error::from)
            .and_then(|c| c.purge_deleted().map_err(anyhow::Error::from));
        match result {
            Ok(report) => {
                let mut line = serde_json::to_value(report)?;
                line["collection"] = serde_json::json!(entry.record.id);
                line["name"] = serde_json::json!(entry.record.name);
                line["elapsed_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
                println!("{line}");
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "vectord: purging {} ({}) failed: {e:#}",
                    entry.record.name, entry.record.id
                );
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} collection(s) could not be purged");
    Ok(())
}
