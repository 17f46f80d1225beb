//! Liveness, readiness and Prometheus metrics. Not part of the versioned API.

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use serde_json::json;

use crate::{ApiContext, ApiError, ApiResult};

pub fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// The process can serve: its database answers.
async fn ready(State(ctx): State<ApiContext>) -> ApiResult<impl IntoResponse> {
    match ctx.db.ping().await {
        Ok(()) => Ok(axum::Json(json!({ "status": "ready", "database": "ok" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            Err(ApiError::Unavailable)
        }
    }
}

async fn metrics(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let body = ctx.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
