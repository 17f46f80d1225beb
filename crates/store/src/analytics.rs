//! Analytics rollups: per tenant, counts of what happened per UTC day (by metric, sending
//! number and category) and per hour (by metric), bumped in the same transaction as the event
//! itself — an outbound message reaching `sent`/`delivered`/`read`/`failed`, an inbound
//! message, a contact created, a consent change. Dashboards read these few rows, never the
//! messages.
//!
//! Outbound milestones are counted like campaign counters: a message moving from rank `old` to
//! a status counts every milestone it crossed, once (see [`note_moved`]).

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use pinglayer_domain::{MessageId, MessageStatus, NumberId, TenantId};
use std::collections::{BTreeMap, HashMap};

use crate::{Db, Result, Tx, campaigns::HeldMap, on_db, on_tx};

/// The number a rollup row has when it is about no number (contacts, consent).
pub const NO_NUMBER: uuid::Uuid = uuid::Uuid::nil();

/// Outbound milestones.
pub const SENT: &str = "sent";
pub const DELIVERED: &str = "delivered";
pub const READ: &str = "read";
pub const FAILED: &str = "failed";
/// Left the queue: accepted by Meta or failed (the base of a failure rate).
pub const ATTEMPTED: &str = "attempted";
pub const INBOUND: &str = "inbound";
pub const CONTACTS_CREATED: &str = "contacts_created";
pub const OPTED_OUT: &str = "opted_out";
pub const OPTED_IN: &str = "opted_in";

/// Every metric, in the order reports show them.
pub const METRICS: [&str; 9] = [
    ATTEMPTED,
    SENT,
    DELIVERED,
    READ,
    FAILED,
    INBOUND,
    CONTACTS_CREATED,
    OPTED_OUT,
    OPTED_IN,
];

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

/// The milestones a move from rank `old` to `new` crosses (forward only).
pub fn crossed(old: i32, new: MessageStatus) -> Vec<&'static str> {
    let r = new.rank();
    let mut out = Vec::new();
    if old < 2 && r >= 2 {
        out.push(ATTEMPTED);
    }
    match new {
        MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Read => {
            if old < 2 {
                out.push(SENT);
            }
            if old < 3 && r >= 3 {
                out.push(DELIVERED);
            }
            if old < 4 && r >= 4 {
                out.push(READ);
            }
        }
        MessageStatus::Failed if old < 5 => out.push(FAILED),
        _ => {}
    }
    out
}

/// Counts the milestones that outbound messages crossed in this transaction, given what each
/// message was before it (rank, number, category: read when it was locked, so the rollups need
/// no second look at the messages). Summed per rollup row here; one statement per rollup.
pub(crate) async fn note_moved(
    tx: &mut Tx,
    before: &HeldMap,
    moved: &[(TenantId, MessageId, MessageStatus)],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut daily: BTreeMap<(TenantId, &'static str, uuid::Uuid, &str), i64> = BTreeMap::new();
    for (t, m, s) in moved {
        let Some(h) = before.get(&(*t, *m)) else {
            continue;
        };
        for x in crossed(h.status_rank, *s) {
            let category = h.category.as_deref().unwrap_or("");
            *daily.entry((*t, x, h.number_id, category)).or_default() += 1;
        }
    }
    if daily.is_empty() {
        return Ok(());
    }
    let day = now.date_naive();
    // Rows are written in key order (the map's, here and in the hourly sums below), so
    // concurrent transactions bumping the same rollups lock them in the same order.
    const UPSERT: &str = "on conflict (tenant_id, day, metric, number_id, category) do update set n = analytics_daily.n + excluded.n";
    match tx {
        Tx::Postgres(t) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "insert into analytics_daily (tenant_id, day, metric, number_id, category, n)
                 select v.tid, $1, v.metric, v.number_id, v.category, v.n
                 from unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::int8[]) as v (tid, metric, number_id, category, n)
                 order by 1, 3, 4, 5 {UPSERT}"
            )))
            .bind(day)
            .bind(daily.keys().map(|k| k.0.0).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.1).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.2).collect::<Vec<_>>())
            .bind(daily.keys().map(|k| k.3).collect::<Vec<_>>())
            .bind(daily.values().copied().collect::<Vec<_>>())
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            let rows: Vec<_> = daily.iter().collect();
            for chunk in rows.chunks(100) {
                let mut qb = sqlx::QueryBuilder::new(
                    "insert into analytics_daily (tenant_id, day, metric, number_id, category, n) ",
                );
                qb.push_values(chunk, |mut b, ((t, x, number, category), n)| {
                    b.push_bind(*t)
                        .push_bind(day)
                        .push_bind(*x)
                        .push_bind(*number)
                        .push_bind(*category)
                        .push_bind(**n);
                });
                qb.push(" ").push(UPSERT);
                qb.build().execute(&mut **t).await?;
            }
        }
    }
    let mut hourly: BTreeMap<(TenantId, &'static str), i64> = BTreeMap::new();
    for ((t, x, _, _), n) in &daily {
        *hourly.entry((*t, x)).or_default() += n;
    }
    for ((t, x), n) in hourly {
        bump_hour(tx, t, x, n, now).await?;
    }
    Ok(())
}

