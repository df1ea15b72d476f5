//! The built executable, run as an operator runs it: configuration from the environment only,
//! exit codes, signals, the command line, and stdout as pure JSON lines (or export's data).
//!
//! Every process is wrapped in `harness::Proc`, which kills it on drop, so a failing assertion
//! never leaves a server behind. One module per topic.

mod harness;

mod cli;
mod database_url;
mod export;
mod import;
mod logs;
mod senders;
mod signals;
mod startup;
