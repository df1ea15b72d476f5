//! Integration tests: one binary, each test against a real server on 127.0.0.1:0 with its own
//! temporary database, over real HTTP. `binary` runs the built executable for what only it can
//! show (exit codes, signals, stdout).

mod support;

mod answers;
mod attack_auth;
mod attack_queries;
mod attack_senders;
mod auth;
mod binary;
mod commit_timeout;
mod concurrency;
mod conn;
mod edges;
mod export;
mod feed;
mod growth;
mod hostile;
mod index_state;
mod layout;
mod messages;
mod migration;
mod ops;
mod packaging;
#[cfg(feature = "postgres")]
mod pg_proxy;
#[cfg(feature = "postgres")]
mod pg_rows;
#[cfg(feature = "postgres")]
mod pg_stall;
#[cfg(feature = "postgres")]
mod pg_tls;
mod pipeline;
#[cfg(feature = "postgres")]
mod postgres;
mod properties;
mod retention;
mod senders_openapi;
mod senders_standard;
mod senders_twilio;
mod senders_whatsapp;
mod stats;
mod storage;
mod store_model;
mod text_index;
mod unmatchable;
mod webhook;
