//! Money end to end: top-ups applied once, charging at dispatch (never below zero, even with
//! several lanes of one tenant at once), refunds once on a replayed failed webhook, campaigns that
//! pause when they run dry, plan limits, usage, and isolation of every billing route — on both
//! databases.

use pinglayer_domain::Clock;
use pinglayer_sandbox::SandboxNumber;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{APP_SECRET, Registered, Resp, TestApp, TestOptions},
    imports::{finished, upload},
    whatsapp::{PNID, TOKEN, WABA, approved_template, connect, signed, status_payload},
};

const CUSTOMER: &str = "+919812345678";

/// Amounts as exact ten-thousandths, from the API's decimal numbers.
fn units(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 10_000.0).round() as i64
}

async fn credit(app: &TestApp, admin: &str, tenant: &str, body: Value, key: Option<&str>) -> Resp {
    let mut req = app
        .client
        .post(app.url(&format!("/api/v1/admin/tenants/{tenant}/credits")))
        .bearer_auth(admin)
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    app.raw(req).await
}

async fn balance(app: &TestApp, owner: &Registered) -> i64 {
    let r = app.get("/api/v1/billing/balance", &owner.token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    units(&r.body["balance"])
}

/// Every ledger entry of the tenant, newest first, through the API's pages.
async fn ledger(app: &TestApp, owner: &Registered) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/v1/billing/ledger?limit=2".to_string();
    loop {
        let r = app.get(&path, &owner.token).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/billing/ledger?limit=2&cursor={c}"),
            None => return out,
        }
    }
}

/// The invariant: the balance is the sum of the ledger, and each entry's before + amount = after.
async fn books_balance(app: &TestApp, owner: &Registered) -> i64 {
    let entries = ledger(app, owner).await;
    let sum: i64 = entries.iter().map(|e| units(&e["amount"])).sum();
    for e in &entries {
        assert_eq!(
            units(&e["balance_before"]) + units(&e["amount"]),
            units(&e["balance_after"]),
            "{e}"
        );
    }
    let b = balance(app, owner).await;
    assert_eq!(sum, b, "ledger {entries:?}");
    b
}

