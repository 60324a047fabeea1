//! Label aggregation: many people's answers → one label per item.
//!
//! A crowd answers each item several times, and people disagree, make
//! mistakes or answer at random. This module turns the answers into one
//! label per item, with how sure we are, and says which workers to trust:
//!
//! - [`Aggregator::majority`]: the most voted label. Ties go to the label
//!   first in the label set (so the order of the label set is the
//!   tie-break, and the result does not depend on the order of answers).
//! - [`Aggregator::original_rule`]: the original application's preset. An
//!   item is [`ACTIONABLE`] when at least 2 of its answers (of 3) name any
//!   category but "none of the above", else [`NOT_ACTIONABLE`]: a binary
//!   collapse of [`ORIGINAL_CATEGORIES`].
//! - [`Aggregator::dawid_skene`]: Dawid and Skene's EM (1979). It estimates a
//!   confusion matrix per worker and the class priors, weighs each answer by
//!   how reliable its worker is, and gives each item a posterior over labels.
//!   It beats majority vote when some workers are spammers.
//!
//! What counts as a vote: an answer whose label, trimmed, is empty is **not**
//! a vote (the original counted a blank answer as a vote for actionable; we
//! do not), nor is a label outside the label set, nor a worker's second
//! answer to the same item (the first one counts). Each is counted in
//! [`Skipped`]. An item with fewer valid votes than
//! [`min_votes`](Aggregator::min_votes) is reported in
//! [`Aggregation::incomplete`], never dropped silently.
//!
//! ```
//! use streamsift::aggregate::{Aggregator, Answer};
//!
//! let answers = vec![
//!     Answer::new("t1", "alice", "problem_report"),
//!     Answer::new("t1", "bob", "problem_report"),
//!     Answer::new("t1", "carol", "none"),
//!     Answer::new("t2", "alice", "none"),
//!     Answer::new("t2", "bob", ""), // a blank answer is not a vote
//! ];
//! let agg = Aggregator::new(["problem_report", "none"]).min_votes(2);
//! let out = agg.majority(&answers);
//! assert_eq!(out.items.len(), 1);
//! assert_eq!(out.items[0].label, "problem_report");
//! assert!((out.items[0].agreement - 2.0 / 3.0).abs() < 1e-12);
//! assert_eq!(out.incomplete[0].item_id, "t2");
//! assert_eq!(out.skipped.blank, 1);
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::classify::Label;
use crate::labeler::LabelResult;

/// The original application's five categories, as label ids, in its order:
/// Request, Question, Problem Report, Angry, None of the above.
pub const ORIGINAL_CATEGORIES: [&str; 5] =
    ["request", "question", "problem_report", "angry", "none"];

/// The original's "None of the above" category.
pub const NONE_OF_THE_ABOVE: &str = "none";

/// The label [`Aggregator::original_rule`] gives an actionable item.
pub const ACTIONABLE: &str = "actionable";

/// The label [`Aggregator::original_rule`] gives an item that is not
/// actionable.
pub const NOT_ACTIONABLE: &str = "not_actionable";

/// One worker's answer for one item, as it came from the labeler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The item's id.
    pub item_id: String,
    /// The worker's id.
    pub worker: String,
    /// The label the worker gave; blank means no answer.
    pub label: String,
}

impl Answer {
    /// An answer.
    ///
    /// ```
    /// let a = streamsift::aggregate::Answer::new("t1", "w1", "angry");
    /// assert_eq!(a.label, "angry");
    /// ```
    pub fn new(
        item_id: impl Into<String>,
        worker: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Answer {
            item_id: item_id.into(),
            worker: worker.into(),
            label: label.into(),
        }
    }
}

/// Every vote of some labeling results as [`Answer`]s, in order.
///
/// ```
/// use streamsift::aggregate::answers_from_results;
/// assert!(answers_from_results(&[]).is_empty());
/// ```
pub fn answers_from_results(results: &[LabelResult]) -> Vec<Answer> {
    results
        .iter()
        .flat_map(|r| {
            r.votes
                .iter()
                .map(|v| Answer::new(r.item_id.clone(), v.worker.clone(), v.label.as_str()))
        })
        .collect()
}

