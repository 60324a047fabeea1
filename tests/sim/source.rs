//! The simulated stream: shards with lineage, resuming from a real
//! `CheckpointStore`, with faults on reads and commits.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use streamsift::checkpoint::{CheckpointStore, MemoryCheckpointStore};
use streamsift::{
    Ack, AckMode, Batch, Checkpoint, Position, Record, Sequence, Source, SourceError,
};

use super::oracle::{Oracle, Outcome};
use super::plan::{Comp, Fault, Mutation, Plan, STREAM};

/// How often a reader with nothing to hand out looks again (children
/// waiting for their parents' SHARD_END).
const POLL: Duration = Duration::from_millis(100);

/// One record of the plan as the source hands it out.
pub fn record(plan: &Plan, r: usize) -> Record {
    let rec = &plan.records[r];
    let shard = plan.shards[rec.shard].id.clone();
    Record {
        id: rec.id.clone(),
        partition_key: format!("pk-{r}"),
        shard,
        sequence: Sequence::from_offset(rec.index),
        payload: Bytes::from(rec.payload.clone().into_bytes()),
        // Fixed, so nothing depends on the wall clock.
        arrival: SystemTime::UNIX_EPOCH,
        defect: None,
    }
}

struct Cursor {
    /// Next record offset per shard.
    next: Vec<usize>,
    /// Whether the shard's last batch (or its SHARD_END) was handed out.
    finished: Vec<bool>,
    /// Round-robin position.
    turn: usize,
}

/// A source for one run: it resumes from what the store holds.
pub struct SimSource {
    oracle: Oracle,
    store: MemoryCheckpointStore,
    cursor: Mutex<Cursor>,
}

impl SimSource {
    /// A reader starting after the store's positions.
    pub fn new(oracle: Oracle, store: MemoryCheckpointStore) -> SimSource {
        let plan = oracle.plan();
        let positions = store.positions(STREAM);
        let mut next = Vec::new();
        let mut finished = Vec::new();
        for shard in &plan.shards {
            match positions.get(&shard.id) {
                Some(Position::ShardEnd) => {
                    next.push(shard.records.len());
                    finished.push(true);
                }
                Some(Position::Sequence(seq)) => {
                    let n = seq.number.parse::<usize>().map_or(0, |n| n + 1);
                    next.push(n.min(shard.records.len()));
                    finished.push(false);
                }
                None => {
                    next.push(0);
                    finished.push(false);
                }
            }
        }
        SimSource {
            oracle,
            store,
            cursor: Mutex::new(Cursor {
                next,
                finished,
                turn: 0,
            }),
        }
    }

    /// Takes the next batch if one is available now: `Ok(Some)` a batch,
    /// `Ok(None)` the stream ended, `Err(())` nothing yet.
    fn take(&self, plan: &Plan) -> Result<Option<Batch>, ()> {
        let positions = self.store.positions(STREAM);
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let n = plan.shards.len();
        let mut waiting = false;
        for k in 0..n {
            let s = (c.turn + k) % n;
            let shard = &plan.shards[s];
            if c.finished[s] {
                continue;
            }
            let parents_done = shard
                .parents
                .iter()
                .all(|&p| positions.get(&plan.shards[p].id) == Some(&Position::ShardEnd));
            if !parents_done {
                waiting = true;
                continue;
            }
            let len = shard.records.len();
            if c.next[s] >= len && !shard.closed {
                // An open shard with nothing more: exhausted.
                c.finished[s] = true;
                continue;
            }
            let from = c.next[s];
            let to = (from + plan.knobs.batch_size).min(len);
            let records = shard.records[from..to]
                .iter()
                .map(|&r| record(plan, r))
                .collect();
            c.next[s] = to;
            let shard_end = shard.closed && to == len;
            if shard_end {
                c.finished[s] = true;
            }
            c.turn = (s + 1) % n;
            return Ok(Some(Batch {
                shard: shard.id.clone(),
                records,
                shard_end,
                millis_behind: None,
            }));
        }
        if waiting { Err(()) } else { Ok(None) }
    }
}

