//! Labeling: sending items to people (or to LLM workers) and getting their
//! labels back.
//!
//! - [`Labeler`] is the contract: submit tasks, collect finished results.
//! - [`LlmLabeler`] makes classifiers (a large language model under one or
//!   more prompts or models, or any [`Classifier`](crate::Classifier)) act
//!   as labeling workers, whose votes [`aggregate`](crate::aggregate) weighs
//!   next to people's.

mod llm;

pub use llm::{LlmLabeler, LlmLabelerBuilder, LlmWorkerStats, Unanswered, WorkerFailure};

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::classify::{Label, Prediction};
use crate::error::LabelError;

/// One item to be labeled.
#[derive(Debug)]
pub struct LabelTask<'a, T> {
    /// A stable id for the item (the record id, when the item came from the
    /// pipeline), the same `item_id` its [`LabelResult`] carries; the labeler
    /// must treat a second submission of the same id as the same task.
    pub item_id: &'a str,
    /// The item.
    pub item: &'a T,
    /// The model's prediction, when the item came from the pipeline's review
    /// band. Labelers should not show it to workers (it biases them), unless
    /// they are explicitly configured to (the labeling page's
    /// `suggest_predictions`, feature `label-ui`).
    pub prediction: Option<&'a Prediction>,
    /// A suggestion the caller *wants* shown to the person (from the model
    /// or an LLM), for labeling as review: they accept it with one key or
    /// pick another label. Labelers that cannot show one ignore it;
    /// [`LlmLabeler`] never passes it (nor the prediction) to its workers.
    pub suggestion: Option<&'a Prediction>,
}

impl<'a, T> LabelTask<'a, T> {
    /// A task with neither prediction nor suggestion.
    ///
    /// ```
    /// use streamsift::{LabelTask, Prediction};
    /// let text = "the app crashes".to_string();
    /// let llm = Prediction::from_scores(vec![("problem".into(), 0.8), ("none".into(), 0.2)]).unwrap();
    /// let task = LabelTask::new("t1", &text).with_suggestion(&llm);
    /// assert_eq!(task.suggestion.unwrap().label, "problem");
    /// assert!(task.prediction.is_none());
    /// ```
    pub fn new(item_id: &'a str, item: &'a T) -> Self {
        LabelTask {
            item_id,
            item,
            prediction: None,
            suggestion: None,
        }
    }

    /// Sets the model's prediction (not shown to workers by default).
    pub fn with_prediction(mut self, prediction: &'a Prediction) -> Self {
        self.prediction = Some(prediction);
        self
    }

    /// Sets the suggestion to show the person.
    pub fn with_suggestion(mut self, suggestion: &'a Prediction) -> Self {
        self.suggestion = Some(suggestion);
        self
    }
}

impl<T> Clone for LabelTask<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for LabelTask<'_, T> {}

/// The labeler's handle for a submitted task (a HIT id, a row id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId(pub String);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One worker's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The worker's id.
    pub worker: String,
    /// The label they chose.
    pub label: Label,
}

/// The outcome of a finished labeling task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelResult {
    /// The task.
    pub task: TaskId,
    /// The item's id, as submitted.
    pub item_id: String,
    /// The aggregated label.
    pub label: Label,
    /// The share of votes that agree with `label`, in `[0, 1]`.
    pub agreement: f64,
    /// Every vote.
    pub votes: Vec<Vote>,
}

/// Sends items to people for labeling and collects their answers.
///
/// This is long-running work, measured in hours: [`submit`](Labeler::submit)
/// returns once the tasks are accepted, and [`collect`](Labeler::collect) is
/// polled later for whatever has finished. It is a cold path, so the trait is
/// object-safe (`Box<dyn Labeler<T>>` works).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Labeler of `{T}`",
    label = "not a labeler of `{T}`",
    note = "`.review(..)` takes a type implementing `streamsift::Labeler<{T}>`; call it after `.decode(..)`/`.json::<{T}>()`"
)]
#[async_trait::async_trait]
pub trait Labeler<T: Sync>: Send + Sync {
    /// Submits tasks; returns one id per task, in order. Submitting an id
    /// already submitted returns its existing task rather than a new one.
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError>;

    /// Returns the results that have finished since the last call.
    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError>;
}

#[async_trait::async_trait]
impl<T: Sync, L: Labeler<T> + ?Sized> Labeler<T> for std::sync::Arc<L> {
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        (**self).submit(tasks).await
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        (**self).collect().await
    }
}
