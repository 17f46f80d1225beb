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

/// Seeds `n` contacts (phones `+9197…`, names `Customer <n>`) with time-ordered ids, as the API
/// and imports make them, all tagged `all`: set-based, on either backend.
pub(crate) async fn seed_contacts(
    db: &Db,
    tenant: pinglayer_domain::TenantId,
    n: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    // Time-ordered ids, as the API and imports make them (UUIDv7): id order is insertion order.
    let base_ms = now.timestamp_millis() - n as i64;
    let id_expr = match db.backend() {
        pinglayer_store::Backend::Postgres => {
            "(lpad(to_hex($4::bigint + g), 12, '0') || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14, 19))::uuid"
        }
        pinglayer_store::Backend::Sqlite => {
            "unhex(printf('%012x', $4 + g) || '7' || substr(hex(randomblob(2)), 2, 3) || '8' || substr(hex(randomblob(8)), 2, 15))"
        }
    };
    let series = match db.backend() {
        pinglayer_store::Backend::Postgres => "select g from generate_series(1, $3) as g",
        pinglayer_store::Backend::Sqlite => {
            "with recursive s(g) as (select 1 union all select g + 1 from s where g < $3) select g from s"
        }
    };
    let sql = format!(
        "insert into contacts (tenant_id, id, phone, name, attributes, created_at, updated_at)
         select $1, {id_expr}, '+9197' || substr('00000000' || g, -8, 8), 'Customer ' || g, '{{}}', $2, $2 from ({series}) as x"
    )
    .replace("substr('00000000' || g, -8, 8)", "substr('00000000' || cast(g as text), length('00000000' || cast(g as text)) - 7, 8)");
    on_db!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(now).bind(n as i64).bind(base_ms).execute(p).await.map(|r| r.rows_affected()))?;
    on_db!(db, p => sqlx::query(
        "insert into contact_tags (tenant_id, contact_id, tag, created_at) select tenant_id, id, 'all', $2 from contacts where tenant_id = $1")
        .bind(tenant).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// A CSV of `rows` contacts (`phone,name,email,language,city,tags`) in the temp directory.
/// Row `i`'s tags: cycling over seven (not three) so that no tag goes with only one language.
const CSV_TAGS: [&str; 7] = ["vip", "new", "gold;vip", "new;vip", "gold", "vip", "new"];

/// How many rows of `contacts_csv(rows)` the bench's segment (language `hi`, tag `vip`, city
/// `City 7`) matches, computed from the generator's rules, to check the count against.
fn segment_matches(rows: usize) -> i64 {
    (0..rows)
        .filter(|i| i % 3 == 1 && i % 100 == 7 && CSV_TAGS[i % 7].split(';').any(|t| t == "vip"))
        .count() as i64
}

pub(crate) fn contacts_csv(rows: usize) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
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
                CSV_TAGS[i % 7]
            )?;
        }
    }
    Ok(path)
}

