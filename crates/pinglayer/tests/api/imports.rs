//! Contact imports from real CSV and XLSX files built here.

use serde_json::{Value, json};
use std::time::Duration;

use crate::{
    both,
    helpers::{Registered, Resp, TestApp},
};

pub(crate) async fn upload(
    app: &TestApp,
    owner: &Registered,
    name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> Resp {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    app.raw(
        app.client
            .post(app.url("/api/v1/contacts/import"))
            .bearer_auth(&owner.token)
            .multipart(form),
    )
    .await
}

pub(crate) async fn finished(app: &TestApp, owner: &Registered, r: &Resp) -> Value {
    assert_eq!(r.status, 202, "{:?}", r.body);
    let path = format!("/api/v1/imports/{}", r.body["id"].as_str().unwrap());
    for _ in 0..500 {
        let j = app.get(&path, &owner.token).await;
        if j.body["status"] == "completed" || j.body["status"] == "failed" {
            return j.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("import did not finish");
}

/// The import's `errors.csv`, as text.
async fn errors_csv(app: &TestApp, owner: &Registered, r: &Resp) -> String {
    let errors = app
        .raw(
            app.client
                .get(app.url(&format!(
                    "/api/v1/imports/{}/errors.csv",
                    r.body["id"].as_str().unwrap()
                )))
                .bearer_auth(&owner.token),
        )
        .await;
    errors.body.as_str().unwrap().to_string()
}

async fn csv_imports_detect_merge_and_report(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let csv = "\u{feff}Mobile Number,Full Name,E-mail,Language,DOB,Tags,City\n\
        98123 45678,Asha,asha@example.com,hi,1990-05-15,vip;gold,Pune\n\
        +2348031234567,Ravi,,en,--12-01,,Lagos\n\
        not a phone,Nobody,,,,,\n\
        9812345678,Asha Rao,,,,new,Mumbai\n\
        9800000001,Bad Mail,not-an-email,,,,\n\
        9800000002,Chitra,,ta,,,\n";
    let r = upload(
        &app,
        &owner,
        "contacts.csv",
        csv.as_bytes().to_vec(),
        &[("default_country", "IN"), ("tags", "Diwali 2026")],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["total"], 6);
    assert_eq!(job["created"], 3, "Asha once (merged), Ravi, Chitra: {job}");
    assert_eq!(job["failed"], 2);
    assert_eq!(job["progress"], 1.0);
    let list = app.get("/api/v1/contacts?q=asha", &owner.token).await;
    let asha = &list.body["data"][0];
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(asha["name"], "Asha Rao", "the later row wins");
    assert_eq!(asha["email"], "asha@example.com", "fields merge");
    assert_eq!(asha["attributes"]["city"], "Mumbai");
    assert_eq!(asha["birthday"], "1990-05-15");
    assert_eq!(asha["tags"], json!(["diwali 2026", "gold", "new", "vip"]));
    let errors = errors_csv(&app, &owner, &r).await;
    let text = errors;
    assert!(text.starts_with("row,reason,raw"));
    assert!(
        text.contains("\n4,") && text.contains("not a phone"),
        "{text}"
    );
    assert!(text.contains("\n6,"), "{text}");

    // Re-import: skip leaves contacts alone; update changes them; hidden contacts come back.
    let chitra = app
        .get("/api/v1/contacts?q=chitra", &owner.token)
        .await
        .body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.delete(&format!("/api/v1/contacts/{chitra}"), &owner.token)
        .await;
    let again = "phone,name\n+919812345678,Renamed\n+919800000002,Chitra Back\n";
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "again.csv", again.as_bytes().to_vec(), &[]).await,
    )
    .await;
    assert_eq!(
        (
            job["created"].as_i64(),
            job["updated"].as_i64(),
            job["skipped"].as_i64()
        ),
        (Some(0), Some(1), Some(1)),
        "{job}"
    );
    assert_eq!(
        app.get("/api/v1/contacts?q=asha", &owner.token).await.body["data"][0]["name"],
        "Asha Rao"
    );
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{chitra}"), &owner.token)
            .await
            .body["name"],
        "Chitra Back"
    );
    let job = finished(
        &app,
        &owner,
        &upload(
            &app,
            &owner,
            "again.csv",
            again.as_bytes().to_vec(),
            &[("on_duplicate", "update")],
        )
        .await,
    )
    .await;
    assert_eq!(job["updated"], 2);
    assert_eq!(
        app.get("/api/v1/contacts?q=renamed", &owner.token)
            .await
            .body["data"][0]["phone"],
        "+919812345678"
    );

    // Another tenant sees none of it.
    let other = app.register("Other", "x@other.test").await;
    assert_eq!(
        app.get(
            &format!("/api/v1/imports/{}", r.body["id"].as_str().unwrap()),
            &other.token
        )
        .await
        .status,
        404
    );
}
both!(csv_imports_detect_merge_and_report);

