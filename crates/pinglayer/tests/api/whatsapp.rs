//! The WhatsApp layer end to end: the real client against `pinglayer sandbox` over loopback
//! HTTP, signed webhooks back into the app, on both databases.

use pinglayer_domain::Clock;
use serde_json::{Value, json};
use std::time::Duration;

use crate::{
    both,
    helpers::{APP_SECRET, Registered, Resp, TestApp, TestOptions},
};

pub(crate) const PNID: &str = "100000000000001";
pub(crate) const WABA: &str = "200000000000001";
pub(crate) const TOKEN: &str = "sandbox-access-token";
const CUSTOMER: &str = "+919812345678";

/// Polls `f` until it returns `Some`, for up to 10 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..500 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

pub(crate) async fn connect(app: &TestApp, owner: &Registered) -> String {
    let r = app
        .post(
            "/api/v1/whatsapp/numbers",
            Some(&owner.token),
            json!({"waba_id": WABA, "phone_number_id": PNID, "display_phone_number": "+1 555-000-0001", "access_token": TOKEN}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

pub(crate) async fn approved_template(app: &TestApp, owner: &Registered, name: &str) -> String {
    let r = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": name, "category": "UTILITY", "languages": [{"language": "en", "components": [
                {"type": "BODY", "text": "Hi {{1}}, your order {{2}} has shipped.", "example": {"body_text": [["Asha", "#1"]]}}
            ]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/templates/{id}");
    eventually("template approval", || async {
        let _ = app.engine.apply_webhooks_once().await;
        let t = app.get(&path, &owner.token).await;
        (t.body["languages"][0]["status"] == "APPROVED").then_some(())
    })
    .await;
    id
}

async fn wait_status(app: &TestApp, token: &str, id: &str, status: &str) -> Resp {
    let path = format!("/api/v1/messages/{id}");
    eventually(&format!("message {id} to be {status}"), || async {
        let m = app.get(&path, token).await;
        (m.body["status"] == status).then_some(m)
    })
    .await
}

pub(crate) async fn signed(app: &TestApp, body: &Value, secret: &str) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = pinglayer_whatsapp::webhook::sign(secret.as_bytes(), &bytes);
    app.raw(
        app.client
            .post(app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(bytes),
    )
    .await
}

pub(crate) fn status_payload(pnid: &str, statuses: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": pnid},
        "statuses": statuses
    }}]}]})
}

