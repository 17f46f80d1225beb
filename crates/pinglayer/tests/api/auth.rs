use chrono::Duration;
use pinglayer_domain::SignupPolicy;
use serde_json::json;

use crate::{
    both,
    helpers::{PASSWORD, TestApp, TestOptions},
};

async fn register_creates_tenant_owner_and_tokens(app: TestApp) {
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"business_name": "Ektola Jewellers", "name": "Asha", "email": "Asha@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["tenant"]["slug"], "ektola-jewellers");
    assert_eq!(b["tenant"]["status"], "active");
    assert_eq!(b["user"]["role"], "owner");
    assert_eq!(b["user"]["email"], "asha@example.com");
    assert!(b["refresh_token"].as_str().unwrap().starts_with("plr_"));
    let text = b.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains("argon2") && !text.contains("password_hash")
    );

    let me = app
        .get("/api/v1/auth/me", b["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["id"], b["user"]["id"]);
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["tenant"]["id"], b["tenant"]["id"]);
    assert!(me.body["api_key"].is_null());
}
both!(register_creates_tenant_owner_and_tokens);

async fn slugs_are_unique(app: TestApp) {
    let a = app.register("Shop", "a@shop.test").await;
    let b = app.register("Shop", "b@shop.test").await;
    let c = app.register("shop!", "c@shop.test").await;
    assert_eq!(a.body["tenant"]["slug"], "shop");
    assert_eq!(b.body["tenant"]["slug"], "shop-2");
    assert_eq!(c.body["tenant"]["slug"], "shop-3");
}
both!(slugs_are_unique);

async fn register_refuses_bad_input(app: TestApp) {
    let reg = |email: &str, password: &str| json!({"business_name": "B", "name": "N", "email": email, "password": password});
    let r = app
        .post("/api/v1/auth/register", None, reg("x@y.test", "short"))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "validation_failed");
    assert_eq!(r.body["error"]["details"]["fields"][0]["field"], "password");

    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            reg("x@y.test", "Password123"),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("common")
    );

    let r = app
        .post("/api/v1/auth/register", None, reg("not-an-email", "tiny"))
        .await;
    assert_eq!(r.status, 422);
    let fields: Vec<_> = r.body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].clone())
        .collect();
    assert_eq!(
        fields,
        vec![json!("email"), json!("password")],
        "all field errors at once"
    );

    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"business_name": "B", "email": "x@y.test"}),
        )
        .await;
    assert_eq!(r.status, 422, "missing fields: {:?}", r.body);

    app.register("First", "dup@y.test").await;
    let r = app
        .post("/api/v1/auth/register", None, reg("DUP@y.test", PASSWORD))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "email_taken");
    // The failed sign-up left no tenant behind.
    let root = app.superadmin().await;
    let list = app.get("/api/v1/admin/tenants", &root).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}
both!(register_refuses_bad_input);

async fn login_answers_generically_and_slows_down_guessing(app: TestApp) {
    let owner = app.register("Shop", "owner@shop.test").await;
    let ok = app.login("OWNER@shop.test", PASSWORD).await;
    assert_eq!(ok.status, 200);
    assert!(ok.body["access_token"].is_string());
    assert_eq!(ok.body["user"]["id"], owner.user_id.as_str());

    let wrong = app.login("owner@shop.test", "wrong password!").await;
    let unknown = app.login("nobody@shop.test", "wrong password!").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(
        wrong.body, unknown.body,
        "same answer for unknown e-mail and wrong password"
    );

    for _ in 0..4 {
        assert_eq!(
            app.login("owner@shop.test", "wrong password!").await.status,
            401
        );
    }
    let blocked = app.login("owner@shop.test", PASSWORD).await;
    assert_eq!(blocked.status, 429, "{:?}", blocked.body);
    let retry: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
}
both!(login_answers_generically_and_slows_down_guessing);

async fn refresh_rotates_and_reuse_revokes_the_family(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r1 = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(r1.status, 200, "{:?}", r1.body);
    let new_refresh = r1.body["refresh_token"].as_str().unwrap().to_string();
    let new_access = r1.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, owner.refresh);
    assert_eq!(app.get("/api/v1/auth/me", &new_access).await.status, 200);

    // The old token again: refused, and the whole session ends.
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(reuse.status, 401);
    assert_eq!(reuse.code(), "token_reused");
    let after = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": new_refresh}),
        )
        .await;
    assert_eq!(
        after.status, 401,
        "the rotated-to token dies with its family"
    );
    assert_eq!(app.get("/api/v1/auth/me", &new_access).await.status, 401);
    assert_eq!(app.get("/api/v1/auth/me", &owner.token).await.status, 401);

    // Other sessions of the same member are untouched.
    let other = app.login("o@shop.test", PASSWORD).await;
    assert_eq!(
        app.get(
            "/api/v1/auth/me",
            other.body["access_token"].as_str().unwrap()
        )
        .await
        .status,
        200
    );
}
both!(refresh_rotates_and_reuse_revokes_the_family);

