//! The per-process limiter: one atomic cell per (client, template) pair of
//! the configuration, allocated at start.
//!
//! Clients are authenticated and templates configured before a request is
//! limited, so the set of buckets is known when the issuer starts. Nothing
//! is added on the request path and nothing needs evicting: memory is fixed
//! (8 bytes per pair, plus the lookup tables), a request costs two hash
//! lookups and one compare-and-swap, and no lock is held anywhere. A bucket
//! that has rested is simply a `tat` in the past.

use super::{gcra, retry_after, Admission, RateLimit, RateLimitError, RateLimiter};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// One template's buckets, by client.
#[derive(Debug)]
struct TemplateBuckets {
    clients: HashMap<String, usize>,
    tats: Box<[AtomicU64]>,
}

/// Budgets in this process only: with several replicas each allows the
/// whole limit (`check-config` warns about such configurations).
#[derive(Debug)]
pub struct MemoryRateLimiter {
    /// Time 0 of the buckets; monotonic, so a clock step changes nothing.
    base: Instant,
    templates: HashMap<String, TemplateBuckets>,
}

impl MemoryRateLimiter {
    /// Buckets for each `(template, clients)`: every client of every
    /// limited template.
    pub fn new<'a, I, C>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, C)>,
        C: IntoIterator<Item = &'a str>,
    {
        let templates = pairs
            .into_iter()
            .map(|(template, clients)| {
                let clients: HashMap<String, usize> =
                    clients.into_iter().enumerate().map(|(i, c)| (c.to_owned(), i)).collect();
                let tats = (0..clients.len()).map(|_| AtomicU64::new(0)).collect();
                (template.to_owned(), TemplateBuckets { clients, tats })
            })
            .collect();
        Self { base: Instant::now(), templates }
    }

    /// The buckets held: one per configured (client, template) pair, fixed
    /// at construction.
    pub fn buckets(&self) -> usize {
        self.templates.values().map(|t| t.tats.len()).sum()
    }

    fn now_micros(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn admit(&self, client: &str, template: &str, limit: &RateLimit) -> Result<Admission, RateLimitError> {
        let cell = self
            .templates
            .get(template)
            .and_then(|t| t.clients.get(client).map(|&i| &t.tats[i]))
            .ok_or_else(|| RateLimitError::NoBucket { client: client.to_owned(), template: template.to_owned() })?;
        let now = self.now_micros();
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let new_tat = match gcra(tat, now, limit) {
                Ok(t) => t,
                Err(wait) => return Ok(Admission::Limited { retry_after: retry_after(wait) }),
            };
            match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Admission::Admitted),
                Err(current) => tat = current,
            }
        }
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn budgets_are_per_pair_and_refill_with_time() {
        let l = MemoryRateLimiter::new([("pay", ["a", "b"]), ("read", ["a", "c"])]);
        assert_eq!(l.buckets(), 4);
        let limit = RateLimit::parse("2/s", Some(2)).unwrap(); // T = 500 ms
        for _ in 0..2 {
            assert_eq!(l.admit("a", "pay", &limit).await, Ok(Admission::Admitted));
        }
        assert_eq!(l.admit("a", "pay", &limit).await, Ok(Admission::Limited { retry_after: Duration::from_secs(1) }));
        // Other pairs have their own budgets.
        assert_eq!(l.admit("b", "pay", &limit).await, Ok(Admission::Admitted));
        assert_eq!(l.admit("a", "read", &limit).await, Ok(Admission::Admitted));
        // One interval earns one token back.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(l.admit("a", "pay", &limit).await, Ok(Admission::Admitted));
        assert!(matches!(l.admit("a", "pay", &limit).await, Ok(Admission::Limited { .. })));
        // Unknown pairs fail closed.
        assert!(matches!(l.admit("c", "pay", &limit).await, Err(RateLimitError::NoBucket { .. })));
        assert!(matches!(l.admit("a", "nope", &limit).await, Err(RateLimitError::NoBucket { .. })));
        assert_eq!(l.buckets(), 4);
    }
}
