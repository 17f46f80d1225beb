//! PingLayer's background engine: work that happens outside requests.
//!
//! Today that is housekeeping (purging expired sessions, tokens and codes). The dispatcher,
//! webhook applier and scheduler join here, each as a step function that tests can drive
//! directly and a loop that `serve` and `worker` run until shutdown.

pub mod housekeeping;

use pinglayer_domain::Clock;
use pinglayer_store::Db;
use std::{future::Future, sync::Arc};

/// Runs every background worker until `shutdown` resolves.
pub async fn run_workers(db: Db, clock: Arc<dyn Clock>, shutdown: impl Future<Output = ()> + Send) {
    tracing::info!("background workers started");
    housekeeping::run(&db, clock.as_ref(), shutdown).await;
    tracing::info!("background workers stopped");
}
