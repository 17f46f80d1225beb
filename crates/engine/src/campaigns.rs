//! How a campaign fans out and what each recipient gets.
//!
//! - The scheduler starts one run per due occurrence (`Db::start_due_runs`).
//! - Fan-out materialises a run's audience into the outbox in set-based batches of contacts
//!   (`Db::fanout_batch`), resumable from its cursor after a crash.
//! - At send time the dispatcher renders each campaign message for its contact with a
//!   [`Plan`]: the template in the contact's language when approved (else the default), and
//!   parameters from contact data with fallbacks.

use chrono::{DateTime, Utc};
use pinglayer_domain::{
    CampaignId, LinkId, TenantId,
    campaign::{
        Audience, ContactData, ParamPlan, Parameters, Quiet, QuietHours, Schedule, ScheduleInput,
        Source, pick_language,
    },
    link::personal_code,
};
use pinglayer_store::{
    Db, StoreError,
    campaigns::{AudienceSql, Campaign, FANOUT_BATCH, FanoutJob},
    contacts::Contact,
    links::{LinkKey, PersonalCode},
    messages::Claimed,
};
use pinglayer_whatsapp::types::{ComponentParameters, Content, Language, Parameter, Template};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::Engine;

/// Everything needed to render a campaign's message for any contact.
#[derive(Debug, Clone)]
pub struct Plan {
    pub campaign: CampaignId,
    pub template: String,
    pub default_language: String,
    /// Approved language versions.
    pub approved: Vec<String>,
    pub marketing: bool,
    /// The template's category as Meta writes it (`MARKETING`, `UTILITY`, …).
    pub category: String,
    pub params: ParamPlan,
    pub quiet: Option<Quiet>,
    /// The smart links the parameters use: each recipient gets a personal code of each.
    pub links: HashMap<LinkId, LinkKey>,
}

/// Why a campaign cannot be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("template {0:?} does not exist (any more)")]
    TemplateMissing(String),
    #[error("template {0:?} is not approved in {1}")]
    NotApproved(String, String),
    #[error("{0}")]
    Invalid(String),
}

