//! The [`Labeler`] conformance suite, for labelers whose answers come from
//! outside the process: a simulated crowd (time passes), Mechanical Turk
//! (a scripted HTTP layer returns assignments), a web page (people post
//! answers). You supply a [`LabelerHarness`] that builds the labeler and
//! makes the (simulated) people answer every task submitted so far; the
//! suite drives the `Labeler` contract through it.
//!
//! # Rules
//!
//! A conforming labeler keeps these rules; the suite names the one broken.
//!
//! 1. **`empty-submit`**: submitting no tasks succeeds and returns no ids.
//! 2. **`one-id-per-task`**: `submit` returns one [`TaskId`] per task, in
//!    order, distinct per item.
//! 3. **`resubmit-same-task`**: submitting an item id again (in the same
//!    call or later, before or after its result is collected) returns the
//!    same `TaskId` and creates no new task. The pipeline submits at least
//!    once: after a restart, items in review come again, and paying people
//!    twice for them is the bug this rule catches.
//! 4. **`collect-once`**: once people have answered, `collect` returns each
//!    finished result exactly once, naming the item id and task id as
//!    submitted.
//! 5. **`result-shape`**: a result has at least one vote, a label among the
//!    allowed ones, and agreement in `[0, 1]`.
//! 6. **`calls-succeed`**: `submit` and `collect` do not fail while the
//!    backend is healthy.
//!
//! Tasks carry no prediction (`prediction: None`): a labeler must not need
//! one.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use super::ensure;
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId};

const SUITE: &str = "labeler";

/// What the suite needs from the world around a labeler: building it, and
/// making the people answer.
pub trait LabelerHarness<T: Sync> {
    /// The labeler under test.
    type Labeler: Labeler<T>;

    /// Builds a fresh labeler with no tasks.
    fn build(&mut self) -> impl Future<Output = Self::Labeler> + Send;

    /// Makes the people answer every task submitted so far (advance the
    /// clock, script the assignments, post the answers). `tasks` maps each
    /// submitted item id to its task id.
    fn answer_all(
        &mut self,
        labeler: &Self::Labeler,
        tasks: &HashMap<String, TaskId>,
    ) -> impl Future<Output = ()> + Send;
}

/// Unwraps a labeler call, or reports rule `calls-succeed` broken.
#[track_caller]
fn ok<V>(result: Result<V, crate::error::LabelError>, what: &str) -> V {
    match result {
        Ok(v) => v,
        Err(e) => super::broken(SUITE, "calls-succeed", format_args!("{what} failed: {e}")),
    }
}

/// Collects until every id in `expected` has come back, answering between
/// rounds, at most `rounds` times. Returns the results in arrival order.
async fn collect_all<T: Sync, H: LabelerHarness<T>>(
    harness: &mut H,
    labeler: &H::Labeler,
    tasks: &HashMap<String, TaskId>,
    expected: usize,
    rounds: usize,
) -> Vec<LabelResult> {
    let mut results = Vec::new();
    for _ in 0..rounds {
        harness.answer_all(labeler, tasks).await;
        results.extend(ok(labeler.collect().await, "collect"));
        if results.len() >= expected {
            break;
        }
    }
    results
}

