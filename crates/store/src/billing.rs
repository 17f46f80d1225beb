//! Money: the tenant's wallet and its append-only ledger, the operator's price list, plans and
//! usage. The wallet row is the lock: every change of balance happens in a transaction that
//! holds it (`FOR UPDATE` on PostgreSQL; SQLite has one writer), writes a ledger entry with the
//! balance before and after, and leaves `balance = sum(ledger.amount)`.
//!
//! Sending charges in batches (`charge_batch`): the dispatcher prices a batch of one number's
//! messages and pays for as many as the balance and the month's allowance cover in one
//! transaction; the messages carry what they were charged, so a re-sent message is never charged
//! twice and a refund gives back exactly that, once (`refunded_at` is the guard).

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    BillingEventId, CampaignId, LedgerEntryId, MessageId, PageRequest, PlanId, TenantId,
    billing::{Category, Limits, Money, PriceList, period_of},
};
use std::collections::HashMap;

use crate::{Db, Result, StoreError, Tx, on_db, on_tx};

#[derive(Debug, Clone, Copy, Default)]
pub struct Wallet {
    pub balance: Money,
    pub low_balance_threshold: Money,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerEntry {
    pub tenant_id: TenantId,
    pub id: LedgerEntryId,
    pub kind: String,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
    pub quantity: i64,
    pub actor: String,
    pub note: Option<String>,
    pub request_hash: Option<String>,
    pub created_at: DateTime<Utc>,
}

const LCOLS: &str = "tenant_id, id, kind, amount, balance_before, balance_after, reference_type,
    reference_id, quantity, actor, note, request_hash, created_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Credit,
    Debit,
    Refund,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "credit",
            EntryKind::Debit => "debit",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "credit" => EntryKind::Credit,
            "debit" => EntryKind::Debit,
            "refund" => EntryKind::Refund,
            "adjustment" => EntryKind::Adjustment,
            _ => return None,
        })
    }
}

/// A credit or adjustment made by a person (top-ups, corrections).
pub struct NewEntry<'a> {
    pub kind: EntryKind,
    /// Signed.
    pub amount: Money,
    pub reference_type: &'a str,
    pub actor: &'a str,
    pub note: Option<&'a str>,
    /// `(Idempotency-Key, hash of the request)`: a retried top-up is applied once.
    pub idempotency: Option<(&'a str, &'a str)>,
}

#[derive(Debug)]
pub enum Posted {
    Applied(LedgerEntry),
    /// The same key and request came before: its entry.
    Replayed(LedgerEntry),
    /// The same key with another request.
    KeyReused,
    /// An adjustment that would take the balance below zero.
    WouldGoNegative(Money),
}

#[derive(Debug, Default, Clone)]
pub struct LedgerFilter {
    pub kind: Option<EntryKind>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub reference_type: Option<String>,
    pub reference_id: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillingEvent {
    pub id: BillingEventId,
    pub kind: String,
    pub balance: i64,
    pub threshold: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    pub description: Option<String>,
    pub max_contacts: Option<i64>,
    pub max_team_members: Option<i64>,
    pub max_sending_numbers: Option<i64>,
    pub max_messages_per_month: Option<i64>,
    pub api_requests_per_minute: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Plan {
    pub fn limits(&self) -> Limits {
        Limits {
            contacts: self.max_contacts,
            team_members: self.max_team_members,
            sending_numbers: self.max_sending_numbers,
            messages_per_month: self.max_messages_per_month,
            api_requests_per_minute: self.api_requests_per_minute,
        }
    }
}

const PCOLS: &str = "id, name, description, max_contacts, max_team_members, max_sending_numbers,
    max_messages_per_month, api_requests_per_minute, created_at, updated_at";

/// A tenant's current plan and since when.
#[derive(Debug, Clone)]
pub struct CurrentPlan {
    pub plan: Plan,
    pub starts_at: DateTime<Utc>,
}

/// One message to pay for.
#[derive(Debug, Clone)]
pub struct Charge {
    pub tenant_id: TenantId,
    pub id: MessageId,
    pub campaign_id: Option<CampaignId>,
    pub category: Category,
    pub price: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    InsufficientBalance,
    MonthlyLimitReached,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InsufficientBalance => "insufficient_balance",
            Refusal::MonthlyLimitReached => "monthly_limit_reached",
        }
    }
}

