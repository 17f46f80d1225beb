//! The dispatcher: outbox → Cloud API, one lane per sending number.
//!
//! Each number with due messages gets a lane: one process at a time holds it (a lease row in
//! `dispatch_lanes`, renewed before every batch), so the number's throughput is honoured across
//! any number of `serve`/`worker` processes, and numbers are served independently — one
//! tenant's million-message campaign never delays another number's messages. Within a lane,
//! conversational and one-off messages (priority 0) go before campaign messages (priority 1).
//!
//! A batch is half a second of the number's throughput: claimed with a committed lease (a
//! crashed worker's messages return to the queue when the lease runs out), campaign messages
//! rendered for their contact, sent concurrently under the number's token bucket, and recorded:
//! accepted → `sent` (webhooks take it further), all acceptances of the batch in one
//! transaction; transient errors → back to the queue with back-off until `retry_for` has
//! passed; anything else → `failed` with Meta's code and words.
//!
//! Double sends: Meta's send has no idempotency key. A message is sent twice only if a worker
//! dies (or its database write fails) after Meta accepted it but before the batch's acceptances
//! were recorded — a window of at most one batch (≈0.5 s of sending plus one transaction), and
//! only for the messages of that batch; they are sent again when their lease expires. Our id
//! rides in `biz_opaque_callback_data`, so both copies' statuses land on the one message.

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota};
use pinglayer_domain::{ContactId, MessageId, NumberId, RunId, TenantId, campaign::CampaignStatus};
use pinglayer_store::{
    contacts::Contact,
    messages::{Accepted, Claimed},
};
use pinglayer_whatsapp::{
    ErrorAction,
    types::{Content, SendMessage},
};
use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;

use crate::Engine;
use pinglayer_store::billing::Refusal;

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

