//! Building and running the application: the same path for the binary and for tests.

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pinglayer_api::{ApiContext, EngineLink, Environment, MetaApp, Settings, SmtpSettings};
use pinglayer_domain::{Clock, SignupPolicy};
use pinglayer_engine::{Engine, EngineConfig};
use pinglayer_store::Db;
use pinglayer_whatsapp::{Client, ClientConfig};
use std::{future::Future, net::SocketAddr, sync::Arc, sync::OnceLock, time::Duration};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::{CommonArgs, Env, ServeArgs, SignupPolicyArg, WhatsAppArgs},
    secrets,
};

/// Connects to the configured database and applies its migrations.
pub async fn connect(common: &CommonArgs) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("creating the data directory {}", common.data_dir.display()))?;
    let db = Db::connect(&common.database_url(), common.db_max_connections)
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// The process-wide Prometheus recorder (a recorder can be installed only once per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("installing the metrics recorder")
        })
        .clone()
}

/// The Cloud API client for these settings.
pub fn whatsapp_client(w: &WhatsAppArgs) -> anyhow::Result<Client> {
    Ok(Client::new(ClientConfig {
        base_url: w.graph_base_url.clone(),
        version: w.graph_api_version.clone(),
        timeout: Duration::from_secs(w.graph_timeout),
        ..Default::default()
    })?)
}

pub fn engine_config(w: &WhatsAppArgs) -> EngineConfig {
    EngineConfig {
        dispatch_batch: w.dispatch_batch,
        dispatch_concurrency: w.dispatch_concurrency,
        retry_for: Duration::from_secs(w.retry_for),
        refundable_codes: w
            .refundable_error_codes
            .clone()
            .unwrap_or_else(|| pinglayer_engine::billing::DEFAULT_REFUNDABLE.to_vec()),
        ..Default::default()
    }
}

pub fn settings_from(args: &ServeArgs) -> anyhow::Result<Settings> {
    let c = &args.common;
    let jwt_secret = secrets::load_or_generate(
        args.jwt_secret.as_deref(),
        &c.data_dir,
        "jwt.key",
        48,
        c.env,
        "--jwt-secret",
    )?;
    if jwt_secret.len() < 32 {
        anyhow::bail!("--jwt-secret must be at least 32 bytes long");
    }
    let enc = secrets::load_or_generate(
        args.encryption_key.as_deref(),
        &c.data_dir,
        "encryption.key",
        32,
        c.env,
        "--encryption-key",
    )?;
    let encryption_key = secrets::encryption_key(&enc)?;
    Ok(Settings {
        env: match c.env {
            Env::Development => Environment::Development,
            Env::Production => Environment::Production,
        },
        data_dir: c.data_dir.clone(),
        public_url: args.public_url.trim_end_matches('/').to_string(),
        signup_policy: match args.signup_policy {
            SignupPolicyArg::Open => SignupPolicy::Open,
            SignupPolicyArg::Approval => SignupPolicy::Approval,
            SignupPolicyArg::Closed => SignupPolicy::Closed,
        },
        jwt_secret,
        encryption_key,
        access_token_ttl: Duration::from_secs(args.access_token_ttl),
        refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl),
        rate_limit_per_second: args.rate_limit_per_second,
        rate_limit_burst: args.rate_limit_burst,
        max_body_bytes: args.max_body_bytes,
        max_import_bytes: args.max_import_bytes,
        auth_cache_ttl: Duration::from_millis(args.auth_cache_ttl_ms),
        cors_origins: args
            .cors_origins
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        login_max_failures: args.login_max_failures,
        login_window: Duration::from_secs(args.login_window),
        smtp: args.smtp_url.clone().map(|url| SmtpSettings {
            url,
            from: args.smtp_from.clone(),
        }),
        meta: MetaApp {
            app_id: args.meta_app_id.clone(),
            app_secret: args.meta_app_secret.clone(),
            verify_token: args.meta_verify_token.clone(),
        },
        geoip_db: args.geoip_db.clone(),
    })
}

/// A bound, not yet serving, application. Binding first lets tests ask for port 0 and learn
/// the real port before any request is sent.
pub struct Application {
    listener: TcpListener,
    ctx: ApiContext,
    engine: Engine,
    run_workers: bool,
}

impl Application {
    pub async fn build(
        db: Db,
        settings: Settings,
        bind: SocketAddr,
        clock: Arc<dyn Clock>,
        whatsapp: Client,
        engine_config: EngineConfig,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let cipher = pinglayer_domain::crypto::Cipher::new(&settings.encryption_key);
        let engine = Engine::new(
            db.clone(),
            clock.clone(),
            whatsapp.clone(),
            cipher,
            engine_config,
        );
        let link = EngineLink {
            whatsapp,
            wake_dispatch: engine.wake.dispatch.clone(),
            wake_webhooks: engine.wake.webhooks.clone(),
            wake_campaigns: engine.wake.campaigns.clone(),
            webhook_intake: engine.intake.clone(),
            clicks: pinglayer_engine::clicks::Clicks::new(settings.geoip_db.as_deref())?,
        };
        let ctx = ApiContext::new(db, settings, clock, Some(metrics_handle()), link)?;
        Ok(Self {
            listener,
            ctx,
            engine,
            run_workers: true,
        })
    }

    /// The engine this application runs (tests drive its steps directly).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serve without the background workers: tests then step the engine themselves.
    pub fn without_workers(mut self) -> Self {
        self.run_workers = false;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn context(&self) -> &ApiContext {
        &self.ctx
    }

    /// Serves the API and runs the background workers until `shutdown` resolves; then stops
    /// taking connections, lets requests in flight finish, and flushes in-memory state.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = watch::channel(false);
        let stop = move |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let workers = if self.run_workers {
            tokio::spawn(self.engine.clone().run(stop(rx.clone())))
        } else {
            tokio::spawn(async {})
        };
        let upkeep = self.ctx.clone().start_upkeep(stop(rx.clone())).await?;
        let app = pinglayer_api::router(self.ctx.clone());
        tracing::info!(addr = %self.local_addr(), "serving");
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await;
        let _ = workers.await;
        let _ = upkeep.await;
        // Requests that finished after the upkeep's last flush may have queued clicks.
        self.ctx.flush_clicks().await;
        self.ctx.db.close().await;
        served.context("serving HTTP")
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