async fn numbers_are_connected_and_their_secrets_kept(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let id = connect(&app, &owner).await;
    let r = app
        .get(&format!("/api/v1/whatsapp/numbers/{id}"), &owner.token)
        .await;
    assert_eq!(r.body["phone_number_id"], PNID);
    assert_eq!(r.body["throughput_per_second"], 80);
    let text = r.body.to_string();
    assert!(!text.contains(TOKEN) && !text.contains("access_token"));
    // At rest the token is ciphertext.
    let stored: Vec<u8> = match &app.db {
        pinglayer_store::Db::Postgres(p) => {
            sqlx::query_scalar("select access_token_enc from whatsapp_numbers")
                .fetch_one(p)
                .await
                .unwrap()
        }
        pinglayer_store::Db::Sqlite(p) => {
            sqlx::query_scalar("select access_token_enc from whatsapp_numbers")
                .fetch_one(p)
                .await
                .unwrap()
        }
    };
    assert!(!String::from_utf8_lossy(&stored).contains(TOKEN));

    let r = app
        .patch(
            &format!("/api/v1/whatsapp/numbers/{id}"),
            &owner.token,
            json!({"throughput_per_second": 1000}),
        )
        .await;
    assert_eq!(r.body["throughput_per_second"], 1000);
    let r = app
        .patch(
            &format!("/api/v1/whatsapp/numbers/{id}"),
            &owner.token,
            json!({"throughput_per_second": 1001}),
        )
        .await;
    assert_eq!(r.status, 422);

    let other = app.register("Other", "x@other.test").await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&other.token), json!({"waba_id": WABA, "phone_number_id": PNID, "display_phone_number": "+1", "access_token": "t"}))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "number_taken");
    assert_eq!(
        app.get(&format!("/api/v1/whatsapp/numbers/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/whatsapp/numbers/{id}"), &other.token)
            .await
            .status,
        404
    );
    let r = app.post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": "x", "phone_number_id": "", "display_phone_number": "", "access_token": ""})).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["error"]["details"]["fields"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    assert_eq!(
        app.delete(&format!("/api/v1/whatsapp/numbers/{id}"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/v1/whatsapp/numbers", &owner.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
both!(numbers_are_connected_and_their_secrets_kept);

async fn embedded_signup_exchanges_the_code(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post(
            "/api/v1/whatsapp/embedded-signup",
            Some(&owner.token),
            json!({"code": "bad-code", "waba_id": WABA, "phone_number_id": PNID}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "code_exchange_failed");
    let r = app
        .post(
            "/api/v1/whatsapp/embedded-signup",
            Some(&owner.token),
            json!({"code": "abc123", "waba_id": WABA, "phone_number_id": PNID}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["display_phone_number"], "+1 555-000-0001");
    // The exchanged token works for sending.
    approved_template(&app, &owner, "welcome").await;
}
both!(embedded_signup_exchanges_the_code);

async fn templates_follow_review_and_sync(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app.post("/api/v1/templates", Some(&owner.token), json!({"name": "x", "category": "MARKETING", "languages": [{"language": "en", "components": [{"type": "BODY", "text": "x"}]}]})).await;
    assert_eq!(r.code(), "no_sending_number");
    connect(&app, &owner).await;
    let id = approved_template(&app, &owner, "order_update").await;
    let t = app
        .get(&format!("/api/v1/templates/{id}"), &owner.token)
        .await;
    assert_eq!(
        t.body["languages"][0]["variables"]["body"],
        json!(["1", "2"])
    );
    assert_eq!(t.body["category"], "UTILITY");

    let r = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "Bad Name", "category": "NOPE", "languages": []}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app.post("/api/v1/templates", Some(&owner.token), json!({"name": "order_update", "category": "UTILITY", "languages": [{"language": "en", "components": [{"type": "BODY", "text": "x"}]}]})).await;
    assert_eq!(r.status, 409);

    let r = app.post("/api/v1/templates", Some(&owner.token), json!({"name": "please_reject_me", "category": "MARKETING", "languages": [{"language": "hi", "components": [{"type": "BODY", "text": "नमस्ते"}]}]})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["languages"][0]["status"], "PENDING");
    let path = format!("/api/v1/templates/{}", r.body["id"].as_str().unwrap());
    let rejected = eventually("rejection", || async {
        let t = app.get(&path, &owner.token).await;
        (t.body["languages"][0]["status"] == "REJECTED").then_some(t)
    })
    .await;
    assert_eq!(rejected.body["languages"][0]["reason"], "INVALID_FORMAT");

    // A language added later is submitted too.
    let r = app.patch(&format!("/api/v1/templates/{id}"), &owner.token, json!({"languages": [{"language": "ta", "components": [{"type": "BODY", "text": "வணக்கம் {{1}} {{2}}"}]}]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["languages"].as_array().unwrap().len(), 2);

    // Created at Meta directly (outside PingLayer): sync brings it in with its status.
    let client = pinglayer_whatsapp::Client::new(pinglayer_whatsapp::ClientConfig {
        base_url: app.graph.clone(),
        ..Default::default()
    })
    .unwrap();
    client
        .create_template(
            WABA,
            TOKEN,
            &pinglayer_whatsapp::types::TemplateCreate {
                name: "made_elsewhere".into(),
                language: "en".into(),
                category: "MARKETING".into(),
                parameter_format: None,
                components: vec![json!({"type": "BODY", "text": "Sale!"})],
            },
        )
        .await
        .unwrap();
    let synced = app
        .post("/api/v1/templates/sync", Some(&owner.token), json!({}))
        .await;
    assert_eq!(synced.status, 200, "{:?}", synced.body);
    assert_eq!(synced.body["templates"], 3);
    let list = app.get("/api/v1/templates", &owner.token).await;
    let names: Vec<_> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"made_elsewhere".to_string()), "{names:?}");

    let other = app.register("Other", "x@other.test").await;
    assert_eq!(
        app.get(&format!("/api/v1/templates/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/templates/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/templates/{id}"), &owner.token)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/templates/{id}"), &owner.token)
            .await
            .status,
        404
    );
}
both!(templates_follow_review_and_sync);

async fn a_template_goes_out_and_its_statuses_come_back(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let r = app
        .post("/api/v1/messages", Some(&owner.token), json!({"to": CUSTOMER, "template": {"name": "order_update", "language": "en", "parameters": ["Asha", "#1234"]}}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["id"].as_str().unwrap().to_string();
    let m = wait_status(&app, &owner.token, &id, "read").await;
    assert!(m.body["wamid"].as_str().unwrap().starts_with("wamid."));
    let history: Vec<_> = m.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect();
    for s in ["sent", "delivered", "read"] {
        assert_eq!(
            history.iter().filter(|h| *h == s).count(),
            1,
            "{s} once in {history:?}"
        );
    }
    assert!(m.body["delivered_at"].is_string() && m.body["read_at"].is_string());

    // What reached "Meta": our id rides in biz_opaque_callback_data.
    let sent = app
        .sandbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "919812345678");
    assert_eq!(
        sent[0].message.biz_opaque_callback_data.as_deref(),
        Some(id.as_str())
    );

    // Wrong parameters and unknown templates are refused before anything is sent.
    let r = app.post("/api/v1/messages", Some(&owner.token), json!({"to": CUSTOMER, "template": {"name": "order_update", "language": "en", "parameters": ["Asha"]}})).await;
    assert_eq!(r.code(), "template_parameter_mismatch");
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": CUSTOMER, "template": {"name": "nope", "language": "en"}}),
        )
        .await;
    assert_eq!(r.code(), "template_not_found");
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": "12345", "text": {"body": "hi"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    // Free-form to someone who never wrote: outside the 24-hour window.
    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": "+919800000001", "text": {"body": "hi"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.code(), "outside_service_window");

    let list = app
        .get("/api/v1/messages?direction=outbound", &owner.token)
        .await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let other = app.register("Other", "x@other.test").await;
    assert_eq!(
        app.get(&format!("/api/v1/messages/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/messages", &other.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
both!(a_template_goes_out_and_its_statuses_come_back);

async fn customers_write_and_agents_answer(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    let (agent, agent_id) = app.member(&owner, "agent@shop.test", "agent").await;
    let r = app
        .raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(&json!({"phone_number_id": PNID, "from": "919812345678", "name": "Asha", "text": "Is my ring ready?"})))
        .await;
    assert_eq!(r.status, 200);
    let conv = eventually("the conversation", || async {
        let l = app.get("/api/v1/conversations", &agent).await;
        l.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(conv["contact"]["phone"], CUSTOMER);
    assert_eq!(conv["contact"]["name"], "Asha");
    assert_eq!(conv["unread_count"], 1);
    assert_eq!(conv["window_open"], true);
    assert_eq!(conv["last_preview"], "Is my ring ready?");
    let cid = conv["id"].as_str().unwrap().to_string();

    let r = app
        .post(
            &format!("/api/v1/conversations/{cid}/messages"),
            Some(&agent),
            json!({"text": {"body": "Yes, come by at 5!"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let reply = wait_status(&app, &agent, r.body["id"].as_str().unwrap(), "read").await;
    assert_eq!(reply.body["content"]["text"]["body"], "Yes, come by at 5!");

    // A tap on a reply button is an inbound message too.
    app.raw(app.client.post(format!("{}/sandbox/inbound", app.graph)).json(&json!({"phone_number_id": PNID, "from": "919812345678", "interactive": {"id": "yes", "title": "Yes please"}}))).await;
    let msgs = eventually("two inbound messages", || async {
        let m = app
            .get(&format!("/api/v1/conversations/{cid}/messages"), &agent)
            .await;
        let inbound = m.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["direction"] == "inbound")
            .count();
        (inbound == 2).then_some(m)
    })
    .await;
    assert_eq!(msgs.body["data"][0]["preview"], "Yes please");

    let r = app
        .post(
            &format!("/api/v1/conversations/{cid}/read"),
            Some(&agent),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["unread_count"], 0);
    let r = app
        .patch(
            &format!("/api/v1/conversations/{cid}"),
            &agent,
            json!({"assignee_id": agent_id, "status": "closed"}),
        )
        .await;
    assert_eq!(r.body["assignee_id"], agent_id.as_str());
    assert_eq!(r.body["status"], "closed");
    let r = app
        .patch(
            &format!("/api/v1/conversations/{cid}"),
            &agent,
            json!({"assignee_id": null}),
        )
        .await;
    assert!(r.body["assignee_id"].is_null());
    let r = app
        .patch(
            &format!("/api/v1/conversations/{cid}"),
            &agent,
            json!({"assignee_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(r.status, 422);

    // The same inbound webhook twice records one message.
    let other = app.register("Other", "x@other.test").await;
    assert_eq!(
        app.get(
            &format!("/api/v1/conversations/{cid}/messages"),
            &other.token
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/conversations/{cid}/messages"),
            Some(&other.token),
            json!({"text": {"body": "x"}})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/conversations", &other.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Viewers read but do not write.
    let (viewer, _) = app.member(&owner, "viewer@shop.test", "viewer").await;
    assert_eq!(app.get("/api/v1/conversations", &viewer).await.status, 200);
    assert_eq!(
        app.post(
            &format!("/api/v1/conversations/{cid}/messages"),
            Some(&viewer),
            json!({"text": {"body": "x"}})
        )
        .await
        .status,
        403
    );
}
both!(customers_write_and_agents_answer);

async fn idempotency_keys_prevent_double_sends(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let body = json!({"to": CUSTOMER, "template": {"name": "order_update", "language": "en", "parameters": ["A", "B"]}});
    let send = |b: Value, key: &'static str| {
        app.raw(
            app.client
                .post(app.url("/api/v1/messages"))
                .bearer_auth(&owner.token)
                .header("idempotency-key", key)
                .json(&b),
        )
    };
    let first = send(body.clone(), "order-42").await;
    let again = send(body.clone(), "order-42").await;
    assert_eq!(first.status, 202);
    assert_eq!(again.status, 202);
    assert_eq!(first.body["id"], again.body["id"]);
    let mut other = body.clone();
    other["template"]["parameters"] = json!(["A", "C"]);
    let clash = send(other, "order-42").await;
    assert_eq!(clash.status, 409);
    assert_eq!(clash.code(), "idempotency_key_reused");
    wait_status(
        &app,
        &owner.token,
        first.body["id"].as_str().unwrap(),
        "read",
    )
    .await;
    assert_eq!(app.sandbox.sent.lock().unwrap().len(), 1, "sent once");
}
both!(idempotency_keys_prevent_double_sends);

async fn webhooks_are_verified(app: TestApp) {
    let r = app.raw(app.client.get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=platform-verify-token&hub.challenge=1158201444"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!(1158201444));
    let r = app
        .raw(app.client.get(
            app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"),
        ))
        .await;
    assert_eq!(r.status, 403);

    let body = status_payload(PNID, json!([]));
    let r = app
        .raw(app.client.post(app.url("/webhooks/whatsapp")).json(&body))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "missing_signature");
    let r = signed(&app, &body, "not-the-secret").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "invalid_signature");
    // Tampering after signing.
    let bytes = serde_json::to_vec(&body).unwrap();
    let sig = pinglayer_whatsapp::webhook::sign(APP_SECRET.as_bytes(), &bytes);
    let mut tampered = bytes.clone();
    tampered.push(b' ');
    let r = app
        .raw(
            app.client
                .post(app.url("/webhooks/whatsapp"))
                .header("x-hub-signature-256", sig)
                .body(tampered),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(signed(&app, &body, APP_SECRET).await.status, 200);

    // A number with its own Meta app: its secret is accepted for its own changes only.
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post("/api/v1/whatsapp/numbers", Some(&owner.token), json!({"waba_id": "300", "phone_number_id": "555000", "display_phone_number": "+1 555", "access_token": "t", "app_secret": "own-secret", "verify_token": "own-verify"}))
        .await;
    assert_eq!(r.body["has_app_secret"], true);
    assert_eq!(
        signed(&app, &status_payload("555000", json!([])), "own-secret")
            .await
            .status,
        200
    );
    assert_eq!(
        signed(&app, &status_payload(PNID, json!([])), "own-secret")
            .await
            .status,
        403
    );
    let r = app
        .raw(app.client.get(app.url(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=own-verify&hub.challenge=7",
        )))
        .await;
    assert_eq!(r.status, 200);
}
both!(webhooks_are_verified);

/// Statuses out of order, duplicated, and before the send returned: applied forward-only.
async fn statuses_only_move_forward(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    // Templates need the engine to see their approval.
    app.engine.apply_webhooks_once().await.unwrap();
    let r = app.post("/api/v1/templates", Some(&owner.token), json!({"name": "t1", "category": "UTILITY", "languages": [{"language": "en", "components": [{"type": "BODY", "text": "Hello"}]}]})).await;
    let tid = r.body["meta_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            r.body["languages"][0]["meta_id"]
                .as_str()
                .unwrap()
                .to_string()
        });
    let update = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "message_template_status_update", "value": {
        "event": "APPROVED", "message_template_id": tid.parse::<u64>().unwrap(), "message_template_name": "t1", "message_template_language": "en", "reason": "NONE"}}]}]});
    assert_eq!(signed(&app, &update, APP_SECRET).await.status, 200);
    app.engine.apply_webhooks_once().await.unwrap();

    let r = app
        .post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": CUSTOMER, "template": {"name": "t1", "language": "en"}}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let ts = chrono::Utc::now().timestamp();
    // A worker claims the message and calls Meta; Meta's `delivered` arrives before the call
    // returns (with our id in the callback data), and an unknown wamid rides along.
    let number: pinglayer_domain::NumberId = r.body["number_id"].as_str().unwrap().parse().unwrap();
    let claimed = app
        .db
        .claim_lane(number, 10, chrono::Duration::seconds(60), app.clock.now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJBQkNERUYxMjM0NTY3ODkwAA==".to_string();
    let early = status_payload(
        PNID,
        json!([
            {"id": wamid, "status": "delivered", "timestamp": ts.to_string(), "recipient_id": "919812345678", "biz_opaque_callback_data": id},
            {"id": "wamid.UNKNOWN", "status": "read", "timestamp": ts.to_string(), "recipient_id": "1"}
        ]),
    );
    assert_eq!(signed(&app, &early, APP_SECRET).await.status, 200);
    let round = app.engine.apply_webhooks_once().await.unwrap();
    assert_eq!(round.statuses_moved, 1, "{round:?}");
    assert_eq!(
        app.get(&format!("/api/v1/messages/{id}"), &owner.token)
            .await
            .body["status"],
        "delivered"
    );
    // Now the send call returns: recording it does not move the message back to `sent`.
    let (tenant, mid) = (claimed[0].tenant_id, claimed[0].id);
    app.db
        .record_accepted(
            &[pinglayer_store::messages::Accepted {
                tenant_id: tenant,
                id: mid,
                wamid: wamid.clone(),
                content: None,
                preview: None,
            }],
            app.clock.now(),
        )
        .await
        .unwrap();
    let m = app
        .get(&format!("/api/v1/messages/{id}"), &owner.token)
        .await;
    assert_eq!(m.body["status"], "delivered");
    assert_eq!(m.body["wamid"], wamid.as_str());
    assert!(m.body["sent_at"].is_string());
    // read, a late delivered, a replayed read, a late sent: ends `read`, each status once.
    for (status, n) in [("read", 1), ("delivered", 0), ("read", 0), ("sent", 0)] {
        let p = status_payload(
            PNID,
            json!([{"id": wamid, "status": status, "timestamp": ts.to_string(), "recipient_id": "919812345678"}]),
        );
        assert_eq!(signed(&app, &p, APP_SECRET).await.status, 200);
        let round = app.engine.apply_webhooks_once().await.unwrap();
        assert_eq!(round.statuses_moved, n, "{status}");
    }
    let m = app
        .get(&format!("/api/v1/messages/{id}"), &owner.token)
        .await;
    assert_eq!(m.body["status"], "read");
    let history: Vec<_> = m.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect();
    let mut unique = history.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        history.len(),
        unique.len(),
        "no duplicate history: {history:?}"
    );
    // Failed is final and keeps Meta's error.
    let p = status_payload(
        PNID,
        json!([{"id": wamid, "status": "failed", "timestamp": ts.to_string(), "recipient_id": "919812345678",
        "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "Receiver is incapable"}}]}]),
    );
    signed(&app, &p, APP_SECRET).await;
    app.engine.apply_webhooks_once().await.unwrap();
    let m = app
        .get(&format!("/api/v1/messages/{id}"), &owner.token)
        .await;
    assert_eq!(m.body["status"], "failed");
    assert_eq!(m.body["error"]["code"], 131026);
    assert_eq!(m.body["error"]["detail"], "Receiver is incapable");
}
both!(statuses_only_move_forward, |o: &mut TestOptions| {
    o.auto_engine = false;
    o.sandbox_webhooks = false;
});

/// Meta's own example shapes (reference §4.4–4.6): a batched POST with inbound text, button,
/// interactive, media and reaction messages and statuses for unknown wamids.
async fn metas_example_payload_applies(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    let payload = json!({"object":"whatsapp_business_account","entry":[{"id":WABA,"changes":[{"field":"messages","value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":PNID},
        "contacts":[{"profile":{"name":"Ann"},"wa_id":"16505551234","user_id":"US.1349"}],
        "messages":[
          {"from":"16505551234","id":"wamid.A","timestamp":"1750857384","type":"text","text":{"body":"Hello"}},
          {"from":"16505551234","id":"wamid.B","timestamp":"1750857385","type":"button","button":{"payload":"TRACK-1","text":"Track"},"context":{"from":"15550783881","id":"wamid.OUT"}},
          {"from":"16505551234","id":"wamid.C","timestamp":1750857386,"type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"yes-42","title":"Yes"}}},
          {"from":"16505551234","id":"wamid.D","timestamp":"1750857387","type":"image","image":{"id":"MEDIA1","mime_type":"image/jpeg","sha256":"abc","caption":"look"}},
          {"from":"16505551234","id":"wamid.E","timestamp":"1750857388","type":"reaction","reaction":{"message_id":"wamid.OUT","emoji":"👍"}}
        ],
        "statuses":[{"id":"wamid.NOT-OURS","status":"delivered","timestamp":"1750857384","recipient_id":"16505551234"}]}}]}]});
    assert_eq!(signed(&app, &payload, APP_SECRET).await.status, 200);
    assert_eq!(
        signed(&app, &payload, APP_SECRET).await.status,
        200,
        "replayed"
    );
    let round = app.engine.apply_webhooks_once().await.unwrap();
    assert_eq!(round.events, 2);
    assert_eq!(round.inbound, 5, "five new messages, the replay adds none");
    let convs = app.get("/api/v1/conversations", &owner.token).await;
    let conv = &convs.body["data"][0];
    assert_eq!(conv["contact"]["phone"], "+16505551234");
    assert_eq!(conv["contact"]["name"], "Ann");
    assert_eq!(conv["unread_count"], 5);
    // Window measured from the message's own time (2025): long closed.
    assert_eq!(conv["window_open"], false);
    let msgs = app
        .get(
            &format!(
                "/api/v1/conversations/{}/messages",
                conv["id"].as_str().unwrap()
            ),
            &owner.token,
        )
        .await;
    let previews: Vec<_> = msgs.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["preview"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(previews, vec!["👍", "look", "Yes", "Track", "Hello"]);
}
both!(metas_example_payload_applies, |o: &mut TestOptions| {
    o.auto_engine = false;
    o.sandbox_webhooks = false;
});

/// Meta's throughput limit (130429) is retried with back-off until the message goes out;
/// undeliverable messages (131026 in a failed webhook) end `failed` with the error.
async fn transient_errors_are_retried_and_failures_kept(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let mut ids = vec![];
    for i in 0..3 {
        let r = app
            .post("/api/v1/messages", Some(&owner.token), json!({"to": format!("+91981234567{i}"), "template": {"name": "order_update", "language": "en", "parameters": ["A", "B"]}}))
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    // Retries are due on the engine's clock: move it along while waiting.
    for id in &ids {
        let path = format!("/api/v1/messages/{id}");
        let m = eventually("the message to fail", || async {
            app.clock.advance(chrono::Duration::milliseconds(500));
            let m = app.get(&path, &owner.token).await;
            (m.body["status"] == "failed").then_some(m)
        })
        .await;
        assert_eq!(m.body["error"]["code"], 131026);
        assert!(m.body["attempts"].as_i64().unwrap() >= 1);
    }
    let throttled = app
        .sandbox
        .stats()
        .throttled
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        throttled >= 1,
        "the sandbox refused some sends with 130429 first ({throttled})"
    );
}
both!(
    transient_errors_are_retried_and_failures_kept,
    |o: &mut TestOptions| {
        o.sandbox.fail_rate = 1.0;
        o.sandbox.numbers[0].throughput_per_second = 1;
    }
);

/// The sandbox posts every status twice and each batch backwards (`read` before `delivered`
/// before `sent`): the message still ends `read`, with each state once in its history.
async fn duplicated_and_reordered_webhooks_change_nothing_twice(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let r = app
        .post("/api/v1/messages", Some(&owner.token), json!({"to": CUSTOMER, "template": {"name": "order_update", "language": "en", "parameters": ["A", "B"]}}))
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_status(&app, &owner.token, &id, "read").await;
    // Wait for every copy to be posted (1 template review + 3 statuses × 2) and applied.
    eventually("all duplicates posted", || async {
        (app.sandbox
            .stats()
            .webhook_events
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 7)
            .then_some(())
    })
    .await;
    eventually("all webhook events applied", || async {
        (app.db.pending_webhook_events().await.unwrap() == 0).then_some(())
    })
    .await;
    let m = app
        .get(&format!("/api/v1/messages/{id}"), &owner.token)
        .await;
    assert_eq!(m.body["status"], "read");
    let history: Vec<_> = m.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        history.iter().filter(|h| *h == "read").count(),
        1,
        "{history:?}"
    );
    assert_eq!(
        history.iter().filter(|h| *h == "delivered").count(),
        1,
        "{history:?}"
    );
}
both!(
    duplicated_and_reordered_webhooks_change_nothing_twice,
    |o: &mut TestOptions| {
        o.sandbox.duplicate_rate = 1.0;
        o.sandbox.reorder = true;
        o.sandbox.sent_after = Duration::from_millis(40);
        o.sandbox.delivered_after = Duration::from_millis(40);
        o.sandbox.read_after = Duration::from_millis(40);
    }
);

/// Webhook POSTs that arrive while one is being written wait and are written together, each
/// answered once its own row is stored: fifty at once take a few writes (the first alone, then
/// those that queued behind it, in as many rounds as the join polls them in), and all fifty
/// are there.
async fn webhooks_arriving_together_are_stored_together(app: TestApp) {
    let intake = &app.engine.intake;
    let before = intake.writes();
    let now = chrono::Utc::now();
    let posts = (0..50).map(|i| {
        intake.store(
            &app.db,
            "platform".to_string(),
            format!(r#"{{"object":"whatsapp_business_account","entry":[],"n":{i}}}"#),
            now,
        )
    });
    for r in futures::future::join_all(posts).await {
        r.expect("stored");
    }
    assert!(
        intake.writes() - before <= 5,
        "{} writes for 50 POSTs",
        intake.writes() - before
    );
    let bodies: Vec<String> =
        pinglayer_store::on_db!(&app.db, p => sqlx::query_scalar("select body from webhook_events")
        .fetch_all(p)
        .await)
        .unwrap();
    for i in 0..50 {
        let n = format!(r#""n":{i}}}"#);
        assert_eq!(
            bodies.iter().filter(|b| b.ends_with(&n)).count(),
            1,
            "POST {i}"
        );
    }
}
both!(
    webhooks_arriving_together_are_stored_together,
    |o: &mut TestOptions| {
        o.auto_engine = false;
    }
);

/// Each status in its own POST, many at once (the sandbox posts them one by one): every POST is
/// stored, handed to the running applier and applied; each message ends `read` with each state
/// once in its history.
async fn statuses_posted_one_by_one_are_all_applied(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    approved_template(&app, &owner, "order_update").await;
    let sends = (0..12).map(|i| {
        app.post(
            "/api/v1/messages",
            Some(&owner.token),
            json!({"to": format!("+9198765432{i:02}"), "template": {"name": "order_update", "language": "en", "parameters": ["A", "B"]}}),
        )
    });
    let ids: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.body["id"].as_str().expect("queued").to_string())
        .collect();
    for id in &ids {
        wait_status(&app, &owner.token, id, "read").await;
    }
    eventually("every webhook applied", || async {
        (app.db.pending_webhook_events().await.unwrap() == 0).then_some(())
    })
    .await;
    let posted = app
        .sandbox
        .stats()
        .webhooks_posted
        .load(std::sync::atomic::Ordering::Relaxed);
    let (stored, processed): (i64, i64) = pinglayer_store::on_db!(&app.db, p => sqlx::query_as(
        "select count(*), sum(case when status = 'processed' then 1 else 0 end) from webhook_events",
    )
    .fetch_one(p)
    .await)
    .unwrap();
    assert_eq!(stored as u64, posted);
    assert_eq!(processed, stored);
    for id in &ids {
        let m = app
            .get(&format!("/api/v1/messages/{id}"), &owner.token)
            .await;
        let mut history: Vec<_> = m.body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap().to_string())
            .collect();
        history.sort();
        assert_eq!(history, ["delivered", "read", "sent"], "{id}");
    }
}
both!(
    statuses_posted_one_by_one_are_all_applied,
    |o: &mut TestOptions| {
        o.sandbox.batch_size = 1;
    }
);

/// The texts the sandbox received for `to` (digits), in order.
fn texts_sent_to(app: &TestApp, to: &str) -> Vec<String> {
    app.sandbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.to == to)
        .filter_map(|s| match &s.message.content {
            pinglayer_whatsapp::types::Content::Text { text } => Some(text.body.clone()),
            _ => None,
        })
        .collect()
}

/// The Hindi built-in opt-out word `रोकें` opts the customer out, START opts them back in, and
/// each change is confirmed to the customer once; a START that changes nothing is not.
async fn hindi_stop_and_start_keep_consent_and_confirm(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    let builtin = app.get("/api/v1/consent/keywords", &owner.token).await;
    assert!(
        builtin.body["builtin"]["opt_out"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == "रोकें"),
        "{:?}",
        builtin.body
    );
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": CUSTOMER, "name": "Asha", "consent": "opted_in"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let cpath = format!("/api/v1/contacts/{}", r.body["id"].as_str().unwrap());
    let inbound = |text: &'static str| {
        app.raw(
            app.client
                .post(format!("{}/sandbox/inbound", app.graph))
                .json(&json!({"phone_number_id": PNID, "from": "919812345678", "text": text})),
        )
    };
    let consent = |want: &'static str| {
        let (app, path, token) = (&app, cpath.clone(), owner.token.clone());
        async move {
            eventually(&format!("consent {want}"), || async {
                let c = app.get(&path, &token).await;
                (c.body["consent"]["status"] == want).then_some(c.body)
            })
            .await
        }
    };

    assert_eq!(inbound("रोकें").await.status, 200);
    let c = consent("opted_out").await;
    assert_eq!(c["consent"]["source"], "inbound_keyword", "{c}");
    let texts = eventually("the opt-out confirmation", || async {
        let t = texts_sent_to(&app, "919812345678");
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    // A contact with no language of their own is answered in the keyword's.
    assert!(texts[0].contains("START भेजें"), "in Hindi: {texts:?}");

    assert_eq!(inbound("START").await.status, 200);
    let c = consent("opted_in").await;
    assert_eq!(c["consent"]["source"], "inbound_keyword", "{c}");
    let texts = eventually("the opt-in confirmation", || async {
        let t = texts_sent_to(&app, "919812345678");
        (t.len() >= 2).then_some(t)
    })
    .await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].contains("subscribed to our updates again"),
        "{texts:?}"
    );
    // The confirmation is a message of the conversation, delivered to the customer (and read).
    let out = app
        .get("/api/v1/messages?direction=outbound", &owner.token)
        .await;
    let out = out.body["data"].as_array().unwrap().clone();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|m| m["to"] == CUSTOMER), "{out:?}");
    let confirm = out
        .iter()
        .find(|m| m["preview"].as_str().unwrap().contains("subscribed"))
        .expect("the opt-in confirmation is listed");
    wait_status(&app, &owner.token, confirm["id"].as_str().unwrap(), "read").await;

    // The consent history records both keywords.
    let export = app.get(&format!("{cpath}/export"), &owner.token).await;
    let history: Vec<_> = export.body["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["consent"].as_str().unwrap().to_string(),
                e["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        history[history.len() - 2..],
        [
            ("opted_out".to_string(), "inbound_keyword".to_string()),
            ("opted_in".to_string(), "inbound_keyword".to_string())
        ],
        "{:?}",
        export.body
    );

    // START again changes nothing: recorded as a message, not confirmed again.
    assert_eq!(inbound("start").await.status, 200);
    let conv = app.get("/api/v1/conversations", &owner.token).await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the third inbound message", || async {
        let m = app
            .get(
                &format!("/api/v1/conversations/{conv}/messages"),
                &owner.token,
            )
            .await;
        let inbound = m.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["direction"] == "inbound")
            .count();
        (inbound == 3).then_some(())
    })
    .await;
    assert_eq!(
        app.get("/api/v1/messages?direction=outbound", &owner.token)
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "no second opt-in confirmation"
    );
    assert_eq!(
        app.get(&cpath, &owner.token).await.body["consent"]["status"],
        "opted_in"
    );
}
both!(hindi_stop_and_start_keep_consent_and_confirm);

/// Confirmations go out in the contact's language, else the keyword's, else English; a
/// tenant's own text for a language wins over the built-in one, and its keywords may name a
/// language.
async fn consent_confirmations_speak_the_contacts_language(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    connect(&app, &owner).await;
    let r = app
        .call(
            reqwest::Method::PUT,
            "/api/v1/consent/keywords",
            Some(&owner.token),
            Some(json!({
                "by_language": {"pa": {"opt_out": ["Band karo"]}},
                "replies": {"pa": {"opted_out": "Tusi unsubscribe ho gaye."}, "hi": {"opted_in": "Swagat hai wapas!"}}
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["custom"]["by_language"]["pa"]["opt_out"],
        json!(["band karo"])
    );
    assert_eq!(
        r.body["custom"]["replies"]["hi"]["opted_in"],
        "Swagat hai wapas!"
    );
    for bad in [
        json!({"by_language": {"not a language": {"opt_out": ["x"]}}}),
        json!({"replies": {"ta": {"opted_out": "  "}}}),
        json!({"opt_out": ["band karo"], "by_language": {"pa": {"opt_out": ["Band karo"]}}}),
    ] {
        let r = app
            .call(
                reqwest::Method::PUT,
                "/api/v1/consent/keywords",
                Some(&owner.token),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {:?}", r.body);
    }
    // Three customers: one who speaks Tamil, one Hindi, one of no known language.
    for (phone, lang) in [
        ("+919812345601", json!("ta")),
        ("+919812345602", json!("hi")),
        ("+919812345603", json!(null)),
    ] {
        let r = app
            .post(
                "/api/v1/contacts",
                Some(&owner.token),
                json!({"phone": phone, "language": lang, "consent": "opted_in"}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let send = |from: &'static str, text: &'static str| {
        app.raw(
            app.client
                .post(format!("{}/sandbox/inbound", app.graph))
                .json(&json!({"phone_number_id": PNID, "from": from, "text": text})),
        )
    };
    let reply = |to: &'static str, n: usize| {
        let app = &app;
        async move {
            eventually(&format!("confirmation {n} to {to}"), || async {
                let t = texts_sent_to(app, to);
                (t.len() >= n).then(|| t[n - 1].clone())
            })
            .await
        }
    };
    // English STOP from the Tamil speaker: answered in Tamil (built-in).
    send("919812345601", "STOP").await;
    assert!(
        reply("919812345601", 1).await.contains("START என"),
        "in Tamil"
    );
    // The tenant's Punjabi keyword from a customer of no language: its Punjabi text.
    send("919812345603", "band karo").await;
    assert_eq!(reply("919812345603", 1).await, "Tusi unsubscribe ho gaye.");
    // ... and START from them: no Punjabi opt-in text anywhere, so English.
    send("919812345603", "start").await;
    assert!(
        reply("919812345603", 2)
            .await
            .contains("subscribed to our updates again")
    );
    // The Hindi speaker: the built-in Hindi opt-out, then the tenant's own Hindi opt-in.
    send("919812345602", "unsubscribe").await;
    assert!(reply("919812345602", 1).await.contains("START भेजें"));
    send("919812345602", "start").await;
    assert_eq!(reply("919812345602", 2).await, "Swagat hai wapas!");
}
both!(consent_confirmations_speak_the_contacts_language);
