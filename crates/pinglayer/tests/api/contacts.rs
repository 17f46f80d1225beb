//! Contacts: lifecycle, filters, tags, consent (manual and by keyword), erasure, export.

use serde_json::json;
use std::time::Duration;

use crate::{
    both,
    helpers::{Registered, TestApp},
};

async fn add(app: &TestApp, owner: &Registered, body: serde_json::Value) -> serde_json::Value {
    let r = app.post("/api/v1/contacts", Some(&owner.token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn contacts_are_parsed_stored_and_found(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let asha = add(&app, &owner, json!({"phone": "098123 45678", "default_country": "IN", "name": "Asha Rao", "email": "Asha@Example.com",
        "language": "hi", "birthday": "--05-15", "attributes": {"city": "Pune", "spend": 1200}, "tags": ["VIP", "gold"], "consent": "opted_in"})).await;
    assert_eq!(asha["phone"], "+919812345678");
    assert_eq!(asha["email"], "asha@example.com");
    assert_eq!(asha["tags"], json!(["gold", "vip"]));
    assert_eq!(asha["consent"]["status"], "opted_in");
    assert_eq!(asha["consent"]["source"], "api");
    assert_eq!(asha["attributes"]["city"], "Pune");
    let ravi = add(
        &app,
        &owner,
        json!({"phone": "+2348031234567", "name": "Ravi", "language": "en", "tags": ["gold"]}),
    )
    .await;
    assert!(ravi["consent"].is_null());

    // One phone per tenant, however it is written; another tenant may hold it too.
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "+91 98123-45678"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "contact_exists");
    let other = app.register("Other", "x@other.test").await;
    add(&app, &other, json!({"phone": "+919812345678"})).await;
    let r = app.post("/api/v1/contacts", Some(&owner.token), json!({"phone": "12345", "default_country": "US", "birthday": "1990-02-30", "language": "english"})).await;
    assert_eq!(r.status, 422);
    let fields: Vec<_> = r.body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, vec!["phone", "language", "birthday"]);

    let get = |q: &'static str| {
        let path = format!("/api/v1/contacts?{q}");
        let app = &app;
        let token = owner.token.clone();
        async move { app.get(&path, &token).await }
    };
    assert_eq!(
        get("q=asha").await.body["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(get("q=234803").await.body["data"][0]["name"], "Ravi");
    assert_eq!(
        get("tag=gold").await.body["data"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        get("tag=vip").await.body["data"].as_array().unwrap().len(),
        1
    );
    assert_eq!(get("language=hi").await.body["data"][0]["name"], "Asha Rao");
    assert_eq!(get("consent=unknown").await.body["data"][0]["name"], "Ravi");
    assert_eq!(
        get("consent=opted_in").await.body["data"][0]["name"],
        "Asha Rao"
    );
    let p1 = get("limit=1").await;
    assert_eq!(p1.body["data"][0]["name"], "Ravi", "newest first");
    let c = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = app
        .get(
            &format!("/api/v1/contacts?limit=1&cursor={c}"),
            &owner.token,
        )
        .await;
    assert_eq!(p2.body["data"][0]["name"], "Asha Rao");

    let stats = app.get("/api/v1/contacts/stats", &owner.token).await;
    assert_eq!(stats.body["total"], 2);
    assert_eq!(stats.body["by_tag"]["gold"], 2);
    assert_eq!(stats.body["by_consent"]["opted_in"], 1);
    assert_eq!(stats.body["by_language"]["hi"], 1);
    let tags = app.get("/api/v1/tags", &owner.token).await;
    assert_eq!(tags.body["data"][0], json!({"tag": "gold", "count": 2}));

    let id = asha["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/api/v1/contacts/{id}"),
            &owner.token,
            json!({"name": "Asha R.", "tags": ["new"]}),
        )
        .await;
    assert_eq!(r.body["name"], "Asha R.");
    assert_eq!(r.body["tags"], json!(["new"]));
    assert_eq!(r.body["email"], "asha@example.com", "untouched");
    let r = app
        .post(
            &format!("/api/v1/contacts/{id}/tags"),
            Some(&owner.token),
            json!({"tags": ["Diwali", "new"]}),
        )
        .await;
    assert_eq!(r.body["tags"], json!(["diwali", "new"]));
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}/tags/diwali"), &owner.token)
            .await
            .status,
        204
    );

    // Tenant isolation on every route with an id.
    for path in [
        format!("/api/v1/contacts/{id}"),
        format!("/api/v1/contacts/{id}/export"),
    ] {
        assert_eq!(app.get(&path, &other.token).await.status, 404, "{path}");
    }
    assert_eq!(
        app.patch(
            &format!("/api/v1/contacts/{id}"),
            &other.token,
            json!({"name": "x"})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/contacts/{id}/opt-out"),
            Some(&other.token),
            json!({})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/contacts/{id}/tags"),
            Some(&other.token),
            json!({"tags": ["x"]})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/contacts?q=asha", &other.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.get("/api/v1/tags", &other.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Viewers read, do not write.
    let (viewer, _) = app.member(&owner, "v@shop.test", "viewer").await;
    assert_eq!(app.get("/api/v1/contacts", &viewer).await.status, 200);
    assert_eq!(
        app.post(
            "/api/v1/contacts",
            Some(&viewer),
            json!({"phone": "+919800000001"})
        )
        .await
        .status,
        403
    );
}
both!(contacts_are_parsed_stored_and_found);

async fn deletion_restoration_erasure_and_export(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let c = add(
        &app,
        &owner,
        json!({"phone": "+919812345678", "name": "Asha", "consent": "opted_in"}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.post(
            &format!("/api/v1/contacts/{id}/opt-out"),
            Some(&owner.token),
            json!({"note": "asked by phone"})
        )
        .await
        .body["consent"]["status"],
        "opted_out"
    );
    let export = app
        .get(&format!("/api/v1/contacts/{id}/export"), &owner.token)
        .await;
    assert_eq!(export.status, 200);
    let history: Vec<_> = export.body["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["consent"].as_str().unwrap().to_string(),
                e["note"].clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("opted_in".to_string(), json!(null)),
            ("opted_out".to_string(), json!("asked by phone"))
        ]
    );

    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{id}"), &owner.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/contacts", &owner.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Creating the phone again restores the contact (same id).
    let back = add(
        &app,
        &owner,
        json!({"phone": "+919812345678", "name": "Asha again"}),
    )
    .await;
    assert_eq!(back["id"], id.as_str());
    assert_eq!(back["name"], "Asha again");

    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}?erase=true"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{id}"), &owner.token)
            .await
            .status,
        404
    );
    let left: Vec<(String, Option<String>)> = match &app.db {
        pinglayer_store::Db::Postgres(p) => sqlx::query_as("select phone, name from contacts")
            .fetch_all(p)
            .await
            .unwrap(),
        pinglayer_store::Db::Sqlite(p) => sqlx::query_as("select phone, name from contacts")
            .fetch_all(p)
            .await
            .unwrap(),
    };
    assert_eq!(
        left,
        vec![(format!("erased:{id}"), None)],
        "nothing personal remains"
    );
    // The phone is free again.
    add(&app, &owner, json!({"phone": "+919812345678"})).await;
}
both!(deletion_restoration_erasure_and_export);