/// Runs every rule (see the [module docs](self)) on the labeler that
/// `harness` builds, with `items`: (item id, item) pairs with distinct ids,
/// at least two. Returns the results, sorted by item id, for checks of
/// your own.
///
/// # Panics
/// At the first broken rule, naming it.
pub async fn conformance<T, H>(
    harness: &mut H,
    items: &[(String, T)],
    allowed: &[&str],
) -> Vec<LabelResult>
where
    T: Sync,
    H: LabelerHarness<T>,
{
    assert!(
        items.len() >= 2,
        "the labeler suite needs at least two items"
    );
    let labeler = harness.build().await;

    let none = ok(labeler.submit(&[]).await, "an empty submit");
    ensure!(
        SUITE,
        "empty-submit",
        none.is_empty(),
        "an empty submit returned {} ids",
        none.len()
    );

    // Submit all but the last item, with the first one twice in the call.
    let (last_id, last_item) = &items[items.len() - 1];
    let mut tasks: Vec<LabelTask<'_, T>> = items[..items.len() - 1]
        .iter()
        .map(|(id, item)| LabelTask {
            item_id: id,
            item,
            prediction: None,
            suggestion: None,
        })
        .collect();
    tasks.push(tasks[0]);
    let ids = ok(labeler.submit(&tasks).await, "submit");
    ensure!(
        SUITE,
        "one-id-per-task",
        ids.len() == tasks.len(),
        "a submit of {} tasks returned {} ids",
        tasks.len(),
        ids.len()
    );
    ensure!(
        SUITE,
        "resubmit-same-task",
        ids[0] == ids[ids.len() - 1],
        "item {} twice in one submit got two tasks: {} and {}",
        tasks[0].item_id,
        ids[0],
        ids[ids.len() - 1]
    );
    let distinct: HashSet<&TaskId> = ids.iter().collect();
    ensure!(
        SUITE,
        "one-id-per-task",
        distinct.len() == items.len() - 1,
        "{} distinct items got {} distinct task ids",
        items.len() - 1,
        distinct.len()
    );
    let mut by_item: HashMap<String, TaskId> = tasks
        .iter()
        .zip(&ids)
        .map(|(t, id)| (t.item_id.to_owned(), id.clone()))
        .collect();

    // A later call: the last item (new) and the second (again), in order.
    let later = [
        LabelTask {
            item_id: last_id,
            item: last_item,
            prediction: None,
            suggestion: None,
        },
        tasks[1],
    ];
    let ids2 = ok(labeler.submit(&later).await, "a second submit");
    ensure!(
        SUITE,
        "one-id-per-task",
        ids2.len() == 2,
        "a submit of 2 tasks returned {} ids",
        ids2.len()
    );
    ensure!(
        SUITE,
        "resubmit-same-task",
        ids2[1] == ids[1],
        "item {} submitted again got task {}, first {}",
        tasks[1].item_id,
        ids2[1],
        ids[1]
    );
    ensure!(
        SUITE,
        "one-id-per-task",
        !distinct.contains(&ids2[0]),
        "new item {last_id} got task {}, which another item already has",
        ids2[0]
    );
    by_item.insert(last_id.clone(), ids2[0].clone());

    let results = collect_all(harness, &labeler, &by_item, items.len(), 5).await;
    let mut seen = HashSet::new();
    for r in &results {
        ensure!(
            SUITE,
            "collect-once",
            seen.insert(r.item_id.clone()),
            "item {} was collected more than once",
            r.item_id
        );
        let Some(task) = by_item.get(&r.item_id) else {
            super::broken(
                SUITE,
                "collect-once",
                format_args!("collect returned item id {:?}, never submitted", r.item_id),
            )
        };
        ensure!(
            SUITE,
            "collect-once",
            &r.task == task,
            "the result of item {} names task {}, but it was submitted as {task}",
            r.item_id,
            r.task
        );
        ensure!(
            SUITE,
            "result-shape",
            !r.votes.is_empty(),
            "the result of item {} has no votes",
            r.item_id
        );
        ensure!(
            SUITE,
            "result-shape",
            allowed.contains(&r.label.as_str()),
            "item {} got label {:?}, not one of {allowed:?}",
            r.item_id,
            r.label.as_str()
        );
        ensure!(
            SUITE,
            "result-shape",
            (0.0..=1.0).contains(&r.agreement),
            "item {}: agreement {} is not in [0, 1]",
            r.item_id,
            r.agreement
        );
    }
    ensure!(
        SUITE,
        "collect-once",
        seen.len() == items.len(),
        "{} of {} answered items came back from collect",
        seen.len(),
        items.len()
    );

    // Nothing more, even after answering again; a resubmission after
    // collection is still the same task and is not redone.
    let again = ok(
        labeler.submit(&[tasks[0]]).await,
        "a resubmit after collect",
    );
    ensure!(
        SUITE,
        "resubmit-same-task",
        again == [ids[0].clone()],
        "item {} submitted after its result was collected got {again:?}, expected [{}]",
        tasks[0].item_id,
        ids[0]
    );
    harness.answer_all(&labeler, &by_item).await;
    let extra = ok(labeler.collect().await, "a second collect");
    ensure!(
        SUITE,
        "collect-once",
        extra.is_empty(),
        "collect returned {} results again after every result was collected (first: item {})",
        extra.len(),
        extra.first().map_or("", |r| r.item_id.as_str())
    );

    let mut results = results;
    results.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    results
}
