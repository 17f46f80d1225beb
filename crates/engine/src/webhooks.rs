//! Applying webhook events: where statuses from Meta are applied, inbound messages become
//! conversation messages, and template reviews land.
//!
//! Events were stored as received (signature already checked). A round takes a batch, routes
//! every change by `phone_number_id` to the tenant holding that number — only if the secret that
//! signed the event may speak for that number — and applies all statuses of the batch in one
//! forward-only, idempotent store call. An event whose statuses name messages we do not know yet
//! (the send call has not returned) is tried again shortly, for up to ten minutes.

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    MessageId, MessageStatus, PhoneE164, TenantId,
    contact::{Consent, keyword},
};
use pinglayer_store::{
    contacts, inbox,
    messages::{self, MessageRef, NewInbound, NewOutbound, StatusUpdate},
    numbers::Number,
    templates::TemplateReview,
    webhook_events::WebhookEvent,
};
use pinglayer_whatsapp::{
    types::{Content, Text},
    webhook::{Contact, InboundMessage, Payload},
};
use std::collections::{HashMap, HashSet};

use crate::Engine;

/// Events whose statuses are all unknown are retried this long (the send may still be running).
const UNKNOWN_GRACE_SECS: i64 = 600;

/// Whether the secret that verified an event may speak for this number: the platform app's
/// secret for numbers without their own, a number's own secret for that number only.
pub fn scope_allows(scope: &str, n: &Number) -> bool {
    if scope == "platform" {
        n.app_secret_enc.is_none()
    } else {
        scope == n.phone_number_id
    }
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub events: usize,
    pub statuses_moved: usize,
    pub inbound: usize,
    pub unroutable: usize,
}

impl Engine {
    /// Applies one batch of stored webhook events.
    pub async fn apply_webhooks_once(&self) -> anyhow::Result<Round> {
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.config.lease)?;
        // Events this process stored are handed over in memory; the table is looked at for
        // the rest (other processes', retried ones, ones whose holder died).
        let batch = self.config.webhook_batch.max(1);
        let mut events = self.intake.take(batch as usize);
        if self.intake.claim_due(events.len(), self.config.poll) {
            let room = batch - events.len() as i64;
            if room > 0 {
                events.extend(self.db.claim_webhook_events(room, lease, now).await?);
            }
        }
        let mut round = Round {
            events: events.len(),
            ..Default::default()
        };
        if events.is_empty() {
            return Ok(round);
        }
        let mut parsed: Vec<(&WebhookEvent, Payload)> = Vec::with_capacity(events.len());
        for e in &events {
            match serde_json::from_str::<Payload>(&e.body) {
                Ok(p) => parsed.push((e, p)),
                Err(err) => {
                    self.db
                        .fail_webhook_event(e.id, &format!("not a webhook payload: {err}"), now)
                        .await?
                }
            }
        }
        let mut pnids: HashSet<String> = HashSet::new();
        for (e, p) in &parsed {
            if e.scope != "platform" {
                pnids.insert(e.scope.clone());
            }
            for change in p.entry.iter().flat_map(|en| &en.changes) {
                if let Some(Ok(v)) = change.messages() {
                    pnids.insert(v.metadata.phone_number_id);
                }
            }
        }
        let numbers: HashMap<String, Number> = self
            .db
            .numbers_by_phone_number_ids(&pnids.into_iter().collect::<Vec<_>>())
            .await?
            .into_iter()
            .map(|n| (n.phone_number_id.clone(), n))
            .collect();