/// A file of several batches (5,000 rows each), which PostgreSQL writes several at a time: rows
/// repeating a phone of an earlier batch still win over it, every row is counted once, and
/// the refused rows keep their numbers.
async fn large_files_are_written_in_batches_and_in_order(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let mut csv = String::from("phone,name,tags\n");
    for i in 0..11_000 {
        if i % 1000 == 999 {
            csv.push_str(&format!("nope,Bad {i},\n"));
        } else {
            csv.push_str(&format!("+9198{i:08},C{i},t{}\n", i % 2));
        }
    }
    // The first 500 phones again, in the third batch: the later rows win.
    for j in 0..500 {
        csv.push_str(&format!("+9198{j:08},Later {j},late\n"));
    }
    let r = upload(&app, &owner, "big.csv", csv.into_bytes(), &[]).await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [
            &job["total"],
            &job["created"],
            &job["updated"],
            &job["failed"]
        ],
        [11_500, 10_989, 500, 11],
        "{job}"
    );
    let seven = app
        .get("/api/v1/contacts?q=%2B919800000007", &owner.token)
        .await;
    assert_eq!(seven.body["data"][0]["name"], "Later 7", "{:?}", seven.body);
    assert_eq!(seven.body["data"][0]["tags"], json!(["late", "t1"]));
    let tags = app.get("/api/v1/tags", &owner.token).await.body["data"].clone();
    let count = |t: &str| {
        tags.as_array()
            .unwrap()
            .iter()
            .find(|x| x["tag"] == t)
            .map(|x| x["count"].clone())
    };
    assert_eq!(
        [count("t0"), count("t1"), count("late")],
        [Some(json!(5500)), Some(json!(5489)), Some(json!(500))],
        "{tags}"
    );
    let errors = errors_csv(&app, &owner, &r).await;
    let rows: Vec<&str> = errors
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let expected: Vec<String> = (1..=11).map(|k| (k * 1000 + 1).to_string()).collect();
    assert_eq!(rows, expected);
}
both!(large_files_are_written_in_batches_and_in_order);

/// A file that is all new for several batches, then meets contacts the tenant already has
/// (PostgreSQL, once a file has been all new, copies a batch in without looking its phones
/// up; a known phone sends that batch back the careful way): the known contact is skipped,
/// the deleted one restored, everything else created once.
async fn known_contacts_late_in_a_new_file_are_found(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let known = |i: usize| format!("+9198{i:08}");
    let mut ids = Vec::new();
    for (i, name) in [(27_001, "Kept"), (27_002, "Gone")] {
        let r = app
            .post(
                "/api/v1/contacts",
                Some(&owner.token),
                json!({"phone": known(i), "name": name}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    let path = format!("/api/v1/contacts/{}", ids[1]);
    assert_eq!(app.delete(&path, &owner.token).await.status, 204);
    let mut csv = String::from("phone,name\n");
    for i in 0..30_000 {
        csv.push_str(&format!("{},File {i}\n", known(i)));
    }
    let r = upload(&app, &owner, "grown.csv", csv.into_bytes(), &[]).await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [
            &job["created"],
            &job["skipped"],
            &job["updated"],
            &job["failed"]
        ],
        [29_998, 1, 1, 0],
        "{job}"
    );
    let name = |phone: String| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let q = format!("/api/v1/contacts?q={}", phone.replace('+', "%2B"));
            app.get(&q, &token).await.body["data"][0]["name"].clone()
        }
    };
    assert_eq!(name(known(27_001)).await, "Kept");
    assert_eq!(name(known(27_002)).await, "File 27002");
    assert_eq!(name(known(27_003)).await, "File 27003");
    assert_eq!(
        app.get("/api/v1/contacts/stats", &owner.token).await.body["total"],
        30_000
    );
}
both!(known_contacts_late_in_a_new_file_are_found);

