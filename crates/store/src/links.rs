//! Smart links: the links themselves, the personal codes of campaign recipients, the global
//! code lookup the redirect uses, and click recording — written in batches, each click's
//! uniqueness decided by one insert into the link's visitors, with every counter and rollup
//! moved in the same transaction.

use chrono::{DateTime, Timelike, Utc};
use pinglayer_domain::{
    CampaignId, ContactId, LinkId, MessageId, PageRequest, RunId, TenantId, UserId,
    link::PERSONAL_CODE_LEN,
};
use std::collections::{HashMap, HashSet};

use crate::{Db, Result, StoreError, Tx, on_db, on_tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Link {
    pub tenant_id: TenantId,
    pub id: LinkId,
    pub code: String,
    pub url: String,
    /// JSON `Utm`.
    pub utm: Option<String>,
    pub campaign_id: Option<CampaignId>,
    pub short_base: String,
    pub disabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub clicks: i64,
    pub unique_clicks: i64,
    pub bot_clicks: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! lcols {
    () => {
        "tenant_id, id, code, url, utm, campaign_id, short_base, disabled, expires_at, clicks, unique_clicks,
         bot_clicks, created_at, updated_at"
    };
}

#[derive(Debug, Clone)]
pub struct NewLink {
    pub url: String,
    pub utm: Option<String>,
    pub campaign_id: Option<CampaignId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub short_base: String,
    pub created_by: Option<UserId>,
}

/// A change to a link; `None` leaves a field as it is (`expires_at: Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct LinkPatch {
    pub url: Option<String>,
    pub utm: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub disabled: Option<bool>,
}

/// What the redirect needs to know about a code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    pub tenant_id: TenantId,
    pub link_id: LinkId,
    pub url: String,
    pub utm: Option<String>,
    pub disabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub contact_id: Option<ContactId>,
    pub campaign_id: Option<CampaignId>,
    pub run_id: Option<RunId>,
    pub message_id: Option<MessageId>,
}

/// What the engine needs to make personal codes of a link.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkKey {
    pub id: LinkId,
    pub code: String,
    pub salt: Vec<u8>,
    pub short_base: String,
    pub campaign_id: Option<CampaignId>,
}

/// A recipient's personal code, written before their message is sent.
#[derive(Debug, Clone)]
pub struct PersonalCode {
    pub tenant_id: TenantId,
    pub link_id: LinkId,
    pub message_id: MessageId,
    pub code: String,
    pub contact_id: ContactId,
    pub campaign_id: Option<CampaignId>,
    pub run_id: Option<RunId>,
}

/// A click, parsed, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewClick {
    pub target: std::sync::Arc<Target>,
    pub code: String,
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: String,
    pub referrer: Option<String>,
    pub device: String,
    pub browser: String,
    pub os: String,
    pub country: Option<String>,
    pub bot: bool,
    /// `c:<contact>` or `v:<hash of ip and user agent>`.
    pub visitor: String,
}

/// One click of a known contact, as recorded (for their data export).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContactClick {
    pub at: DateTime<Utc>,
    pub link_id: LinkId,
    pub code: String,
    pub campaign_id: Option<CampaignId>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    pub device: String,
    pub browser: String,
    pub os: String,
    pub country: Option<String>,
}

