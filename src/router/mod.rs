//! Routing: the [`Router`] trait, its erased form [`BoxRouter`], the
//! combinators in [`combinators`], and notification hygiene: [`Dedup`]
//! (never the same key twice within a window, durably) and [`Digest`] (at
//! most N per route per window, the rest folded into one message).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::{BoxFuture, Label, Prediction};
use crate::error::RouteError;
use crate::record::Record;

pub mod combinators;
pub mod dedup;
pub mod digest;

pub use dedup::{Dedup, DedupKey, DedupStore, FileDedupStore, MemoryDedupStore};
pub use digest::{Digest, DigestBatch, DigestEntry};

/// One classified item on its way to a route.
#[derive(Debug)]
pub struct Delivery<'a, T> {
    /// The decoded item.
    pub item: &'a T,
    /// The record it came from (id, shard, sequence, original bytes).
    pub record: &'a Record,
    /// What the classifier said.
    pub prediction: &'a Prediction,
    /// The route the policy chose.
    pub route: &'a Label,
}

impl<T> Clone for Delivery<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Delivery<'_, T> {}

/// Proof that a router accepted an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The route that took it.
    pub route: Label,
    /// The backend's id for the delivery (an SNS `MessageId`, a ticket
    /// number), if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// True when a filter chose not to deliver; the item still counts as
    /// handled.
    #[serde(default)]
    pub skipped: bool,
}

impl Receipt {
    /// A receipt for `route` with no backend id.
    pub fn new(route: impl Into<Label>) -> Self {
        Receipt {
            route: route.into(),
            message_id: None,
            skipped: false,
        }
    }

    /// Adds the backend's id.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
}

/// Delivers classified items.
///
/// Implement it with a plain `async fn`; errors say whether the pipeline
/// should retry ([`RouteError::is_retryable`]):
///
/// ```
/// use streamsift::{Delivery, Receipt, RouteError, Router};
/// struct Stdout;
/// impl Router<String> for Stdout {
///     async fn route(&self, d: &Delivery<'_, String>) -> Result<Receipt, RouteError> {
///         println!("[{}] {}", d.route, d.item);
///         Ok(Receipt::new(d.route.clone()))
///     }
/// }
/// ```
///
/// Any `Fn(&Delivery<T>) -> impl Future<Output = Result<Receipt, RouteError>>`
/// is a router too; the future may not borrow the delivery, so copy out what
/// it needs first. Routers of different types combine through [`BoxRouter`].
///
/// # Routes a router handles
///
/// [`handles_route`](Router::handles_route) lets the pipeline check, before
/// the first record, that review items have somewhere to go (the route
/// [`REVIEW_ROUTE`](crate::REVIEW_ROUTE) when no labeler is set). The
/// default answer is `None`, "unknown", which is all a closure can say;
/// [`ByLabel`](crate::ByLabel) knows its routes, and
/// [`Pipeline::review_via_router`](crate::Pipeline::review_via_router)
/// vouches for a router that cannot say.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Router of `{T}`",
    label = "not a router of `{T}`",
    note = "set the router with `.route(..)`: a type implementing `streamsift::Router<{T}>`, or a closure `|d: &Delivery<'_, {T}>| {{ let route = d.route.clone(); async move {{ Ok::<_, RouteError>(Receipt::new(route)) }} }}`",
    note = "`()` means `.route(..)` was not called; a type that routes another item type means `.decode(..)`/`.json()` changed the item type"
)]
pub trait Router<T: Sync>: Send + Sync {
    /// Delivers one item.
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send;

    /// Whether this router delivers items on `route`: `Some(true)` yes,
    /// `Some(false)` no (they would fail), `None` unknown (the default).
    fn handles_route(&self, route: &Label) -> Option<bool> {
        let _ = route;
        None
    }

    /// The longest a [`route`](Router::route) call waits *by design*
    /// before it delivers: a [`Digest`]'s window, in
    /// which folded records wait for their digest. The pipeline checks at
    /// start-up that `call_timeout` and `record_timeout` exceed it (a
    /// shorter timeout would cut every such wait and dead-letter the
    /// records as timeouts). `None`, the default: no such wait.
    /// Combinators answer for what they wrap.
    fn max_hold(&self) -> Option<Duration> {
        None
    }
}

impl<T: Sync, R: Router<T> + ?Sized> Router<T> for Arc<R> {
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        (**self).route(delivery)
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        (**self).handles_route(route)
    }

    fn max_hold(&self) -> Option<Duration> {
        (**self).max_hold()
    }
}

impl<T, F, Fut> Router<T> for F
where
    T: Sync,
    F: Fn(&Delivery<'_, T>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Receipt, RouteError>> + Send,
{
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        self(delivery)
    }
}

/// The object-safe form of [`Router`], with a blanket impl for every router.
pub trait DynRouter<T: Sync>: Send + Sync {
    /// Delivers one item.
    fn route_dyn<'a>(
        &'a self,
        delivery: &'a Delivery<'a, T>,
    ) -> BoxFuture<'a, Result<Receipt, RouteError>>;

    /// [`Router::handles_route`].
    fn handles_route_dyn(&self, route: &Label) -> Option<bool>;

    /// [`Router::max_hold`].
    fn max_hold_dyn(&self) -> Option<Duration>;
}

impl<T: Sync, R: Router<T>> DynRouter<T> for R {
    fn route_dyn<'a>(
        &'a self,
        delivery: &'a Delivery<'a, T>,
    ) -> BoxFuture<'a, Result<Receipt, RouteError>> {
        Box::pin(self.route(delivery))
    }

    fn handles_route_dyn(&self, route: &Label) -> Option<bool> {
        self.handles_route(route)
    }

    fn max_hold_dyn(&self) -> Option<Duration> {
        self.max_hold()
    }
}

/// A type-erased, cheaply cloneable router, so routers of different types
/// can be chosen and combined at run time.
pub struct BoxRouter<T>(Arc<dyn DynRouter<T>>);

impl<T: Sync + 'static> BoxRouter<T> {
    /// Erases a router's type.
    pub fn new(router: impl Router<T> + 'static) -> Self {
        BoxRouter(Arc::new(router))
    }
}

impl<T> Clone for BoxRouter<T> {
    fn clone(&self) -> Self {
        BoxRouter(Arc::clone(&self.0))
    }
}

impl<T> fmt::Debug for BoxRouter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxRouter")
    }
}

impl<T: Sync> Router<T> for BoxRouter<T> {
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        let d = *delivery;
        async move { self.0.route_dyn(&d).await }
    }

    fn handles_route(&self, route: &Label) -> Option<bool> {
        self.0.handles_route_dyn(route)
    }

    fn max_hold(&self) -> Option<Duration> {
        self.0.max_hold_dyn()
    }
}
