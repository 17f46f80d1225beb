//! Meta's WhatsApp Cloud API, as PingLayer speaks it: the typed [`client::Client`], the wire
//! types of sends, templates and numbers ([`types`]), Graph errors classified by what to do
//! about them ([`error`]), and webhook payloads with their signature ([`webhook`]).
//! The sandbox (`pinglayer sandbox`) serves the same types, so both sides agree by construction.

pub mod client;
pub mod error;
pub mod types;
pub mod webhook;

pub use client::{Client, ClientConfig, ClientError};
pub use error::{ErrorAction, GraphError};
