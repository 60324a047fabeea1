//! A simulated large language model: [`SimulatedLlm`], a [`Classifier`]
//! that answers from gold labels through a seeded confusion matrix, with a
//! latency and a price per call.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::classify::{Classifier, Label, Prediction};
use crate::error::ClassifyError;
use crate::local::{Document, normalize_text};
use crate::util::{Rng, hash_str, splitmix64};

/// What a [`SimulatedLlm`] answers for an item whose text has no gold label.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum UnknownItems {
    /// A permanent [`ClassifyError`] (the default): the simulator cannot know
    /// the answer, and a permanent error makes a cascade take its fallback,
    /// so a missing gold label is seen, never silently guessed. The call is
    /// still counted and billed.
    Fail,
    /// A label drawn uniformly from the label set under the seed, with
    /// confidence `1 / labels` (a model that knows nothing).
    Uniform,
}

/// A [`Classifier`] standing in for a large language model in offline runs
/// over labeled data (the bundled tweets and their gold labels), like
/// [`SimulatedCrowd`](super::SimulatedCrowd) stands in for people.
///
/// - **Gold.** [`gold`](Self::gold) maps texts to their true labels; texts
///   are keyed by [`normalize_text`], so case, URLs, mentions and spacing do
///   not matter. An item whose text has no gold label is answered as
///   [`unknown_items`](Self::unknown_items) says (a permanent error unless
///   set).
/// - **Errors.** With [`accuracy`](Self::accuracy) `a` (0.9 unless set), the
///   answer is the gold label with probability `a`, else another label of
///   the set, uniformly. [`confusion`](Self::confusion) replaces that for
///   one true label by a row of weights over the answers: a full confusion
///   matrix is one call per row.
/// - **Confidence.** The answer's score is drawn in
///   [`confidence_when_right`](Self::confidence_when_right) (`[0.8, 1.0)`
///   unless set) when the answer is right and in
///   [`confidence_when_wrong`](Self::confidence_when_wrong) (`[0.5, 0.8)`
///   unless set) when it is wrong, so confidence is informative as a real
///   model's logprobs are; the rest of the probability is shared evenly by
///   the other labels. With [`negative`](Self::negative) set, the
///   prediction's `positive_score` is one minus that label's score (for a
///   binary set, the other label's score).
/// - **Determinism.** Every answer is a pure function of (seed, normalized
///   text): the same item gets the same answer in any order, alone or
///   concurrently, and across runs.
/// - **Latency and cost.** Each call sleeps [`latency`](Self::latency) on
///   tokio's clock (zero unless set; paused-clock tests advance it), and is
///   counted: [`calls`](Self::calls), [`tokens`](Self::tokens) (a fixed
///   [`tokens_per_call`](Self::tokens_per_call)) and [`cost`](Self::cost)
///   (calls times [`cost_per_call`](Self::cost_per_call)).
/// - **Budget.** Past [`call_budget`](Self::call_budget) calls, each call
///   fails with a permanent error (not billed), as a real client's budget
///   guard fails closed.
///
/// ```
/// use std::time::Duration;
/// use streamsift::Classifier;
/// use streamsift::fakes::SimulatedLlm;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let llm = SimulatedLlm::new(["outage", "none"])
///     .gold([("The site is DOWN https://t.co/x", "outage"), ("thanks!", "none")])
///     .accuracy(1.0)
///     .latency(Duration::from_millis(400))
///     .cost_per_call(0.002)
///     .seed(7);
/// let p = llm.classify(&"the site is down".to_string()).await.unwrap();
/// assert_eq!(p.label, "outage");
/// assert!(p.confidence().unwrap() >= 0.8);
/// assert!(llm.classify(&"never seen".to_string()).await.is_err());
/// assert_eq!(llm.calls(), 2);
/// assert!((llm.cost() - 0.004).abs() < 1e-12);
/// # });
/// ```
pub struct SimulatedLlm {
    labels: Vec<Label>,
    gold: HashMap<String, Label>,
    accuracy: f64,
    confusion: HashMap<Label, Vec<(Label, f64)>>,
    right: (f64, f64),
    wrong: (f64, f64),
    negative: Option<Label>,
    unknown: UnknownItems,
    latency: Duration,
    cost_per_call: f64,
    tokens_per_call: u64,
    budget: Option<u64>,
    seed: u64,
    calls: AtomicU64,
    refused: AtomicU64,
}

