//! Periodic purge of expired auth data. Safe to run in many processes at once: each purge is a
//! set of idempotent `DELETE … WHERE expired` statements.

use pinglayer_domain::Clock;
use pinglayer_store::{Db, housekeeping::Purged};
use std::{future::Future, time::Duration};

pub const INTERVAL: Duration = Duration::from_secs(600);

/// One pass; what tests call.
pub async fn step(db: &Db, clock: &dyn Clock) -> anyhow::Result<Purged> {
    Ok(db.purge_expired(clock.now()).await?)
}

pub async fn run(db: &Db, clock: &dyn Clock, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => return,
        }
        match step(db, clock).await {
            Ok(p) if p != Purged::default() => tracing::info!(?p, "purged expired auth data"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
        }
    }
}
