//! The plan's API rate: requests per minute for all of a tenant's credentials together, counted
//! per process like the per-credential limit. The plan is re-read every 30 s, so a plan change
//! takes effect within that.

use governor::{DefaultDirectRateLimiter, Quota};
use pinglayer_domain::TenantId;
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{ApiContext, ApiError, ApiResult, auth::throttle::retry_after_secs};

const TTL: Duration = Duration::from_secs(30);

struct Entry {
    loaded: Instant,
    per_minute: Option<u32>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

#[derive(Default)]
pub struct PlanRates(Mutex<HashMap<TenantId, Entry>>);

impl PlanRates {
    fn limiter(&self, tenant: TenantId) -> Option<Option<Arc<DefaultDirectRateLimiter>>> {
        let map = self.0.lock().expect("plan rates poisoned");
        map.get(&tenant)
            .filter(|e| e.loaded.elapsed() < TTL)
            .map(|e| e.limiter.clone())
    }

    /// 429 `rate_limited` when the tenant's plan allowance for this minute is used up.
    pub async fn check(&self, ctx: &ApiContext, tenant: TenantId) -> ApiResult<()> {
        let limiter = match self.limiter(tenant) {
            Some(l) => l,
            None => {
                let per_minute = ctx
                    .db
                    .current_plan(tenant, ctx.clock.now())
                    .await?
                    .and_then(|p| p.plan.api_requests_per_minute)
                    .map(|n| n.clamp(1, u32::MAX as i64) as u32);
                let mut map = self.0.lock().expect("plan rates poisoned");
                // Keep the bucket when the rate is unchanged, so a refresh does not reset it.
                let limiter = match map.get(&tenant) {
                    Some(e) if e.per_minute == per_minute => e.limiter.clone(),
                    _ => per_minute
                        .and_then(NonZeroU32::new)
                        .map(|n| Arc::new(DefaultDirectRateLimiter::direct(Quota::per_minute(n)))),
                };
                map.insert(
                    tenant,
                    Entry {
                        loaded: Instant::now(),
                        per_minute,
                        limiter: limiter.clone(),
                    },
                );
                limiter
            }
        };
        match limiter.map(|l| l.check()) {
            Some(Err(not_until)) => Err(ApiError::TooManyRequests {
                retry_after_secs: retry_after_secs(not_until.wait_time_from(
                    governor::clock::Clock::now(&governor::clock::DefaultClock::default()),
                )),
            }),
            _ => Ok(()),
        }
    }
}
