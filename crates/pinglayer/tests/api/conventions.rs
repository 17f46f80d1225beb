use serde_json::json;

use crate::{
    both,
    helpers::{TestApp, TestOptions},
};

async fn health_ready_metrics_and_docs(app: TestApp) {
    let h = app.raw(app.client.get(app.url("/health"))).await;
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    let r = app.raw(app.client.get(app.url("/ready"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["database"], "ok");

    let owner = app.register("Shop", "o@shop.test").await;
    app.get("/api/v1/auth/me", &owner.token).await;
    let m = app.raw(app.client.get(app.url("/metrics"))).await;
    let text = m.body.as_str().unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/api/v1/auth/me""#));

    let spec = app.raw(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(spec.status, 200);
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/auth/otp/request",
        "/api/v1/auth/otp/verify",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/admin/tenants",
        "/api/v1/admin/tenants/{id}/approve",
        "/api/v1/admin/tenants/{id}/suspend",
        "/api/v1/admin/tenants/{id}/reactivate",
        "/api/v1/whatsapp/numbers",
        "/api/v1/whatsapp/numbers/{id}",
        "/api/v1/whatsapp/embedded-signup",
        "/api/v1/templates",
        "/api/v1/templates/{id}",
        "/api/v1/templates/sync",
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/conversations",
        "/api/v1/conversations/{id}",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/conversations/{id}/read",
        "/api/v1/tenant",
        "/api/v1/contacts",
        "/api/v1/contacts/{id}",
        "/api/v1/contacts/{id}/export",
        "/api/v1/contacts/{id}/opt-in",
        "/api/v1/contacts/{id}/opt-out",
        "/api/v1/contacts/{id}/tags",
        "/api/v1/contacts/{id}/tags/{tag}",
        "/api/v1/contacts/stats",
        "/api/v1/contacts/tags",
        "/api/v1/contacts/export",
        "/api/v1/contacts/import",
        "/api/v1/imports/{id}",
        "/api/v1/imports/{id}/errors.csv",
        "/api/v1/tags",
        "/api/v1/segments",
        "/api/v1/segments/{id}",
        "/api/v1/segments/{id}/contacts",
        "/api/v1/segments/{id}/count",
        "/api/v1/consent/keywords",
    ] {
        assert!(
            spec.body["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    // The import's form and the list's sort are described, not just named.
    let form = &spec.body["paths"]["/api/v1/contacts/import"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert_eq!(form["$ref"], "#/components/schemas/ImportForm", "{form}");
    let props = &spec.body["components"]["schemas"]["ImportForm"]["properties"];
    for field in ["file", "mapping", "default_country", "tags", "on_duplicate"] {
        assert!(
            props.get(field).is_some(),
            "ImportForm lacks {field}: {props}"
        );
    }
    let params = spec.body["paths"]["/api/v1/contacts"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for p in [
        "q",
        "tag",
        "language",
        "consent",
        "segment",
        "created_from",
        "created_to",
        "sort",
        "cursor",
        "limit",
    ] {
        assert!(params.iter().any(|x| x["name"] == p), "the list lacks {p}");
    }
    let docs = app.raw(app.client.get(app.url("/docs/"))).await;
    assert_eq!(docs.status, 200);
    assert!(docs.body.as_str().unwrap().contains("swagger"));
}
both!(health_ready_metrics_and_docs);

async fn errors_have_one_shape(app: TestApp) {
    let url = app.url("/api/v1/auth/login");
    let r = app
        .raw(
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "malformed_json");
    let r = app
        .raw(
            app.client
                .post(&url)
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.code(), "unsupported_media_type");
    let r = app
        .raw(app.client.post(&url).json(&json!({"email": 5})))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "validation_failed");
    // The server answers 413 before the upload ends and may close the connection under the
    // client's feet; only a response counts, so a reset upload is tried again.
    let big = json!({"email": "x".repeat(2 * 1024 * 1024), "password": "p"}).to_string();
    let mut r = None;
    // Its own client: the server closes a connection whose body it refused, and a pooled
    // connection closed that way would break the next request of the shared client.
    let lone = reqwest::Client::new();
    for _ in 0..10 {
        let req = lone
            .post(&url)
            .header("content-type", "application/json")
            .body(big.clone());
        if let Ok(resp) = req.send().await {
            r = Some(crate::helpers::into_resp(resp).await);
            break;
        }
    }
    let r = r.expect("a response to the oversized body");
    assert_eq!(r.status, 413);
    assert_eq!(r.code(), "payload_too_large");
    let r = app
        .raw(app.client.get(app.url("/api/v1/nothing-here")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    let r = app
        .raw(app.client.delete(app.url("/api/v1/auth/login")))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "method_not_allowed");
    assert!(r.body["error"]["message"].is_string());
}
both!(errors_have_one_shape);

async fn request_ids_and_security_headers(app: TestApp) {
    let r = app.raw(app.client.get(app.url("/health"))).await;
    let generated = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36);
    let r = app
        .raw(
            app.client
                .get(app.url("/health"))
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert!(r.headers.contains_key("content-security-policy"));
    // No CORS unless the operator allows origins.
    let r = app
        .raw(
            app.client
                .get(app.url("/health"))
                .header("origin", "https://evil.test"),
        )
        .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}
both!(request_ids_and_security_headers);

async fn cors_follows_the_operator(app: TestApp) {
    let pre = app
        .raw(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/me"))
                .header("origin", "https://app.shop.test")
                .header("access-control-request-method", "GET"),
        )
        .await;
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "https://app.shop.test"
    );
    let other = app
        .raw(
            app.client
                .get(app.url("/health"))
                .header("origin", "https://evil.test"),
        )
        .await;
    assert!(!other.headers.contains_key("access-control-allow-origin"));
}
both!(cors_follows_the_operator, |o: &mut TestOptions| o
    .settings
    .cors_origins =
    vec!["https://app.shop.test".into()]);

async fn rate_limit_per_credential(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let mut statuses = vec![];
    for _ in 0..6 {
        statuses.push(app.get("/api/v1/auth/me", &owner.token).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("some request is limited");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // Health checks are never limited.
    for _ in 0..5 {
        assert_eq!(
            app.raw(app.client.get(app.url("/health"))).await.status,
            200
        );
    }
}
both!(rate_limit_per_credential, |o: &mut TestOptions| {
    o.settings.rate_limit_per_second = 1;
    o.settings.rate_limit_burst = 3;
});
