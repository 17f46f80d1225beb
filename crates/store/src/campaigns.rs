//! Campaigns and their runs: definitions, state moves (each checked against the domain's state
//! machine under a row lock), the scheduler's claim of due occurrences, audience fan-out into the
//! outbox, and the counters kept as messages move.

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    CampaignId, ContactId, MessageStatus, NumberId, PageRequest, RunId, TenantId, UserId,
    campaign::{Audience, CampaignAction, CampaignStatus, RetargetWho},
    segment::{Condition, Field, Filter},
};
use serde_json::Value;
use std::collections::HashMap;

use crate::{
    Backend, Db, Result, StoreError, Tx, bind_all, on_db, on_tx,
    segments::{Bind, filter_sql},
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Campaign {
    pub tenant_id: TenantId,
    pub id: CampaignId,
    pub name: String,
    pub number_id: NumberId,
    pub template_name: String,
    pub default_language: String,
    pub parameters: String,
    pub audience: String,
    pub schedule: String,
    pub quiet_hours: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub parent_id: Option<CampaignId>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

macro_rules! ccols {
    () => {
        "tenant_id, id, name, number_id, template_name, default_language, parameters, audience, schedule,
         quiet_hours, status, status_reason, next_run_at, parent_id, created_by, created_at, updated_at,
         launched_at, finished_at"
    };
}

/// A campaign's definition as stored (JSON fields already checked by the caller).
#[derive(Debug, Clone)]
pub struct CampaignSpec {
    pub name: String,
    pub number_id: NumberId,
    pub template_name: String,
    pub default_language: String,
    pub parameters: Value,
    pub audience: Value,
    pub schedule: Value,
    pub quiet_hours: Option<Value>,
}

#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize)]
pub struct Counters {
    pub targeted: i64,
    pub skipped: i64,
    pub skipped_opted_out: i64,
    pub queued: i64,
    /// Left the queue: accepted by Meta, failed, or cancelled.
    pub done: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub replied: i64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.targeted += o.targeted;
        self.skipped += o.skipped;
        self.skipped_opted_out += o.skipped_opted_out;
        self.queued += o.queued;
        self.done += o.done;
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.read += o.read;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.replied += o.replied;
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub tenant_id: TenantId,
    pub id: RunId,
    pub campaign_id: CampaignId,
    pub occurrence_at: DateTime<Utc>,
    pub status: String,
    pub fanout_done: bool,
    #[sqlx(flatten)]
    pub counters: Counters,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

macro_rules! rcols {
    () => {
        "tenant_id, id, campaign_id, occurrence_at, status, fanout_done, targeted, skipped, skipped_opted_out,
         queued, done, sent, delivered, read, failed, cancelled, replied, started_at, finished_at"
    };
}

/// One recipient of a run, for drill-downs and exports.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recipient {
    pub message_id: Option<uuid::Uuid>,
    pub contact_id: ContactId,
    pub name: Option<String>,
    pub phone: String,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_title: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
}

/// Why a state move was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: CampaignStatus,
}

/// How many counters each message move bumps; collected per run over a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    done: i64,
    sent: i64,
    delivered: i64,
    read: i64,
    failed: i64,
    cancelled: i64,
}

impl Delta {
    /// A message went from `old` rank to `new` (forward only).
    pub(crate) fn note(&mut self, old: i32, new: MessageStatus) {
        let r = new.rank();
        if old < 2 && r >= 2 {
            self.done += 1;
        }
        match new {
            MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read => {
                if old < 2 {
                    self.sent += 1;
                }
                if old < 3 && r >= 3 {
                    self.delivered += 1;
                }
                if old < 4 && r >= 4 {
                    self.read += 1;
                }
            }
            MessageStatus::Failed if old < 5 => self.failed += 1,
            _ => {}
        }
    }
}

/// Per-run deltas of one transaction.
#[derive(Debug, Default)]
pub(crate) struct RunDeltas(HashMap<(TenantId, RunId), Delta>);

impl RunDeltas {
    pub(crate) fn note(
        &mut self,
        tenant: TenantId,
        run: Option<RunId>,
        old: i32,
        new: MessageStatus,
    ) {
        if let Some(run) = run {
            self.0.entry((tenant, run)).or_default().note(old, new);
        }
    }

