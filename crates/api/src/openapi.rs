//! The OpenAPI document's frame; paths and schemas come from the handlers' annotations.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PingLayer API",
        description = "Self-hosted, multi-tenant WhatsApp Business messaging. Errors are always \
            `{\"error\": {\"code\", \"message\", \"details\"}}`; lists take `limit` and `cursor` and \
            answer `{\"data\", \"next_cursor\"}`."
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sign-up, sign-in, tokens"),
        (name = "tenant", description = "The business's own profile and settings"),
        (name = "users", description = "The tenant's team"),
        (name = "api-keys", description = "Keys for server-to-server calls"),
        (name = "admin", description = "Platform administration (superadmins)"),
        (name = "whatsapp", description = "Connected WhatsApp numbers"),
        (name = "templates", description = "Message templates and their review"),
        (name = "messages", description = "Single messages and their states"),
        (name = "inbox", description = "Conversations with customers"),
        (name = "contacts", description = "Customers, tags and consent"),
        (name = "campaigns", description = "Broadcasts, schedules, runs and their results"),
        (name = "links", description = "Smart links: short URLs, personal per campaign recipient, every click counted"),
        (name = "analytics", description = "Dashboards and reports from rollups kept as events arrive"),
        (name = "billing", description = "Prepaid balance, ledger, prices, plans and usage"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}
