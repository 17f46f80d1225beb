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
    assert_eq!(job["merged"], 1, "every row is counted once: {job}");
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
            &job["merged"],
            &job["failed"]
        ],
        [11_500, 10_989, 0, 500, 11],
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

/// Headers the import would not recognise, mapped explicitly through `mapping`: each lands in
/// its field; an explicit mapping wins over a header that would be detected; `skip` and
/// unknown targets are left out.
async fn an_explicit_mapping_places_each_column(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let csv = "Cell,Customer,Mail,Pref,Born,Labels,Tier,Phone,Internal Note,Whatever\n\
        98123 45678,Asha Rao,Asha@Example.com,hi,1990-05-15,vip;gold,Gold,020 2612 3456,call back,x\n\
        +2348031234567,Ravi,,en,--12-01,new,Silver,,,y\n";
    let mapping = json!({
        "Cell": "phone",
        "Customer": "name",
        "Mail": "email",
        "Pref": "language",
        "Born": "birthday",
        "Labels": "tags",
        "Tier": "attributes.Loyalty Tier",
        "Phone": "attributes.landline",
        "Internal Note": "skip",
        "Whatever": "no_such_field"
    });
    // Mapped: `Cell` is the phone, and the detectable `Phone` header is only an attribute.
    let r = upload(
        &app,
        &owner,
        "crm.csv",
        csv.as_bytes().to_vec(),
        &[("mapping", &mapping.to_string()), ("default_country", "IN")],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [&job["total"], &job["created"], &job["failed"]],
        [2, 2, 0],
        "{job}"
    );
    let asha = app
        .get("/api/v1/contacts?q=%2B919812345678", &owner.token)
        .await;
    assert_eq!(
        asha.body["data"].as_array().unwrap().len(),
        1,
        "{:?}",
        asha.body
    );
    let asha = &asha.body["data"][0];
    assert_eq!(asha["phone"], "+919812345678");
    assert_eq!(asha["name"], "Asha Rao");
    assert_eq!(asha["email"], "asha@example.com");
    assert_eq!(asha["language"], "hi");
    assert_eq!(asha["birthday"], "1990-05-15");
    assert_eq!(asha["tags"], json!(["gold", "vip"]));
    assert_eq!(
        asha["attributes"],
        json!({"loyalty_tier": "Gold", "landline": "020 2612 3456"}),
        "skipped and unknown targets are not kept"
    );
    let ravi = app.get("/api/v1/contacts?q=ravi", &owner.token).await;
    let ravi = &ravi.body["data"][0];
    assert_eq!(ravi["phone"], "+2348031234567");
    assert_eq!(ravi["language"], "en");
    assert_eq!(ravi["birthday"], "--12-01");
    assert_eq!(ravi["tags"], json!(["new"]));
    assert_eq!(ravi["attributes"], json!({"loyalty_tier": "Silver"}));
    assert!(ravi["email"].is_null(), "{ravi}");
    assert_eq!(
        app.get("/api/v1/contacts/stats", &owner.token).await.body["total"],
        2
    );

    // The same file without the mapping: the landline is the phone column, and the
    // unmapped headers become attributes.
    let r = upload(
        &app,
        &owner,
        "crm.csv",
        csv.as_bytes().to_vec(),
        &[("default_country", "IN")],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [&job["created"], &job["failed"]],
        [1, 1],
        "{job} {}",
        errors_csv(&app, &owner, &r).await
    );
    let landline = app
        .get("/api/v1/contacts?q=%2B912026123456", &owner.token)
        .await;
    let landline = &landline.body["data"][0];
    assert_eq!(landline["attributes"]["customer"], "Asha Rao", "{landline}");
    assert!(landline["name"].is_null(), "{landline}");

    // A mapping that is not a JSON object is refused before anything starts.
    let r = upload(
        &app,
        &owner,
        "crm.csv",
        csv.as_bytes().to_vec(),
        &[("mapping", "Cell=phone")],
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(r.body.to_string().contains("mapping"), "{:?}", r.body);
}
both!(an_explicit_mapping_places_each_column);

/// Spreadsheets that cannot be read, or have no phone column, fail the import with a reason,
/// and create no contact.
async fn bad_spreadsheets_fail_and_change_nothing(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    // Random bytes named .xlsx.
    let mut junk = Vec::with_capacity(4096);
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push(x as u8);
    }
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "contacts.xlsx", junk, &[]).await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("not a readable spreadsheet"), "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    // A zip that is no workbook (the start of an .xlsx, cut short).
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Phone").unwrap();
    ws.write_string(1, 0, "+919812345678").unwrap();
    let whole = wb.save_to_buffer().unwrap();
    let cut = whole[..whole.len() / 2].to_vec();
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "cut.xlsx", cut, &[]).await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a readable spreadsheet"),
        "{job}"
    );

    // A real workbook whose columns name no phone.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["Name", "City", "Spend"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "Asha").unwrap();
    ws.write_string(1, 1, "Pune").unwrap();
    ws.write_number(1, 2, 919812345678.0).unwrap();
    let job = finished(
        &app,
        &owner,
        &upload(
            &app,
            &owner,
            "people.xlsx",
            wb.save_to_buffer().unwrap(),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no phone column"),
        "{job}"
    );
    assert_eq!(job["created"], 0, "{job}");

    // An empty workbook: no header row, so no phone column either.
    let mut wb = rust_xlsxwriter::Workbook::new();
    wb.add_worksheet();
    let job = finished(
        &app,
        &owner,
        &upload(
            &app,
            &owner,
            "empty.xlsx",
            wb.save_to_buffer().unwrap(),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no phone column"),
        "{job}"
    );

    assert_eq!(
        app.get("/api/v1/contacts/stats", &owner.token).await.body["total"],
        0,
        "nothing was imported"
    );
    assert_eq!(
        app.get("/api/v1/contacts", &owner.token).await.body["data"],
        json!([])
    );
}
both!(bad_spreadsheets_fail_and_change_nothing);

/// The operator's upload limit (`max_import_bytes`) is enforced on the import route itself:
/// a larger file is answered 413 with a JSON error and leaves nothing behind; a file within it
/// is imported.
async fn uploads_over_the_limit_are_refused(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let mut csv = String::from("phone,name\n");
    for i in 0..150 {
        csv.push_str(&format!("+9198{i:08},Person {i}\n"));
    }
    assert!(csv.len() > 2048 && csv.len() < 8192, "{}", csv.len());
    let r = upload(&app, &owner, "big.csv", csv.into_bytes(), &[]).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.code(), "payload_too_large", "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        r.body
    );
    let left: Vec<_> = std::fs::read_dir(app.data_dir.path().join("imports"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the partial upload was removed: {left:?}");
    assert_eq!(
        app.get("/api/v1/contacts/stats", &owner.token).await.body["total"],
        0
    );
    // Under the limit, the same route imports.
    let small = "phone,name\n+919812345678,Asha\n";
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "small.csv", small.as_bytes().to_vec(), &[]).await,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["created"], 1, "{job}");
}
both!(
    uploads_over_the_limit_are_refused,
    |o: &mut crate::helpers::TestOptions| {
        o.settings.max_import_bytes = 1024;
    }
);