impl Plan {
    /// Builds the plan of a stored campaign, checking its template now.
    pub async fn load(db: &Db, c: &Campaign) -> Result<Result<Plan, PlanError>, StoreError> {
        let Some((tpl, langs)) = db.template_named(c.tenant_id, &c.template_name).await? else {
            return Ok(Err(PlanError::TemplateMissing(c.template_name.clone())));
        };
        let approved: Vec<String> = langs
            .iter()
            .filter(|l| l.status == "APPROVED")
            .map(|l| l.language.clone())
            .collect();
        if !approved.contains(&c.default_language) {
            return Ok(Err(PlanError::NotApproved(
                c.template_name.clone(),
                c.default_language.clone(),
            )));
        }
        let params: Parameters = match serde_json::from_str(&c.parameters) {
            Ok(p) => p,
            Err(e) => return Ok(Err(PlanError::Invalid(e.to_string()))),
        };
        let params = match ParamPlan::parse(&params) {
            Ok(p) => p,
            Err(e) => return Ok(Err(PlanError::Invalid(e.to_string()))),
        };
        let ids = params.link_ids();
        let links: HashMap<LinkId, LinkKey> = db
            .link_keys(c.tenant_id, &ids)
            .await?
            .into_iter()
            .map(|k| (k.id, k))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !links.contains_key(id)) {
            return Ok(Err(PlanError::Invalid(format!(
                "smart link {missing} does not exist (any more)"
            ))));
        }
        let quiet = match c.quiet_hours.as_deref() {
            None => None,
            Some(q) => {
                let q: QuietHours = match serde_json::from_str(q) {
                    Ok(q) => q,
                    Err(e) => return Ok(Err(PlanError::Invalid(e.to_string()))),
                };
                match Quiet::parse(&q) {
                    Ok(q) => Some(q),
                    Err(e) => return Ok(Err(PlanError::Invalid(e.to_string()))),
                }
            }
        };
        Ok(Ok(Plan {
            campaign: c.id,
            template: c.template_name.clone(),
            default_language: c.default_language.clone(),
            approved,
            marketing: tpl.category.eq_ignore_ascii_case("MARKETING"),
            category: tpl.category.clone(),
            params,
            quiet,
            links,
        }))
    }

    /// The message for one contact, or why it cannot be sent (a parameter with no value and no
    /// fallback).
    pub fn render(&self, c: &Contact) -> Result<Content, String> {
        let data = ContactData {
            name: c.name.as_deref(),
            phone: &c.phone,
            email: c.email.as_deref(),
            language: c.language.as_deref(),
            attributes: &c.attributes.0,
        };
        self.render_for(&data)
    }

    /// The message for anyone (a test send): smart links are their plain short URL.
    pub fn render_for(&self, data: &ContactData<'_>) -> Result<Content, String> {
        self.render_with(data, &|key: &LinkKey, button| {
            if button {
                key.code.clone()
            } else {
                short_url(&key.short_base, &key.code)
            }
        })
    }

    /// The message of one campaign recipient: each smart link becomes their personal short
    /// URL, whose code (derived from the link and the message, so a retry carries the same
    /// one) is added to `codes` to be recorded before the message is sent.
    pub fn render_personal(
        &self,
        c: &Contact,
        m: &Claimed,
        codes: &mut Vec<PersonalCode>,
    ) -> Result<Content, String> {
        let data = ContactData {
            name: c.name.as_deref(),
            phone: &c.phone,
            email: c.email.as_deref(),
            language: c.language.as_deref(),
            attributes: &c.attributes.0,
        };
        let made = std::cell::RefCell::new(Vec::new());
        let content = self.render_with(&data, &|key: &LinkKey, button| {
            let code = personal_code(&key.salt, m.id);
            made.borrow_mut().push(PersonalCode {
                tenant_id: m.tenant_id,
                link_id: key.id,
                message_id: m.id,
                code: code.clone(),
                contact_id: m.contact_id,
                campaign_id: Some(self.campaign),
                run_id: m.run_id,
            });
            if button {
                code
            } else {
                short_url(&key.short_base, &code)
            }
        })?;
        let mut made = made.into_inner();
        made.sort_by_key(|c| c.link_id);
        made.dedup_by(|a, b| a.link_id == b.link_id);
        codes.extend(made);
        Ok(content)
    }

    fn render_with(
        &self,
        data: &ContactData<'_>,
        link: &dyn Fn(&LinkKey, bool) -> String,
    ) -> Result<Content, String> {
        let language = pick_language(data.language, &self.approved, &self.default_language);
        let values = |kind: &str, list: &[pinglayer_domain::campaign::Param]| {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    let v = match &p.source {
                        Source::Link(id) => self.links.get(id).map(|k| link(k, kind == "button")),
                        _ => p.resolve(data),
                    };
                    v.map(Parameter::text)
                        .ok_or_else(|| format!("missing_parameter: {kind} {{{{{}}}}}", i + 1))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let mut components = Vec::new();
        if !self.params.header.is_empty() {
            components.push(ComponentParameters {
                kind: "header".into(),
                sub_type: None,
                index: None,
                parameters: values("header", &self.params.header)?,
            });
        }
        if !self.params.body.is_empty() {
            components.push(ComponentParameters {
                kind: "body".into(),
                sub_type: None,
                index: None,
                parameters: values("body", &self.params.body)?,
            });
        }
        for (index, p) in &self.params.buttons {
            components.push(ComponentParameters {
                kind: "button".into(),
                sub_type: Some("url".into()),
                index: Some(index.to_string()),
                parameters: values("button", std::slice::from_ref(p))?,
            });
        }
        Ok(Content::Template {
            template: Template {
                name: self.template.clone(),
                language: Language {
                    code: language.to_string(),
                    policy: Some("deterministic".into()),
                },
                components,
            },
        })
    }
}

/// `https://host/s/<code>`.
pub fn short_url(base: &str, code: &str) -> String {
    format!("{}/s/{code}", base.trim_end_matches('/'))
}

/// Plans by campaign, reloaded after a short while (templates get approved, edited…).
type LoadedPlan = Arc<Result<Plan, PlanError>>;

#[derive(Clone, Default)]
pub(crate) struct Plans(Arc<Mutex<HashMap<CampaignId, (Instant, LoadedPlan)>>>);

const PLAN_TTL: Duration = Duration::from_secs(10);

