//! `pinglayer bench redirect` and `pinglayer bench dashboard`: smart-link redirects with click
//! recording against a bare axum redirect in the same run, and the analytics dashboard over a
//! large seeded message table. Figures go in docs/benchmarks.md.

use anyhow::Context;
use axum::http::{StatusCode, header};
use pinglayer_domain::{Clock, SystemClock, TenantStatus};
use pinglayer_store::{Db, links::NewLink, on_db, tenants};
use serde_json::json;
use std::{
    net::SocketAddr,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::startup::Application;

const BROWSER: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";

/// What one load run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) requests: u64,
    pub(crate) per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// The application on a random port, without background workers (the API's upkeep, which
/// writes clicks, runs as in `serve`).
pub(crate) async fn start_app(
    db: &Db,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let mut settings = pinglayer_api::Settings::for_tests(std::env::temp_dir());
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
    .await?
    .without_workers();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    Ok((addr, tx))
}

/// `wrk` with a browser's user agent; its requests/s, latency percentiles and request count.
/// With `pause_ms`, each connection waits that long between requests (a wrk Lua `delay()`),
/// which caps the offered load near `connections × 1000 / pause_ms` per second.
pub(crate) fn wrk(
    url: &str,
    seconds: u64,
    connections: usize,
    threads: usize,
    pause_ms: Option<u32>,
) -> anyhow::Result<Load> {
    wrk_with(url, seconds, connections, threads, pause_ms, &[])
}

/// [`wrk`] with extra request headers (`"Name: value"`).
pub(crate) fn wrk_with(
    url: &str,
    seconds: u64,
    connections: usize,
    threads: usize,
    pause_ms: Option<u32>,
    headers: &[String],
) -> anyhow::Result<Load> {
    let lua = pause_ms.map(|ms| format!("function delay()\n  return {ms}\nend\n"));
    wrk_lua(url, seconds, connections, threads, lua.as_deref(), headers)
}

/// [`wrk_with`] running a Lua script of wrk's (`delay()`, `request()`, …).
pub(crate) fn wrk_lua(
    url: &str,
    seconds: u64,
    connections: usize,
    threads: usize,
    lua: Option<&str>,
    headers: &[String],
) -> anyhow::Result<Load> {
    let mut args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        "-H".into(),
        format!("User-Agent: {BROWSER}"),
    ];
    for h in headers {
        args.extend(["-H".into(), h.clone()]);
    }
    let script = std::env::temp_dir().join(format!(
        "pinglayer-wrk-{}-{}.lua",
        std::process::id(),
        uuid::Uuid::now_v7()
    ));
    if let Some(lua) = lua {
        std::fs::write(&script, lua)?;
        args.extend(["-s".into(), script.display().to_string()]);
    }
    args.push(url.to_string());
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .context("running wrk (install it, or leave out --wrk)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        !text.contains("Non-2xx or 3xx responses"),
        "wrk saw errors:\n{text}"
    );
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
    };
    let latency = |p: &str| -> anyhow::Result<Duration> {
        let v = field(p).with_context(|| format!("no {p} in wrk's output:\n{text}"))?;
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse()?;
        Ok(Duration::from_secs_f64(match unit {
            "us" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            _ => anyhow::bail!("unknown unit in {v}"),
        }))
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    Ok(Load {
        requests,
        per_second: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .context("no Requests/sec")?,
        p50: latency("50%")?,
        p99: latency("99%")?,
    })
}

/// The in-process load generator (when wrk is not installed): `connections` clients in a loop
/// for `seconds`. It shares the cores with the server, so its figures are conservative.
async fn internal(url: &str, seconds: u64, connections: usize) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = client.get(&url).header("user-agent", BROWSER).send().await;
                    match r {
                        Ok(r) if r.status() == StatusCode::FOUND => lat.push(t.elapsed()),
                        other => return Err(anyhow::anyhow!("redirect failed: {other:?}")),
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Load {
        requests: all.len() as u64,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
    })
}

