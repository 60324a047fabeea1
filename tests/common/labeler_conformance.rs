//! The `Labeler` conformance suite, for labelers whose answers come from
//! outside the process: a simulated crowd (time passes), Mechanical Turk
//! (a scripted HTTP layer returns assignments), a web page (people post
//! answers). The caller supplies a [`LabelerHarness`] that builds the
//! labeler and makes the (simulated) people answer every task submitted so
//! far; the suite drives the `Labeler` contract through it.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use streamsift::{LabelResult, LabelTask, Labeler, TaskId};

/// What the suite needs from the world around a labeler.
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
        results.extend(labeler.collect().await.expect("collect"));
        if results.len() >= expected {
            break;
        }
    }
    results
}

/// The `Labeler` contract:
/// - an empty submit is fine and returns no ids;
/// - `submit` returns one `TaskId` per task, in order, distinct per item;
/// - submitting an item id again (in the same call or later, before or
///   after its result is collected) returns the same `TaskId` and creates
///   no new task;
/// - once people have answered, `collect` returns each finished result
///   exactly once, with its item id and task id as submitted, at least one
///   vote, a label among `allowed`, and agreement in `[0, 1]`;
/// - tasks carry no prediction (labelers must not need one).
///
/// `items` are (item id, item) pairs with distinct ids; at least two.
/// Returns the results, sorted by item id, for backend-specific checks.
pub async fn labeler_conformance<T, H>(
    harness: &mut H,
    items: &[(String, T)],
    allowed: &[&str],
) -> Vec<LabelResult>
where
    T: Sync,
    H: LabelerHarness<T>,
{
    assert!(items.len() >= 2, "the suite needs at least two items");
    let labeler = harness.build().await;

    let none = labeler.submit(&[]).await.expect("empty submit");
    assert!(none.is_empty(), "an empty submit returns no ids");

    // Submit all but the last item, with the first one twice in the call.
    let (last_id, last_item) = &items[items.len() - 1];
    let mut tasks: Vec<LabelTask<'_, T>> = items[..items.len() - 1]
        .iter()
        .map(|(id, item)| LabelTask {
            id,
            item,
            prediction: None,
        })
        .collect();
    tasks.push(tasks[0]);
    let ids = labeler.submit(&tasks).await.expect("submit");
    assert_eq!(ids.len(), tasks.len(), "one TaskId per task");
    assert_eq!(
        ids[0],
        ids[ids.len() - 1],
        "the same item twice in one call is one task"
    );
    let distinct: HashSet<&TaskId> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        items.len() - 1,
        "one task per distinct item"
    );
    let mut by_item: HashMap<String, TaskId> = tasks
        .iter()
        .zip(&ids)
        .map(|(t, id)| (t.id.to_owned(), id.clone()))
        .collect();

    // A later call: the last item (new) and the second (again), in order.
    let later = [
        LabelTask {
            id: last_id,
            item: last_item,
            prediction: None,
        },
        tasks[1],
    ];
    let ids2 = labeler.submit(&later).await.expect("second submit");
    assert_eq!(ids2.len(), 2, "one TaskId per task");
    assert_eq!(ids2[1], ids[1], "resubmitting an item returns its task");
    assert!(!distinct.contains(&ids2[0]), "a new item gets a new task");
    by_item.insert(last_id.clone(), ids2[0].clone());

    let results = collect_all(harness, &labeler, &by_item, items.len(), 5).await;
    let mut seen = HashSet::new();
    for r in &results {
        assert!(
            seen.insert(r.item_id.clone()),
            "{} collected more than once",
            r.item_id
        );
        let task = by_item
            .get(&r.item_id)
            .unwrap_or_else(|| panic!("unknown item id {:?} collected", r.item_id));
        assert_eq!(&r.task, task, "the result names the item's task");
        assert!(!r.votes.is_empty(), "{}: a result has votes", r.item_id);
        assert!(
            allowed.contains(&r.label.as_str()),
            "label {:?} is not one of {allowed:?}",
            r.label
        );
        assert!(
            (0.0..=1.0).contains(&r.agreement),
            "agreement {} out of [0, 1]",
            r.agreement
        );
    }
    assert_eq!(
        seen.len(),
        items.len(),
        "every item's result comes back once answered"
    );

    // Nothing more, even after answering again; a resubmission after
    // collection is still the same task and is not redone.
    let again = labeler
        .submit(&[tasks[0]])
        .await
        .expect("resubmit after collect");
    assert_eq!(again, [ids[0].clone()], "a collected item keeps its task");
    harness.answer_all(&labeler, &by_item).await;
    let extra = labeler.collect().await.expect("collect again");
    assert!(
        extra.is_empty(),
        "each result is collected once: got {} more",
        extra.len()
    );

    let mut results = results;
    results.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    results
}
