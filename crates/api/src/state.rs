//! `ApiContext`: what every handler can reach.

use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use metrics_exporter_prometheus::PrometheusHandle;
use pinglayer_domain::{ApiKeyId, Clock, TenantId};
use pinglayer_store::Db;
use std::{
    collections::HashMap,
    num::NonZeroU32,
    ops::Deref,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    Settings,
    auth::{cache::AuthCache, secrets::Secrets, throttle::Throttle},
    mailer::Mailer,
};

#[derive(Clone)]
pub struct ApiContext(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub secrets: Secrets,
    pub mailer: Mailer,
    /// Failed password sign-ins per e-mail, and (with 4× the allowance) per IP.
    pub login_failures: Throttle,
    pub login_failures_ip: Throttle,
    /// One-time-code requests per e-mail, and per IP.
    pub otp_requests: Throttle,
    pub otp_requests_ip: Throttle,
    /// Requests per credential or IP; `None` when the operator turned it off.
    pub rate_limiter: Option<DefaultKeyedRateLimiter<u64>>,
    pub key_usage: KeyUsage,
    pub auth_cache: AuthCache,
    /// The plan's requests per minute, per tenant.
    pub plan_rates: crate::auth::plan_rate::PlanRates,
    pub metrics: Option<PrometheusHandle>,
    pub whatsapp: pinglayer_whatsapp::Client,
    pub cipher: pinglayer_domain::crypto::Cipher,
    /// Poke the engine: a message was queued / a webhook event stored.
    pub wake_dispatch: Arc<tokio::sync::Notify>,
    pub wake_webhooks: Arc<tokio::sync::Notify>,
    pub wake_campaigns: Arc<tokio::sync::Notify>,
    /// Stores webhook POSTs (together when they arrive together) for the engine.
    pub webhook_intake: pinglayer_engine::webhook_intake::WebhookIntake,
    /// Decrypted per-number app secrets by phone_number_id, for webhook signatures.
    pub number_secrets: Mutex<HashMap<String, CachedSecret>>,
    /// Smart-link clicks waiting to be written, and the redirect's lookups.
    pub clicks: pinglayer_engine::clicks::Clicks,
    pub link_cache: crate::routes::links::LinkCache,
    /// Contact-list pages, served again while the tenant's contacts are unchanged.
    pub contact_pages: crate::contact_pages::ContactPages,
}

/// A number's own app secret (or none), and when it was read.
pub type CachedSecret = (Option<Vec<u8>>, std::time::Instant);

/// What the API shares with the engine running beside it.
#[derive(Clone)]
pub struct EngineLink {
    pub whatsapp: pinglayer_whatsapp::Client,
    pub wake_dispatch: Arc<tokio::sync::Notify>,
    pub wake_webhooks: Arc<tokio::sync::Notify>,
    pub wake_campaigns: Arc<tokio::sync::Notify>,
    pub webhook_intake: pinglayer_engine::webhook_intake::WebhookIntake,
    pub clicks: pinglayer_engine::clicks::Clicks,
}

