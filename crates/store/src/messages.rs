//! The message outbox and log: outbound messages are rows the dispatcher claims; statuses from
//! webhooks move them forward; inbound messages are recorded once per wamid.

use chrono::{DateTime, Duration, Utc};
use pinglayer_domain::{
    CampaignId, ContactId, ConversationId, MessageId, MessageStatus, NumberId, PageRequest, RunId,
    TenantId,
};
use std::collections::HashMap;

use crate::{
    Db, Result, Tx,
    campaigns::{RunDeltas, lock_ranks},
    on_db, on_tx,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Message {
    pub tenant_id: TenantId,
    pub id: MessageId,
    pub number_id: NumberId,
    pub contact_id: ContactId,
    /// `None` for campaign messages until the contact writes back.
    pub conversation_id: Option<ConversationId>,
    pub direction: String,
    pub kind: String,
    /// JSON: the Cloud API `Content` for outbound, Meta's inbound message object for inbound.
    pub content: String,
    pub preview: String,
    pub to_phone: String,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub error_detail: Option<String>,
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// What it is billed as (outbound).
    pub category: Option<String>,
    /// What it was charged, in ten-thousandths of the currency; `None` until dispatched.
    pub charge: Option<i64>,
    pub refunded_at: Option<DateTime<Utc>>,
}

macro_rules! mcols {
    () => {
        "tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content, preview, to_phone,
         status, wamid, error_code, error_title, error_detail, attempts, idempotency_key, request_hash,
         created_at, updated_at, sent_at, delivered_at, read_at, failed_at, category, charge, refunded_at"
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageEvent {
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
}

pub struct NewOutbound<'a> {
    pub tenant_id: TenantId,
    pub number_id: NumberId,
    pub contact_id: ContactId,
    pub conversation_id: ConversationId,
    pub kind: &'a str,
    pub content: String,
    pub preview: String,
    pub to_phone: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: Option<&'a str>,
    /// What it is billed as: `marketing`, `utility`, `authentication` or `service`.
    pub category: &'a str,
}

/// A claimed outbound message with what sending it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub tenant_id: TenantId,
    pub id: MessageId,
    pub number_id: NumberId,
    pub contact_id: ContactId,
    /// Campaign messages: rendered for their contact at send time (`content` is empty).
    pub run_id: Option<RunId>,
    pub campaign_id: Option<CampaignId>,
    pub content: String,
    pub to_phone: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub category: Option<String>,
    /// What it was charged already (a message re-sent after a crash is not charged again).
    pub charge: Option<i64>,
}

/// What an acceptance changes, from a row `v (wamid, content, preview)` and `$6` = now.
const ACCEPT_SET: &str = "set wamid = v.wamid, lease_until = null, next_attempt_at = null, updated_at = $6,
    status = case when messages.status_rank < 2 then 'sent' else messages.status end,
    sent_at = coalesce(messages.sent_at, $6),
    status_rank = case when messages.status_rank < 2 then 2 else messages.status_rank end,
    content = case when messages.content = '' then coalesce(v.content, messages.content) else messages.content end,
    preview = coalesce(v.preview, messages.preview)";

/// A message Meta accepted, with the content a campaign message was rendered with.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub tenant_id: TenantId,
    pub id: MessageId,
    pub wamid: String,
    pub content: Option<String>,
    pub preview: Option<String>,
}

/// Who a status is about: our id (from `biz_opaque_callback_data`) or Meta's wamid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageRef {
    Ours(TenantId, MessageId),
    Wamid(String),
}

#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub target: MessageRef,
    /// Only tenants allowed for the webhook's number may be touched.
    pub tenant_id: TenantId,
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
    pub wamid: String,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub error_detail: Option<String>,
}

/// What applying a batch of statuses did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Messages whose state moved, with the state they reached.
    pub moved: Vec<(TenantId, MessageId, MessageStatus)>,
    /// Positions (in the input) of statuses that named no message we know (yet).
    pub unknown: Vec<usize>,
}

pub struct NewInbound<'a> {
    pub tenant_id: TenantId,
    pub number_id: NumberId,
    pub contact_id: ContactId,
    pub conversation_id: ConversationId,
    pub wamid: &'a str,
    pub kind: &'a str,
    pub content: String,
    pub preview: String,
    pub from_phone: &'a str,
    pub at: DateTime<Utc>,
}