async fn stop_and_start_keywords_change_consent(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": "200000000000001", "phone_number_id": "100000000000001", "display_phone_number": "+1 555-000-0001", "access_token": "sandbox-access-token"}))
        .await;
    assert_eq!(r.status, 201);
    let t = app
        .post("/api/v1/templates", Some(&owner.token), json!({"name": "sale", "category": "MARKETING", "languages": [{"language": "en", "components": [{"type": "BODY", "text": "Big sale!"}]}]}))
        .await;
    let tpath = format!("/api/v1/templates/{}", t.body["id"].as_str().unwrap());
    let c = add(
        &app,
        &owner,
        json!({"phone": "+919812345678", "consent": "opted_in"}),
    )
    .await;
    let cpath = format!("/api/v1/contacts/{}", c["id"].as_str().unwrap());
    let inbound = |text: &'static str| {
        app.raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(&json!({"phone_number_id": "100000000000001", "from": "919812345678", "text": text})))
    };
    inbound(" Stop ").await;
    for _ in 0..250 {
        if app.get(&cpath, &owner.token).await.body["consent"]["status"] == "opted_out" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let contact = app.get(&cpath, &owner.token).await;
    assert_eq!(contact.body["consent"]["status"], "opted_out");
    assert_eq!(contact.body["consent"]["source"], "inbound_keyword");
    // The opt-out is confirmed to the customer.
    for _ in 0..250 {
        if app
            .sandbox
            .sent
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.kind == "text")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = app.sandbox.sent.lock().unwrap().clone();
    assert!(sent.iter().any(|s| matches!(&s.message.content, pinglayer_whatsapp::types::Content::Text { text } if text.body.contains("Reply START"))), "{sent:?}");
    // Marketing is refused for the opted-out contact.
    for _ in 0..250 {
        if app.get(&tpath, &owner.token).await.body["languages"][0]["status"] == "APPROVED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": "+919812345678", "template": {"name": "sale", "language": "en"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.code(), "contact_opted_out");
    inbound("START").await;
    for _ in 0..250 {
        if app.get(&cpath, &owner.token).await.body["consent"]["status"] == "opted_in" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get(&cpath, &owner.token).await.body["consent"]["status"],
        "opted_in"
    );
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": "+919812345678", "template": {"name": "sale", "language": "en"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
}
both!(stop_and_start_keywords_change_consent);

async fn bulk_tags_and_exports(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    for (i, lang) in ["hi", "hi", "ta"].iter().enumerate() {
        add(&app, &owner, json!({"phone": format!("+91980000000{i}"), "name": format!("P{i}"), "language": lang, "attributes": {"n": i}})).await;
    }
    let r = app
        .post(
            "/api/v1/contacts/tags",
            Some(&owner.token),
            json!({"filter": {"language": "hi"}, "add": ["Hindi"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["matched"], 2);
    assert_eq!(
        app.get("/api/v1/tags", &owner.token).await.body["data"][0],
        json!({"tag": "hindi", "count": 2})
    );
    let r = app
        .post(
            "/api/v1/contacts/tags",
            Some(&owner.token),
            json!({"filter": {}, "add": ["all"], "remove": ["hindi"]}),
        )
        .await;
    assert_eq!(r.body["matched"], 3);
    let tags = app.get("/api/v1/tags", &owner.token).await;
    assert_eq!(tags.body["data"], json!([{"tag": "all", "count": 3}]));
    assert_eq!(
        app.post(
            "/api/v1/contacts/tags",
            Some(&owner.token),
            json!({"filter": {}})
        )
        .await
        .status,
        422
    );

    let csv = app
        .raw(
            app.client
                .get(app.url("/api/v1/contacts/export?language=hi"))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.body.as_str().unwrap().to_string();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,phone,name,email,language,birthday,consent,tags,attributes,created_at,last_inbound_at"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(text.contains("+919800000001") && !text.contains("+919800000002"));
    let xlsx = app
        .raw(
            app.client
                .get(app.url("/api/v1/contacts/export?format=xlsx"))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(xlsx.status, 200);
    assert!(
        xlsx.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("spreadsheetml")
    );
    assert_eq!(
        app.get("/api/v1/contacts/export?format=pdf", &owner.token)
            .await
            .status,
        422
    );
    let other = app.register("Other", "x@other.test").await;
    let theirs = app
        .raw(
            app.client
                .get(app.url("/api/v1/contacts/export"))
                .bearer_auth(&other.token),
        )
        .await;
    assert_eq!(
        theirs.body.as_str().unwrap().lines().count(),
        1,
        "only the header"
    );
}
both!(bulk_tags_and_exports);

async fn a_tenant_adds_its_own_consent_keywords(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": "200000000000001", "phone_number_id": "100000000000001", "display_phone_number": "+1 555-000-0001", "access_token": "sandbox-access-token"}))
        .await;
    assert_eq!(r.status, 201);
    let base = app.get("/api/v1/consent/keywords", &owner.token).await;
    assert!(
        base.body["builtin"]["opt_out"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == "stop")
    );
    // Clashes with the built-in meaning, and a word in both lists, are refused.
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/consent/keywords",
            Some(&owner.token),
            Some(json!({"opt_out": ["start"]})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/consent/keywords",
            Some(&owner.token),
            Some(json!({"opt_out": ["Bas karo!"], "opt_in": ["bas karo"]})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/consent/keywords",
            Some(&owner.token),
            Some(json!({"opt_out": ["Bas karo!", "STOP"], "opt_in": ["Phir se"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["custom"]["opt_out"], json!(["bas karo"]));
    assert_eq!(r.body["custom"]["opt_in"], json!(["phir se"]));
    let c = add(
        &app,
        &owner,
        json!({"phone": "+919812345678", "consent": "opted_in"}),
    )
    .await;
    let cpath = format!("/api/v1/contacts/{}", c["id"].as_str().unwrap());
    let inbound = |text: &'static str| {
        app.raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(&json!({"phone_number_id": "100000000000001", "from": "919812345678", "text": text})))
    };
    inbound("bas KARO.").await;
    for _ in 0..250 {
        if app.get(&cpath, &owner.token).await.body["consent"]["status"] == "opted_out" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get(&cpath, &owner.token).await.body["consent"]["status"],
        "opted_out"
    );
    inbound("phir se").await;
    for _ in 0..250 {
        if app.get(&cpath, &owner.token).await.body["consent"]["status"] == "opted_in" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get(&cpath, &owner.token).await.body["consent"]["status"],
        "opted_in"
    );
    // Another tenant's keywords are its own.
    let other = app.register("Other", "x@other.test").await;
    let k = app.get("/api/v1/consent/keywords", &other.token).await;
    assert_eq!(k.body["custom"]["opt_out"], json!([]));
}
both!(a_tenant_adds_its_own_consent_keywords);

/// The names on the first page of `?tag=vip`, as the API answers now.
async fn vip_names(app: &TestApp, owner: &Registered) -> Vec<String> {
    let r = app.get("/api/v1/contacts?tag=vip", &owner.token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// List pages are served again from memory while nothing changed; every kind of change shows
/// on the very next request, and a change written behind the process's back shows within the
/// page's age limit (at once on PostgreSQL, where the database announces it).
async fn the_kept_list_follows_every_change(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let a = add(
        &app,
        &owner,
        json!({"phone": "+919812345601", "name": "Asha", "tags": ["vip"]}),
    )
    .await;
    assert_eq!(vip_names(&app, &owner).await, ["Asha"]);
    assert_eq!(vip_names(&app, &owner).await, ["Asha"]);
    let b = add(
        &app,
        &owner,
        json!({"phone": "+919812345602", "name": "Ravi", "tags": ["vip"]}),
    )
    .await;
    assert_eq!(vip_names(&app, &owner).await, ["Ravi", "Asha"]);
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let r = app
        .patch(
            &format!("/api/v1/contacts/{a}"),
            &owner.token,
            json!({"name": "Asha R"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(vip_names(&app, &owner).await, ["Ravi", "Asha R"]);
    let r = app
        .delete(&format!("/api/v1/contacts/{b}/tags/vip"), &owner.token)
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert_eq!(vip_names(&app, &owner).await, ["Asha R"]);
    let r = app
        .post(
            &format!("/api/v1/contacts/{b}/tags"),
            Some(&owner.token),
            json!({"tags": ["vip"]}),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert_eq!(vip_names(&app, &owner).await, ["Ravi", "Asha R"]);
    let r = app
        .post(
            &format!("/api/v1/contacts/{a}/opt-out"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    let page = app.get("/api/v1/contacts?tag=vip", &owner.token).await;
    assert_eq!(page.body["data"][1]["consent"]["status"], "opted_out");
    let r = app
        .post(
            "/api/v1/contacts/tags",
            Some(&owner.token),
            json!({"filter": {}, "remove": ["vip"]}),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    assert!(vip_names(&app, &owner).await.is_empty());
    let r = crate::imports::upload(
        &app,
        &owner,
        "c.csv",
        b"phone,name,tags\n+919812345603,Meera,vip\n".to_vec(),
        &[],
    )
    .await;
    crate::imports::finished(&app, &owner, &r).await;
    assert_eq!(vip_names(&app, &owner).await, ["Meera"]);
    let r = app
        .delete(&format!("/api/v1/contacts/{a}"), &owner.token)
        .await;
    assert!(r.status < 300, "{:?}", r.body);
    let all = app.get("/api/v1/contacts", &owner.token).await;
    assert_eq!(
        all.body["data"].as_array().unwrap().len(),
        2,
        "{:?}",
        all.body
    );

    // Behind the process's back: a statement through a pool of its own, announcing nothing,
    // just after the page was kept.
    assert_eq!(vip_names(&app, &owner).await, ["Meera"]);
    let other = pinglayer_store::Db::connect(&app.db_url, 1).await.unwrap();
    pinglayer_store::on_db!(&other, p => sqlx::query("update contacts set name = 'Meera K' where name = 'Meera'")
        .execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        if vip_names(&app, &owner).await == ["Meera K"] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the stale page outlived its age limit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if app.db.backend() == pinglayer_store::Backend::Postgres {
        // Announced by the database's trigger, not waited out.
        assert!(
            started.elapsed() < pinglayer_api::contact_pages::MAX_AGE / 2,
            "took {:?}",
            started.elapsed()
        );
    }
}
both!(the_kept_list_follows_every_change);

/// A tenant's default country reads national numbers in new contacts and imports that name
/// none; only owners change it; a request's own country still wins.
async fn the_tenants_default_country_reads_national_numbers(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    let t = app.get("/api/v1/tenant", &owner.token).await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert!(t.body["default_country"].is_null());
    // Without a country, a national number cannot be read.
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "098123 45678"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);

    let (agent, _) = app.member(&owner, "agent@jeweller.test", "agent").await;
    let r = app
        .patch("/api/v1/tenant", &agent, json!({"default_country": "IN"}))
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .patch(
            "/api/v1/tenant",
            &owner.token,
            json!({"default_country": "XX"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["error"]["details"]["fields"][0]["field"], "default_country",
        "{:?}",
        r.body
    );
    let r = app
        .patch(
            "/api/v1/tenant",
            &owner.token,
            json!({"default_country": "in"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["default_country"], "IN");
    assert_eq!(r.body["name"], "Jeweller", "a field not sent is kept");

    // The same token, at once: its cached principal was dropped with the change.
    let c = add(&app, &owner, json!({"phone": "098123 45678"})).await;
    assert_eq!(c["phone"], "+919812345678");
    let c = add(
        &app,
        &owner,
        json!({"phone": "(415) 555-0100", "default_country": "US"}),
    )
    .await;
    assert_eq!(c["phone"], "+14155550100", "the request's country wins");
    let r = crate::imports::upload(
        &app,
        &owner,
        "list.csv",
        b"phone,name\n09812345679,Meera\n".to_vec(),
        &[],
    )
    .await;
    let job = crate::imports::finished(&app, &owner, &r).await;
    assert_eq!(job["created"], 1, "{job:?}");
    let found = app.get("/api/v1/contacts?q=Meera", &owner.token).await;
    assert_eq!(
        found.body["data"][0]["phone"], "+919812345679",
        "{:?}",
        found.body
    );

    // Another tenant is not affected; `null` clears it.
    let other = app.register("Other", "o@other.test").await;
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&other.token),
            json!({"phone": "09812345670"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .patch(
            "/api/v1/tenant",
            &owner.token,
            json!({"default_country": null, "name": "Jeweller & Sons"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["default_country"].is_null());
    assert_eq!(r.body["name"], "Jeweller & Sons");
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "09812345671"}),
        )
        .await;
    assert_eq!(r.status, 422);
}
both!(the_tenants_default_country_reads_national_numbers);

/// Export covers a soft-deleted person with their conversations; erasure leaves none of their
/// number or words in messages, refused import rows or processed raw webhooks.
async fn erasure_leaves_nothing_of_the_person(app: TestApp) {
    let owner = app.register("Clinic", "o@clinic.test").await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": "200000000000001", "phone_number_id": "100000000000001", "display_phone_number": "+1 555-000-0001", "access_token": "sandbox-access-token"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c = add(
        &app,
        &owner,
        json!({"phone": "+919812345678", "name": "Asha"}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();
    let export_path = format!("/api/v1/contacts/{id}/export");
    app.raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(&json!({"phone_number_id": "100000000000001", "from": "919812345678", "text": "My report says sugar 140"})))
        .await;
    let mut export = app.get(&export_path, &owner.token).await;
    for _ in 0..250 {
        if export.body["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        export = app.get(&export_path, &owner.token).await;
    }
    assert_eq!(
        export.body["messages"].as_array().unwrap().len(),
        1,
        "{:?}",
        export.body
    );
    assert_eq!(export.body["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(export.body["link_clicks"], json!([]));
    // A refused import row holding the number in national notation.
    let r = crate::imports::upload(
        &app,
        &owner,
        "list.csv",
        b"phone,name,email\n098123 45678,Asha,not-an-email\n".to_vec(),
        &[("default_country", "IN")],
    )
    .await;
    let job = crate::imports::finished(&app, &owner, &r).await;
    assert_eq!(job["failed"], 1, "{job:?}");

    // Soft-deleted: hidden, but still held, so still exported.
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}"), &owner.token)
            .await
            .status,
        204
    );
    let export = app.get(&export_path, &owner.token).await;
    assert_eq!(export.status, 200, "{:?}", export.body);
    assert_eq!(export.body["contact"]["name"], "Asha");
    assert_eq!(export.body["messages"].as_array().unwrap().len(), 1);

    let held = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            match &db {
                pinglayer_store::Db::Postgres(p) => sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(p)
                    .await
                    .unwrap(),
                pinglayer_store::Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(p)
                    .await
                    .unwrap(),
            }
        }
    };
    let raw_webhooks = "select count(*) from webhook_events where body like '%919812345678%'";
    let processed = "select count(*) from webhook_events where body like '%919812345678%' and status = 'processed'";
    for _ in 0..250 {
        if held(processed).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        held(processed).await > 0,
        "the inbound payload was stored and applied"
    );
    assert_eq!(held("select count(*) from import_errors").await, 1);

    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}?erase=true"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(app.get(&export_path, &owner.token).await.status, 404);
    assert_eq!(held(raw_webhooks).await, 0, "no raw payload names them");
    assert_eq!(
        held("select count(*) from import_errors").await,
        0,
        "no refused row holds their number"
    );
    assert_eq!(
        held("select count(*) from messages where content like '%sugar%' or preview like '%sugar%' or to_phone like '%9812345678%'").await,
        0,
        "their words and number are gone from messages"
    );
    assert_eq!(
        held("select count(*) from messages").await,
        1,
        "the message itself stays counted"
    );
}
both!(erasure_leaves_nothing_of_the_person);

/// Raw webhook payloads (numbers, texts) are kept a week once applied; pending ones stay.
async fn raw_webhooks_are_purged_after_their_retention(app: TestApp) {
    use pinglayer_store::housekeeping::WEBHOOK_RETENTION_DAYS;
    let now = chrono::Utc::now();
    let stored = app
        .db
        .store_webhook_events(
            vec![
                ("platform".into(), r#"{"applied":"919812345678"}"#.into()),
                ("platform".into(), r#"{"pending":"919812345679"}"#.into()),
            ],
            None,
            now,
        )
        .await
        .unwrap();
    app.db
        .finish_webhook_events(&[stored[0].id], now)
        .await
        .unwrap();
    let count = || async { app.db.pending_webhook_events().await.unwrap() };
    let day = chrono::Duration::days(1);
    let p = app
        .db
        .purge_expired(now + day * (WEBHOOK_RETENTION_DAYS as i32) - day)
        .await
        .unwrap();
    assert_eq!(p.webhook_events, 0, "younger than the retention: kept");
    let p = app
        .db
        .purge_expired(now + day * (WEBHOOK_RETENTION_DAYS as i32) + day)
        .await
        .unwrap();
    assert_eq!(p.webhook_events, 1, "the applied one goes");
    assert_eq!(count().await, 1, "the pending one stays until applied");
}
both!(raw_webhooks_are_purged_after_their_retention);

/// Lists sort by creation (either way) or by name (case-insensitive, nameless first), and the
/// cursor walks every order without repeating or skipping anyone.
async fn lists_sort_and_page_in_every_order(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let names = [
        Some("bob"),
        Some("Alice"),
        None,
        Some("carol"),
        Some("alice"),
        Some("Bob"),
    ];
    for (i, n) in names.iter().enumerate() {
        add(
            &app,
            &owner,
            json!({"phone": format!("+91981234570{i}"), "name": n}),
        )
        .await;
    }
    let walk = |sort: &'static str| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let mut out: Vec<String> = Vec::new();
            let mut cursor = String::new();
            for _ in 0..10 {
                let r = app
                    .get(
                        &format!("/api/v1/contacts?sort={sort}&limit=2&cursor={cursor}"),
                        &token,
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                for c in r.body["data"].as_array().unwrap() {
                    out.push(c["name"].as_str().unwrap_or("-").to_string());
                }
                match r.body["next_cursor"].as_str() {
                    Some(c) => cursor = c.to_string(),
                    None => return out,
                }
            }
            panic!("the cursor never ended");
        }
    };
    assert_eq!(
        walk("created_at").await,
        ["bob", "Alice", "-", "carol", "alice", "Bob"]
    );
    assert_eq!(
        walk("-created_at").await,
        ["Bob", "alice", "carol", "-", "Alice", "bob"]
    );
    // Same name in two cases: creation order between them.
    assert_eq!(
        walk("name").await,
        ["-", "Alice", "alice", "bob", "Bob", "carol"]
    );
    assert_eq!(
        walk("-name").await,
        ["carol", "Bob", "bob", "alice", "Alice", "-"]
    );
    let r = app.get("/api/v1/contacts?sort=phone", &owner.token).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}
both!(lists_sort_and_page_in_every_order);