async fn bad_files_fail_and_change_nothing(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = upload(
        &app,
        &owner,
        "people.csv",
        b"name,city\nAsha,Pune\n".to_vec(),
        &[],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("no phone column"),
        "{job}"
    );
    let mut latin1 = b"phone,name\n+919812345678,Jos".to_vec();
    latin1.push(0xE9);
    latin1.extend_from_slice(b"\n+919800000001,Ann\n");
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "latin1.csv", latin1, &[]).await,
    )
    .await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap().contains("UTF-8"), "{job}");
    assert_eq!(
        app.get("/api/v1/contacts/stats", &owner.token).await.body["total"],
        0,
        "nothing was imported"
    );
    let r = upload(&app, &owner, "contacts.pdf", b"%PDF".to_vec(), &[]).await;
    assert_eq!(r.status, 415);
    let r = app
        .post("/api/v1/contacts/import", Some(&owner.token), json!({}))
        .await;
    assert_eq!(r.status, 415);
    let r = upload(
        &app,
        &owner,
        "c.csv",
        b"phone\n".to_vec(),
        &[("on_duplicate", "merge")],
    )
    .await;
    assert_eq!(r.status, 422);
}
both!(bad_files_fail_and_change_nothing);

async fn xlsx_numbers_keep_their_phones(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    ws.write_string(0, 1, "Name").unwrap();
    ws.write_string(0, 2, "Spend").unwrap();
    // Typed into Excel as numbers: the + is gone, and so is India's leading 0.
    ws.write_number(1, 0, 919812345678.0).unwrap();
    ws.write_string(1, 1, "Asha").unwrap();
    ws.write_number(1, 2, 1200.0).unwrap();
    ws.write_number(2, 0, 9800000001.0).unwrap();
    ws.write_string(2, 1, "Bala").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let job = finished(
        &app,
        &owner,
        &upload(
            &app,
            &owner,
            "list.xlsx",
            bytes,
            &[("default_country", "IN")],
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["created"], 2);
    let asha = app.get("/api/v1/contacts?q=asha", &owner.token).await;
    assert_eq!(asha.body["data"][0]["phone"], "+919812345678");
    assert_eq!(asha.body["data"][0]["attributes"]["spend"], 1200);
    assert_eq!(
        app.get("/api/v1/contacts?q=bala", &owner.token).await.body["data"][0]["phone"],
        "+919800000001"
    );
}
both!(xlsx_numbers_keep_their_phones);

/// `pinglayer contacts import FILE --tenant SLUG` on the same database as the API.
async fn command_line_import(app: TestApp) {
    let owner = app.register("CLI Shop", "o@shop.test").await;
    let slug = owner.body["tenant"]["slug"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "phone,name\n9812345678,Asha\n9800000001,Bala\nbad,Nobody\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinglayer"))
        .args(["contacts", "import"])
        .arg(&file)
        .args([
            "--tenant",
            &slug,
            "--default-country",
            "IN",
            "--tags",
            "cli",
            "--database-url",
            &app.db_url,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 created"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let tags = app.get("/api/v1/tags", &owner.token).await;
    assert_eq!(tags.body["data"][0], json!({"tag": "cli", "count": 2}));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_pinglayer"))
        .args(["contacts", "import"])
        .arg(&file)
        .args([
            "--tenant",
            "no-such-shop",
            "--database-url",
            &app.db_url,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
both!(command_line_import);
