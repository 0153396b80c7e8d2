//! Clients of vectord (or any Chroma-compatible server) that ship in the same binary.
//!
//! **Architecture Invariant:** the tools talk to servers only over Chroma's HTTP API; they
//! import nothing of the engine, the catalog, the index or the filter modules (nor anything
//! else of this crate), so they measure and move data exactly as any other client would.
//! Migrate's NDJSON import reads a local file and sends it to a server; it never writes a data
//! folder.
//!
//! - [`bench`](mod@bench): `vectord bench`, load and recall of any Chroma-compatible server.
//! - [`migrate`]: `vectord import` / `vectord export`, copying from a Chroma server or an
//!   NDJSON file into a running server, resumably.

pub mod bench;
pub mod migrate;
