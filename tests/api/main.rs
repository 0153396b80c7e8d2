//! End-to-end tests of the HTTP API over a real listener on 127.0.0.1:0, one binary with topic
//! files (faster to link than one binary per file).

mod auth;
mod collections;
mod embed;
mod errors;
mod fake_openai;
mod legacy;
mod limits;
mod openapi;
mod records;
mod security;
mod system;
mod util;
