//! Router combinators: build one [`Router`] out of several.
//!
//! - [`ByLabel`] picks a router by the route the policy chose.
//! - [`FanOut`] delivers to several routers at once.
//! - [`Filter`] skips items a predicate rejects.
//! - [`Fallback`] tries a second router when the first fails.
//! - [`DeadLetterRouter`] sends items to a [`DeadLetterSink`] on purpose.
//!
//! They nest, and each is itself a router:
//!
//! ```
//! use streamsift::router::combinators::{ByLabel, DeadLetterRouter, Fallback};
//! use streamsift::{BoxRouter, Delivery, MemoryDeadLetter, Receipt, RouteError};
//! let page = |d: &Delivery<'_, String>| {
//!     let route = d.route.clone();
//!     async move { Ok::<_, RouteError>(Receipt::new(route).with_message_id("page-1")) }
//! };
//! let dead = MemoryDeadLetter::new();
//! let router = ByLabel::new()
//!     .on("outage", Fallback::new(page, DeadLetterRouter::new(dead.clone())))
//!     .otherwise(DeadLetterRouter::new(dead));
//! let _boxed: BoxRouter<String> = BoxRouter::new(router);
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use futures::future::join_all;

use super::{BoxRouter, Delivery, Receipt, Router};
use crate::classify::Label;
use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::error::{DeadLetterError, ErrorClass, RouteError};

/// Erases a router's type, without wrapping a [`BoxRouter`] in a second one
/// (which would cost a second allocation on every delivery).
fn into_box_router<T, R>(router: R) -> BoxRouter<T>
where
    T: Sync + 'static,
    R: Router<T> + 'static,
{
    let any: Box<dyn Any> = Box::new(router);
    match any.downcast::<BoxRouter<T>>() {
        Ok(boxed) => *boxed,
        Err(any) => match any.downcast::<R>() {
            Ok(router) => BoxRouter::new(*router),
            Err(_) => unreachable!("the box holds an R"),
        },
    }
}

/// The class of a combined failure: retryable if any part is.
fn combined_class<'e>(errors: impl IntoIterator<Item = &'e RouteError>) -> ErrorClass {
    if errors.into_iter().any(RouteError::is_retryable) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    }
}

/// Rebuilds `err` with a new message and the given class. It keeps the
/// variant (so throttling stays throttling) and the source when the class
/// allows; otherwise `err` itself becomes the source.
fn rephrase(err: RouteError, class: ErrorClass, message: String) -> RouteError {
    match (err, class) {
        (RouteError::Throttled { source, .. }, ErrorClass::Retryable) => {
            RouteError::Throttled { message, source }
        }
        (RouteError::Unavailable { source, .. }, ErrorClass::Retryable) => {
            RouteError::Unavailable { message, source }
        }
        (RouteError::Permanent { source, .. }, ErrorClass::Permanent) => {
            RouteError::Permanent { message, source }
        }
        (err, ErrorClass::Retryable) => RouteError::unavailable(message).with_source(err),
        (err, ErrorClass::Permanent) => RouteError::permanent(message).with_source(err),
    }
}

/// Picks a router by the route the policy chose ([`Delivery::route`]).
///
/// A route with no router goes to the [`otherwise`](ByLabel::otherwise)
/// router if there is one, and is otherwise a permanent error that names the
/// route and the routes that are known, so the item is dead-lettered rather
/// than retried.
pub struct ByLabel<T> {
    routes: BTreeMap<Label, BoxRouter<T>>,
    otherwise: Option<BoxRouter<T>>,
}