/// What paying for a batch decided: the messages that may not be sent, and why.
#[derive(Debug, Default)]
pub struct Charged {
    pub refused: HashMap<MessageId, Refusal>,
}

/// A tenant's usage in a period.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Outbound messages created in the period: (category, status, count).
    pub messages: Vec<(String, String, i64)>,
    /// Messages paid for (net of messages refunded before they left), by category.
    pub charged: Vec<(String, i64)>,
    /// Debits minus refunds in the period.
    pub spend: Money,
    pub contacts: i64,
    pub team_members: i64,
    pub sending_numbers: i64,
}

impl Db {
    /// What a campaign's sends cost, net of refunds.
    pub async fn campaign_cost(&self, tenant: TenantId, campaign: CampaignId) -> Result<Money> {
        let c: i64 = on_db!(self, p => sqlx::query_scalar(
            "select cost from campaigns where tenant_id = $1 and id = $2",
        )
        .bind(tenant)
        .bind(campaign)
        .fetch_one(p)
        .await)?;
        Ok(Money(c))
    }

    pub async fn wallet(&self, tenant: TenantId) -> Result<Wallet> {
        let row: Option<(i64, i64)> = on_db!(self, p => sqlx::query_as(
            "select balance, low_balance_threshold from wallets where tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(p)
        .await)?;
        Ok(row
            .map(|(b, t)| Wallet {
                balance: Money(b),
                low_balance_threshold: Money(t),
            })
            .unwrap_or_default())
    }

    pub async fn set_low_balance_threshold(
        &self,
        tenant: TenantId,
        threshold: Money,
        now: DateTime<Utc>,
    ) -> Result<Wallet> {
        let mut tx = self.begin().await?;
        let w = lock_wallet(&mut tx, tenant, now).await?;
        on_tx!(&mut tx, c => sqlx::query(
            "update wallets set low_balance_threshold = $2, updated_at = $3 where tenant_id = $1",
        )
        .bind(tenant)
        .bind(threshold.0)
        .bind(now)
        .execute(c)
        .await.map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(Wallet {
            low_balance_threshold: threshold,
            ..w
        })
    }

    /// A credit (top-up) or an adjustment, applied once per idempotency key.
    pub async fn post_entry(
        &self,
        tenant: TenantId,
        e: NewEntry<'_>,
        now: DateTime<Utc>,
    ) -> Result<Posted> {
        let mut tx = self.begin().await?;
        if let Some((key, hash)) = e.idempotency
            && let Some(prior) = entry_by_key(&mut tx, tenant, key).await?
        {
            return Ok(replay(prior, hash));
        }
        let w = lock_wallet(&mut tx, tenant, now).await?;
        let after = w.balance + e.amount;
        if after.0 < 0 {
            return Ok(Posted::WouldGoNegative(w.balance));
        }
        let entry = insert_entry(
            &mut tx,
            Entry {
                tenant_id: tenant,
                kind: e.kind,
                amount: e.amount,
                before: w.balance,
                reference_type: Some(e.reference_type),
                reference_id: None,
                quantity: 1,
                actor: e.actor,
                note: e.note,
                idempotency: e.idempotency,
            },
            now,
        )
        .await;
        let entry = match (entry, e.idempotency) {
            (Ok(x), _) => x,
            // A concurrent request with the same key won: answer as it did.
            (Err(StoreError::Conflict(_)), Some((key, hash))) => {
                drop(tx);
                let mut tx = self.begin().await?;
                let prior = entry_by_key(&mut tx, tenant, key)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                return Ok(replay(prior, hash));
            }
            (Err(e), _) => return Err(e),
        };
        set_balance(&mut tx, tenant, w, after, now).await?;
        tx.commit().await?;
        Ok(Posted::Applied(entry))
    }

    pub async fn ledger(
        &self,
        tenant: TenantId,
        f: &LedgerFilter,
        page: &PageRequest,
    ) -> Result<Vec<LedgerEntry>> {
        let sql = format!(
            "select {LCOLS} from ledger_entries where tenant_id = $1 and ($2 is null or id < $2)
               and ($3 is null or kind = $3) and ($4 is null or created_at >= $4) and ($5 is null or created_at < $5)
               and ($6 is null or reference_type = $6) and ($7 is null or reference_id = $7)
             order by id desc limit $8"
        );
        on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(tenant)
            .bind(page.after.map(|c| c.0))
            .bind(f.kind.map(|k| k.as_str()))
            .bind(f.from)
            .bind(f.to)
            .bind(f.reference_type.clone())
            .bind(f.reference_id.clone())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(Into::into)
    }

    /// The sum of every ledger amount: equals the balance, always.
    pub async fn ledger_sum(&self, tenant: TenantId) -> Result<Money> {
        let s: i64 = on_db!(self, p => sqlx::query_scalar(
            "select cast(coalesce(sum(amount), 0) as bigint) from ledger_entries where tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(p)
        .await)?;
        Ok(Money(s))
    }

    pub async fn billing_events(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Vec<BillingEvent>> {
        on_db!(self, p => sqlx::query_as(
            "select id, kind, balance, threshold, created_at from billing_events
             where tenant_id = $1 and ($2 is null or id < $2) order by id desc limit $3",
        )
        .bind(tenant)
        .bind(page.after.map(|c| c.0))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(Into::into)
    }

    /// The operator's price list, if one was set.
    pub async fn price_list(&self) -> Result<Option<PriceList>> {
        let doc: Option<String> = on_db!(self, p => sqlx::query_scalar(
            "select document from pricing where id = 1",
        )
        .fetch_optional(p)
        .await)?;
        Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
    }

    pub async fn set_price_list(&self, list: &PriceList, now: DateTime<Utc>) -> Result<()> {
        let doc = serde_json::to_string(list)
            .map_err(|e| StoreError::Other(sqlx::Error::Encode(e.into())))?;
        on_db!(self, p => sqlx::query(
            "insert into pricing (id, document, updated_at) values (1, $1, $2)
             on conflict (id) do update set document = excluded.document, updated_at = excluded.updated_at",
        )
        .bind(doc)
        .bind(now)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn plans(&self) -> Result<Vec<Plan>> {
        let sql = format!("select {PCOLS} from plans order by created_at, name");
        on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).fetch_all(p).await)
            .map_err(Into::into)
    }

    pub async fn plan(&self, id: PlanId) -> Result<Plan> {
        let sql = format!("select {PCOLS} from plans where id = $1");
        on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(id).fetch_one(p).await)
            .map_err(Into::into)
    }

    /// Creates a plan, or (with `id`) replaces one's name, description and limits.
    pub async fn save_plan(
        &self,
        id: Option<PlanId>,
        name: &str,
        description: Option<&str>,
        l: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Plan> {
        let sql = match id {
            None => format!(
                "insert into plans ({PCOLS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) returning {PCOLS}"
            ),
            Some(_) => format!(
                "update plans set name = $2, description = $3, max_contacts = $4, max_team_members = $5,
                    max_sending_numbers = $6, max_messages_per_month = $7, api_requests_per_minute = $8, updated_at = $9
                 where id = $1 returning {PCOLS}"
            ),
        };
        on_db!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id.unwrap_or_default())
            .bind(name)
            .bind(description)
            .bind(l.contacts)
            .bind(l.team_members)
            .bind(l.sending_numbers)
            .bind(l.messages_per_month)
            .bind(l.api_requests_per_minute)
            .bind(now)
            .fetch_one(p)
            .await)
        .map_err(crate::conflict_on_unique("plan name"))
    }

    pub async fn assign_plan(
        &self,
        tenant: TenantId,
        plan: PlanId,
        starts_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_db!(self, p => sqlx::query(
            "insert into tenant_plans (tenant_id, id, plan_id, starts_at, assigned_by, created_at)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant)
        .bind(pinglayer_domain::PlanId::new())
        .bind(plan)
        .bind(starts_at)
        .bind(by)
        .bind(now)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The plan in force at `now`: the latest assignment that has started.
    pub async fn current_plan(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<Option<CurrentPlan>> {
        let row: Option<(PlanId, DateTime<Utc>)> = on_db!(self, p => sqlx::query_as(
            "select plan_id, starts_at from tenant_plans where tenant_id = $1 and starts_at <= $2
             order by starts_at desc, id desc limit 1",
        )
        .bind(tenant)
        .bind(now)
        .fetch_optional(p)
        .await)?;
        match row {
            None => Ok(None),
            Some((id, starts_at)) => Ok(Some(CurrentPlan {
                plan: self.plan(id).await?,
                starts_at,
            })),
        }
    }

    /// How many of a limited thing the tenant has (messages: paid for in `now`'s month).
    pub async fn count_of(
        &self,
        tenant: TenantId,
        what: pinglayer_domain::billing::Limit,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        use pinglayer_domain::billing::Limit;
        let sql = match what {
            Limit::Contacts => {
                "select count(*) from contacts where tenant_id = $1 and deleted_at is null"
            }
            Limit::TeamMembers => "select count(*) from users where tenant_id = $1",
            Limit::SendingNumbers => "select count(*) from whatsapp_numbers where tenant_id = $1",
            Limit::MessagesPerMonth => {
                "select cast(coalesce(sum(messages), 0) as bigint) from usage_counters where tenant_id = $1 and period = $2"
            }
        };
        let monthly = matches!(what, Limit::MessagesPerMonth);
        on_db!(self, p => {
            let q = sqlx::query_scalar(sql).bind(tenant);
            let q = if monthly { q.bind(period_of(now)) } else { q };
            q.fetch_one(p).await
        })
        .map_err(Into::into)
    }

    /// A tenant's usage between `from` and `to` (a calendar month, `period`).
    pub async fn usage(
        &self,
        tenant: TenantId,
        period: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Usage> {
        use pinglayer_domain::billing::Limit;
        let messages: Vec<(String, String, i64)> = on_db!(self, p => sqlx::query_as(
            "select coalesce(category, 'service'), status, count(*) from messages
             where tenant_id = $1 and direction = 'outbound' and created_at >= $2 and created_at < $3
             group by 1, 2 order by 1, 2",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(p)
        .await)?;
        // Kept as messages are charged and refunded, in the month it happened: the same as the
        // ledger's debits less refunds in the period, without reading the ledger.
        let counters: Vec<(String, i64, i64)> = on_db!(self, p => sqlx::query_as(
            "select category, messages, spend from usage_counters where tenant_id = $1 and period = $2 order by category",
        )
        .bind(tenant)
        .bind(period)
        .fetch_all(p)
        .await)?;
        let spend = counters.iter().map(|(_, _, s)| s).sum();
        let charged = counters.into_iter().map(|(c, m, _)| (c, m)).collect();
        Ok(Usage {
            messages,
            charged,
            spend: Money(spend),
            contacts: self.count_of(tenant, Limit::Contacts, from).await?,
            team_members: self.count_of(tenant, Limit::TeamMembers, from).await?,
            sending_numbers: self.count_of(tenant, Limit::SendingNumbers, from).await?,
        })
    }

    /// Pays for a batch of messages, in order, per tenant: each is paid while the balance and
    /// the month's allowance (`monthly` per tenant, `None` unlimited) cover it; the rest are
    /// refused. One transaction; the wallet row is locked, so concurrent batches of one tenant
    /// (its other numbers, other workers) never spend the same money twice.
    pub async fn charge_batch(
        &self,
        items: &[Charge],
        monthly: &HashMap<TenantId, Option<i64>>,
        now: DateTime<Utc>,
    ) -> Result<Charged> {
        let mut out = Charged::default();
        if items.is_empty() {
            return Ok(out);
        }
        let period = period_of(now);
        let mut by_tenant: Vec<(TenantId, Vec<&Charge>)> = Vec::new();
        for c in items {
            match by_tenant.iter_mut().find(|(t, _)| *t == c.tenant_id) {
                Some((_, v)) => v.push(c),
                None => by_tenant.push((c.tenant_id, vec![c])),
            }
        }
        by_tenant.sort_by_key(|(t, _)| *t);
        let mut tx = self.begin().await?;
        for (tenant, list) in by_tenant {
            let w = lock_wallet(&mut tx, tenant, now).await?;
            let allowance = match monthly.get(&tenant).copied().flatten() {
                None => i64::MAX,
                Some(max) => {
                    let used: i64 = on_tx!(&mut tx, c => sqlx::query_scalar(
                        "select cast(coalesce(sum(messages), 0) as bigint) from usage_counters where tenant_id = $1 and period = $2",
                    )
                    .bind(tenant)
                    .bind(&period)
                    .fetch_one(c)
                    .await)?;
                    (max - used).max(0)
                }
            };
            let (mut left, mut n) = (w.balance, 0i64);
            let mut paid: Vec<&Charge> = Vec::with_capacity(list.len());
            for c in list {
                if n >= allowance {
                    out.refused.insert(c.id, Refusal::MonthlyLimitReached);
                } else if c.price > left {
                    out.refused.insert(c.id, Refusal::InsufficientBalance);
                } else {
                    left = left - c.price;
                    n += 1;
                    paid.push(c);
                }
            }
            if paid.is_empty() {
                continue;
            }
            // Ledger: one debit per campaign in the batch, one per other message.
            let mut groups: Vec<(Option<CampaignId>, Vec<&Charge>)> = Vec::new();
            for c in &paid {
                if c.price.0 == 0 {
                    continue;
                }
                match c.campaign_id {
                    Some(camp) => match groups.iter_mut().find(|(k, _)| *k == Some(camp)) {
                        Some((_, v)) => v.push(c),
                        None => groups.push((Some(camp), vec![c])),
                    },
                    None => groups.push((None, vec![c])),
                }
            }
            let mut before = w.balance;
            for (camp, cs) in &groups {
                let amount: Money = cs.iter().map(|c| c.price).sum();
                let (rtype, rid) = match camp {
                    Some(id) => ("campaign", id.to_string()),
                    None => ("message", cs[0].id.to_string()),
                };
                insert_entry(
                    &mut tx,
                    Entry {
                        tenant_id: tenant,
                        kind: EntryKind::Debit,
                        amount: Money(-amount.0),
                        before,
                        reference_type: Some(rtype),
                        reference_id: Some(&rid),
                        quantity: cs.len() as i64,
                        actor: "system",
                        note: None,
                        idempotency: None,
                    },
                    now,
                )
                .await?;
                before = before - amount;
                if let Some(camp) = camp {
                    bump_campaign_cost(&mut tx, tenant, *camp, amount.0).await?;
                }
            }
            set_balance(&mut tx, tenant, w, left, now).await?;
            // The price each message was charged, grouped by price (usually one or two).
            let mut by_price: HashMap<i64, Vec<MessageId>> = HashMap::new();
            let mut by_cat: HashMap<Category, (i64, i64)> = HashMap::new();
            for c in &paid {
                by_price.entry(c.price.0).or_default().push(c.id);
                let e = by_cat.entry(c.category).or_default();
                e.0 += 1;
                e.1 += c.price.0;
            }
            for (price, ids) in by_price {
                for chunk in ids.chunks(500) {
                    let marks: Vec<String> =
                        (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
                    let sql = format!(
                        "update messages set charge = $2 where tenant_id = $1 and id in ({})",
                        marks.join(", ")
                    );
                    on_tx!(&mut tx, c => {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(price);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        q.execute(c).await.map(|r| r.rows_affected())
                    })?;
                }
            }
            for (cat, (count, spend)) in by_cat {
                bump_usage(&mut tx, tenant, &period, cat.as_str(), count, spend).await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// Gives back what these messages were charged, once each (`refunded_at` guards it): a refund
/// entry per message. `unsent`: they never left (the month's allowance is given back too).
/// Per tenant and 500 messages: one statement marks them, one writes their entries.
pub(crate) async fn refund_in(
    tx: &mut Tx,
    keys: &[(TenantId, MessageId)],
    unsent: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let period = period_of(now);
    let mut by_tenant: Vec<(TenantId, Vec<MessageId>)> = Vec::new();
    for (tenant, id) in keys {
        match by_tenant.iter_mut().find(|(t, _)| t == tenant) {
            Some((_, v)) => v.push(*id),
            None => by_tenant.push((*tenant, vec![*id])),
        }
    }
    by_tenant.sort_by_key(|(t, _)| *t);
    type Refunded = (MessageId, i64, Option<String>, Option<CampaignId>);
    for (tenant, ids) in by_tenant {
        for chunk in ids.chunks(500) {
            let rows: Vec<Refunded> = on_tx!(&mut *tx, c => {
                let mut qb = sqlx::QueryBuilder::new("update messages set refunded_at = ");
                qb.push_bind(now)
                    .push(" where tenant_id = ")
                    .push_bind(tenant)
                    .push(" and charge > 0 and refunded_at is null and id in (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(") returning id, charge, category, campaign_id");
                qb.build_query_as().fetch_all(c).await
            })?;
            if rows.is_empty() {
                continue;
            }
            let mut costs: HashMap<CampaignId, i64> = HashMap::new();
            let mut usage: HashMap<String, (i64, i64)> = HashMap::new();
            for (_, charge, cat, campaign) in &rows {
                if let Some(c) = campaign {
                    *costs.entry(*c).or_default() += charge;
                }
                let u = usage
                    .entry(cat.clone().unwrap_or_else(|| "service".into()))
                    .or_default();
                u.0 += i64::from(unsent);
                u.1 += charge;
            }
            for (campaign, by) in costs {
                bump_campaign_cost(tx, tenant, campaign, -by).await?;
            }
            for (cat, (count, spend)) in usage {
                bump_usage(tx, tenant, &period, &cat, -count, -spend).await?;
            }
            let w = lock_wallet(tx, tenant, now).await?;
            let mut before = w.balance;
            let entries: Vec<(Money, Money, String)> = rows
                .iter()
                .map(|(id, charge, _, _)| {
                    let e = (before, Money(*charge), id.to_string());
                    before = before + Money(*charge);
                    e
                })
                .collect();
            on_tx!(&mut *tx, c => {
                let mut qb = sqlx::QueryBuilder::new(
                    "insert into ledger_entries (tenant_id, id, kind, amount, balance_before, balance_after,
                        reference_type, reference_id, quantity, actor, created_at) ",
                );
                qb.push_values(&entries, |mut b, (before, amount, rid)| {
                    b.push_bind(tenant)
                        .push_bind(LedgerEntryId::new())
                        .push_bind(EntryKind::Refund.as_str())
                        .push_bind(amount.0)
                        .push_bind(before.0)
                        .push_bind((*before + *amount).0)
                        .push_bind("message")
                        .push_bind(rid.clone())
                        .push_bind(1i64)
                        .push_bind("system")
                        .push_bind(now);
                });
                qb.build().execute(c).await.map(|r| r.rows_affected())
            })?;
            set_balance(tx, tenant, w, before, now).await?;
        }
    }
    Ok(())
}

/// Creates the wallet if need be and locks it; returns it.
async fn lock_wallet(tx: &mut Tx, tenant: TenantId, now: DateTime<Utc>) -> Result<Wallet> {
    on_tx!(&mut *tx, c => sqlx::query(
        "insert into wallets (tenant_id, balance, low_balance_threshold, updated_at) values ($1, 0, 0, $2)
         on conflict (tenant_id) do nothing",
    )
    .bind(tenant)
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected()))?;
    let sql = match tx {
        Tx::Postgres(_) => {
            "select balance, low_balance_threshold from wallets where tenant_id = $1 for update"
        }
        Tx::Sqlite(_) => "select balance, low_balance_threshold from wallets where tenant_id = $1",
    };
    let (b, t): (i64, i64) =
        on_tx!(&mut *tx, c => sqlx::query_as(sql).bind(tenant).fetch_one(c).await)?;
    Ok(Wallet {
        balance: Money(b),
        low_balance_threshold: Money(t),
    })
}

/// Writes the new balance; crossing the low-balance threshold downwards raises an event.
async fn set_balance(
    tx: &mut Tx,
    tenant: TenantId,
    w: Wallet,
    after: Money,
    now: DateTime<Utc>,
) -> Result<()> {
    on_tx!(&mut *tx, c => sqlx::query(
        "update wallets set balance = $2, updated_at = $3 where tenant_id = $1",
    )
    .bind(tenant)
    .bind(after.0)
    .bind(now)
    .execute(c)
    .await.map(|r| r.rows_affected()))?;
    let t = w.low_balance_threshold;
    if t.0 > 0 && w.balance >= t && after < t {
        on_tx!(&mut *tx, c => sqlx::query(
            "insert into billing_events (tenant_id, id, kind, balance, threshold, created_at)
             values ($1, $2, 'low_balance', $3, $4, $5)",
        )
        .bind(tenant)
        .bind(BillingEventId::new())
        .bind(after.0)
        .bind(t.0)
        .bind(now)
        .execute(c)
        .await.map(|r| r.rows_affected()))?;
        tracing::info!(tenant_id = %tenant, balance = %after, threshold = %t, "balance fell below the low-balance threshold");
    }
    Ok(())
}

struct Entry<'a> {
    tenant_id: TenantId,
    kind: EntryKind,
    amount: Money,
    before: Money,
    reference_type: Option<&'a str>,
    reference_id: Option<&'a str>,
    quantity: i64,
    actor: &'a str,
    note: Option<&'a str>,
    idempotency: Option<(&'a str, &'a str)>,
}

async fn insert_entry(tx: &mut Tx, e: Entry<'_>, now: DateTime<Utc>) -> Result<LedgerEntry> {
    let sql = format!(
        "insert into ledger_entries (tenant_id, id, kind, amount, balance_before, balance_after, reference_type,
            reference_id, quantity, actor, note, idempotency_key, request_hash, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) returning {LCOLS}"
    );
    on_tx!(&mut *tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
        .bind(e.tenant_id)
        .bind(LedgerEntryId::new())
        .bind(e.kind.as_str())
        .bind(e.amount.0)
        .bind(e.before.0)
        .bind((e.before + e.amount).0)
        .bind(e.reference_type)
        .bind(e.reference_id)
        .bind(e.quantity)
        .bind(e.actor)
        .bind(e.note)
        .bind(e.idempotency.map(|(k, _)| k))
        .bind(e.idempotency.map(|(_, h)| h))
        .bind(now)
        .fetch_one(c)
        .await)
    .map_err(crate::conflict_on_unique("ledger entry"))
}

async fn entry_by_key(tx: &mut Tx, tenant: TenantId, key: &str) -> Result<Option<LedgerEntry>> {
    let sql =
        format!("select {LCOLS} from ledger_entries where tenant_id = $1 and idempotency_key = $2");
    on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(tenant).bind(key).fetch_optional(c).await)
        .map_err(Into::into)
}

fn replay(prior: LedgerEntry, hash: &str) -> Posted {
    if prior.request_hash.as_deref() == Some(hash) {
        Posted::Replayed(prior)
    } else {
        Posted::KeyReused
    }
}

async fn bump_usage(
    tx: &mut Tx,
    tenant: TenantId,
    period: &str,
    category: &str,
    messages: i64,
    spend: i64,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "insert into usage_counters (tenant_id, period, category, messages, spend) values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, period, category) do update
           set messages = usage_counters.messages + excluded.messages, spend = usage_counters.spend + excluded.spend",
    )
    .bind(tenant)
    .bind(period)
    .bind(category)
    .bind(messages)
    .bind(spend)
    .execute(c)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

async fn bump_campaign_cost(
    tx: &mut Tx,
    tenant: TenantId,
    campaign: CampaignId,
    by: i64,
) -> Result<()> {
    on_tx!(tx, c => sqlx::query(
        "update campaigns set cost = cost + $3 where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(campaign)
    .bind(by)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
