//! PingLayer's background engine: the work that happens outside requests.
//!
//! - [`dispatcher`]: claims due messages from the outbox, paces them per sending number, sends
//!   them through the Cloud API and records the answer (retrying what Meta says is transient);
//! - [`campaigns`]: starts due campaign runs and fans their audiences out into the outbox;
//! - [`webhooks`]: applies stored webhook events — delivery statuses (forward-only, batched),
//!   inbound messages (contacts, conversations, the 24-hour window), template reviews;
//! - [`housekeeping`]: purges expired auth data.
//!
//! Each has a `*_once` step function that tests drive directly, and a loop that `serve` and
//! `worker` run until shutdown. Several processes may run them on one PostgreSQL database:
//! every claim is a committed lease taken with `FOR UPDATE SKIP LOCKED`.

pub mod billing;
pub mod campaigns;
pub mod clicks;
pub mod dispatcher;
pub mod housekeeping;
pub mod imports;
pub mod webhook_intake;
pub mod webhooks;

use pinglayer_domain::{Clock, crypto::Cipher};
use pinglayer_store::Db;
use pinglayer_whatsapp::Client;
use std::{future::Future, sync::Arc, time::Duration};
use tokio::sync::{Notify, watch};

/// What the engine runs with.
#[derive(Clone)]
pub struct Engine {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub whatsapp: Client,
    pub cipher: Cipher,
    pub config: EngineConfig,
    /// Poked when there is new work (a message queued, a webhook stored), so the loops need not
    /// wait for their next poll.
    pub wake: Wake,
    /// Webhook POSTs stored together and handed to this process's applier.
    pub intake: webhook_intake::WebhookIntake,
    pub(crate) pacing: dispatcher::Pacing,
    pub(crate) lanes: dispatcher::Lanes,
    pub(crate) plans: campaigns::Plans,
}

#[derive(Clone, Default)]
pub struct Wake {
    pub dispatch: Arc<Notify>,
    pub webhooks: Arc<Notify>,
    pub campaigns: Arc<Notify>,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Messages claimed per round.
    pub dispatch_batch: i64,
    /// Sends in flight at once per process.
    pub dispatch_concurrency: usize,
    /// How long a claimed message belongs to its worker before another may take it over.
    pub lease: Duration,
    /// How long transient failures (rate limits, frequency caps, 5xx) are retried.
    pub retry_for: Duration,
    /// How often idle loops look for work they were not told about (other processes').
    pub poll: Duration,
    pub webhook_batch: i64,
    /// Meta error codes on a `failed` status that refund the message's charge.
    pub refundable_codes: Vec<i64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            dispatch_batch: 200,
            dispatch_concurrency: 64,
            lease: Duration::from_secs(60),
            retry_for: Duration::from_secs(3600),
            poll: Duration::from_millis(200),
            webhook_batch: 200,
            refundable_codes: billing::DEFAULT_REFUNDABLE.to_vec(),
        }
    }
}

impl Engine {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        whatsapp: Client,
        cipher: Cipher,
        config: EngineConfig,
    ) -> Self {
        Self {
            db,
            clock,
            whatsapp,
            cipher,
            intake: webhook_intake::WebhookIntake::new(config.lease),
            config,
            wake: Wake::default(),
            pacing: Default::default(),
            lanes: Default::default(),
            plans: Default::default(),
        }
    }

    /// Runs every background worker until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (tx, rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tracing::info!("background workers started");
        let d = tokio::spawn(self.clone().dispatch_loop(stopped(rx.clone())));
        let w = tokio::spawn(self.clone().webhook_loop(stopped(rx.clone())));
        let c = tokio::spawn(self.clone().campaign_loop(stopped(rx.clone())));
        let h = {
            let db = self.db.clone();
            let clock = self.clock.clone();
            let stop = stopped(rx.clone());
            tokio::spawn(async move { housekeeping::run(&db, clock.as_ref(), stop).await })
        };
        shutdown.await;
        let _ = tx.send(true);
        let _ = tokio::join!(d, w, c, h);
        tracing::info!("background workers stopped");
    }
}
