//! The dispatcher: outbox → Cloud API.
//!
//! A round claims a batch of due messages (a committed lease, so a crashed worker's messages
//! return to the queue when the lease runs out), sends them concurrently, each paced by its
//! sending number's throughput, and records what Meta answered:
//! accepted → `sent` (webhooks take it further); transient errors → back to the queue with
//! back-off until `retry_for` has passed; anything else → `failed` with Meta's code and words.
//!
//! Double sends: Meta's send has no idempotency key. A message is sent twice only if a worker
//! dies (or its call times out) after Meta accepted it but before `sent` was recorded — a window
//! of one HTTP round trip plus one UPDATE. Our id rides in `biz_opaque_callback_data`, so even
//! then both copies' statuses land on the one message.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota};
use pinglayer_domain::{MessageId, NumberId, TenantId};
use pinglayer_store::messages::Claimed;
use pinglayer_whatsapp::{
    ErrorAction,
    types::{Content, SendMessage},
};
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::Engine;

/// A sending number as the dispatcher needs it: Meta's id, the decrypted token, its pace.
#[derive(Clone)]
pub struct Sender {
    pub phone_number_id: String,
    pub token: String,
    pub limiter: Arc<DefaultDirectRateLimiter>,
    rate: u32,
    loaded: Instant,
}

/// Senders by number, kept briefly (tokens can be rotated through the API).
#[derive(Clone, Default)]
pub struct Pacing(Arc<Mutex<HashMap<NumberId, Sender>>>);

const SENDER_TTL: Duration = Duration::from_secs(30);

/// When to try again after the `attempts`-th failure: doubling from 1 s, at least what Meta
/// asked for (131056: 4^X × its base), at most 15 minutes.
pub fn backoff(attempts: i32, meta_after: Option<Duration>) -> Duration {
    let n = attempts.clamp(1, 20) as u32 - 1;
    let doubling = Duration::from_secs(1u64 << n.min(10));
    let meta = meta_after
        .map(|a| a * 4u32.saturating_pow(n.min(5)))
        .unwrap_or_default();
    doubling.max(meta).min(Duration::from_secs(900))
}

impl Engine {
    async fn sender(&self, tenant: TenantId, number: NumberId) -> anyhow::Result<Sender> {
        if let Some(s) = self
            .pacing
            .0
            .lock()
            .expect("pacing poisoned")
            .get(&number)
            .filter(|s| s.loaded.elapsed() < SENDER_TTL)
        {
            return Ok(s.clone());
        }
        let n = self.db.number(tenant, number).await?;
        let token = self
            .cipher
            .decrypt(&format!("{tenant}/access_token"), &n.access_token_enc)?;
        let rps = NonZeroU32::new(n.throughput_per_second.clamp(1, 1000) as u32).expect("clamped");
        let mut map = self.pacing.0.lock().expect("pacing poisoned");
        // Keep the existing bucket when the rate is unchanged, so a refresh does not reset pacing.
        let limiter = match map.get(&number) {
            Some(old) if old.rate == rps.get() => old.limiter.clone(),
            _ => Arc::new(DefaultDirectRateLimiter::direct(Quota::per_second(rps))),
        };
        let s = Sender {
            phone_number_id: n.phone_number_id,
            token,
            limiter,
            rate: rps.get(),
            loaded: Instant::now(),
        };
        map.insert(number, s.clone());
        Ok(s)
    }

    /// One round: claim, send, record. Returns how many messages were claimed.
    pub async fn dispatch_once(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.config.lease)?;
        let claimed = self
            .db
            .claim_outbox(self.config.dispatch_batch, lease, now)
            .await?;
        let n = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(self.config.dispatch_concurrency, |m| async move {
                let (tenant, id) = (m.tenant_id, m.id);
                if let Err(e) = self.send_one(m).await {
                    tracing::warn!(%tenant, message_id = %id, error = %e, "could not record a send; the lease will expire and it is retried");
                }
            })
            .await;
        Ok(n)
    }

    async fn send_one(&self, m: Claimed) -> anyhow::Result<()> {
        let sender = match self.sender(m.tenant_id, m.number_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sending number unavailable");
                return self
                    .fail(
                        m.tenant_id,
                        m.id,
                        None,
                        "number_unavailable",
                        Some(
                            "The sending number is disconnected or its credentials cannot be read.",
                        ),
                    )
                    .await;
            }
        };
        let content: Content = match serde_json::from_str(&m.content) {
            Ok(c) => c,
            Err(e) => {
                return self
                    .fail(
                        m.tenant_id,
                        m.id,
                        None,
                        "invalid_content",
                        Some(&e.to_string()),
                    )
                    .await;
            }
        };
        let mut msg = SendMessage::new(m.to_phone.trim_start_matches('+'), content);
        msg.biz_opaque_callback_data = Some(m.id.to_string());
        sender.limiter.until_ready().await;
        let started = Instant::now();
        let result = self
            .whatsapp
            .send(&sender.phone_number_id, &sender.token, &msg)
            .await;
        metrics::histogram!("dispatch_send_seconds").record(started.elapsed().as_secs_f64());
        let now = self.clock.now();
        match result {
            Ok(resp) => {
                metrics::counter!("dispatch_sent_total").increment(1);
                let wamid = resp
                    .messages
                    .first()
                    .map(|x| x.id.as_str())
                    .unwrap_or_default();
                self.db
                    .record_accepted(m.tenant_id, m.id, wamid, now)
                    .await?;
            }
            Err(e) => {
                let code = e.code();
                metrics::counter!("dispatch_errors_total", "code" => code.map(|c| c.to_string()).unwrap_or_else(|| "transport".into())).increment(1);
                let (title, detail) = match &e {
                    pinglayer_whatsapp::ClientError::Graph { error, .. } => {
                        (error.message.clone(), error.details().map(str::to_string))
                    }
                    other => (other.to_string(), None),
                };
                match e.action() {
                    ErrorAction::RetryLater { after }
                        if within(m.created_at, now, self.config.retry_for) =>
                    {
                        let at = now + chrono::Duration::from_std(backoff(m.attempts, after))?;
                        self.db
                            .record_retry(m.tenant_id, m.id, at, code, &title, now)
                            .await?;
                    }
                    _ => {
                        self.fail(m.tenant_id, m.id, code, &title, detail.as_deref())
                            .await?
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail(
        &self,
        tenant: TenantId,
        id: MessageId,
        code: Option<i64>,
        title: &str,
        detail: Option<&str>,
    ) -> anyhow::Result<()> {
        metrics::counter!("dispatch_failed_total").increment(1);
        Ok(self
            .db
            .record_failed(tenant, id, code, title, detail, self.clock.now())
            .await?)
    }

    pub(crate) async fn dispatch_loop(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let claimed = match self.dispatch_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch round failed");
                    0
                }
            };
            if claimed > 0 {
                continue;
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.dispatch.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }
}

fn within(created: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> bool {
    chrono::Duration::from_std(window).is_ok_and(|w| now - created < w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_honours_meta_and_caps() {
        assert_eq!(backoff(1, None), Duration::from_secs(1));
        assert_eq!(backoff(3, None), Duration::from_secs(4));
        assert_eq!(
            backoff(2, Some(Duration::from_secs(6))),
            Duration::from_secs(24)
        );
        assert_eq!(backoff(30, None), Duration::from_secs(900));
    }
}
