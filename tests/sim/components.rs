//! The world's components: each asks the oracle for its fault, logs its
//! call (start, end or cancellation, result), and then behaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use streamsift::router::dedup::DedupStoreError;
use streamsift::router::digest::DIGEST_SHARD;
use streamsift::router::{
    BoxRouter, Dedup, DedupKey, DedupStore, Digest, DigestBatch, MemoryDedupStore,
};

use streamsift::{
    ClassifyError, DeadLetter, DeadLetterError, DeadLetterSink, DecodeError, Decoder, Delivery,
    Json, LabelError, LabelResult, LabelTask, Labeler, Prediction, Receipt, Record, RouteError,
    Router, TaskId,
};

use super::oracle::{Oracle, Outcome};
use super::plan::{Comp, Fault, Mutation, ROUTE};

/// The decoded item. Its `Debug` leaves the customer's text out.
#[derive(Clone, serde::Deserialize)]
pub struct Item {
    /// The record id.
    pub id: String,
    /// The score the classifier returns.
    pub score: f64,
    /// Customer text.
    pub text: String,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("id", &self.id)
            .field("score", &self.score)
            .field("text_len", &self.text.len())
            .finish()
    }
}

/// The payload prefix of an intentional panic (the panic hook stays quiet
/// for these).
pub const POISON: &str = "sim-poison";

/// The decoder: the real `Json` decoder, with a panic on poison records.
pub fn decoder(oracle: Oracle) -> impl Fn(&Record) -> Result<Item, DecodeError> + Send + Sync {
    move |record: &Record| {
        let rec = oracle.rec(&record.id);
        let (guard, fault, _) = oracle.begin(Comp::Decode, rec);
        if fault == Fault::Panic {
            guard.finish(Outcome::Panicked);
            panic!("{POISON}: decoder panicked on record {}", record.id);
        }
        let decoded = Json::<Item>::new().decode(record);
        guard.finish(match &decoded {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Err(e.kind()),
        });
        decoded
    }
}

/// Sleeps as the fault says; returns whether to answer correctly after.
async fn behave(fault: Fault, pace: Duration) {
    if !pace.is_zero() {
        tokio::time::sleep(pace).await;
    }
    match fault {
        Fault::Slow(d) | Fault::Hang(d) | Fault::LostSlow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
}

/// The classifier: the payload's score, with faults.
#[derive(Clone)]
pub struct SimClassifier(pub Oracle);

impl streamsift::Classifier<Item> for SimClassifier {
    async fn classify(&self, item: &Item) -> Result<Prediction, ClassifyError> {
        let rec = self.0.rec(&item.id);
        let (guard, fault, pace) = self.0.begin(Comp::Classify, rec);
        behave(fault, pace).await;
        match fault {
            Fault::Panic => {
                guard.finish(Outcome::Panicked);
                panic!("{POISON}: classifier panicked on {}", item.id);
            }
            Fault::Retryable(true) => {
                guard.finish(Outcome::Err("throttled"));
                Err(ClassifyError::throttled("sim: slow down"))
            }
            Fault::Retryable(false) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                Err(ClassifyError::unavailable("sim: model endpoint 503"))
            }
            Fault::Permanent => {
                guard.finish(Outcome::Err("permanent"));
                Err(ClassifyError::permanent("sim: model rejected the input"))
            }
            _ => {
                guard.finish(Outcome::Ok);
                Ok(Prediction::binary("actionable", "noise", item.score))
            }
        }
    }
}

/// The router: the notify route, and the review route when there is no
/// labeler.
#[derive(Clone)]
pub struct SimRouter(pub Oracle);

impl Router<Item> for SimRouter {
    /// It takes every route, the review route included.
    fn handles_route(&self, _route: &streamsift::Label) -> Option<bool> {
        Some(true)
    }