impl<T: Sync + 'static> ByLabel<T> {
    /// A router with no routes yet; add them with [`on`](ByLabel::on).
    ///
    /// ```
    /// use streamsift::router::combinators::ByLabel;
    /// use streamsift::{Delivery, Receipt, RouteError};
    /// let notify = |d: &Delivery<'_, String>| {
    ///     let route = d.route.clone();
    ///     async move { Ok::<_, RouteError>(Receipt::new(route)) }
    /// };
    /// let ignore = |d: &Delivery<'_, String>| {
    ///     let mut receipt = Receipt::new(d.route.clone());
    ///     receipt.skipped = true;
    ///     async move { Ok::<_, RouteError>(receipt) }
    /// };
    /// let router = ByLabel::new()
    ///     .on("problem_report", notify)
    ///     .otherwise(ignore);
    /// ```
    pub fn new() -> Self {
        ByLabel {
            routes: BTreeMap::new(),
            otherwise: None,
        }
    }

    /// Sends items whose route is `name` to `router`. Adding a name twice
    /// replaces the earlier router.
    pub fn on(mut self, name: impl Into<Label>, router: impl Router<T> + 'static) -> Self {
        self.routes.insert(name.into(), into_box_router(router));
        self
    }

    /// Sends items whose route has no router of its own to `router`.
    pub fn otherwise(mut self, router: impl Router<T> + 'static) -> Self {
        self.otherwise = Some(into_box_router(router));
        self
    }
}

impl<T: Sync + 'static> Default for ByLabel<T> {
    fn default() -> Self {
        ByLabel::new()
    }
}

impl<T> Clone for ByLabel<T> {
    fn clone(&self) -> Self {
        ByLabel {
            routes: self.routes.clone(),
            otherwise: self.otherwise.clone(),
        }
    }
}

impl<T> fmt::Debug for ByLabel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByLabel")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("otherwise", &self.otherwise.is_some())
            .finish()
    }
}

impl<T: Sync> Router<T> for ByLabel<T> {
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let router = match self.routes.get(delivery.route) {
            Some(router) => router,
            None => match &self.otherwise {
                Some(router) => router,
                None => {
                    let known = if self.routes.is_empty() {
                        "(none)".to_owned()
                    } else {
                        let names: Vec<&str> = self.routes.keys().map(Label::as_str).collect();
                        names.join(", ")
                    };
                    return Err(RouteError::permanent(format!(
                        "no router for route '{}'; known routes: {known}",
                        delivery.route
                    )));
                }
            },
        };
        router.route(delivery).await
    }

    /// `Some(true)` for a route added with [`on`](ByLabel::on) (if its
    /// router does not say no) or when there is an
    /// [`otherwise`](ByLabel::otherwise) router; `Some(false)` otherwise.
    fn handles_route(&self, route: &Label) -> Option<bool> {
        match self.routes.get(route).or(self.otherwise.as_ref()) {
            Some(router) => Some(router.handles_route(route) != Some(false)),
            None => Some(false),
        }
    }

    /// The longest of its routers'.
    fn max_hold(&self) -> Option<Duration> {
        self.routes
            .values()
            .chain(&self.otherwise)
            .filter_map(Router::max_hold)
            .max()
    }
}

/// Delivers every item to several routers at once.
///
/// The routers run concurrently. When all succeed, the receipt is for the
/// delivery's route; its `message_id` joins the routers' ids with `,` (in
/// the order the routers were added, leaving out those that gave none), and
/// it is `skipped` only if every router skipped. With no routers at all the
/// item is delivered nowhere, and the receipt is `skipped`.
///
/// When any router fails, the whole delivery fails, with a message naming
/// each failed router by its position (`#0` is the first added). It is
/// retryable if any failure is, else permanent.
///
/// **At-least-once:** a retry delivers to *every* router again, including
/// those that succeeded on the earlier attempt, so they may see the item more
/// than once. Routers behind a `FanOut` should tolerate duplicates (for
/// example by keying on [`Record::id`](crate::Record::id)).
pub struct FanOut<T> {
    routers: Vec<BoxRouter<T>>,
}

