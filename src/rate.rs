//! [`RateLimiter`]: client-side pacing of calls to one destination.
//!
//! A token bucket shared by clones. The Amazon ML classifier uses it to keep
//! under its endpoint's peak rate, and any backend or custom component can
//! use it the same way: build one per destination and `acquire().await`
//! before each call.
//!
//! ```
//! use std::num::NonZeroU32;
//! use streamsift::rate::RateLimiter;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Slack's incoming webhooks take about one message per second.
//! let slack = RateLimiter::with_burst(NonZeroU32::new(1).unwrap(), NonZeroU32::MIN);
//! slack.acquire().await; // the first call goes at once
//! assert_eq!(slack.per_second(), 1);
//! # }
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket that paces calls: at most `burst + rate × t` calls in any
/// span of `t` seconds, and calls spaced `1 / rate` apart once the burst is
/// spent.
///
/// Each caller reserves the next free slot and sleeps until it
/// ([`tokio::time::sleep_until`], so tests can use a paused clock); callers
/// are served in the order they arrive. A caller dropped while waiting
/// still uses up its slot. Clone it to share one limit between classifiers
/// that call the same endpoint.
#[derive(Clone)]
pub struct RateLimiter {
    /// The earliest time the bucket is empty again ("theoretical arrival
    /// time" of the next call).
    next: Arc<Mutex<Instant>>,
    interval: Duration,
    /// `(burst - 1) × interval`: how far ahead of `next` a call may go.
    tolerance: Duration,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl RateLimiter {
    /// `per_second` calls per second, with a burst of a tenth of a second's
    /// worth (at least 1): 20 for 200/s.
    pub fn new(per_second: NonZeroU32) -> Self {
        let burst = NonZeroU32::new(per_second.get().div_ceil(10)).unwrap_or(NonZeroU32::MIN);
        Self::with_burst(per_second, burst)
    }

    /// `per_second` calls per second, up to `burst` at once after a pause.
    pub fn with_burst(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let interval = Duration::from_secs(1) / per_second.get();
        RateLimiter {
            next: Arc::new(Mutex::new(Instant::now())),
            interval,
            tolerance: interval * (burst.get() - 1),
            per_second,
            burst,
        }
    }

    /// Calls per second.
    pub fn per_second(&self) -> u32 {
        self.per_second.get()
    }

    /// Calls allowed at once after a pause.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let now = Instant::now();
        let at = {
            // The state is one Instant, always valid: a poisoned lock is safe to reuse.
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(now);
            *next = start + self.interval;
            start.checked_sub(self.tolerance).unwrap_or(now)
        };
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_calls_after_the_burst() {
        let l =
            RateLimiter::with_burst(NonZeroU32::new(200).unwrap(), NonZeroU32::new(20).unwrap());
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..420 {
            l.acquire().await;
            at.push(Instant::now() - t0);
        }
        // The burst goes at once, then one every 5 ms.
        assert!(at[..20].iter().all(|d| d.is_zero()));
        assert_eq!(at[20], Duration::from_millis(5));
        assert_eq!(at[419], Duration::from_millis(5 * 400));
        // No one-second window holds more than burst + rate calls.
        for (i, start) in at.iter().enumerate() {
            let n = at[i..]
                .iter()
                .take_while(|d| **d < *start + Duration::from_secs(1))
                .count();
            assert!(n <= 220, "{n} calls in the second from {start:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_is_shared_by_concurrent_callers_and_refills_when_idle() {
        let l = RateLimiter::new(NonZeroU32::new(100).unwrap());
        assert_eq!(l.burst(), 10);
        let t0 = Instant::now();
        let done = futures::future::join_all((0..110).map(|_| {
            let l = l.clone();
            async move {
                l.acquire().await;
                Instant::now() - t0
            }
        }))
        .await;
        let last = done.iter().max().copied().unwrap();
        assert_eq!(last, Duration::from_millis(10 * 100));
        // After a pause the burst is available again, no more.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t1 = Instant::now();
        for _ in 0..10 {
            l.acquire().await;
        }
        assert_eq!(Instant::now(), t1);
        l.acquire().await;
        assert_eq!(Instant::now() - t1, Duration::from_millis(10));
    }
}
