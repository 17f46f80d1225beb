//! A short-lived, per-process cache of authenticated principals, so that the hot path (a
//! request with a valid token) does not query the database every time.
//!
//! Correctness does not rest on the TTL: every change that can withdraw access (suspension,
//! removal or demotion of a member, logout, a revoked key, a reused refresh token) calls
//! [`ApiContext::auth_changed`](crate::ApiContext::auth_changed), which drops the tenant's
//! entries here and, on PostgreSQL, tells every other process through `NOTIFY` (they drop theirs
//! on receipt; a lost listener connection clears the whole cache). The TTL bounds staleness only
//! if a notification were lost in flight.

use pinglayer_domain::TenantId;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::Principal;

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// (session id, user id) of an access token.
    Session(uuid::Uuid, uuid::Uuid),
    /// SHA-256 of an API key.
    ApiKey(String),
}

pub struct AuthCache {
    ttl: Duration,
    map: Mutex<HashMap<CacheKey, (Principal, Instant)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Principal> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().expect("auth cache poisoned");
        map.get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(p, _)| p.clone())
    }

    pub fn put(&self, key: CacheKey, p: &Principal) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().expect("auth cache poisoned");
        if map.len() >= 100_000 {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        map.insert(key, (p.clone(), Instant::now()));
    }

    /// Forgets every principal of `tenant`, or everything with `None`.
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        let mut map = self.map.lock().expect("auth cache poisoned");
        match tenant {
            Some(t) => map.retain(|_, (p, _)| p.tenant.id != t),
            None => map.clear(),
        }
    }
}
