//! The storage engine through its Rust API, no server: Chroma's record semantics against a model,
//! recall at CI scale, concurrency, hostile input, `kill -9` of an ingesting child process, and
//! 1,000+ collections through the catalog with bounded descriptors and threads.

mod bad_input;
mod concurrency;
mod crash;
mod many_collections;
mod model;
mod recall;
