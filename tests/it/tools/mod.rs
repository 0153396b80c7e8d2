//! The client subcommands that talk to servers only over HTTP: `vectord bench` and
//! `vectord import --from-chroma` / `vectord export`, against vectord and a real Chroma.

mod bench;
mod migrate_chroma;
