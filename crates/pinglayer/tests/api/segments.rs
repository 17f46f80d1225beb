//! Segments: filter trees translated to SQL on both backends.

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