async fn set_prices(app: &TestApp, admin: &str, prices: Value) {
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/admin/pricing",
            Some(admin),
            Some(prices),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn send(app: &TestApp, owner: &Registered, template: &str, to: &str) -> String {
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": to, "template": {"name": template, "language": "en", "parameters": ["Asha", "#1"]}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn message(app: &TestApp, owner: &Registered, id: &str) -> Value {
    app.get(&format!("/api/v1/messages/{id}"), &owner.token)
        .await
        .body
}

fn manual(o: &mut TestOptions) {
    o.auto_engine = false;
}

async fn top_ups_are_applied_once_and_checked(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let admin = app.superadmin().await;
    let t = owner.tenant_id.clone();
    assert_eq!(balance(&app, &owner).await, 0);

    let r = credit(
        &app,
        &admin,
        &t,
        json!({"amount": 100.5, "note": "invoice 7"}),
        Some("k-1"),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(units(&r.body["balance"]), 1_005_000);
    assert_eq!(r.body["entry"]["type"], "credit");
    assert_eq!(r.body["entry"]["reference_type"], "topup");
    let first = r.body["entry"]["id"].clone();
    // A retried top-up (same key, same body) is applied once and answered the same.
    let again = credit(
        &app,
        &admin,
        &t,
        json!({"amount": 100.5, "note": "invoice 7"}),
        Some("k-1"),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["entry"]["id"], first);
    assert_eq!(balance(&app, &owner).await, 1_005_000);
    // Two concurrent retries still apply once.
    let (a, b) = tokio::join!(
        credit(&app, &admin, &t, json!({"amount": "0.0001"}), Some("k-2")),
        credit(&app, &admin, &t, json!({"amount": "0.0001"}), Some("k-2")),
    );
    assert_eq!(
        (a.status, b.status),
        (201, 201),
        "{:?} {:?}",
        a.body,
        b.body
    );
    assert_eq!(a.body["entry"]["id"], b.body["entry"]["id"]);
    assert_eq!(balance(&app, &owner).await, 1_005_001);
    // The key with another body is a mistake.
    let r = credit(&app, &admin, &t, json!({"amount": 5}), Some("k-1")).await;
    assert_eq!((r.status, r.code()), (409, "idempotency_key_reused"));
    // Amounts must be positive and exact.
    for bad in [
        json!(0),
        json!(-5),
        json!("abc"),
        json!(0.00001),
        json!(null),
    ] {
        let r = credit(&app, &admin, &t, json!({"amount": bad}), None).await;
        assert_eq!(r.status, 422, "{bad}: {:?}", r.body);
    }
    // Tenant users cannot top themselves up; unknown tenants are 404.
    let r = credit(&app, &owner.token, &t, json!({"amount": 5}), None).await;
    assert_eq!(r.status, 403);
    let r = credit(
        &app,
        &admin,
        "0190f0f0-0000-7000-8000-000000000000",
        json!({"amount": 5}),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(balance(&app, &owner).await, 1_005_001);

    // Adjustments are signed, need a note, and never take the balance below zero.
    let adj = |body: Value| {
        let (app, admin, t) = (&app, admin.clone(), t.clone());
        async move {
            app.post(
                &format!("/api/v1/admin/tenants/{t}/adjustments"),
                Some(&admin),
                body,
            )
            .await
        }
    };
    assert_eq!(adj(json!({"amount": -1})).await.status, 422);
    let r = adj(json!({"amount": -1000, "note": "too much"})).await;
    assert_eq!((r.status, r.code()), (409, "insufficient_balance"));
    let r = adj(json!({"amount": "-0.5001", "note": "goodwill reversed"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(books_balance(&app, &owner).await, 1_000_000);

    // Filters, and the CSV export of the same entries.
    let r = app
        .get("/api/v1/billing/ledger?type=adjustment", &owner.token)
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert!(
        r.body["data"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    assert_eq!(
        app.get("/api/v1/billing/ledger?type=gift", &owner.token)
            .await
            .status,
        422
    );
    let csv = app
        .get("/api/v1/billing/ledger/export?format=csv", &owner.token)
        .await;
    assert_eq!(csv.status, 200);
    let text = csv.body.as_str().unwrap();
    assert!(text.starts_with("id,created_at,type,amount"), "{text}");
    assert_eq!(text.lines().count(), 1 + 3, "{text}");
    assert!(
        text.contains(",credit,100.5,") && text.contains(",adjustment,-0.5001,"),
        "{text}"
    );
    let xlsx = app
        .get("/api/v1/billing/ledger?format=xlsx", &owner.token)
        .await;
    assert_eq!(xlsx.status, 200);
    assert!(
        xlsx.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("spreadsheetml")
    );
}
both!(top_ups_are_applied_once_and_checked);

async fn sends_are_charged_and_failures_refunded_once(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let admin = app.superadmin().await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "shipped").await;
    set_prices(
        &app,
        &admin,
        json!({"currency": "inr", "default": {"utility": 0.5, "marketing": 1},
               "countries": {"91": {"utility": 0.3}}}),
    )
    .await;
    let prices = app.get("/api/v1/billing/prices", &owner.token).await;
    assert_eq!(prices.body["currency"], "INR");
    assert_eq!(units(&prices.body["countries"]["91"]["utility"]), 3_000);
    credit(&app, &admin, &owner.tenant_id, json!({"amount": 1}), None).await;
    app.ctx
        .db
        .set_low_balance_threshold(
            owner.tenant_id.parse().unwrap(),
            pinglayer_domain::billing::Money(8_000),
            app.clock.now(),
        )
        .await
        .unwrap();

    // Scheduling costs nothing; dispatching does (India: 0.3; elsewhere the default 0.5).
    let a = send(&app, &owner, "shipped", CUSTOMER).await;
    let b = send(&app, &owner, "shipped", "+14155550100").await;
    assert_eq!(balance(&app, &owner).await, 10_000);
    while app.engine.dispatch_once().await.unwrap() > 0 {}
    let ma = message(&app, &owner, &a).await;
    assert_eq!(ma["status"], "sent", "{ma}");
    assert_eq!(
        (ma["category"].as_str(), units(&ma["cost"])),
        (Some("utility"), 3_000)
    );
    assert_eq!(units(&message(&app, &owner, &b).await["cost"]), 5_000);
    assert_eq!(books_balance(&app, &owner).await, 2_000);
    // Crossing the threshold (0.8) raised one event.
    let ev = app.get("/api/v1/billing/events", &owner.token).await;
    assert_eq!(
        ev.body["data"].as_array().unwrap().len(),
        1,
        "{:?}",
        ev.body
    );
    assert_eq!(ev.body["data"][0]["kind"], "low_balance");
    let bal = app.get("/api/v1/billing/balance", &owner.token).await;
    assert_eq!(bal.body["low_balance"], true);
    let debits = app
        .get("/api/v1/billing/ledger?type=debit", &owner.token)
        .await;
    let refs: Vec<&str> = debits.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reference_id"].as_str().unwrap())
        .collect();
    assert!(
        refs.contains(&a.as_str()) && refs.contains(&b.as_str()),
        "{refs:?}"
    );

    // Meta reports `a` undeliverable (refundable), three times over: refunded once.
    let ts = chrono::Utc::now().timestamp().to_string();
    let failed = |id: &str, wamid: &str, code: i64| {
        status_payload(
            PNID,
            json!([{"id": wamid, "status": "failed", "timestamp": ts, "recipient_id": "919812345678",
                    "biz_opaque_callback_data": id,
                    "errors": [{"code": code, "title": "Message undeliverable", "message": "Message undeliverable"}]}]),
        )
    };
    let wa = ma["wamid"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(
            signed(&app, &failed(&a, &wa, 131026), APP_SECRET)
                .await
                .status,
            200
        );
        app.engine.apply_webhooks_once().await.unwrap();
    }
    let ma = message(&app, &owner, &a).await;
    assert_eq!(
        (ma["status"].as_str(), ma["refunded"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert_eq!(books_balance(&app, &owner).await, 5_000);
    let refunds = app
        .get("/api/v1/billing/ledger?type=refund", &owner.token)
        .await;
    assert_eq!(refunds.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(refunds.body["data"][0]["reference_id"], a.as_str());
    // A failure Meta charges for (131048, spam rate limit) is not refunded.
    let mb = message(&app, &owner, &b).await;
    let wb = mb["wamid"].as_str().unwrap().to_string();
    assert_eq!(
        signed(&app, &failed(&b, &wb, 131048), APP_SECRET)
            .await
            .status,
        200
    );
    app.engine.apply_webhooks_once().await.unwrap();
    assert_eq!(message(&app, &owner, &b).await["refunded"], false);
    assert_eq!(books_balance(&app, &owner).await, 5_000);

    // Not enough left for two: the first goes, the second fails unsent and costs nothing.
    let c = send(&app, &owner, "shipped", CUSTOMER).await;
    let d = send(&app, &owner, "shipped", "+919800000001").await;
    while app.engine.dispatch_once().await.unwrap() > 0 {}
    assert_eq!(message(&app, &owner, &c).await["status"], "sent");
    let md = message(&app, &owner, &d).await;
    assert_eq!(md["status"], "failed", "{md}");
    assert_eq!(md["error"]["title"], "insufficient_balance");
    assert!(md["cost"].is_null(), "{md}");
    assert_eq!(books_balance(&app, &owner).await, 2_000);

    // Usage: messages by category and status, spend, and no plan (no limits).
    let u = app.get("/api/v1/usage", &owner.token).await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert_eq!(u.body["messages"]["utility"]["total"], 4, "{:?}", u.body);
    assert_eq!(u.body["messages"]["utility"]["by_status"]["failed"], 3);
    assert_eq!(u.body["messages"]["utility"]["charged"], 3);
    assert_eq!(units(&u.body["spend"]), 8_000);
    assert!(u.body["plan"].is_null());
    assert_eq!(
        app.get("/api/v1/usage?period=2026-13", &owner.token)
            .await
            .status,
        422
    );
}
both!(sends_are_charged_and_failures_refunded_once, manual);

/// Three numbers of one tenant dispatch at once against a balance for 10 of 30 messages.
async fn concurrent_lanes_spend_only_what_there_is(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let admin = app.superadmin().await;
    let mut numbers = vec![connect(&app, &owner).await];
    for pnid in ["100000000000002", "100000000000003"] {
        let r = app
            .post(
                "/api/v1/whatsapp/numbers",
                Some(&owner.token),
                json!({"waba_id": WABA, "phone_number_id": pnid, "display_phone_number": "+1 555", "access_token": TOKEN}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        numbers.push(r.body["id"].as_str().unwrap().to_string());
    }
    approved_template(&app, &owner, "shipped").await;
    set_prices(
        &app,
        &admin,
        json!({"currency": "USD", "default": {"utility": 1}}),
    )
    .await;
    credit(&app, &admin, &owner.tenant_id, json!({"amount": 10}), None).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = app
            .post(
                "/api/v1/messages",
                Some(&owner.token),
                json!({"to": format!("+9198000000{i:02}"), "from_number_id": numbers[i % 3],
                       "template": {"name": "shipped", "language": "en", "parameters": ["A", "1"]}}),
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    // Two engines (as two processes would), each running its lanes concurrently.
    let e = &app.engine;
    let other = pinglayer_engine::Engine::new(
        pinglayer_store::Db::connect(&app.db_url, 3).await.unwrap(),
        e.clock.clone(),
        e.whatsapp.clone(),
        e.cipher.clone(),
        e.config.clone(),
    );
    loop {
        let (a, b, c) = tokio::join!(
            app.engine.dispatch_once(),
            other.dispatch_once(),
            app.engine.dispatch_once()
        );
        if a.unwrap() + b.unwrap() + c.unwrap() == 0 {
            break;
        }
    }
    let mut sent = 0;
    let mut unpaid = 0;
    for id in &ids {
        let m = message(&app, &owner, id).await;
        match m["status"].as_str().unwrap() {
            "sent" | "delivered" | "read" => sent += 1,
            "failed" => {
                assert_eq!(m["error"]["title"], "insufficient_balance", "{m}");
                unpaid += 1;
            }
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert_eq!((sent, unpaid), (10, 20));
    assert_eq!(
        app.sandbox
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    assert_eq!(books_balance(&app, &owner).await, 0);
}
both!(
    concurrent_lanes_spend_only_what_there_is,
    |o: &mut TestOptions| {
        o.auto_engine = false;
        for pnid in ["100000000000002", "100000000000003"] {
            o.sandbox.numbers.push(SandboxNumber {
                phone_number_id: pnid.into(),
                ..SandboxNumber::default()
            });
        }
    }
);

async fn a_campaign_that_runs_dry_pauses_itself(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let admin = app.superadmin().await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "shipped").await;
    set_prices(
        &app,
        &admin,
        json!({"currency": "INR", "default": {"utility": 1}}),
    )
    .await;
    credit(&app, &admin, &owner.tenant_id, json!({"amount": 3}), None).await;
    for i in 0..5 {
        let r = app
            .post(
                "/api/v1/contacts",
                Some(&owner.token),
                json!({"phone": format!("+9198000000{i:02}"), "name": format!("C{i}"), "tags": ["vip"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            json!({"name": "Shipping", "template": {"name": "shipped", "language": "en"},
                   "parameters": {"body": [{"source": "contact.name"}, {"text": "#9"}]},
                   "audience": {"tags": ["vip"]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.engine.campaigns_once().await.unwrap();
    while app.engine.dispatch_once().await.unwrap() > 0 {}
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!(c.body["status"], "paused", "{:?}", c.body);
    assert_eq!(c.body["status_reason"], "insufficient_balance");
    let s = app
        .get(&format!("/api/v1/campaigns/{id}/stats"), &owner.token)
        .await;
    assert_eq!(
        (s.body["sent"].as_i64(), s.body["pending"].as_i64()),
        (Some(3), Some(2)),
        "{:?}",
        s.body
    );
    assert_eq!(units(&s.body["cost"]), 30_000);
    assert_eq!(books_balance(&app, &owner).await, 0);
    // One debit entry for the campaign's batch, not one per message.
    let debits = app
        .get("/api/v1/billing/ledger?type=debit", &owner.token)
        .await;
    let d = &debits.body["data"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0]["reference_type"].as_str(), d[0]["quantity"].as_i64()),
        (Some("campaign"), Some(3))
    );

    // Top up and resume: the held messages go, nobody twice.
    credit(&app, &admin, &owner.tenant_id, json!({"amount": 10}), None).await;
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/resume"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    while app.engine.dispatch_once().await.unwrap() > 0 {}
    let s = app
        .get(&format!("/api/v1/campaigns/{id}/stats"), &owner.token)
        .await;
    assert_eq!(
        (s.body["sent"].as_i64(), s.body["pending"].as_i64()),
        (Some(5), Some(0)),
        "{:?}",
        s.body
    );
    assert_eq!(units(&s.body["cost"]), 50_000);
    assert_eq!(
        app.sandbox
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert_eq!(books_balance(&app, &owner).await, 80_000);
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!(c.body["status"], "completed", "{:?}", c.body);
}
both!(a_campaign_that_runs_dry_pauses_itself, manual);

async fn plan_limits_bite_where_they_should(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let admin = app.superadmin().await;
    let plans = app.get("/api/v1/plans", &owner.token).await;
    let names: Vec<&str> = plans
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in ["Starter", "Pro", "Enterprise"] {
        assert!(names.contains(&n), "{names:?}");
    }
    // Only platform admins manage plans.
    assert_eq!(
        app.post(
            "/api/v1/admin/plans",
            Some(&owner.token),
            json!({"name": "x"})
        )
        .await
        .status,
        403
    );
    let r = app
        .post(
            "/api/v1/admin/plans",
            Some(&admin),
            json!({"name": "Tiny", "limits": {"contacts": 3, "team_members": 1, "sending_numbers": 1, "messages_per_month": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let plan = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.post("/api/v1/admin/plans", Some(&admin), json!({"name": "Tiny"}))
            .await
            .code(),
        "plan_exists"
    );
    let r = app
        .post(
            "/api/v1/admin/plans",
            Some(&admin),
            json!({"name": "Bad", "limits": {"contacts": -1}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/plan", owner.tenant_id),
            Some(&admin),
            json!({"plan_id": plan}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Team: the owner is the one member allowed.
    let r = app
        .post("/api/v1/users", Some(&owner.token), json!({"email": "a@shop.test", "name": "A", "role": "agent", "password": "correct horse battery"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (403, "plan_limit_reached"),
        "{:?}",
        r.body
    );
    // Numbers: one.
    connect(&app, &owner).await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": WABA, "phone_number_id": "100000000000009", "display_phone_number": "+1", "access_token": TOKEN}))
        .await;
    assert_eq!(r.code(), "plan_limit_reached");
    // Contacts: an import stops at the limit, with the rows it could not take reported.
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": CUSTOMER}),
        )
        .await;
    assert_eq!(r.status, 201);
    let csv = "phone,name\n+919800000001,A\n+919812345678,Existing\n+919800000002,B\n+919800000003,C\n+919800000004,D\n";
    let job = finished(
        &app,
        &owner,
        &upload(
            &app,
            &owner,
            "c.csv",
            csv.as_bytes().to_vec(),
            &[("on_duplicate", "update")],
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("plan_limit_reached"),
        "{job}"
    );
    assert_eq!(
        (job["created"].as_i64(), job["updated"].as_i64()),
        (Some(2), Some(1)),
        "{job}"
    );
    let errors = app
        .get(
            &format!("/api/v1/imports/{}/errors.csv", job["id"].as_str().unwrap()),
            &owner.token,
        )
        .await;
    let errors = errors.body.as_str().unwrap().to_string();
    assert!(
        errors.contains("contact_limit_reached") && errors.contains("+919800000004"),
        "{errors}"
    );
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "+919800000009"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "plan_limit_reached"));

    // Messages: one a month; the second fails at dispatch with a clear code.
    approved_template(&app, &owner, "shipped").await;
    let a = send(&app, &owner, "shipped", CUSTOMER).await;
    let b = send(&app, &owner, "shipped", "+919800000001").await;
    while app.engine.dispatch_once().await.unwrap() > 0 {}
    assert_eq!(message(&app, &owner, &a).await["status"], "sent");
    let mb = message(&app, &owner, &b).await;
    assert_eq!(
        (mb["status"].as_str(), mb["error"]["title"].as_str()),
        (Some("failed"), Some("monthly_limit_reached"))
    );

    let u = app.get("/api/v1/usage", &owner.token).await;
    assert_eq!(u.body["plan"]["plan"]["name"], "Tiny");
    assert_eq!(u.body["limits"]["contacts"], 3);
    assert_eq!(
        (
            u.body["contacts"].as_i64(),
            u.body["team_members"].as_i64(),
            u.body["sending_numbers"].as_i64()
        ),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(u.body["messages"]["utility"]["charged"], 1);

    // Raising the plan's limit lets the tenant grow at once.
    let r = app
        .patch(
            &format!("/api/v1/admin/plans/{plan}"),
            &admin,
            json!({"limits": {"contacts": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["limits"]["contacts"].is_null());
    assert_eq!(r.body["limits"]["team_members"], 1);
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "+919800000009"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}
both!(plan_limits_bite_where_they_should, manual);

async fn billing_routes_are_isolated_per_tenant(app: TestApp) {
    let a = app.register("Shop A", "o@a.test").await;
    let b = app.register("Shop B", "o@b.test").await;
    let admin = app.superadmin().await;
    credit(
        &app,
        &admin,
        &a.tenant_id,
        json!({"amount": 42}),
        Some("same-key"),
    )
    .await;
    // The same key for another tenant is another top-up.
    let r = credit(
        &app,
        &admin,
        &b.tenant_id,
        json!({"amount": 42}),
        Some("same-key"),
    )
    .await;
    assert_eq!(r.status, 201);
    credit(&app, &admin, &b.tenant_id, json!({"amount": 1}), None).await;
    assert_eq!(balance(&app, &a).await, 420_000);
    assert_eq!(balance(&app, &b).await, 430_000);
    let la = ledger(&app, &a).await;
    assert_eq!(la.len(), 1);
    let lb = ledger(&app, &b).await;
    assert_eq!(lb.len(), 2);
    assert!(!lb.iter().any(|e| e["id"] == la[0]["id"]));
    let r = app
        .get(
            &format!(
                "/api/v1/billing/ledger?reference_id={}",
                la[0]["id"].as_str().unwrap()
            ),
            &b.token,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 0);
    // Agents and viewers do not see money; tenant users do not see the operator's routes.
    let (agent, _) = app.member(&a, "agent@a.test", "agent").await;
    for path in [
        "/api/v1/billing/balance",
        "/api/v1/billing/ledger",
        "/api/v1/usage",
        "/api/v1/billing/prices",
    ] {
        assert_eq!(app.get(path, &agent).await.status, 403, "{path}");
    }
    for path in [
        "/api/v1/admin/pricing",
        "/api/v1/admin/usage",
        &format!("/api/v1/admin/tenants/{}/ledger", a.tenant_id),
    ] {
        assert_eq!(app.get(path, &a.token).await.status, 403, "{path}");
    }
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/plan", b.tenant_id),
            Some(&a.token),
            json!({"plan": "Enterprise"}),
        )
        .await;
    assert_eq!(r.status, 403);
    // The operator sees each tenant's books and everyone's usage.
    let r = app
        .get(
            &format!("/api/v1/admin/tenants/{}/ledger", b.tenant_id),
            &admin,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(units(&r.body["balance"]), 430_000);
    assert_eq!(r.body["ledger"]["data"].as_array().unwrap().len(), 2);
    let r = app.get("/api/v1/admin/usage", &admin).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["tenant_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&a.tenant_id.as_str()) && ids.contains(&b.tenant_id.as_str()));
    // A plan's API rate holds for all of a tenant's credentials together.
    let c = app.register("Shop C", "o@c.test").await;
    let r = app
        .post(
            "/api/v1/admin/plans",
            Some(&admin),
            json!({"name": "Slow", "limits": {"api_requests_per_minute": 3}}),
        )
        .await;
    let slow = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/admin/tenants/{}/plan", c.tenant_id),
            Some(&admin),
            json!({"plan_id": slow}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (other_member, _) = app.member(&c, "admin@c.test", "admin").await;
    let mut codes = Vec::new();
    for token in [&c.token, &other_member, &c.token, &other_member, &c.token] {
        codes.push(app.get("/api/v1/billing/balance", token).await.status);
    }
    // Three a minute: one went on adding the member, two more pass, the rest wait.
    assert_eq!(codes, [200, 200, 429, 429, 429]);
    // Other tenants are not slowed down.
    assert_eq!(
        app.get("/api/v1/billing/balance", &a.token).await.status,
        200
    );

    // Bad price lists are refused, and nothing changes.
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/admin/pricing",
            Some(&admin),
            Some(json!({"currency": "INR", "default": {"marketing": -1}})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        app.get("/api/v1/admin/pricing", &admin).await.body["currency"],
        "USD"
    );
}
both!(billing_routes_are_isolated_per_tenant);
