//! hookbox: a webhook ingestion server for small machines.
//!
//! Senders POST HMAC-signed JSON messages to `/webhook`; each is validated and stored exactly once
//! — in SQLite, or in a PostgreSQL database several instances share — before the 200 goes out. Operators read them back with `/messages` and `/stats`, and
//! watch the service through `/health/*`, `/metrics` and one JSON log line per request.
//!
//! `start` runs the exact server that the binary runs, so tests exercise the real thing.
//! See ARCHITECTURE.md for the life of a request and the invariants.

pub mod answer;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod cursor;
pub mod error;
pub mod feed;
pub mod handlers;
pub mod healthcheck;
pub mod http;
pub mod listener;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod problem;
pub mod reply;
pub mod response;
pub mod router;
pub mod server;
pub mod signature;
pub mod state;
pub mod store;
pub mod text;
pub mod timestamp;
pub mod worker;
pub mod writer;

pub use config::Config;
pub use server::{ServerHandle, StartError, start};
