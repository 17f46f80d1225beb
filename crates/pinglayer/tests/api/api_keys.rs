use chrono::Duration;
use pinglayer_domain::Clock;
use serde_json::json;

use crate::{both, helpers::TestApp};

async fn keys_are_shown_once_and_work_as_either_header(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": "CRM sync", "role": "agent"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let key = r.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("pl_live_") && key.len() >= 50);
    assert!(key.starts_with(r.body["prefix"].as_str().unwrap()));
    let id = r.body["id"].as_str().unwrap().to_string();

    let list = app.get("/api/v1/api-keys", &owner.token).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["data"][0]["id"], id.as_str());
    assert!(list.body["data"][0].get("key").is_none());
    assert!(!list.body.to_string().contains(&key));
    assert!(list.body["data"][0]["last_used_at"].is_null());

    let me = app.get("/api/v1/auth/me", &key).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["api_key"]["id"], id.as_str());
    assert_eq!(me.body["role"], "agent");
    assert!(me.body["user"].is_null());
    let me = app
        .raw(
            app.client
                .get(app.url("/api/v1/auth/me"))
                .header("X-API-Key", &key),
        )
        .await;
    assert_eq!(me.status, 200);

    // The key acts with its role: an agent cannot manage the team.
    let r = app
        .raw(
            app.client
                .get(app.url("/api/v1/users"))
                .header("X-API-Key", &key),
        )
        .await;
    assert_eq!(r.status, 403);

    app.ctx.flush_key_usage().await;
    let list = app.get("/api/v1/api-keys", &owner.token).await;
    assert!(
        list.body["data"][0]["last_used_at"].is_string(),
        "{:?}",
        list.body
    );

    let r = app
        .delete(&format!("/api/v1/api-keys/{id}"), &owner.token)
        .await;
    assert_eq!(r.status, 204);
    let me = app.get("/api/v1/auth/me", &key).await;
    assert_eq!(me.status, 401);
    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{id}"), &owner.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/api-keys", &owner.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
both!(keys_are_shown_once_and_work_as_either_header);

async fn keys_expire_and_keep_to_their_rank(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let soon = app.clock.now() + Duration::hours(1);
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": "temp", "role": "viewer", "expires_at": soon}),
        )
        .await;
    assert_eq!(r.status, 201);
    let key = r.body["key"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/v1/auth/me", &key).await.status, 200);
    app.clock.advance(Duration::hours(2));
    assert_eq!(app.get("/api/v1/auth/me", &key).await.status, 401);

    let past = app.clock.now() - Duration::hours(1);
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": "old", "role": "viewer", "expires_at": past}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": " ", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 422);

    let (admin, _) = app.member(&owner, "a@shop.test", "admin").await;
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "k", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "k", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 201);
}
both!(keys_expire_and_keep_to_their_rank);

async fn other_tenants_keys_are_invisible(app: TestApp) {
    let a = app.register("A", "a@a.test").await;
    let b = app.register("B", "b@b.test").await;
    let r = app
        .post(
            "/api/v1/api-keys",
            Some(&a.token),
            json!({"name": "A key", "role": "admin"}),
        )
        .await;
    let a_key = r.body["key"].as_str().unwrap().to_string();
    let a_id = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .delete(&format!("/api/v1/api-keys/{a_id}"), &b.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        app.get("/api/v1/api-keys", &b.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &a_key).await.status,
        200,
        "A's key survived B's attempt"
    );
    // A's key sees A's team only.
    let users = app
        .raw(
            app.client
                .get(app.url("/api/v1/users"))
                .header("X-API-Key", &a_key),
        )
        .await;
    assert!(
        users.body.to_string().contains("a@a.test") && !users.body.to_string().contains("b@b.test")
    );
}
both!(other_tenants_keys_are_invisible);
