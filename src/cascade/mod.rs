//! A two-stage classifier: a cheap model decides what it is sure of, an
//! expensive one decides the rest, and the [`Policy`](crate::Policy)'s
//! review band sends what the expensive one is unsure of to people.
//!
//! - [`Cascade`]: the [`Classifier`]. Stage 1 (a
//!   [`LocalClassifier`](crate::local::LocalClassifier), any classifier) answers every
//!   item; when its positive score falls in the [`UncertainBand`], or when it
//!   gives no positive score, stage 2 (an LLM, a SageMaker endpoint, any
//!   classifier) answers instead. The prediction says which stage decided
//!   ([`Prediction::decided_by`]); [`Cascade::stats`] counts per stage, and
//!   so do `metrics` counters.
//! - [`calibrate`]: picks the band from labeled data, the stage-1 scores,
//!   stage 2's answers, a stage-2 price per call and the false-negative :
//!   false-positive cost, minimizing the expected cost per record; it
//!   reports the share of records that reach stage 2, and prices any band
//!   ([`Calibration::evaluate`]) for a cost curve.
//!
//! The guide page [`guide::cascade`](crate::guide::cascade) explains how to
//! choose the band and what happens when stage 2 fails.
//!
//! ```
//! use streamsift::cascade::{Cascade, UncertainBand};
//! use streamsift::fakes::SimulatedLlm;
//! use streamsift::{Classifier, ClassifyError, Prediction, CascadeStage};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! // Stage 1: a cheap scorer, sure of long texts only.
//! let cheap = |text: &String| {
//!     let score = if text.len() > 20 { 0.95 } else { 0.5 };
//!     std::future::ready(Ok::<_, ClassifyError>(Prediction::binary("outage", "none", score)))
//! };
//! // Stage 2: a (simulated) large language model.
//! let llm = SimulatedLlm::new(["outage", "none"])
//!     .gold([("down?", "none")])
//!     .accuracy(1.0)
//!     .negative("none");
//! let cascade = Cascade::new(cheap, llm).band(UncertainBand::new(0.3, 0.7));
//!
//! let sure = cascade.classify(&"the whole region is down again".to_string()).await.unwrap();
//! assert_eq!(sure.decided_by, Some(CascadeStage::First));
//! let unsure = cascade.classify(&"down?".to_string()).await.unwrap();
//! assert_eq!((unsure.label.as_str(), unsure.decided_by), ("none", Some(CascadeStage::Second)));
//! assert_eq!(cascade.stats().second, 1);
//! # });
//! ```

mod calibrate;

pub use calibrate::{BandCost, CalibrateError, Calibration, Sample, calibrate};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::classify::{CascadeStage, Classifier, Label, Prediction};
use crate::error::ClassifyError;

/// The range of stage-1 positive scores, `low <= score <= high` (both ends
/// included), for which stage 2 decides. A band with `low > high` is empty:
/// stage 1 decides everything it scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UncertainBand {
    /// The lowest score stage 2 decides.
    pub low: f64,
    /// The highest score stage 2 decides.
    pub high: f64,
}

impl UncertainBand {
    /// The band `[low, high]`.
    ///
    /// ```
    /// use streamsift::cascade::UncertainBand;
    /// let band = UncertainBand::new(0.2, 0.6);
    /// assert!(band.contains(0.2) && band.contains(0.6) && !band.contains(0.61));
    /// ```
    pub const fn new(low: f64, high: f64) -> Self {
        UncertainBand { low, high }
    }

    /// No band: stage 2 sees only items stage 1 gives no score.
    pub const fn empty() -> Self {
        UncertainBand {
            low: 1.0,
            high: 0.0,
        }
    }

    /// Every score: stage 2 decides everything.
    pub const fn all() -> Self {
        UncertainBand {
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
        }
    }

    /// Whether stage 2 decides an item with this stage-1 score. A NaN score
    /// is in every band (stage 1 does not know).
    pub fn contains(&self, score: f64) -> bool {
        score.is_nan() || (score >= self.low && score <= self.high)
    }
}

