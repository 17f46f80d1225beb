//! Campaigns end to end: definitions and their state machine, audience rules (language
//! fallback, consent, deleted contacts), fan-out, dispatch through the sandbox, counters from
//! status webhooks, replies, retargeting, recurring runs once per occurrence, crash recovery and
//! fairness — on both databases.

use pinglayer_domain::{Clock, NumberId};
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{Registered, TestApp, TestOptions},
    whatsapp::{PNID, connect, eventually},
};

/// A MARKETING template in English and Hindi: "Hi {{1}}, the sale in {{2}} starts today."
async fn marketing_template(app: &TestApp, owner: &Registered, name: &str) {
    let r = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": name, "category": "MARKETING", "languages": [
                {"language": "en", "components": [{"type": "BODY", "text": "Hi {{1}}, the sale in {{2}} starts today.", "example": {"body_text": [["Asha", "Pune"]]}}]},
                {"language": "hi", "components": [{"type": "BODY", "text": "नमस्ते {{1}}, {{2}} में सेल आज से।", "example": {"body_text": [["Asha", "Pune"]]}}]}
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let path = format!("/api/v1/templates/{}", r.body["id"].as_str().unwrap());
    eventually("template approval", || async {
        // With the engine stepped by hand, apply the review webhook here.
        let _ = app.engine.apply_webhooks_once().await;
        let t = app.get(&path, &owner.token).await;
        t.body["languages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["status"] == "APPROVED")
            .then_some(())
    })
    .await;
}

async fn contact(app: &TestApp, owner: &Registered, body: Value) -> String {
    let r = app.post("/api/v1/contacts", Some(&owner.token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn campaign_body(template: &str, audience: Value) -> Value {
    json!({
        "name": "Diwali sale",
        "template": {"name": template, "language": "en"},
        "parameters": {"body": [
            {"source": "contact.name", "fallback": "Customer"},
            {"source": "attributes.city", "fallback": "your city"}
        ]},
        "audience": audience
    })
}

async fn stats(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/campaigns/{id}/stats"), token)
        .await
        .body
}

async fn a_campaign_reaches_its_audience(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    connect(&app, &owner).await;
    marketing_template(&app, &owner, "diwali").await;
    let asha = contact(&app, &owner, json!({"phone": "+919800000001", "name": "Asha Rao", "language": "hi", "tags": ["vip"], "attributes": {"city": "Pune"}})).await;
    let _bala = contact(&app, &owner, json!({"phone": "+919800000002", "language": "ta", "tags": ["vip"], "attributes": {"city": "Chennai"}})).await;
    let chitra = contact(
        &app,
        &owner,
        json!({"phone": "+919800000003", "name": "Chitra", "tags": ["vip"]}),
    )
    .await;
    let gone = contact(
        &app,
        &owner,
        json!({"phone": "+919800000004", "name": "Gone", "tags": ["vip"]}),
    )
    .await;
    contact(
        &app,
        &owner,
        json!({"phone": "+919800000005", "name": "Not VIP"}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/contacts/{chitra}/opt-out"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{gone}"), &owner.token)
            .await
            .status,
        204
    );

    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("diwali", json!({"tags": ["vip"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "draft");
    let id = r.body["id"].as_str().unwrap().to_string();
    // Another tenant sees nothing of it.
    let other = app.register("Other", "x@other.test").await;
    assert_eq!(
        app.get(&format!("/api/v1/campaigns/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/campaigns/{id}/launch"),
            Some(&other.token),
            json!({})
        )
        .await
        .status,
        404
    );

    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    let s = eventually("the campaign to complete with statuses back", || async {
        let s = stats(&app, &owner.token, &id).await;
        (s["status"] == "completed" && s["delivered"] == 2).then_some(s)
    })
    .await;
    assert_eq!(s["targeted"], 3, "{s}");
    assert_eq!(s["queued"], 2, "{s}");
    assert_eq!(s["skipped"], 1, "{s}");
    assert_eq!(s["skipped_by_reason"]["opted_out"], 1, "{s}");
    assert_eq!(s["sent"], 2, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["pending"], 0, "{s}");

    // What reached "Meta": Asha in Hindi with her name and city; Bala (Tamil, not approved)
    // in the default English with the fallback name. Nobody twice, nobody else.
    let sent: Vec<_> = app.sandbox.sent.lock().unwrap().iter().cloned().collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let to = |phone: &str| {
        let m = sent.iter().find(|m| m.to == phone).expect("sent to");
        serde_json::to_value(&m.message).unwrap()
    };
    let a = to("919800000001");
    assert_eq!(a["template"]["language"]["code"], "hi");
    assert_eq!(
        a["template"]["components"][0]["parameters"][0]["text"],
        "Asha Rao"
    );
    assert_eq!(
        a["template"]["components"][0]["parameters"][1]["text"],
        "Pune"
    );
    let b = to("919800000002");
    assert_eq!(b["template"]["language"]["code"], "en");
    assert_eq!(
        b["template"]["components"][0]["parameters"][0]["text"],
        "Customer"
    );

    // Drill-down and export.
    let list = app
        .get(&format!("/api/v1/campaigns/{id}/recipients"), &owner.token)
        .await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        2,
        "{:?}",
        list.body
    );
    let skipped = app
        .get(
            &format!("/api/v1/campaigns/{id}/recipients?status=skipped"),
            &owner.token,
        )
        .await;
    assert_eq!(skipped.body["data"][0]["contact_id"], chitra.as_str());
    assert_eq!(skipped.body["data"][0]["error_title"], "opted_out");
    let csv = app
        .raw(
            app.client
                .get(app.url(&format!("/api/v1/campaigns/{id}/recipients/export")))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = csv.body.as_str().unwrap().to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("contact_id,name,phone,status"));
    let xlsx = app
        .raw(
            app.client
                .get(app.url(&format!(
                    "/api/v1/campaigns/{id}/recipients/export?format=xlsx"
                )))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(xlsx.status, 200);
    assert_eq!(
        app.get(
            &format!("/api/v1/campaigns/{id}/recipients?status=bogus"),
            &owner.token
        )
        .await
        .status,
        422
    );

    // Asha writes back: the campaign counts a reply, and her thread shows the campaign message.
    let ts = app.clock.now().timestamp() + 60;
    let r = app
        .raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(
            &json!({"phone_number_id": PNID, "from": "919800000001", "text": "Is the necklace on sale?", "timestamp": ts}),
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually("the reply to be counted", || async {
        (stats(&app, &owner.token, &id).await["replied"] == 1).then_some(())
    })
    .await;
    let replied = app
        .get(
            &format!("/api/v1/campaigns/{id}/recipients?status=replied"),
            &owner.token,
        )
        .await;
    assert_eq!(replied.body["data"][0]["contact_id"], asha.as_str());
    let convs = app.get("/api/v1/conversations", &owner.token).await;
    let conv = convs.body["data"][0]["id"].as_str().unwrap().to_string();
    let thread = app
        .get(
            &format!("/api/v1/conversations/{conv}/messages"),
            &owner.token,
        )
        .await;
    assert_eq!(
        thread.body["data"].as_array().unwrap().len(),
        2,
        "{:?}",
        thread.body
    );

    // A finished campaign cannot be edited, launched or cancelled; it can be deleted.
    let r = app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner.token,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "campaign_not_editable"));
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/cancel"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "invalid_campaign_transition"));

    // Retarget those who did not reply: Bala only.
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/retarget"),
            Some(&owner.token),
            json!({"who": "not_replied"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["parent_id"], id.as_str());
    let re = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/campaigns/{re}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = eventually("the retarget to complete", || async {
        let s = stats(&app, &owner.token, &re).await;
        (s["status"] == "completed").then_some(s)
    })
    .await;
    assert_eq!(s["targeted"], 1, "{s}");
    assert_eq!(s["sent"], 1, "{s}");
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 3);
    // Clicked: nobody has clicked anything, so nobody to launch at.
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/retarget"),
            Some(&owner.token),
            json!({"who": "clicked"}),
        )
        .await;
    let clicked = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/campaigns/{clicked}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "empty_audience"));
    assert_eq!(
        app.delete(&format!("/api/v1/campaigns/{id}"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/campaigns/{id}"), &owner.token)
            .await
            .status,
        404
    );
}
both!(a_campaign_reaches_its_audience);

async fn the_state_machine_refuses_illegal_moves(app: TestApp) {
    let owner = app.register("Clinic", "o@clinic.test").await;
    connect(&app, &owner).await;
    marketing_template(&app, &owner, "checkup").await;
    for i in 0..5 {
        contact(
            &app,
            &owner,
            json!({"phone": format!("+9198100000{i:02}"), "tags": ["patients"]}),
        )
        .await;
    }
    // Bad definitions are refused with field errors or clear codes.
    let mut bad = campaign_body(
        "checkup",
        json!({"tags": ["patients"], "all_opted_in": true}),
    );
    let r = app
        .post("/api/v1/campaigns", Some(&owner.token), bad.clone())
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    bad["audience"] = json!({"tags": ["patients"]});
    bad["parameters"]["body"][0]["source"] = json!("contact.password");
    assert_eq!(
        app.post("/api/v1/campaigns", Some(&owner.token), bad.clone())
            .await
            .status,
        422
    );
    bad["parameters"]["body"] = json!([{"text": "only one"}]);
    assert_eq!(
        app.post("/api/v1/campaigns", Some(&owner.token), bad.clone())
            .await
            .code(),
        "template_parameter_mismatch"
    );
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("nope", json!({"tags": ["patients"]})),
        )
        .await;
    assert_eq!(r.code(), "template_not_found");
    let mut cron = campaign_body("checkup", json!({"tags": ["patients"]}));
    cron["schedule"] = json!({"cron": "0 9 * * MON", "timezone": "Mars/Olympus"});
    assert_eq!(
        app.post("/api/v1/campaigns", Some(&owner.token), cron)
            .await
            .status,
        422
    );

    // An empty audience cannot be launched.
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("checkup", json!({"tags": ["nobody"]})),
        )
        .await;
    let empty = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/campaigns/{empty}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "empty_audience"));

    // Scheduled for later: editable, pausable, resumable, cancellable once.
    let mut later = campaign_body("checkup", json!({"tags": ["patients"]}));
    later["schedule"] = json!({"at": (app.clock.now() + chrono::Duration::days(2)).to_rfc3339()});
    let r = app
        .post("/api/v1/campaigns", Some(&owner.token), later)
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let at = |a: &str| format!("/api/v1/campaigns/{id}/{a}");
    let r = app.post(&at("pause"), Some(&owner.token), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "invalid_campaign_transition"));
    let r = app.post(&at("launch"), Some(&owner.token), json!({})).await;
    assert_eq!(r.body["status"], "scheduled", "{:?}", r.body);
    assert!(r.body["next_run_at"].is_string());
    let r = app.post(&at("launch"), Some(&owner.token), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "invalid_campaign_transition"));
    let r = app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner.token,
            json!({"name": "Annual check-up"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Annual check-up");
    let r = app.post(&at("pause"), Some(&owner.token), json!({})).await;
    assert_eq!(r.body["status"], "paused");
    let r = app.post(&at("resume"), Some(&owner.token), json!({})).await;
    assert_eq!(r.body["status"], "scheduled");
    let r = app.post(&at("cancel"), Some(&owner.token), json!({})).await;
    assert_eq!(r.body["status"], "cancelled");
    let r = app.post(&at("cancel"), Some(&owner.token), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "campaign_already_cancelled"));
    assert_eq!(app.engine.campaigns_once().await.unwrap(), 0);

    // Running (the engine is stepped by hand here, so nothing is dispatched yet).
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("checkup", json!({"tags": ["patients"]})),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let at = |a: &str| format!("/api/v1/campaigns/{id}/{a}");
    app.post(&at("launch"), Some(&owner.token), json!({})).await;
    assert_eq!(app.engine.campaigns_once().await.unwrap(), 5);
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!(c.body["status"], "running");
    let r = app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner.token,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "campaign_not_editable"));
    let r = app
        .delete(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!((r.status, r.code()), (409, "campaign_active"));
    // Paused: nothing goes out.
    assert_eq!(
        app.post(&at("pause"), Some(&owner.token), json!({}))
            .await
            .body["status"],
        "paused"
    );
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 0);
    let r = app
        .delete(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!((r.status, r.code()), (409, "campaign_active"));
    assert_eq!(
        app.post(&at("resume"), Some(&owner.token), json!({}))
            .await
            .body["status"],
        "running"
    );
    // Cancelled: the queued messages are marked and counted, never sent.
    let r = app.post(&at("cancel"), Some(&owner.token), json!({})).await;
    assert_eq!(r.body["status"], "cancelled", "{:?}", r.body);
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 0);
    let s = stats(&app, &owner.token, &id).await;
    assert_eq!(
        (s["queued"].as_i64(), s["cancelled"].as_i64()),
        (Some(5), Some(5)),
        "{s}"
    );
    let r = app.post(&at("cancel"), Some(&owner.token), json!({})).await;
    assert_eq!((r.status, r.code()), (409, "campaign_already_cancelled"));
    assert_eq!(
        app.delete(&format!("/api/v1/campaigns/{id}"), &owner.token)
            .await
            .status,
        204
    );
}
both!(
    the_state_machine_refuses_illegal_moves,
    |o: &mut TestOptions| o.auto_engine = false
);

