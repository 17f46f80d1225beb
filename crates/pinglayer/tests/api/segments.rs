//! Segments: filter trees translated to SQL on both backends.

use pinglayer_domain::Clock;
use serde_json::{Value, json};

use crate::{
    both,
    helpers::{Registered, TestApp},
};

async fn names(app: &TestApp, owner: &Registered, filter: Value) -> Vec<String> {
    let r = app
        .post(
            "/api/v1/segments",
            Some(&owner.token),
            json!({"name": uuid::Uuid::new_v4().to_string(), "filter": filter}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap();
    let list = app
        .get(&format!("/api/v1/segments/{id}/contacts"), &owner.token)
        .await;
    let count = app
        .get(&format!("/api/v1/segments/{id}/count"), &owner.token)
        .await;
    let mut out: Vec<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        count.body["count"],
        out.len() as i64,
        "count agrees with the list"
    );
    out.sort();
    out
}

async fn segments_select_in_sql(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let people = [
        json!({"phone": "+919800000001", "name": "Asha", "language": "hi", "birthday": "1990-05-15", "consent": "opted_in",
               "attributes": {"city": "Pune", "spend": 1200, "gold": true}, "tags": ["vip"]}),
        json!({"phone": "+919800000002", "name": "Bala", "language": "ta", "birthday": "--05-15",
               "attributes": {"city": "Chennai", "spend": 300}, "tags": ["new"]}),
        json!({"phone": "+919800000003", "name": "Chitra", "language": "en", "consent": "opted_out",
               "attributes": {"city": "pune", "spend": "lots"}}),
        json!({"phone": "+919800000004", "name": "Dev", "language": "hi", "birthday": "1985-12-01", "attributes": {}, "tags": ["vip", "new"]}),
    ];
    for p in people {
        assert_eq!(
            app.post("/api/v1/contacts", Some(&owner.token), p)
                .await
                .status,
            201
        );
    }
    let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.city", "op": "eq", "value": "Pune"})
        )
        .await,
        n(&["Asha"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.city", "op": "contains", "value": "pun"})
        )
        .await,
        n(&["Asha", "Chitra"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.city", "op": "in", "value": ["Pune", "Chennai"]})
        )
        .await,
        n(&["Asha", "Bala"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.city", "op": "not_exists"})
        )
        .await,
        n(&["Dev"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.spend", "op": "gte", "value": 1000})
        )
        .await,
        n(&["Asha"]),
        "a text value is not a number"
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.spend", "op": "lt", "value": 1000})
        )
        .await,
        n(&["Bala"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.gold", "op": "eq", "value": true})
        )
        .await,
        n(&["Asha"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "tag", "op": "has", "value": "VIP"})
        )
        .await,
        n(&["Asha", "Dev"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "tag", "op": "has_not", "value": "new"})
        )
        .await,
        n(&["Asha", "Chitra"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "consent", "op": "eq", "value": "unknown"})
        )
        .await,
        n(&["Bala", "Dev"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "language", "op": "neq", "value": "hi"})
        )
        .await,
        n(&["Bala", "Chitra"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "name", "op": "eq", "value": "asha"})
        )
        .await,
        n(&["Asha"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "birthday", "op": "month_day", "value": "05-15"})
        )
        .await,
        n(&["Asha", "Bala"]),
        "unknown-year birthdays match"
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "birthday", "op": "month", "value": 12})
        )
        .await,
        n(&["Dev"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "within_days", "value": 1})
        )
        .await
        .len(),
        4
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "before", "value": "2000-01-01"})
        )
        .await
        .len(),
        0
    );
    assert_eq!(
        names(&app, &owner, json!({"all": [
            {"field": "language", "op": "eq", "value": "hi"},
            {"any": [{"field": "tag", "op": "has", "value": "new"}, {"field": "attributes.spend", "op": "gt", "value": 1000}]}
        ]}))
        .await,
        n(&["Asha", "Dev"])
    );

    // The contact list takes a segment too, combined with its own filters.
    let r = app
        .post(
            "/api/v1/segments",
            Some(&owner.token),
            json!({"name": "Hindi", "filter": {"field": "language", "op": "eq", "value": "hi"}}),
        )
        .await;
    let sid = r.body["id"].as_str().unwrap().to_string();
    let l = app
        .get(
            &format!("/api/v1/contacts?segment={sid}&tag=new"),
            &owner.token,
        )
        .await;
    assert_eq!(l.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(l.body["data"][0]["name"], "Dev");
    let dup = app
        .post(
            "/api/v1/segments",
            Some(&owner.token),
            json!({"name": "Hindi", "filter": {"field": "language", "op": "eq", "value": "hi"}}),
        )
        .await;
    assert_eq!(dup.status, 409);
    let bad = app
        .post(
            "/api/v1/segments",
            Some(&owner.token),
            json!({"name": "x", "filter": {"field": "attributes.a'b", "op": "eq", "value": 1}}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let r = app
        .patch(
            &format!("/api/v1/segments/{sid}"),
            &owner.token,
            json!({"filter": {"field": "language", "op": "eq", "value": "ta"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get(&format!("/api/v1/segments/{sid}/count"), &owner.token)
            .await
            .body["count"],
        1
    );

    let other = app.register("Other", "x@other.test").await;
    for path in [
        format!("/api/v1/segments/{sid}"),
        format!("/api/v1/segments/{sid}/contacts"),
        format!("/api/v1/segments/{sid}/count"),
    ] {
        assert_eq!(app.get(&path, &other.token).await.status, 404, "{path}");
    }
    assert_eq!(
        app.delete(&format!("/api/v1/segments/{sid}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/v1/contacts?segment={sid}"), &other.token)
            .await
            .status,
        422
    );
    assert_eq!(
        app.delete(&format!("/api/v1/segments/{sid}"), &owner.token)
            .await
            .status,
        204
    );
}
both!(segments_select_in_sql);

/// The segment list and a single segment are the tenant's own: another tenant's segments are
/// neither listed nor readable.
async fn segments_are_listed_and_read_per_tenant(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let other = app.register("Other", "x@other.test").await;
    let hindi = json!({"field": "language", "op": "eq", "value": "hi"});
    let vip = json!({"all": [{"field": "tag", "op": "has", "value": "vip"}, {"field": "attributes.city", "op": "exists"}]});
    let mut ids = Vec::new();
    for (name, filter) in [("Hindi", &hindi), ("VIP", &vip)] {
        let r = app
            .post(
                "/api/v1/segments",
                Some(&owner.token),
                json!({"name": name, "filter": filter}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let theirs = app
        .post(
            "/api/v1/segments",
            Some(&other.token),
            json!({"name": "Theirs", "filter": hindi}),
        )
        .await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.body);
    let theirs_id = theirs.body["id"].as_str().unwrap().to_string();

    let listed = |body: &Value| {
        let mut v: Vec<(String, String)> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mine = app.get("/api/v1/segments", &owner.token).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(
        listed(&mine.body),
        vec![
            ("Hindi".to_string(), ids[0].clone()),
            ("VIP".to_string(), ids[1].clone())
        ]
    );
    let seg = mine.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "VIP")
        .unwrap()
        .clone();
    assert_eq!(seg["filter"], vip, "the filter is listed as saved");
    let them = app.get("/api/v1/segments", &other.token).await;
    assert_eq!(
        listed(&them.body),
        vec![("Theirs".to_string(), theirs_id.clone())]
    );

    // Pages of one, by cursor: both segments, each once.
    let p1 = app.get("/api/v1/segments?limit=1", &owner.token).await;
    assert_eq!(p1.status, 200, "{:?}", p1.body);
    assert_eq!(p1.body["data"].as_array().unwrap().len(), 1);
    let cursor = p1.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let p2 = app
        .get(
            &format!("/api/v1/segments?limit=1&cursor={cursor}"),
            &owner.token,
        )
        .await;
    assert_eq!(p2.status, 200, "{:?}", p2.body);
    assert_eq!(p2.body["data"].as_array().unwrap().len(), 1);
    assert!(p2.body["next_cursor"].is_null(), "{:?}", p2.body);
    let mut paged = vec![
        p1.body["data"][0]["id"].as_str().unwrap().to_string(),
        p2.body["data"][0]["id"].as_str().unwrap().to_string(),
    ];
    paged.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(paged, all);

    // One segment: its owner reads it, another tenant gets 404 (and the reverse).
    let one = app
        .get(&format!("/api/v1/segments/{}", ids[1]), &owner.token)
        .await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(one.body["id"], ids[1].as_str());
    assert_eq!(one.body["name"], "VIP");
    assert_eq!(one.body["filter"], vip);
    assert!(one.body["created_at"].is_string() && one.body["updated_at"].is_string());
    let r = app
        .get(&format!("/api/v1/segments/{}", ids[1]), &other.token)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = app
        .get(&format!("/api/v1/segments/{theirs_id}"), &owner.token)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(
        app.get(&format!("/api/v1/segments/{theirs_id}"), &other.token)
            .await
            .body["name"],
        "Theirs"
    );
    // An id that is no segment at all.
    let r = app
        .get(
            &format!("/api/v1/segments/{}", uuid::Uuid::now_v7()),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
}
both!(segments_are_listed_and_read_per_tenant);

/// An inbound text from `phone` (digits, as WhatsApp writes it) sent at `at`, posted as Meta
/// would; waits until the contact's `last_inbound_at` shows it.
async fn inbound_at(
    app: &TestApp,
    owner: &Registered,
    contact_id: &str,
    phone: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    use crate::whatsapp::{PNID, WABA, eventually, signed};
    let payload = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Someone"}, "wa_id": phone}],
        "messages": [{"from": phone, "id": format!("wamid.{}", uuid::Uuid::new_v4().simple()), "timestamp": at.timestamp().to_string(), "type": "text", "text": {"body": "hello"}}]
    }}]}]});
    let r = signed(app, &payload, crate::helpers::APP_SECRET).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let path = format!("/api/v1/contacts/{contact_id}");
    let seen = eventually("the inbound message applied", || async {
        let c = app.get(&path, &owner.token).await;
        c.body["last_inbound_at"].as_str().map(str::to_string)
    })
    .await;
    let seen = chrono::DateTime::parse_from_rfc3339(&seen).unwrap();
    assert_eq!(seen.timestamp(), at.timestamp(), "the message's own time");
}

/// `exists` on an attribute, `after`/`before` on `created_at` and conditions on
/// `last_inbound_at` (set by inbound messages) select the right contacts, in the count and the
/// list alike.
async fn segments_on_presence_and_dates(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    crate::whatsapp::connect(&app, &owner).await;
    let t0 = app.clock.now();
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let add = |body: Value| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let r = app.post("/api/v1/contacts", Some(&token), body).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["id"].as_str().unwrap().to_string()
        }
    };
    // Old: created ten days ago, wrote five days ago. New: created now, wrote an hour ago.
    // Quiet: created now, never wrote.
    app.clock.set(t0 - chrono::Duration::days(10));
    let old =
        add(json!({"phone": "+919800000011", "name": "Old", "attributes": {"tier": "gold"}})).await;
    app.clock.set(t0);
    let new = add(json!({"phone": "+919800000012", "name": "New", "attributes": {"tier": "silver", "spend": 0}})).await;
    add(json!({"phone": "+919800000013", "name": "Quiet", "attributes": {"spend": 10}})).await;
    let c = app
        .get(&format!("/api/v1/contacts/{old}"), &owner.token)
        .await;
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(c.body["created_at"].as_str().unwrap()).unwrap(),
        t0 - chrono::Duration::days(10),
        "created on the application's clock"
    );
    inbound_at(
        &app,
        &owner,
        &old,
        "919800000011",
        t0 - chrono::Duration::days(5),
    )
    .await;
    inbound_at(
        &app,
        &owner,
        &new,
        "919800000012",
        t0 - chrono::Duration::hours(1),
    )
    .await;

    let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Presence of an attribute, whatever its value (0 included).
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.tier", "op": "exists"})
        )
        .await,
        n(&["New", "Old"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "attributes.spend", "op": "exists"})
        )
        .await,
        n(&["New", "Quiet"])
    );
    // created_at: on or after / before an instant.
    let day_ago = rfc(t0 - chrono::Duration::days(1));
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "after", "value": day_ago})
        )
        .await,
        n(&["New", "Quiet"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "before", "value": day_ago})
        )
        .await,
        n(&["Old"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "after", "value": rfc(t0)})
        )
        .await,
        n(&["New", "Quiet"]),
        "after is on or after: the very instant counts"
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "before", "value": rfc(t0)})
        )
        .await,
        n(&["Old"])
    );
    let date_only = (t0 - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "created_at", "op": "after", "value": date_only})
        )
        .await,
        n(&["New", "Quiet"])
    );
    // last_inbound_at: set by the inbound messages, at their own time.
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "last_inbound_at", "op": "exists"})
        )
        .await,
        n(&["New", "Old"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "last_inbound_at", "op": "not_exists"})
        )
        .await,
        n(&["Quiet"])
    );
    let two_days_ago = rfc(t0 - chrono::Duration::days(2));
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "last_inbound_at", "op": "after", "value": two_days_ago})
        )
        .await,
        n(&["New"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "last_inbound_at", "op": "before", "value": two_days_ago})
        )
        .await,
        n(&["Old"]),
        "a contact that never wrote is not before anything"
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"field": "last_inbound_at", "op": "within_days", "value": 3})
        )
        .await,
        n(&["New"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"all": [
                {"field": "attributes.tier", "op": "exists"},
                {"field": "last_inbound_at", "op": "before", "value": two_days_ago}
            ]})
        )
        .await,
        n(&["Old"])
    );
    assert_eq!(
        names(
            &app,
            &owner,
            json!({"any": [
                {"field": "attributes.tier", "op": "not_exists"},
                {"field": "created_at", "op": "before", "value": day_ago}
            ]})
        )
        .await,
        n(&["Old", "Quiet"])
    );
}
both!(segments_on_presence_and_dates);

