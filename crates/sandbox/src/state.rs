//! What the sandbox remembers: numbers and tokens, templates, service windows, unique
//! recipients, what was sent, and counters.

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use pinglayer_whatsapp::types::SendMessage;
use serde::Serialize;
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet, VecDeque},
    num::NonZeroU32,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    config::{SandboxConfig, SandboxNumber},
    webhooks::Queue,
};

/// How much of the sent log is kept (oldest dropped first).
const SENT_LOG: usize = 200_000;
pub const WINDOW_SECS: i64 = 24 * 3600;

pub struct NumberState {
    pub cfg: SandboxNumber,
    pub limiter: DefaultDirectRateLimiter,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateState {
    pub id: String,
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub parameter_format: String,
    pub components: Vec<Value>,
    pub rejected_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SentRecord {
    pub wamid: String,
    pub phone_number_id: String,
    pub to: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: SendMessage,
    pub at: i64,
}

#[derive(Default, Serialize)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub throttled: AtomicU64,
    pub webhooks_posted: AtomicU64,
    pub webhook_events: AtomicU64,
    pub webhook_failures: AtomicU64,
}

pub struct Sandbox {
    pub config: SandboxConfig,
    pub numbers: RwLock<HashMap<String, Arc<NumberState>>>,
    pub minted_tokens: RwLock<HashSet<String>>,
    pub templates: RwLock<Vec<TemplateState>>,
    /// Last inbound message time (unix s) per (phone_number_id, wa_id).
    pub windows: Mutex<HashMap<(String, String), i64>>,
    /// Business-initiated recipients per number in the last 24 h: wa_id → first time.
    pub uniques: Mutex<HashMap<String, HashMap<String, i64>>>,
    pub pair: DefaultKeyedRateLimiter<String>,
    pub sent: Mutex<VecDeque<SentRecord>>,
    pub seq: AtomicU64,
    pub queue: Queue,
}

impl Sandbox {
    pub fn new(config: SandboxConfig, queue: Queue) -> Self {
        let numbers = config
            .numbers
            .iter()
            .map(|n| (n.phone_number_id.clone(), Arc::new(number_state(n.clone()))))
            .collect();
        // Pair limit: one message per 6 s to one recipient, bursts up to 45 (reference §3.2).
        let pair = DefaultKeyedRateLimiter::keyed(
            Quota::with_period(Duration::from_secs(6))
                .expect("non-zero period")
                .allow_burst(NonZeroU32::new(45).expect("non-zero")),
        );
        Self {
            config,
            numbers: RwLock::new(numbers),
            minted_tokens: RwLock::new(HashSet::new()),
            templates: RwLock::new(Vec::new()),
            windows: Mutex::new(HashMap::new()),
            uniques: Mutex::new(HashMap::new()),
            pair,
            sent: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(1),
            queue,
        }
    }

    pub fn stats(&self) -> &Stats {
        self.queue.stats()
    }

    pub fn add_number(&self, n: SandboxNumber) {
        self.numbers
            .write()
            .expect("numbers poisoned")
            .insert(n.phone_number_id.clone(), Arc::new(number_state(n)));
    }

    pub fn number(&self, pnid: &str) -> Option<Arc<NumberState>> {
        self.numbers
            .read()
            .expect("numbers poisoned")
            .get(pnid)
            .cloned()
    }

    pub fn number_by_waba(&self, waba: &str) -> Option<Arc<NumberState>> {
        self.numbers
            .read()
            .expect("numbers poisoned")
            .values()
            .find(|n| n.cfg.waba_id == waba)
            .cloned()
    }

    /// A token may act for a number if it is that number's token or one minted by code exchange.
    pub fn token_ok(&self, n: &NumberState, token: &str) -> bool {
        n.cfg.access_token == token
            || self
                .minted_tokens
                .read()
                .expect("tokens poisoned")
                .contains(token)
    }

    pub fn token_known(&self, token: &str) -> bool {
        self.minted_tokens
            .read()
            .expect("tokens poisoned")
            .contains(token)
            || self
                .numbers
                .read()
                .expect("numbers poisoned")
                .values()
                .any(|n| n.cfg.access_token == token)
    }

    pub fn next_wamid(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("wamid.SBX{seq:016X}{:08X}", rand::random::<u32>())
    }

    pub fn open_window(&self, pnid: &str, wa_id: &str, at: i64) {
        let mut w = self.windows.lock().expect("windows poisoned");
        let e = w.entry((pnid.to_string(), wa_id.to_string())).or_insert(at);
        *e = (*e).max(at);
    }

    pub fn window_open(&self, pnid: &str, wa_id: &str, now: i64) -> bool {
        let w = self.windows.lock().expect("windows poisoned");
        w.get(&(pnid.to_string(), wa_id.to_string()))
            .is_some_and(|last| now - last < WINDOW_SECS)
    }

    /// Counts a business-initiated recipient against the daily unique limit; false when over.
    pub fn admit_unique(&self, pnid: &str, wa_id: &str, now: i64) -> bool {
        let limit = self.config.daily_unique_limit as usize;
        if limit == 0 {
            return true;
        }
        let mut u = self.uniques.lock().expect("uniques poisoned");
        let seen = u.entry(pnid.to_string()).or_default();
        seen.retain(|_, first| now - *first < WINDOW_SECS);
        if seen.contains_key(wa_id) {
            return true;
        }
        if seen.len() >= limit {
            return false;
        }
        seen.insert(wa_id.to_string(), now);
        true
    }

    pub fn record_sent(&self, r: SentRecord) {
        let mut s = self.sent.lock().expect("sent poisoned");
        if s.len() >= SENT_LOG {
            s.pop_front();
        }
        s.push_back(r);
    }

    pub fn template(&self, waba: &str, name: &str, language: &str) -> Option<TemplateState> {
        self.templates
            .read()
            .expect("templates poisoned")
            .iter()
            .find(|t| t.waba_id == waba && t.name == name && t.language == language)
            .cloned()
    }
}

fn number_state(cfg: SandboxNumber) -> NumberState {
    let rps = NonZeroU32::new(cfg.throughput_per_second.clamp(1, 1000)).expect("clamped to ≥ 1");
    // A bucket of one second's worth: bursts beyond the rate are refused, as Meta does.
    NumberState {
        limiter: DefaultDirectRateLimiter::direct(Quota::per_second(rps)),
        cfg,
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
