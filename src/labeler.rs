//! Labeling: sending items to people and getting their labels back.

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
    /// band. Labelers should not show it to workers (it biases them).
    pub prediction: Option<&'a Prediction>,
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
