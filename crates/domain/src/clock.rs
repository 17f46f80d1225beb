//! Time comes from a clock that tests can move, never from `Utc::now()` in business code.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Truncated to microseconds: PostgreSQL keeps microseconds, so a time written and read back
/// compares equal on both backends.
fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        to_micros(Utc::now())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(to_micros(start))))
    }
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().expect("clock poisoned");
        *t += by;
    }
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().expect("clock poisoned") = to_micros(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Utc::now());
        let a = c.now();
        assert_eq!(a, c.now());
        c.advance(Duration::seconds(5));
        assert_eq!(c.now() - a, Duration::seconds(5));
    }

    #[test]
    fn system_clock_has_microsecond_precision() {
        let t = SystemClock.now();
        assert_eq!(t.timestamp_subsec_nanos() % 1000, 0);
    }
}
