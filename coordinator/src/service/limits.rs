//! What one client may send, so that a misbehaving or hostile agent cannot starve the others:
//! message sizes, the size of a registration, and call rates per agent (token buckets on an
//! injected clock, so they test without waiting).

use super::error::ServiceError;
use crate::scheduler::Millis;
use quantgrid_proto::pb;
use std::collections::HashMap;

/// The largest message either service decodes. A report (its samples and every op's figures)
/// is tens of kilobytes; a registration a few.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Concurrent calls (streams) one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
const MAX_BROWSERS: usize = 32;
const MAX_LABELS: usize = 64;
const MAX_TEXT: usize = 256;

/// Registrations per agent: a burst of 5, then one every 6 s (an agent registers once per
/// session; a reconnect loop backs off far slower than this).
pub const REGISTRATIONS: Rate = Rate {
    burst: 5.0,
    per_second: 1.0 / 6.0,
};
/// Messages (heartbeats, progress, reports) per session: a burst of 2,000 (the reports an
/// agent resends after a reconnect), then 500 a second. A real cell takes seconds; a load
/// test's simulated agent with 5 ms cells sends 200 a second; a flood is refused.
pub const SESSION_MESSAGES: Rate = Rate {
    burst: 2000.0,
    per_second: 500.0,
};

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

/// Token buckets by key (an agent name, a session).
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: HashMap<String, (f64, Millis)>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes one call for `key` at `now`: false when its bucket is empty.
    pub fn allow(&mut self, key: &str, now: Millis) -> bool {
        let rate = self.rate;
        let (tokens, at) = self
            .buckets
            .entry(key.to_string())
            .or_insert((rate.burst, now));
        let elapsed = now.saturating_sub(*at) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * rate.per_second).min(rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets `key` (a session that ended).
    pub fn forget(&mut self, key: &str) {
        self.buckets.remove(key);
    }
}

/// A registration within the sizes the coordinator keeps for every agent.
pub fn check_register(r: &pb::RegisterRequest) -> Result<(), ServiceError> {
    let too = |what: &str, n: usize, max: usize| {
        Err(ServiceError::InvalidArgument(format!(
            "registration has {n} {what}, at most {max} are taken"
        )))
    };
    if r.browsers.len() > MAX_BROWSERS {
        return too("browsers", r.browsers.len(), MAX_BROWSERS);
    }
    if r.labels.len() > MAX_LABELS {
        return too("labels", r.labels.len(), MAX_LABELS);
    }
    let texts = [&r.name, &r.version, &r.os, &r.arch]
        .into_iter()
        .chain(r.labels.iter().flat_map(|(k, v)| [k, v]))
        .chain(r.gpu_vendors.iter());
    if let Some(long) = texts.into_iter().find(|t| t.len() > MAX_TEXT) {
        return Err(ServiceError::InvalidArgument(format!(
            "registration has a text of {} bytes (`{}…`), at most {MAX_TEXT} are taken",
            long.len(),
            long.chars().take(24).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut l = Limiter::new(Rate {
            burst: 3.0,
            per_second: 2.0,
        });
        assert!((0..3).all(|_| l.allow("a", 0)));
        assert!(!l.allow("a", 0), "the burst is spent");
        assert!(l.allow("b", 0), "another key has its own bucket");
        assert!(!l.allow("a", 400), "0.8 of a call refilled");
        assert!(l.allow("a", 500), "one refilled by 500 ms at 2/s");
        assert!(
            (0..3).all(|_| l.allow("a", 60_000)),
            "refills up to the burst"
        );
        assert!(!l.allow("a", 60_000));
    }

    #[test]
    fn oversized_registrations_are_named() {
        let mut r = pb::RegisterRequest::default();
        assert!(check_register(&r).is_ok());
        r.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = check_register(&r).expect_err("labels");
        assert!(e.to_string().contains("65 labels"), "{e}");
        r.labels.clear();
        r.version = "x".repeat(300);
        assert!(
            check_register(&r)
                .expect_err("text")
                .to_string()
                .contains("300 bytes")
        );
    }
}
