//! A cascade: the cheap model decides what it is sure of, an expensive one
//! (a large language model) the uncertain band, people what both are
//! unsure of.
//!
//! # The stages
//!
//! [`Cascade`](crate::cascade::Cascade) is a [`Classifier`](crate::Classifier)
//! of two classifiers:
//!
//! - **Stage 1**, the cheap one: a [`LocalClassifier`](crate::local::LocalClassifier)
//!   (microseconds, free). It answers every item.
//! - **Stage 2**, the expensive one: an LLM, a SageMaker endpoint, any
//!   classifier (hundreds of milliseconds, a price per call). It answers
//!   only the items whose stage-1 positive score lies in the
//!   [`UncertainBand`](crate::cascade::UncertainBand) `[low, high]`, and
//!   the items stage 1 gives no positive score.
//! - **People**: the pipeline's [`Policy`](crate::Policy) reads whichever
//!   answer came out. Its review band (binary) or its minimum confidence
//!   (multiclass) sends what stage 2 is unsure of to the
//!   [`Labeler`](crate::Labeler), as for any classifier.
//!
//! Every prediction says who decided:
//! [`Prediction::decided_by`](crate::Prediction::decided_by) is
//! [`CascadeStage::First`](crate::CascadeStage::First), `Second` or
//! `Fallback`. [`Cascade::stats`](crate::cascade::Cascade::stats) counts
//! them, and so do the `metrics` counters
//! `streamsift_cascade_decisions_total{stage}` and
//! `streamsift_cascade_errors_total{stage, kind}`.
//!
//! ```
//! use streamsift::cascade::{Cascade, UncertainBand};
//! use streamsift::fakes::{MemorySource, RecordingRouter, SimulatedLlm};
//! use streamsift::local::{Example, LocalClassifier, LocalModel, TrainConfig};
//! use streamsift::{MemoryDeadLetter, Pipeline, Policy, Utf8};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let train: Vec<Example> = (0..40)
//!     .map(|i| if i % 2 == 0 {
//!         Example::new(format!("site down again {i}")).labeled("actionable")
//!     } else {
//!         Example::new(format!("love the new logo {i}")).labeled("none")
//!     })
//!     .collect();
//! let local = LocalModel::train(&train, &TrainConfig::binary("actionable")).unwrap();
//! let llm = SimulatedLlm::new(["actionable", "none"])
//!     .gold([("is the site down or is it me", "actionable")])
//!     .negative("none");
//! let cascade = Cascade::new(LocalClassifier::new(local), llm).band(UncertainBand::new(0.2, 0.8));
//! let report = Pipeline::new(MemorySource::from_payloads(1, ["site down again", "is the site down or is it me"]))
//!     .decode(Utf8)
//!     .classify(cascade)
//!     .policy(Policy::binary(0.5, "oncall").with_review_band(0.3, 0.6))
//!     .route(RecordingRouter::new())
//!     .review_via_router()
//!     .dead_letter(MemoryDeadLetter::new())
//!     .run()
//!     .await
//!     .unwrap();
//! assert_eq!(report.stats.records_in, 2);
//! # });
//! ```
//!
//! # Choosing the band
//!
//! A wider band sends more items to stage 2: fewer mistakes where stage 2
//! is better, more calls to pay for. [`calibrate`](crate::cascade::calibrate)
//! picks the band of least expected cost per record from labeled data: for
//! each item, the gold answer, stage 1's score and stage 2's decision (what
//! the policy makes of its answer), plus the price of a mistake of each
//! kind and of a stage-2 call. It tries every band between distinct
//! stage-1 scores and returns the best with the two baselines (stage 1
//! alone, stage 2 for everything) priced on the same data, and the share
//! of records that reach stage 2. [`Calibration::evaluate`](crate::cascade::Calibration::evaluate)
//! prices any other band: that is the cost curve.
//!
//! Calibrate on data the model was not trained on (a hold-out, or
//! out-of-fold scores), and judge the chosen band on data it was not
//! chosen on: the best band of a sample is optimistic for that sample.
//!
//! # The cost curve of the support tweets
//!
//! `cargo run --example support_tweets -- --cascade` prints it, offline,
//! with `fakes::SimulatedLlm` (feature `test-util`) as stage 2 (90%
//! accurate over the five labels, an assumed price of 0.02 false alarms a
//! call; a missed request costs 10). On the 298 held-out tweets (the test
//! `tests/support_tweets_cascade.rs` checks that this table is the run's):
//!
//! ```text
//!   stage 2 decides                                 band    to LLM  missed  alarms     cost
//!   local model only                                none      0.0%       1      39   0.1644
//!   LLM only                                         all    100.0%       2      27   0.1777
//!   cascade, threshold ±0.05              [0.272, 0.372]     10.7%       0      23   0.0793
//!   cascade, threshold ±0.10              [0.222, 0.422]     22.5%       0      22   0.0783
//!   cascade, threshold ±0.20              [0.122, 0.522]     54.0%       0      23   0.0880
//!   cascade, threshold ±0.30              [0.022, 0.622]     82.6%       0      29   0.1138
//!   cascade, calibrated (cross-fitted)    [0.316, 0.635]     20.1%       1       3   0.0477
//! ```
//!
//! Each model alone is wrong in its own way: the local model's false alarms
//! sit just above its threshold, where the LLM is right more often; the
//! LLM's mistakes are spread over everything. The cascade sends the LLM
//! the band where it helps, and its cost falls below both. Band widths
//! centred on the threshold are not the best shape: the calibrated band
//! (chosen on one half of the hold-out, priced on the other, both ways)
//! leans above the threshold and costs less with a fifth of the tweets
//! sent to the LLM. The figures depend on the simulated LLM's assumed
//! accuracy and price; with a real one, measure its answers on your
//! hold-out and calibrate again.
//!
//! # When stage 2 fails
//!
//! - A **retryable** error (throttled, unavailable, timed out) propagates:
//!   the pipeline retries the record with its
//!   [`RetryPolicy`](crate::RetryPolicy) and dead-letters it if the
//!   retries run out. Nothing is dropped.
//! - A **permanent** error (a spent budget, a refusal, an answer outside
//!   the label set after the repair retry) gives the
//!   [`Fallback`](crate::cascade::Fallback), marked
//!   [`CascadeStage::Fallback`](crate::CascadeStage::Fallback). The default,
//!   `Fallback::Review`, is a prediction with label
//!   [`FALLBACK_LABEL`](crate::cascade::FALLBACK_LABEL) and no scores, which
//!   a binary policy reviews (no score) and a multiclass one reviews (a
//!   label with no rule, with the default `UncertainAction::Review`): when
//!   a missed item costs more than a false alarm, a person should see what
//!   neither model could decide. `Fallback::FirstStage` keeps stage 1's
//!   guess instead.
//! - A stage-2 answer with **no score** (an LLM without logprobs) keeps no
//!   positive score: a binary policy reviews it. A multiclass policy with
//!   `min_confidence > 0` reviews it too; with `min_confidence = 0` it acts
//!   on the label alone.
//! - Stage-1 errors propagate unchanged.