impl fmt::Debug for SimulatedLlm {
    /// Counts only: the gold texts are customer text and stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedLlm")
            .field("labels", &self.labels)
            .field("gold", &self.gold.len())
            .field("accuracy", &self.accuracy)
            .field("seed", &self.seed)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

const SALT_ANSWER: u64 = 0x616e_7377_6572; // "answer"

impl SimulatedLlm {
    /// A simulated model answering with `labels`, with no gold yet,
    /// accuracy 0.9, no latency, no cost.
    pub fn new<L: Into<Label>>(labels: impl IntoIterator<Item = L>) -> Self {
        SimulatedLlm {
            labels: labels.into_iter().map(Into::into).collect(),
            gold: HashMap::new(),
            accuracy: 0.9,
            confusion: HashMap::new(),
            right: (0.8, 1.0),
            wrong: (0.5, 0.8),
            negative: None,
            unknown: UnknownItems::Fail,
            latency: Duration::ZERO,
            cost_per_call: 0.0,
            tokens_per_call: 0,
            budget: None,
            seed: 0,
            calls: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Adds gold labels: (text, label) pairs. Texts are keyed by
    /// [`normalize_text`]; of two texts that normalize alike, the later
    /// one's label wins. A gold label outside the label set is allowed:
    /// it is answered when right.
    pub fn gold<S, L>(mut self, pairs: impl IntoIterator<Item = (S, L)>) -> Self
    where
        S: AsRef<str>,
        L: Into<Label>,
    {
        for (text, label) in pairs {
            self.gold
                .insert(normalize_text(text.as_ref()), label.into());
        }
        self
    }

    /// The probability of answering the gold label (clamped to `[0, 1]`,
    /// NaN means 0), for true labels without a [`confusion`](Self::confusion)
    /// row. 0.9 unless set.
    pub fn accuracy(mut self, accuracy: f64) -> Self {
        self.accuracy = if accuracy.is_nan() {
            0.0
        } else {
            accuracy.clamp(0.0, 1.0)
        };
        self
    }

    /// The confusion-matrix row of true label `truth`: a weight per answer
    /// (normalized to sum to one; negative and NaN weights count as 0; an
    /// all-zero row answers `truth`).
    ///
    /// ```
    /// use streamsift::fakes::SimulatedLlm;
    /// // Outages are mistaken for billing questions one time in five.
    /// let llm = SimulatedLlm::new(["outage", "billing", "none"])
    ///     .confusion("outage", [("outage", 0.8), ("billing", 0.2)]);
    /// # let _ = llm;
    /// ```
    pub fn confusion<L, A>(mut self, truth: L, row: impl IntoIterator<Item = (A, f64)>) -> Self
    where
        L: Into<Label>,
        A: Into<Label>,
    {
        let row = row
            .into_iter()
            .map(|(l, w)| (l.into(), if w.is_nan() { 0.0 } else { w.max(0.0) }))
            .collect();
        self.confusion.insert(truth.into(), row);
        self
    }

    /// The range `[lo, hi)` the answer's score is drawn from when it is the
    /// gold label (`[0.8, 1.0)` unless set). Clamped to `[0, 1]`.
    pub fn confidence_when_right(mut self, lo: f64, hi: f64) -> Self {
        self.right = range(lo, hi);
        self
    }

    /// The range `[lo, hi)` the answer's score is drawn from when it is not
    /// the gold label (`[0.5, 0.8)` unless set). Clamped to `[0, 1]`.
    pub fn confidence_when_wrong(mut self, lo: f64, hi: f64) -> Self {
        self.wrong = range(lo, hi);
        self
    }

    /// Sets `positive_score` to one minus the score of `label` (the
    /// negative class: "none" for the support tweets). Unset, predictions
    /// carry no `positive_score`.
    pub fn negative(mut self, label: impl Into<Label>) -> Self {
        self.negative = Some(label.into());
        self
    }

    /// What to answer for texts with no gold label ([`UnknownItems::Fail`]
    /// unless set).
    pub fn unknown_items(mut self, unknown: UnknownItems) -> Self {
        self.unknown = unknown;
        self
    }

    /// How long each call takes, on tokio's clock (zero unless set).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The price of one call, in any currency unit (0 unless set).
    pub fn cost_per_call(mut self, cost: f64) -> Self {
        self.cost_per_call = cost;
        self
    }

    /// Tokens billed per call, prompt and completion (0 unless set).
    pub fn tokens_per_call(mut self, tokens: u64) -> Self {
        self.tokens_per_call = tokens;
        self
    }

    /// At most `calls` billed calls; later calls fail with a permanent
    /// error. Unlimited unless set.
    pub fn call_budget(mut self, calls: u64) -> Self {
        self.budget = Some(calls);
        self
    }

    /// Seeds the answers (0 unless set).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The label set.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The gold label of a text, if it has one.
    pub fn gold_of(&self, text: &str) -> Option<&Label> {
        self.gold.get(&normalize_text(text))
    }

    /// Billed calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls refused past the budget so far (not billed).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Tokens billed so far.
    pub fn tokens(&self) -> u64 {
        self.calls() * self.tokens_per_call
    }

    /// Money spent so far: billed calls times the cost per call.
    pub fn cost(&self) -> f64 {
        self.calls() as f64 * self.cost_per_call
    }

    /// The answer for a text, without latency or accounting: what
    /// [`classify`](Classifier::classify) returns for it. For offline
    /// evaluation loops that need no clock.
    pub fn answer(&self, text: &str) -> Result<Prediction, ClassifyError> {
        let key = normalize_text(text);
        let mut rng = Rng::new(self.seed ^ splitmix64(hash_str(&key) ^ SALT_ANSWER));
        let Some(truth) = self.gold.get(&key) else {
            return match self.unknown {
                UnknownItems::Fail => Err(ClassifyError::permanent(
                    "the simulated LLM has no gold label for this text; add it with \
                     SimulatedLlm::gold, or set unknown_items(UnknownItems::Uniform)",
                )),
                UnknownItems::Uniform => {
                    let n = self.labels.len().max(1);
                    let label = match self.labels.len() {
                        0 => Label::from_static(""),
                        n => self.labels[rng.below(n as u64) as usize].clone(),
                    };
                    Ok(self.prediction(label, 1.0 / n as f64))
                }
            };
        };
        let answer = self.draw(truth, &mut rng);
        let (lo, hi) = if answer == *truth {
            self.right
        } else {
            self.wrong
        };
        let confidence = lo + (hi - lo) * rng.next_f64();
        Ok(self.prediction(answer, confidence))
    }

    /// The answer for gold label `truth`.
    fn draw(&self, truth: &Label, rng: &mut Rng) -> Label {
        let u = rng.next_f64();
        if let Some(row) = self.confusion.get(truth) {
            let total: f64 = row.iter().map(|(_, w)| w).sum();
            if total <= 0.0 {
                return truth.clone();
            }
            let mut at = u * total;
            for (label, w) in row {
                if at < *w {
                    return label.clone();
                }
                at -= w;
            }
            // Rounding left `at` past the last positive weight.
            return row
                .iter()
                .rev()
                .find(|(_, w)| *w > 0.0)
                .map_or_else(|| truth.clone(), |(l, _)| l.clone());
        }
        if u < self.accuracy {
            return truth.clone();
        }
        let others: Vec<&Label> = self.labels.iter().filter(|l| *l != truth).collect();
        match others.len() {
            0 => truth.clone(),
            n => others[rng.below(n as u64) as usize].clone(),
        }
    }

    fn prediction(&self, label: Label, confidence: f64) -> Prediction {
        let others = self.labels.iter().filter(|l| **l != label).count();
        let rest = if others == 0 {
            0.0
        } else {
            (1.0 - confidence) / others as f64
        };
        let mut scores: Vec<(Label, f64)> = self
            .labels
            .iter()
            .map(|l| (l.clone(), if *l == label { confidence } else { rest }))
            .collect();
        if !self.labels.contains(&label) {
            scores.push((label.clone(), confidence));
        }
        let positive_score = self.negative.as_ref().map(|neg| {
            let s = scores
                .iter()
                .find(|(l, _)| l == neg)
                .map_or(0.0, |(_, s)| *s);
            1.0 - s
        });
        Prediction {
            label,
            scores,
            positive_score,
            decided_by: None,
        }
    }

    /// Bills one call, or refuses it past the budget.
    fn bill(&self) -> Result<(), ClassifyError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.budget.is_some_and(|b| n >= b) {
            self.calls.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ClassifyError::permanent(
                "the simulated LLM's call budget is spent; raise call_budget",
            ));
        }
        Ok(())
    }
}

fn range(lo: f64, hi: f64) -> (f64, f64) {
    let clamp = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    let (lo, hi) = (clamp(lo), clamp(hi));
    (lo.min(hi), lo.max(hi))
}

impl<T: Document + Sync> Classifier<T> for SimulatedLlm {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        self.bill()?;
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.answer(item.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> Vec<(String, &'static str)> {
        (0..n)
            .map(|i| {
                let label = ["outage", "billing", "none"][i % 3];
                (format!("tweet number {i} about {label}"), label)
            })
            .collect()
    }

    #[test]
    fn accuracy_is_met_within_sampling_error_and_confidence_is_informative() {
        let data = texts(3000);
        let llm = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.clone())
            .accuracy(0.8)
            .seed(3);
        let mut right = 0;
        for (text, gold) in &data {
            let p = llm.answer(text).unwrap();
            let c = p.confidence().unwrap();
            if p.label == *gold {
                right += 1;
                assert!((0.8..1.0).contains(&c), "{c}");
            } else {
                assert!((0.5..0.8).contains(&c), "{c}");
            }
            let sum: f64 = p.scores.iter().map(|(_, s)| s).sum();
            assert!((sum - 1.0).abs() < 1e-9);
        }
        let share = right as f64 / data.len() as f64;
        // Binomial(3000, 0.8): sd ~ 0.0073; 4 sd.
        assert!((share - 0.8).abs() < 0.03, "accuracy {share}");
    }

