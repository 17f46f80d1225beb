//! Analytics from rollups: the dashboard against a hand-computed fixture (messages sent through
//! the sandbox, contacts, an opt-out, an inbound message), the messages report's groupings,
//! CSV/XLSX exports, tenant isolation, and the operator's per-tenant figures — on both databases.

use pinglayer_domain::Clock;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{Registered, TestApp},
    whatsapp::{PNID, approved_template, connect, eventually},
};

async fn dashboard(app: &TestApp, token: &str) -> Value {
    let r = app.get("/api/v1/analytics/dashboard", token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn export(app: &TestApp, token: &str, path: &str) -> (u16, String, String) {
    let r = app
        .raw(app.client.get(app.url(path)).bearer_auth(token))
        .await;
    let ct = r.headers["content-type"].to_str().unwrap().to_string();
    (
        r.status,
        ct,
        r.body.as_str().unwrap_or_default().to_string(),
    )
}

/// The fixture: 3 contacts made through the API (one then opts out), 2 utility template
/// messages sent (the sandbox delivers and reads them), and a stranger writing in (a 4th
/// contact, 1 inbound message).
async fn build_fixture(app: &TestApp, owner: &Registered) {
    connect(app, owner).await;
    approved_template(app, owner, "order_update").await;
    for (phone, name) in [
        ("+919800000001", "Asha"),
        ("+919800000002", "Bala"),
        ("+919800000003", "Chitra"),
    ] {
        let r = app
            .post(
                "/api/v1/contacts",
                Some(&owner.token),
                json!({"phone": phone, "name": name}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        if name == "Chitra" {
            let id = r.body["id"].as_str().unwrap();
            let o = app
                .post(
                    &format!("/api/v1/contacts/{id}/opt-out"),
                    Some(&owner.token),
                    json!({}),
                )
                .await;
            assert_eq!(o.status, 200, "{:?}", o.body);
        }
    }
    for to in ["+919800000001", "+919800000002"] {
        let r = app
            .post(
                "/api/v1/messages",
                Some(&owner.token),
                json!({"to": to, "template": {"name": "order_update", "language": "en", "parameters": ["A", "#1"]}}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let ts = app.clock.now().timestamp();
    let r = app
        .raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(
            &json!({"phone_number_id": PNID, "from": "919800000009", "name": "Stranger", "text": "Hello?", "timestamp": ts}),
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually(
        "both messages read and the inbound message recorded",
        || async {
            let d = dashboard(app, &owner.token).await;
            (d["totals"]["read"] == 2 && d["totals"]["inbound"] == 1).then_some(())
        },
    )
    .await;
}

async fn dashboard_matches_the_fixture(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    build_fixture(&app, &owner).await;
    let d = dashboard(&app, &owner.token).await;
    let t = &d["totals"];
    let expected = json!({
        "attempted": 2, "sent": 2, "delivered": 2, "read": 2, "failed": 0,
        "inbound": 1, "contacts_created": 4, "opted_out": 1, "opted_in": 0
    });
    assert_eq!(t, &expected, "{d}");
    assert_eq!(d["delivery_rate"], 1.0);
    assert_eq!(d["read_rate"], 1.0);
    assert_eq!(d["failure_rate"], 0.0);
    assert_eq!(d["spend"], 0);
    assert_eq!(
        d["by_category"],
        json!([{"category": "utility", "sent": 2, "delivered": 2, "read": 2, "failed": 0}])
    );
    // Thirty days, everything on the last (today).
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.len(), 30);
    let today = app.clock.now().date_naive().to_string();
    let last = series.last().unwrap();
    assert_eq!(last["day"], today.as_str());
    assert_eq!(last["sent"], 2);
    assert_eq!(last["contacts_created"], 4);
    assert_eq!(last["sent_by_category"], json!({"utility": 2}));
    assert!(
        series[..29]
            .iter()
            .all(|s| s["sent"] == 0 && s["inbound"] == 0)
    );
    assert_eq!(d["top_campaigns"], json!([]));

    // The messages report, five ways.
    let report = |g: &str| {
        let app = &app;
        let token = owner.token.clone();
        let g = g.to_string();
        async move {
            let r = app
                .get(&format!("/api/v1/analytics/messages?group_by={g}"), &token)
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
        }
    };
    let by_status = report("status").await;
    assert_eq!(by_status["columns"], json!(["status", "messages"]));
    assert_eq!(
        by_status["rows"],
        json!([["sent", 2], ["delivered", 2], ["read", 2], ["failed", 0]])
    );
    let by_category = report("category").await;
    assert_eq!(by_category["rows"], json!([["utility", 2, 2, 2, 0]]));
    let by_number = report("number").await;
    let rows = by_number["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{by_number}");
    assert_eq!(rows[0][1], "+1 555-000-0001");
    assert_eq!(
        rows[0].as_array().unwrap()[2..],
        [json!(2), json!(2), json!(2), json!(0), json!(1)]
    );
    let by_hour = report("hour").await;
    let hours = by_hour["rows"].as_array().unwrap();
    let summed: i64 = hours.iter().map(|h| h[1].as_i64().unwrap()).sum();
    assert_eq!(summed, 2, "{by_hour}");
    let by_day = report("day").await;
    assert_eq!(by_day["rows"].as_array().unwrap().len(), 30);
    assert_eq!(by_day["rows"][29], json!([today, 2, 2, 2, 0, 1]));
    let bad = app
        .get("/api/v1/analytics/messages?group_by=weather", &owner.token)
        .await;
    assert_eq!((bad.status, bad.code()), (422, "validation_failed"));
    let bad = app
        .get(
            "/api/v1/analytics/dashboard?from=2026-02-01&to=2026-01-01",
            &owner.token,
        )
        .await;
    assert_eq!(bad.status, 422);

    // Exports: CSV and XLSX of each report.
    let (status, ct, csv) = export(&app, &owner.token, "/api/v1/analytics/dashboard/export").await;
    assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
    assert!(
        csv.starts_with(
            "day,attempted,sent,delivered,read,failed,inbound,contacts_created,opted_out,opted_in\n"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 31);
    assert!(csv.contains(&format!("{today},2,2,2,2,0,1,4,1,0")), "{csv}");
    let (_, _, csv) = export(
        &app,
        &owner.token,
        "/api/v1/analytics/messages/export?group_by=category",
    )
    .await;
    assert_eq!(
        csv,
        "category,sent,delivered,read,failed\nutility,2,2,2,0\n"
    );
    for path in [
        "/api/v1/analytics/dashboard/export?format=xlsx",
        "/api/v1/analytics/messages/export?group_by=status&format=xlsx",
    ] {
        let (status, ct, _) = export(&app, &owner.token, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            ct, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "{path}"
        );
    }
    let (status, _, _) = export(
        &app,
        &owner.token,
        "/api/v1/analytics/dashboard/export?format=pdf",
    )
    .await;
    assert_eq!(status, 422);

    // Another tenant's dashboard holds only its own (its sign-up made no contacts).
    let other = app.register("Other", "x@other.test").await;
    let theirs = dashboard(&app, &other.token).await;
    assert_eq!(theirs["totals"]["sent"], 0, "{theirs}");
    assert_eq!(theirs["totals"]["contacts_created"], 0, "{theirs}");
}
both!(dashboard_matches_the_fixture);

async fn platform_admins_see_every_tenant(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    build_fixture(&app, &owner).await;
    let quiet = app.register("Quiet", "q@quiet.test").await;
    // Tenant users, even owners, may not.
    let r = app.get("/api/v1/admin/analytics", &owner.token).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app
        .get("/api/v1/admin/analytics/export", &quiet.token)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let admin = app.superadmin().await;
    let r = app.get("/api/v1/admin/analytics", &admin).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tenants = r.body["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2, "{:?}", r.body);
    // Busiest first.
    let busy = &tenants[0];
    assert_eq!(busy["tenant_id"], owner.tenant_id.as_str());
    assert_eq!(busy["sent"], 2);
    assert_eq!(busy["inbound"], 1);
    assert_eq!(busy["failure_rate"], 0.0);
    assert_eq!(busy["active_numbers"], 1);
    assert_eq!(busy["numbers"], 1);
    assert_eq!(busy["spend"], 0);
    assert_eq!(tenants[1]["tenant_id"], quiet.tenant_id.as_str());
    assert_eq!(tenants[1]["sent"], 0);
    assert_eq!(r.body["totals"]["sent"], 2);

    let (status, _, csv) = export(&app, &admin, "/api/v1/admin/analytics/export").await;
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("tenant_id,name,slug,attempted,sent"),
        "{csv}"
    );
    let (status, ct, _) = export(&app, &admin, "/api/v1/admin/analytics/export?format=xlsx").await;
    assert_eq!(status, 200);
    assert!(ct.contains("spreadsheetml"), "{ct}");
}
both!(platform_admins_see_every_tenant);
