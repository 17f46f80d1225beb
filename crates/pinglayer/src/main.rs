use clap::Parser;
use pinglayer::{
    admin,
    config::{AdminCommand, BenchCommand, Cli, Command, CommonArgs, ContactsCommand, Env},
    startup::{self, Application},
    telemetry,
};
use pinglayer_domain::SystemClock;
use std::sync::Arc;

// glibc's malloc was a third of the importer's CPU (a batch's rows, cells and bind arrays
// freed together make it consolidate chunks); mimalloc's per-thread pages don't.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is worth knowing about.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: could not read .env: {e}");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logs(&args.common);
            let settings = startup::settings_from(&args)?;
            let db = startup::connect(&args.common).await?;
            tracing::info!(backend = ?db.backend(), env = ?args.common.env, "database ready");
            let client = startup::whatsapp_client(&args.whatsapp)?;
            let app = Application::build(
                db,
                settings,
                args.bind,
                Arc::new(SystemClock),
                client,
                startup::engine_config(&args.whatsapp),
            )
            .await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Worker(args) => {
            init_logs(&args.common);
            let key = pinglayer::secrets::load_or_generate(
                args.encryption_key.as_deref(),
                &args.common.data_dir,
                "encryption.key",
                32,
                args.common.env,
                "--encryption-key",
            )?;
            let cipher =
                pinglayer_domain::crypto::Cipher::new(&pinglayer::secrets::encryption_key(&key)?);
            let db = startup::connect(&args.common).await?;
            let engine = pinglayer_engine::Engine::new(
                db.clone(),
                Arc::new(SystemClock),
                startup::whatsapp_client(&args.whatsapp)?,
                cipher,
                startup::engine_config(&args.whatsapp),
            );
            engine.run(startup::shutdown_signal()).await;
            db.close().await;
            Ok(())
        }
        Command::Contacts(ContactsCommand::Import {
            file,
            tenant,
            default_country,
            tags,
            update,
            common,
        }) => {
            init_logs(&common);
            let db = startup::connect(&common).await?;
            let result =
                pinglayer::cli::import_contacts(&db, &file, &tenant, default_country, tags, update)
                    .await;
            db.close().await;
            result
        }
        Command::Bench(b) => {
            telemetry::init("warn", false);
            match b {
                BenchCommand::Import { database_url, rows } => {
                    pinglayer::bench::import(&database_url, rows).await
                }
                BenchCommand::Webhooks {
                    database_url,
                    events,
                    batch,
                    concurrency,
                } => pinglayer::bench::webhooks(&database_url, events, batch, concurrency).await,
                BenchCommand::Sandbox {
                    numbers,
                    seconds,
                    concurrency,
                } => pinglayer::bench::sandbox(numbers, seconds, concurrency).await,
                BenchCommand::Contacts {
                    database_url,
                    contacts,
                    seconds,
                    connections,
                    import_rows,
                } => {
                    pinglayer::bench_contacts::contacts(
                        &database_url,
                        contacts,
                        seconds,
                        connections,
                        import_rows,
                    )
                    .await
                }
                BenchCommand::Redirect {
                    database_url,
                    seconds,
                    connections,
                    wrk,
                    pause_ms,
                } => {
                    pinglayer::bench_links::redirect(
                        &database_url,
                        seconds,
                        connections,
                        wrk,
                        pause_ms,
                    )
                    .await
                }
                BenchCommand::Dashboard {
                    database_url,
                    messages,
                    days,
                    runs,
                } => pinglayer::bench_links::dashboard(&database_url, messages, days, runs).await,
                BenchCommand::Campaign {
                    database_url,
                    contacts,
                    messages,
                    numbers,
                    rate,
                    workers,
                    billing,
                } => {
                    pinglayer::bench::campaign(
                        &database_url,
                        contacts,
                        messages,
                        numbers,
                        rate,
                        workers,
                        billing,
                    )
                    .await
                }
            }
        }
        Command::Sandbox(args) => {
            telemetry::init(&args.log, false);
            let sandbox =
                pinglayer_sandbox::Sandbox::build(sandbox_config(&args), args.bind).await?;
            println!(
                "pinglayer sandbox: Cloud API on http://{}",
                sandbox.local_addr()
            );
            sandbox.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate(common) => {
            init_logs(&common);
            let db = startup::connect(&common).await?;
            println!("migrations applied ({:?})", db.backend());
            db.close().await;
            Ok(())
        }
        Command::Admin(AdminCommand::CreateSuperadmin {
            email,
            password,
            name,
            common,
        }) => {
            init_logs(&common);
            let db = startup::connect(&common).await?;
            let outcome = admin::create_superadmin(&db, &email, &password, &name).await;
            db.close().await;
            println!("{}", outcome?);
            Ok(())
        }
    }
}

fn init_logs(c: &CommonArgs) {
    telemetry::init(&c.log, c.log_json || c.env == Env::Production);
}

fn sandbox_config(a: &pinglayer::config::SandboxArgs) -> pinglayer_sandbox::SandboxConfig {
    use pinglayer_sandbox::{SandboxConfig, SandboxNumber};
    use std::time::Duration;
    let base: u64 = a.phone_number_id.parse().unwrap_or(100_000_000_000_001);
    let numbers = (0..=a.extra_numbers as u64)
        .map(|i| SandboxNumber {
            phone_number_id: if i == 0 {
                a.phone_number_id.clone()
            } else {
                (base + i).to_string()
            },
            waba_id: a.waba_id.clone(),
            display_phone_number: a.display_phone_number.clone(),
            access_token: a.access_token.clone(),
            throughput_per_second: a.throughput,
        })
        .collect();
    SandboxConfig {
        webhook_url: a.webhook_url.clone(),
        app_id: a.app_id.clone(),
        app_secret: a.app_secret.clone(),
        numbers,
        delivered_after: Duration::from_millis(a.delivered_after_ms),
        read_after: Duration::from_millis(a.read_after_ms),
        read_rate: a.read_rate,
        fail_rate: a.fail_rate,
        duplicate_rate: a.duplicate_rate,
        reorder: a.reorder,
        batch_size: a.batch_size,
        template_review: Duration::from_millis(a.template_review_ms),
        pair_limit: !a.no_pair_limit,
        daily_unique_limit: a.daily_unique_limit,
        ..SandboxConfig::default()
    }
}