/// A number's pace: `rate` per second with a tenth of a second of burst — enough to absorb the
/// pause between batches, too little to overshoot the number's limit in any one second.
pub fn pace(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate)
        .allow_burst(NonZeroU32::new((rate.get() / 10).max(1)).expect("positive"))
}

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
            _ => Arc::new(DefaultDirectRateLimiter::direct(pace(rps))),
        };
        metrics::gauge!("dispatch_lane_limit_per_second", "number" => n.phone_number_id.clone())
            .set(rps.get() as f64);
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

    /// Sends what is due on every number once (one batch each): for tests and tools.
    pub async fn dispatch_once(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut n = 0;
        for (tenant, number) in self.db.due_numbers(now).await? {
            if !self.lanes.try_open(number) {
                continue;
            }
            let holder = self.lanes.holder.clone();
            if self
                .db
                .acquire_lane(number, &holder, now + LANE_LEASE, now)
                .await?
            {
                n += self.lane_batch(tenant, number).await.unwrap_or(0);
                self.db.release_lane(number, &holder).await?;
            }
            self.lanes.close(number);
        }
        Ok(n)
    }

    /// One batch of one number's lane: claim, render campaign messages, send paced, record.
    /// Returns how many messages were claimed.
    async fn lane_batch(&self, tenant: TenantId, number: NumberId) -> anyhow::Result<usize> {
        let (n, batch) = self.fetch(tenant, number).await?;
        if let Some((sender, ready)) = batch {
            let outcomes = self.send_all(&sender, ready).await;
            self.record(outcomes).await?;
        }
        Ok(n)
    }

    /// Claims a lane's next batch and prepares it. Returns how many were claimed, and what to
    /// send with which sender (`None` when nothing can be sent).
    async fn fetch(
        &self,
        tenant: TenantId,
        number: NumberId,
    ) -> anyhow::Result<(usize, Option<(Sender, Vec<Ready>)>)> {
        let sender = match self.sender(tenant, number).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%number, error = %e, "sending number unavailable");
                None
            }
        };
        // Half a second of sending per batch: small enough that a one-off message waits
        // behind at most that, large enough to amortise the claim and the record.
        let size = sender
            .as_ref()
            .map(|s| (s.rate as i64 / 2).clamp(1, self.config.dispatch_batch))
            .unwrap_or(self.config.dispatch_batch);
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.config.lease)?;
        let claimed = self.db.claim_lane(number, size, lease, now).await?;
        let n = claimed.len();
        if n == 0 {
            return Ok((0, None));
        }
        metrics::counter!("dispatch_claimed_total").increment(n as u64);
        let Some(sender) = sender else {
            for m in claimed {
                self.fail(
                    m.tenant_id,
                    m.id,
                    None,
                    "number_unavailable",
                    Some("The sending number is disconnected or its credentials cannot be read."),
                )
                .await?;
            }
            return Ok((n, None));
        };
        let ready = self.prepare(claimed).await?;
        let ready = self.paid(ready).await?;
        Ok((n, Some((sender, ready))))
    }

    /// Keeps what is paid for (or was paid for before a crash); fails one-off messages the
    /// balance or the month's allowance cannot cover and holds campaign ones (their campaign
    /// pauses itself).
    async fn paid(&self, ready: Vec<Ready>) -> anyhow::Result<Vec<Ready>> {
        let to_pay: Vec<&Claimed> = ready
            .iter()
            .filter(|r| r.m.charge.is_none())
            .map(|r| &r.m)
            .collect();
        let refused = self.pay(&to_pay).await?;
        if refused.is_empty() {
            return Ok(ready);
        }
        let (mut out, mut hold) = (Vec::with_capacity(ready.len()), Vec::new());
        for r in ready {
            match refused.get(&r.m.id) {
                None => out.push(r),
                Some(_) if r.m.run_id.is_some() => hold.push((r.m.tenant_id, r.m.id)),
                Some(why) => {
                    let detail = match why {
                        Refusal::InsufficientBalance => {
                            "The balance cannot pay for this message; top up and send it again."
                        }
                        Refusal::MonthlyLimitReached => {
                            "The plan's messages for this calendar month are used up."
                        }
                    };
                    self.fail(r.m.tenant_id, r.m.id, None, why.code(), Some(detail))
                        .await?;
                }
            }
        }
        if !hold.is_empty() {
            self.db.requeue(&hold, None, self.clock.now()).await?;
        }
        Ok(out)
    }

    /// Paced in order here (one token per send, so the number's rate is exact), sent
    /// concurrently as separate tasks (so slow answers never hold the pace back).
    async fn send_all(&self, sender: &Sender, ready: Vec<Ready>) -> Vec<(Ready, Outcome)> {
        let mut outcomes = Vec::with_capacity(ready.len());
        let mut sends = tokio::task::JoinSet::new();
        for r in ready {
            sender.limiter.until_ready().await;
            while sends.len() >= self.config.dispatch_concurrency {
                if let Some(Ok(o)) = sends.join_next().await {
                    outcomes.push(o);
                }
            }
            let (engine, sender) = (self.clone(), sender.clone());
            sends.spawn(async move {
                let o = engine.send_prepared(&sender, &r).await;
                (r, o)
            });
        }
        while let Some(res) = sends.join_next().await {
            match res {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    tracing::error!(error = %e, "a send task failed; its lease will expire and it is retried")
                }
            }
        }
        outcomes
    }

    /// Renders campaign messages for their contacts (and holds or drops those that may not go
    /// now); other messages pass through as they are.
    async fn prepare(&self, claimed: Vec<Claimed>) -> anyhow::Result<Vec<Ready>> {
        let now = self.clock.now();
        let mut runs: Vec<(TenantId, RunId)> = claimed
            .iter()
            .filter_map(|m| m.run_id.map(|r| (m.tenant_id, r)))
            .collect();
        runs.sort();
        runs.dedup();
        if runs.is_empty() {
            return Ok(claimed
                .into_iter()
                .map(|m| Ready {
                    content: m.content.clone(),
                    rendered: false,
                    m,
                })
                .collect());
        }
        let states = self.db.runs_sendable(&runs).await?;
        let mut contacts: HashMap<TenantId, Vec<ContactId>> = HashMap::new();
        for m in claimed.iter().filter(|m| m.run_id.is_some()) {
            contacts.entry(m.tenant_id).or_default().push(m.contact_id);
        }
        let mut people: HashMap<(TenantId, ContactId), Contact> = HashMap::new();
        for (tenant, ids) in contacts {
            for c in self.db.contacts_by_ids(tenant, &ids).await? {
                people.insert((tenant, c.id), c);
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        let mut hold = Vec::new();
        let mut quiet: HashMap<DateTime<Utc>, Vec<(TenantId, MessageId)>> = HashMap::new();
        let mut personal = Vec::new();
        for m in claimed {
            let Some(run) = m.run_id else {
                out.push(Ready {
                    content: m.content.clone(),
                    rendered: false,
                    m,
                });
                continue;
            };
            let Some((campaign, status)) = states.get(&run).copied() else {
                self.fail(m.tenant_id, m.id, None, "campaign_missing", None)
                    .await?;
                continue;
            };
            match status {
                CampaignStatus::Running => {}
                CampaignStatus::Paused | CampaignStatus::Scheduled | CampaignStatus::Draft => {
                    hold.push((m.tenant_id, m.id));
                    continue;
                }
                _ => {
                    self.fail(m.tenant_id, m.id, None, "campaign_cancelled", None)
                        .await?;
                    continue;
                }
            }
            // Messages already claimed may still be sent while content renders; that is fine.
            if !m.content.is_empty() {
                out.push(Ready {
                    content: m.content.clone(),
                    rendered: false,
                    m,
                });
                continue;
            }
            let plan = self.plan(m.tenant_id, campaign).await?;
            let plan = match plan.as_ref() {
                Ok(p) => p,
                Err(e) => {
                    self.db
                        .fail_campaign(m.tenant_id, campaign, &e.to_string(), now)
                        .await?;
                    self.fail(
                        m.tenant_id,
                        m.id,
                        None,
                        "campaign_failed",
                        Some(&e.to_string()),
                    )
                    .await?;
                    continue;
                }
            };
            if let Some(until) = plan.quiet.and_then(|q| q.resume_at(now)) {
                quiet.entry(until).or_default().push((m.tenant_id, m.id));
                continue;
            }
            let Some(contact) = people
                .get(&(m.tenant_id, m.contact_id))
                .filter(|c| c.deleted_at.is_none())
            else {
                self.fail(m.tenant_id, m.id, None, "contact_deleted", None)
                    .await?;
                continue;
            };
            if plan.marketing && contact.consent.as_deref() == Some("opted_out") {
                self.fail(
                    m.tenant_id,
                    m.id,
                    None,
                    "contact_opted_out",
                    Some("The contact opted out of marketing after the campaign started."),
                )
                .await?;
                continue;
            }
            match plan.render_personal(contact, &m, &mut personal) {
                Ok(content) => out.push(Ready {
                    content: serde_json::to_string(&content)?,
                    rendered: true,
                    m,
                }),
                Err(why) => {
                    self.fail(m.tenant_id, m.id, None, &why, None).await?;
                }
            }
        }
        // Personal smart-link codes exist before anyone can receive them.
        self.db.put_personal_codes(&personal, now).await?;
        if !hold.is_empty() {
            self.db.requeue(&hold, None, now).await?;
        }
        for (until, keys) in quiet {
            self.db.requeue(&keys, Some(until), now).await?;
        }
        Ok(out)
    }

    async fn send_prepared(&self, sender: &Sender, r: &Ready) -> Outcome {
        let content: Content = match serde_json::from_str(&r.content) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Fail {
                    code: None,
                    title: "invalid_content".into(),
                    detail: Some(e.to_string()),
                };
            }
        };
        let mut msg = SendMessage::new(r.m.to_phone.trim_start_matches('+'), content);
        msg.biz_opaque_callback_data = Some(r.m.id.to_string());
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
                metrics::counter!("dispatch_lane_sent_total", "number" => sender.phone_number_id.clone()).increment(1);
                Outcome::Accepted {
                    wamid: resp
                        .messages
                        .first()
                        .map(|x| x.id.clone())
                        .unwrap_or_default(),
                }
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
                        if within(r.m.created_at, now, self.config.retry_for) =>
                    {
                        let wait = backoff(r.m.attempts, after);
                        Outcome::Retry {
                            at: now
                                + chrono::Duration::from_std(wait)
                                    .unwrap_or(chrono::Duration::seconds(900)),
                            code,
                            title,
                        }
                    }
                    _ => Outcome::Fail {
                        code,
                        title,
                        detail,
                    },
                }
            }
        }
    }

    /// Records a batch's outcomes: every acceptance in one transaction, then the rest.
    async fn record(&self, outcomes: Vec<(Ready, Outcome)>) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut accepted = Vec::new();
        for (r, o) in &outcomes {
            if let Outcome::Accepted { wamid } = o {
                accepted.push(Accepted {
                    tenant_id: r.m.tenant_id,
                    id: r.m.id,
                    wamid: wamid.clone(),
                    content: r.rendered.then(|| r.content.clone()),
                    preview: r.rendered.then(|| preview_of(&r.content)),
                });
            }
        }
        if let Err(e) = self.db.record_accepted(&accepted, now).await {
            tracing::warn!(error = %e, count = accepted.len(), "could not record sends; their leases will expire and they are retried");
        }
        for (r, o) in outcomes {
            let (tenant, id) = (r.m.tenant_id, r.m.id);
            let res = match o {
                Outcome::Accepted { .. } => Ok(()),
                Outcome::Retry { at, code, title } => self
                    .db
                    .record_retry(tenant, id, at, code, &title, now)
                    .await
                    .map_err(Into::into),
                Outcome::Fail {
                    code,
                    title,
                    detail,
                } => self.fail(tenant, id, code, &title, detail.as_deref()).await,
            };
            if let Err(e) = res {
                tracing::warn!(%tenant, message_id = %id, error = %e, "could not record a send; the lease will expire and it is retried");
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

    /// Runs one number's lane until it has nothing due (or the process stops), renewing the
    /// lane's lease before each batch.
    async fn run_lane(self, tenant: TenantId, number: NumberId, stop: watch::Receiver<bool>) {
        let holder = self.lanes.holder.clone();
        // Pipelined: while one batch is being sent, the next is claimed and prepared, and the
        // previous one recorded, so the number never idles between batches.
        let mut next = None;
        let mut recording: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let now = self.clock.now();
            match self
                .db
                .acquire_lane(number, &holder, now + LANE_LEASE, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(%number, error = %e, "lane lease failed");
                    break;
                }
            }
            let current = match next.take() {
                Some(b) => b,
                None => match self.fetch(tenant, number).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(%number, error = %e, "dispatch batch failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            let (n, batch) = current;
            let Some((sender, ready)) = batch else {
                if n == 0 {
                    break;
                }
                // Claimed, but nothing could be sent (failed or held): look again.
                continue;
            };
            let (outcomes, fetched) =
                tokio::join!(self.send_all(&sender, ready), self.fetch(tenant, number));
            if let Some(r) = recording.take() {
                let _ = r.await;
            }
            let engine = self.clone();
            recording = Some(tokio::spawn(async move {
                if let Err(e) = engine.record(outcomes).await {
                    tracing::warn!(error = %e, "could not record a batch; leases will expire and it is retried");
                }
            }));
            match fetched {
                Ok(b) => next = Some(b),
                Err(e) => tracing::warn!(%number, error = %e, "dispatch batch failed"),
            }
        }
        if let Some(r) = recording.take() {
            let _ = r.await;
        }
        // A prefetched batch not sent (the process is stopping) goes back to the queue now.
        if let Some((_, Some((_, ready)))) = next {
            let keys: Vec<_> = ready.iter().map(|r| (r.m.tenant_id, r.m.id)).collect();
            if let Err(e) = self
                .db
                .requeue(&keys, Some(self.clock.now()), self.clock.now())
                .await
            {
                tracing::warn!(error = %e, "could not return a prefetched batch; its leases will expire");
            }
        }
        if let Err(e) = self.db.release_lane(number, &holder).await {
            tracing::warn!(%number, error = %e, "could not release a lane; its lease will expire");
        }
        self.lanes.close(number);
        // Work may have arrived between the last empty claim and the release.
        self.wake.dispatch.notify_one();
    }

    pub(crate) async fn dispatch_loop(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut lanes = tokio::task::JoinSet::new();
        let mut depth_at = Instant::now() - Duration::from_secs(60);
        loop {
            let now = self.clock.now();
            match self.db.due_numbers(now).await {
                Ok(due) => {
                    for (tenant, number) in due {
                        if !self.lanes.try_open(number) {
                            continue;
                        }
                        match self
                            .db
                            .acquire_lane(number, &self.lanes.holder, now + LANE_LEASE, now)
                            .await
                        {
                            Ok(true) => {
                                lanes.spawn(self.clone().run_lane(tenant, number, stop_rx.clone()));
                            }
                            _ => self.lanes.close(number),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list due numbers"),
            }
            while lanes.try_join_next().is_some() {}
            if depth_at.elapsed() > Duration::from_secs(5) {
                depth_at = Instant::now();
                if let Ok(d) = self.db.outbox_depth().await {
                    metrics::gauge!("dispatch_queue_depth").set(d as f64);
                }
                metrics::gauge!("dispatch_lanes_open").set(self.lanes.count() as f64);
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.dispatch.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        // Let each lane finish (and record) the batch it is sending.
        let _ = stop_tx.send(true);
        while lanes.join_next().await.is_some() {}
    }
}

/// A lane's lease on its number; renewed before every batch.
const LANE_LEASE: chrono::Duration = chrono::Duration::seconds(30);

/// The lanes this process runs, and its name as a lane holder.
#[derive(Clone)]
pub struct Lanes {
    open: Arc<Mutex<HashSet<NumberId>>>,
    pub(crate) holder: Arc<str>,
}

impl Default for Lanes {
    fn default() -> Self {
        Self {
            open: Default::default(),
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()).into(),
        }
    }
}

impl Lanes {
    fn try_open(&self, n: NumberId) -> bool {
        self.open.lock().expect("lanes poisoned").insert(n)
    }
    fn close(&self, n: NumberId) {
        self.open.lock().expect("lanes poisoned").remove(&n);
    }
    fn count(&self) -> usize {
        self.open.lock().expect("lanes poisoned").len()
    }
}

/// A claimed message with the content it goes out with.
struct Ready {
    m: Claimed,
    content: String,
    /// Rendered now from a campaign (so stored with the acceptance).
    rendered: bool,
}

enum Outcome {
    Accepted {
        wamid: String,
    },
    Retry {
        at: DateTime<Utc>,
        code: Option<i64>,
        title: String,
    },
    Fail {
        code: Option<i64>,
        title: String,
        detail: Option<String>,
    },
}

fn preview_of(content: &str) -> String {
    serde_json::from_str::<Content>(content)
        .map(|c| match c {
            Content::Template { template } => {
                format!("Template: {} ({})", template.name, template.language.code)
            }
            other => other.kind().to_string(),
        })
        .unwrap_or_default()
}

fn within(created: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> bool {
    chrono::Duration::from_std(window).is_ok_and(|w| now - created < w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pacing on a controlled clock: over any stretch, sends admitted ≤ rate × time + burst,
    /// and a lane that keeps asking gets exactly the rate.
    #[test]
    fn a_lane_is_paced_at_its_numbers_rate() {
        use governor::{RateLimiter, clock::FakeRelativeClock};
        for rate in [1u32, 80, 1000] {
            let clock = FakeRelativeClock::default();
            let limiter =
                RateLimiter::direct_with_clock(pace(NonZeroU32::new(rate).unwrap()), clock.clone());
            let burst = (rate / 10).max(1);
            // A full bucket: the burst goes at once, then nothing until time passes.
            let mut first = 0;
            while limiter.check().is_ok() {
                first += 1;
            }
            assert_eq!(first, burst, "rate {rate}");
            // Ten seconds in 1 ms steps, taking every cell offered.
            let mut admitted = 0u64;
            let mut worst_second = 0u64;
            let mut window = std::collections::VecDeque::new();
            for ms in 1..=10_000u64 {
                clock.advance(Duration::from_millis(1));
                let mut n = 0;
                while limiter.check().is_ok() {
                    n += 1;
                }
                admitted += n;
                window.push_back(n);
                if window.len() > 1000 {
                    window.pop_front();
                }
                if ms >= 1000 {
                    worst_second = worst_second.max(window.iter().sum());
                }
            }
            assert_eq!(
                admitted,
                rate as u64 * 10,
                "rate {rate}: long-run rate exact"
            );
            assert!(
                worst_second <= rate as u64,
                "rate {rate}: {worst_second} in one second"
            );
        }
    }

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