/// Redirects: a link in a fresh tenant, followed by a browser as fast as the load generator
/// can; then the same against a bare axum handler answering the same 302 (no middleware, no
/// lookup, no recording). Afterwards every request must have been recorded as a click.
pub async fn redirect(
    database_url: &str,
    seconds: u64,
    connections: usize,
    use_wrk: bool,
    pause_ms: Option<u32>,
) -> anyhow::Result<()> {
    let db = Db::connect(database_url, 16).await.context("connecting")?;
    db.migrate().await?;
    let now = SystemClock.now();
    let mut tx = db.begin().await?;
    let tenant =
        tenants::create_in(&mut tx, "Bench links", TenantStatus::Active, false, now).await?;
    tx.commit().await?;
    let link = db
        .create_link(
            tenant.id,
            &NewLink {
                url: "https://shop.example/sale".into(),
                utm: Some(json!({"source": "whatsapp", "campaign": "bench"}).to_string()),
                campaign_id: None,
                expires_at: None,
                short_base: "http://127.0.0.1".into(),
                created_by: None,
            },
            now,
        )
        .await?;
    let (addr, stop) = start_app(&db).await?;

    let bare = axum::Router::new().route(
        "/s/{code}",
        axum::routing::get(|| async {
            (
                StatusCode::FOUND,
                [
                    (
                        header::LOCATION,
                        "https://shop.example/sale?utm_source=whatsapp&utm_campaign=bench",
                    ),
                    (header::CACHE_CONTROL, "no-store"),
                ],
            )
        }),
    );
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(bare_listener, bare).await });

    let run = |addr: SocketAddr| {
        let url = format!("http://{addr}/s/{}", link.code);
        async move {
            if use_wrk {
                tokio::task::spawn_blocking(move || wrk(&url, seconds, connections, 2, pause_ms))
                    .await?
            } else {
                internal(&url, seconds, connections).await
            }
        }
    };
    // Warm both up (connections, the link cache), then measure each once.
    let warm = seconds.min(2);
    if use_wrk {
        let _ = tokio::task::spawn_blocking({
            let url = format!("http://{bare_addr}/s/{}", link.code);
            move || wrk(&url, warm, connections, 2, pause_ms)
        })
        .await?;
    }
    let bare_load = run(bare_addr).await?;
    let clicks_before = db.link(tenant.id, link.id).await?.clicks;
    let ours = run(addr).await?;
    let load_done = Instant::now();
    // Every redirect answered is a click to be written; wait for the writer to catch up.
    let expected = ours.requests as i64;
    let recorded = loop {
        let l = db.link(tenant.id, link.id).await?;
        let n = l.clicks + l.bot_clicks - clicks_before;
        if n >= expected || load_done.elapsed() > Duration::from_secs(120) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let caught_up = load_done.elapsed();
    let _ = stop.send(());
    let generator = match (use_wrk, pause_ms) {
        (true, Some(ms)) => format!("wrk -t2, {ms} ms between a connection's requests"),
        (true, None) => "wrk -t2".into(),
        (false, _) => "in-process client".into(),
    };
    println!(
        "backend: {:?}; {generator}, {connections} connections, {seconds} s each",
        db.backend()
    );
    let line = |name: &str, l: &Load| {
        println!(
            "{name}: {:.0} redirects/s, p50 {:.2?}, p99 {:.2?} ({} requests)",
            l.per_second, l.p50, l.p99, l.requests
        )
    };
    line("bare axum redirect", &bare_load);
    line("GET /s/{code} with click recording", &ours);
    println!(
        "ratio: {:.2} of the bare redirect's throughput",
        ours.per_second / bare_load.per_second
    );
    println!(
        "clicks recorded: {recorded} (at least {expected} expected; the writer caught up {:.1?} after the load stopped)",
        caught_up
    );
    anyhow::ensure!(recorded >= expected, "clicks were lost");
    Ok(())
}