/// One item's aggregated label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemLabel {
    /// The item's id.
    pub item_id: String,
    /// The aggregated label.
    pub label: Label,
    /// The share of the item's valid votes that name `label`, in `[0, 1]`.
    pub agreement: f64,
    /// How sure the aggregate is, in `[0, 1]`: the vote share for majority
    /// vote and the original rule, the posterior probability of `label` for
    /// Dawid–Skene.
    pub confidence: f64,
    /// How many valid votes the item had.
    pub votes: usize,
    /// The probability of each label of the set, in label-set order (vote
    /// shares for majority vote, the posterior for Dawid–Skene).
    pub distribution: Vec<(Label, f64)>,
}

/// An item that did not get enough valid votes to be labeled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incomplete {
    /// The item's id.
    pub item_id: String,
    /// The valid votes it had.
    pub votes: usize,
    /// The votes it needed ([`Aggregator::min_votes`]).
    pub needed: usize,
    /// Its blank answers (not votes).
    pub blank: usize,
    /// Its answers with a label outside the label set.
    pub unknown_label: usize,
}

/// Answers that were not counted as votes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Blank answers (empty after trimming).
    pub blank: usize,
    /// Answers with a label outside the label set.
    pub unknown_label: usize,
    /// A worker's second and later answers to the same item.
    pub duplicate: usize,
}

/// What the aggregate says about one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's id.
    pub worker: String,
    /// How many valid votes they gave (on complete and incomplete items).
    pub answers: usize,
    /// Their estimated accuracy in `[0, 1]`: the share of their votes on
    /// labeled items that match the aggregate (for Dawid–Skene, the expected
    /// share under the posterior).
    pub accuracy: f64,
    /// How informative their answers are, in `[0, 1]`: 1 for a perfect
    /// worker, 0 when their answers do not depend on the true label (see
    /// [`Aggregator::spammer_threshold`]).
    pub spammer_score: f64,
    /// Whether they look like a spammer (see
    /// [`Aggregator::spammer_threshold`]).
    pub spammer: bool,
}

/// The aggregate of a set of answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregation {
    /// Labeled items, in the order each item first appears in the answers.
    pub items: Vec<ItemLabel>,
    /// Items without enough valid votes, in the same order.
    pub incomplete: Vec<Incomplete>,
    /// One report per worker with at least one valid vote, sorted by id.
    pub workers: Vec<WorkerReport>,
    /// Answers that were not counted as votes.
    pub skipped: Skipped,
    /// EM iterations run (0 for majority vote and the original rule).
    pub iterations: usize,
    /// Whether EM converged before its iteration cap (true for the others).
    pub converged: bool,
}

impl Aggregation {
    /// The labeled item with this id, if any.
    pub fn item(&self, item_id: &str) -> Option<&ItemLabel> {
        self.items.iter().find(|i| i.item_id == item_id)
    }

    /// The report of this worker, if any.
    pub fn worker(&self, worker: &str) -> Option<&WorkerReport> {
        self.workers.iter().find(|w| w.worker == worker)
    }

    /// The ids of the workers flagged as spammers.
    pub fn spammers(&self) -> Vec<&str> {
        self.workers
            .iter()
            .filter(|w| w.spammer)
            .map(|w| w.worker.as_str())
            .collect()
    }
}

/// Settings of Dawid–Skene EM.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DawidSkene {
    /// At most this many EM iterations (100 unless set).
    pub max_iterations: usize,
    /// Stop when no item's posterior moves by more than this (1e-5).
    pub tolerance: f64,
    /// A pseudo-count added to every cell of every worker's confusion
    /// matrix (Laplace smoothing, 0.5 unless set), so that a worker seen
    /// on few items is not judged perfect or hopeless.
    pub smoothing: f64,
    /// A pseudo-count added to each class when estimating the priors (1).
    pub prior_smoothing: f64,
}

impl Default for DawidSkene {
    fn default() -> Self {
        DawidSkene {
            max_iterations: 100,
            tolerance: 1e-5,
            smoothing: 0.5,
            prior_smoothing: 1.0,
        }
    }
}

/// Aggregates answers over a known label set. See the [module
/// docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregator {
    labels: Vec<Label>,
    min_votes: usize,
    spammer_threshold: f64,
    min_answers_to_flag: usize,
}

/// How the distributions were fitted.
#[derive(Clone, Copy)]
enum Fit {
    Votes,
    Em { iterations: usize, converged: bool },
}