    async fn route(&self, d: &Delivery<'_, Item>) -> Result<Receipt, RouteError> {
        let review = *d.route == streamsift::REVIEW_ROUTE;
        let comp = if review { Comp::Review } else { Comp::Route };
        let rec = self.0.rec(&d.record.id);
        let route = d.route.clone();
        let id = d.record.id.clone();
        let (guard, fault, pace) = self.0.begin(comp, rec);
        behave(fault, pace).await;
        match fault {
            Fault::Panic => {
                guard.finish(Outcome::Panicked);
                panic!("{POISON}: router panicked on {id}");
            }
            Fault::Retryable(true) => {
                guard.finish(Outcome::Err("throttled"));
                Err(RouteError::throttled("sim: rate exceeded"))
            }
            Fault::Retryable(false) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                Err(RouteError::unavailable("sim: 503"))
            }
            Fault::Permanent => {
                guard.finish(Outcome::Err("permanent"));
                Err(RouteError::permanent("sim: no such topic"))
            }
            Fault::Skip if !review => {
                let idx = guard.idx();
                guard.finish(Outcome::Skipped);
                if d.record.shard.as_str() == DIGEST_SHARD {
                    let recs: Vec<usize> = d
                        .item
                        .text
                        .split(' ')
                        .filter_map(|id| self.0.rec(id))
                        .collect();
                    self.0.digest_accepted(&recs, idx);
                }
                let mut receipt = Receipt::new(route);
                receipt.skipped = true;
                Ok(receipt)
            }
            _ => {
                let lie = !review && self.0.plan().mutation == Mutation::LyingRouter;
                if lie {
                    self.0.mutated();
                }
                let idx = guard.idx();
                guard.finish(if lie { Outcome::Lied } else { Outcome::Ok });
                if !lie && d.record.shard.as_str() == DIGEST_SHARD {
                    let recs: Vec<usize> = d
                        .item
                        .text
                        .split(' ')
                        .filter_map(|id| self.0.rec(id))
                        .collect();
                    self.0.digest_accepted(&recs, idx);
                }
                Ok(Receipt::new(route).with_message_id(format!("msg-{id}")))
            }
        }
    }
}

/// The labeler of the review band.
#[derive(Clone)]
pub struct SimLabeler(pub Oracle);

#[async_trait::async_trait]
impl Labeler<Item> for SimLabeler {
    async fn submit(&self, tasks: &[LabelTask<'_, Item>]) -> Result<Vec<TaskId>, LabelError> {
        let ids: Vec<String> = tasks.iter().map(|t| t.item_id.to_string()).collect();
        let rec = ids.first().and_then(|id| self.0.rec(id));
        let (guard, fault, pace) = self.0.begin(Comp::Review, rec);
        behave(fault, pace).await;
        match fault {
            Fault::Panic => {
                guard.finish(Outcome::Panicked);
                panic!("{POISON}: labeler panicked on {ids:?}");
            }
            Fault::Retryable(true) => {
                guard.finish(Outcome::Err("throttled"));
                Err(LabelError::throttled("sim: too many tasks"))
            }
            Fault::Retryable(false) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                Err(LabelError::unavailable("sim: labeling service down"))
            }
            Fault::Permanent => {
                guard.finish(Outcome::Err("permanent"));
                Err(LabelError::permanent("sim: task rejected"))
            }
            _ => {
                guard.finish(Outcome::Ok);
                Ok(ids.into_iter().map(TaskId).collect())
            }
        }
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(Vec::new())
    }
}

/// The dead-letter sink.
#[derive(Clone)]
pub struct SimDeadLetter(pub Oracle);

#[async_trait::async_trait]
impl DeadLetterSink for SimDeadLetter {
    async fn store(&self, dead: &DeadLetter) -> Result<(), DeadLetterError> {
        let rec = self.0.rec(&dead.record.id);
        let (guard, fault, pace) = self.0.begin(Comp::Dead, rec);
        behave(fault, pace).await;
        match fault {
            Fault::Panic => {
                guard.finish(Outcome::Panicked);
                panic!("{POISON}: dead-letter sink panicked");
            }
            Fault::Retryable(_) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                Err(DeadLetterError::unavailable("sim: dead-letter store down"))
            }
            _ => {
                if let Some(r) = rec {
                    self.0.dead_lettered(r, dead.stage, &dead.kind);
                }
                guard.finish(Outcome::Ok);
                Ok(())
            }
        }
    }
}

/// Hygiene: the seed's shared `MemoryDedupStore`, whose write takes the
/// plan's fsync time, telling the oracle when a key is written.
#[derive(Clone)]
pub struct SimDedupStore {
    oracle: Oracle,
    store: Arc<MemoryDedupStore>,
    delay: Duration,
    keys: Arc<HashMap<DedupKey, usize>>,
}

impl SimDedupStore {
    /// The store of the seed (the oracle holds it across runs).
    pub fn new(oracle: Oracle) -> Option<SimDedupStore> {
        let (store, plan) = {
            let s = oracle.lock();
            (s.dedup_store.clone()?, s.plan.clone())
        };
        let keys = plan
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (DedupKey::record_id(&r.id), i))
            .collect();
        Some(SimDedupStore {
            oracle,
            store,
            delay: plan.dedup?,
            keys: Arc::new(keys),
        })
    }
}

impl DedupStore for SimDedupStore {
    fn contains(&self, key: &DedupKey) -> bool {
        self.store.contains(key)
    }

