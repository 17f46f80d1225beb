//! Webhook POSTs on their way in: stored before Meta gets its 200, then handed to the applier.
//!
//! Group commit: requests that arrive while a write is running wait for it and are written
//! together by the next one (one statement, one commit), each answered once its own row is
//! durable. At 5,000 messages/s Meta posts thousands of webhooks a second; a statement and a
//! WAL flush each was the largest cost of taking them.
//!
//! Hand-off: while this process's applier runs, stored events are leased to it at insert and
//! queued here in memory, so it applies them without claiming them back from the table. If the
//! process dies, the lease runs out and any process claims them, as with every leased queue.

use chrono::{DateTime, Utc};
use pinglayer_store::{Db, webhook_events::WebhookEvent};
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Events handed over and not yet applied, at most; past that, new ones wait in the table.
const HANDED_MAX: usize = 20_000;

type Answer = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct WebhookIntake(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Received, waiting for the next write: (scope, body) and who to answer.
    waiting: Mutex<Vec<((String, String), Answer)>>,
    /// Held by the one request writing; the others queue on it (FIFO).
    writing: tokio::sync::Mutex<()>,
    handed: Mutex<VecDeque<WebhookEvent>>,
    /// Whether this process's applier is running (and so takes hand-offs).
    applier: AtomicBool,
    /// When the applier last looked in the table (for others' and retried events).
    claimed: Mutex<Option<Instant>>,
    /// How long a handed-over event belongs to this process.
    lease: Duration,
    /// Statements written so far (each holding one or more POSTs).
    writes: std::sync::atomic::AtomicU64,
}

fn answered(r: Result<Result<(), String>, oneshot::error::RecvError>) -> anyhow::Result<()> {
    match r {
        Ok(r) => r.map_err(anyhow::Error::msg),
        Err(_) => anyhow::bail!("the write holding this webhook was abandoned"),
    }
}

impl WebhookIntake {
    pub fn new(lease: Duration) -> Self {
        Self(Arc::new(Inner {
            lease,
            ..Default::default()
        }))
    }

    /// Stores one webhook POST durably (with whatever else arrived meanwhile).
    pub async fn store(
        &self,
        db: &Db,
        scope: String,
        body: String,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.0
            .waiting
            .lock()
            .expect("intake poisoned")
            .push(((scope, body), tx));
        // Either an earlier writer takes this event along (and answers), or this request
        // gets its turn and writes everything waiting. Waiting for the answer and for the turn
        // at once matters: each request queued behind the lock and writing in turn would
        // make the last one wait for as many writes as there are requests.
        let mut rx = rx;
        let turn = self.0.writing.lock();
        tokio::pin!(turn);
        tokio::select! {
            biased;
            r = &mut rx => return answered(r),
            _turn = &mut turn => {
                let batch = std::mem::take(&mut *self.0.waiting.lock().expect("intake poisoned"));
                if !batch.is_empty() {
                    self.write(db, batch, now).await;
                }
            }
        }
        answered(rx.await)
    }

    async fn write(&self, db: &Db, batch: Vec<((String, String), Answer)>, now: DateTime<Utc>) {
        let (received, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let hand = self.0.applier.load(Ordering::Acquire)
            && self.0.handed.lock().expect("intake poisoned").len() < HANDED_MAX;
        let lease_until =
            hand.then(|| now + chrono::Duration::from_std(self.0.lease).unwrap_or_default());
        let result = db.store_webhook_events(received, lease_until, now).await;
        self.0.writes.fetch_add(1, Ordering::Relaxed);
        let answer = match result {
            Ok(events) => {
                metrics::histogram!("webhook_intake_batch").record(events.len() as f64);
                if hand {
                    self.0
                        .handed
                        .lock()
                        .expect("intake poisoned")
                        .extend(events);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        for a in answers {
            let _ = a.send(answer.clone());
        }
    }

    /// How many writes stored the POSTs so far (fewer than POSTs when they arrived together).
    pub fn writes(&self) -> u64 {
        self.0.writes.load(Ordering::Relaxed)
    }

    /// Up to `limit` events handed over, oldest first.
    pub(crate) fn take(&self, limit: usize) -> Vec<WebhookEvent> {
        let mut q = self.0.handed.lock().expect("intake poisoned");
        let n = limit.min(q.len());
        q.drain(..n).collect()
    }

    /// Whether the applier, busy with handed events, should also look in the table now: when
    /// nothing was handed over, or at least every `every`.
    pub(crate) fn claim_due(&self, handed: usize, every: Duration) -> bool {
        let mut last = self.0.claimed.lock().expect("intake poisoned");
        let due = handed == 0 || last.is_none_or(|t| t.elapsed() >= every);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// The applier started (`true`) or stopped; when it stops, events still handed over are
    /// returned so they can be released to the table.
    pub(crate) fn set_applier(&self, running: bool) -> Vec<WebhookEvent> {
        self.0.applier.store(running, Ordering::Release);
        if running {
            Vec::new()
        } else {
            self.0
                .handed
                .lock()
                .expect("intake poisoned")
                .drain(..)
                .collect()
        }
    }
}