impl<T: Sync + 'static> FanOut<T> {
    /// A fan-out with no routers yet; add them with [`to`](FanOut::to).
    ///
    /// ```
    /// use streamsift::router::combinators::FanOut;
    /// use streamsift::{Delivery, Receipt, RouteError};
    /// let email = |d: &Delivery<'_, String>| {
    ///     let route = d.route.clone();
    ///     async move { Ok::<_, RouteError>(Receipt::new(route).with_message_id("mail-1")) }
    /// };
    /// let sms = |d: &Delivery<'_, String>| {
    ///     let route = d.route.clone();
    ///     async move { Ok::<_, RouteError>(Receipt::new(route).with_message_id("sms-1")) }
    /// };
    /// let both = FanOut::new().to(email).to(sms);
    /// assert_eq!(both.len(), 2);
    /// ```
    pub fn new() -> Self {
        FanOut {
            routers: Vec::new(),
        }
    }

    /// Adds a router that every item is also delivered to.
    pub fn to(mut self, router: impl Router<T> + 'static) -> Self {
        self.routers.push(into_box_router(router));
        self
    }
}

impl<T> FanOut<T> {
    /// How many routers it delivers to.
    pub fn len(&self) -> usize {
        self.routers.len()
    }

    /// Whether it has no routers.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }
}

impl<T: Sync + 'static> Default for FanOut<T> {
    fn default() -> Self {
        FanOut::new()
    }
}

impl<T> Clone for FanOut<T> {
    fn clone(&self) -> Self {
        FanOut {
            routers: self.routers.clone(),
        }
    }
}

impl<T> fmt::Debug for FanOut<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut")
            .field("routers", &self.routers.len())
            .finish()
    }
}

impl<T: Sync> Router<T> for FanOut<T> {
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let results = join_all(self.routers.iter().map(|r| r.route(delivery))).await;
        let total = results.len();
        let mut receipts = Vec::with_capacity(total);
        let mut failures = Vec::new();
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(receipt) => receipts.push(receipt),
                Err(err) => failures.push((index, err)),
            }
        }

        if failures.is_empty() {
            let ids: Vec<String> = receipts
                .iter()
                .filter_map(|r| r.message_id.clone())
                .collect();
            return Ok(Receipt {
                route: delivery.route.clone(),
                message_id: (!ids.is_empty()).then(|| ids.join(",")),
                skipped: receipts.iter().all(|r| r.skipped),
            });
        }

        let class = combined_class(failures.iter().map(|(_, e)| e));
        let details: Vec<String> = failures.iter().map(|(i, e)| format!("#{i}: {e}")).collect();
        let message = format!(
            "{} of {total} fan-out routers failed for route '{}' ({}); a retry delivers to all \
             {total} again",
            failures.len(),
            delivery.route,
            details.join("; "),
        );
        // Keep the first failure of the deciding class, so its variant
        // (throttling) and source survive.
        let position = failures
            .iter()
            .position(|(_, e)| e.class() == class)
            .unwrap_or(0);
        let (_, first) = failures.swap_remove(position);
        Err(rephrase(first, class, message))
    }

    /// `Some(false)` if any router says no, `Some(true)` if all say yes,
    /// else unknown.
    fn handles_route(&self, route: &Label) -> Option<bool> {
        let answers: Vec<Option<bool>> = self
            .routers
            .iter()
            .map(|r| r.handles_route(route))
            .collect();
        if answers.contains(&Some(false)) {
            Some(false)
        } else if answers.iter().all(|a| *a == Some(true)) {
            Some(true)
        } else {
            None
        }
    }

    /// The longest of its routers' (they run at once).
    fn max_hold(&self) -> Option<Duration> {
        self.routers.iter().filter_map(Router::max_hold).max()
    }
}

/// Delivers only the items a predicate accepts.
///
/// When the predicate returns false, the inner router is not called and the
/// receipt is for the delivery's route with `skipped` set: the item counts as
/// handled.
pub struct Filter<R, P> {
    inner: R,
    predicate: P,
}

