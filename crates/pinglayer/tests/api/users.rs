use serde_json::json;

use crate::{
    both,
    helpers::{PASSWORD, TestApp},
};

async fn roles_decide_what_members_may_do(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let (admin, _) = app.member(&owner, "admin@shop.test", "admin").await;
    let (agent, _) = app.member(&owner, "agent@shop.test", "agent").await;
    let (viewer, _) = app.member(&owner, "viewer@shop.test", "viewer").await;

    let list = app.get("/api/v1/users", &admin).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 4);
    assert!(!list.body.to_string().contains("argon2"));

    for (token, who) in [(&agent, "agent"), (&viewer, "viewer")] {
        let r = app.get("/api/v1/users", token).await;
        assert_eq!(r.status, 403, "{who} listing users");
        assert_eq!(r.code(), "forbidden");
        let r = app
            .post(
                "/api/v1/users",
                Some(token),
                json!({"email": "n@shop.test", "name": "N", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, 403, "{who} creating users");
        let r = app
            .post(
                "/api/v1/api-keys",
                Some(token),
                json!({"name": "k", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, 403, "{who} creating keys");
    }

    // Admins may not make owners; owners may.
    let r = app
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"email": "o2@shop.test", "name": "O2", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post(
            "/api/v1/users",
            Some(&owner.token),
            json!({"email": "o2@shop.test", "name": "O2", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["role"], "owner");
    assert_eq!(r.body["has_password"], false);
    // An admin cannot touch an owner.
    let r = app
        .delete(
            &format!("/api/v1/users/{}", r.body["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(r.status, 403);

    let dup = app
        .post(
            "/api/v1/users",
            Some(&owner.token),
            json!({"email": "AGENT@shop.test", "name": "X", "role": "agent"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.code(), "email_taken");
    let bad = app
        .post(
            "/api/v1/users",
            Some(&owner.token),
            json!({"email": "x@shop.test", "name": "X", "role": "boss"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let bad = app
        .post(
            "/api/v1/users",
            Some(&owner.token),
            json!({"email": "x@shop.test", "name": "X", "role": "superadmin"}),
        )
        .await;
    assert_eq!(bad.status, 403);
}
both!(roles_decide_what_members_may_do);

async fn the_last_owner_stays(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let me = format!("/api/v1/users/{}", owner.user_id);
    let r = app.delete(&me, &owner.token).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "last_owner");
    let r = app.patch(&me, &owner.token, json!({"role": "admin"})).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "last_owner");

    let (second, second_id) = app.member(&owner, "o2@shop.test", "owner").await;
    let r = app
        .patch(
            &me,
            &owner.token,
            json!({"role": "admin", "name": "Demoted"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["role"], "admin");
    assert_eq!(r.body["name"], "Demoted");
    // The role change applies to the live token at once.
    let r = app
        .post(
            "/api/v1/users",
            Some(&owner.token),
            json!({"email": "z@shop.test", "name": "Z", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .delete(&format!("/api/v1/users/{second_id}"), &second)
        .await;
    assert_eq!(r.code(), "last_owner");
}
both!(the_last_owner_stays);

async fn removed_members_lose_access_and_password_changes_end_sessions(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let (agent, agent_id) = app.member(&owner, "agent@shop.test", "agent").await;
    assert_eq!(app.get("/api/v1/auth/me", &agent).await.status, 200);
    let r = app
        .delete(&format!("/api/v1/users/{agent_id}"), &owner.token)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.get("/api/v1/auth/me", &agent).await.status, 401);
    assert_eq!(app.login("agent@shop.test", PASSWORD).await.status, 401);

    let (viewer, viewer_id) = app.member(&owner, "viewer@shop.test", "viewer").await;
    let r = app
        .patch(
            &format!("/api/v1/users/{viewer_id}"),
            &owner.token,
            json!({"password": "a brand new secret"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/v1/auth/me", &viewer).await.status, 401);
    assert_eq!(
        app.login("viewer@shop.test", "a brand new secret")
            .await
            .status,
        200
    );
    let r = app
        .patch(
            &format!("/api/v1/users/{viewer_id}"),
            &owner.token,
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(r.status, 422);
}
both!(removed_members_lose_access_and_password_changes_end_sessions);

async fn other_tenants_members_are_invisible(app: TestApp) {
    let a = app.register("A", "a@a.test").await;
    let b = app.register("B", "b@b.test").await;
    let (_, a_agent) = app.member(&a, "agent@a.test", "agent").await;
    let path = format!("/api/v1/users/{a_agent}");
    let r = app.patch(&path, &b.token, json!({"name": "hijack"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    assert_eq!(app.delete(&path, &b.token).await.status, 404);
    let r = app
        .delete(&format!("/api/v1/users/{}", a.user_id), &b.token)
        .await;
    assert_eq!(r.status, 404);
    let listed = app.get("/api/v1/users", &b.token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    assert!(!listed.body.to_string().contains("a.test"));
    // Nonsense ids are the same 404.
    assert_eq!(
        app.delete("/api/v1/users/not-an-id", &b.token).await.status,
        404
    );
    // A's member is intact.
    let l = app.get("/api/v1/users", &a.token).await;
    assert!(l.body.to_string().contains("agent@a.test") && !l.body.to_string().contains("hijack"));
}
both!(other_tenants_members_are_invisible);

async fn lists_paginate_with_cursors(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    for i in 0..4 {
        let r = app
            .post(
                "/api/v1/users",
                Some(&owner.token),
                json!({"email": format!("m{i}@shop.test"), "name": "M", "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let p1 = app.get("/api/v1/users?limit=2", &owner.token).await;
    assert_eq!(p1.body["data"].as_array().unwrap().len(), 2);
    let c1 = p1.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let p2 = app
        .get(&format!("/api/v1/users?limit=2&cursor={c1}"), &owner.token)
        .await;
    let c2 = p2.body["next_cursor"]
        .as_str()
        .expect("a third page")
        .to_string();
    let p3 = app
        .get(&format!("/api/v1/users?limit=2&cursor={c2}"), &owner.token)
        .await;
    assert_eq!(p3.body["data"].as_array().unwrap().len(), 1);
    assert!(p3.body["next_cursor"].is_null());
    let mut ids: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| {
            p.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string())
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every member exactly once");
    assert_eq!(
        app.get("/api/v1/users?limit=0", &owner.token).await.status,
        422
    );
    assert_eq!(
        app.get("/api/v1/users?limit=501", &owner.token)
            .await
            .status,
        422
    );
    assert_eq!(
        app.get("/api/v1/users?cursor=%%%", &owner.token)
            .await
            .status,
        422
    );
    assert_eq!(
        app.get("/api/v1/users?limit=abc", &owner.token)
            .await
            .status,
        400
    );
}
both!(lists_paginate_with_cursors);