/// Answers indexed: items and workers numbered, votes validated.
struct Indexed<'a> {
    items: Vec<&'a str>,
    workers: Vec<&'a str>,
    /// Per item: (worker index, label index).
    votes: Vec<Vec<(usize, usize)>>,
    blank: Vec<usize>,
    unknown: Vec<usize>,
    skipped: Skipped,
}

impl Aggregator {
    /// An aggregator over `labels`; their order breaks ties. An item needs
    /// 1 valid vote unless [`min_votes`](Self::min_votes) is set.
    ///
    /// ```
    /// use streamsift::aggregate::Aggregator;
    /// let agg = Aggregator::new(["spam", "ham"]).min_votes(3);
    /// assert_eq!(agg.labels().len(), 2);
    /// ```
    pub fn new<L: Into<Label>>(labels: impl IntoIterator<Item = L>) -> Self {
        let mut unique: Vec<Label> = Vec::new();
        for label in labels {
            let label = label.into();
            if !unique.contains(&label) {
                unique.push(label);
            }
        }
        Aggregator {
            labels: unique,
            min_votes: 1,
            spammer_threshold: 0.1,
            min_answers_to_flag: 10,
        }
    }

    /// An aggregator over the original's [`ORIGINAL_CATEGORIES`], needing 3
    /// votes per item (the original asked 3 workers).
    pub fn original() -> Self {
        Aggregator::new(ORIGINAL_CATEGORIES).min_votes(3)
    }

    /// How many valid votes an item needs to be labeled (at least 1).
    pub fn min_votes(mut self, n: usize) -> Self {
        self.min_votes = n.max(1);
        self
    }

    /// The spammer rule. A worker's *spammer score* is Raykar and Yu's
    /// (2012): with `π` their confusion matrix (row = true label, column =
    /// answer, each row summing to 1) over the `K` labels that have items,
    /// `score = Σ_{c<c'} Σ_k (π[c][k] − π[c'][k])² / (K(K−1))`. It is 0 when
    /// all rows are equal (the matrix has rank one: the answer does not
    /// depend on the truth, as for a random or always-the-same worker) and
    /// 1 for a perfect worker; for a worker right with probability `a` and
    /// wrong uniformly, it is `(a − (1−a)/(K−1))²`, 0 at chance.
    ///
    /// A worker is flagged when their score is below `threshold` (0.1
    /// unless set: for 5 labels, about accuracy 0.45 or less) and they gave
    /// at least `min_answers` valid votes (10 unless set; fewer say too
    /// little).
    pub fn spammer_threshold(mut self, threshold: f64, min_answers: usize) -> Self {
        self.spammer_threshold = threshold;
        self.min_answers_to_flag = min_answers;
        self
    }

