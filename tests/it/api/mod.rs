//! End-to-end tests of the HTTP API: a server running in this process (`support::in_process`)
//! over a real listener on 127.0.0.1:0.

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
