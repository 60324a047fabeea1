//! The stages every record goes through, as one value that both drivers
//! own: the streaming [`Pipeline`](crate::Pipeline) run loop and the
//! [`BatchProcessor`](crate::batch::BatchProcessor) (Lambda, KCL).
//!
//! decode → classify → policy → route / review / discard, each call retried
//! by [`with_retries`] with a whole `call_timeout` per attempt, the record
//! bounded by `record_timeout`, a panic in user code caught and turned into
//! a failure of that record alone (kind `panic`), and every failure ending
//! in the dead-letter sink (or, for a batch that asks for it, reported for
//! redelivery).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::builder::Config;
use super::retry::{CallError, Deadline, Tries, lazy_timeout, with_retries};
use crate::classify::{Classifier, Label, Prediction};
use crate::dead_letter::{DeadLetter, DeadLetterSink, Stage};
use crate::decode::{DecodeError, Decoder};
use crate::error::{DeadLetterError, ErrorClass};
use crate::labeler::{LabelTask, Labeler};
use crate::policy::{Action, Policy};
use crate::record::{Record, Sequence};
use crate::router::{Delivery, Router};

/// The route name used for review items when no [`Labeler`] is set: they
/// are delivered to the router on this route instead, so nothing in the
/// review band is dropped. A pipeline whose policy can review
/// ([`Policy::can_review`]) refuses to run unless there is a labeler, the
/// router handles this route ([`Router::handles_route`]), or
/// [`Pipeline::review_via_router`](crate::Pipeline::review_via_router) was
/// called.
pub const REVIEW_ROUTE: Label = Label::from_static("review");

/// What to do with a record whose retryable failure outlasted its retries
/// (throttling that did not stop, a backend down, a call or record
/// timeout). Permanent failures (undecodable, too large, rejected for good,
/// a panic in user code) are always dead-lettered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnExhausted {
    /// Dead-letter it and move on, as [`Pipeline::run`](crate::Pipeline::run)
    /// does. The KCL processor uses this: the daemon does not redeliver by itself.
    #[default]
    DeadLetter,
    /// Report it as
    /// [`RecordOutcome::FailedRetryable`](crate::batch::RecordOutcome::FailedRetryable)
    /// so the engine delivers it again later. The Lambda handler uses this:
    /// Lambda retries from the first failed record, up to the event source
    /// mapping's `MaximumRetryAttempts`.
    Report,
}

/// How one record ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Routed(Label),
    /// A router accepted it but chose not to deliver (`Receipt::skipped`).
    Skipped(Label),
    Discarded,
    Review,
    DeadLettered(Stage),
    /// Not done: the dead-letter sink failed; `stage` is where the record
    /// failed.
    SinkFailed {
        stage: Stage,
        error: DeadLetterError,
    },
    /// Not done: retries ran out and the driver asked for it to be
    /// reported ([`OnExhausted::Report`]).
    Exhausted {
        stage: Stage,
        reason: String,
    },
}

/// A finished record, handed back to its driver.
pub(crate) struct Done {
    /// The driver's tags, handed back as they came.
    pub(crate) slot: usize,
    pub(crate) index: u64,
    pub(crate) sequence: Sequence,
    pub(crate) arrival: SystemTime,
    /// Set on the failure paths only (kept off the hot path).
    pub(crate) record_id: Option<String>,
    /// Whether the record got past decoding.
    pub(crate) decoded: bool,
    pub(crate) classified: Option<Label>,
    pub(crate) outcome: Outcome,
    pub(crate) tries: Tries,
    pub(crate) panicked: bool,
}

/// Why a record failed, before it is dead-lettered.
pub(crate) struct Failure {
    pub(crate) stage: Stage,
    pub(crate) class: ErrorClass,
    pub(crate) kind: &'static str,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
    pub(crate) route: Option<Label>,
}

impl Failure {
    fn of<E: CallError>(stage: Stage, e: &E, attempts: u32, route: Option<Label>) -> Failure {
        let class = e.class();
        let reason = if class == ErrorClass::Retryable {
            format!("gave up after {attempts} attempts: {e}")
        } else {
            e.to_string()
        };
        Failure {
            stage,
            class,
            kind: e.kind(),
            reason,
            attempts,
            route,
        }
    }
}

/// Where the stage machine was, so a record timeout or a panic can say.
const AT_DECODE: u8 = 0;
const AT_CLASSIFY: u8 = 1;
const AT_ROUTE: u8 = 2;
const AT_REVIEW: u8 = 3;