    /// The label set, in tie-breaking order.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    fn index<'a>(&self, answers: &'a [Answer]) -> Indexed<'a> {
        let mut item_index: HashMap<&str, usize> = HashMap::new();
        let mut worker_index: HashMap<&str, usize> = HashMap::new();
        let mut ix = Indexed {
            items: Vec::new(),
            workers: Vec::new(),
            votes: Vec::new(),
            blank: Vec::new(),
            unknown: Vec::new(),
            skipped: Skipped::default(),
        };
        for answer in answers {
            let item = *item_index.entry(&answer.item_id).or_insert_with(|| {
                ix.items.push(&answer.item_id);
                ix.votes.push(Vec::new());
                ix.blank.push(0);
                ix.unknown.push(0);
                ix.items.len() - 1
            });
            let text = answer.label.trim();
            if text.is_empty() {
                ix.blank[item] += 1;
                ix.skipped.blank += 1;
                continue;
            }
            let Some(label) = self.labels.iter().position(|l| l.as_str() == text) else {
                ix.unknown[item] += 1;
                ix.skipped.unknown_label += 1;
                continue;
            };
            let worker = *worker_index.entry(&answer.worker).or_insert_with(|| {
                ix.workers.push(&answer.worker);
                ix.workers.len() - 1
            });
            if ix.votes[item].iter().any(|(w, _)| *w == worker) {
                ix.skipped.duplicate += 1;
                continue;
            }
            ix.votes[item].push((worker, label));
        }
        ix
    }

    fn incomplete(&self, ix: &Indexed<'_>, item: usize) -> Option<Incomplete> {
        let votes = ix.votes[item].len();
        (votes < self.min_votes).then(|| Incomplete {
            item_id: ix.items[item].to_owned(),
            votes,
            needed: self.min_votes,
            blank: ix.blank[item],
            unknown_label: ix.unknown[item],
        })
    }

    /// Majority vote. Each item's label is its most voted; ties go to the
    /// label first in the label set. Confidence is the vote share; worker
    /// accuracy is the share of their votes that agree with the majority
    /// (their own vote included).
    pub fn majority(&self, answers: &[Answer]) -> Aggregation {
        let ix = self.index(answers);
        let k = self.labels.len();
        let mut posteriors: Vec<Option<Vec<f64>>> = Vec::with_capacity(ix.items.len());
        for votes in &ix.votes {
            if votes.len() < self.min_votes {
                posteriors.push(None);
                continue;
            }
            let mut counts = vec![0.0; k];
            for &(_, l) in votes {
                counts[l] += 1.0;
            }
            let n = votes.len() as f64;
            posteriors.push(Some(counts.into_iter().map(|c| c / n).collect()));
        }
        self.finish(&ix, &posteriors, None, Fit::Votes)
    }

    /// The original application's rule, over [`ORIGINAL_CATEGORIES`]
    /// (whatever this aggregator's label set): an item is [`ACTIONABLE`]
    /// when at least 2 of its valid votes name a category other than
    /// [`NONE_OF_THE_ABOVE`], else [`NOT_ACTIONABLE`]. Blank answers and
    /// labels outside the five categories are not votes; items with fewer
    /// than [`min_votes`](Self::min_votes) valid votes are incomplete (the
    /// original asked 3 workers: use [`Aggregator::original`]).
    ///
    /// The result's label set is `[ACTIONABLE, NOT_ACTIONABLE]`; agreement
    /// and confidence are the share of votes on the winning side; worker
    /// reports compare each worker's side with the item's.
    ///
    /// ```
    /// use streamsift::aggregate::{Aggregator, Answer, ACTIONABLE, NOT_ACTIONABLE};
    /// let answers = [
    ///     Answer::new("t1", "a", "angry"),
    ///     Answer::new("t1", "b", "question"),
    ///     Answer::new("t1", "c", "none"),
    ///     Answer::new("t2", "a", "request"),
    ///     Answer::new("t2", "b", "none"),
    ///     Answer::new("t2", "c", "none"),
    /// ];
    /// let out = Aggregator::original().original_rule(&answers);
    /// assert_eq!(out.items[0].label, ACTIONABLE);
    /// assert_eq!(out.items[1].label, NOT_ACTIONABLE);
    /// ```
    pub fn original_rule(&self, answers: &[Answer]) -> Aggregation {
        let collapsed: Vec<Answer> = answers
            .iter()
            .map(|a| {
                let text = a.label.trim();
                let side = if text.is_empty() {
                    ""
                } else if text == NONE_OF_THE_ABOVE {
                    NOT_ACTIONABLE
                } else if ORIGINAL_CATEGORIES.contains(&text) {
                    ACTIONABLE
                } else {
                    // Not one of the five: stays unknown.
                    text
                };
                Answer::new(a.item_id.clone(), a.worker.clone(), side)
            })
            .collect();
        let binary = Aggregator {
            labels: vec![
                Label::from_static(ACTIONABLE),
                Label::from_static(NOT_ACTIONABLE),
            ],
            ..self.clone()
        };
        let ix = binary.index(&collapsed);
        let mut posteriors = Vec::with_capacity(ix.items.len());
        for votes in &ix.votes {
            if votes.len() < self.min_votes {
                posteriors.push(None);
                continue;
            }
            let yes = votes.iter().filter(|(_, l)| *l == 0).count() as f64;
            let share = yes / votes.len() as f64;
            posteriors.push(Some(vec![share, 1.0 - share]));
        }
        // The decision for each item by the rule itself.
        let decide: Vec<Option<usize>> = ix
            .votes
            .iter()
            .map(|votes| {
                (votes.len() >= self.min_votes)
                    .then(|| usize::from(votes.iter().filter(|(_, l)| *l == 0).count() < 2))
            })
            .collect();
        binary.finish(&ix, &posteriors, Some(&decide), Fit::Votes)
    }

    /// Dawid–Skene EM. Starts from the majority vote shares, then
    /// alternates: estimate the class priors and each worker's confusion
    /// matrix (smoothed) from the current posteriors; recompute each item's
    /// posterior from the priors and its workers' matrices. Stops when no
    /// posterior moves by more than the tolerance, or at the iteration cap.
    /// Deterministic: the same answers in the same order give the same
    /// result. Ties in the final posterior go to the label first in the set.
    ///
    /// Only complete items (with [`min_votes`](Self::min_votes) valid
    /// votes) take part.
    ///
    /// Dawid–Skene learns how reliable each worker is from the items that
    /// several workers answered. When no complete item has two or more valid
    /// votes (one person labeling alone, say) there is nothing to learn it
    /// from, and EM only drifts towards the commonest label; then this
    /// returns [`majority`](Self::majority) instead (`iterations` is 0).
    ///
    /// ```
    /// use streamsift::aggregate::{Aggregator, Answer, DawidSkene};
    /// let answers = [
    ///     Answer::new("t1", "a", "yes"),
    ///     Answer::new("t1", "b", "yes"),
    ///     Answer::new("t1", "c", "no"),
    /// ];
    /// let out = Aggregator::new(["yes", "no"]).dawid_skene(&answers, &DawidSkene::default());
    /// assert_eq!(out.items[0].label, "yes");
    /// assert!(out.items[0].confidence > 0.5);
    /// ```
    pub fn dawid_skene(&self, answers: &[Answer], settings: &DawidSkene) -> Aggregation {
        let ix = self.index(answers);
        let k = self.labels.len();
        let w = ix.workers.len();
        let complete: Vec<usize> = (0..ix.items.len())
            .filter(|&i| ix.votes[i].len() >= self.min_votes)
            .collect();
        if complete.iter().all(|&i| ix.votes[i].len() < 2) {
            return self.majority(answers);
        }
        // Initial posteriors: the majority vote shares.
        let mut post: Vec<Vec<f64>> = complete
            .iter()
            .map(|&i| {
                let mut p = vec![0.0; k];
                for &(_, l) in &ix.votes[i] {
                    p[l] += 1.0;
                }
                let n = ix.votes[i].len() as f64;
                p.iter_mut().for_each(|x| *x /= n);
                p
            })
            .collect();
        let smoothing = settings.smoothing.max(0.0);
        let prior_smoothing = settings.prior_smoothing.max(0.0);
        let mut iterations = 0;
        let mut converged = complete.is_empty() || k == 0;
        while !converged && iterations < settings.max_iterations {
            iterations += 1;
            // M-step.
            let mut prior = vec![prior_smoothing; k];
            for p in &post {
                for (c, x) in p.iter().enumerate() {
                    prior[c] += x;
                }
            }
            let total: f64 = prior.iter().sum();
            let log_prior: Vec<f64> = prior.iter().map(|p| safe_ln(p / total)).collect();
            let mut confusion = vec![vec![vec![smoothing; k]; k]; w];
            for (p, &i) in post.iter().zip(&complete) {
                for &(worker, l) in &ix.votes[i] {
                    for (c, x) in p.iter().enumerate() {
                        confusion[worker][c][l] += x;
                    }
                }
            }
            for m in &mut confusion {
                for row in m.iter_mut() {
                    normalize(row);
                }
            }
            // E-step.
            let mut moved: f64 = 0.0;
            for (p, &i) in post.iter_mut().zip(&complete) {
                let mut log_p = log_prior.clone();
                for &(worker, l) in &ix.votes[i] {
                    for (c, lp) in log_p.iter_mut().enumerate() {
                        *lp += safe_ln(confusion[worker][c][l]);
                    }
                }
                let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut next: Vec<f64> = log_p.iter().map(|x| (x - max).exp()).collect();
                normalize(&mut next);
                for (a, b) in p.iter().zip(&next) {
                    moved = moved.max((a - b).abs());
                }
                *p = next;
            }
            converged = moved <= settings.tolerance;
        }
        let mut posteriors: Vec<Option<Vec<f64>>> = vec![None; ix.items.len()];
        for (p, &i) in post.into_iter().zip(&complete) {
            posteriors[i] = Some(p);
        }
        self.finish(
            &ix,
            &posteriors,
            None,
            Fit::Em {
                iterations,
                converged,
            },
        )
    }

    /// Builds the output from per-item label distributions. `decide`
    /// overrides the argmax (for the original rule). For EM the workers'
    /// confusion counts are soft (weighted by the posterior) and confidence
    /// is the posterior; for the vote rules they count the decisions and
    /// confidence is the vote share.
    fn finish(
        &self,
        ix: &Indexed<'_>,
        posteriors: &[Option<Vec<f64>>],
        decide: Option<&[Option<usize>]>,
        fit: Fit,
    ) -> Aggregation {
        let (soft, iterations, converged) = match fit {
            Fit::Votes => (false, 0, true),
            Fit::Em {
                iterations,
                converged,
            } => (true, iterations, converged),
        };
        let k = self.labels.len();
        let mut items = Vec::new();
        let mut incomplete = Vec::new();
        // Per worker: votes, expected correct, soft counts [truth][answer].
        let mut answers = vec![0usize; ix.workers.len()];
        let mut correct = vec![0.0f64; ix.workers.len()];
        let mut on_labeled = vec![0usize; ix.workers.len()];
        let mut counts = vec![vec![vec![0.0f64; k]; k]; ix.workers.len()];
        for (i, p) in posteriors.iter().enumerate() {
            for &(w, _) in &ix.votes[i] {
                answers[w] += 1;
            }
            let Some(p) = p else {
                if let Some(inc) = self.incomplete(ix, i) {
                    incomplete.push(inc);
                }
                continue;
            };
            let chosen = match decide.and_then(|d| d.get(i).copied().flatten()) {
                Some(c) => c,
                None => argmax_first(p),
            };
            let votes = &ix.votes[i];
            let agreeing = votes.iter().filter(|(_, l)| *l == chosen).count();
            let n = votes.len().max(1) as f64;
            // Soft truth for the workers: the posterior for EM, the decision
            // for the vote rules.
            let truth: Vec<f64> = if soft {
                p.clone()
            } else {
                (0..k)
                    .map(|c| if c == chosen { 1.0 } else { 0.0 })
                    .collect()
            };
            for &(w, l) in votes {
                on_labeled[w] += 1;
                correct[w] += truth.get(l).copied().unwrap_or(0.0);
                for (c, t) in truth.iter().enumerate() {
                    counts[w][c][l] += t;
                }
            }
            let confidence = if soft {
                p.get(chosen).copied().unwrap_or(0.0)
            } else {
                agreeing as f64 / n
            };
            items.push(ItemLabel {
                item_id: ix.items[i].to_owned(),
                label: self
                    .labels
                    .get(chosen)
                    .cloned()
                    .unwrap_or(Label::from_static("")),
                agreement: agreeing as f64 / n,
                confidence,
                votes: votes.len(),
                distribution: self.labels.iter().cloned().zip(p.iter().copied()).collect(),
            });
        }
        let mut workers: Vec<WorkerReport> = (0..ix.workers.len())
            .map(|w| {
                let score = spammer_score(&counts[w]);
                WorkerReport {
                    worker: ix.workers[w].to_owned(),
                    answers: answers[w],
                    accuracy: if on_labeled[w] == 0 {
                        0.0
                    } else {
                        correct[w] / on_labeled[w] as f64
                    },
                    spammer_score: score,
                    spammer: on_labeled[w] >= self.min_answers_to_flag
                        && score < self.spammer_threshold,
                }
            })
            .collect();
        workers.sort_by(|a, b| a.worker.cmp(&b.worker));
        Aggregation {
            items,
            incomplete,
            workers,
            skipped: ix.skipped,
            iterations,
            converged,
        }
    }
}