impl<R, P> Filter<R, P> {
    /// Delivers to `inner` only when `predicate` returns true.
    ///
    /// ```
    /// use streamsift::router::combinators::Filter;
    /// use streamsift::{Delivery, Receipt, RouteError};
    /// let notify = |d: &Delivery<'_, String>| {
    ///     let route = d.route.clone();
    ///     async move { Ok::<_, RouteError>(Receipt::new(route)) }
    /// };
    /// // Only page when the classifier is confident.
    /// let confident = Filter::new(notify, |d: &Delivery<'_, String>| {
    ///     d.prediction.confidence().is_some_and(|c| c >= 0.9)
    /// });
    /// ```
    pub fn new<T>(inner: R, predicate: P) -> Self
    where
        T: Sync,
        R: Router<T>,
        P: Fn(&Delivery<'_, T>) -> bool + Send + Sync,
    {
        Filter { inner, predicate }
    }

    /// The router items go to when the predicate accepts them.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: fmt::Debug, P> fmt::Debug for Filter<R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<R: Clone, P: Clone> Clone for Filter<R, P> {
    fn clone(&self) -> Self {
        Filter {
            inner: self.inner.clone(),
            predicate: self.predicate.clone(),
        }
    }
}

impl<T, R, P> Router<T> for Filter<R, P>
where
    T: Sync,
    R: Router<T>,
    P: Fn(&Delivery<'_, T>) -> bool + Send + Sync,
{
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        if (self.predicate)(delivery) {
            self.inner.route(delivery).await
        } else {
            Ok(Receipt {
                route: delivery.route.clone(),
                message_id: None,
                skipped: true,
            })
        }
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        self.inner.handles_route(route)
    }

    fn max_hold(&self) -> Option<Duration> {
        self.inner.max_hold()
    }
}

/// Tries a primary router and, when it fails, a secondary one.
///
/// Any failure of the primary, retryable or permanent, sends the item to the
/// secondary, and the secondary's receipt is returned. When both fail, the
/// error is the secondary's, with a message that gives both failures; it is
/// retryable if either failure was (so a retry tries the primary again), and
/// permanent only when both were.
#[derive(Clone, Debug)]
pub struct Fallback<P, S> {
    primary: P,
    secondary: S,
}

impl<P, S> Fallback<P, S> {
    /// Tries `primary`, then `secondary` if it fails.
    ///
    /// ```
    /// use streamsift::router::combinators::Fallback;
    /// use streamsift::{Delivery, Receipt, RouteError};
    /// let sns = |_: &Delivery<'_, String>| async {
    ///     Err::<Receipt, _>(RouteError::unavailable("SNS returned 503"))
    /// };
    /// let email = |d: &Delivery<'_, String>| {
    ///     let route = d.route.clone();
    ///     async move { Ok::<_, RouteError>(Receipt::new(route)) }
    /// };
    /// let router = Fallback::new(sns, email);
    /// ```
    pub fn new(primary: P, secondary: S) -> Self {
        Fallback { primary, secondary }
    }

    /// The router tried first.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The router tried when the primary fails.
    pub fn secondary(&self) -> &S {
        &self.secondary
    }
}

impl<T, P, S> Router<T> for Fallback<P, S>
where
    T: Sync,
    P: Router<T>,
    S: Router<T>,
{
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let primary_err = match self.primary.route(delivery).await {
            Ok(receipt) => return Ok(receipt),
            Err(err) => err,
        };
        tracing::debug!(
            route = %delivery.route,
            record = %delivery.record.id,
            error = %primary_err,
            "primary router failed; trying the fallback"
        );
        let secondary_err = match self.secondary.route(delivery).await {
            Ok(receipt) => return Ok(receipt),
            Err(err) => err,
        };
        let class = combined_class([&primary_err, &secondary_err]);
        let message = format!(
            "primary and fallback routers both failed for route '{}': primary: {primary_err}; \
             fallback: {secondary_err}",
            delivery.route
        );
        Err(rephrase(secondary_err, class, message))
    }

    /// The primary's and the secondary's together (one runs after the other).
    fn max_hold(&self) -> Option<Duration> {
        match (self.primary.max_hold(), self.secondary.max_hold()) {
            (None, None) => None,
            (p, s) => Some(p.unwrap_or_default().saturating_add(s.unwrap_or_default())),
        }
    }
}

