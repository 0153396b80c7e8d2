//! What several subcommands share: the flags choosing one collection, and the runtime of a
//! subcommand that does async work.

use anyhow::Context;

use vectord::catalog::{CollectionSelector, DEFAULT_DATABASE, DEFAULT_TENANT};

/// Which collection a command is limited to.
#[derive(Debug, clap::Args)]
pub struct CollectionArgs {
    /// The collection: its id, or its name in --tenant/--database.
    #[arg(long)]
    collection: Option<String>,
    /// Tenant of a collection given by name.
    #[arg(long, default_value = DEFAULT_TENANT, requires = "collection")]
    tenant: String,
    /// Database of a collection given by name.
    #[arg(long, default_value = DEFAULT_DATABASE, requires = "collection")]
    database: String,
}

impl CollectionArgs {
    /// The collection chosen, if any.
    pub fn selector(self) -> Option<CollectionSelector> {
        let (tenant, database) = (self.tenant, self.database);
        self.collection.map(|collection| CollectionSelector {
            collection,
            tenant,
            database,
        })
    }
}

/// A multi-threaded runtime for a subcommand that does async work.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