/// Raykar and Yu's spammer score from soft counts `[truth][answer]`:
/// rows with less than one expected item are left out (too little to
/// say what the worker does on that class); the rest are normalized.
fn spammer_score(counts: &[Vec<f64>]) -> f64 {
    let rows: Vec<Vec<f64>> = counts
        .iter()
        .filter(|row| row.iter().sum::<f64>() >= 1.0)
        .map(|row| {
            let mut r = row.clone();
            normalize(&mut r);
            r
        })
        .collect();
    let k = rows.len();
    if k < 2 {
        // One class seen: nothing tells a spammer from a good worker.
        return 1.0;
    }
    let mut sum = 0.0;
    for a in 0..k {
        for b in a + 1..k {
            sum += rows[a]
                .iter()
                .zip(&rows[b])
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>();
        }
    }
    (sum / (k * (k - 1)) as f64).clamp(0.0, 1.0)
}

fn normalize(v: &mut [f64]) {
    let total: f64 = v.iter().sum();
    if total > 0.0 && total.is_finite() {
        v.iter_mut().for_each(|x| *x /= total);
    } else if !v.is_empty() {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
    }
}

fn safe_ln(x: f64) -> f64 {
    if x > 0.0 { x.ln() } else { -1e300_f64.sqrt() }
}