    #[test]
    fn confusion_rows_set_the_error_spread() {
        let data: Vec<_> = (0..2000)
            .map(|i| (format!("outage report {i}"), "outage"))
            .collect();
        let llm = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.clone())
            .confusion("outage", [("outage", 0.5), ("billing", 0.5)])
            .seed(1);
        let billing = data
            .iter()
            .filter(|(t, _)| llm.answer(t).unwrap().label == "billing")
            .count();
        assert!((900..1100).contains(&billing), "{billing}");
        assert!(
            data.iter()
                .all(|(t, _)| llm.answer(t).unwrap().label != "none")
        );
    }

    #[test]
    fn answers_depend_on_seed_and_text_only() {
        let data = texts(300);
        let a = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.clone())
            .accuracy(0.5)
            .seed(9);
        let b = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.iter().rev().cloned())
            .accuracy(0.5)
            .seed(9);
        let c = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.clone())
            .accuracy(0.5)
            .seed(10);
        let answers = |l: &SimulatedLlm| -> Vec<Prediction> {
            data.iter().map(|(t, _)| l.answer(t).unwrap()).collect()
        };
        assert_eq!(answers(&a), answers(&b));
        assert_ne!(answers(&a), answers(&c));
        // Keyed by the normalized text.
        assert_eq!(
            a.answer("TWEET   number 4 about billing https://t.co/x")
                .unwrap(),
            a.answer(&data[4].0).unwrap()
        );
    }

    #[test]
    fn unknown_items_fail_permanently_or_answer_uniformly() {
        let llm = SimulatedLlm::new(["a", "b"]);
        let e = llm.answer("nothing").unwrap_err();
        assert!(!e.is_retryable());
        let llm = llm.unknown_items(UnknownItems::Uniform).seed(4);
        let p = llm.answer("nothing").unwrap();
        assert!(p.label == "a" || p.label == "b");
        assert_eq!(p.confidence(), Some(0.5));
    }

    #[test]
    fn negative_sets_the_positive_score() {
        let llm = SimulatedLlm::new(["actionable", "none"])
            .gold([("x", "actionable")])
            .accuracy(1.0)
            .negative("none");
        let p = llm.answer("x").unwrap();
        assert_eq!(p.positive_score, p.score("actionable"));
        assert!(p.positive_score.unwrap() >= 0.8);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_take_the_latency_and_are_counted_and_budgeted() {
        let llm = SimulatedLlm::new(["a", "b"])
            .gold([("x", "a")])
            .latency(Duration::from_millis(300))
            .cost_per_call(0.01)
            .tokens_per_call(250)
            .call_budget(2);
        let start = tokio::time::Instant::now();
        let x = "x".to_string();
        llm.classify(&x).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        assert!(llm.classify(&"y".to_string()).await.is_err(), "no gold");
        let e = llm.classify(&x).await.unwrap_err();
        assert!(!e.is_retryable() && e.to_string().contains("budget"), "{e}");
        assert_eq!(llm.calls(), 2);
        assert_eq!(llm.refused(), 1);
        assert_eq!(llm.tokens(), 500);
        assert!((llm.cost() - 0.02).abs() < 1e-12);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(600),
            "refusals are instant"
        );
    }

    #[tokio::test]
    async fn passes_the_classifier_conformance_suite() {
        let data = texts(30);
        let llm = SimulatedLlm::new(["outage", "billing", "none"])
            .gold(data.clone())
            .accuracy(0.7)
            .seed(5);
        let items: Vec<String> = data.iter().map(|(t, _)| t.clone()).collect();
        crate::testing::classifier::conformance(&llm, &items, &["outage", "billing", "none"]).await;
    }

    #[test]
    fn debug_shows_no_text() {
        let llm = SimulatedLlm::new(["a"]).gold([("secret customer text", "a")]);
        assert!(!format!("{llm:?}").contains("secret"));
    }
}
