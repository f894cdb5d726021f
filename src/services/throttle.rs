//! Rate limits (`rate_limit.*` in the configuration), as token buckets (`governor`, GCRA):
//!
//! - per authenticated caller (issuer and subject), for every request with a valid token;
//! - per client address, for requests without one (unauthenticated routes, missing or invalid
//!   tokens); IPv6 addresses count per /64, which one client usually holds whole;
//! - per authenticated caller again, a tight budget for **access denials** (not a member of the
//!   cellule, no such cellule, a case not visible or not there, a forbidden action). Each denial
//!   is recorded in the audit log, so without it anyone with a token could fill a cellule's
//!   log. Once the budget is spent, denials answer 429 and are no longer recorded one by one:
//!   the first throttled denial of a caller in a cellule is recorded (reason `throttled`), then
//!   at most one per `throttled_denial_entry_every`.
//!
//! Keys that have not been seen for a while are dropped from time to time, so memory stays
//! bounded by the callers of the last minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{Budget, RateLimitConfig};

/// Every this many checks, forgotten keys are dropped.
const HOUSEKEEPING_EVERY: u64 = 4096;

/// The rate limiters of one process.
pub struct RateLimits {
    enabled: bool,
    subject: DefaultKeyedRateLimiter<String>,
    address: DefaultKeyedRateLimiter<IpAddr>,
    denials: DefaultKeyedRateLimiter<String>,
    entry_every: Duration,
    /// (caller, cellule) → when a `throttled` entry was last recorded.
    entries: Mutex<HashMap<(String, String), Instant>>,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What to do with an access denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Within budget: record it and answer it as usual.
    Record,
    /// Over budget, the first in this window: record it as throttled, answer 429.
    RecordThrottled(Duration),
    /// Over budget: answer 429 without recording.
    Throttled(Duration),
}

fn quota(budget: Budget) -> Quota {
    let per_minute = NonZeroU32::new(budget.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(budget.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

/// The key of a client address: the address, or its /64 for IPv6 (IPv4-mapped ones as IPv4).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            enabled: config.enabled,
            subject: RateLimiter::keyed(quota(config.subject)),
            address: RateLimiter::keyed(quota(config.address)),
            denials: RateLimiter::keyed(quota(config.denials)),
            entry_every: config.throttled_denial_entry_every,
            entries: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// One request of an authenticated caller; `Err(wait)` when over budget.
    pub fn subject(&self, issuer: &str, subject: &str) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        self.housekeeping();
        self.subject
            .check_key(&format!("{issuer}\u{0}{subject}"))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// One request without a valid token from `ip`; `Err(wait)` when over budget.
    pub fn address(&self, ip: IpAddr) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        self.housekeeping();
        self.address
            .check_key(&address_key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// One access denial of `caller` (a subject) in `cellule` (`None` when the cellule does
    /// not exist: nothing is recorded then, but the budget is spent all the same, so that a
    /// throttled caller cannot tell cellules that exist from those that do not).
    pub fn denial(&self, caller: &str, cellule: Option<&str>) -> Denial {
        if !self.enabled {
            return Denial::Record;
        }
        self.housekeeping();
        let wait = match self.denials.check_key(&caller.to_owned()) {
            Ok(()) => return Denial::Record,
            Err(not_until) => not_until.wait_time_from(self.clock.now()),
        };
        let Some(cellule) = cellule else {
            return Denial::Throttled(wait);
        };
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (caller.to_owned(), cellule.to_owned());
        let now = Instant::now();
        match entries.get(&key) {
            Some(at) if now.duration_since(*at) < self.entry_every => Denial::Throttled(wait),
            _ => {
                entries.insert(key, now);
                Denial::RecordThrottled(wait)
            }
        }
    }

    fn housekeeping(&self) {
        if !self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(HOUSEKEEPING_EVERY)
        {
            return;
        }
        for limiter in [&self.subject, &self.denials] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.address.retain_recent();
        self.address.shrink_to_fit();
        let every = self.entry_every;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|_, at| at.elapsed() < every);
        entries.shrink_to_fit();
    }
}

/// Seconds to announce in `Retry-After`: `wait` rounded up, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32) -> RateLimitConfig {
        let budget = Budget {
            per_minute: 1,
            burst,
        };
        RateLimitConfig {
            enabled: true,
            subject: budget,
            address: budget,
            denials: budget,
            throttled_denial_entry_every: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_burst_then_a_wait() {
        let limits = RateLimits::new(&config(3));
        for _ in 0..3 {
            assert!(limits.subject("iss", "alice").is_ok());
        }
        let wait = limits.subject("iss", "alice").expect_err("over budget");
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert_eq!(retry_after_seconds(wait), wait.as_secs() + 1);
        assert!(limits.subject("iss", "bob").is_ok(), "per subject");
        assert!(limits.subject("other", "alice").is_ok(), "per issuer");
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let limits = RateLimits::new(&config(1));
        assert!(limits.address("2001:db8::1".parse().unwrap()).is_ok());
        assert!(limits.address("2001:db8::2".parse().unwrap()).is_err());
        assert!(limits.address("2001:db8:0:1::1".parse().unwrap()).is_ok());
        assert!(limits.address("192.0.2.1".parse().unwrap()).is_ok());
        assert!(limits.address("::ffff:192.0.2.1".parse().unwrap()).is_err());
    }

    #[test]
    fn throttled_denials_are_recorded_once_per_window_and_cellule() {
        let limits = RateLimits::new(&config(2));
        assert_eq!(limits.denial("mallory", Some("a")), Denial::Record);
        assert_eq!(limits.denial("mallory", Some("a")), Denial::Record);
        assert!(matches!(
            limits.denial("mallory", Some("a")),
            Denial::RecordThrottled(_)
        ));
        assert!(matches!(
            limits.denial("mallory", Some("a")),
            Denial::Throttled(_)
        ));
        assert!(matches!(
            limits.denial("mallory", None),
            Denial::Throttled(_)
        ));
        assert!(matches!(
            limits.denial("mallory", Some("b")),
            Denial::RecordThrottled(_)
        ));
        assert_eq!(limits.denial("alice", Some("a")), Denial::Record);
    }

    #[test]
    fn disabled_limits_let_everything_through() {
        let mut c = config(1);
        c.enabled = false;
        let limits = RateLimits::new(&c);
        for _ in 0..10 {
            assert!(limits.subject("iss", "alice").is_ok());
            assert_eq!(limits.denial("alice", Some("a")), Denial::Record);
        }
    }
}