pub async fn enqueue_in(tx: &mut Tx, m: NewOutbound<'_>, now: DateTime<Utc>) -> Result<Message> {
    on_tx!(tx, c => sqlx::query_as(concat!(
        "insert into messages (tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content,
            preview, to_phone, status, status_rank, attempts, next_attempt_at, idempotency_key, request_hash,
            created_at, updated_at, category)
         values ($1, $2, $3, $4, $5, 'outbound', $6, $7, $8, $9, 'queued', 0, 0, $10, $11, $12, $10, $10, $13)
         returning ", mcols!()))
    .bind(m.tenant_id)
    .bind(MessageId::new())
    .bind(m.number_id)
    .bind(m.contact_id)
    .bind(m.conversation_id)
    .bind(m.kind)
    .bind(m.content)
    .bind(m.preview)
    .bind(m.to_phone)
    .bind(now)
    .bind(m.idempotency_key)
    .bind(m.request_hash)
    .bind(m.category)
    .fetch_one(c)
    .await)
    .map_err(crate::conflict_on_unique("idempotency_key"))
}

/// Records an inbound message once: `None` when this wamid was already recorded.
pub async fn insert_inbound_in(
    tx: &mut Tx,
    m: NewInbound<'_>,
    now: DateTime<Utc>,
) -> Result<Option<MessageId>> {
    let id = MessageId::new();
    let inserted: Option<MessageId> = on_tx!(tx, c => sqlx::query_scalar(
        "insert into messages (tenant_id, id, number_id, contact_id, conversation_id, direction, kind, content,
            preview, to_phone, status, status_rank, wamid, attempts, created_at, updated_at)
         values ($1, $2, $3, $4, $5, 'inbound', $6, $7, $8, $9, 'received', 6, $10, 0, $11, $12)
         on conflict do nothing
         returning id",
    )
    .bind(m.tenant_id)
    .bind(id)
    .bind(m.number_id)
    .bind(m.contact_id)
    .bind(m.conversation_id)
    .bind(m.kind)
    .bind(m.content)
    .bind(m.preview)
    .bind(m.from_phone)
    .bind(m.wamid)
    .bind(m.at)
    .bind(now)
    .fetch_optional(c)
    .await)?;
    if inserted.is_some() {
        crate::analytics::bump(
            tx,
            m.tenant_id,
            crate::analytics::INBOUND,
            Some(m.number_id),
            1,
            now,
        )
        .await?;
    }
    Ok(inserted)
}

/// One line of a message's history: whose, which state, when, with what error.
type EventRow = (
    TenantId,
    MessageId,
    MessageStatus,
    DateTime<Utc>,
    Option<i64>,
    Option<String>,
);

async fn add_events(tx: &mut Tx, events: &[EventRow]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    match tx {
        // One statement for the whole batch, as arrays (see `apply_statuses`).
        Tx::Postgres(t) => {
            sqlx::query(
                "insert into message_events (tenant_id, message_id, status, at, error_code, error_title)
                 select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int8[], $6::text[])
                 on conflict do nothing",
            )
            .bind(events.iter().map(|e| e.0.0).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.1.0).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.2.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.3).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.4).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.5.clone()).collect::<Vec<_>>())
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            for chunk in events.chunks(500) {
                let mut qb = sqlx::QueryBuilder::new(
                    "insert into message_events (tenant_id, message_id, status, at, error_code, error_title) ",
                );
                qb.push_values(chunk, |mut b, (t, m, s, at, code, title)| {
                    b.push_bind(*t)
                        .push_bind(*m)
                        .push_bind(s.as_str())
                        .push_bind(*at)
                        .push_bind(*code)
                        .push_bind(title.clone());
                });
                qb.push(" on conflict do nothing");
                qb.build().execute(&mut **t).await?;
            }
        }
    }
    Ok(())
}