    /// Adds the deltas to the runs' counters and finishes runs that have nothing left to send.
    pub(crate) async fn apply(self, tx: &mut Tx, now: DateTime<Utc>) -> Result<()> {
        let mut keys: Vec<_> = self.0.into_iter().collect();
        // A fixed order, so concurrent batches lock runs in the same order.
        keys.sort_by_key(|(k, _)| (k.0.0, k.1.0));
        for ((tenant, run), d) in keys {
            on_tx!(tx, c => sqlx::query(
                "update campaign_runs set done = done + $3, sent = sent + $4, delivered = delivered + $5,
                    read = read + $6, failed = failed + $7, cancelled = cancelled + $8
                 where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(run)
            .bind(d.done)
            .bind(d.sent)
            .bind(d.delivered)
            .bind(d.read)
            .bind(d.failed)
            .bind(d.cancelled)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
            if d.done > 0 {
                finish_run_if_done(tx, tenant, run, now).await?;
            }
        }
        Ok(())
    }
}

/// What a transaction needs to know about a message before it moves it: its rank (counters
/// move once per transition), its run, and its number and category (the analytics rollups).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Held {
    pub tenant_id: TenantId,
    pub id: pinglayer_domain::MessageId,
    pub status_rank: i32,
    pub run_id: Option<RunId>,
    pub number_id: uuid::Uuid,
    pub category: Option<String>,
}

pub(crate) type HeldMap = HashMap<(TenantId, pinglayer_domain::MessageId), Held>;

/// Locks the given messages (PostgreSQL: `FOR UPDATE`, in key order) and returns what each
/// one was before a change (see [`Held`]).
pub(crate) async fn lock_ranks(
    tx: &mut Tx,
    keys: &[(TenantId, pinglayer_domain::MessageId)],
) -> Result<HeldMap> {
    let mut out = HashMap::with_capacity(keys.len());
    if keys.is_empty() {
        return Ok(out);
    }
    const COLUMNS: &str = "m.tenant_id, m.id, m.status_rank, m.run_id, m.number_id, m.category";
    let rows: Vec<Held> = match tx {
        Tx::Postgres(t) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select {COLUMNS} from messages m
                 join unnest($1::uuid[], $2::uuid[]) as v (tid, mid) on m.tenant_id = v.tid and m.id = v.mid
                 order by m.tenant_id, m.id for update of m"
            )))
            .bind(keys.iter().map(|k| k.0.0).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1.0).collect::<Vec<_>>())
            .fetch_all(&mut **t)
            .await?
        }
        Tx::Sqlite(t) => {
            let mut rows = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(400) {
                let mut qb = sqlx::QueryBuilder::new("with v (tid, mid) as (");
                qb.push_values(chunk, |mut b, (t, m)| {
                    b.push_bind(*t).push_bind(*m);
                });
                qb.push(") select ")
                    .push(COLUMNS)
                    .push(" from messages m join v on m.tenant_id = v.tid and m.id = v.mid");
                rows.extend(qb.build_query_as::<Held>().fetch_all(&mut **t).await?);
            }
            rows
        }
    };
    for h in rows {
        out.insert((h.tenant_id, h.id), h);
    }
    Ok(out)
}

/// A run is finished when its fan-out is complete and every message left the queue; the
/// campaign then moves on (next occurrence, or completed).
async fn finish_run_if_done(
    tx: &mut Tx,
    tenant: TenantId,
    run: RunId,
    now: DateTime<Utc>,
) -> Result<()> {
    let finished: Option<CampaignId> = on_tx!(tx, c => sqlx::query_scalar(
        "update campaign_runs set status = 'completed', finished_at = $3
         where tenant_id = $1 and id = $2 and fanout_done and done >= queued and finished_at is null
         returning campaign_id",
    )
    .bind(tenant)
    .bind(run)
    .bind(now)
    .fetch_optional(c)
    .await)?;
    if let Some(campaign) = finished {
        let row: Option<(String, Option<DateTime<Utc>>)> = on_tx!(tx, c => sqlx::query_as(
            "select status, next_run_at from campaigns where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(campaign)
        .fetch_optional(c)
        .await)?;
        let Some((status, next)) = row else {
            return Ok(());
        };
        let Ok(status) = status.parse::<CampaignStatus>() else {
            return Ok(());
        };
        // Another run of a recurring campaign may still be going.
        let others: i64 = on_tx!(tx, c => sqlx::query_scalar(
            "select count(*) from campaign_runs where tenant_id = $1 and campaign_id = $2 and finished_at is null",
        )
        .bind(tenant)
        .bind(campaign)
        .fetch_one(c)
        .await)?;
        if others > 0 {
            return Ok(());
        }
        if let Some(to) = status.apply(CampaignAction::RunFinished {
            more: next.is_some(),
        }) {
            set_status_in(tx, tenant, campaign, to, None, now).await?;
        }
    }
    Ok(())
}

async fn set_status_in(
    tx: &mut Tx,
    tenant: TenantId,
    id: CampaignId,
    to: CampaignStatus,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "update campaigns set status = $3, status_reason = $4, updated_at = $5,
            finished_at = case when $3 in ('completed', 'cancelled', 'failed') then $5 else finished_at end,
            next_run_at = case when $3 in ('completed', 'cancelled', 'failed') then null else next_run_at end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(to.as_str())
    .bind(reason)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A time far in the future: held (paused) campaign messages wait there until resumed.
fn held_until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-01-01T00:00:00Z")
        .expect("constant")
        .with_timezone(&Utc)
}

/// What a fan-out batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutStep {
    pub queued: i64,
    pub skipped: i64,
    pub done: bool,
}

/// A run whose audience is being materialised, with what the fan-out needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FanoutJob {
    pub tenant_id: TenantId,
    pub run_id: RunId,
    pub campaign_id: CampaignId,
    pub fanout_cursor: Option<uuid::Uuid>,
    pub number_id: NumberId,
    pub template_name: String,
    pub audience: String,
}