async fn bump_hour(
    tx: &mut Tx,
    tenant: TenantId,
    metric: &str,
    n: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "insert into analytics_hourly (tenant_id, hour, metric, n) values ($1, $2, $3, $4)
         on conflict (tenant_id, hour, metric) do update set n = analytics_hourly.n + excluded.n",
    )
    .bind(tenant)
    .bind(hour_of(now))
    .bind(metric)
    .bind(n)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Adds `n` to a metric of `tenant` now (an inbound message on `number`, contacts created, a
/// consent change…).
pub(crate) async fn bump(
    tx: &mut Tx,
    tenant: TenantId,
    metric: &str,
    number: Option<NumberId>,
    n: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    on_tx!(tx, c => sqlx::query(
        "insert into analytics_daily (tenant_id, day, metric, number_id, category, n) values ($1, $2, $3, $4, '', $5)
         on conflict (tenant_id, day, metric, number_id, category) do update set n = analytics_daily.n + excluded.n",
    )
    .bind(tenant)
    .bind(now.date_naive())
    .bind(metric)
    .bind(number.map(|n| n.0).unwrap_or(NO_NUMBER))
    .bind(n)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    bump_hour(tx, tenant, metric, n, now).await
}

/// One rollup row, summed over the days asked for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DailyRow {
    pub day: NaiveDate,
    pub metric: String,
    /// `None` when the rows were summed over numbers.
    pub number_id: Option<uuid::Uuid>,
    pub category: String,
    pub n: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HourlyRow {
    pub hour: DateTime<Utc>,
    pub metric: String,
    pub n: i64,
}

/// A tenant's figures for the platform admin.
#[derive(Debug, Clone, Default)]
pub struct TenantFigures {
    pub tenant_id: TenantId,
    pub name: String,
    pub slug: String,
    pub metrics: HashMap<String, i64>,
    /// Numbers that sent in the period.
    pub active_numbers: i64,
    /// Connected numbers now.
    pub numbers: i64,
    /// Debits less refunds in the period, in ten-thousandths of the currency.
    pub spend: i64,
}

/// A campaign's figures for the dashboard's top list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TopCampaign {
    pub id: pinglayer_domain::CampaignId,
    pub name: String,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub replied: i64,
    pub clicks: i64,
    pub clickers: i64,
}

/// Spend from the ledger: debits (negative) and refunds (positive) of the period, as a positive
/// amount spent.
const SPEND: &str = "select cast(coalesce(-sum(amount), 0) as bigint) from ledger_entries
     where tenant_id = $1 and kind in ('debit', 'refund') and created_at >= $2 and created_at < $3";

/// The backfill at the end of each backend's migration: rollups recomputed from messages,
/// contacts and consent changes.
const BACKFILL_MARK: &str = "-- What happened before this release";
const PG_MIGRATION: &str = include_str!("../migrations/postgres/0009_links.sql");
const SQLITE_MIGRATION: &str = include_str!("../migrations/sqlite/0009_links.sql");

fn backfill(migration: &'static str) -> &'static str {
    migration
        .find(BACKFILL_MARK)
        .map(|i| &migration[i..])
        .unwrap_or("")
}

impl Db {
    /// Recomputes every rollup from the tables they summarise (messages, contacts, consent
    /// changes), with the migration's own backfill statements, in one transaction. For
    /// operators after a data repair, and for benchmarks that seed messages directly.
    pub async fn rebuild_analytics(&self) -> Result<()> {
        let sql = match self.backend() {
            crate::Backend::Postgres => backfill(PG_MIGRATION),
            crate::Backend::Sqlite => backfill(SQLITE_MIGRATION),
        };
        let mut tx = self.begin().await?;
        on_tx!(&mut tx, c => sqlx::query("delete from analytics_daily").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        on_tx!(&mut tx, c => sqlx::query("delete from analytics_hourly").execute(&mut *c).await.map(|r| r.rows_affected()))?;
        on_tx!(&mut tx, c => sqlx::raw_sql(sql).execute(&mut *c).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    /// A tenant's daily rollups for `from..=to`, per (day, metric, category) and, with
    /// `by_number`, per sending number too.
    pub async fn analytics_daily(
        &self,
        tenant: TenantId,
        from: NaiveDate,
        to: NaiveDate,
        by_number: bool,
    ) -> Result<Vec<DailyRow>> {
        let sql = if by_number {
            "select day, metric, number_id, category, n from analytics_daily
             where tenant_id = $1 and day >= $2 and day <= $3 order by day, metric"
        } else {
            "select day, metric, cast(null as uuid) as number_id, category, cast(sum(n) as bigint) as n
             from analytics_daily where tenant_id = $1 and day >= $2 and day <= $3
             group by day, metric, category order by day, metric"
        };
        on_db!(self, p => sqlx::query_as(sql)
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// A tenant's hourly rollups in `[from, to)`.
    pub async fn analytics_hourly(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HourlyRow>> {
        on_db!(self, p => sqlx::query_as(
            "select hour, metric, n from analytics_hourly
             where tenant_id = $1 and hour >= $2 and hour < $3 order by hour, metric",
        )
        .bind(tenant)
        .bind(hour_of(from))
        .bind(to)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// What a tenant spent in `[from, to)` (0 when nothing was charged).
    pub async fn spend(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64> {
        let v: Option<i64> = on_db!(self, p => sqlx::query_scalar(SPEND)
            .bind(tenant)
            .bind(from)
            .bind(to)
            .fetch_one(p)
            .await)?;
        Ok(v.unwrap_or(0))
    }

    /// Campaigns with runs started in `[from, to)`, most sent first.
    pub async fn top_campaigns(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<TopCampaign>> {
        on_db!(self, p => sqlx::query_as(
            "select c.id, c.name, cast(sum(r.sent) as bigint) as sent, cast(sum(r.delivered) as bigint) as delivered,
                cast(sum(r.read) as bigint) as read, cast(sum(r.replied) as bigint) as replied,
                coalesce(max(k.clicks), 0) as clicks, coalesce(max(k.clickers), 0) as clickers
             from campaign_runs r
             join campaigns c on c.tenant_id = r.tenant_id and c.id = r.campaign_id
             left join campaign_clicks k on k.tenant_id = c.tenant_id and k.campaign_id = c.id
             where r.tenant_id = $1 and r.started_at >= $2 and r.started_at < $3 and c.deleted_at is null
             group by c.id, c.name
             order by sum(r.sent) desc, c.id desc limit $4",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// Every tenant's figures for `from..=to` (days, UTC), busiest first.
    pub async fn platform_analytics(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<TenantFigures>> {
        let start = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let end = to
            .succ_opt()
            .unwrap_or(to)
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        let tenants: Vec<(TenantId, String, String)> = on_db!(self, p => sqlx::query_as(
            "select id, name, slug from tenants where not is_platform order by id",
        )
        .fetch_all(p)
        .await)?;
        let sums: Vec<(TenantId, String, i64)> = on_db!(self, p => sqlx::query_as(
            "select tenant_id, metric, cast(sum(n) as bigint) from analytics_daily where day >= $1 and day <= $2
             group by tenant_id, metric",
        )
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await)?;
        let active: Vec<(TenantId, i64)> = on_db!(self, p => sqlx::query_as(
            "select tenant_id, count(distinct number_id) from analytics_daily
             where day >= $1 and day <= $2 and metric = 'sent' group by tenant_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await)?;
        let numbers: Vec<(TenantId, i64)> = on_db!(self, p => sqlx::query_as(
            "select tenant_id, count(*) from whatsapp_numbers where status = 'connected' group by tenant_id",
        )
        .fetch_all(p)
        .await)?;
        let spend: Vec<(TenantId, i64)> = on_db!(self, p => sqlx::query_as(
            "select tenant_id, cast(coalesce(-sum(amount), 0) as bigint) from ledger_entries
             where kind in ('debit', 'refund') and created_at >= $1 and created_at < $2 group by tenant_id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(p)
        .await)?;
        let mut by: HashMap<TenantId, TenantFigures> = tenants
            .into_iter()
            .map(|(id, name, slug)| {
                (
                    id,
                    TenantFigures {
                        tenant_id: id,
                        name,
                        slug,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for (t, m, n) in sums {
            if let Some(f) = by.get_mut(&t) {
                f.metrics.insert(m, n);
            }
        }
        for (t, n) in active {
            if let Some(f) = by.get_mut(&t) {
                f.active_numbers = n;
            }
        }
        for (t, n) in numbers {
            if let Some(f) = by.get_mut(&t) {
                f.numbers = n;
            }
        }
        for (t, n) in spend {
            if let Some(f) = by.get_mut(&t) {
                f.spend = n;
            }
        }
        let mut out: Vec<TenantFigures> = by.into_values().collect();
        let volume = |f: &TenantFigures| {
            f.metrics.get(SENT).copied().unwrap_or(0) + f.metrics.get(INBOUND).copied().unwrap_or(0)
        };
        out.sort_by(|a, b| {
            volume(b)
                .cmp(&volume(a))
                .then(a.tenant_id.0.cmp(&b.tenant_id.0))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_are_crossed_once() {
        assert_eq!(
            crossed(1, MessageStatus::Read),
            vec![ATTEMPTED, SENT, DELIVERED, READ]
        );
        assert_eq!(crossed(2, MessageStatus::Delivered), vec![DELIVERED]);
        assert_eq!(crossed(3, MessageStatus::Read), vec![READ]);
        assert_eq!(crossed(2, MessageStatus::Failed), vec![FAILED]);
        assert_eq!(crossed(1, MessageStatus::Failed), vec![ATTEMPTED, FAILED]);
        assert!(crossed(5, MessageStatus::Failed).is_empty());
        assert!(crossed(4, MessageStatus::Read).is_empty());
    }

    #[test]
    fn the_backfill_is_found_in_both_migrations() {
        for m in [PG_MIGRATION, SQLITE_MIGRATION] {
            let b = backfill(m);
            assert!(b.contains("insert into analytics_daily"), "{b}");
            assert!(b.contains("insert into analytics_hourly"), "{b}");
        }
    }
}