/// Attributes holding ISO 8601 dates compare by day (`after`, `before`, `within_days`); values
/// that are not dates never match, whatever the comparison.
async fn attribute_dates_compare_by_day(app: TestApp) {
    let owner = app.register("Insurer", "o@insurer.test").await;
    let today = app.clock.now().date_naive();
    let ago = |d: i64| {
        (today - chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    for (i, (name, renewal)) in [
        ("Asha", json!(ago(300))),
        ("Ravi", json!(format!("{}T18:30:00+00:00", ago(100)))),
        ("Meera", json!(ago(3))),
        ("Kiran", json!("soon")),
        ("Dev", json!(20260201)),
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .post(
                "/api/v1/contacts",
                Some(&owner.token),
                json!({"phone": format!("+91981234560{i}"), "name": name, "attributes": {"renewal": renewal}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    app.post(
        "/api/v1/contacts",
        Some(&owner.token),
        json!({"phone": "+919812345699", "name": "Nobody"}),
    )
    .await;
    let cond = |op: &str, v: Value| json!({"field": "attributes.renewal", "op": op, "value": v});
    assert_eq!(
        names(&app, &owner, cond("after", json!(ago(200)))).await,
        vec!["Meera", "Ravi"]
    );
    assert_eq!(
        names(&app, &owner, cond("before", json!(ago(100)))).await,
        vec!["Asha"],
        "a timestamp on the day is not before it"
    );
    assert_eq!(
        names(
            &app,
            &owner,
            cond("after", json!(format!("{}T23:00:00Z", ago(100))))
        )
        .await,
        vec!["Meera", "Ravi"],
        "compared by day"
    );
    assert_eq!(
        names(&app, &owner, cond("within_days", json!(7))).await,
        vec!["Meera"]
    );
    // Combined with the rest of the tree.
    assert_eq!(
        names(&app, &owner, json!({"any": [cond("before", json!(ago(200))), {"field": "name", "op": "eq", "value": "kiran"}]})).await,
        vec!["Asha", "Kiran"]
    );
    let r = app
        .post(
            "/api/v1/segments",
            Some(&owner.token),
            json!({"name": "bad", "filter": cond("after", json!("next week"))}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}
both!(attribute_dates_compare_by_day);
