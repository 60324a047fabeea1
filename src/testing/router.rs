//! The [`Router`] conformance suite.
//!
//! # Rules
//!
//! A conforming router keeps these rules; the suite names the one broken.
//!
//! 1. **`delivery-accepted`**: every delivery of [`conformance`]'s cases
//!    succeeds (give it cases your router can deliver).
//! 2. **`receipt-names-route`**: a receipt that is not
//!    [`skipped`](crate::Receipt::skipped) names the delivery's route, so
//!    the run report counts it under the right route.
//! 3. **`concurrent-deliveries`**: deliveries may run concurrently (the
//!    pipeline has up to `max_in_flight` in flight); each still gets its
//!    own answer.
//! 4. **`redelivery-accepted`**: delivering a record again is not an error,
//!    and skipped stays skipped (a delivered record may be skipped the
//!    second time, by a router that dedups). Delivery is at-least-once: after a crash,
//!    or when an answer is lost and the pipeline retries, the same record
//!    comes again. A router that dedups must still answer `Ok`.
//! 5. **`error-class`** (checked by [`expect_errors`]): a delivery that
//!    cannot succeed fails with the class the caller expects: `Permanent`
//!    for what retrying cannot fix (a missing topic, a refused permission,
//!    an item too big), `Retryable` for what may pass later (throttling, a
//!    5xx, a timeout). The pipeline retries `Retryable` failures and
//!    dead-letters `Permanent` ones at once: a wrong class either wastes the
//!    retry budget or loses a delivery that would have passed.
//!
//! The suite makes one attempt per case and does not retry: give
//! [`conformance`] cases your router can deliver, and put the cases that
//! fail (for good, or for now) in [`expect_errors`].

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::join_all;

use super::ensure;
use crate::classify::{Label, Prediction};
use crate::error::ErrorClass;
use crate::record::{Record, Sequence, ShardId};
use crate::router::{Delivery, Receipt, Router};

const SUITE: &str = "router";

/// One delivery's parts, owned, for [`conformance`] and [`expect_errors`].
#[derive(Clone, Debug)]
pub struct Case<T> {
    /// The decoded item.
    pub item: T,
    /// The record it came from.
    pub record: Record,
    /// What the classifier said.
    pub prediction: Prediction,
    /// The route to deliver to.
    pub route: Label,
}

static NEXT_CASE: AtomicU64 = AtomicU64::new(0);

impl<T> Case<T> {
    /// A case for `item` on `route`, with a record of its own (shard
    /// `conformance`, a sequence number unique in the process, an empty
    /// payload) and a confident binary prediction (`actionable`, 0.9).
    ///
    /// ```
    /// use streamsift::testing::router::Case;
    /// let a = Case::new("the api is down".to_string(), "oncall");
    /// let b = Case::new("again".to_string(), "oncall");
    /// assert_eq!(a.route.as_str(), "oncall");
    /// assert_ne!(a.record.id, b.record.id);
    /// ```
    pub fn new(item: T, route: impl Into<Label>) -> Self {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        Case {
            item,
            record: Record::new(
                ShardId::new("conformance"),
                Sequence::from_offset(n),
                format!("pk-{n}"),
                bytes::Bytes::new(),
            ),
            prediction: Prediction::binary("actionable", "noise", 0.9),
            route: route.into(),
        }
    }

    /// Replaces the record (to give the router the payload or id it reads).
    pub fn record(mut self, record: Record) -> Self {
        self.record = record;
        self
    }

    /// Replaces the prediction.
    pub fn prediction(mut self, prediction: Prediction) -> Self {
        self.prediction = prediction;
        self
    }

    fn delivery(&self) -> Delivery<'_, T> {
        Delivery {
            item: &self.item,
            record: &self.record,
            prediction: &self.prediction,
            route: &self.route,
        }
    }
}