    async fn insert(&self, key: DedupKey) -> Result<(), DedupStoreError> {
        tokio::time::sleep(self.delay).await;
        let rec = self.keys.get(&key).copied();
        if self.oracle.plan().mutation == Mutation::DedupForgets {
            if let Some(r) = rec {
                self.oracle.dedup_dropped(r);
            }
            return Ok(());
        }
        self.store.insert(key).await?;
        if let Some(r) = rec {
            self.oracle.dedup_recorded(r);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.store.len()
    }

    fn window(&self) -> Duration {
        self.store.window()
    }
}

/// The `DigestTwice` mutation: sends each digest delivery twice.
struct Twice(SimRouter);

impl Router<Item> for Twice {
    fn handles_route(&self, _route: &streamsift::Label) -> Option<bool> {
        Some(true)
    }

    async fn route(&self, d: &Delivery<'_, Item>) -> Result<Receipt, RouteError> {
        let receipt = self.0.route(d).await?;
        if d.record.shard.as_str() != DIGEST_SHARD
            || self.0.0.plan().mutation != Mutation::DigestTwice
        {
            return Ok(receipt);
        }
        self.0.0.mutated();
        self.0.route(d).await
    }
}

/// The digest item: the folded record ids, space-separated (no customer text).
fn digest_item(batch: &DigestBatch<'_, Item>) -> Item {
    let ids: Vec<&str> = batch.entries.iter().map(|e| e.record_id.as_str()).collect();
    Item {
        id: format!("digest of {}", batch.total()),
        score: 1.0,
        text: ids.join(" "),
    }
}

/// The router the pipeline gets: `SimRouter`, with the notify route behind
/// `Dedup(Digest(..))` in hygiene worlds (either or both); it tells the
/// oracle how each `Dedup` call ended, which skipped receipts `Dedup` gave
/// itself, and what the stack answered.
pub struct HygieneRouter {
    oracle: Oracle,
    sim: SimRouter,
    notify: Option<BoxRouter<Item>>,
    dedup: Option<Dedup<BoxRouter<Item>, SimDedupStore>>,
}

impl HygieneRouter {
    /// The seed's router.
    pub fn new(oracle: Oracle) -> HygieneRouter {
        let sim = SimRouter(oracle.clone());
        let plan = oracle.plan();
        let base = match plan.digest {
            Some((n, window)) => BoxRouter::new(
                Digest::new(
                    BoxRouter::new(Twice(sim.clone())),
                    n,
                    window,
                    digest_item as fn(&DigestBatch<'_, Item>) -> Item,
                )
                .max_entries(100_000),
            ),
            None => BoxRouter::new(sim.clone()),
        };
        let dedup = SimDedupStore::new(oracle.clone()).map(|store| Dedup::new(base.clone(), store));
        let notify = (plan.digest.is_some() || dedup.is_some()).then_some(base);
        HygieneRouter {
            oracle,
            sim,
            notify,
            dedup,
        }
    }
}
/// Tells the oracle a `Dedup` call ended, or was dropped.
struct DedupCall {
    oracle: Oracle,
    rec: usize,
    finished: bool,
}

impl Drop for DedupCall {
    fn drop(&mut self) {
        self.oracle.dedup_call_end(self.rec, !self.finished);
    }
}

impl Router<Item> for HygieneRouter {
    fn handles_route(&self, _route: &streamsift::Label) -> Option<bool> {
        Some(true)
    }

    async fn route(&self, d: &Delivery<'_, Item>) -> Result<Receipt, RouteError> {
        let rec = self.oracle.rec(&d.record.id);
        let (Some(notify), Some(r), false) =
            (&self.notify, rec, *d.route == streamsift::REVIEW_ROUTE)
        else {
            return self.sim.route(d).await;
        };
        let result = match &self.dedup {
            None => self.early(notify.route(d)).await,
            Some(dedup) => {
                let before = self.oracle.route_calls(r);
                let accepts = self.oracle.dedup_accepts(r);
                let mut call = DedupCall {
                    oracle: self.oracle.clone(),
                    rec: r,
                    finished: false,
                };
                let result = self.early(dedup.route(d)).await;
                if let Ok(receipt) = &result {
                    if receipt.skipped && self.oracle.route_calls(r) == before {
                        self.oracle.dedup_skipped(r);
                    }
                    self.oracle.dedup_answered(r, accepts);
                }
                call.finished = true;
                drop(call);
                result
            }
        };
        if result.is_ok() && self.oracle.plan().digest.is_some() {
            self.oracle.stack_answered(r);
        }
        result
    }
}

impl HygieneRouter {
    /// The `DigestEarly` mutation: answer Ok if the stack has not answered
    /// within 50 ms.
    async fn early(
        &self,
        fut: impl Future<Output = Result<Receipt, RouteError>>,
    ) -> Result<Receipt, RouteError> {
        if self.oracle.plan().mutation != Mutation::DigestEarly {
            return fut.await;
        }
        tokio::select! {
            result = fut => result,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                self.oracle.mutated();
                Ok(Receipt::new(ROUTE))
            }
        }
    }
}
