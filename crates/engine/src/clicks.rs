//! Clicks on smart links, off the request path: the redirect only pushes what it saw (code,
//! target, time, IP, user agent, referrer) onto an in-memory queue and answers; a writer drains
//! the queue in batches — parsing user agents, looking countries up in the operator's GeoIP
//! database, deciding uniqueness — and records each batch in one transaction
//! (`Db::record_clicks`). The process drains it once more after its last request on a graceful
//! shutdown, so no click is lost then.

use chrono::{DateTime, Utc};
use pinglayer_domain::link::{Agent, classify, visitor_key};
use pinglayer_store::{
    Db,
    links::{NewClick, Target},
};
use std::{
    collections::HashMap,
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
    /// Parsed user agents: clicks repeat a few agents many times over.
    agents: Mutex<HashMap<String, Agent>>,
}

/// User agents remembered at most (then the memo starts over).
const AGENTS_MAX: usize = 10_000;

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
            agents: Mutex::new(HashMap::new()),
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

    fn agent(&self, ua: &str) -> Agent {
        let mut memo = self.0.agents.lock().expect("agents poisoned");
        if let Some(a) = memo.get(ua) {
            return a.clone();
        }
        let a = classify(ua);
        if memo.len() >= AGENTS_MAX {
            memo.clear();
        }
        memo.insert(ua.to_string(), a.clone());
        a
    }

    fn parse(&self, r: &RawClick) -> NewClick {
        let agent = self.agent(&r.user_agent);
        let ip = r.ip.map(|i| i.to_string());
        let visitor = match r.target.contact_id {
            Some(c) => format!("c:{c}"),
            None => format!("v:{}", visitor_key(ip.as_deref(), &r.user_agent)),
        };
        NewClick {
            country: self.country(r.ip),
            target: r.target.clone(),
            code: r.code.clone(),
            at: r.at,
            ip,
            user_agent: r.user_agent.clone(),
            referrer: r.referrer.clone(),
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
            // Parsing (user agents, countries, hashes) and encoding the batch for the database
            // are CPU work: done on a blocking thread, not on the async workers that answer
            // redirects, which would otherwise wait behind it.
            let (raw, parsed, result) = {
                let (me, db) = (self.clone(), db.clone());
                let rt = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let parsed: Vec<NewClick> = raw.iter().map(|r| me.parse(r)).collect();
                    let result = rt.block_on(db.record_clicks(&parsed));
                    (raw, parsed.len(), result)
                })
                .await?
            };
            if let Err(e) = result {
                let mut q = self.0.queue.lock().expect("click queue poisoned");
                let mut back: Vec<RawClick> = raw;
                back.extend(rest);
                back.append(&mut q);
                back.truncate(self.0.capacity);
                *q = back;
                return Err(e.into());
            }
            written += parsed;
            metrics::counter!("link_clicks_recorded_total").increment(parsed as u64);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal MaxMind DB (format 2.0, IPv4, 24-bit records) that places 10.0.0.0/8 in
    /// India: 8 tree nodes along the bits of 10, one data record, the metadata.
    fn tiny_mmdb() -> Vec<u8> {
        let str_ = |s: &str| {
            let mut v = vec![0x40 | s.len() as u8];
            v.extend(s.as_bytes());
            v
        };
        let nodes: u32 = 8;
        let data_ptr = nodes + 16;
        let mut out = Vec::new();
        for i in 0..8 {
            let bit = (10u8 >> (7 - i)) & 1;
            let on_path = if i < 7 { i as u32 + 1 } else { data_ptr };
            let (l, r) = if bit == 0 {
                (on_path, nodes)
            } else {
                (nodes, on_path)
            };
            out.extend(&l.to_be_bytes()[1..]);
            out.extend(&r.to_be_bytes()[1..]);
        }
        out.extend([0u8; 16]);
        // {"country": {"iso_code": "IN"}}
        out.push(0xE1);
        out.extend(str_("country"));
        out.push(0xE1);
        out.extend(str_("iso_code"));
        out.extend(str_("IN"));
        out.extend(b"\xAB\xCD\xEFMaxMind.com");
        out.push(0xE9);
        out.extend(str_("node_count"));
        out.extend([0xC1, nodes as u8]);
        out.extend(str_("record_size"));
        out.extend([0xA1, 24]);
        out.extend(str_("ip_version"));
        out.extend([0xA1, 4]);
        out.extend(str_("database_type"));
        out.extend(str_("Test-Country"));
        out.extend(str_("languages"));
        out.extend([0x00, 0x04]);
        out.extend(str_("binary_format_major_version"));
        out.extend([0xA1, 2]);
        out.extend(str_("binary_format_minor_version"));
        out.push(0xA0);
        out.extend(str_("build_epoch"));
        out.extend([0x01, 0x02, 0x01]);
        out.extend(str_("description"));
        out.push(0xE0);
        out
    }

    #[test]
    fn countries_come_from_the_geoip_database() {
        let path = std::env::temp_dir().join(format!("geo-{}.mmdb", uuid::Uuid::new_v4()));
        std::fs::write(&path, tiny_mmdb()).unwrap();
        let clicks = Clicks::new(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            clicks.country(Some("10.1.2.3".parse().unwrap())).as_deref(),
            Some("IN")
        );
        assert_eq!(clicks.country(Some("11.1.2.3".parse().unwrap())), None);
        assert_eq!(clicks.country(None), None);
        assert_eq!(
            Clicks::new(None)
                .unwrap()
                .country(Some("10.1.2.3".parse().unwrap())),
            None
        );
        assert!(Clicks::new(Some(Path::new("/nonexistent/geo.mmdb"))).is_err());
    }
}
