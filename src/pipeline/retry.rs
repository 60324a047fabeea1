//! Retries and timeouts: the one place that decides when a call is tried
//! again, and how long one attempt may take.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{ClassifyError, DeadLetterError, ErrorClass, LabelError, RouteError};
use crate::util::unit_f64;

/// Exponential backoff with full jitter for retryable errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts per call, including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// Growth of the ceiling per attempt.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1-based): a uniform draw in
    /// `[0, min(max, initial * multiplier^(retry-1))]` ("full jitter"), from
    /// `unit` in `[0, 1)`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let ceiling = self
            .initial_backoff
            .as_secs_f64()
            .mul_add(exp, 0.0)
            .min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64((ceiling * unit).max(0.0))
    }
}

/// The pacing of a loop that retries one operation until it works (source
/// reads, checkpoint commits): jittered exponential backoff with a floor of
/// half the initial backoff, so a dependency that fails at once is called
/// at most `2 / initial_backoff` times a second, and a clock of how long it
/// has been failing, so the caller can give up.
#[derive(Debug)]
pub(crate) struct Backoff {
    seed: u64,
    key: u64,
    failures: u32,
    failing_since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(seed: u64, key: u64) -> Self {
        Backoff {
            seed,
            key,
            failures: 0,
            failing_since: None,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub(crate) fn fail(&mut self, policy: &RetryPolicy) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.failing_since.get_or_insert_with(Instant::now);
        let unit = unit_f64(self.seed, self.key, u64::from(self.failures));
        policy
            .backoff(self.failures.min(32), unit)
            .max(policy.initial_backoff / 2)
            .max(Duration::from_millis(1))
    }

    /// A success: the next failure starts over.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
        self.failing_since = None;
    }

    /// How long the operation has failed without a success in between.
    pub(crate) fn failing_for(&self) -> Duration {
        self.failing_since.map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// The errors the pipeline retries, seen uniformly.
pub(crate) trait CallError: fmt::Display {
    fn class(&self) -> ErrorClass;
    fn is_throttling(&self) -> bool;
    fn timeout(after: Duration) -> Self;
    fn kind(&self) -> &'static str;
    /// The backend's hint of how long to wait (HTTP `Retry-After`).
    fn retry_after(&self) -> Option<Duration>;
}

macro_rules! call_error {
    ($t:ty) => {
        impl CallError for $t {
            fn class(&self) -> ErrorClass {
                <$t>::class(self)
            }
            fn is_throttling(&self) -> bool {
                <$t>::is_throttling(self)
            }
            fn timeout(after: Duration) -> Self {
                <$t>::Timeout(after)
            }
            fn kind(&self) -> &'static str {
                <$t>::kind(self)
            }
            fn retry_after(&self) -> Option<Duration> {
                <$t>::retry_after(self)
            }
        }
    };
}
call_error!(ClassifyError);
call_error!(RouteError);
call_error!(LabelError);
call_error!(DeadLetterError);

/// Counts of retries made while processing one record.
#[derive(Default, Debug)]
pub(crate) struct Tries {
    pub(crate) retries: u32,
    pub(crate) throttled: u32,
}

/// When a [`LazyTimeout`] fires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// At a fixed instant.
    At(Instant),
    /// This long after the inner future first fails to finish, which is
    /// when it started waiting: each call gets its whole budget.
    After(Duration),
}