/// One tenant's import, its status and its refused rows, are not another tenant's to read.
async fn imports_are_the_tenants_own(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let other = app.register("Other", "x@other.test").await;
    let r = upload(
        &app,
        &owner,
        "c.csv",
        b"phone,name\n+919812345678,Asha\nnot a phone,Secret Person\n".to_vec(),
        &[],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["failed"], 1, "{job}");
    let id = r.body["id"].as_str().unwrap();
    // The owner reads both.
    assert_eq!(
        app.get(&format!("/api/v1/imports/{id}"), &owner.token)
            .await
            .status,
        200
    );
    let mine = errors_csv(&app, &owner, &r).await;
    assert!(mine.contains("Secret Person"), "{mine}");
    // Another tenant gets 404 on both, and nothing of the file.
    for path in [
        format!("/api/v1/imports/{id}"),
        format!("/api/v1/imports/{id}/errors.csv"),
    ] {
        let theirs = app
            .raw(app.client.get(app.url(&path)).bearer_auth(&other.token))
            .await;
        assert_eq!(theirs.status, 404, "{path}: {:?}", theirs.body);
        assert_eq!(theirs.code(), "not_found", "{path}: {:?}", theirs.body);
        assert!(
            !theirs.body.to_string().contains("Secret Person"),
            "{path}: {:?}",
            theirs.body
        );
    }
    // An id that is no import at all answers the same.
    let none = app
        .get(
            &format!("/api/v1/imports/{}/errors.csv", uuid::Uuid::now_v7()),
            &owner.token,
        )
        .await;
    assert_eq!(none.status, 404, "{:?}", none.body);
}
both!(imports_are_the_tenants_own);