async fn token_kinds_are_not_interchangeable(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.token}),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = app.get("/api/v1/auth/me", &owner.refresh).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "invalid_token");
    let r = app
        .call(reqwest::Method::GET, "/api/v1/auth/me", None, None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthenticated");
    let r = app.get("/api/v1/auth/me", "garbage.token.here").await;
    assert_eq!(r.status, 401);
}
both!(token_kinds_are_not_interchangeable);

async fn refresh_tokens_expire(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    app.clock.advance(Duration::days(31));
    let r = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "token_expired");
}
both!(refresh_tokens_expire);

async fn logout_ends_the_session(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.get("/api/v1/auth/me", &owner.token).await.status, 401);
    let r = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(r.status, 401);

    // With only the access token.
    let l = app.login("o@shop.test", PASSWORD).await;
    let access = l.body["access_token"].as_str().unwrap();
    let r = app
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(access),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.get("/api/v1/auth/me", access).await.status, 401);
}
both!(logout_ends_the_session);

async fn one_time_codes(app: TestApp) {
    app.register("Shop", "o@shop.test").await;
    let unknown = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"email": "ghost@shop.test"}),
        )
        .await;
    let known = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"email": "o@shop.test"}),
        )
        .await;
    assert_eq!(unknown.status, 202);
    assert_eq!(known.status, 202);
    assert_eq!(unknown.body, known.body, "no account enumeration");
    let code = app
        .mailbox_code("o@shop.test")
        .await
        .expect("code in the dev mailbox");
    assert!(app.mailbox_code("ghost@shop.test").await.is_none());

    let verify = |code: String| {
        app.post(
            "/api/v1/auth/otp/verify",
            None,
            json!({"email": "o@shop.test", "code": code}),
        )
    };
    let ok = verify(code.clone()).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert!(ok.body["access_token"].is_string());
    let again = verify(code).await;
    assert_eq!(again.status, 401, "single use");
    assert_eq!(again.code(), "invalid_code");

    // Five wrong tries lock the code, even against the right one.
    app.post(
        "/api/v1/auth/otp/request",
        None,
        json!({"email": "o@shop.test"}),
    )
    .await;
    let code = app.mailbox_code("o@shop.test").await.unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(verify(wrong.into()).await.code(), "invalid_code");
    }
    let locked = verify(code).await;
    assert_eq!(locked.status, 401);
    assert_eq!(locked.code(), "code_locked");

    // Codes expire after five minutes.
    app.post(
        "/api/v1/auth/otp/request",
        None,
        json!({"email": "o@shop.test"}),
    )
    .await;
    let code = app.mailbox_code("o@shop.test").await.unwrap();
    app.clock
        .advance(Duration::minutes(5) + Duration::seconds(1));
    assert_eq!(verify(code).await.status, 401);

    // A fourth request inside the window is throttled.
    let r = app
        .post(
            "/api/v1/auth/otp/request",
            None,
            json!({"email": "o@shop.test"}),
        )
        .await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    // Codes are stored only hashed.
    let stored: Vec<String> = match &app.db {
        pinglayer_store::Db::Postgres(p) => sqlx::query_scalar("select code_hash from otp_codes")
            .fetch_all(p)
            .await
            .unwrap(),
        pinglayer_store::Db::Sqlite(p) => sqlx::query_scalar("select code_hash from otp_codes")
            .fetch_all(p)
            .await
            .unwrap(),
    };
    assert!(stored.iter().all(|h| h.len() == 64));
}
both!(one_time_codes);

async fn approval_policy_holds_new_tenants(app: TestApp) {
    let owner = app.register("Pending Co", "p@co.test").await;
    assert_eq!(owner.body["tenant"]["status"], "pending");
    let me = app.get("/api/v1/auth/me", &owner.token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["tenant"]["status"], "pending");
    let r = app.get("/api/v1/users", &owner.token).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "tenant_pending_approval");

    let root = app.superadmin().await;
    let pending = app.get("/api/v1/admin/tenants?status=pending", &root).await;
    assert_eq!(pending.body["data"][0]["id"], owner.tenant_id.as_str());
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/approve", owner.tenant_id),
            Some(&root),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "active");
    assert_eq!(app.get("/api/v1/users", &owner.token).await.status, 200);
}
both!(approval_policy_holds_new_tenants, |o: &mut TestOptions| o
    .settings
    .signup_policy =
    SignupPolicy::Approval);

async fn closed_policy_refuses_sign_up(app: TestApp) {
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"business_name": "B", "name": "N", "email": "x@y.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "signup_closed");
}
both!(closed_policy_refuses_sign_up, |o: &mut TestOptions| o
    .settings
    .signup_policy =
    SignupPolicy::Closed);
