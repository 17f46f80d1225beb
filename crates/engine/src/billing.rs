//! Paying for sends: the dispatcher's step between preparing a batch and sending it.
//!
//! Funds are checked when a message is dispatched, not when it is scheduled. A batch is priced
//! (the operator's price list: category × recipient country) and paid for in one transaction
//! per tenant ([`pinglayer_store::billing`]); what the balance or the month's allowance cannot
//! cover is not sent: a one-off message fails with `insufficient_balance` /
//! `monthly_limit_reached`, and a campaign's messages are held while the campaign pauses itself
//! with that reason (resuming after a top-up sends them). With no prices and no monthly limit
//! the step costs one small query per batch.

use pinglayer_domain::{
    MessageId,
    billing::{Category, PriceList},
    campaign::CampaignAction,
};
use pinglayer_store::{
    billing::{Charge, Refusal},
    messages::Claimed,
};
use std::collections::{HashMap, HashSet};

use crate::Engine;

/// Meta failures after acceptance that mean the message was not delivered, so it is refunded.
/// The operator's own list replaces it (`--refundable-error-codes`).
pub const DEFAULT_REFUNDABLE: &[i64] = &[
    130472, // recipient's number is part of a Meta experiment
    131000, // something went wrong
    131026, // message undeliverable
    131047, // re-engagement window closed
    131049, // not delivered to keep the ecosystem healthy (per-user marketing cap)
    131050, // the user stopped marketing messages
    131051, // unsupported message type
    131053, // media upload error
];

impl Engine {
    /// Pays for what may be paid for; returns the messages that may not be sent, and why.
    /// Campaigns that ran dry are paused here; the caller holds their messages.
    pub(crate) async fn pay(
        &self,
        items: &[&Claimed],
    ) -> anyhow::Result<HashMap<MessageId, Refusal>> {
        if items.is_empty() {
            return Ok(HashMap::new());
        }
        let now = self.clock.now();
        let prices = self
            .db
            .price_list()
            .await?
            .unwrap_or_else(|| PriceList::empty("USD"));
        let mut monthly = HashMap::new();
        for t in items.iter().map(|i| i.tenant_id).collect::<HashSet<_>>() {
            let limit = self
                .db
                .current_plan(t, now)
                .await?
                .and_then(|p| p.plan.max_messages_per_month);
            monthly.insert(t, limit);
        }
        if !prices.charges() && monthly.values().all(Option::is_none) {
            return Ok(HashMap::new());
        }
        let charges: Vec<Charge> = items
            .iter()
            .map(|i| {
                let category = i
                    .category
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(Category::Service);
                Charge {
                    tenant_id: i.tenant_id,
                    id: i.id,
                    campaign_id: i.campaign_id,
                    category,
                    price: prices.price(category, &i.to_phone),
                }
            })
            .collect();
        let charged = self.db.charge_batch(&charges, &monthly, now).await?;
        let mut paused = HashSet::new();
        for i in items {
            let (Some(why), Some(campaign)) = (charged.refused.get(&i.id), i.campaign_id) else {
                continue;
            };
            if paused.insert(campaign) {
                metrics::counter!("billing_campaigns_paused_total", "reason" => why.code())
                    .increment(1);
                let moved = self
                    .db
                    .move_campaign_because(
                        i.tenant_id,
                        campaign,
                        CampaignAction::Pause,
                        Some(why.code()),
                        now,
                    )
                    .await?;
                if moved.is_ok() {
                    tracing::warn!(tenant_id = %i.tenant_id, campaign_id = %campaign, reason = why.code(), "campaign paused itself");
                }
            }
        }
        metrics::counter!("billing_refused_total").increment(charged.refused.len() as u64);
        Ok(charged.refused)
    }
}