        let mut updates = Vec::new();
        let mut owner = Vec::new();
        let mut retry: HashSet<usize> = HashSet::new();
        for (ei, (e, p)) in parsed.iter().enumerate() {
            for entry in &p.entry {
                for change in &entry.changes {
                    if let Some(v) = change.messages() {
                        let Ok(v) = v else {
                            round.unroutable += 1;
                            continue;
                        };
                        let Some(num) = numbers
                            .get(&v.metadata.phone_number_id)
                            .filter(|n| scope_allows(&e.scope, n))
                        else {
                            round.unroutable += 1;
                            tracing::warn!(phone_number_id = %v.metadata.phone_number_id, scope = %e.scope, "webhook change for a number we do not hold (or not under this secret); ignored");
                            continue;
                        };
                        for st in &v.statuses {
                            let Some(status) = MessageStatus::from_webhook(&st.status) else {
                                continue;
                            };
                            let target = match st
                                .biz_opaque_callback_data
                                .as_deref()
                                .and_then(|c| c.parse::<MessageId>().ok())
                            {
                                Some(id) => MessageRef::Ours(num.tenant_id, id),
                                None => MessageRef::Wamid(st.id.clone()),
                            };
                            let err = st.errors.first();
                            updates.push(StatusUpdate {
                                target,
                                tenant_id: num.tenant_id,
                                status,
                                at: at(st.timestamp),
                                wamid: st.id.clone(),
                                error_code: err.map(|x| x.code),
                                error_title: err
                                    .and_then(|x| x.title.clone().or_else(|| x.message.clone())),
                                error_detail: err
                                    .and_then(|x| x.error_data.as_ref())
                                    .and_then(|d| d.details.clone()),
                            });
                            owner.push(ei);
                        }
                        for m in &v.messages {
                            match self.record_inbound(num, &v.contacts, m).await {
                                Ok(true) => round.inbound += 1,
                                Ok(false) => {}
                                Err(err) => {
                                    tracing::warn!(error = %err, wamid = %m.id, "inbound message not recorded; event retried");
                                    retry.insert(ei);
                                }
                            }
                        }
                    } else if let Some(Ok(t)) = change.template_status() {
                        let tenants = self.template_tenants(&entry.id, &e.scope, &numbers).await?;
                        self.db
                            .set_template_status(
                                &tenants,
                                &TemplateReview {
                                    meta_id: &t.message_template_id,
                                    name: &t.message_template_name,
                                    language: &t.message_template_language,
                                    status: &t.event,
                                    reason: t.reason.as_deref().filter(|r| *r != "NONE"),
                                },
                                now,
                            )
                            .await?;
                    }
                }
            }
        }
        let applied = self
            .db
            .apply_statuses(&updates, &self.config.refundable_codes, now)
            .await?;
        round.statuses_moved = applied.moved.len();
        metrics::counter!("webhook_statuses_total").increment(updates.len() as u64);
        metrics::counter!("webhook_statuses_unknown_total").increment(applied.unknown.len() as u64);
        for i in &applied.unknown {
            retry.insert(owner[*i]);
        }
        let mut done = Vec::new();
        for (ei, (e, _)) in parsed.iter().enumerate() {
            let young = (now - e.received_at).num_seconds() < UNKNOWN_GRACE_SECS;
            if retry.contains(&ei) && young {
                self.db
                    .retry_webhook_event(
                        e.id,
                        now + chrono::Duration::seconds(2),
                        "statuses for messages not known yet",
                    )
                    .await?;
            } else {
                done.push(e.id);
            }
        }
        self.db.finish_webhook_events(&done, now).await?;
        Ok(round)
    }

    /// The tenants a template webhook for `waba` may touch under `scope`.
    async fn template_tenants(
        &self,
        waba: &str,
        scope: &str,
        numbers: &HashMap<String, Number>,
    ) -> anyhow::Result<Vec<TenantId>> {
        if scope == "platform" {
            return Ok(self.db.tenants_of_waba(waba).await?);
        }
        Ok(numbers
            .get(scope)
            .filter(|n| n.waba_id == waba)
            .map(|n| vec![n.tenant_id])
            .unwrap_or_default())
    }

    /// Records one inbound message (once per wamid): the sender becomes a contact if new, the
    /// conversation gets the message, and the 24-hour window opens from the message's own time.
    /// Returns whether it was new.
    async fn record_inbound(
        &self,
        num: &Number,
        contacts: &[Contact],
        m: &InboundMessage,
    ) -> anyhow::Result<bool> {
        let phone = PhoneE164::from_wa_id(&m.from)
            .map_err(|e| anyhow::anyhow!("sender {:?}: {e}", m.from))?;
        let name = contacts
            .iter()
            .find(|c| c.wa_id.as_deref() == Some(m.from.as_str()))
            .and_then(|c| c.profile.as_ref())
            .and_then(|p| p.name.as_deref());
        let sent_at = at(m.timestamp);
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let contact =
            inbox::upsert_contact_in(&mut tx, num.tenant_id, &phone, Some(&m.from), name, now)
                .await?;
        let conv =
            inbox::ensure_conversation_in(&mut tx, num.tenant_id, contact, num.id, now).await?;
        let preview = m.preview();
        let inserted = messages::insert_inbound_in(
            &mut tx,
            NewInbound {
                tenant_id: num.tenant_id,
                number_id: num.id,
                contact_id: contact,
                conversation_id: conv.id,
                wamid: &m.id,
                kind: &m.kind,
                content: serde_json::to_string(m)?,
                preview: preview.clone(),
                from_phone: phone.as_str(),
                at: sent_at,
            },
            now,
        )
        .await?;
        let Some(id) = inserted else { return Ok(false) };
        inbox::touch_conversation_in(
            &mut tx,
            num.tenant_id,
            conv.id,
            id,
            &preview,
            sent_at,
            Some(&m.id),
        )
        .await?;
        inbox::note_contact_inbound_in(&mut tx, num.tenant_id, contact, sent_at).await?;
        pinglayer_store::campaigns::attribute_reply_in(
            &mut tx,
            num.tenant_id,
            contact,
            num.id,
            sent_at,
        )
        .await?;
        // STOP / START (and their translations) change marketing consent, and are confirmed.
        let mut confirmed = false;
        // (what it asks for, the keyword's language when known).
        let want: Option<(Consent, Option<String>)> = match m.keyword_text() {
            None => None,
            Some(t) => {
                let word = pinglayer_domain::contact::normalize_keyword(t);
                match keyword(t) {
                    Some(w) => Some((
                        w,
                        pinglayer_domain::contact::builtin_keyword_language(&word)
                            .map(str::to_string),
                    )),
                    None => contacts::custom_keyword_in(&mut tx, num.tenant_id, &word)
                        .await?
                        .and_then(|(c, lang)| c.parse::<Consent>().ok().map(|c| (c, lang))),
                }
            }
        };
        if let Some((want, keyword_language)) = want {
            let note = format!("keyword in {}", m.id);
            if contacts::set_consent_in(
                &mut tx,
                num.tenant_id,
                contact,
                want,
                "inbound_keyword",
                Some(&note),
                now,
            )
            .await?
            {
                let reply_text = contacts::confirmation_in(
                    &mut tx,
                    num.tenant_id,
                    contact,
                    want,
                    keyword_language.as_deref(),
                )
                .await?;
                let body = reply_text.as_str();
                let content = Content::Text {
                    text: Text {
                        body: body.into(),
                        preview_url: None,
                    },
                };
                let reply = messages::enqueue_in(
                    &mut tx,
                    NewOutbound {
                        tenant_id: num.tenant_id,
                        number_id: num.id,
                        contact_id: contact,
                        conversation_id: conv.id,
                        kind: content.kind(),
                        content: serde_json::to_string(&content)?,
                        preview: body.into(),
                        to_phone: phone.as_str(),
                        idempotency_key: None,
                        request_hash: None,
                        category: "service",
                    },
                    now,
                )
                .await?;
                inbox::touch_conversation_in(
                    &mut tx,
                    num.tenant_id,
                    conv.id,
                    reply.id,
                    body,
                    now,
                    None,
                )
                .await?;
                confirmed = true;
            }
        }
        tx.commit().await?;
        // The contact was created, or its last inbound time or consent moved.
        pinglayer_store::changes::contacts_changed(num.tenant_id);
        if confirmed {
            self.wake.dispatch.notify_one();
        }
        Ok(true)
    }

    pub(crate) async fn webhook_loop(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        self.intake.set_applier(true);
        loop {
            let n = match self.apply_webhooks_once().await {
                Ok(r) => r.events,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook round failed; events stay pending");
                    0
                }
            };
            if n > 0 {
                continue;
            }
            tokio::select! {
                _ = &mut stop => {
                    let left: Vec<_> = self.intake.set_applier(false).into_iter().map(|e| e.id).collect();
                    if let Err(e) = self.db.release_webhook_events(&left).await {
                        tracing::warn!(error = %e, "handed webhook events not released; their lease runs out");
                    }
                    return;
                }
                _ = self.wake.webhooks.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }
}