/// Runs rules 1 to 4 on `router` with `cases` (at least one): every case
/// delivered concurrently, then the first one again. Returns the receipts
/// of the concurrent round, in input order, for checks of your own.
///
/// # Panics
/// At the first broken rule, naming it (see the [module docs](self)).
pub async fn conformance<T, R>(router: &R, cases: &[Case<T>]) -> Vec<Receipt>
where
    T: Sync,
    R: Router<T>,
{
    assert!(
        !cases.is_empty(),
        "the router suite needs at least one case"
    );
    let deliveries: Vec<Delivery<'_, T>> = cases.iter().map(Case::delivery).collect();
    let answers = join_all(deliveries.iter().map(|d| router.route(d))).await;
    let mut receipts = Vec::with_capacity(cases.len());
    for (answer, case) in answers.into_iter().zip(cases) {
        match answer {
            Ok(receipt) => receipts.push(receipt),
            Err(e) => super::broken(
                SUITE,
                "delivery-accepted",
                format_args!(
                    "delivering record {} to route {:?} (one of {} concurrent deliveries) \
                     failed: {e}",
                    case.record.id,
                    case.route.as_str(),
                    cases.len()
                ),
            ),
        }
    }
    for (receipt, case) in receipts.iter().zip(cases) {
        ensure!(
            SUITE,
            "receipt-names-route",
            receipt.skipped || receipt.route == case.route,
            "record {} was delivered to route {:?} but its receipt names {:?}",
            case.record.id,
            case.route.as_str(),
            receipt.route.as_str()
        );
    }
    let first = &cases[0];
    let again = match router.route(&deliveries[0]).await {
        Ok(receipt) => receipt,
        Err(e) => super::broken(
            SUITE,
            "redelivery-accepted",
            format_args!(
                "delivering record {} again (at-least-once redelivery) failed: {e}",
                first.record.id
            ),
        ),
    };
    ensure!(
        SUITE,
        "redelivery-accepted",
        // Skipped stays skipped; a delivered record may be skipped when it
        // comes again (a router that dedups, such as `Dedup`).
        again.skipped || !receipts[0].skipped,
        "record {} was {} the first time and {} when delivered again",
        first.record.id,
        if receipts[0].skipped {
            "skipped"
        } else {
            "delivered"
        },
        if again.skipped {
            "skipped"
        } else {
            "delivered"
        }
    );
    ensure!(
        SUITE,
        "receipt-names-route",
        again.skipped || again.route == first.route,
        "record {} was delivered again to route {:?} but its receipt names {:?}",
        first.record.id,
        first.route.as_str(),
        again.route.as_str()
    );
    receipts
}

/// Runs rule 5: each case must fail, with the class paired with it.
///
/// ```
/// use streamsift::testing::router::{self, Case};
/// use streamsift::{Delivery, ErrorClass, Receipt, RouteError};
///
/// // Knows one route; anything else cannot succeed however often it is tried.
/// let router = |d: &Delivery<'_, String>| {
///     let known = d.route.as_str() == "oncall";
///     let route = d.route.clone();
///     async move {
///         if known {
///             Ok(Receipt::new(route))
///         } else {
///             Err(RouteError::permanent(format!("no route {route}")))
///         }
///     }
/// };
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// router::expect_errors(&router, &[(Case::new("x".to_string(), "nowhere"), ErrorClass::Permanent)])
///     .await;
/// # });
/// ```
///
/// # Panics
/// When a case succeeds, or fails with the other class (rule
/// `error-class`).
pub async fn expect_errors<T, R>(router: &R, cases: &[(Case<T>, ErrorClass)])
where
    T: Sync,
    R: Router<T>,
{
    for (case, expected) in cases {
        match router.route(&case.delivery()).await {
            Ok(receipt) => super::broken(
                SUITE,
                "error-class",
                format_args!(
                    "record {} on route {:?} was expected to fail ({expected}) but was \
                     accepted (receipt for {:?})",
                    case.record.id,
                    case.route.as_str(),
                    receipt.route.as_str()
                ),
            ),
            Err(e) => ensure!(
                SUITE,
                "error-class",
                e.class() == *expected,
                "record {} on route {:?} failed as {} ({e}), expected {expected}",
                case.record.id,
                case.route.as_str(),
                e.class()
            ),
        }
    }
}
