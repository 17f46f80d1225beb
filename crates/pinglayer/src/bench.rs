//! `pinglayer bench …`: rerunnable load benchmarks whose numbers go in docs/benchmarks.md.
//! The load generator runs in the same process as what it measures (and so shares its cores),
//! which makes the figures conservative.

use anyhow::Context;
use futures::StreamExt;
use pinglayer_domain::{
    ContactId, ConversationId, MessageId, PhoneE164, SystemClock, TenantStatus, crypto::Cipher,
};
use pinglayer_store::{Db, inbox, numbers::NewNumber, on_db, tenants};
use serde_json::json;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::startup::Application;

/// Webhook ingestion: `messages` outbound messages exist; `messages` `delivered` statuses are
/// posted, signed, in POSTs of `batch`, `concurrency` at a time; then the engine applies them.
pub async fn webhooks(
    database_url: &str,
    messages: usize,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let db = Db::connect(database_url, 32).await.context("connecting")?;
    db.migrate().await?;
    let now = pinglayer_domain::Clock::now(&SystemClock);
    let secret = "bench-app-secret";
    let key = [9u8; 32];
    let cipher = Cipher::new(&key);

    // A tenant with a number, a contact, a conversation, and `messages` messages already sent.
    let mut tx = db.begin().await?;
    let tenant = tenants::create_in(&mut tx, "Bench", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let pnid = format!(
        "9{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
            .replace(|c: char| !c.is_ascii_digit(), "1")
    );
    let number = db
        .connect_number(
            NewNumber {
                tenant_id: tenant.id,
                waba_id: "1",
                phone_number_id: &pnid,
                display_phone_number: "+1 555",
                access_token_enc: cipher.encrypt(&format!("{}/access_token", tenant.id), "t"),
                app_secret_enc: None,
                verify_token_hash: None,
                throughput_per_second: 80,
            },
            now,
        )
        .await?;
    let mut tx = db.begin().await?;
    let phone = PhoneE164::parse("+919812345678", None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let contact = inbox::upsert_contact_in(&mut tx, tenant.id, &phone, None, None, now).await?;
    let conv = inbox::ensure_conversation_in(&mut tx, tenant.id, contact, number.id, now).await?;
    tx.commit().await?;
    let ids: Vec<MessageId> = (0..messages).map(|_| MessageId::new()).collect();
    let seeded = Instant::now();
    for chunk in ids.chunks(2000) {
        seed(&db, tenant.id, number.id, contact, conv.id, chunk, now).await?;
    }
    println!(
        "seeded {messages} sent messages in {:.1?}",
        seeded.elapsed()
    );

    let mut settings = pinglayer_api::Settings::for_tests(std::env::temp_dir());
    settings.meta.app_secret = Some(secret.into());
    settings.encryption_key = key;
    settings.rate_limit_per_second = 0;
    let client = pinglayer_whatsapp::Client::new(Default::default())?;
    let app = Application::build(
        db.clone(),
        settings,
        "127.0.0.1:0".parse()?,
        Arc::new(SystemClock),
        client,
        Default::default(),
    )
    .await?;
    let addr = app.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    let ts = now.timestamp().to_string();
    let bodies: Vec<(Vec<u8>, String)> = ids
        .chunks(batch)
        .map(|chunk| {
            let statuses: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| json!({"id": format!("wamid.BENCH{}", id.0.simple()), "status": "delivered", "timestamp": ts, "recipient_id": "919812345678", "biz_opaque_callback_data": id.to_string(), "_i": i}))
                .collect();
            let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": pnid}, "statuses": statuses}}]}]}))
            .expect("serialises");
            let sig = pinglayer_whatsapp::webhook::sign(secret.as_bytes(), &body);
            (body, sig)
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = format!("http://{addr}/webhooks/whatsapp");
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(bodies)
        .map(|(body, sig)| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sig)
                    .body(body)
                    .send()
                    .await;
                assert!(
                    r.is_ok_and(|r| r.status().is_success()),
                    "webhook POST refused"
                );
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ingested = started.elapsed();
    loop {
        if db.pending_webhook_events().await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied = started.elapsed();
    let delivered: i64 = on_db!(&db, p => sqlx::query_scalar("select count(*) from messages where tenant_id = $1 and status = 'delivered'")
        .bind(tenant.id)
        .fetch_one(p)
        .await)?;
    let _ = stop_tx.send(());
    let _ = server.await;
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "backend: {:?}; {messages} status events in POSTs of {batch}, {concurrency} concurrent",
        db.backend()
    );
    println!(
        "ingestion (signature checked, event stored, 200): {:.0} events/s, {:.0} POSTs/s; POST latency p50 {:.1?} p99 {:.1?}",
        messages as f64 / ingested.as_secs_f64(),
        latencies.len() as f64 / ingested.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "applied (all statuses on their messages): {:.0} events/s end to end; {delivered} of {messages} messages delivered",
        messages as f64 / applied.as_secs_f64()
    );
    anyhow::ensure!(
        delivered as usize == messages,
        "not every status was applied"
    );
    Ok(())
}

async fn seed(
    db: &Db,
    tenant: pinglayer_domain::TenantId,
    number: pinglayer_domain::NumberId,
    contact: ContactId,
    conv: ConversationId,
    ids: &[MessageId],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    on_db!(db, p => {
        let mut qb = sqlx::QueryBuilder::new(
            "insert into messages (tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content, preview, to_phone, status, status_rank, attempts, created_at, updated_at, sent_at) ",
        );
        qb.push_values(ids, |mut b, id| {
            b.push_bind(tenant).push_bind(*id).push_bind(number).push_bind(contact).push_bind(conv)
                .push_bind("outbound").push_bind("text").push_bind("{}").push_bind("bench").push_bind("+919812345678")
                .push_bind("sent").push_bind(2).push_bind(1).push_bind(now).push_bind(now).push_bind(now);
        });
        qb.build().execute(p).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Sandbox send rate: `numbers` numbers at 1,000 msg/s each, `concurrency` sends in flight.
pub async fn sandbox(numbers: u32, seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    use pinglayer_sandbox::{Sandbox, SandboxConfig, SandboxNumber};
    let cfg = SandboxConfig {
        numbers: (0..numbers)
            .map(|i| SandboxNumber {
                phone_number_id: (100_000_000_000_001u64 + i as u64).to_string(),
                throughput_per_second: 1000,
                ..SandboxNumber::default()
            })
            .collect(),
        pair_limit: false,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::build(cfg, "127.0.0.1:0".parse()?).await?;
    let addr = sb.local_addr();
    let state = sb.state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sb.run_until(async {
        let _ = stop_rx.await;
    }));
    let client = pinglayer_whatsapp::Client::new(pinglayer_whatsapp::ClientConfig {
        base_url: format!("http://{addr}"),
        ..Default::default()
    })?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let n = std::sync::atomic::AtomicU64::new(0);
    futures::stream::iter(0..concurrency)
        .for_each_concurrent(concurrency, |w| {
            let client = client.clone();
            let n = &n;
            async move {
                let mut i = w as u64;
                while Instant::now() < deadline {
                    let pnid = (100_000_000_000_001u64 + i % numbers as u64).to_string();
                    let msg = pinglayer_whatsapp::types::SendMessage::new(
                        format!("9198{:08}", i % 100_000_000),
                        pinglayer_whatsapp::types::Content::Text {
                            text: pinglayer_whatsapp::types::Text {
                                body: "hello".into(),
                                preview_url: None,
                            },
                        },
                    );
                    let _ = client.send(&pnid, "sandbox-access-token", &msg).await;
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += concurrency as u64;
                }
            }
        })
        .await;
    let secs = started.elapsed().as_secs_f64();
    let s = state.stats();
    let accepted = s.accepted.load(std::sync::atomic::Ordering::Relaxed);
    let throttled = s.throttled.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "sandbox: {} sends in {secs:.1} s over {numbers} numbers (1,000/s each), {concurrency} in flight: {:.0} accepted/s ({accepted} accepted, {throttled} refused with 130429)",
        n.load(std::sync::atomic::Ordering::Relaxed),
        accepted as f64 / secs
    );
    let _ = stop_tx.send(());
    Ok(())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Contact import: a generated CSV of `rows` contacts imported into a fresh tenant, then the
/// same file again with `update`.
pub async fn import(database_url: &str, rows: usize) -> anyhow::Result<()> {
    use pinglayer_engine::imports::{Format, ImportOptions};
    use std::io::Write;
    let db = Db::connect(database_url, 8).await.context("connecting")?;
    db.migrate().await?;
    let now = pinglayer_domain::Clock::now(&SystemClock);
    let mut tx = db.begin().await?;
    let tenant =
        tenants::create_in(&mut tx, "Import bench", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let path = std::env::temp_dir().join(format!("pinglayer-bench-{}.csv", uuid::Uuid::now_v7()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "phone,name,email,language,city,tags")?;
        for i in 0..rows {
            writeln!(
                f,
                "+9198{:08},Customer {i},c{i}@example.com,{},City {},{}",
                i,
                ["en", "hi", "ta"][i % 3],
                i % 100,
                ["vip", "new", "gold;vip"][i % 3]
            )?;
        }
    }
    let size = std::fs::metadata(&path)?.len();
    println!(
        "backend: {:?}; {rows} rows, {:.1} MB CSV",
        db.backend(),
        size as f64 / 1e6
    );
    for (label, update) in [
        ("first import (all new)", false),
        ("re-import with update", true),
    ] {
        let copy = path.with_extension(format!("{label}.csv").replace(' ', "_"));
        std::fs::copy(&path, &copy)?;
        let job = db
            .create_import(tenant.id, "bench.csv", "csv", &json!({}), now)
            .await?;
        let opts = ImportOptions {
            on_duplicate: Some(if update { "update" } else { "skip" }.into()),
            ..Default::default()
        };
        let started = Instant::now();
        pinglayer_engine::imports::run(
            &db,
            &SystemClock,
            tenant.id,
            job.id,
            &copy,
            Format::Csv,
            opts,
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        let j = db.import(tenant.id, job.id).await?;
        anyhow::ensure!(j.status == "completed", "import failed: {:?}", j.error);
        println!(
            "{label}: {:.0} rows/s ({:.1} s; created {}, updated {}, refused {}); peak RSS of this process so far {:.0} MB",
            rows as f64 / secs,
            secs,
            j.created,
            j.updated,
            j.failed,
            peak_rss_mb()
        );
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
