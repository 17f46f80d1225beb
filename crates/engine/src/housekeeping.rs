//! Periodic purge of expired auth data and old raw webhooks, and closing imports whose process
//! died. Safe to run in many processes at once: each step is an idempotent conditional write.

use pinglayer_domain::Clock;
use pinglayer_store::{Db, housekeeping::Purged};
use std::{future::Future, time::Duration};

pub const INTERVAL: Duration = Duration::from_secs(600);

/// One pass; what tests call.
pub async fn step(db: &Db, clock: &dyn Clock) -> anyhow::Result<Purged> {
    let now = clock.now();
    let interrupted = db
        .fail_interrupted_imports(now - IMPORT_SILENCE, now)
        .await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "imports interrupted mid-file marked failed");
    }
    Ok(db.purge_expired(now).await?)
}

/// An import that has written no progress for this long has no runner any more (a live one
/// writes after every batch of a few thousand rows).
pub const IMPORT_SILENCE: chrono::Duration = chrono::Duration::minutes(15);

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