impl Source for SimSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let (guard, fault, pace) = self.oracle.begin(Comp::Read, None);
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        match fault {
            Fault::Retryable(true) => {
                guard.finish(Outcome::Err("throttled"));
                return Err(SourceError::throttled("sim: GetRecords rate exceeded"));
            }
            Fault::Retryable(false) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                return Err(SourceError::unavailable("sim: stream unavailable"));
            }
            Fault::Permanent => {
                guard.finish(Outcome::Err("permanent"));
                return Err(SourceError::permanent("sim: stream deleted"));
            }
            Fault::Slow(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        let plan = self.oracle.plan();
        loop {
            // Nothing is taken across an await: a dropped read takes nothing.
            match self.take(&plan) {
                Ok(batch) => {
                    if let Some(b) = &batch {
                        self.oracle.note(format!(
                            "read {} {} records end={}",
                            b.shard,
                            b.records.len(),
                            b.shard_end
                        ));
                    }
                    guard.finish(Outcome::Ok);
                    return Ok(batch);
                }
                Err(()) => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        let (guard, fault, pace) = self.oracle.begin(Comp::Commit, None);
        let plan = self.oracle.plan();
        let mut checkpoints = checkpoints;
        if plan.mutation == Mutation::SourceCommitsPast {
            for cp in &mut checkpoints {
                if let Position::Sequence(seq) = &cp.position
                    && let Some(shard) = plan.shards.iter().find(|s| s.id == cp.shard)
                    && let Ok(n) = seq.number.parse::<usize>()
                {
                    let last = shard.records.len().saturating_sub(1);
                    let bumped = (n + 3).min(last);
                    if bumped > n {
                        cp.position = Position::Sequence(Sequence::from_offset(bumped as u64));
                        self.oracle.mutated();
                    }
                }
            }
        }
        // What the store is asked to keep: check it whatever happens next.
        self.oracle.check_commit(&checkpoints, "a commit");
        self.oracle
            .note(format!("commit {checkpoints:?} fault {fault:?}"));
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let apply = || async {
            self.store
                .save(STREAM, &checkpoints)
                .await
                .map_err(SourceError::from)
        };
        let result = match fault {
            Fault::Retryable(true) => {
                Err(SourceError::throttled("sim: checkpoint table throttled"))
            }
            Fault::Retryable(false) | Fault::Outage => Err(SourceError::unavailable(
                "sim: checkpoint table unavailable",
            )),
            Fault::Permanent => Err(SourceError::permanent("sim: lease lost")),
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                apply().await
            }
            Fault::Lost => match apply().await {
                Ok(()) => Err(SourceError::unavailable(
                    "sim: commit applied, response lost",
                )),
                Err(e) => Err(e),
            },
            Fault::LostSlow(d) => {
                let r = apply().await;
                tokio::time::sleep(d).await;
                r
            }
            _ => apply().await,
        };
        guard.finish(match &result {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Err(e.kind()),
        });
        if result.is_ok() {
            self.oracle.acknowledged(&checkpoints);
        }
        result
    }
}

/// A queue-like source for one run (`AckMode::PerRecord`): it hands out
/// every record the oracle has not seen acked, shard by shard in order, and
/// deletes (acks) records as the pipeline asks, with faults on acks.
pub struct AckSource {
    oracle: Oracle,
    /// Next position per shard (into `ShardPlan::records`), and the
    /// round-robin turn.
    cursor: Mutex<(Vec<usize>, usize)>,
}

impl AckSource {
    /// A run's view of the queue: everything not acked comes again.
    pub fn new(oracle: Oracle) -> AckSource {
        let n = oracle.plan().shards.len();
        AckSource {
            oracle,
            cursor: Mutex::new((vec![0; n], 0)),
        }
    }