/// How a run's audience is selected (a resolved `Audience`).
#[derive(Debug, Clone)]
pub enum AudienceSql {
    Filter(Filter),
    Ids(Vec<ContactId>),
    Retarget(CampaignId, RetargetWho),
}

impl AudienceSql {
    /// Resolves an audience; a segment's filter is read now (segments are evaluated at send
    /// time, not when the campaign was written).
    pub async fn resolve(db: &Db, tenant: TenantId, a: &Audience) -> Result<Self> {
        if let Some(s) = a.segment_id {
            let seg = db.segment(tenant, s).await?;
            let v: Value = serde_json::from_str(&seg.filter).unwrap_or(Value::Null);
            let f = Filter::parse(&v).map_err(|_| StoreError::NotFound)?;
            return Ok(AudienceSql::Filter(f));
        }
        if !a.tags.is_empty() {
            return Ok(AudienceSql::Filter(Filter::Any(
                a.tags
                    .iter()
                    .map(|t| Filter::Cond(Condition::HasTag(t.clone())))
                    .collect(),
            )));
        }
        if a.all_opted_in {
            return Ok(AudienceSql::Filter(Filter::Cond(Condition::Eq(
                Field::Consent,
                Value::String("opted_in".into()),
            ))));
        }
        if let Some(r) = &a.retarget {
            return Ok(AudienceSql::Retarget(r.campaign_id, r.who));
        }
        Ok(AudienceSql::Ids(a.contact_ids.clone()))
    }

    /// The `WHERE` fragment over contacts `c`, binds numbered from `$first`.
    fn sql(&self, backend: Backend, now: DateTime<Utc>, first: usize) -> (String, Vec<Bind>) {
        match self {
            AudienceSql::Filter(f) => filter_sql(f, backend, now, first),
            AudienceSql::Ids(ids) => {
                if ids.is_empty() {
                    return ("1 = 0".into(), vec![]);
                }
                let marks: Vec<String> =
                    (0..ids.len()).map(|i| format!("${}", first + i)).collect();
                (
                    format!("c.id in ({})", marks.join(", ")),
                    ids.iter().map(|i| Bind::Id(i.0)).collect(),
                )
            }
            AudienceSql::Retarget(campaign, who) => {
                let cond = match who {
                    RetargetWho::Failed => "m.status = 'failed'",
                    RetargetWho::NotDelivered => "m.status not in ('delivered', 'read')",
                    RetargetWho::NotRead => "m.status <> 'read'",
                    RetargetWho::NotReplied => "m.replied_at is null",
                    // A recipient clicked when their personal link of this campaign was
                    // clicked by a person (bots never make clickers).
                    RetargetWho::Clicked => CLICKED,
                    RetargetWho::NotClicked => NOT_CLICKED,
                };
                (
                    format!(
                        "c.id in (select m.contact_id from messages m where m.tenant_id = c.tenant_id
                           and m.run_id in (select r.id from campaign_runs r where r.tenant_id = c.tenant_id and r.campaign_id = ${first})
                           and {cond})"
                    ),
                    vec![Bind::Id(campaign.0)],
                )
            }
        }
    }
}

const CLICKED: &str = "exists (select 1 from campaign_clickers k where k.tenant_id = m.tenant_id
    and k.run_id = m.run_id and k.contact_id = m.contact_id)";
const NOT_CLICKED: &str =
    "not exists (select 1 from campaign_clickers k where k.tenant_id = m.tenant_id
    and k.run_id = m.run_id and k.contact_id = m.contact_id)";

/// A new time-ordered (v7-layout) message id made by the database, so fan-out needs no round
/// trip per row: the launch's millisecond, version 7, then random bits.
fn new_id_sql(backend: Backend, ms_bind: &str) -> String {
    match backend {
        Backend::Postgres => format!(
            "(lpad(to_hex({ms_bind}::bigint), 12, '0') || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14, 19))::uuid"
        ),
        Backend::Sqlite => format!(
            "unhex(printf('%012x', {ms_bind}) || '7' || substr(hex(randomblob(2)), 2, 3)
              || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(8)), 2, 15))"
        ),
    }
}

pub const FANOUT_BATCH: i64 = 50_000;

