//! Counting failures per key (an e-mail, an IP) over a sliding window: used to slow down
//! password guessing and one-time-code requests. Per process, like the request rate limiter.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct Throttle {
    max: usize,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1) as usize,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `key` has used up its allowance in the current window.
    pub fn blocked(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.hits.lock().expect("throttle poisoned");
        let q = map.get_mut(key)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.max {
            q.front()
                .map(|first| self.window.saturating_sub(now.duration_since(*first)))
        } else {
            None
        }
    }

    pub fn hit(&self, key: &str) {
        let now = Instant::now();
        let mut map = self.hits.lock().expect("throttle poisoned");
        // Keep memory bounded under a spray of distinct keys: drop the idle ones now and then.
        if map.len() > 50_000 {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let q = map.entry(key.to_string()).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.hits.lock().expect("throttle poisoned").remove(key);
    }
}

/// Whole seconds for a `Retry-After` header, never 0.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.as_secs() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_hits_and_clears() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.blocked("a").is_none());
            t.hit("a");
        }
        let wait = t.blocked("a").expect("blocked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(t.blocked("b").is_none());
        t.clear("a");
        assert!(t.blocked("a").is_none());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
