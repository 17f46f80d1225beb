//! Pages of the contact list, kept as the JSON that was sent while the tenant's contacts are
//! unchanged.
//!
//! A dashboard polls the same first page again and again, and the query behind it (a tag
//! filter over a million contacts, then their tags) costs the database far more than sending
//! bytes does. An entry holds the contacts generation read *before* its query ran
//! ([`pinglayer_store::changes`]) and is served only while that generation is still current,
//! and for at most [`MAX_AGE`], which bounds what a writer that announces nothing could leave
//! stale. Lists that depend on the clock (a segment's relative dates) are not kept.

use axum::body::Bytes;
use pinglayer_domain::TenantId;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Bytes of pages kept at most, over all tenants; past it the oldest half goes.
const BUDGET: usize = 32 << 20;

/// A tenant and the list's query string.
type Key = (TenantId, String);

struct Entry {
    generation: u64,
    at: Instant,
    body: Bytes,
}

#[derive(Default)]
pub struct ContactPages {
    inner: Mutex<Inner>,
    /// One filler per page at a time: when a page expires under load, one request runs the
    /// queries and the others wait for its answer instead of all querying at once.
    turns: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
}

impl ContactPages {
    /// The page for this tenant and query string, if one is kept and still current.
    pub fn get(&self, tenant: TenantId, query: &str) -> Option<Bytes> {
        let generation = pinglayer_store::changes::contacts_generation(tenant);
        let inner = self.inner.lock().expect("contact pages poisoned");
        inner
            .map
            .get(&(tenant, query.to_string()))
            .filter(|e| e.generation == generation && e.at.elapsed() < MAX_AGE)
            .map(|e| e.body.clone())
    }

    /// Waits for the turn to fill this page; look it up again once it comes.
    pub async fn turn(&self, tenant: TenantId, query: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = {
            let mut turns = self.turns.lock().expect("contact page turns poisoned");
            if turns.len() > 10_000 {
                turns.retain(|_, g| Arc::strong_count(g) > 1);
            }
            turns
                .entry((tenant, query.to_string()))
                .or_default()
                .clone()
        };
        gate.lock_owned().await
    }

    /// Keeps a page made from data read after `generation` was taken.
    pub fn put(&self, tenant: TenantId, query: &str, generation: u64, body: Bytes) {
        let mut inner = self.inner.lock().expect("contact pages poisoned");
        if body.len() > BUDGET / 64 {
            return;
        }
        if inner.bytes + body.len() > BUDGET {
            inner.evict_oldest_half();
        }
        inner.bytes += body.len();
        let at = Instant::now();
        if let Some(old) = inner.map.insert(
            (tenant, query.to_string()),
            Entry {
                generation,
                at,
                body,
            },
        ) {
            inner.bytes -= old.body.len();
        }
    }
}

impl Inner {
    fn evict_oldest_half(&mut self) {
        let mut ages: Vec<Instant> = self.map.values().map(|e| e.at).collect();
        ages.sort_unstable();
        let cut = ages.get(ages.len() / 2).copied();
        self.map.retain(|_, e| Some(e.at) > cut);
        self.bytes = self.map.values().map(|e| e.body.len()).sum();
    }
}