impl Db {
    pub async fn message(&self, tenant: TenantId, id: MessageId) -> Result<Message> {
        on_db!(self, p => sqlx::query_as(concat!("select ", mcols!(), " from messages where tenant_id = $1 and id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_one(p)
            .await)
        .map_err(Into::into)
    }

    pub async fn message_by_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<Message>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", mcols!(),
            " from messages where tenant_id = $1 and idempotency_key = $2"))
            .bind(tenant)
            .bind(key)
            .fetch_optional(p)
            .await)
        .map_err(Into::into)
    }

    /// Every message to and from a contact, newest first (for exports).
    pub async fn contact_messages(
        &self,
        tenant: TenantId,
        contact: ContactId,
    ) -> Result<Vec<Message>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", mcols!(),
            " from messages where tenant_id = $1 and contact_id = $2 order by id desc"))
            .bind(tenant)
            .bind(contact)
            .fetch_all(p)
            .await)
        .map_err(Into::into)
    }

    pub async fn message_events(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Vec<MessageEvent>> {
        on_db!(self, p => sqlx::query_as(
            "select status, at, error_code, error_title from message_events
             where tenant_id = $1 and message_id = $2 order by at, status",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Newest first, optionally of one conversation, status or direction.
    pub async fn list_messages(
        &self,
        tenant: TenantId,
        page: &PageRequest,
        conversation: Option<ConversationId>,
        status: Option<MessageStatus>,
        direction: Option<&str>,
    ) -> Result<Vec<Message>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", mcols!(),
            " from messages where tenant_id = $1 and ($2 is null or id < $2)
              and ($3 is null or conversation_id = $3) and ($4 is null or status = $4)
              and ($5 is null or direction = $5)
              order by id desc limit $6"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(conversation)
        .bind(status.map(|s| s.as_str()))
        .bind(direction)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Messages waiting to be sent (for `/metrics`).
    pub async fn outbox_depth(&self) -> Result<i64> {
        Ok(
            on_db!(self, p => sqlx::query_scalar("select count(*) from messages where status in ('queued', 'sending')")
            .fetch_one(p)
            .await)?,
        )
    }

    /// Numbers with messages due now: the dispatcher opens a lane for each. One index probe
    /// per number and priority.
    pub async fn due_numbers(&self, now: DateTime<Utc>) -> Result<Vec<(TenantId, NumberId)>> {
        on_db!(self, p => sqlx::query_as(
            "select n.tenant_id, n.id from whatsapp_numbers n
             where exists (select 1 from messages m where m.number_id = n.id and m.priority = 0
                             and m.status in ('queued', 'sending') and m.next_attempt_at <= $1)
                or exists (select 1 from messages m where m.number_id = n.id and m.priority = 1
                             and m.status in ('queued', 'sending') and m.next_attempt_at <= $1)",
        )
        .bind(now)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Takes (or renews) the lane of a number for `holder` until `until`: one process at a
    /// time sends for a number, so its pacing holds across processes. `false` when another
    /// holder's lease is live.
    pub async fn acquire_lane(
        &self,
        number: NumberId,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let got: Option<String> = on_db!(self, p => sqlx::query_scalar(
            "insert into dispatch_lanes (number_id, holder, lease_until) values ($1, $2, $3)
             on conflict (number_id) do update set holder = excluded.holder, lease_until = excluded.lease_until
             where dispatch_lanes.lease_until < $4 or dispatch_lanes.holder = excluded.holder
             returning holder",
        )
        .bind(number)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(p)
        .await)?;
        Ok(got.is_some())
    }

    pub async fn release_lane(&self, number: NumberId, holder: &str) -> Result<()> {
        on_db!(self, p => sqlx::query("delete from dispatch_lanes where number_id = $1 and holder = $2")
            .bind(number)
            .bind(holder)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Claims up to `limit` due messages of one number — conversational ones (priority 0)
    /// before campaign ones, each oldest first; queued ones and ones whose lease ran out
    /// because the worker holding them died — and leases them for `lease`. The lease is
    /// committed before anything is sent, so two workers never hold the same message.
    pub async fn claim_lane(
        &self,
        number: NumberId,
        limit: i64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let mut out: Vec<Claimed> = Vec::new();
        for priority in ["0", "1"] {
            let left = limit - out.len() as i64;
            if left <= 0 {
                break;
            }
            let sql = format!(
                "update messages set status = 'sending', status_rank = 1, attempts = attempts + 1, lease_until = $2, updated_at = $1
                 where (tenant_id, id) in (
                    select tenant_id, id from messages
                    where number_id = $4 and priority = {priority} and status in ('queued', 'sending') and next_attempt_at <= $1
                      and (status = 'queued' or lease_until < $1)
                    order by next_attempt_at limit $3 {{lock}})
                 returning tenant_id, id, number_id, contact_id, run_id, campaign_id, content, to_phone, attempts, created_at, category, charge"
            );
            out.extend(
                self.claim_with(&sql, now, now + lease, left, Some(number.0))
                    .await?,
            );
        }
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Meta accepted these messages: each is `sent` unless a webhook already moved it further.
    /// PostgreSQL takes the batch as arrays in one statement; SQLite (one local writer) a
    /// statement per message; the same `SET` for both.
    /// Campaign messages also get the content they were rendered with. One transaction.
    pub async fn record_accepted(&self, items: &[Accepted], now: DateTime<Utc>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        tx.keyed_plans().await?;
        let keys: Vec<_> = items.iter().map(|a| (a.tenant_id, a.id)).collect();
        let before = lock_ranks(&mut tx, &keys).await?;
        match &mut tx {
            Tx::Postgres(t) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "update messages {ACCEPT_SET}
                     from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) as v (tid, mid, wamid, content, preview)
                     where messages.tenant_id = v.tid and messages.id = v.mid"
                )))
                .bind(items.iter().map(|a| a.tenant_id.0).collect::<Vec<_>>())
                .bind(items.iter().map(|a| a.id.0).collect::<Vec<_>>())
                .bind(items.iter().map(|a| a.wamid.as_str()).collect::<Vec<_>>())
                .bind(items.iter().map(|a| a.content.clone()).collect::<Vec<_>>())
                .bind(items.iter().map(|a| a.preview.clone()).collect::<Vec<_>>())
                .bind(now)
                .execute(&mut **t)
                .await?;
            }
            Tx::Sqlite(t) => {
                for a in items {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "update messages {ACCEPT_SET}
                         from (select $1 as tid, $2 as mid, $3 as wamid, $4 as content, $5 as preview) as v
                         where messages.tenant_id = v.tid and messages.id = v.mid"
                    )))
                    .bind(a.tenant_id)
                    .bind(a.id)
                    .bind(&a.wamid)
                    .bind(&a.content)
                    .bind(&a.preview)
                    .bind(now)
                    .execute(&mut **t)
                    .await?;
                }
            }
        }
        let mut deltas = RunDeltas::default();
        let mut events = Vec::new();
        for k in &keys {
            if let Some(h) = before.get(k)
                && h.status_rank < 2
            {
                deltas.note(k.0, h.run_id, h.status_rank, MessageStatus::Sent);
                events.push((k.0, k.1, MessageStatus::Sent, now, None, None));
            }
        }
        add_events(&mut tx, &events).await?;
        deltas.apply(&mut tx, now).await?;
        let sent: Vec<_> = keys
            .iter()
            .map(|k| (k.0, k.1, MessageStatus::Sent))
            .collect();
        crate::analytics::note_moved(&mut tx, &before, &sent, now).await?;
        tx.commit().await
    }

    /// A transient failure: back to the queue, to be tried at `at`.
    pub async fn record_retry(
        &self,
        tenant: TenantId,
        id: MessageId,
        at: DateTime<Utc>,
        code: Option<i64>,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query(
            "update messages set status = 'queued', status_rank = 0, next_attempt_at = $3, lease_until = null,
                error_code = $4, error_title = $5, updated_at = $6
             where tenant_id = $1 and id = $2 and status = 'sending'",
        )
        .bind(tenant)
        .bind(id)
        .bind(at)
        .bind(code)
        .bind(title)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A final failure before Meta accepted the message.
    pub async fn record_failed(
        &self,
        tenant: TenantId,
        id: MessageId,
        code: Option<i64>,
        title: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let before = lock_ranks(&mut tx, &[(tenant, id)]).await?;
        let n = on_tx!(&mut tx, c => sqlx::query(
            "update messages set status = 'failed', status_rank = 5, lease_until = null, next_attempt_at = null, failed_at = $6,
                error_code = $3, error_title = $4, error_detail = $5, updated_at = $6
             where tenant_id = $1 and id = $2 and status_rank < 5",
        )
        .bind(tenant)
        .bind(id)
        .bind(code)
        .bind(title)
        .bind(detail)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if n > 0 {
            add_events(
                &mut tx,
                &[(
                    tenant,
                    id,
                    MessageStatus::Failed,
                    now,
                    code,
                    Some(title.to_string()),
                )],
            )
            .await?;
            if let Some(h) = before.get(&(tenant, id)) {
                let mut deltas = RunDeltas::default();
                deltas.note(tenant, h.run_id, h.status_rank, MessageStatus::Failed);
                deltas.apply(&mut tx, now).await?;
            }
            crate::analytics::note_moved(
                &mut tx,
                &before,
                &[(tenant, id, MessageStatus::Failed)],
                now,
            )
            .await?;
            // It never left: whatever it was charged goes back.
            crate::billing::refund_in(&mut tx, &[(tenant, id)], true, now).await?;
        }
        tx.commit().await
    }

    /// Applies delivery statuses in one transaction, in batches: forward-only (a state moves
    /// only to a higher rank; `failed` is final), idempotent (replays and duplicates change
    /// nothing), and tolerant (statuses for unknown messages are counted, not errors).
    /// A `failed` status whose error code is in `refundable` refunds the message's charge
    /// (once, however often the webhook is replayed).
    ///
    /// A transaction per 1,000 statuses: each holds its messages' row locks only briefly, so
    /// the dispatcher recording acceptances of the same messages is not held up behind a
    /// webhook burst.
    pub async fn apply_statuses(
        &self,
        updates: &[StatusUpdate],
        refundable: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        const CHUNK: usize = 1000;
        let mut applied = Applied::default();
        for (i, chunk) in updates.chunks(CHUNK).enumerate() {
            let a = self.apply_status_chunk(chunk, refundable, now).await?;
            applied.moved.extend(a.moved);
            applied
                .unknown
                .extend(a.unknown.into_iter().map(|u| u + i * CHUNK));
        }
        Ok(applied)
    }

    async fn apply_status_chunk(
        &self,
        updates: &[StatusUpdate],
        refundable: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        let mut applied = Applied::default();
        if updates.is_empty() {
            return Ok(applied);
        }
        let mut tx = self.begin().await?;
        tx.keyed_plans().await?;
        // Resolve wamid-only statuses to our ids, within the allowed tenants.
        let wamids: Vec<&str> = updates
            .iter()
            .filter_map(|u| match &u.target {
                MessageRef::Wamid(w) => Some(w.as_str()),
                MessageRef::Ours(..) => None,
            })
            .collect();
        let mut by_wamid: HashMap<String, (TenantId, MessageId)> = HashMap::new();
        for chunk in wamids.chunks(500) {
            let rows: Vec<(TenantId, MessageId, String)> = on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new("select tenant_id, id, wamid from messages where wamid in (");
                let mut sep = qb.separated(", ");
                for w in chunk {
                    sep.push_bind(*w);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(c).await
            })?;
            by_wamid.extend(rows.into_iter().map(|(t, m, w)| (w, (t, m))));
        }
        // Keep the furthest status per message (a batch may hold sent, delivered and read of
        // one message), and every status for the history.
        let mut best: HashMap<(TenantId, MessageId), &StatusUpdate> = HashMap::new();
        // When a batch holds `delivered` and `read` of one message, `read` is applied and the
        // delivery time comes from its own status (read implies delivered).
        let mut delivered: HashMap<(TenantId, MessageId), DateTime<Utc>> = HashMap::new();
        let mut events = Vec::with_capacity(updates.len());
        for (i, u) in updates.iter().enumerate() {
            let key = match &u.target {
                MessageRef::Ours(t, m) => Some((*t, *m)),
                MessageRef::Wamid(w) => by_wamid.get(w).copied(),
            };
            let Some(key) = key.filter(|(t, _)| *t == u.tenant_id) else {
                applied.unknown.push(i);
                continue;
            };
            events.push((
                key.0,
                key.1,
                u.status,
                u.at,
                u.error_code,
                u.error_title.clone(),
            ));
            if u.status == MessageStatus::Delivered {
                let d = delivered.entry(key).or_insert(u.at);
                *d = (*d).min(u.at);
            }
            let e = best.entry(key).or_insert(u);
            if u.status.rank() > e.status.rank() {
                *e = u;
            }
        }
        let rows: Vec<_> = best
            .into_iter()
            .map(|(k, u)| (k, (u, delivered.get(&k).copied().unwrap_or(u.at))))
            .collect();
        let keys: Vec<_> = rows.iter().map(|(k, _)| *k).collect();
        // Every refundable failure in the batch, moved now or before: the refund is guarded by
        // the message itself, so a replay after a crash between the two still refunds once.
        let refunds: Vec<(TenantId, MessageId)> = rows
            .iter()
            .filter(|(_, (u, _))| {
                u.status == MessageStatus::Failed
                    && u.error_code.is_some_and(|c| refundable.contains(&c))
            })
            .map(|(k, _)| *k)
            .collect();
        let before = lock_ranks(&mut tx, &keys).await?;
        // The same forward-only UPDATE on both backends; PostgreSQL gets the batch as arrays
        // (one statement, planned once, for any batch size), SQLite as a VALUES list.
        const SET: &str = "set status = v.st, status_rank = v.rk, updated_at = v.at,
                wamid = coalesce(messages.wamid, v.wamid),
                sent_at = case when v.st = 'sent' then coalesce(messages.sent_at, v.at) else messages.sent_at end,
                delivered_at = case when v.st in ('delivered', 'read') then coalesce(messages.delivered_at, v.dat) else messages.delivered_at end,
                read_at = case when v.st = 'read' then coalesce(messages.read_at, v.at) else messages.read_at end,
                failed_at = case when v.st = 'failed' then coalesce(messages.failed_at, v.at) else messages.failed_at end,
                error_code = case when v.st = 'failed' then v.ecode else messages.error_code end,
                error_title = case when v.st = 'failed' then v.etitle else messages.error_title end,
                error_detail = case when v.st = 'failed' then v.edetail else messages.error_detail end,
                lease_until = null, next_attempt_at = null";
        // Inbound messages (`received`, the highest rank) never pass the forward-only check. No
        // `direction` test here: it matches the partial index on outbound messages, which
        // PostgreSQL then believed small enough to scan whole (see `Tx::keyed_plans`).
        const WHERE: &str = " where messages.tenant_id = v.tid and messages.id = v.mid
                and messages.status_rank < v.rk
              returning messages.tenant_id, messages.id, messages.status";
        let mut moved: Vec<(TenantId, MessageId, String)> = Vec::new();
        match &mut tx {
            Tx::Postgres(t) => {
                let sql = format!(
                    "update messages {SET} from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::timestamptz[],
                        $6::text[], $7::int8[], $8::text[], $9::text[], $10::timestamptz[]) as v (tid, mid, st, rk, at, wamid, ecode, etitle, edetail, dat) {WHERE}"
                );
                moved = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(rows.iter().map(|((t, _), _)| t.0).collect::<Vec<_>>())
                    .bind(rows.iter().map(|((_, m), _)| m.0).collect::<Vec<_>>())
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.status.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.status.rank())
                            .collect::<Vec<_>>(),
                    )
                    .bind(rows.iter().map(|(_, (u, _))| u.at).collect::<Vec<_>>())
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.wamid.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.error_code)
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.error_title.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        rows.iter()
                            .map(|(_, (u, _))| u.error_detail.clone())
                            .collect::<Vec<_>>(),
                    )
                    .bind(rows.iter().map(|(_, (_, d))| *d).collect::<Vec<_>>())
                    .fetch_all(&mut **t)
                    .await?;
            }
            Tx::Sqlite(t) => {
                for chunk in rows.chunks(400) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "with v (tid, mid, st, rk, at, wamid, ecode, etitle, edetail, dat) as (",
                    );
                    qb.push_values(chunk, |mut b, ((t, m), (u, dat))| {
                        b.push_bind(*t)
                            .push_bind(*m)
                            .push_bind(u.status.as_str())
                            .push_bind(u.status.rank())
                            .push_bind(u.at)
                            .push_bind(u.wamid.as_str())
                            .push_bind(u.error_code)
                            .push_bind(u.error_title.clone())
                            .push_bind(u.error_detail.clone())
                            .push_bind(*dat);
                    });
                    qb.push(") update messages ")
                        .push(SET)
                        .push(" from v")
                        .push(WHERE);
                    moved.extend(
                        qb.build_query_as::<(TenantId, MessageId, String)>()
                            .fetch_all(&mut **t)
                            .await?,
                    );
                }
            }
        }
        let mut deltas = RunDeltas::default();
        for (t, m, s) in moved {
            if let Ok(s) = s.parse() {
                if let Some(h) = before.get(&(t, m)) {
                    deltas.note(t, h.run_id, h.status_rank, s);
                }
                applied.moved.push((t, m, s));
            }
        }
        add_events(&mut tx, &events).await?;
        deltas.apply(&mut tx, now).await?;
        crate::analytics::note_moved(&mut tx, &before, &applied.moved, now).await?;
        if !refunds.is_empty() {
            crate::billing::refund_in(&mut tx, &refunds, false, now).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}