/// A link's figures: totals, per hour, and per device, browser, OS and country.
#[derive(Debug, Clone, Default)]
pub struct LinkStats {
    pub hourly: Vec<(DateTime<Utc>, i64, i64, i64)>,
    /// (dimension, value, clicks, unique clicks), most clicks first.
    pub dims: Vec<(String, String, i64, i64)>,
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

impl Db {
    /// Creates a link with a fresh random code (drawn again on the rare collision).
    pub async fn create_link(
        &self,
        tenant: TenantId,
        l: &NewLink,
        now: DateTime<Utc>,
    ) -> Result<Link> {
        let mut last = StoreError::Conflict("code");
        for _ in 0..5 {
            let r = on_db!(self, p => sqlx::query_as(concat!(
                "insert into links (tenant_id, id, code, url, utm, campaign_id, salt, short_base, expires_at,
                    created_by, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
                 returning ", lcols!()))
            .bind(tenant)
            .bind(LinkId::new())
            .bind(pinglayer_domain::link::new_code())
            .bind(&l.url)
            .bind(&l.utm)
            .bind(l.campaign_id)
            .bind(pinglayer_domain::link::new_salt())
            .bind(&l.short_base)
            .bind(l.expires_at)
            .bind(l.created_by)
            .bind(now)
            .fetch_one(p)
            .await)
            .map_err(crate::conflict_on_unique("code"));
            match r {
                Err(e @ StoreError::Conflict(_)) => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    /// Every recorded click of one contact, oldest first.
    pub async fn contact_clicks(
        &self,
        tenant: TenantId,
        contact: ContactId,
    ) -> Result<Vec<ContactClick>> {
        on_db!(self, p => sqlx::query_as(
            "select at, link_id, code, campaign_id, ip, user_agent, referrer, device, browser, os, country
             from link_clicks where tenant_id = $1 and contact_id = $2 order by id",
        )
        .bind(tenant)
        .bind(contact)
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn link(&self, tenant: TenantId, id: LinkId) -> Result<Link> {
        on_db!(self, p => sqlx::query_as(concat!("select ", lcols!(),
            " from links where tenant_id = $1 and id = $2 and deleted_at is null"))
        .bind(tenant)
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Newest first, optionally of one campaign.
    pub async fn list_links(
        &self,
        tenant: TenantId,
        page: &PageRequest,
        campaign: Option<CampaignId>,
    ) -> Result<Vec<Link>> {
        on_db!(self, p => sqlx::query_as(concat!("select ", lcols!(),
            " from links where tenant_id = $1 and deleted_at is null and ($2 is null or id < $2)
              and ($3 is null or campaign_id = $3) order by id desc limit $4"))
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(campaign)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    pub async fn update_link(
        &self,
        tenant: TenantId,
        id: LinkId,
        patch: &LinkPatch,
        now: DateTime<Utc>,
    ) -> Result<Link> {
        on_db!(self, p => sqlx::query_as(concat!(
            "update links set url = coalesce($3, url),
                utm = case when $4 then $5 else utm end,
                expires_at = case when $6 then $7 else expires_at end,
                disabled = coalesce($8, disabled), updated_at = $9
             where tenant_id = $1 and id = $2 and deleted_at is null returning ", lcols!()))
        .bind(tenant)
        .bind(id)
        .bind(&patch.url)
        .bind(patch.utm.is_some())
        .bind(patch.utm.clone().flatten())
        .bind(patch.expires_at.is_some())
        .bind(patch.expires_at.flatten())
        .bind(patch.disabled)
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(Into::into)
    }

    /// Soft delete: the link's code answers 410 from now on; its clicks stay for statistics.
    pub async fn delete_link(
        &self,
        tenant: TenantId,
        id: LinkId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let n = on_db!(self, p => sqlx::query(
            "update links set deleted_at = $3, updated_at = $3 where tenant_id = $1 and id = $2 and deleted_at is null",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// What a code points at, platform-wide (the redirect's lookup): a link's own code, or a
    /// recipient's personal code (which carries the contact, campaign run and message).
    pub async fn resolve_code(&self, code: &str) -> Result<Option<Target>> {
        let sql = if code.len() == PERSONAL_CODE_LEN {
            "select l.tenant_id, l.id as link_id, l.url, l.utm, l.disabled, l.expires_at, l.deleted_at,
                r.contact_id, coalesce(r.campaign_id, l.campaign_id) as campaign_id, r.run_id, r.message_id
             from link_recipients r join links l on l.tenant_id = r.tenant_id and l.id = r.link_id
             where r.code = $1"
        } else {
            "select tenant_id, id as link_id, url, utm, disabled, expires_at, deleted_at,
                cast(null as uuid) as contact_id, campaign_id, cast(null as uuid) as run_id,
                cast(null as uuid) as message_id
             from links where code = $1"
        };
        on_db!(self, p => sqlx::query_as(sql).bind(code).fetch_optional(p).await)
            .map_err(Into::into)
    }

    /// The keys of a tenant's links (for personal codes); missing or deleted ones are absent.
    pub async fn link_keys(&self, tenant: TenantId, ids: &[LinkId]) -> Result<Vec<LinkKey>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let k: Option<LinkKey> = on_db!(self, p => sqlx::query_as(
                "select id, code, salt, short_base, campaign_id from links
                 where tenant_id = $1 and id = $2 and deleted_at is null",
            )
            .bind(tenant)
            .bind(*id)
            .fetch_optional(p)
            .await)?;
            out.extend(k);
        }
        Ok(out)
    }

    /// Records personal codes (again: a code is derived from its link and message, so a message
    /// rendered twice writes the same row, once).
    pub async fn put_personal_codes(
        &self,
        codes: &[PersonalCode],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for chunk in codes.chunks(500) {
            on_db!(self, p => {
                let mut qb = sqlx::QueryBuilder::new(
                    "insert into link_recipients (tenant_id, link_id, message_id, code, contact_id, campaign_id, run_id, created_at) ",
                );
                qb.push_values(chunk, |mut b, c| {
                    b.push_bind(c.tenant_id)
                        .push_bind(c.link_id)
                        .push_bind(c.message_id)
                        .push_bind(c.code.clone())
                        .push_bind(c.contact_id)
                        .push_bind(c.campaign_id)
                        .push_bind(c.run_id)
                        .push_bind(now);
                });
                qb.push(" on conflict do nothing");
                qb.build().execute(p).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }

    /// Records a batch of clicks in one transaction. A counted click (not a bot) is unique
    /// when its visitor is new to the link; a contact's first counted click on a campaign run
    /// makes them a clicker of that campaign. Links, hourly and per-dimension rollups and
    /// campaign counters move with it.
    pub async fn record_clicks(&self, clicks: &[NewClick]) -> Result<()> {
        if clicks.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        // New visitors per link, in one insert per chunk; the first click of each is unique.
        let counted: Vec<&NewClick> = clicks.iter().filter(|c| !c.bot).collect();
        let mut seen: HashSet<(TenantId, LinkId, &str)> = HashSet::new();
        let candidates: Vec<&NewClick> = counted
            .iter()
            .copied()
            .filter(|c| seen.insert((c.target.tenant_id, c.target.link_id, c.visitor.as_str())))
            .collect();
        let mut new_visitors: HashSet<(TenantId, LinkId, String)> = HashSet::new();
        for chunk in candidates.chunks(500) {
            let rows: Vec<(TenantId, LinkId, String)> = on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new("insert into link_visitors (tenant_id, link_id, visitor) ");
                qb.push_values(chunk, |mut b, k| {
                    b.push_bind(k.target.tenant_id).push_bind(k.target.link_id).push_bind(k.visitor.clone());
                });
                qb.push(" on conflict do nothing returning tenant_id, link_id, visitor");
                qb.build_query_as().fetch_all(&mut *c).await
            })?;
            new_visitors.extend(rows);
        }
        // Campaign clickers: (run, contact) once.
        let mut seen_clickers = HashSet::new();
        let clickers: Vec<(TenantId, RunId, ContactId, CampaignId, DateTime<Utc>)> = counted
            .iter()
            .filter_map(
                |c| match (c.target.run_id, c.target.contact_id, c.target.campaign_id) {
                    (Some(r), Some(k), Some(cp)) => Some((c.target.tenant_id, r, k, cp, c.at)),
                    _ => None,
                },
            )
            .filter(|x| seen_clickers.insert((x.0, x.1, x.2)))
            .collect();
        let mut new_clickers: HashSet<(TenantId, CampaignId)> = HashSet::new();
        let mut clickers_per: HashMap<(TenantId, CampaignId), i64> = HashMap::new();
        for chunk in clickers.chunks(500) {
            let rows: Vec<(TenantId, CampaignId)> = on_tx!(&mut tx, c => {
                let mut qb = sqlx::QueryBuilder::new(
                    "insert into campaign_clickers (tenant_id, run_id, contact_id, campaign_id, first_at) ",
                );
                qb.push_values(chunk, |mut b, (t, r, k, cp, at)| {
                    b.push_bind(*t).push_bind(*r).push_bind(*k).push_bind(*cp).push_bind(*at);
                });
                qb.push(" on conflict do nothing returning tenant_id, campaign_id");
                qb.build_query_as().fetch_all(&mut *c).await
            })?;
            for r in rows {
                *clickers_per.entry(r).or_default() += 1;
                new_clickers.insert(r);
            }
        }
        // The clicks themselves, each marked unique or not.
        let mut first = HashSet::new();
        let rows: Vec<(&NewClick, bool)> = clicks
            .iter()
            .map(|c| {
                let key = (c.target.tenant_id, c.target.link_id, c.visitor.clone());
                let unique = !c.bot && new_visitors.contains(&key) && first.insert(key);
                (c, unique)
            })
            .collect();
        insert_clicks(&mut tx, &rows).await?;
        // Counters, summed in memory first: a handful of rows per batch.
        type Tally = (i64, i64, i64);
        let mut per_link: HashMap<(TenantId, LinkId), Tally> = HashMap::new();
        let mut per_hour: HashMap<(TenantId, LinkId, DateTime<Utc>), Tally> = HashMap::new();
        let mut per_dim: HashMap<(TenantId, LinkId, &'static str, String), (i64, i64)> =
            HashMap::new();
        let mut per_campaign: HashMap<(TenantId, CampaignId), i64> = HashMap::new();
        for (c, unique) in &rows {
            let (t, l) = (c.target.tenant_id, c.target.link_id);
            let add = |x: &mut Tally| {
                if c.bot {
                    x.2 += 1;
                } else {
                    x.0 += 1;
                    x.1 += *unique as i64;
                }
            };
            add(per_link.entry((t, l)).or_default());
            add(per_hour.entry((t, l, hour_of(c.at))).or_default());
            if c.bot {
                continue;
            }
            for (dim, value) in [
                ("device", c.device.clone()),
                ("browser", c.browser.clone()),
                ("os", c.os.clone()),
                (
                    "country",
                    c.country.clone().unwrap_or_else(|| "unknown".into()),
                ),
            ] {
                let e = per_dim.entry((t, l, dim, value)).or_default();
                e.0 += 1;
                e.1 += *unique as i64;
            }
            if let Some(cp) = c.target.campaign_id {
                *per_campaign.entry((t, cp)).or_default() += 1;
            }
        }
        for ((t, l), (n, u, b)) in sorted(per_link) {
            on_tx!(&mut tx, c => sqlx::query(
                "update links set clicks = clicks + $3, unique_clicks = unique_clicks + $4, bot_clicks = bot_clicks + $5
                 where tenant_id = $1 and id = $2",
            )
            .bind(t).bind(l).bind(n).bind(u).bind(b)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        for ((t, l, h), (n, u, b)) in sorted(per_hour) {
            on_tx!(&mut tx, c => sqlx::query(
                "insert into link_stats_hourly (tenant_id, link_id, hour, clicks, unique_clicks, bot_clicks)
                 values ($1, $2, $3, $4, $5, $6)
                 on conflict (tenant_id, link_id, hour) do update set clicks = link_stats_hourly.clicks + excluded.clicks,
                    unique_clicks = link_stats_hourly.unique_clicks + excluded.unique_clicks,
                    bot_clicks = link_stats_hourly.bot_clicks + excluded.bot_clicks",
            )
            .bind(t).bind(l).bind(h).bind(n).bind(u).bind(b)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        for ((t, l, dim, value), (n, u)) in sorted(per_dim) {
            on_tx!(&mut tx, c => sqlx::query(
                "insert into link_stats_dims (tenant_id, link_id, dim, value, clicks, unique_clicks)
                 values ($1, $2, $3, $4, $5, $6)
                 on conflict (tenant_id, link_id, dim, value) do update set clicks = link_stats_dims.clicks + excluded.clicks,
                    unique_clicks = link_stats_dims.unique_clicks + excluded.unique_clicks",
            )
            .bind(t).bind(l).bind(dim).bind(value).bind(n).bind(u)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        let mut campaigns: HashSet<(TenantId, CampaignId)> = per_campaign.keys().copied().collect();
        campaigns.extend(new_clickers);
        let mut campaigns: Vec<_> = campaigns.into_iter().collect();
        campaigns.sort_by_key(|(t, c)| (t.0, c.0));
        for (t, cp) in campaigns {
            let n = per_campaign.get(&(t, cp)).copied().unwrap_or(0);
            let k = clickers_per.get(&(t, cp)).copied().unwrap_or(0);
            on_tx!(&mut tx, c => sqlx::query(
                "insert into campaign_clicks (tenant_id, campaign_id, clicks, clickers) values ($1, $2, $3, $4)
                 on conflict (tenant_id, campaign_id) do update set clicks = campaign_clicks.clicks + excluded.clicks,
                    clickers = campaign_clicks.clickers + excluded.clickers",
            )
            .bind(t).bind(cp).bind(n).bind(k)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await
    }

    /// A link's hourly figures in `[from, to)` and its per-dimension figures (all time).
    pub async fn link_stats(
        &self,
        tenant: TenantId,
        link: LinkId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<LinkStats> {
        let hourly = on_db!(self, p => sqlx::query_as(
            "select hour, clicks, unique_clicks, bot_clicks from link_stats_hourly
             where tenant_id = $1 and link_id = $2 and hour >= $3 and hour < $4 order by hour",
        )
        .bind(tenant)
        .bind(link)
        .bind(hour_of(from))
        .bind(to)
        .fetch_all(p)
        .await)?;
        let dims = on_db!(self, p => sqlx::query_as(
            "select dim, value, clicks, unique_clicks from link_stats_dims
             where tenant_id = $1 and link_id = $2 order by dim, clicks desc, value",
        )
        .bind(tenant)
        .bind(link)
        .fetch_all(p)
        .await)?;
        Ok(LinkStats { hourly, dims })
    }

    /// A campaign's clicks (counted, any link of it) and unique clickers (per run and contact).
    pub async fn campaign_clicks(
        &self,
        tenant: TenantId,
        campaign: CampaignId,
    ) -> Result<(i64, i64)> {
        let row: Option<(i64, i64)> = on_db!(self, p => sqlx::query_as(
            "select clicks, clickers from campaign_clicks where tenant_id = $1 and campaign_id = $2",
        )
        .bind(tenant)
        .bind(campaign)
        .fetch_optional(p)
        .await)?;
        Ok(row.unwrap_or((0, 0)))
    }
}

/// The click rows: on PostgreSQL the whole batch as one array per column (one statement,
/// planned once, whatever the batch size); on SQLite a VALUES list per chunk.
async fn insert_clicks(tx: &mut Tx, rows: &[(&NewClick, bool)]) -> Result<()> {
    const INSERT: &str = "insert into link_clicks (tenant_id, id, link_id, at, code, contact_id, campaign_id, run_id,
        message_id, ip, user_agent, referrer, device, browser, os, country, is_bot, is_unique) ";
    let ids: Vec<uuid::Uuid> = rows.iter().map(|_| uuid::Uuid::now_v7()).collect();
    match tx {
        Tx::Postgres(t) => {
            let col = |f: fn(&NewClick) -> Option<uuid::Uuid>| {
                rows.iter().map(|(k, _)| f(k)).collect::<Vec<_>>()
            };
            let text = |f: fn(&NewClick) -> Option<&str>| {
                rows.iter().map(|(k, _)| f(k)).collect::<Vec<_>>()
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{INSERT} select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::text[],
                    $6::uuid[], $7::uuid[], $8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[],
                    $14::text[], $15::text[], $16::text[], $17::bool[], $18::bool[])"
            )))
            .bind(rows.iter().map(|(k, _)| k.target.tenant_id.0).collect::<Vec<_>>())
            .bind(&ids)
            .bind(rows.iter().map(|(k, _)| k.target.link_id.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|(k, _)| k.at).collect::<Vec<_>>())
            .bind(text(|k| Some(k.code.as_str())))
            .bind(col(|k| k.target.contact_id.map(|x| x.0)))
            .bind(col(|k| k.target.campaign_id.map(|x| x.0)))
            .bind(col(|k| k.target.run_id.map(|x| x.0)))
            .bind(col(|k| k.target.message_id.map(|x| x.0)))
            .bind(text(|k| k.ip.as_deref()))
            .bind(text(|k| Some(k.user_agent.as_str())))
            .bind(text(|k| k.referrer.as_deref()))
            .bind(text(|k| Some(k.device.as_str())))
            .bind(text(|k| Some(k.browser.as_str())))
            .bind(text(|k| Some(k.os.as_str())))
            .bind(text(|k| k.country.as_deref()))
            .bind(rows.iter().map(|(k, _)| k.bot).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, u)| *u).collect::<Vec<_>>())
            .execute(&mut **t)
            .await?;
        }
        Tx::Sqlite(t) => {
            for (chunk, ids) in rows.chunks(500).zip(ids.chunks(500)) {
                let mut qb = sqlx::QueryBuilder::new(INSERT);
                qb.push_values(chunk.iter().zip(ids), |mut b, ((k, unique), id)| {
                    b.push_bind(k.target.tenant_id)
                        .push_bind(*id)
                        .push_bind(k.target.link_id)
                        .push_bind(k.at)
                        .push_bind(k.code.clone())
                        .push_bind(k.target.contact_id)
                        .push_bind(k.target.campaign_id)
                        .push_bind(k.target.run_id)
                        .push_bind(k.target.message_id)
                        .push_bind(k.ip.clone())
                        .push_bind(k.user_agent.clone())
                        .push_bind(k.referrer.clone())
                        .push_bind(k.device.clone())
                        .push_bind(k.browser.clone())
                        .push_bind(k.os.clone())
                        .push_bind(k.country.clone())
                        .push_bind(k.bot)
                        .push_bind(*unique);
                });
                qb.build().execute(&mut **t).await?;
            }
        }
    }
    Ok(())
}

fn sorted<K: Ord, V>(m: HashMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
