//! Listing contacts under load: a page of 50 filtered by a tag in a tenant with many contacts,
//! with `wrk` (2 threads), then the same list at a set pace while a large import runs into
//! another tenant of the same database.

use anyhow::Context;
use pinglayer_domain::{Role, SystemClock, TenantStatus};
use pinglayer_store::{Db, api_keys::NewApiKey, on_db, tenants};
use std::time::Instant;

use crate::{
    bench::{contacts_csv, seed_contacts},
    bench_links::{start_app, wrk_lua, wrk_with},
};

pub async fn contacts(
    database_url: &str,
    contacts: usize,
    seconds: u64,
    connections: usize,
    import_rows: usize,
) -> anyhow::Result<()> {
    let db = Db::connect(database_url, 16).await.context("connecting")?;
    db.migrate().await?;
    let now = pinglayer_domain::Clock::now(&SystemClock);
    let mut tx = db.begin().await?;
    let tenant =
        tenants::create_in(&mut tx, "List bench", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let (key, shown) = pinglayer_api::auth::secrets::new_api_key();
    db.create_api_key(
        NewApiKey {
            tenant_id: tenant.id,
            name: "bench",
            role: Role::Viewer,
            prefix: &shown,
            key_hash: &pinglayer_api::auth::secrets::sha256_hex(&key),
            created_by: None,
            expires_at: None,
        },
        now,
    )
    .await?;
    let seeded = Instant::now();
    seed_contacts(&db, tenant.id, contacts, now).await?;
    // One contact in ten is a VIP.
    on_db!(&db, p => sqlx::query(
        "insert into contact_tags (tenant_id, contact_id, tag, created_at)
         select tenant_id, id, 'vip', $2 from contacts where tenant_id = $1 and cast(substr(phone, 6) as integer) % 10 = 0")
        .bind(tenant.id).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
    if let Db::Postgres(p) = &db {
        sqlx::query("analyze contacts").execute(p).await?;
        sqlx::query("analyze contact_tags").execute(p).await?;
    }
    println!(
        "backend: {:?}; seeded {contacts} contacts in {:.1?}",
        db.backend(),
        seeded.elapsed()
    );
    let (addr, stop) = start_app(&db).await?;
    let url = format!("http://{addr}/api/v1/contacts?tag=vip&limit=50");
    let headers = vec![format!("X-API-Key: {key}")];
    // The answer is a full page.
    let r = reqwest::Client::new()
        .get(&url)
        .header("x-api-key", &key)
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "list answered {}", r.status());
    let body: serde_json::Value = r.json().await?;
    anyhow::ensure!(
        body["data"].as_array().map(Vec::len) == Some(50),
        "not a full page"
    );
    let sample = body["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let run = {
        let (url, headers) = (url.clone(), headers.clone());
        move |secs: u64, conns: usize, pause: Option<u32>| {
            let (url, headers) = (url.clone(), headers.clone());
            tokio::task::spawn_blocking(move || wrk_with(&url, secs, conns, 2, pause, &headers))
        }
    };
    run(2, connections, None).await??; // warm-up
    let l = run(seconds, connections, None).await??;
    println!(
        "list (tag, page of 50), wrk -t2 -c{connections}, {seconds} s: {:.0} requests/s, p50 {:.2?}, p99 {:.2?} ({} requests)",
        l.per_second, l.p50, l.p99, l.requests
    );
    // The same list with a query string that never repeats (an ignored `n`): every request
    // misses the kept pages and runs the queries, as the first view after a change does.
    let lua = format!(
        "local counter = 0\nlocal me = tostring({{}}):sub(8)\nrequest = function()\n  counter = counter + 1\n  return wrk.format(nil, \"{}&n=\" .. me .. \"-\" .. counter)\nend\n",
        url.trim_start_matches(&format!("http://{addr}"))
    );
    let miss = {
        let (url, headers) = (url.clone(), headers.clone());
        tokio::task::spawn_blocking(move || {
            wrk_lua(&url, seconds, connections, 2, Some(&lua), &headers)
        })
        .await??
    };
    println!(
        "list, every request a miss (queries run), wrk -t2 -c{connections}, {seconds} s: {:.0} requests/s, p50 {:.2?}, p99 {:.2?} ({} requests)",
        miss.per_second, miss.p50, miss.p99, miss.requests
    );
    if import_rows > 0 {
        let mut tx = db.begin().await?;
        let other =
            tenants::create_in(&mut tx, "Import beside", TenantStatus::Active, false, now).await?;
        tx.commit().await?;
        let path = contacts_csv(import_rows)?;
        let job = db
            .create_import(other.id, "bench.csv", "csv", &serde_json::json!({}), now)
            .await?;
        let (db2, p2) = (db.clone(), path.clone());
        let started = Instant::now();
        let importing = tokio::spawn(async move {
            pinglayer_engine::imports::run(
                &db2,
                &SystemClock,
                other.id,
                job.id,
                &p2,
                pinglayer_engine::imports::Format::Csv,
                Default::default(),
            )
            .await
        });
        // A steady, realistic load beside it: 8 connections, 5 ms apart (~1,600 requests/s),
        // on the list, then on one contact (read from the database every time).
        let l = run(seconds, 8, Some(5)).await??;
        let one = {
            let url = format!("http://{addr}/api/v1/contacts/{sample}");
            let headers = headers.clone();
            tokio::task::spawn_blocking(move || wrk_with(&url, seconds, 8, 2, Some(5), &headers))
                .await??
        };
        let during = started.elapsed().as_secs_f64();
        importing.await?;
        let took = started.elapsed().as_secs_f64();
        let j = db.import(other.id, job.id).await?;
        let _ = std::fs::remove_file(&path);
        println!(
            "while importing {import_rows} rows (the loads ran during the first {during:.0} s of the import's {took:.0} s; import status {}): list {:.0} requests/s, p50 {:.2?}, p99 {:.2?}; one contact {:.0} requests/s, p50 {:.2?}, p99 {:.2?}",
            j.status, l.per_second, l.p50, l.p99, one.per_second, one.p50, one.p99
        );
    }
    let _ = stop.send(());
    Ok(())
}