async fn runs_of(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    app.get(path, token).await.body["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_recurring_campaign_runs_once_per_occurrence(app: TestApp) {
    let owner = app.register("Agency", "o@agency.test").await;
    connect(&app, &owner).await;
    marketing_template(&app, &owner, "weekly").await;
    contact(
        &app,
        &owner,
        json!({"phone": "+919820000001", "tags": ["list"]}),
    )
    .await;
    let mut body = campaign_body("weekly", json!({"tags": ["list"]}));
    body["schedule"] = json!({"cron": "0 9 * * *", "timezone": "Asia/Kolkata"});
    let r = app
        .post("/api/v1/campaigns", Some(&owner.token), body)
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
    let first: chrono::DateTime<chrono::Utc> =
        r.body["next_run_at"].as_str().unwrap().parse().unwrap();
    // 09:00 in Kolkata is 03:30 UTC.
    assert_eq!(first.format("%H:%M").to_string(), "03:30");
    // Nothing is due yet.
    app.engine.campaigns_once().await.unwrap();
    let runs_path = format!("/api/v1/campaigns/{id}/runs");
    assert_eq!(runs_of(&app, &runs_path, &owner.token).await.len(), 0);
    // Two schedulers (another process, its own pool) race for the occurrence: one run.
    let other_db = pinglayer_store::Db::connect(&app.db_url, 3).await.unwrap();
    let mut other = app.engine.clone();
    other.db = other_db;
    app.clock.set(first + chrono::Duration::minutes(1));
    let (a, b) = tokio::join!(app.engine.campaigns_once(), other.campaigns_once());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(runs_of(&app, &runs_path, &owner.token).await.len(), 1);
    app.engine.campaigns_once().await.unwrap();
    assert_eq!(runs_of(&app, &runs_path, &owner.token).await.len(), 1);
    // The next day, the next occurrence.
    app.clock
        .set(first + chrono::Duration::days(1) + chrono::Duration::minutes(1));
    let (a, b) = tokio::join!(app.engine.campaigns_once(), other.campaigns_once());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let list = runs_of(&app, &runs_path, &owner.token).await;
    assert_eq!(list.len(), 2);
    assert_ne!(list[0]["occurrence_at"], list[1]["occurrence_at"]);
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!(
        c.body["next_run_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        first + chrono::Duration::days(2)
    );
    other.db.close().await;
}
both!(
    a_recurring_campaign_runs_once_per_occurrence,
    |o: &mut TestOptions| o.auto_engine = false
);

async fn a_dead_workers_messages_are_sent_once_after_its_lease(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let number: NumberId = connect(&app, &owner).await.parse().unwrap();
    marketing_template(&app, &owner, "promo").await;
    for i in 0..3 {
        contact(
            &app,
            &owner,
            json!({"phone": format!("+9198300000{i:02}"), "tags": ["t"]}),
        )
        .await;
    }
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("promo", json!({"tags": ["t"]})),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/campaigns/{id}/launch"),
        Some(&owner.token),
        json!({}),
    )
    .await;
    assert_eq!(app.engine.campaigns_once().await.unwrap(), 3);
    // A worker takes the lane and claims the batch, then dies before sending.
    let now = app.clock.now();
    assert!(
        app.db
            .acquire_lane(
                number,
                "dead-worker",
                now + chrono::Duration::seconds(30),
                now
            )
            .await
            .unwrap()
    );
    let claimed = app
        .db
        .claim_lane(number, 10, chrono::Duration::seconds(60), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // While its leases live, nobody else sends them.
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    // After the message lease, another worker sends each exactly once.
    app.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 3);
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    let sent = app.sandbox.sent.lock().unwrap().len();
    assert_eq!(sent, 3);
    let s = stats(&app, &owner.token, &id).await;
    assert_eq!(
        (s["sent"].as_i64(), s["pending"].as_i64()),
        (Some(3), Some(0)),
        "{s}"
    );
}
both!(
    a_dead_workers_messages_are_sent_once_after_its_lease,
    |o: &mut TestOptions| o.auto_engine = false
);

async fn a_one_off_message_goes_before_a_big_campaign(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    marketing_template(&app, &owner, "bulk").await;
    crate::whatsapp::approved_template(&app, &owner, "otp_like").await;
    let rows: Vec<Value> = (0..100)
        .map(|i| json!({"phone": format!("+91984{i:07}"), "tags": ["all"]}))
        .collect();
    for r in rows {
        contact(&app, &owner, r).await;
    }
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            campaign_body("bulk", json!({"tags": ["all"]})),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/campaigns/{id}/launch"),
        Some(&owner.token),
        json!({}),
    )
    .await;
    assert_eq!(app.engine.campaigns_once().await.unwrap(), 100);
    let r = app
        .post("/api/v1/messages", Some(&owner.token), json!({"to": "+919812345678", "template": {"name": "otp_like", "language": "en", "parameters": ["Asha", "#9"]}}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    // One batch (half a second at 80/s): the one-off is in it, ahead of the campaign.
    let n = app.engine.dispatch_once().await.unwrap();
    assert_eq!(n, 40);
    let sent = app.sandbox.sent.lock().unwrap().clone();
    assert!(
        sent.iter().any(|m| m.to == "919812345678"),
        "the one-off waited behind the campaign"
    );
}
both!(
    a_one_off_message_goes_before_a_big_campaign,
    |o: &mut TestOptions| o.auto_engine = false
);

async fn quiet_hours_hold_sends_and_a_test_message_goes_at_once(app: TestApp) {
    let owner = app.register("Salon", "o@salon.test").await;
    connect(&app, &owner).await;
    marketing_template(&app, &owner, "offer").await;
    contact(
        &app,
        &owner,
        json!({"phone": "+919850000001", "name": "Devi", "tags": ["regulars"], "attributes": {"city": "Goa"}}),
    )
    .await;
    // Quiet hours around "now" (UTC): from one hour ago to two hours ahead.
    let now = app.clock.now();
    let hm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let end = now + chrono::Duration::hours(2);
    let mut body = campaign_body("offer", json!({"tags": ["regulars"]}));
    body["quiet_hours"] = json!({"start": hm(now - chrono::Duration::hours(1)), "end": hm(end)});
    let r = app
        .post("/api/v1/campaigns", Some(&owner.token), body)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();

    // A test message is not a campaign send: it goes now, filled from the contact.
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/test"),
            Some(&owner.token),
            json!({"to": "+919850000001"}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 1);
    {
        let sent = app.sandbox.sent.lock().unwrap();
        let m = serde_json::to_value(&sent[0].message).unwrap();
        assert_eq!(
            m["template"]["components"][0]["parameters"][0]["text"],
            "Devi"
        );
        assert_eq!(
            m["template"]["components"][0]["parameters"][1]["text"],
            "Goa"
        );
    }
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/test"),
            Some(&owner.token),
            json!({"to": "not a phone"}),
        )
        .await;
    assert_eq!(r.status, 422);

    app.post(
        &format!("/api/v1/campaigns/{id}/launch"),
        Some(&owner.token),
        json!({}),
    )
    .await;
    assert_eq!(app.engine.campaigns_once().await.unwrap(), 1);
    // In quiet hours the claimed message is put back until they end; nothing goes out.
    app.engine.dispatch_once().await.unwrap();
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 0);
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 1);
    let s = stats(&app, &owner.token, &id).await;
    assert_eq!(
        (s["sent"].as_i64(), s["pending"].as_i64()),
        (Some(0), Some(1)),
        "{s}"
    );
    // When they end, it is sent.
    app.clock.set(end + chrono::Duration::minutes(1));
    assert_eq!(app.engine.dispatch_once().await.unwrap(), 1);
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 2);
    let s = stats(&app, &owner.token, &id).await;
    assert_eq!(
        (s["sent"].as_i64(), s["pending"].as_i64()),
        (Some(1), Some(0)),
        "{s}"
    );
}
both!(
    quiet_hours_hold_sends_and_a_test_message_goes_at_once,
    |o: &mut TestOptions| o.auto_engine = false
);