/// The contacts export as CSV, every row once: (id, phone) of each data line.
async fn exported_csv(app: &TestApp, owner: &Registered, query: &str) -> Vec<(String, String)> {
    let r = app
        .raw(
            app.client
                .get(app.url(&format!("/api/v1/contacts/export{query}")))
                .bearer_auth(&owner.token),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let text = r.body.as_str().unwrap().to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,phone,name,email,language,birthday,consent,tags,attributes,created_at,last_inbound_at"
        )
    );
    lines
        .map(|l| {
            let mut cells = l.split(',');
            (
                cells.next().unwrap().to_string(),
                cells.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Exports of more contacts than one page (500) hold every contact exactly once, as CSV and as
/// XLSX (read back by importing the workbook into another tenant: every column lands where its
/// header says).
async fn exports_span_pages_and_read_back(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let phone = |i: usize| format!("+9198{i:08}");
    let mut csv = String::from("phone,name,email,language,tags,city\n");
    for i in 0..1000 {
        csv.push_str(&format!(
            "{},Person {i},p{i}@example.com,{},bulk,City {}\n",
            phone(i),
            if i % 2 == 0 { "hi" } else { "ta" },
            i % 7
        ));
    }
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "many.csv", csv.into_bytes(), &[]).await,
    )
    .await;
    assert_eq!(job["created"], 1000, "{job}");

    // Exactly two full pages, then one more contact: three pages.
    let expected: std::collections::BTreeSet<String> = (0..1000).map(phone).collect();
    let check = |rows: Vec<(String, String)>, expected: &std::collections::BTreeSet<String>| {
        let phones: std::collections::BTreeSet<String> =
            rows.iter().map(|(_, p)| p.clone()).collect();
        let ids: std::collections::BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
        assert_eq!(rows.len(), expected.len(), "one line per contact");
        assert_eq!(ids.len(), rows.len(), "no contact twice");
        assert_eq!(&phones, expected);
    };
    check(exported_csv(&app, &owner, "").await, &expected);
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": phone(5000), "name": "Late"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut expected = expected;
    expected.insert(phone(5000));
    check(exported_csv(&app, &owner, "").await, &expected);
    // Filtered, still over a page: the Hindi half.
    let hindi: std::collections::BTreeSet<String> = (0..1000).step_by(2).map(phone).collect();
    check(exported_csv(&app, &owner, "?language=hi").await, &hindi);

    // XLSX: a workbook with the same rows.
    let xlsx = app
        .client
        .get(app.url("/api/v1/contacts/export?format=xlsx"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    let bytes = xlsx.bytes().await.unwrap().to_vec();
    assert!(bytes.starts_with(b"PK"), "a zip");
    let other = app.register("Other", "x@other.test").await;
    let job = finished(
        &app,
        &other,
        &upload(&app, &other, "contacts.xlsx", bytes, &[]).await,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [&job["total"], &job["created"], &job["failed"]],
        [1001, 1001, 0],
        "one data row per contact, each a new contact: {job}"
    );
    let q = |phone: String| format!("/api/v1/contacts?q={}", phone.replace('+', "%2B"));
    let mine = app.get(&q(phone(7)), &owner.token).await.body["data"][0].clone();
    let copy = app.get(&q(phone(7)), &other.token).await.body["data"][0].clone();
    assert_eq!(copy["phone"], phone(7).as_str());
    assert_eq!(copy["name"], "Person 7");
    assert_eq!(copy["email"], "p7@example.com");
    assert_eq!(copy["language"], "ta");
    assert_eq!(copy["tags"], json!(["bulk"]));
    // The columns the import does not know come back as attributes under their headers.
    assert_eq!(copy["attributes"]["id"], mine["id"], "{copy}");
    assert_eq!(
        serde_json::from_str::<Value>(copy["attributes"]["attributes"].as_str().unwrap()).unwrap(),
        json!({"city": "City 0"}),
        "{copy}"
    );
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(copy["attributes"]["created_at"].as_str().unwrap())
            .unwrap(),
        chrono::DateTime::parse_from_rfc3339(mine["created_at"].as_str().unwrap()).unwrap(),
        "{copy}"
    );
    let late = app.get(&q(phone(5000)), &other.token).await.body["data"][0].clone();
    assert_eq!(late["name"], "Late");
    assert_eq!(late["attributes"]["attributes"], "{}", "{late}");
}
both!(exports_span_pages_and_read_back);

/// A minimal OpenDocument spreadsheet of text cells, zipped without compression.
fn ods(rows: &[&[&str]]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut xml = String::from(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content "#,
        r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" "#,
        r#"xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" "#,
        r#"xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">"#,
        r#"<office:body><office:spreadsheet><table:table table:name="Sheet1">"#
    ));
    for row in rows {
        xml.push_str("<table:table-row>");
        for cell in *row {
            xml.push_str(&format!(
                r#"<table:table-cell office:value-type="string"><text:p>{cell}</text:p></table:table-cell>"#
            ));
        }
        xml.push_str("</table:table-row>");
    }
    xml.push_str("</table:table></office:spreadsheet></office:body></office:document-content>");
    let manifest = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest "#,
        r#"xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">"#,
        r#"<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>"#,
        r#"<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>"#,
        r#"</manifest:manifest>"#
    );
    let files: [(&str, &[u8]); 3] = [
        (
            "mimetype",
            b"application/vnd.oasis.opendocument.spreadsheet",
        ),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", xml.as_bytes()),
    ];
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in files {
        let (offset, crc, len) = (out.len() as u32, crc32(data), data.len() as u32);
        let mut common = Vec::new();
        for v in [20u16, 0, 0, 0, 0] {
            common.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, len, len] {
            common.extend_from_slice(&v.to_le_bytes());
        }
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&common);
        for v in [0u16, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let (cd_offset, cd_len) = (out.len() as u32, central.len() as u32);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 3, 3] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The route accepts `.ods` (and `.xls`) files: an OpenDocument spreadsheet is imported.
async fn an_ods_spreadsheet_is_imported(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let bytes = ods(&[&["phone", "name"], &["+919812345678", "Asha"]]);
    let job = finished(
        &app,
        &owner,
        &upload(&app, &owner, "list.ods", bytes, &[]).await,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["created"], 1, "{job}");
    let asha = app.get("/api/v1/contacts?q=asha", &owner.token).await;
    assert_eq!(asha.body["data"][0]["phone"], "+919812345678");
}
both!(an_ods_spreadsheet_is_imported);

/// An import whose process died mid-file does not stay `running` for ever: once silent for
/// longer than any live runner is, housekeeping marks it failed with the reason; a live one stays.
async fn an_interrupted_import_is_marked_failed(app: TestApp) {
    use pinglayer_domain::Clock;
    let owner = app.register("Shop", "o@shop.test").await;
    let tenant: pinglayer_domain::TenantId = owner.tenant_id.parse().unwrap();
    let opts = json!({});
    let dead = app
        .db
        .create_import(tenant, "dead.csv", "csv", &opts, app.clock.now())
        .await
        .unwrap();
    app.clock
        .advance(pinglayer_engine::housekeeping::IMPORT_SILENCE + chrono::Duration::minutes(1));
    let alive = app
        .db
        .create_import(tenant, "alive.csv", "csv", &opts, app.clock.now())
        .await
        .unwrap();
    pinglayer_engine::housekeeping::step(&app.db, &app.clock)
        .await
        .unwrap();
    let job = |id: String| {
        let path = format!("/api/v1/imports/{id}");
        let token = owner.token.clone();
        let app = &app;
        async move { app.get(&path, &token).await.body }
    };
    let d = job(dead.id.to_string()).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["error"].as_str().unwrap().starts_with("interrupted"),
        "{d}"
    );
    assert_eq!(d["progress"], 1.0);
    let a = job(alive.id.to_string()).await;
    assert_eq!(a["status"], "queued", "{a}");
}
both!(an_interrupted_import_is_marked_failed);

