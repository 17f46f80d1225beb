//! The `pinglayer` binary's library half: configuration, start-up and shutdown, so that tests
//! start the very same application the binary does.

pub mod admin;
pub mod bench;
pub mod bench_contacts;
pub mod bench_links;
pub mod cli;
pub mod config;
pub mod secrets;
pub mod startup;
pub mod telemetry;
