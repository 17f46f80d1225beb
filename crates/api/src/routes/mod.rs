//! Routes, one module per resource, assembled into the application router with its layers.

pub mod admin;
pub mod analytics;
pub mod api_keys;
pub mod auth;
pub mod billing;
pub mod campaigns;
pub mod contacts;
pub mod conversations;
pub mod health;
pub mod imports;
pub mod links;
pub mod messages;
pub mod numbers;
pub mod segments;
pub mod templates;
pub mod tenant;
pub mod users;
pub mod views;
pub mod webhooks;

use axum::{Router, http::Method};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{ApiContext, ApiError, middleware, openapi::ApiDoc};

/// The versioned API, with its OpenAPI description gathered from the handlers.
fn api() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(tenant::routes())
        .merge(users::routes())
        .merge(api_keys::routes())
        .merge(admin::routes())
        .merge(numbers::routes())
        .merge(templates::routes())
        .merge(messages::routes())
        .merge(conversations::routes())
        .merge(contacts::routes())
        .merge(segments::routes())
        .merge(imports::routes())
        .merge(campaigns::routes())
        .merge(links::routes())
        .merge(analytics::routes())
        .merge(billing::routes())
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The whole application: API, health and metrics, docs, and the layers around them.
pub fn router(ctx: ApiContext) -> Router {
    let (api, spec) = api().split_for_parts();
    let app = api
        .merge(health::routes())
        .merge(webhooks::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::MethodNotAllowed(format!("{method} is not allowed on this route."))
        });
    let app = app.merge(SwaggerUi::new("/docs").url("/openapi.json", spec));
    // The smart-link redirect is the hot path: it skips the API's layers (see `middleware::lean`).
    middleware::wrap(app, &ctx)
        .merge(middleware::lean(links::redirect_routes()))
        .with_state(ctx)
}