pub(crate) fn peak_rss_mb() -> f64 {
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
    let db = Db::connect(database_url, 8).await.context("connecting")?;
    db.migrate().await?;
    let now = pinglayer_domain::Clock::now(&SystemClock);
    let mut tx = db.begin().await?;
    let tenant =
        tenants::create_in(&mut tx, "Import bench", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let path = contacts_csv(rows)?;
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
    // A segment with three conditions over the imported contacts, counted as the API counts it.
    if let Db::Postgres(p) = &db {
        sqlx::query("analyze contacts").execute(p).await?;
        sqlx::query("analyze contact_tags").execute(p).await?;
    }
    let filter = pinglayer_domain::segment::Filter::parse(&json!({"all": [
        {"field": "language", "op": "eq", "value": "hi"},
        {"field": "tag", "op": "has", "value": "vip"},
        {"field": "attributes.city", "op": "eq", "value": "City 7"}
    ]}))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..7 {
        let t = Instant::now();
        n = db.count_matching(tenant.id, &filter, now).await?;
        times.push(t.elapsed());
    }
    times.sort();
    anyhow::ensure!(
        n == segment_matches(rows),
        "the segment counted {n} contacts, the generator made {} that match",
        segment_matches(rows)
    );
    println!(
        "segment count (language = hi AND tag vip AND attributes.city = 'City 7') over {rows} contacts: {n} match (as generated); median {:.1?}, worst {:.1?} of 7",
        times[3], times[6]
    );
    Ok(())
}

/// Campaigns: fan-out of a `contacts`-contact audience into the outbox, then end-to-end
/// dispatch of `messages` messages across `numbers` numbers at `rate`/s each through the
/// sandbox, status webhooks flowing back — by this process's engine, or by `workers`
/// `pinglayer worker` processes. Checks that nothing was sent twice and the counts are exact.
pub async fn campaign(
    database_url: &str,
    contacts: usize,
    messages: usize,
    numbers: u32,
    rate: i32,
    workers: usize,
    billing: bool,
) -> anyhow::Result<()> {
    use pinglayer_domain::billing::{Money, PriceList, Prices};
    use pinglayer_domain::campaign::CampaignAction;
    use pinglayer_sandbox::{Sandbox, SandboxConfig, SandboxNumber};
    use pinglayer_store::{
        campaigns::CampaignSpec,
        templates::{LanguageVersion, TemplateHead},
    };
    let db = Db::connect(database_url, 32).await.context("connecting")?;
    db.migrate().await?;
    let now = pinglayer_domain::Clock::now(&SystemClock);
    let key = [9u8; 32];
    let cipher = Cipher::new(&key);
    let mut tx = db.begin().await?;
    let tenant =
        tenants::create_in(&mut tx, "Campaign bench", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let base: u64 = 300_000_000_000_001 + (now.timestamp_millis() as u64 % 1_000_000) * 100;
    let pnids: Vec<String> = (0..numbers)
        .map(|i| (base + i as u64).to_string())
        .collect();
    let mut number_ids = Vec::new();
    for pnid in &pnids {
        let n = db
            .connect_number(
                NewNumber {
                    tenant_id: tenant.id,
                    waba_id: "200000000000001",
                    phone_number_id: pnid,
                    display_phone_number: "+1 555",
                    access_token_enc: cipher.encrypt(
                        &format!("{}/access_token", tenant.id),
                        "sandbox-access-token",
                    ),
                    app_secret_enc: None,
                    verify_token_hash: None,
                    throughput_per_second: rate,
                },
                now,
            )
            .await?;
        number_ids.push(n.id);
    }
    db.create_template(
        &TemplateHead {
            tenant: tenant.id,
            waba_id: "200000000000001",
            name: "bench_promo",
            category: "MARKETING",
            parameter_format: "POSITIONAL",
        },
        &[LanguageVersion {
            language: "en".into(),
            status: "APPROVED".into(),
            components: r#"[{"type":"BODY","text":"Hi {{1}}, our sale starts today."}]"#.into(),
            meta_id: Some("1".into()),
            reason: None,
        }],
        now,
    )
    .await?;

    // Contacts: everyone tagged `all`; the first `messages` also `lane<k>`, k = number.
    let seeded = Instant::now();
    seed_contacts(&db, tenant.id, contacts.max(messages), now).await?;
    on_db!(&db, p => sqlx::query(
        "insert into contact_tags (tenant_id, contact_id, tag, created_at)
         select tenant_id, id, 'lane' || cast(cast(substr(phone, 6) as integer) % $3 as text), $2 from contacts
         where tenant_id = $1 and cast(substr(phone, 6) as integer) <= $4")
        .bind(tenant.id).bind(now).bind(numbers as i64).bind(messages as i64).execute(p).await.map(|r| r.rows_affected()))?;
    if let Db::Postgres(p) = &db {
        sqlx::query("analyze contacts").execute(p).await?;
        sqlx::query("analyze contact_tags").execute(p).await?;
    }
    println!(
        "backend: {:?}; seeded {} contacts in {:.1?}",
        db.backend(),
        contacts.max(messages),
        seeded.elapsed()
    );

    let spec = |name: &str, number: pinglayer_domain::NumberId, tag: &str| CampaignSpec {
        name: name.into(),
        number_id: number,
        template_name: "bench_promo".into(),
        default_language: "en".into(),
        parameters: json!({"body": [{"source": "contact.name", "fallback": "Customer"}]}),
        audience: json!({"tags": [tag]}),
        schedule: json!({}),
        quiet_hours: None,
    };
    let client = pinglayer_whatsapp::Client::new(Default::default())?;
    let engine = pinglayer_engine::Engine::new(
        db.clone(),
        Arc::new(SystemClock),
        client,
        cipher.clone(),
        Default::default(),
    );

    // 1. Fan-out of the whole audience.
    if contacts > 0 {
        let c = db
            .create_campaign(
                tenant.id,
                &spec("fan-out", number_ids[0], "all"),
                None,
                None,
                now,
            )
            .await?;
        let _ = db.launch_campaign(tenant.id, c.id, now, now).await?;
        let started = Instant::now();
        let queued = engine.campaigns_once().await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fan-out: {queued} messages queued in {secs:.2} s ({:.0} rows/s); peak RSS {:.0} MB",
            queued as f64 / secs,
            peak_rss_mb()
        );
        let started = Instant::now();
        let _ = db
            .move_campaign(
                tenant.id,
                c.id,
                CampaignAction::Cancel,
                pinglayer_domain::Clock::now(&SystemClock),
            )
            .await?;
        println!(
            "cancelling it (every queued message marked): {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    if messages == 0 {
        return Ok(());
    }

    // 2. Dispatch: a sandbox that posts statuses back, an app that takes them, senders.
    let app_secret = "sandbox-app-secret";
    let mut settings = pinglayer_api::Settings::for_tests(std::env::temp_dir());
    settings.meta.app_secret = Some(app_secret.into());
    settings.encryption_key = key;
    settings.rate_limit_per_second = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = listener.local_addr()?;
    drop(listener);
    let sb = Sandbox::build(
        SandboxConfig {
            webhook_url: Some(format!("http://{app_addr}/webhooks/whatsapp")),
            app_secret: app_secret.into(),
            numbers: pnids
                .iter()
                .map(|p| SandboxNumber {
                    phone_number_id: p.clone(),
                    throughput_per_second: rate as u32,
                    ..SandboxNumber::default()
                })
                .collect(),
            pair_limit: false,
            read_rate: 0.5,
            batch_size: 100,
            template_review: Duration::from_millis(10),
            ..SandboxConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let graph = format!("http://{}", sb.local_addr());
    let sandbox = sb.state();
    let (sb_stop, sb_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sb.run_until(async {
        let _ = sb_rx.await;
    }));
    let client = pinglayer_whatsapp::Client::new(pinglayer_whatsapp::ClientConfig {
        base_url: graph.clone(),
        ..Default::default()
    })?;
    // "Meta" knows the template too (reviewed in 10 ms; its webhook finds the one we stored).
    client
        .create_template(
            "200000000000001",
            "sandbox-access-token",
            &pinglayer_whatsapp::types::TemplateCreate {
                name: "bench_promo".into(),
                language: "en".into(),
                category: "MARKETING".into(),
                parameter_format: None,
                components: vec![json!({"type": "BODY", "text": "Hi {{1}}, our sale starts today.", "example": {"body_text": [["Asha"]]}})],
            },
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let config = pinglayer_engine::EngineConfig {
        dispatch_batch: 500,
        dispatch_concurrency: 32,
        ..Default::default()
    };
    let mut app = Application::build(
        db.clone(),
        settings,
        app_addr,
        Arc::new(SystemClock),
        client,
        config,
    )
    .await?;
    let mut children = Vec::new();
    if workers > 0 {
        // The app only takes webhooks; separate processes dispatch (and apply them).
        app = app.without_workers();
        let exe = std::env::current_exe()?;
        let dir = std::env::temp_dir().join(format!("pinglayer-bench-{}", uuid::Uuid::now_v7()));
        use base64::Engine as _;
        for _ in 0..workers {
            children.push(
                tokio::process::Command::new(&exe)
                    .arg("worker")
                    .env("DATABASE_URL", database_url)
                    .env(
                        "PINGLAYER_ENCRYPTION_KEY",
                        base64::engine::general_purpose::STANDARD.encode(key),
                    )
                    .env("PINGLAYER_GRAPH_BASE_URL", &graph)
                    .env("PINGLAYER_DATA_DIR", &dir)
                    .env("PINGLAYER_DISPATCH_BATCH", "500")
                    .env("PINGLAYER_DISPATCH_CONCURRENCY", "32")
                    .env("PINGLAYER_LOG", "warn")
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    // Billing: every marketing message costs 0.01 from a wallet topped up for all of them.
    let price = Money(100);
    let mut prices = PriceList::empty("USD");
    if billing {
        prices.default = Prices {
            marketing: Some(price),
            ..Default::default()
        };
        let posted = db
            .post_entry(
                tenant.id,
                pinglayer_store::billing::NewEntry {
                    kind: pinglayer_store::billing::EntryKind::Credit,
                    amount: Money(price.0 * messages as i64),
                    reference_type: "topup",
                    actor: "bench",
                    note: None,
                    idempotency: None,
                },
                now,
            )
            .await?;
        anyhow::ensure!(matches!(
            posted,
            pinglayer_store::billing::Posted::Applied(_)
        ));
    }
    db.set_price_list(&prices, now).await?;

    let mut campaigns = Vec::new();
    let launch_at = pinglayer_domain::Clock::now(&SystemClock);
    for (i, n) in number_ids.iter().enumerate() {
        let c = db
            .create_campaign(
                tenant.id,
                &spec(&format!("lane {i}"), *n, &format!("lane{i}")),
                None,
                None,
                launch_at,
            )
            .await?;
        let _ = db
            .launch_campaign(tenant.id, c.id, launch_at, launch_at)
            .await?;
        campaigns.push(c.id);
    }
    let started = Instant::now();
    // Sample each campaign's `done` counter every 500 ms for per-number rates.
    let mut samples: Vec<(f64, Vec<i64>)> = Vec::new();
    let (mut all_done, mut all_delivered) = (None, None);
    loop {
        let mut done = Vec::new();
        let (mut queued, mut sent, mut delivered, mut failed, mut fanned) = (0, 0, 0, 0, true);
        for c in &campaigns {
            let (t, runs) = db.campaign_counters(tenant.id, *c).await?;
            done.push(t.done);
            queued += t.queued;
            sent += t.sent;
            delivered += t.delivered;
            failed += t.failed;
            fanned &= runs == 1;
        }
        let at = started.elapsed().as_secs_f64();
        // Sends as "Meta" saw them, per number, at this instant.
        let per_number: Vec<i64> = {
            let log = sandbox.sent.lock().expect("sent");
            let mut counts = vec![0i64; pnids.len()];
            for r in log.iter() {
                if let Some(i) = pnids.iter().position(|p| *p == r.phone_number_id) {
                    counts[i] += 1;
                }
            }
            counts
        };
        samples.push((at, per_number));
        let total_done: i64 = done.iter().sum();
        if fanned && queued == messages as i64 && total_done == queued && all_done.is_none() {
            all_done = Some(at);
        }
        if fanned && delivered + failed == messages as i64 && all_delivered.is_none() {
            all_delivered = Some(at);
            anyhow::ensure!(failed == 0, "{failed} messages failed ({sent} sent)");
        }
        if all_done.is_some() && all_delivered.is_some() {
            break;
        }
        anyhow::ensure!(at < 600.0, "dispatch did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_done = all_done.expect("set");
    println!(
        "dispatch: {messages} messages over {numbers} numbers at {rate}/s each, {}: all handed to Meta in {all_done:.1} s = {:.0} msg/s; all `delivered` applied from webhooks after {:.1} s",
        if workers > 0 {
            format!("{workers} worker processes")
        } else {
            "one serve process".into()
        },
        messages as f64 / all_done,
        all_delivered.unwrap_or_default()
    );
    // Per-number rate over the steady part: from 1 s in to when the first number is 90% done.
    let per = messages as i64 / numbers as i64;
    let t1 = samples.iter().find(|(t, _)| *t >= 1.0).cloned();
    let t2 = samples
        .iter()
        .find(|(_, d)| d.iter().any(|x| *x >= per * 9 / 10))
        .cloned();
    if let (Some((a, da)), Some((b, db_))) = (t1, t2)
        && b > a
    {
        let rates: Vec<f64> = da
            .iter()
            .zip(&db_)
            .map(|(x, y)| (y - x) as f64 / (b - a))
            .collect();
        let worst = rates
            .iter()
            .map(|r| (r - rate as f64).abs() / rate as f64 * 100.0)
            .fold(0.0, f64::max);
        println!(
            "per-number rate over {a:.1}–{b:.1} s: {} (limit {rate}/s; worst deviation {worst:.1}%)",
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Exactly once: what the sandbox accepted, by our id.
    let sent: Vec<_> = sandbox.sent.lock().expect("sent").iter().cloned().collect();
    let mut ids: Vec<_> = sent
        .iter()
        .filter_map(|r| r.message.biz_opaque_callback_data.clone())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    let throttled = sandbox
        .stats()
        .throttled
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "exactly once: sandbox accepted {total} sends, {} distinct messages, {throttled} refused for throughput (130429)",
        ids.len()
    );
    if billing {
        let w = db.wallet(tenant.id).await?;
        let sum = db.ledger_sum(tenant.id).await?;
        println!(
            "billing: balance {} after {} messages at {price} (ledger sum {sum}; {})",
            w.balance,
            ids.len(),
            if w.balance == sum && w.balance.0 == price.0 * (messages - ids.len()) as i64 {
                "exact"
            } else {
                "MISMATCH"
            }
        );
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    for mut c in children {
        let _ = c.kill().await;
    }
    let _ = sb_stop.send(());
    anyhow::ensure!(
        total == messages && ids.len() == messages,
        "sent {total} for {messages} messages ({} distinct)",
        ids.len()
    );
    Ok(())
}