/// What a [`Cascade`] answers for an item of the band when stage 2 fails
/// permanently (a spent budget, a refusal, an answer it cannot parse).
/// Retryable stage-2 errors are never a fallback: they propagate, so the
/// pipeline retries the record (and dead-letters it if retries run out).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Fallback {
    /// The default, the safe choice when a missed item costs more than a
    /// false alarm: a prediction that every [`Policy`](crate::Policy) sends
    /// to review, so people see the item. Its label is
    /// [`FALLBACK_LABEL`] (no policy rule should name it), it has no scores
    /// and no positive score: a binary policy reviews an item with no
    /// score, a multiclass one reviews an unknown label (when its
    /// `uncertain` action is `Review`, the default).
    Review,
    /// Stage 1's own prediction, as it was. Cheaper for people, but an
    /// item stage 1 was unsure of is then decided by a guess.
    FirstStage,
}

/// The label of a [`Fallback::Review`] prediction.
pub const FALLBACK_LABEL: Label = Label::from_static("cascade_fallback");

/// Counts of a [`Cascade`]'s decisions, per stage (see [`Cascade::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CascadeStats {
    /// Decided by stage 1 (score outside the band).
    pub first: u64,
    /// Decided by stage 2.
    pub second: u64,
    /// Stage 2 failed permanently; the fallback answered.
    pub fallback: u64,
    /// Stage 1 failed (the error propagated).
    pub first_errors: u64,
    /// Stage 2 failed with a retryable error (it propagated).
    pub second_retryable: u64,
}

impl CascadeStats {
    /// Calls that reached stage 2 (answered, failed or fell back).
    pub fn reached_second(&self) -> u64 {
        self.second + self.fallback + self.second_retryable
    }
}

#[derive(Default)]
struct Counters {
    first: AtomicU64,
    second: AtomicU64,
    fallback: AtomicU64,
    first_errors: AtomicU64,
    second_retryable: AtomicU64,
}

/// A [`Classifier`] in two stages: stage 1 decides when its positive score
/// is outside the [`UncertainBand`]; otherwise (or when it gives no
/// positive score) stage 2 decides. See the [module docs](self).
///
/// - Stage-1 errors propagate unchanged.
/// - Stage-2 retryable errors (throttled, unavailable, timeout) propagate,
///   so the pipeline retries the record.
/// - Stage-2 permanent errors give the [`Fallback`]
///   ([`Fallback::Review`] unless set), marked
///   [`CascadeStage::Fallback`]; the error's kind is logged, never its text.
///
/// Every answer carries [`decided_by`](Prediction::decided_by). Stage 2's
/// answer keeps its own scores; when it has no `positive_score`, stage 1's
/// is **not** copied in (a policy then reviews it, which is the point of
/// asking stage 2).
///
/// Metrics: `streamsift_cascade_decisions_total{stage=first|second|fallback}`
/// and `streamsift_cascade_errors_total{stage, kind}`.
pub struct Cascade<S1, S2> {
    first: S1,
    second: S2,
    band: UncertainBand,
    fallback: Fallback,
    counters: Counters,
}