    fn take(&self, plan: &Plan) -> Option<Batch> {
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let n = plan.shards.len();
        for k in 0..n {
            let s = (c.1 + k) % n;
            let shard = &plan.shards[s];
            let mut records = Vec::new();
            while c.0[s] < shard.records.len() && records.len() < plan.knobs.batch_size {
                let r = shard.records[c.0[s]];
                c.0[s] += 1;
                if !self.oracle.is_acked(r) {
                    self.oracle.handed_out(&[r]);
                    records.push(record(plan, r));
                }
            }
            if !records.is_empty() {
                c.1 = (s + 1) % n;
                return Some(Batch::new(shard.id.clone(), records));
            }
        }
        None
    }
}

impl Source for AckSource {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let (guard, fault, pace) = self.oracle.begin(Comp::Read, None);
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        match fault {
            Fault::Retryable(true) => {
                guard.finish(Outcome::Err("throttled"));
                return Err(SourceError::throttled("sim: ReceiveMessage throttled"));
            }
            Fault::Retryable(false) | Fault::Outage => {
                guard.finish(Outcome::Err("unavailable"));
                return Err(SourceError::unavailable("sim: queue unavailable"));
            }
            Fault::Permanent => {
                guard.finish(Outcome::Err("permanent"));
                return Err(SourceError::permanent("sim: queue deleted"));
            }
            Fault::Slow(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        let plan = self.oracle.plan();
        let batch = self.take(&plan);
        if let Some(b) = &batch {
            self.oracle
                .note(format!("receive {} {} records", b.shard, b.records.len()));
        }
        guard.finish(Outcome::Ok);
        Ok(batch)
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        self.oracle.fail(
            "no_loss",
            "commit to a per-record source",
            format!(
                "no_loss: the pipeline committed {checkpoints:?} to a source that acks per record"
            ),
        );
        Ok(())
    }

    fn acks(&self) -> AckMode {
        AckMode::PerRecord {
            ordered: self.oracle.plan().knobs.ordered,
        }
    }

    async fn ack(&self, done: Vec<Ack>) -> Result<(), SourceError> {
        let (guard, fault, pace) = self.oracle.begin(Comp::Commit, None);
        let plan = self.oracle.plan();
        let mut recs = Vec::new();
        for ack in &done {
            let id = format!("{}:{}", ack.shard, ack.sequence);
            match self.oracle.rec(&id) {
                Some(r) => recs.push(r),
                None => self.oracle.fail(
                    "no_loss",
                    "ack of an unknown record",
                    format!("no_loss: the pipeline acked {id}, which the source never gave"),
                ),
            }
        }
        if plan.mutation == Mutation::SourceAcksAhead {
            for r in recs.clone() {
                let rec = &plan.records[r];
                let shard = &plan.shards[rec.shard];
                if let Some(&next) = shard.records.get(rec.index as usize + 1)
                    && !self.oracle.is_acked(next)
                    && !self.oracle.is_done(next)
                {
                    recs.push(next);
                    self.oracle.mutated();
                }
            }
        }
        self.oracle
            .note(format!("ack {} records fault {fault:?}", recs.len()));
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let result = match fault {
            Fault::Retryable(true) => {
                Err(SourceError::throttled("sim: DeleteMessageBatch throttled"))
            }
            Fault::Retryable(false) | Fault::Outage => {
                Err(SourceError::unavailable("sim: queue unavailable"))
            }
            Fault::Permanent => Err(SourceError::permanent("sim: access denied")),
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                self.oracle.apply_acks(&recs, "an ack");
                Ok(())
            }
            Fault::Lost => {
                self.oracle.apply_acks(&recs, "an ack");
                Err(SourceError::unavailable("sim: ack applied, response lost"))
            }
            Fault::LostSlow(d) => {
                self.oracle.apply_acks(&recs, "an ack");
                tokio::time::sleep(d).await;
                Ok(())
            }
            _ => {
                self.oracle.apply_acks(&recs, "an ack");
                Ok(())
            }
        };
        guard.finish(match &result {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Err(e.kind()),
        });
        if result.is_ok() {
            self.oracle.acks_answered(&recs);
        }
        result
    }
}