/// The index of the largest value; the first on ties.
fn argmax_first(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in p.iter().enumerate() {
        if *x > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(item: &str, worker: &str, label: &str) -> Answer {
        Answer::new(item, worker, label)
    }

    #[test]
    fn dawid_skene_with_one_answer_per_item_is_the_majority_vote() {
        // One person alone: 7 "no", 3 "yes". EM would drift every item to
        // "no"; with nothing to learn reliability from it must keep the votes.
        let agg = Aggregator::new(["yes", "no"]);
        let answers: Vec<Answer> = (0..10)
            .map(|i| a(&format!("t{i}"), "solo", if i < 3 { "yes" } else { "no" }))
            .collect();
        let ds = agg.dawid_skene(&answers, &DawidSkene::default());
        let mv = agg.majority(&answers);
        assert_eq!(ds.iterations, 0);
        for (d, m) in ds.items.iter().zip(&mv.items) {
            assert_eq!(d.item_id, m.item_id);
            assert_eq!(d.label, m.label);
        }
        assert_eq!(ds.items.iter().filter(|i| i.label == "yes").count(), 3);
    }

    #[test]
    fn majority_ties_go_to_the_label_set_order_whatever_the_answer_order() {
        let agg = Aggregator::new(["b", "a"]);
        let one = agg.majority(&[a("x", "1", "a"), a("x", "2", "b")]);
        let two = agg.majority(&[a("x", "2", "b"), a("x", "1", "a")]);
        assert_eq!(one.items[0].label, "b");
        assert_eq!(two.items[0].label, "b");
        assert_eq!(one.items[0].agreement, 0.5);
    }

    #[test]
    fn blank_unknown_and_duplicate_answers_are_not_votes() {
        let agg = Aggregator::new(["yes", "no"]).min_votes(2);
        let out = agg.majority(&[
            a("x", "1", "yes"),
            a("x", "1", "no"),    // duplicate: the first answer counts
            a("x", "2", "  "),    // blank
            a("x", "3", "maybe"), // unknown
            a("y", "1", "no"),
            a("y", "2", "no"),
        ]);
        assert_eq!(
            out.skipped,
            Skipped {
                blank: 1,
                unknown_label: 1,
                duplicate: 1
            }
        );
        assert_eq!(out.items.len(), 1);
        assert_eq!(out.items[0].item_id, "y");
        assert_eq!(
            out.incomplete,
            vec![Incomplete {
                item_id: "x".into(),
                votes: 1,
                needed: 2,
                blank: 1,
                unknown_label: 1
            }]
        );
    }

    #[test]
    fn the_original_rule_needs_two_non_none_votes_and_ignores_blanks() {
        let agg = Aggregator::original();
        let out = agg.original_rule(&[
            // 2 of 3 non-None: actionable.
            a("t1", "a", "angry"),
            a("t1", "b", "request"),
            a("t1", "c", "none"),
            // The original counted the blank as actionable; we do not, so
            // this item has 2 votes and is incomplete.
            a("t2", "a", "question"),
            a("t2", "b", ""),
            a("t2", "c", "none"),
            // 1 of 3: not actionable.
            a("t3", "a", "problem_report"),
            a("t3", "b", "none"),
            a("t3", "c", "none"),
        ]);
        assert_eq!(out.item("t1").map(|i| i.label.as_str()), Some(ACTIONABLE));
        assert_eq!(
            out.item("t3").map(|i| i.label.as_str()),
            Some(NOT_ACTIONABLE)
        );
        assert!(out.item("t2").is_none());
        assert_eq!(out.incomplete[0].item_id, "t2");
        assert_eq!(out.incomplete[0].blank, 1);
        let t1 = out.item("t1").map(|i| i.confidence);
        assert!(t1.is_some_and(|c| (c - 2.0 / 3.0).abs() < 1e-12));
        // With only 2 votes asked, one non-None of two is not enough.
        let loose = Aggregator::original()
            .min_votes(2)
            .original_rule(&[a("t", "a", "angry"), a("t", "b", "none")]);
        assert_eq!(loose.items[0].label, NOT_ACTIONABLE);
    }

    #[test]
    fn dawid_skene_trusts_the_reliable_worker_on_a_three_way_split() {
        // Three reliable workers agree on 40 items; a spammer answers
        // at random. On item "split", each answers differently: majority
        // takes the first label, Dawid–Skene the reliable worker's.
        let labels = ["a", "b", "c"];
        let mut answers = Vec::new();
        for i in 0..40 {
            let truth = labels[i % 3];
            let item = format!("i{i}");
            answers.push(a(&item, "good1", truth));
            answers.push(a(&item, "good2", truth));
            let noise = crate::util::splitmix64(i as u64) % 3;
            answers.push(a(&item, "spam", labels[noise as usize]));
        }
        answers.push(a("split", "spam", "a"));
        answers.push(a("split", "good1", "c"));
        answers.push(a("split", "other", "b"));
        let agg = Aggregator::new(labels);
        let mv = agg.majority(&answers);
        assert_eq!(mv.item("split").map(|i| i.label.as_str()), Some("a"));
        let ds = agg.dawid_skene(&answers, &DawidSkene::default());
        let split = ds.item("split").expect("labeled");
        assert_eq!(split.label, "c");
        assert!(split.confidence > 0.5, "{split:?}");
        assert!((split.distribution.iter().map(|(_, p)| p).sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(ds.converged, "{} iterations", ds.iterations);
        let good = ds.worker("good1").expect("report");
        let spam = ds.worker("spam").expect("report");
        assert!(good.accuracy > 0.95, "{good:?}");
        assert!(spam.accuracy < 0.6, "{spam:?}");
        assert!(spam.spammer && !good.spammer, "{:?}", ds.workers);
        // Deterministic.
        assert_eq!(ds, agg.dawid_skene(&answers, &DawidSkene::default()));
    }

    #[test]
    fn always_the_same_answer_is_flagged_as_a_spammer() {
        let mut answers = Vec::new();
        for i in 0..30 {
            let truth = if i % 2 == 0 { "yes" } else { "no" };
            let item = format!("i{i}");
            answers.push(a(&item, "g1", truth));
            answers.push(a(&item, "g2", truth));
            answers.push(a(&item, "lazy", "no"));
        }
        let out = Aggregator::new(["yes", "no"]).majority(&answers);
        assert_eq!(out.spammers(), vec!["lazy"]);
        assert!(out.worker("lazy").is_some_and(|w| w.spammer_score < 1e-9));
        assert!(
            out.worker("g1")
                .is_some_and(|w| (w.spammer_score - 1.0).abs() < 1e-9)
        );
    }

    #[test]
    fn few_answers_are_not_enough_to_flag() {
        let out = Aggregator::new(["yes", "no"]).majority(&[
            a("x", "lazy", "no"),
            a("y", "lazy", "no"),
            a("x", "g", "yes"),
            a("y", "g", "no"),
        ]);
        assert!(out.spammers().is_empty(), "{:?}", out.workers);
    }

    #[test]
    fn empty_input_and_empty_label_set_do_not_panic() {
        let agg = Aggregator::new(Vec::<&str>::new());
        let out = agg.dawid_skene(&[a("x", "w", "yes")], &DawidSkene::default());
        assert!(out.items.is_empty());
        assert_eq!(out.incomplete.len(), 1);
        assert_eq!(out.skipped.unknown_label, 1);
        let none = Aggregator::new(["a"]).dawid_skene(&[], &DawidSkene::default());
        assert!(none.items.is_empty() && none.workers.is_empty() && none.converged);
    }

    #[test]
    fn answers_from_results_keeps_every_vote() {
        use crate::labeler::{TaskId, Vote};
        let r = LabelResult {
            task: TaskId("t".into()),
            item_id: "x".into(),
            label: Label::from_static("a"),
            agreement: 1.0,
            votes: vec![
                Vote {
                    worker: "1".into(),
                    label: Label::from_static("a"),
                },
                Vote {
                    worker: "2".into(),
                    label: Label::from_static("b"),
                },
            ],
        };
        let answers = answers_from_results(&[r]);
        assert_eq!(answers, vec![a("x", "1", "a"), a("x", "2", "b")]);
    }
}
