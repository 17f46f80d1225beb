//! Clicks on smart links, off the request path: the redirect only pushes what it saw (code,
//! target, time, IP, user agent, referrer) onto an in-memory queue and answers; a writer drains
//! the queue in batches — parsing user agents, looking countries up in the operator's GeoIP
//! database, deciding uniqueness — and records each batch in one transaction
//! (`Db::record_clicks`). The process drains it once more after its last request on a graceful
//! shutdown, so no click is lost then.

use chrono::{DateTime, Utc};
use pinglayer_domain::link::{classify, visitor_key};
use pinglayer_store::{
    Db,
    links::{NewClick, Target},
};
use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
};

/// A click as the redirect saw it.
#[derive(Debug, Clone)]
pub struct RawClick {
    pub target: Arc<Target>,
    pub code: String,
    pub at: DateTime<Utc>,
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    pub referrer: Option<String>,
}

/// Clicks waiting to be written; more than `capacity` waiting means the database cannot keep
/// up, and further clicks are dropped (counted in `link_clicks_dropped_total`) rather than
/// growing the process without bound.
#[derive(Clone)]
pub struct Clicks(Arc<Inner>);

struct Inner {
    queue: Mutex<Vec<RawClick>>,
    /// Serialises writers (the periodic one and the final flush).
    writing: tokio::sync::Mutex<()>,
    geo: Option<maxminddb::Reader<Vec<u8>>>,
    capacity: usize,
}

/// Clicks written per transaction.
const BATCH: usize = 5000;

impl Clicks {
    /// A queue, with the GeoIP database (MaxMind format: GeoLite2/GeoIP2 Country or City) when
    /// the operator configured one.
    pub fn new(geoip: Option<&Path>) -> anyhow::Result<Self> {
        let geo =
            match geoip {
                Some(p) => Some(maxminddb::Reader::open_readfile(p).map_err(|e| {
                    anyhow::anyhow!("opening the GeoIP database {}: {e}", p.display())
                })?),
                None => None,
            };
        Ok(Clicks(Arc::new(Inner {
            queue: Mutex::new(Vec::with_capacity(1024)),
            writing: tokio::sync::Mutex::new(()),
            geo,
            capacity: 500_000,
        })))
    }

    /// Queues a click; `false` when it was dropped because the queue is full.
    pub fn push(&self, c: RawClick) -> bool {
        let mut q = self.0.queue.lock().expect("click queue poisoned");
        if q.len() >= self.0.capacity {
            drop(q);
            metrics::counter!("link_clicks_dropped_total").increment(1);
            return false;
        }
        q.push(c);
        true
    }

    /// Clicks waiting to be written.
    pub fn pending(&self) -> usize {
        self.0.queue.lock().expect("click queue poisoned").len()
    }

    fn country(&self, ip: Option<IpAddr>) -> Option<String> {
        let (geo, ip) = (self.0.geo.as_ref()?, ip?);
        let found = geo.lookup(ip).ok()?;
        let c: maxminddb::geoip2::Country = found.decode().ok()??;
        c.country
            .iso_code
            .or(c.registered_country.iso_code)
            .map(str::to_string)
    }

    fn parse(&self, r: RawClick) -> NewClick {
        let agent = classify(&r.user_agent);
        let ip = r.ip.map(|i| i.to_string());
        let visitor = match r.target.contact_id {
            Some(c) => format!("c:{c}"),
            None => format!("v:{}", visitor_key(ip.as_deref(), &r.user_agent)),
        };
        NewClick {
            country: self.country(r.ip),
            target: (*r.target).clone(),
            code: r.code,
            at: r.at,
            ip,
            user_agent: r.user_agent,
            referrer: r.referrer,
            device: agent.device.to_string(),
            browser: agent.browser,
            os: agent.os,
            bot: agent.bot,
            visitor,
        }
    }

    /// Writes everything queued now, in batches. A batch the database refused goes back to the
    /// queue (it is tried again next time). Returns how many clicks were written.
    pub async fn flush(&self, db: &Db) -> anyhow::Result<usize> {
        let _one = self.0.writing.lock().await;
        let taken = std::mem::take(&mut *self.0.queue.lock().expect("click queue poisoned"));
        let mut written = 0;
        let mut rest = taken.into_iter().peekable();
        while rest.peek().is_some() {
            let raw: Vec<RawClick> = rest.by_ref().take(BATCH).collect();
            let parsed: Vec<NewClick> = raw.iter().cloned().map(|r| self.parse(r)).collect();
            if let Err(e) = db.record_clicks(&parsed).await {
                let mut q = self.0.queue.lock().expect("click queue poisoned");
                let mut back: Vec<RawClick> = raw;
                back.extend(rest);
                back.append(&mut q);
                back.truncate(self.0.capacity);
                *q = back;
                return Err(e.into());
            }
            written += parsed.len();
            metrics::counter!("link_clicks_recorded_total").increment(parsed.len() as u64);
        }
        Ok(written)
    }
}