/// The dashboard over `messages` seeded messages of one tenant (PostgreSQL): messages spread
/// over `days` days, 4 categories, 10 numbers, a tenth of them inbound; rollups rebuilt from
/// them with the migration's own backfill; then the dashboard, the messages report and the
/// operator's view are asked for `runs` times each over the last 90 days, through HTTP.
pub async fn dashboard(
    database_url: &str,
    messages: u64,
    days: u32,
    runs: usize,
) -> anyhow::Result<()> {
    let db = Db::connect(database_url, 16).await.context("connecting")?;
    anyhow::ensure!(
        matches!(db, Db::Postgres(_)),
        "the dashboard benchmark seeds with PostgreSQL's generate_series: give a postgres:// URL"
    );
    db.migrate().await?;
    let (addr, stop) = start_app(&db).await?;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let email = format!("bench-{}@bench.test", uuid::Uuid::new_v4().simple());
    let r: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"business_name": "Bench analytics", "name": "Bench", "email": email, "password": "correct horse battery"}))
        .send()
        .await?
        .json()
        .await?;
    let token = r["access_token"]
        .as_str()
        .context("registered")?
        .to_string();
    let tenant: uuid::Uuid = r["tenant"]["id"].as_str().context("tenant")?.parse()?;

    let seeded = Instant::now();
    let Db::Postgres(pg) = &db else {
        unreachable!()
    };
    let numbers: Vec<uuid::Uuid> = (0..10).map(|_| uuid::Uuid::now_v7()).collect();
    let contact = uuid::Uuid::now_v7();
    let now = SystemClock.now();
    const CHUNK: u64 = 1_000_000;
    let mut from = 0u64;
    while from < messages {
        let to = (from + CHUNK).min(messages) - 1;
        sqlx::query(
            "insert into messages (tenant_id, id, number_id, contact_id, direction, kind, content, preview, to_phone,
                status, status_rank, attempts, created_at, updated_at, sent_at, delivered_at, read_at, failed_at, category)
             select $1, gen_random_uuid(), ($2::uuid[])[1 + g % 10], $3,
                case when g % 10 = 0 then 'inbound' else 'outbound' end, 'template', '', 'bench', '+919800000000',
                case when g % 10 = 0 then 'received' when g % 50 = 1 then 'failed' when g % 3 = 0 then 'read'
                     when g % 3 = 1 then 'delivered' else 'sent' end,
                case when g % 10 = 0 then 6 when g % 50 = 1 then 5 when g % 3 = 0 then 4 when g % 3 = 1 then 3 else 2 end,
                1, t, t,
                case when g % 10 <> 0 and g % 50 <> 1 then t end,
                case when g % 10 <> 0 and g % 50 <> 1 and g % 3 <> 2 then t + interval '2 seconds' end,
                case when g % 10 <> 0 and g % 50 <> 1 and g % 3 = 0 then t + interval '30 seconds' end,
                case when g % 50 = 1 then t end,
                case when g % 10 = 0 then null else (array['marketing', 'utility', 'authentication', 'service'])[1 + g % 4] end
             from (select g, $4::timestamptz - ((g * 7919) % ($5::bigint * 86400)) * interval '1 second' as t
                   from generate_series($6::bigint, $7::bigint) g) s",
        )
        .bind(tenant)
        .bind(&numbers)
        .bind(contact)
        .bind(now)
        .bind(days as i64)
        .bind(from as i64)
        .bind(to as i64)
        .execute(pg)
        .await?;
        from = to + 1;
        println!("seeded {from} messages ({:.0?})", seeded.elapsed());
    }
    let seed_time = seeded.elapsed();
    let rebuilt = Instant::now();
    db.rebuild_analytics().await?;
    let rebuild_time = rebuilt.elapsed();
    on_db!(&db, p => sqlx::query("analyze").execute(p).await.map(|r| r.rows_affected()))?;
    let total: i64 = on_db!(&db, p => sqlx::query_scalar("select count(*) from messages where tenant_id = $1")
        .bind(tenant)
        .fetch_one(p)
        .await)?;
    let rollup_rows: i64 = on_db!(&db, p => sqlx::query_scalar("select count(*) from analytics_daily where tenant_id = $1")
        .bind(tenant)
        .fetch_one(p)
        .await)?;

    let today = now.date_naive();
    let from_day = today - chrono::Duration::days(89);
    let root = format!("root-{}@bench.test", uuid::Uuid::new_v4().simple());
    crate::admin::create_superadmin(&db, &root, "a long bench passphrase", "Bench root").await?;
    let r: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": root, "password": "a long bench passphrase"}))
        .send()
        .await?
        .json()
        .await?;
    let admin = r["access_token"]
        .as_str()
        .context("superadmin")?
        .to_string();
    let mut report = Vec::new();
    for (name, path, token) in [
        (
            "dashboard (90 days)",
            format!("/api/v1/analytics/dashboard?from={from_day}&to={today}"),
            &token,
        ),
        (
            "messages by day (90 days)",
            format!("/api/v1/analytics/messages?group_by=day&from={from_day}&to={today}"),
            &token,
        ),
        (
            "messages by number (90 days)",
            format!("/api/v1/analytics/messages?group_by=number&from={from_day}&to={today}"),
            &token,
        ),
        (
            "admin analytics, every tenant (90 days)",
            format!("/api/v1/admin/analytics?from={from_day}&to={today}"),
            &admin,
        ),
    ] {
        let mut times = Vec::with_capacity(runs);
        let mut sent = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            let body: serde_json::Value = r.json().await?;
            times.push(t.elapsed());
            if let Some(s) = body["totals"]["sent"].as_i64() {
                sent = s;
            }
        }
        times.sort();
        report.push((
            name,
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            sent,
        ));
    }
    let _ = stop.send(());
    println!("backend: {:?}", db.backend());
    println!(
        "{total} messages of one tenant over {days} days seeded in {seed_time:.1?}; rollups rebuilt from them in {rebuild_time:.1?} ({rollup_rows} daily rollup rows for the tenant)"
    );
    for (name, min, p50, max, sent) in report {
        println!(
            "{name}: min {min:.1?}, median {p50:.1?}, max {max:.1?} over {runs} requests{}",
            if sent > 0 {
                format!(" (sent in range: {sent})")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