/// With `skip`, a known contact repeated far apart in a file (in two batches) is left alone by
/// both rows; a phone new to the tenant repeated the same way merges into one contact.
async fn skip_holds_for_every_row_of_a_known_phone(app: TestApp) {
    let owner = app.register("Shop", "o@shop.test").await;
    let r = app
        .post(
            "/api/v1/contacts",
            Some(&owner.token),
            json!({"phone": "+919700000001", "name": "Kept"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut csv = String::from("phone,name\n+919700000001,First\n+919700000002,New first\n");
    for i in 0..6_000 {
        csv.push_str(&format!("+9198{i:08},C{i}\n"));
    }
    csv.push_str("+919700000001,Later\n+919700000002,New later\n");
    let r = upload(
        &app,
        &owner,
        "repeat.csv",
        csv.into_bytes(),
        &[("on_duplicate", "skip")],
    )
    .await;
    let job = finished(&app, &owner, &r).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        [
            &job["total"],
            &job["created"],
            &job["updated"],
            &job["skipped"],
            &job["merged"],
            &job["failed"]
        ],
        [6_004, 6_001, 0, 2, 1, 0],
        "{job}"
    );
    let name = |q: &'static str| {
        let (app, token) = (&app, owner.token.clone());
        async move {
            app.get(&format!("/api/v1/contacts?q={q}"), &token)
                .await
                .body["data"][0]["name"]
                .clone()
        }
    };
    assert_eq!(
        name("919700000001").await,
        "Kept",
        "skip means neither row touches it"
    );
    assert_eq!(
        name("919700000002").await,
        "New later",
        "the later row wins for a new phone"
    );
}
both!(skip_holds_for_every_row_of_a_known_phone);
