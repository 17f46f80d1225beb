use clap::Parser;
use pinglayer::{
    admin,
    config::{AdminCommand, Cli, Command, CommonArgs, Env},
    startup::{self, Application},
    telemetry,
};
use pinglayer_domain::SystemClock;
use std::sync::Arc;

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
            let app = Application::build(db, settings, args.bind, Arc::new(SystemClock)).await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Worker(common) => {
            init_logs(&common);
            let db = startup::connect(&common).await?;
            pinglayer_engine::run_workers(
                db.clone(),
                Arc::new(SystemClock),
                startup::shutdown_signal(),
            )
            .await;
            db.close().await;
            Ok(())
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
