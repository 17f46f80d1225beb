use serde_json::json;

use crate::{
    both,
    helpers::{PASSWORD, TestApp},
};

async fn platform_routes_are_for_superadmins_only(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app.get("/api/v1/admin/tenants", &owner.token).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "forbidden");
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/suspend", owner.tenant_id),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let key = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": "k", "role": "owner"}),
        )
        .await;
    let r = app
        .get("/api/v1/admin/tenants", key.body["key"].as_str().unwrap())
        .await;
    assert_eq!(r.status, 403);

    let root = app.superadmin().await;
    let list = app.get("/api/v1/admin/tenants", &root).await;
    assert_eq!(list.status, 200);
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        1,
        "the platform's own tenant is not listed: {data:?}"
    );
    assert_eq!(data[0]["slug"], "shop");
    let one = app
        .get(&format!("/api/v1/admin/tenants/{}", owner.tenant_id), &root)
        .await;
    assert_eq!(one.body["name"], "Shop");
    // A superadmin has no tenant data.
    let r = app.get("/api/v1/users", &root).await;
    assert_eq!(r.status, 403);
    let me = app.get("/api/v1/auth/me", &root).await;
    assert_eq!(me.body["role"], "superadmin");
}
both!(platform_routes_are_for_superadmins_only);

async fn suspension_stops_tokens_and_keys_at_once(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let other = app.register("Other", "x@other.test").await;
    let key = app
        .post(
            "/api/v1/api-keys",
            Some(&owner.token),
            json!({"name": "k", "role": "admin"}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_string();
    let root = app.superadmin().await;
    let base = format!("/api/v1/admin/tenants/{}", owner.tenant_id);

    let r = app
        .post(&format!("{base}/suspend"), Some(&root), json!({}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "suspended");
    for cred in [&owner.token, &key] {
        let r = app.get("/api/v1/auth/me", cred).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.code(), "tenant_suspended");
    }
    let r = app.login("o@shop.test", PASSWORD).await;
    assert_eq!(r.code(), "tenant_suspended");
    let r = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": owner.refresh}),
        )
        .await;
    assert_eq!(r.code(), "tenant_suspended");
    assert_eq!(
        app.get("/api/v1/users", &other.token).await.status,
        200,
        "other tenants are unaffected"
    );

    let r = app
        .post(&format!("{base}/suspend"), Some(&root), json!({}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "invalid_transition");
    let r = app
        .post(&format!("{base}/approve"), Some(&root), json!({}))
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .post(&format!("{base}/reactivate"), Some(&root), json!({}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/v1/auth/me", &key).await.status, 200);
    assert_eq!(app.get("/api/v1/auth/me", &owner.token).await.status, 200);

    let unknown = format!("/api/v1/admin/tenants/{}/suspend", uuid::Uuid::now_v7());
    assert_eq!(app.post(&unknown, Some(&root), json!({})).await.status, 404);
    assert_eq!(
        app.post("/api/v1/admin/tenants/nope/suspend", Some(&root), json!({}))
            .await
            .status,
        404
    );
}
both!(suspension_stops_tokens_and_keys_at_once);

/// Two server processes on one PostgreSQL database: a suspension made through one stops a token
/// the other has just served from its cache (via NOTIFY). SQLite deployments run one `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_reaches_other_processes() {
    let Some(app) = crate::helpers::spawn(crate::helpers::Backend::Postgres, |_| {}).await else {
        eprintln!("TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let owner = app.register("Shop", "o@shop.test").await;
    let root = app.superadmin().await;
    let twin = app.twin().await;
    let me = format!("http://{}/api/v1/auth/me", twin.addr);
    let call = || app.client.get(&me).bearer_auth(&owner.token).send();
    assert_eq!(
        call().await.unwrap().status(),
        200,
        "served, and now cached, by the twin"
    );
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/suspend", owner.tenant_id),
            Some(&root),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let mut status = 0;
    for _ in 0..50 {
        status = call().await.unwrap().status().as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        status, 403,
        "the twin must stop serving a suspended tenant token"
    );
}

/// The operator's CLI, end to end: create a superadmin in a data directory's SQLite file, then
/// a server on the same file accepts their sign-in.
#[tokio::test]
async fn cli_creates_a_superadmin() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_pinglayer");
    let out = std::process::Command::new(bin)
        .args([
            "admin",
            "create-superadmin",
            "--email",
            "ops@example.test",
            "--password",
            PASSWORD,
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    let weak = std::process::Command::new(bin)
        .args([
            "admin",
            "create-superadmin",
            "--email",
            "ops2@example.test",
            "--password",
            "short",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!weak.status.success());

    let url = format!("sqlite://{}", dir.path().join("pinglayer.db").display());
    let db = pinglayer_store::Db::connect(&url, 2).await.unwrap();
    let email = pinglayer_domain::Email::parse("ops@example.test").unwrap();
    let m = db
        .member_by_email(&email)
        .await
        .unwrap()
        .expect("superadmin stored");
    assert!(m.tenant.is_platform);
    assert_eq!(m.user.role, pinglayer_domain::Role::Superadmin);
    assert!(m.user.password_hash.unwrap().starts_with("$argon2id$"));
}

/// Production refuses to start on generated secrets.
#[test]
fn production_requires_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinglayer"))
        .args([
            "serve",
            "--env",
            "production",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("PINGLAYER_JWT_SECRET")
        .env_remove("PINGLAYER_ENCRYPTION_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--jwt-secret is required in production"),
        "{err}"
    );
    assert!(!dir.path().join("secrets").exists(), "nothing generated");
}