/// Sends items to a [`DeadLetterSink`] on purpose, for routes whose items
/// should be kept for later rather than delivered.
///
/// Each item becomes a [`DeadLetter`] with stage [`Stage::Routed`], class
/// [`ErrorClass::Permanent`], kind `routed`, the route, and a reason naming
/// the route and the predicted label. The record keeps its original bytes. A
/// sink failure is a [`RouteError`] that is retryable exactly when the sink's
/// error is.
#[derive(Clone, Debug)]
pub struct DeadLetterRouter<S> {
    sink: S,
}

impl<S: DeadLetterSink> DeadLetterRouter<S> {
    /// A router that stores every item in `sink`.
    ///
    /// ```
    /// use streamsift::MemoryDeadLetter;
    /// use streamsift::router::combinators::DeadLetterRouter;
    /// let sink = MemoryDeadLetter::new();
    /// let router = DeadLetterRouter::new(sink.clone());
    /// assert!(sink.is_empty());
    /// ```
    pub fn new(sink: S) -> Self {
        DeadLetterRouter { sink }
    }

    /// The sink it stores into.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

impl<T, S> Router<T> for DeadLetterRouter<S>
where
    T: Sync,
    S: DeadLetterSink,
{
    async fn route(&self, delivery: &Delivery<'_, T>) -> Result<Receipt, RouteError> {
        let dead_letter = DeadLetter {
            record: delivery.record.clone(),
            stage: Stage::Routed,
            class: ErrorClass::Permanent,
            kind: "routed".to_owned(),
            reason: format!(
                "routed to the dead-letter route '{}' (predicted label '{}')",
                delivery.route, delivery.prediction.label
            ),
            attempts: 1,
            route: Some(delivery.route.to_string()),
            at: SystemTime::now(),
        };
        match self.sink.store(&dead_letter).await {
            Ok(()) => Ok(Receipt::new(delivery.route.clone())),
            Err(err) => {
                let message = format!(
                    "dead-letter route '{}' could not store record {}: {err}",
                    delivery.route, delivery.record.id
                );
                let mapped = match &err {
                    DeadLetterError::Throttled { .. } => RouteError::throttled(message),
                    DeadLetterError::Unavailable { .. } | DeadLetterError::Timeout(_) => {
                        RouteError::unavailable(message)
                    }
                    DeadLetterError::Permanent { .. } => RouteError::permanent(message),
                };
                Err(mapped.with_source(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::classify::Prediction;
    use crate::dead_letter::MemoryDeadLetter;
    use crate::record::{Record, Sequence, ShardId};

    struct Fixture {
        item: String,
        record: Record,
        prediction: Prediction,
        route: Label,
    }

    impl Fixture {
        fn new(route: &'static str) -> Self {
            Fixture {
                item: "the app crashes on login".to_owned(),
                record: Record::new(
                    ShardId::new("s0"),
                    Sequence::from_offset(42),
                    "pk",
                    &b"{\"text\":\"the app crashes on login \xc3\xa9\"}"[..],
                ),
                prediction: Prediction::binary("problem_report", "noise", 0.93),
                route: Label::from_static(route),
            }
        }

        fn delivery(&self) -> Delivery<'_, String> {
            Delivery {
                item: &self.item,
                record: &self.record,
                prediction: &self.prediction,
                route: &self.route,
            }
        }
    }

    /// A router that counts its calls and answers with `id` as message id.
    fn ok_router(
        id: &'static str,
        calls: Arc<AtomicUsize>,
    ) -> impl Router<String> + Clone + 'static {
        move |d: &Delivery<'_, String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let receipt = Receipt::new(d.route.clone()).with_message_id(id);
            async move { Ok::<_, RouteError>(receipt) }
        }
    }

    /// A router that counts its calls and fails with `make()`.
    fn failing_router(
        calls: Arc<AtomicUsize>,
        make: fn() -> RouteError,
    ) -> impl Router<String> + Clone + 'static {
        move |_: &Delivery<'_, String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Err::<Receipt, _>(make()) }
        }
    }

    fn counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    #[test]
    fn combinators_are_send_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<ByLabel<String>>();
        assert_send_sync::<FanOut<String>>();
        assert_send_sync::<DeadLetterRouter<MemoryDeadLetter>>();
        assert_send_sync::<DeadLetterRouter<Arc<dyn DeadLetterSink>>>();
    }