pin_project_lite::pin_project! {
    /// Like `tokio::time::timeout`, but the timer is only made (boxed)
    /// when the inner future does not finish on its first poll: fast calls
    /// pay for no timer and carry none in their state.
    pub(crate) struct LazyTimeout<F> {
        #[pin]
        inner: F,
        deadline: Deadline,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for LazyTimeout<F> {
    type Output = Result<F::Output, ()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        if let Poll::Ready(v) = me.inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let deadline = *me.deadline;
        let sleep = me.sleep.get_or_insert_with(|| {
            let at = match deadline {
                Deadline::At(at) => at,
                Deadline::After(budget) => Instant::now() + budget,
            };
            Box::pin(tokio::time::sleep_until(at))
        });
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Bounds `inner` by `deadline`, making a timer only if it has to wait.
pub(crate) fn lazy_timeout<F: Future>(deadline: Deadline, inner: F) -> LazyTimeout<F> {
    LazyTimeout {
        inner,
        deadline,
        sleep: None,
    }
}

/// Calls `call` until it succeeds, fails permanently, or runs out of
/// attempts, with jittered backoff between attempts. Every attempt gets a
/// whole `call_timeout`. Returns the result and the attempts made.
pub(crate) async fn with_retries<O, E, F, Fut>(
    policy: &RetryPolicy,
    call_timeout: Duration,
    seed: u64,
    key: u64,
    tries: &mut Tries,
    mut call: F,
) -> (Result<O, E>, u32)
where
    E: CallError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    // The first attempt runs inline; retries are rare and carry a timer and
    // an error, so they run out of line and cost nothing until needed.
    let first = match lazy_timeout(Deadline::After(call_timeout), call()).await {
        Ok(r) => r,
        Err(()) => Err(E::timeout(call_timeout)),
    };
    match first {
        Ok(v) => (Ok(v), 1),
        Err(e) if e.class() == ErrorClass::Retryable && policy.max_attempts > 1 => {
            Box::pin(retry_loop(policy, call_timeout, seed, key, tries, call, e)).await
        }
        Err(e) => (Err(e), 1),
    }
}

async fn retry_loop<O, E, F, Fut>(
    policy: &RetryPolicy,
    call_timeout: Duration,
    seed: u64,
    key: u64,
    tries: &mut Tries,
    mut call: F,
    first_error: E,
) -> (Result<O, E>, u32)
where
    E: CallError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<O, E>>,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 1u32;
    let mut error = first_error;
    loop {
        // `error` is retryable and `attempt < max` here.
        tries.retries += 1;
        if error.is_throttling() {
            tries.throttled += 1;
        }
        // The kind only: a backend's message may quote the item.
        tracing::debug!(attempt, kind = error.kind(), "retrying");
        let unit = unit_f64(seed, key, u64::from(attempt));
        // A backend's Retry-After is a floor: retrying sooner only earns
        // another 429. The component caps the hint it passes on.
        let backoff = policy.backoff(attempt, unit);
        let wait = error
            .retry_after()
            .map_or(backoff, |hint| backoff.max(hint));
        tokio::time::sleep(wait).await;
        attempt += 1;
        let result = match tokio::time::timeout(call_timeout, call()).await {
            Ok(r) => r,
            Err(_) => Err(E::timeout(call_timeout)),
        };
        match result {
            Ok(v) => return (Ok(v), attempt),
            Err(e) if e.class() == ErrorClass::Retryable && attempt < max => error = e,
            Err(e) => return (Err(e), attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_secs_f64(0.1 * 0.999_999)
        );
        assert!(p.backoff(3, 0.5) <= Duration::from_millis(200));
        assert!(p.backoff(30, 0.999) <= Duration::from_secs(10));
        assert_eq!(p.backoff(4, 0.0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_backoff_has_a_floor_and_a_clock() {
        let p = RetryPolicy::default();
        let mut b = Backoff::new(1, 2);
        for _ in 0..50 {
            let wait = b.fail(&p);
            assert!(
                wait >= p.initial_backoff / 2 && wait <= p.max_backoff,
                "{wait:?}"
            );
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.failing_for(), Duration::from_secs(3));
        b.reset();
        assert_eq!(b.failing_for(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_hint_is_a_floor_for_the_backoff() {
        // The default backoff before the first retry is at most 100 ms; the
        // backend asked for 20 s: the retry must wait for it.
        let p = RetryPolicy::default();
        let mut tries = Tries::default();
        let t0 = Instant::now();
        let mut calls = Vec::new();
        let (result, attempts) =
            with_retries(&p, Duration::from_secs(30), 1, 2, &mut tries, || {
                calls.push(t0.elapsed());
                let first = calls.len() == 1;
                async move {
                    if first {
                        Err(RouteError::throttled("429").with_retry_after(Duration::from_secs(20)))
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert!(result.is_ok());
        assert_eq!(attempts, 2);
        assert_eq!(tries.throttled, 1);
        assert!(
            calls[1] >= Duration::from_secs(20),
            "retried {:?} after a Retry-After of 20 s",
            calls[1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_gets_its_whole_timeout_from_when_it_starts() {
        // A call that starts late still gets the whole budget.
        tokio::time::advance(Duration::from_secs(7)).await;
        let started = Instant::now();
        let r = lazy_timeout(
            Deadline::After(Duration::from_secs(10)),
            tokio::time::sleep(Duration::from_secs(9)),
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(started.elapsed(), Duration::from_secs(9));
    }
}