impl<S1, S2> fmt::Debug for Cascade<S1, S2> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cascade")
            .field("band", &self.band)
            .field("fallback", &self.fallback)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S1, S2> Cascade<S1, S2> {
    /// A cascade of `first` then `second`, with an empty band (stage 2 sees
    /// only items stage 1 does not score) until [`band`](Self::band) sets
    /// one: choose it with [`calibrate`].
    pub fn new(first: S1, second: S2) -> Self {
        Cascade {
            first,
            second,
            band: UncertainBand::empty(),
            fallback: Fallback::Review,
            counters: Counters::default(),
        }
    }

    /// The band of stage-1 positive scores that stage 2 decides.
    pub fn band(mut self, band: UncertainBand) -> Self {
        self.band = band;
        self
    }

    /// What to answer when stage 2 fails permanently
    /// ([`Fallback::Review`] unless set).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The band in use.
    pub fn uncertain_band(&self) -> UncertainBand {
        self.band
    }

    /// Stage 1.
    pub fn first(&self) -> &S1 {
        &self.first
    }

    /// Stage 2.
    pub fn second(&self) -> &S2 {
        &self.second
    }

    /// A snapshot of the decision counts.
    pub fn stats(&self) -> CascadeStats {
        let c = &self.counters;
        CascadeStats {
            first: c.first.load(Ordering::Relaxed),
            second: c.second.load(Ordering::Relaxed),
            fallback: c.fallback.load(Ordering::Relaxed),
            first_errors: c.first_errors.load(Ordering::Relaxed),
            second_retryable: c.second_retryable.load(Ordering::Relaxed),
        }
    }

    /// Whether stage 2 must decide after stage 1 said `p`.
    fn needs_second(&self, p: &Prediction) -> bool {
        p.positive_score.is_none_or(|s| self.band.contains(s))
    }

    fn first_failed(&self, e: ClassifyError) -> ClassifyError {
        self.counters.first_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("streamsift_cascade_errors_total", "stage" => "first", "kind" => e.kind())
            .increment(1);
        e
    }

    fn decided(&self, mut p: Prediction, stage: CascadeStage) -> Prediction {
        // Literal labels: the macro builds a static key (no allocation on
        // the hot path, where stage 1 decides).
        match stage {
            CascadeStage::First => {
                self.counters.first.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("streamsift_cascade_decisions_total", "stage" => "first")
                    .increment(1);
            }
            CascadeStage::Second => {
                self.counters.second.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("streamsift_cascade_decisions_total", "stage" => "second")
                    .increment(1);
            }
            _ => {
                self.counters.fallback.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("streamsift_cascade_decisions_total", "stage" => "fallback")
                    .increment(1);
            }
        }
        p.decided_by = Some(stage);
        p
    }

    /// Stage 2's result for an item stage 1 answered `first`.
    fn settle(
        &self,
        first: Prediction,
        second: Result<Prediction, ClassifyError>,
    ) -> Result<Prediction, ClassifyError> {
        match second {
            Ok(p) => Ok(self.decided(p, CascadeStage::Second)),
            Err(e) => {
                metrics::counter!("streamsift_cascade_errors_total", "stage" => "second", "kind" => e.kind())
                    .increment(1);
                if e.is_retryable() {
                    self.counters
                        .second_retryable
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                tracing::warn!(
                    kind = e.kind(),
                    fallback = ?self.fallback,
                    "cascade: stage 2 failed permanently; answering with the fallback"
                );
                let answer = match self.fallback {
                    Fallback::FirstStage => first,
                    Fallback::Review => Prediction::label(FALLBACK_LABEL),
                };
                Ok(self.decided(answer, CascadeStage::Fallback))
            }
        }
    }
}

impl<T, S1, S2> Classifier<T> for Cascade<S1, S2>
where
    T: Sync,
    S1: Classifier<T>,
    S2: Classifier<T>,
{
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let first = self
            .first
            .classify(item)
            .await
            .map_err(|e| self.first_failed(e))?;
        if !self.needs_second(&first) {
            return Ok(self.decided(first, CascadeStage::First));
        }
        let second = self.second.classify(item).await;
        self.settle(first, second)
    }

    /// Stage 1 in one batch, then stage 2 in one batch over the items of
    /// the band, so both backends keep their bulk calls.
    async fn classify_batch(&self, items: &[&T]) -> Vec<Result<Prediction, ClassifyError>> {
        let firsts = self.first.classify_batch(items).await;
        let mut out: Vec<Option<Result<Prediction, ClassifyError>>> =
            Vec::with_capacity(items.len());
        let mut unsure: Vec<(usize, Prediction)> = Vec::new();
        for (i, r) in firsts.into_iter().enumerate() {
            match r {
                Err(e) => out.push(Some(Err(self.first_failed(e)))),
                Ok(p) if self.needs_second(&p) => {
                    unsure.push((i, p));
                    out.push(None);
                }
                Ok(p) => out.push(Some(Ok(self.decided(p, CascadeStage::First)))),
            }
        }
        if !unsure.is_empty() {
            let refs: Vec<&T> = unsure.iter().map(|(i, _)| items[*i]).collect();
            let mut seconds = self.second.classify_batch(&refs).await.into_iter();
            for (i, first) in unsure {
                let second = seconds.next().unwrap_or_else(|| {
                    Err(ClassifyError::permanent(
                        "stage 2's classify_batch returned fewer answers than items",
                    ))
                });
                out[i] = Some(self.settle(first, second));
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ClassifyError::permanent("cascade lost an answer"))))
            .collect()
    }
}

#[cfg(test)]
mod tests;
