//! Smart links end to end: redirects with UTM parameters, unique counting, bot and preview
//! filtering, expiry and disabling (410), unknown codes (404), statistics, tenant isolation, and
//! personal links inside a campaign sent through the sandbox — clicks on the campaign's stats
//! and in its retargeting — on both databases.

use pinglayer_domain::Clock;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{Registered, Resp, TestApp, into_resp},
    whatsapp::{approved_template, connect, eventually},
};

const PHONE_UA: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
const MAC_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
const WHATSAPP_PREVIEW: &str = "WhatsApp/2.23.20.0 A";
const FACEBOOK_PREVIEW: &str =
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";

/// Follows nothing: a click's answer is what the test looks at.
async fn click(app: &TestApp, code_or_url: &str, ua: &str) -> Resp {
    let code = code_or_url.rsplit('/').next().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(app.url(&format!("/s/{code}")))
        .header("user-agent", ua)
        .header("referer", "https://wa.me/")
        .send()
        .await
        .expect("click sent");
    into_resp(r).await
}

async fn link(app: &TestApp, owner: &Registered, body: Value) -> Value {
    let r = app.post("/api/v1/links", Some(&owner.token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn redirects_count_and_expire(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    for bad in [
        "javascript:alert(1)",
        "ftp://shop.example/x",
        "/sale",
        "not a url",
    ] {
        let r = app
            .post("/api/v1/links", Some(&owner.token), json!({"url": bad}))
            .await;
        assert_eq!((r.status, r.code()), (422, "validation_failed"), "{bad}");
    }
    let l = link(
        &app,
        &owner,
        json!({"url": "https://shop.example/sale?ref=wa#top", "utm": {"source": "whatsapp", "medium": "chat", "campaign": "diwali"}}),
    )
    .await;
    let id = l["id"].as_str().unwrap().to_string();
    let code = l["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    assert_eq!(l["short_url"], format!("http://127.0.0.1:8080/s/{code}"));

    // A person clicks: 302 to the destination with the UTM parameters, never cached.
    let r = click(&app, &code, PHONE_UA).await;
    assert_eq!(r.status, 302, "{:?}", r.body);
    assert_eq!(
        r.headers["location"],
        "https://shop.example/sale?ref=wa&utm_source=whatsapp&utm_medium=chat&utm_campaign=diwali#top"
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    // The same person again, another person, and two link-preview fetchers.
    assert_eq!(click(&app, &code, PHONE_UA).await.status, 302);
    assert_eq!(click(&app, &code, MAC_UA).await.status, 302);
    assert_eq!(click(&app, &code, WHATSAPP_PREVIEW).await.status, 302);
    assert_eq!(click(&app, &code, FACEBOOK_PREVIEW).await.status, 302);
    // A HEAD request is answered but is nobody's click.
    let head = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .head(app.url(&format!("/s/{code}")))
        .header("user-agent", MAC_UA)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);
    app.ctx.flush_clicks().await;

    let got = app.get(&format!("/api/v1/links/{id}"), &owner.token).await;
    assert_eq!(got.body["clicks"], 3, "{:?}", got.body);
    assert_eq!(got.body["unique_clicks"], 2, "{:?}", got.body);
    assert_eq!(got.body["bot_clicks"], 2, "{:?}", got.body);
    let s = app
        .get(&format!("/api/v1/links/{id}/stats"), &owner.token)
        .await;
    assert_eq!(s.status, 200, "{:?}", s.body);
    assert_eq!(s.body["period"]["clicks"], 3);
    assert_eq!(s.body["period"]["unique_clicks"], 2);
    let today = app.clock.now().date_naive().to_string();
    let days = s.body["by_day"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let last = days.last().unwrap();
    assert_eq!(last["at"], today.as_str());
    assert_eq!(
        (last["clicks"].as_i64(), last["bot_clicks"].as_i64()),
        (Some(3), Some(2))
    );
    let breakdown = |dim: &str| -> Vec<(String, i64, i64)> {
        s.body[dim]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["value"].as_str().unwrap().to_string(),
                    b["clicks"].as_i64().unwrap(),
                    b["unique_clicks"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        breakdown("by_device"),
        vec![("mobile".into(), 2, 1), ("desktop".into(), 1, 1)]
    );
    assert_eq!(
        breakdown("by_browser"),
        vec![("Chrome".into(), 2, 1), ("Safari".into(), 1, 1)]
    );
    assert_eq!(breakdown("by_country"), vec![("unknown".into(), 3, 2)]);
    let os: Vec<String> = breakdown("by_os").into_iter().map(|b| b.0).collect();
    assert!(os.contains(&"Android".to_string()), "{os:?}");

    // Exports of the daily clicks.
    let csv = app
        .raw(
            app.client
                .get(app.url(&format!("/api/v1/links/{id}/stats/export")))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = csv.body.as_str().unwrap().to_string();
    assert!(
        text.starts_with("day,clicks,unique_clicks,bot_clicks\n"),
        "{text}"
    );
    assert!(text.contains(&format!("{today},3,2,2")), "{text}");
    assert_eq!(text.lines().count(), 31);
    let xlsx = app
        .raw(
            app.client
                .get(app.url(&format!("/api/v1/links/{id}/stats/export?format=xlsx")))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(xlsx.status, 200);
    assert_eq!(
        xlsx.headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );

    // Disabled: 410, and not counted; enabled again: 302.
    let r = app
        .patch(
            &format!("/api/v1/links/{id}"),
            &owner.token,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let gone = click(&app, &code, MAC_UA).await;
    assert_eq!((gone.status, gone.code()), (410, "link_gone"));
    app.patch(
        &format!("/api/v1/links/{id}"),
        &owner.token,
        json!({"disabled": false}),
    )
    .await;
    assert_eq!(click(&app, &code, MAC_UA).await.status, 302);
    // UTM removed, new destination.
    let r = app
        .patch(
            &format!("/api/v1/links/{id}"),
            &owner.token,
            json!({"utm": null, "url": "https://shop.example/new"}),
        )
        .await;
    assert_eq!(r.body["utm"], Value::Null, "{:?}", r.body);
    assert_eq!(
        click(&app, &code, MAC_UA).await.headers["location"],
        "https://shop.example/new"
    );
    app.ctx.flush_clicks().await;
    let got = app.get(&format!("/api/v1/links/{id}"), &owner.token).await;
    assert_eq!(
        (
            got.body["clicks"].as_i64(),
            got.body["unique_clicks"].as_i64()
        ),
        (Some(5), Some(2))
    );

    // Expiry: fine until the clock passes it, then 410.
    let soon = app.clock.now() + chrono::Duration::hours(1);
    let e = link(
        &app,
        &owner,
        json!({"url": "https://shop.example/flash", "expires_at": soon}),
    )
    .await;
    let ecode = e["code"].as_str().unwrap().to_string();
    assert_eq!(click(&app, &ecode, PHONE_UA).await.status, 302);
    app.clock.advance(chrono::Duration::hours(2));
    assert_eq!(click(&app, &ecode, PHONE_UA).await.status, 410);
    let past = app
        .post(
            "/api/v1/links",
            Some(&owner.token),
            json!({"url": "https://shop.example", "expires_at": app.clock.now() - chrono::Duration::minutes(1)}),
        )
        .await;
    assert_eq!(past.status, 422);
    app.ctx.flush_clicks().await;
    let eid = e["id"].as_str().unwrap();
    let got = app.get(&format!("/api/v1/links/{eid}"), &owner.token).await;
    assert_eq!(got.body["clicks"], 1, "expired clicks are not counted");

    // Unknown and malformed codes: 404.
    assert_eq!(click(&app, "ZZZZZZZZ", PHONE_UA).await.status, 404);
    assert_eq!(click(&app, "nope", PHONE_UA).await.status, 404);

    // Another tenant sees none of it.
    let other = app.register("Other", "x@other.test").await;
    for path in [
        format!("/api/v1/links/{id}"),
        format!("/api/v1/links/{id}/stats"),
    ] {
        assert_eq!(app.get(&path, &other.token).await.status, 404, "{path}");
    }
    assert_eq!(
        app.patch(
            &format!("/api/v1/links/{id}"),
            &other.token,
            json!({"disabled": true})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/links/{id}"), &other.token)
            .await
            .status,
        404
    );
    let theirs = app.get("/api/v1/links", &other.token).await;
    assert_eq!(theirs.body["data"].as_array().unwrap().len(), 0);
    let mine = app.get("/api/v1/links", &owner.token).await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 2);

    // Deleted: 410 for its code, 404 for its id.
    assert_eq!(
        app.delete(&format!("/api/v1/links/{id}"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(click(&app, &code, PHONE_UA).await.status, 410);
    assert_eq!(
        app.get(&format!("/api/v1/links/{id}"), &owner.token)
            .await
            .status,
        404
    );
}
both!(redirects_count_and_expire);

/// Clicks queued in memory are written when the server shuts down gracefully.
async fn clicks_survive_a_graceful_shutdown(mut app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    let l = link(&app, &owner, json!({"url": "https://shop.example/sale"})).await;
    let code = l["code"].as_str().unwrap().to_string();
    for ua in [PHONE_UA, MAC_UA, PHONE_UA, WHATSAPP_PREVIEW] {
        assert_eq!(click(&app, &code, ua).await.status, 302);
    }
    app.stop().await;
    let db = pinglayer_store::Db::connect(&app.db_url, 1).await.unwrap();
    let tenant: pinglayer_domain::TenantId = owner.tenant_id.parse().unwrap();
    let id: pinglayer_domain::LinkId = l["id"].as_str().unwrap().parse().unwrap();
    let got = db.link(tenant, id).await.unwrap();
    assert_eq!((got.clicks, got.unique_clicks, got.bot_clicks), (3, 2, 1));
    db.close().await;
}
both!(clicks_survive_a_graceful_shutdown);

async fn contact(app: &TestApp, owner: &Registered, body: Value) -> String {
    let r = app.post("/api/v1/contacts", Some(&owner.token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn stats(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/campaigns/{id}/stats"), token)
        .await
        .body
}

/// Launches a campaign and waits until it completed with everything delivered.
async fn run_campaign(app: &TestApp, owner: &Registered, id: &str, delivered: i64) -> Value {
    let r = app
        .post(
            &format!("/api/v1/campaigns/{id}/launch"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    eventually("the campaign to complete with statuses back", || async {
        let s = stats(app, &owner.token, id).await;
        (s["status"] == "completed" && s["delivered"] == delivered).then_some(s)
    })
    .await
}

/// The personal short URL each phone got in the body's second parameter.
fn urls_sent(app: &TestApp) -> Vec<(String, String)> {
    app.sandbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let v = serde_json::to_value(&m.message).unwrap();
            (
                m.to.clone(),
                v["template"]["components"][0]["parameters"][1]["text"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

async fn personal_links_in_a_campaign(app: TestApp) {
    let owner = app.register("Jeweller", "o@jeweller.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let asha = contact(
        &app,
        &owner,
        json!({"phone": "+919800000001", "name": "Asha", "tags": ["vip"]}),
    )
    .await;
    let _bala = contact(
        &app,
        &owner,
        json!({"phone": "+919800000002", "name": "Bala", "tags": ["vip"]}),
    )
    .await;
    let l = link(
        &app,
        &owner,
        json!({"url": "https://shop.example/diwali", "utm": {"source": "whatsapp"}}),
    )
    .await;
    let link_id = l["id"].as_str().unwrap().to_string();
    // A link that does not exist is refused up front.
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            json!({"name": "x", "template": {"name": "order_update", "language": "en"},
                   "parameters": {"body": [{"source": "contact.name"}, {"source": "link"}]},
                   "audience": {"tags": ["vip"]}}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let body = json!({
        "name": "Diwali",
        "template": {"name": "order_update", "language": "en"},
        "parameters": {"body": [{"source": "contact.name"}, {"source": "link", "link_id": link_id}]},
        "audience": {"tags": ["vip"]}
    });
    let r = app
        .post("/api/v1/campaigns", Some(&owner.token), body.clone())
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let s = run_campaign(&app, &owner, &id, 2).await;
    assert_eq!(s["clicks"], 0, "{s}");
    assert_eq!(s["click_through_rate"], 0.0, "{s}");

    // Each recipient got their own short URL.
    let sent = urls_sent(&app);
    assert_eq!(sent.len(), 2);
    let url_of = |phone: &str| sent.iter().find(|(p, _)| p == phone).unwrap().1.clone();
    let (a, b) = (url_of("919800000001"), url_of("919800000002"));
    assert_ne!(a, b);
    for u in [&a, &b] {
        assert!(u.starts_with("http://127.0.0.1:8080/s/"), "{u}");
        assert_eq!(u.rsplit('/').next().unwrap().len(), 12, "{u}");
    }

    // WhatsApp's preview of Bala's link is no click; Asha clicks hers twice.
    assert_eq!(click(&app, &b, WHATSAPP_PREVIEW).await.status, 302);
    let r = click(&app, &a, PHONE_UA).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers["location"],
        "https://shop.example/diwali?utm_source=whatsapp"
    );
    assert_eq!(click(&app, &a, PHONE_UA).await.status, 302);
    app.ctx.flush_clicks().await;

    let s = stats(&app, &owner.token, &id).await;
    assert_eq!(s["clicks"], 2, "{s}");
    assert_eq!(s["unique_clickers"], 1, "{s}");
    assert_eq!(s["click_through_rate"], 0.5, "{s}");
    let funnel: Vec<(String, i64)> = s["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["stage"].as_str().unwrap().to_string(),
                f["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        funnel,
        vec![
            ("targeted".into(), 2),
            ("sent".into(), 2),
            ("delivered".into(), 2),
            ("read".into(), 2),
            ("clicked".into(), 1),
            ("replied".into(), 0)
        ]
    );
    let ls = app
        .get(&format!("/api/v1/links/{link_id}"), &owner.token)
        .await;
    assert_eq!(ls.body["clicks"], 2, "{:?}", ls.body);
    assert_eq!(ls.body["unique_clicks"], 1, "{:?}", ls.body);
    assert_eq!(ls.body["bot_clicks"], 1, "{:?}", ls.body);

    // The dashboard's top campaigns carry the clicks too.
    let d = app.get("/api/v1/analytics/dashboard", &owner.token).await;
    let top = &d.body["top_campaigns"][0];
    assert_eq!(top["id"], id.as_str(), "{:?}", d.body);
    assert_eq!(
        (top["sent"].as_i64(), top["clicks"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(top["unique_clickers"], 1);
    assert_eq!(top["click_through_rate"], 0.5);

    // Retarget who clicked (Asha) and who did not (Bala).
    for (who, phone, expected) in [
        ("clicked", "919800000001", &asha),
        ("not_clicked", "919800000002", &_bala),
    ] {
        let r = app
            .post(
                &format!("/api/v1/campaigns/{id}/retarget"),
                Some(&owner.token),
                json!({"who": who}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let re = r.body["id"].as_str().unwrap().to_string();
        let before = app.sandbox.sent.lock().unwrap().len();
        let s = run_campaign(&app, &owner, &re, 1).await;
        assert_eq!(s["targeted"], 1, "{who}: {s}");
        let last = {
            let sent = app.sandbox.sent.lock().unwrap();
            assert_eq!(sent.len(), before + 1);
            sent.back().unwrap().to.clone()
        };
        assert_eq!(last, phone, "{who}");
        let list = app
            .get(&format!("/api/v1/campaigns/{re}/recipients"), &owner.token)
            .await;
        assert_eq!(
            list.body["data"][0]["contact_id"],
            expected.as_str(),
            "{who}"
        );
    }

    // The link is the tenant's: another tenant's campaign cannot use it.
    let other = app.register("Other", "x@other.test").await;
    connect_other(&app, &other).await;
    let r = app
        .post("/api/v1/campaigns", Some(&other.token), body)
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("smart link"),
        "{:?}",
        r.body
    );
}
both!(personal_links_in_a_campaign);

/// Another tenant's number (no template needed: the link is checked first).
async fn connect_other(app: &TestApp, owner: &Registered) {
    let r = app
        .post(
            "/api/v1/whatsapp/numbers",
            Some(&owner.token),
            json!({"waba_id": "200000000000001", "phone_number_id": "100000000000002", "display_phone_number": "+1 555-000-0002", "access_token": "sandbox-access-token"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}
