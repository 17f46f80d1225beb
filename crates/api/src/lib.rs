//! PingLayer's HTTP API.
//!
//! Layout: [`state`] holds the `ApiContext` every handler gets; [`error`] is the one error type
//! that becomes `{"error": {code, message, details}}`; [`extract`] wraps axum's extractors so
//! their rejections use that shape too; [`auth`] turns credentials into a `Principal` and
//! decides permissions through one extractor; [`routes`] has one module per resource;
//! [`middleware`] the cross-cutting layers (request ids, metrics, rate limits, headers).

pub mod auth;
pub mod contact_pages;
pub mod error;
pub mod export;
pub mod extract;
pub mod mailer;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod state;

pub use error::{ApiError, ApiResult};
pub use routes::router;
pub use settings::{Environment, MetaApp, Settings, SmtpSettings};
pub use state::{ApiContext, EngineLink};