fn stage_of(code: u8) -> Stage {
    match code {
        AT_DECODE => Stage::Decode,
        AT_CLASSIFY => Stage::Classify,
        AT_ROUTE => Stage::Route,
        _ => Stage::Review,
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a non-string panic payload)"
    }
}

/// The stages, their rules, and where failures go.
pub(crate) struct Stages<D, C, R, T> {
    pub(crate) decoder: D,
    pub(crate) classifier: C,
    pub(crate) router: R,
    pub(crate) policy: Policy,
    pub(crate) labeler: Option<Box<dyn Labeler<T>>>,
    pub(crate) dead_letter: Arc<dyn DeadLetterSink>,
    pub(crate) config: Config,
}

impl<D, C, R, T> Stages<D, C, R, T>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// Processes one record to its end: an outcome, a stored dead letter,
    /// or (under [`OnExhausted::Report`], or when the sink fails) a record
    /// left not done. `slot` and `index` are the driver's and come back in
    /// [`Done`]; `key` seeds the retry jitter.
    ///
    /// Not an `async fn`: that would copy `record` into its state twice
    /// (the argument and its local), growing every record's future.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn process(
        &self,
        record: Record,
        slot: usize,
        index: u64,
        key: u64,
        dispatched: Instant,
        on_exhausted: OnExhausted,
    ) -> impl Future<Output = Done> + Send + '_ {
        async move {
            let at = AtomicU8::new(AT_DECODE);
            let mut tries = Tries::default();
            let mut classified = None;
            let record_deadline = dispatched + self.config.record_timeout;
            // One unwind guard per record: a panic anywhere in user code
            // fails this record alone. The stage it was in says where.
            let guarded =
                AssertUnwindSafe(self.stages(&record, key, &at, &mut tries, &mut classified))
                    .catch_unwind();
            let result = lazy_timeout(Deadline::At(record_deadline), guarded).await;
            let mut panicked = false;
            let fail = match result {
                Ok(Ok(Ok(outcome))) => {
                    return Done {
                        slot,
                        index,
                        arrival: record.arrival,
                        sequence: record.sequence,
                        record_id: None,
                        decoded: true,
                        classified,
                        outcome,
                        tries,
                        panicked,
                    };
                }
                Ok(Ok(Err(fail))) => fail,
                Ok(Err(payload)) => {
                    panicked = true;
                    let stage = stage_of(at.load(Ordering::Relaxed));
                    Failure {
                        stage,
                        class: ErrorClass::Permanent,
                        kind: "panic",
                        reason: format!(
                            "user code panicked at the {} stage: {}",
                            stage.as_str(),
                            panic_message(&*payload)
                        ),
                        attempts: tries.retries + 1,
                        route: None,
                    }
                }
                Err(()) => Failure {
                    stage: stage_of(at.load(Ordering::Relaxed)),
                    class: ErrorClass::Retryable,
                    kind: "timeout",
                    reason: format!(
                        "record not done within the record timeout of {:?}",
                        self.config.record_timeout
                    ),
                    attempts: tries.retries + 1,
                    route: None,
                },
            };
            // The failure path is cold: boxed, so its state does not bloat
            // the future every record carries.
            Box::pin(self.fail(
                record,
                fail,
                slot,
                index,
                key,
                tries,
                classified,
                panicked,
                on_exhausted,
            ))
            .await
        }
    }

    /// Decode → classify → policy → route (or review). Returns the
    /// outcome, or the failure to dead-letter.
    async fn stages(
        &self,
        record: &Record,
        key: u64,
        at: &AtomicU8,
        tries: &mut Tries,
        classified: &mut Option<Label>,
    ) -> Result<Outcome, Failure> {
        let config = &self.config;
        let decode_failure = |e: DecodeError| Failure {
            stage: Stage::Decode,
            class: ErrorClass::Permanent,
            kind: e.kind(),
            reason: e.to_string(),
            attempts: 1,
            route: None,
        };
        if record.payload.len() > config.max_record_bytes {
            return Err(decode_failure(DecodeError::TooLarge {
                size: record.payload.len(),
                limit: config.max_record_bytes,
            }));
        }
        if let Some(defect) = &record.defect {
            return Err(decode_failure(DecodeError::Corrupt(defect.to_string())));
        }
        let item = self.decoder.decode(record).map_err(decode_failure)?;

        at.store(AT_CLASSIFY, Ordering::Relaxed);
        let (prediction, attempts) = with_retries(
            &config.retry,
            config.call_timeout,
            config.seed,
            key,
            tries,
            || self.classifier.classify(&item),
        )
        .await;
        let prediction: Prediction =
            prediction.map_err(|e| Failure::of(Stage::Classify, &e, attempts, None))?;
        *classified = Some(prediction.label.clone());

        let (route, stage, code) = match self.policy.decide(&prediction) {
            Action::Discard => return Ok(Outcome::Discarded),
            Action::Notify(route) => (route, Stage::Route, AT_ROUTE),
            Action::Review => {
                at.store(AT_REVIEW, Ordering::Relaxed);
                if let Some(labeler) = &self.labeler {
                    let task = [LabelTask {
                        item_id: &record.id,
                        item: &item,
                        prediction: Some(&prediction),
                        suggestion: None,
                    }];
                    let (submitted, attempts) = with_retries(
                        &config.retry,
                        config.call_timeout,
                        config.seed,
                        key ^ 2,
                        tries,
                        || labeler.submit(&task),
                    )
                    .await;
                    return match submitted {
                        Ok(_) => Ok(Outcome::Review),
                        Err(e) => Err(Failure::of(Stage::Review, &e, attempts, None)),
                    };
                }
                (REVIEW_ROUTE, Stage::Review, AT_REVIEW)
            }
        };
        at.store(code, Ordering::Relaxed);
        let delivery = Delivery {
            item: &item,
            record,
            prediction: &prediction,
            route: &route,
        };
        let (receipt, attempts) = with_retries(
            &config.retry,
            config.call_timeout,
            config.seed,
            key ^ u64::from(code),
            tries,
            || self.router.route(&delivery),
        )
        .await;
        match receipt {
            Ok(_) if stage == Stage::Review => Ok(Outcome::Review),
            Ok(receipt) if receipt.skipped => Ok(Outcome::Skipped(route)),
            Ok(_) => Ok(Outcome::Routed(route)),
            Err(e) => Err(Failure::of(stage, &e, attempts, Some(route))),
        }
    }

    /// A failed record: reported for redelivery (a retryable failure under
    /// [`OnExhausted::Report`]), or dead-lettered, with the store retried on
    /// its own budget (outside the record timeout: giving up there would
    /// lose the record).
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        record: Record,
        fail: Failure,
        slot: usize,
        index: u64,
        key: u64,
        mut tries: Tries,
        classified: Option<Label>,
        panicked: bool,
        on_exhausted: OnExhausted,
    ) -> Done {
        let decoded = fail.stage != Stage::Decode;
        if fail.class == ErrorClass::Retryable && on_exhausted == OnExhausted::Report {
            // Ids, stages and kinds only: a reason may quote the payload.
            tracing::warn!(
                record = %record.id,
                stage = fail.stage.as_str(),
                kind = fail.kind,
                attempts = fail.attempts,
                "record failed after retries; reporting it for redelivery"
            );
            return Done {
                slot,
                index,
                sequence: record.sequence,
                arrival: record.arrival,
                record_id: Some(record.id),
                decoded,
                classified,
                outcome: Outcome::Exhausted {
                    stage: fail.stage,
                    reason: fail.reason,
                },
                tries,
                panicked,
            };
        }
        tracing::warn!(
            record = %record.id,
            stage = fail.stage.as_str(),
            kind = fail.kind,
            attempts = fail.attempts,
            "dead-lettering record"
        );
        let dead = DeadLetter {
            record,
            stage: fail.stage,
            class: fail.class,
            kind: fail.kind.to_string(),
            reason: fail.reason,
            attempts: fail.attempts,
            route: fail.route.map(|r| r.to_string()),
            at: SystemTime::now(),
        };
        let config = &self.config;
        let (stored, attempts) = with_retries(
            &config.retry,
            config.call_timeout,
            config.seed,
            key ^ 3,
            &mut tries,
            || {
                AssertUnwindSafe(self.dead_letter.store(&dead))
                    .catch_unwind()
                    .map(|r| {
                        r.unwrap_or_else(|_| {
                            Err(DeadLetterError::unavailable(
                                "the dead-letter sink panicked while storing the record",
                            ))
                        })
                    })
            },
        )
        .await;
        let outcome = match stored {
            Ok(()) => Outcome::DeadLettered(dead.stage),
            Err(e) => {
                tracing::error!(
                    record = %dead.record.id,
                    attempts,
                    kind = e.kind(),
                    "dead-letter sink failed; the record is not done"
                );
                Outcome::SinkFailed {
                    stage: dead.stage,
                    error: e,
                }
            }
        };
        Done {
            slot,
            index,
            arrival: dead.record.arrival,
            sequence: dead.record.sequence,
            record_id: Some(dead.record.id),
            decoded,
            classified,
            outcome,
            tries,
            panicked,
        }
    }
}