impl Db {
    pub async fn create_campaign(
        &self,
        tenant: TenantId,
        spec: &CampaignSpec,
        parent: Option<CampaignId>,
        by: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        on_db!(self, p => sqlx::query_as(concat!(
            "insert into campaigns (tenant_id, id, name, number_id, template_name, default_language, parameters,
                audience, schedule, quiet_hours, status, parent_id, created_by, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', $11, $12, $13, $13)
             returning ", ccols!()))
        .bind(tenant)
        .bind(CampaignId::new())
        .bind(&spec.name)
        .bind(spec.number_id)
        .bind(&spec.template_name)
        .bind(&spec.default_language)
        .bind(spec.parameters.to_string())
        .bind(spec.audience.to_string())
        .bind(spec.schedule.to_string())
        .bind(spec.quiet_hours.as_ref().map(|q| q.to_string()))
        .bind(parent)
        .bind(by)
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn campaign(&self, tenant: TenantId, id: CampaignId) -> Result<Campaign> {
        on_db!(self, p => sqlx::query_as(concat!("select ", ccols!(),
            " from campaigns where tenant_id = $1 and id = $2 and deleted_at is null"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Newest first.
    pub async fn list_campaigns(
        &self,
        tenant: TenantId,
        page: &PageRequest,
        status: Option<CampaignStatus>,
    ) -> Result<Vec<Campaign>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", ccols!(),
            " from campaigns where tenant_id = $1 and deleted_at is null and ($2 is null or id < $2)
              and ($3 is null or status = $3) order by id desc limit $4"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(status.map(|s| s.as_str()))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Locks the campaign row (PostgreSQL) and returns its status.
    async fn lock_campaign(tx: &mut Tx, tenant: TenantId, id: CampaignId) -> Result<Campaign> {
        let lock = match tx {
            Tx::Postgres(_) => " for update",
            Tx::Sqlite(_) => "",
        };
        let sql = format!(
            concat!(
                "select ",
                ccols!(),
                " from campaigns where tenant_id = $1 and id = $2 and deleted_at is null{}"
            ),
            lock
        );
        on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(id).fetch_one(c).await)
            .map_err(Into::into)
    }

    /// Replaces the definition of a campaign that is still editable; `next_run_at` is
    /// recomputed by the caller for scheduled ones.
    pub async fn update_campaign(
        &self,
        tenant: TenantId,
        id: CampaignId,
        spec: &CampaignSpec,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Result<Campaign, Refused>> {
        let mut tx = self.begin().await?;
        let cur = Self::lock_campaign(&mut tx, tenant, id).await?;
        if !cur.status.editable() {
            return Ok(Err(Refused { from: cur.status }));
        }
        let next = if cur.status == CampaignStatus::Scheduled {
            next_run_at
        } else {
            None
        };
        let c: Campaign = on_tx!(&mut tx, c => sqlx::query_as(concat!(
            "update campaigns set name = $3, number_id = $4, template_name = $5, default_language = $6,
                parameters = $7, audience = $8, schedule = $9, quiet_hours = $10, next_run_at = $11, updated_at = $12
             where tenant_id = $1 and id = $2 returning ", ccols!()))
        .bind(tenant)
        .bind(id)
        .bind(&spec.name)
        .bind(spec.number_id)
        .bind(&spec.template_name)
        .bind(&spec.default_language)
        .bind(spec.parameters.to_string())
        .bind(spec.audience.to_string())
        .bind(spec.schedule.to_string())
        .bind(spec.quiet_hours.as_ref().map(|q| q.to_string()))
        .bind(next)
        .bind(now)
        .fetch_one(c)
        .await)?;
        tx.commit().await?;
        Ok(Ok(c))
    }

    /// Soft delete (history and statistics stay); refused while sending may be in progress.
    pub async fn delete_campaign(
        &self,
        tenant: TenantId,
        id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refused>> {
        let mut tx = self.begin().await?;
        let cur = Self::lock_campaign(&mut tx, tenant, id).await?;
        if cur.status.active() {
            return Ok(Err(Refused { from: cur.status }));
        }
        on_tx!(&mut tx, c => sqlx::query(
            "update campaigns set deleted_at = $3, next_run_at = null,
                status = case when status = 'scheduled' then 'cancelled' else status end
             where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Launch: draft → scheduled, first occurrence at `first`.
    pub async fn launch_campaign(
        &self,
        tenant: TenantId,
        id: CampaignId,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Result<Campaign, Refused>> {
        let mut tx = self.begin().await?;
        let cur = Self::lock_campaign(&mut tx, tenant, id).await?;
        let Some(to) = cur.status.apply(CampaignAction::Launch) else {
            return Ok(Err(Refused { from: cur.status }));
        };
        let c = on_tx!(&mut tx, c => sqlx::query_as(concat!(
            "update campaigns set status = $3, next_run_at = $4, launched_at = $5, updated_at = $5, status_reason = null
             where tenant_id = $1 and id = $2 returning ", ccols!()))
        .bind(tenant)
        .bind(id)
        .bind(to.as_str())
        .bind(first)
        .bind(now)
        .fetch_one(c)
        .await)?;
        tx.commit().await?;
        Ok(Ok(c))
    }

    /// Pause, resume or cancel. Pausing holds the queued messages of unfinished runs; resuming
    /// releases them; cancelling fails them (`campaign_cancelled`, counted as cancelled).
    pub async fn move_campaign(
        &self,
        tenant: TenantId,
        id: CampaignId,
        action: CampaignAction,
        now: DateTime<Utc>,
    ) -> Result<Result<Campaign, Refused>> {
        self.move_campaign_because(tenant, id, action, None, now)
            .await
    }

    /// A move with the reason shown on the campaign (`insufficient_balance` for a campaign
    /// that ran out of money and paused itself).
    pub async fn move_campaign_because(
        &self,
        tenant: TenantId,
        id: CampaignId,
        action: CampaignAction,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Result<Campaign, Refused>> {
        let mut tx = self.begin().await?;
        let cur = Self::lock_campaign(&mut tx, tenant, id).await?;
        let unfinished: i64 = on_tx!(&mut tx, c => sqlx::query_scalar(
            "select count(*) from campaign_runs where tenant_id = $1 and campaign_id = $2 and finished_at is null",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(c)
        .await)?;
        let action = match action {
            CampaignAction::Resume { .. } => CampaignAction::Resume {
                running: unfinished > 0,
            },
            a => a,
        };
        let Some(to) = cur.status.apply(action) else {
            return Ok(Err(Refused { from: cur.status }));
        };
        const RUNS: &str = "run_id in (select id from campaign_runs where tenant_id = $1 and campaign_id = $2 and finished_at is null)";
        match action {
            CampaignAction::Pause => {
                let sql = format!(
                    "update messages set next_attempt_at = $3 where tenant_id = $1 and {RUNS} and status = 'queued'"
                );
                on_tx!(&mut tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(id).bind(held_until())
                    .execute(c).await.map(|r| r.rows_affected()))?;
            }
            CampaignAction::Resume { .. } => {
                let sql = format!(
                    "update messages set next_attempt_at = $3 where tenant_id = $1 and {RUNS} and status = 'queued' and next_attempt_at >= $4"
                );
                on_tx!(&mut tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(id).bind(now).bind(held_until())
                    .execute(c).await.map(|r| r.rows_affected()))?;
            }
            CampaignAction::Cancel => {
                let count = format!(
                    "select run_id, count(*) from messages where tenant_id = $1 and {RUNS} and status = 'queued' group by run_id"
                );
                let per: Vec<(Option<RunId>, i64)> = on_tx!(&mut tx, c => sqlx::query_as(sqlx::AssertSqlSafe(count.clone()))
                    .bind(tenant).bind(id).fetch_all(c).await)?;
                let sql = format!(
                    "update messages set status = 'failed', status_rank = 5, failed_at = $3, updated_at = $3,
                        error_title = 'campaign_cancelled', lease_until = null, next_attempt_at = null
                     where tenant_id = $1 and {RUNS} and status = 'queued'"
                );
                on_tx!(&mut tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(tenant).bind(id).bind(now).execute(c).await.map(|r| r.rows_affected()))?;
                // Messages paid for and then put back (a retry) never left: refund them.
                let paid = format!(
                    "select tenant_id, id from messages where tenant_id = $1 and {RUNS} and status = 'failed'
                       and error_title = 'campaign_cancelled' and charge > 0 and refunded_at is null"
                );
                let paid: Vec<(TenantId, pinglayer_domain::MessageId)> = on_tx!(&mut tx, c => sqlx::query_as(sqlx::AssertSqlSafe(paid.clone()))
                    .bind(tenant).bind(id).fetch_all(c).await)?;
                crate::billing::refund_in(&mut tx, &paid, true, now).await?;
                for (run, n) in per {
                    let Some(run) = run else { continue };
                    on_tx!(&mut tx, c => sqlx::query(
                        "update campaign_runs set done = done + $3, cancelled = cancelled + $3 where tenant_id = $1 and id = $2",
                    )
                    .bind(tenant).bind(run).bind(n).execute(c).await.map(|r| r.rows_affected()))?;
                }
                // Runs stop here; messages already handed to Meta still report their statuses.
                on_tx!(&mut tx, c => sqlx::query(
                    "update campaign_runs set status = 'cancelled', finished_at = $3, fanout_done = true
                     where tenant_id = $1 and campaign_id = $2 and finished_at is null",
                )
                .bind(tenant).bind(id).bind(now).execute(c).await.map(|r| r.rows_affected()))?;
            }
            _ => {}
        }
        set_status_in(&mut tx, tenant, id, to, reason, now).await?;
        let c = Self::lock_campaign(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(Ok(c))
    }

    /// Marks a campaign failed (its template vanished, its number is gone…), stopping its
    /// unfinished runs like a cancel does.
    pub async fn fail_campaign(
        &self,
        tenant: TenantId,
        id: CampaignId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Ok(Ok(_)) = self
            .move_campaign(tenant, id, CampaignAction::Cancel, now)
            .await
        {
            let mut tx = self.begin().await?;
            set_status_in(
                &mut tx,
                tenant,
                id,
                CampaignStatus::Failed,
                Some(reason),
                now,
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The scheduler: starts one run per due occurrence. The run is inserted and the campaign's
    /// next occurrence written in one transaction, and runs are unique per occurrence, so no
    /// occurrence runs twice whatever the number of processes. `next` computes the following
    /// occurrence from the stored schedule.
    pub async fn start_due_runs(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        next: impl Fn(&Campaign, DateTime<Utc>) -> Option<DateTime<Utc>>,
    ) -> Result<Vec<(TenantId, CampaignId, RunId)>> {
        let mut tx = self.begin().await?;
        let lock = match &tx {
            Tx::Postgres(_) => " for update skip locked",
            Tx::Sqlite(_) => "",
        };
        let sql = format!(
            concat!(
                "select ",
                ccols!(),
                " from campaigns where status in ('scheduled', 'running')
               and next_run_at <= $1 and deleted_at is null order by next_run_at limit $2{}"
            ),
            lock
        );
        let due: Vec<Campaign> = on_tx!(&mut tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(now).bind(limit).fetch_all(c).await)?;
        let mut started = Vec::new();
        for c in due {
            let occurrence = c.next_run_at.expect("selected on next_run_at");
            let run = RunId::new();
            let inserted = on_tx!(&mut tx, x => sqlx::query(
                "insert into campaign_runs (tenant_id, id, campaign_id, occurrence_at, status, started_at)
                 values ($1, $2, $3, $4, 'running', $5) on conflict do nothing",
            )
            .bind(c.tenant_id)
            .bind(run)
            .bind(c.id)
            .bind(occurrence)
            .bind(now)
            .execute(x)
            .await
            .map(|r| r.rows_affected()))?;
            let following = next(&c, occurrence);
            on_tx!(&mut tx, x => sqlx::query(
                "update campaigns set status = 'running', next_run_at = $3, updated_at = $4 where tenant_id = $1 and id = $2",
            )
            .bind(c.tenant_id)
            .bind(c.id)
            .bind(following)
            .bind(now)
            .execute(x)
            .await
            .map(|r| r.rows_affected()))?;
            if inserted > 0 {
                started.push((c.tenant_id, c.id, run));
            }
        }
        tx.commit().await?;
        Ok(started)
    }

    /// Leases a run whose fan-out is unfinished (a crashed fan-out resumes at its cursor).
    pub async fn claim_fanout(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<FanoutJob>> {
        let runs: Vec<(TenantId, RunId)> = self
            .claim(
                "update campaign_runs set lease_until = $2
                 where (tenant_id, id) in (
                    select tenant_id, id from campaign_runs
                    where not fanout_done and (lease_until is null or lease_until < $1)
                    order by started_at limit $3 {lock})
                 returning tenant_id, id",
                now,
                lease_until,
                1,
            )
            .await?;
        let Some((tenant, run)) = runs.into_iter().next() else {
            return Ok(None);
        };
        self.claim_fanout_resume(tenant, run).await
    }

    /// A leased fan-out job as it stands now (its cursor moved by the last batch).
    pub async fn claim_fanout_resume(
        &self,
        tenant: TenantId,
        run: RunId,
    ) -> Result<Option<FanoutJob>> {
        on_db!(self, p => sqlx::query_as(
            "select r.tenant_id, r.id as run_id, r.campaign_id, r.fanout_cursor, c.number_id, c.template_name, c.audience
             from campaign_runs r join campaigns c on c.tenant_id = r.tenant_id and c.id = r.campaign_id
             where r.tenant_id = $1 and r.id = $2 and not r.fanout_done",
        )
        .bind(tenant)
        .bind(run)
        .fetch_optional(p)
        .await)
        .map_err(Into::into)
    }

    /// Materialises the next batch of a run's audience — its next `batch` contacts in id order
    /// after the cursor — into the outbox with one set-based `INSERT … SELECT`. The cursor and
    /// counters move in the same transaction, so a crash replays nothing twice (and (run,
    /// contact) is unique besides). With the last batch, opted-out contacts of a marketing
    /// campaign are recorded as skipped, in one statement.
    pub async fn fanout_batch(
        &self,
        job: &FanoutJob,
        audience: &AudienceSql,
        marketing: bool,
        batch: i64,
        now: DateTime<Utc>,
    ) -> Result<FanoutStep> {
        let tenant = job.tenant_id;
        let cursor = job.fanout_cursor.unwrap_or(uuid::Uuid::nil());
        let backend = self.backend();
        let (w, binds) = audience.sql(backend, now, 8);
        let consent = if marketing {
            " and (c.consent is null or c.consent <> 'opted_out')"
        } else {
            ""
        };
        let preview = format!("Template: {}", job.template_name);
        let id = new_id_sql(backend, "$7");
        // The audience binds take $8…; the cursor and the batch size follow them.
        let (cur_n, lim_n) = (8 + binds.len(), 9 + binds.len());
        let insert = format!(
            "insert into messages (tenant_id, id, number_id, contact_id, campaign_id, run_id, direction, kind, content,
                preview, to_phone, status, status_rank, attempts, next_attempt_at, priority, created_at, updated_at, category)
             select c.tenant_id, {id}, $2, c.id, $3, $4, 'outbound', 'template', '', $5, c.phone, 'queued', 0, 0, $6, 1, $6, $6,
                (select lower(t.category) from campaigns cp join templates t on t.tenant_id = cp.tenant_id and t.name = cp.template_name
                 where cp.tenant_id = $1 and cp.id = $3 limit 1)
             from contacts c where c.tenant_id = $1 and c.deleted_at is null and c.id > ${cur_n}
               and {w}{consent}
             order by c.id limit ${lim_n}
             returning contact_id"
        );
        let mut tx = self.begin().await?;
        let ids: Vec<ContactId> = on_tx!(&mut tx, c => {
            let q = sqlx::query_scalar(sqlx::AssertSqlSafe(insert.clone()))
                .bind(tenant).bind(job.number_id).bind(job.campaign_id).bind(job.run_id)
                .bind(preview.clone()).bind(now).bind(now.timestamp_millis());
            bind_all!(q, &binds).bind(cursor).bind(batch).fetch_all(c).await
        })?;
        let queued = ids.len() as i64;
        let done = queued < batch;
        let next = ids.iter().max().map(|c| c.0).unwrap_or(cursor);
        let mut skipped = 0i64;
        if done && marketing {
            let (w2, binds2) = audience.sql(backend, now, 3);
            let skip = format!(
                "insert into campaign_skips (tenant_id, run_id, contact_id, reason)
                 select c.tenant_id, $2, c.id, 'opted_out' from contacts c
                 where c.tenant_id = $1 and c.deleted_at is null and c.consent = 'opted_out' and {w2}
                 on conflict do nothing"
            );
            skipped = on_tx!(&mut tx, c => {
                let q = sqlx::query(sqlx::AssertSqlSafe(skip.clone())).bind(tenant).bind(job.run_id);
                bind_all!(q, &binds2).execute(c).await.map(|r| r.rows_affected())
            })? as i64;
        }
        on_tx!(&mut tx, c => sqlx::query(
            "update campaign_runs set fanout_cursor = $3, fanout_done = $4, targeted = targeted + $5 + $6,
                queued = queued + $5, skipped = skipped + $6, skipped_opted_out = skipped_opted_out + $6,
                lease_until = case when $4 then null else lease_until end
             where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(job.run_id)
        .bind(next)
        .bind(done)
        .bind(queued)
        .bind(skipped)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        if done {
            // An audience of nobody (or of only skipped contacts) is finished at once.
            finish_run_if_done(&mut tx, tenant, job.run_id, now).await?;
        }
        tx.commit().await?;
        Ok(FanoutStep {
            queued,
            skipped,
            done,
        })
    }

    /// How many live contacts an audience holds now (launch refuses an empty one).
    pub async fn audience_size(
        &self,
        tenant: TenantId,
        audience: &AudienceSql,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let (w, binds) = audience.sql(self.backend(), now, 2);
        let sql = format!(
            "select count(*) from contacts c where c.tenant_id = $1 and c.deleted_at is null and {w}"
        );
        Ok(on_db!(self, p => {
            let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(tenant);
            bind_all!(q, &binds).fetch_one(p).await
        })?)
    }

    pub async fn campaign_runs(
        &self,
        tenant: TenantId,
        campaign: CampaignId,
        page: &PageRequest,
    ) -> Result<Vec<Run>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", rcols!(),
            " from campaign_runs where tenant_id = $1 and campaign_id = $2 and ($3 is null or id < $3)
              order by id desc limit $4"))
        .bind(tenant)
        .bind(campaign)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn run(&self, tenant: TenantId, id: RunId) -> Result<Run> {
        on_db!(self, p => sqlx::query_as(concat!("select ", rcols!(),
            " from campaign_runs where tenant_id = $1 and id = $2"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// The sum of a campaign's run counters (a handful of rows, never a scan of messages).
    pub async fn campaign_counters(
        &self,
        tenant: TenantId,
        campaign: CampaignId,
    ) -> Result<(Counters, i64)> {
        let runs: Vec<Counters> = on_db!(self, p => sqlx::query_as(
            "select targeted, skipped, skipped_opted_out, queued, done, sent, delivered, read, failed, cancelled, replied
             from campaign_runs where tenant_id = $1 and campaign_id = $2",
        )
        .bind(tenant)
        .bind(campaign)
        .fetch_all(p)
        .await)?;
        let mut total = Counters::default();
        for r in &runs {
            total.add(r);
        }
        Ok((total, runs.len() as i64))
    }

    /// A run's recipients in contact order; `status` is a message status, `replied` or
    /// `skipped`.
    pub async fn recipients(
        &self,
        tenant: TenantId,
        run: RunId,
        status: Option<&str>,
        after: Option<ContactId>,
        limit: i64,
    ) -> Result<Vec<Recipient>> {
        if status == Some("skipped") {
            return on_db!(self, p => sqlx::query_as(
                "select cast(null as uuid) as message_id, s.contact_id, c.name, c.phone, 'skipped' as status,
                    cast(null as bigint) as error_code, s.reason as error_title, cast(null as timestamptz) as sent_at,
                    cast(null as timestamptz) as delivered_at, cast(null as timestamptz) as read_at,
                    cast(null as timestamptz) as failed_at, cast(null as timestamptz) as replied_at
                 from campaign_skips s join contacts c on c.tenant_id = s.tenant_id and c.id = s.contact_id
                 where s.tenant_id = $1 and s.run_id = $2 and ($3 is null or s.contact_id > $3)
                 order by s.contact_id limit $4",
            )
            .bind(tenant)
            .bind(run)
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await)
            .map_err(Into::into);
        }
        let (st, replied) = match status {
            Some("replied") => (None, true),
            other => (other, false),
        };
        on_db!(self, p => sqlx::query_as(
            "select m.id as message_id, m.contact_id, c.name, m.to_phone as phone, m.status, m.error_code, m.error_title,
                m.sent_at, m.delivered_at, m.read_at, m.failed_at, m.replied_at
             from messages m left join contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
             where m.tenant_id = $1 and m.run_id = $2 and ($3 is null or m.contact_id > $3)
               and ($4 is null or m.status = $4) and ($5 = 0 or m.replied_at is not null)
             order by m.contact_id limit $6",
        )
        .bind(tenant)
        .bind(run)
        .bind(after)
        .bind(st)
        .bind(replied as i32)
        .bind(limit)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// The latest run of a campaign, if any.
    pub async fn latest_run(&self, tenant: TenantId, campaign: CampaignId) -> Result<Option<Run>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", rcols!(),
            " from campaign_runs where tenant_id = $1 and campaign_id = $2 order by occurrence_at desc limit 1"))
        .bind(tenant)
        .bind(campaign)
        .fetch_optional(p)
        .await)
        .map_err(Into::into)
    }

    /// Status of the runs (and their campaigns) named, for the dispatcher's pre-send check.
    pub async fn runs_sendable(
        &self,
        keys: &[(TenantId, RunId)],
    ) -> Result<HashMap<RunId, (CampaignId, CampaignStatus)>> {
        let mut out = HashMap::new();
        for (tenant, run) in keys {
            let row: Option<(CampaignId, String)> = on_db!(self, p => sqlx::query_as(
                "select c.id, c.status from campaign_runs r join campaigns c on c.tenant_id = r.tenant_id and c.id = r.campaign_id
                 where r.tenant_id = $1 and r.id = $2",
            )
            .bind(*tenant)
            .bind(*run)
            .fetch_optional(p)
            .await)?;
            if let Some((c, s)) = row
                && let Ok(s) = s.parse()
            {
                out.insert(*run, (c, s));
            }
        }
        Ok(out)
    }

    /// Puts claimed campaign messages back without an attempt counted: held (`until` far
    /// ahead) for a paused campaign, or at the end of quiet hours.
    pub async fn requeue(
        &self,
        keys: &[(TenantId, pinglayer_domain::MessageId)],
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let until = until.unwrap_or_else(held_until);
        let mut by_tenant: HashMap<TenantId, Vec<pinglayer_domain::MessageId>> = HashMap::new();
        for (t, m) in keys {
            by_tenant.entry(*t).or_default().push(*m);
        }
        let mut tx = self.begin().await?;
        for (tenant, ids) in by_tenant {
            for chunk in ids.chunks(500) {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
                let sql = format!(
                    "update messages set status = 'queued', status_rank = 0, attempts = attempts - 1,
                        next_attempt_at = $2, lease_until = null, updated_at = $3
                     where tenant_id = $1 and status = 'sending' and id in ({})",
                    marks.join(", ")
                );
                on_tx!(&mut tx, c => {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(until).bind(now);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(c).await.map(|r| r.rows_affected())
                })?;
            }
        }
        tx.commit().await
    }
}

/// Credits a reply to the latest campaign message the contact got from this number in the last
/// 7 days (once per message).
pub async fn attribute_reply_in(
    tx: &mut Tx,
    tenant: TenantId,
    contact: ContactId,
    number: NumberId,
    at: DateTime<Utc>,
) -> Result<()> {
    let run: Option<Option<RunId>> = on_tx!(tx, c => sqlx::query_scalar(
        "update messages set replied_at = $4
         where tenant_id = $1 and id = (
            select id from messages where tenant_id = $1 and contact_id = $2 and number_id = $3
              and run_id is not null and direction = 'outbound' and sent_at is not null
              and sent_at <= $4 and sent_at > $5
            order by id desc limit 1)
           and replied_at is null
         returning run_id",
    )
    .bind(tenant)
    .bind(contact)
    .bind(number)
    .bind(at)
    .bind(at - chrono::Duration::days(7))
    .fetch_optional(c)
    .await)?;
    if let Some(Some(run)) = run {
        on_tx!(tx, c => sqlx::query("update campaign_runs set replied = replied + 1 where tenant_id = $1 and id = $2")
            .bind(tenant)
            .bind(run)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_milestone_is_counted_once() {
        let mut d = Delta::default();
        d.note(1, MessageStatus::Read);
        assert_eq!(
            d,
            Delta {
                done: 1,
                sent: 1,
                delivered: 1,
                read: 1,
                ..Default::default()
            }
        );
        let mut d = Delta::default();
        d.note(2, MessageStatus::Failed);
        assert_eq!(
            d,
            Delta {
                failed: 1,
                ..Default::default()
            }
        );
        let mut d = Delta::default();
        d.note(1, MessageStatus::Failed);
        assert_eq!(
            d,
            Delta {
                done: 1,
                failed: 1,
                ..Default::default()
            }
        );
        let mut d = Delta::default();
        d.note(3, MessageStatus::Read);
        assert_eq!(
            d,
            Delta {
                read: 1,
                ..Default::default()
            }
        );
    }
}