    #[tokio::test]
    async fn by_label_dispatches_on_the_route() {
        let (reports, praise) = (counter(), counter());
        let router = ByLabel::new()
            .on("problem_report", ok_router("r-1", reports.clone()))
            .on("praise", ok_router("p-1", praise.clone()));

        let f = Fixture::new("praise");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("p-1"));
        assert_eq!(receipt.route, "praise");
        assert_eq!(praise.load(Ordering::SeqCst), 1);
        assert_eq!(reports.load(Ordering::SeqCst), 0);

        let f = Fixture::new("problem_report");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("r-1"));
        assert_eq!(reports.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn by_label_unknown_route_is_permanent_and_lists_known_routes() {
        let router = ByLabel::new()
            .on("b", ok_router("b", counter()))
            .on("a", ok_router("a", counter()));
        let f = Fixture::new("x");
        let err = router.route(&f.delivery()).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("no router for route 'x'; known routes: a, b"),
            "{err}"
        );

        let empty = ByLabel::<String>::new();
        let err = empty.route(&f.delivery()).await.unwrap_err();
        assert!(err.to_string().contains("known routes: (none)"), "{err}");
    }

    #[tokio::test]
    async fn by_label_otherwise_takes_unknown_routes_only() {
        let (known, default) = (counter(), counter());
        let router = ByLabel::new()
            .on("a", ok_router("a", known.clone()))
            .otherwise(ok_router("default", default.clone()));
        let f = Fixture::new("unheard_of");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("default"));
        let f = Fixture::new("a");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("a"));
        assert_eq!(known.load(Ordering::SeqCst), 1);
        assert_eq!(default.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn by_label_does_not_double_box_a_box_router() {
        let boxed = BoxRouter::new(ok_router("a", counter()));
        let router = ByLabel::new().on("a", boxed.clone());
        let inner = &router.routes[&Label::from_static("a")];
        assert!(Arc::ptr_eq(&inner.0, &boxed.0));
    }

    #[tokio::test]
    async fn fan_out_delivers_to_all_and_joins_message_ids() {
        let (a, b) = (counter(), counter());
        let skipping = |d: &Delivery<'_, String>| {
            let mut receipt = Receipt::new(d.route.clone());
            receipt.skipped = true;
            async move { Ok::<_, RouteError>(receipt) }
        };
        let router = FanOut::new()
            .to(ok_router("a-1", a.clone()))
            .to(skipping)
            .to(ok_router("b-1", b.clone()));
        let f = Fixture::new("problem_report");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.route, "problem_report");
        assert_eq!(receipt.message_id.as_deref(), Some("a-1,b-1"));
        assert!(!receipt.skipped, "two of three delivered");
        assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));

        let all_skip = FanOut::new().to(skipping).to(skipping);
        assert!(all_skip.route(&f.delivery()).await.unwrap().skipped);
        let empty = FanOut::<String>::new();
        assert!(empty.is_empty());
        let receipt = empty.route(&f.delivery()).await.unwrap();
        assert!(receipt.skipped);
        assert_eq!(receipt.message_id, None);
    }

    #[tokio::test(start_paused = true)]
    async fn fan_out_runs_routers_concurrently() {
        // Each router waits for the other; run one after the other they
        // would never finish.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let waiter = move |d: &Delivery<'_, String>| {
            let (barrier, route) = (barrier.clone(), d.route.clone());
            async move {
                barrier.wait().await;
                Ok::<_, RouteError>(Receipt::new(route))
            }
        };
        let router = FanOut::new().to(waiter.clone()).to(waiter);
        let f = Fixture::new("r");
        let result =
            tokio::time::timeout(Duration::from_secs(5), router.route(&f.delivery())).await;
        assert!(result.expect("routers ran one at a time").is_ok());
    }

    #[tokio::test]
    async fn fan_out_partial_failure_is_retryable_if_any_failure_is() {
        let (ok, bad, flaky) = (counter(), counter(), counter());
        let router = FanOut::new()
            .to(ok_router("ok", ok.clone()))
            .to(failing_router(bad.clone(), || {
                RouteError::permanent("no such topic")
            }))
            .to(failing_router(flaky.clone(), || {
                RouteError::throttled("rate exceeded")
            }));
        let f = Fixture::new("problem_report");
        let err = router.route(&f.delivery()).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.is_throttling(),
            "the throttling failure decides: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("2 of 3 fan-out routers failed"), "{text}");
        assert!(
            text.contains("#1: router failed permanently: no such topic"),
            "{text}"
        );
        assert!(
            text.contains("#2: router throttled: rate exceeded"),
            "{text}"
        );
        assert!(!text.contains("#0"), "{text}");
        // Every router was tried, including the one that succeeded.
        for c in [&ok, &bad, &flaky] {
            assert_eq!(c.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn fan_out_all_permanent_failures_are_permanent() {
        let router = FanOut::new()
            .to(ok_router("ok", counter()))
            .to(failing_router(counter(), || {
                RouteError::permanent("forbidden")
            }));
        let f = Fixture::new("problem_report");
        let err = router.route(&f.delivery()).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("1 of 2 fan-out routers failed"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("#1: router failed permanently: forbidden"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn filter_skips_without_calling_inner() {
        let calls = counter();
        let router = Filter::new(
            ok_router("sent", calls.clone()),
            |d: &Delivery<'_, String>| d.prediction.positive_score.is_some_and(|s| s >= 0.9),
        );

        let f = Fixture::new("problem_report");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert!(!receipt.skipped);
        assert_eq!(receipt.message_id.as_deref(), Some("sent"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let mut f = Fixture::new("problem_report");
        f.prediction = Prediction::binary("problem_report", "noise", 0.6);
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(
            receipt,
            Receipt {
                route: Label::from_static("problem_report"),
                message_id: None,
                skipped: true,
            }
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "inner not called");
    }

    #[tokio::test]
    async fn fallback_uses_secondary_only_when_primary_fails() {
        let (primary, secondary) = (counter(), counter());
        let router = Fallback::new(
            ok_router("primary", primary.clone()),
            ok_router("secondary", secondary.clone()),
        );
        let f = Fixture::new("r");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt.message_id.as_deref(), Some("primary"));
        assert_eq!(secondary.load(Ordering::SeqCst), 0);

        for make in [
            (|| RouteError::permanent("bad topic")) as fn() -> RouteError,
            || RouteError::unavailable("503"),
        ] {
            let router = Fallback::new(
                failing_router(primary.clone(), make),
                ok_router("secondary", secondary.clone()),
            );
            let receipt = router.route(&f.delivery()).await.unwrap();
            assert_eq!(receipt.message_id.as_deref(), Some("secondary"));
        }
        assert_eq!(secondary.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn fallback_both_failing_gives_both_messages_and_combined_class() {
        let f = Fixture::new("r");
        type MakeErr = fn() -> RouteError;
        let cases: [(MakeErr, MakeErr, bool); 4] = [
            (
                || RouteError::permanent("p1"),
                || RouteError::permanent("s1"),
                false,
            ),
            (
                || RouteError::unavailable("p1"),
                || RouteError::permanent("s1"),
                true,
            ),
            (
                || RouteError::permanent("p1"),
                || RouteError::unavailable("s1"),
                true,
            ),
            (
                || RouteError::permanent("p1"),
                || RouteError::Timeout(Duration::from_secs(3)),
                true,
            ),
        ];
        for (primary, secondary, retryable) in cases {
            let router = Fallback::new(
                failing_router(counter(), primary),
                failing_router(counter(), secondary),
            );
            let err = router.route(&f.delivery()).await.unwrap_err();
            assert_eq!(err.is_retryable(), retryable, "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("primary: {}", primary())), "{text}");
            assert!(
                text.contains(&format!("fallback: {}", secondary())),
                "{text}"
            );
        }

        // The secondary's own error kind and source survive.
        let io = || std::io::Error::other("socket closed");
        let router = Fallback::new(
            failing_router(counter(), || RouteError::unavailable("p")),
            move |_: &Delivery<'_, String>| async move {
                Err::<Receipt, _>(RouteError::throttled("slow down").with_source(io()))
            },
        );
        let err = router.route(&f.delivery()).await.unwrap_err();
        assert!(err.is_throttling(), "{err:?}");
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.to_string(), "socket closed");
    }

    #[tokio::test]
    async fn dead_letter_router_stores_the_record_with_its_payload() {
        let sink = MemoryDeadLetter::new();
        let router = DeadLetterRouter::new(sink.clone());
        let f = Fixture::new("quarantine");
        let receipt = router.route(&f.delivery()).await.unwrap();
        assert_eq!(receipt, Receipt::new("quarantine"));

        let entries = sink.entries();
        assert_eq!(entries.len(), 1);
        let dl = &entries[0];
        assert_eq!(dl.record.payload, f.record.payload);
        assert_eq!(dl.record.id, "s0:42");
        assert_eq!(dl.stage, Stage::Routed);
        assert_eq!(dl.class, ErrorClass::Permanent);
        assert_eq!(dl.kind, "routed");
        assert_eq!(dl.route.as_deref(), Some("quarantine"));
        assert!(dl.reason.contains("'quarantine'"), "{}", dl.reason);
        assert!(dl.reason.contains("'problem_report'"), "{}", dl.reason);
    }

    struct BrokenSink(fn() -> DeadLetterError);

    #[async_trait::async_trait]
    impl DeadLetterSink for BrokenSink {
        async fn store(&self, _: &DeadLetter) -> Result<(), DeadLetterError> {
            Err((self.0)())
        }
    }

    #[tokio::test]
    async fn dead_letter_router_keeps_the_sink_error_class() {
        let f = Fixture::new("quarantine");
        let cases: [(fn() -> DeadLetterError, bool); 4] = [
            (|| DeadLetterError::unavailable("disk full"), true),
            (|| DeadLetterError::throttled("slow"), true),
            (|| DeadLetterError::Timeout(Duration::from_secs(1)), true),
            (|| DeadLetterError::permanent("no such bucket"), false),
        ];
        for (make, retryable) in cases {
            let router = DeadLetterRouter::new(BrokenSink(make));
            let err = router.route(&f.delivery()).await.unwrap_err();
            assert_eq!(err.is_retryable(), retryable, "{err}");
            assert_eq!(err.is_throttling(), make().is_throttling(), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("'quarantine'") && text.contains("s0:42"),
                "{text}"
            );
            assert!(text.contains(&make().to_string()), "{text}");
        }
    }

    #[tokio::test]
    async fn combinators_nest_and_box() {
        let sink = MemoryDeadLetter::new();
        let router: BoxRouter<String> = BoxRouter::new(
            ByLabel::new()
                .on(
                    "problem_report",
                    Fallback::new(
                        failing_router(counter(), || RouteError::unavailable("503")),
                        DeadLetterRouter::new(sink.clone()),
                    ),
                )
                .otherwise(Filter::new(
                    DeadLetterRouter::new(sink.clone()),
                    |_: &Delivery<'_, String>| false,
                )),
        );
        let f = Fixture::new("problem_report");
        router.route(&f.delivery()).await.unwrap();
        let f = Fixture::new("noise");
        assert!(router.route(&f.delivery()).await.unwrap().skipped);
        assert_eq!(sink.len(), 1);
    }
}