/// Runs fanned out at once by one process.
const FANOUT_WORKERS: usize = 3;

/// The next occurrence of a stored campaign's schedule after `t`.
pub fn next_occurrence(c: &Campaign, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let input: ScheduleInput = serde_json::from_str(&c.schedule).ok()?;
    Schedule::parse(&input).ok()?.after(t)
}

impl Engine {
    pub(crate) async fn plan(
        &self,
        tenant: TenantId,
        campaign: CampaignId,
    ) -> anyhow::Result<Arc<Result<Plan, PlanError>>> {
        if let Some((at, p)) = self.plans.0.lock().expect("plans poisoned").get(&campaign)
            && at.elapsed() < PLAN_TTL
        {
            return Ok(p.clone());
        }
        let c = self.db.campaign(tenant, campaign).await?;
        let p = Arc::new(Plan::load(&self.db, &c).await?);
        self.plans
            .0
            .lock()
            .expect("plans poisoned")
            .insert(campaign, (Instant::now(), p.clone()));
        Ok(p)
    }

    /// One scheduler step: start due occurrences, then fan out every unfinished run. Returns
    /// how many messages were queued.
    pub async fn campaigns_once(&self) -> anyhow::Result<i64> {
        let now = self.clock.now();
        let started = self.db.start_due_runs(now, 50, next_occurrence).await?;
        for (tenant, campaign, run) in &started {
            tracing::info!(%tenant, %campaign, %run, "campaign run started");
        }
        // A few fan-outs at once: one big audience does not hold back the others' first sends.
        let workers = (0..FANOUT_WORKERS).map(|_| async {
            let mut queued = 0;
            let lease = self.clock.now() + chrono::Duration::minutes(5);
            while let Some(job) = self.db.claim_fanout(self.clock.now(), lease).await? {
                queued += self.fan_out(job).await?;
            }
            Ok::<_, anyhow::Error>(queued)
        });
        let mut queued = 0;
        for r in futures::future::join_all(workers).await {
            queued += r?;
        }
        Ok(queued)
    }

    /// Materialises one run's audience, batch after batch.
    async fn fan_out(&self, job: FanoutJob) -> anyhow::Result<i64> {
        let now = self.clock.now();
        let mut queued = 0;
        let c = self.db.campaign(job.tenant_id, job.campaign_id).await;
        let plan = match &c {
            Ok(c) => Plan::load(&self.db, c).await?,
            Err(_) => Err(PlanError::Invalid("campaign deleted".into())),
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(campaign = %job.campaign_id, error = %e, "campaign cannot be sent");
                self.db
                    .fail_campaign(job.tenant_id, job.campaign_id, &e.to_string(), now)
                    .await?;
                return Ok(0);
            }
        };
        let audience: Audience = serde_json::from_str(&job.audience)?;
        let audience = match AudienceSql::resolve(&self.db, job.tenant_id, &audience).await {
            Ok(a) => a,
            Err(StoreError::NotFound) => {
                self.db
                    .fail_campaign(
                        job.tenant_id,
                        job.campaign_id,
                        "the audience's segment no longer exists",
                        now,
                    )
                    .await?;
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let mut job = job;
        let started = Instant::now();
        loop {
            let step = self
                .db
                .fanout_batch(
                    &job,
                    &audience,
                    plan.marketing,
                    FANOUT_BATCH,
                    self.clock.now(),
                )
                .await?;
            queued += step.queued;
            metrics::counter!("campaign_fanout_messages_total").increment(step.queued as u64);
            self.wake.dispatch.notify_one();
            if step.done {
                break;
            }
            // Resume point for the next batch.
            job = match self
                .db
                .claim_fanout_resume(job.tenant_id, job.run_id)
                .await?
            {
                Some(j) => j,
                None => break,
            };
        }
        tracing::info!(run = %job.run_id, queued, elapsed_ms = started.elapsed().as_millis() as u64, "campaign fan-out done");
        Ok(queued)
    }

    pub(crate) async fn campaign_loop(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.campaigns_once().await {
                tracing::warn!(error = %e, "campaign scheduler round failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.campaigns.notified() => {}
                _ = tokio::time::sleep(self.config.poll.max(Duration::from_millis(500))) => {}
            }
        }
    }
}