impl Deref for ApiContext {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiContext {
    pub fn new(
        db: Db,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Option<PrometheusHandle>,
        engine: EngineLink,
    ) -> anyhow::Result<Self> {
        let rate_limiter = NonZeroU32::new(settings.rate_limit_per_second).map(|rps| {
            let burst = NonZeroU32::new(settings.rate_limit_burst).unwrap_or(rps);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rps).allow_burst(burst))
        });
        Ok(Self(Arc::new(Inner {
            secrets: Secrets::new(&settings.jwt_secret),
            mailer: Mailer::from_settings(&settings)?,
            login_failures: Throttle::new(settings.login_max_failures, settings.login_window),
            login_failures_ip: Throttle::new(
                settings.login_max_failures * 4,
                settings.login_window,
            ),
            otp_requests: Throttle::new(3, Duration::from_secs(15 * 60)),
            otp_requests_ip: Throttle::new(20, Duration::from_secs(15 * 60)),
            rate_limiter,
            key_usage: KeyUsage::default(),
            auth_cache: AuthCache::new(settings.auth_cache_ttl),
            plan_rates: Default::default(),
            metrics,
            whatsapp: engine.whatsapp,
            cipher: pinglayer_domain::crypto::Cipher::new(&settings.encryption_key),
            wake_dispatch: engine.wake_dispatch,
            wake_webhooks: engine.wake_webhooks,
            wake_campaigns: engine.wake_campaigns,
            webhook_intake: engine.webhook_intake,
            number_secrets: Mutex::new(HashMap::new()),
            clicks: engine.clicks,
            link_cache: Default::default(),
            contact_pages: Default::default(),
            db,
            settings,
            clock,
        })))
    }

    /// Starts the background upkeep of the API's in-memory state and returns once it runs:
    /// the auth-change listener is listening (so no change can be missed once requests are
    /// served), API keys' `last_used_at` is written every 5 s, idle rate-limit buckets are
    /// forgotten. It stops when `shutdown` resolves, after a last flush.
    pub async fn start_upkeep(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listener = self.db.change_listener().await?;
        let cache_ctx = self.clone();
        let listening = tokio::spawn(async move {
            let ctx = &cache_ctx;
            if let Err(e) = listener
                .run(|tenant| ctx.auth_cache.invalidate(tenant))
                .await
            {
                // Without notices, other processes' changes reach this one only by TTL.
                tracing::error!(error = %e, "auth-change listener stopped");
                ctx.auth_cache.invalidate(None);
            }
        });
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            // Smart-link clicks are written in small batches, often: the database work is spread
            // evenly instead of arriving in bursts that hold requests up.
            let mut clicks = tokio::time::interval(Duration::from_millis(50));
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = clicks.tick() => {
                        self.flush_clicks().await;
                        continue;
                    }
                    _ = tick.tick() => {}
                    _ = &mut shutdown => break,
                }
                self.flush_key_usage().await;
                if let Some(l) = &self.rate_limiter {
                    l.retain_recent();
                }
            }
            listening.abort();
            self.flush_key_usage().await;
            self.flush_clicks().await;
        }))
    }

    /// Something that can withdraw access changed in `tenant`: forget its cached principals
    /// here and in every other process sharing the database.
    pub async fn auth_changed(&self, tenant: pinglayer_domain::TenantId) {
        self.auth_cache.invalidate(Some(tenant));
        if let Err(e) = self.db.notify_auth_changed(tenant).await {
            tracing::warn!(error = %e, "could not broadcast an auth change");
        }
    }

    /// Writes the queued smart-link clicks (also called once more after the last request of
    /// a graceful shutdown).
    pub async fn flush_clicks(&self) {
        if let Err(e) = self.clicks.flush(&self.db).await {
            tracing::warn!(error = %e, "could not record link clicks; they stay queued");
        }
    }

    pub async fn flush_key_usage(&self) {
        let batch = self.key_usage.take();
        if let Err(e) = self.db.touch_api_keys(&batch).await {
            tracing::warn!(error = %e, "could not record API key usage");
        }
    }
}

/// When each API key was last used, gathered in memory and written in batches.
#[derive(Default)]
pub struct KeyUsage(Mutex<HashMap<(TenantId, ApiKeyId), DateTime<Utc>>>);

impl KeyUsage {
    pub fn record(&self, tenant: TenantId, key: ApiKeyId, at: DateTime<Utc>) {
        self.0
            .lock()
            .expect("key usage poisoned")
            .insert((tenant, key), at);
    }
    fn take(&self) -> Vec<(TenantId, ApiKeyId, DateTime<Utc>)> {
        std::mem::take(&mut *self.0.lock().expect("key usage poisoned"))
            .into_iter()
            .map(|((t, k), at)| (t, k, at))
            .collect()
    }
}
