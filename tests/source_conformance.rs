//! The `Source` conformance suite (`streamsift::testing::source`) against
//! the in-memory fake and `KinesisSource` on moto (`FileSource`: see
//! tests/file_source.rs), and against deliberately broken sources, to show
//! that each rule can fail and names itself.

mod common;

use std::sync::{Arc, Mutex};

use streamsift::fakes::MemorySource;
use streamsift::testing::source::conformance;
use streamsift::{Batch, Checkpoint, Position, Record, Sequence, ShardId, Source, SourceError};

#[tokio::test(start_paused = true)]
async fn memory_source_conforms() {
    let n = 300;
    let payloads: Vec<String> = (0..n).map(|i| format!("{{\"n\":{i}}}")).collect();
    let base = MemorySource::from_payloads(3, payloads)
        .batch_size(25)
        .close_shards();
    // Each restart resumes from what the readers before it committed.
    conformance(|| std::future::ready(base.restart()), n).await;
}

#[cfg(feature = "kinesis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_source_conforms() {
    use aws_sdk_kinesis::primitives::Blob;
    use std::time::Duration;
    use streamsift::checkpoint::MemoryCheckpointStore;
    use streamsift::kinesis::KinesisSource;

    let moto = common::moto::Moto::start();
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    kinesis
        .create_stream()
        .stream_name("conf")
        .shard_count(3)
        .send()
        .await
        .expect("CreateStream");
    let n = 300;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let entries = chunk
            .iter()
            .map(|i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("pk-{i}"))
                    .data(Blob::new(format!("{{\"n\":{i}}}").into_bytes()))
                    .build()
                    .expect("entry")
            })
            .collect();
        kinesis
            .put_records()
            .stream_name("conf")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
    }
    let store = MemoryCheckpointStore::new();
    conformance(
        || {
            let builder = KinesisSource::builder_from_client(kinesis.clone(), "conf")
                .checkpoints(store.clone())
                .stop_at_tip(true)
                .limit(25)
                .idle_wait(Duration::from_millis(20));
            async move { builder.build().await.expect("build") }
        },
        n,
    )
    .await;
}

// --------------------------------------------------------- broken sources --

/// How a [`Toy`] source breaks the contract.
#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// Restarts from the beginning, whatever was committed.
    IgnoresCommits,
    /// Restarts after what the last source *read*, committed or not.
    ResumesAfterRead,
    /// Never ends: waits for records at the end of the stream.
    Endless,
    /// Gives each batch's records in reverse order.
    Reversed,
    /// Puts every other batch's records under another shard's name.
    WrongShard,
    /// Record ids name the run, so a redelivery has another id.
    UnstableIds,
    /// Refuses a commit it has already stored.
    CommitTwiceFails,
}

/// One shard of `n` numbered lines; commits (and, for `ResumesAfterRead`,
/// reads) are kept in `shared`, which outlives the source.
struct Toy {
    n: u64,
    bug: Bug,
    shared: Arc<Mutex<Shared>>,
    next: Mutex<u64>,
    run: u64,
}

#[derive(Default)]
struct Shared {
    committed: Option<u64>,
    read: u64,
    runs: u64,
    batches: u64,
}

impl Toy {
    fn make(n: u64, bug: Bug, shared: &Arc<Mutex<Shared>>) -> Toy {
        let mut s = shared.lock().unwrap();
        s.runs += 1;
        let next = match bug {
            Bug::IgnoresCommits => 0,
            Bug::ResumesAfterRead => s.read,
            _ => s.committed.map_or(0, |c| c + 1),
        };
        Toy {
            n,
            bug,
            shared: Arc::clone(shared),
            next: Mutex::new(next),
            run: s.runs,
        }
    }
}

impl Source for Toy {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        let (start, end) = {
            let mut next = self.next.lock().unwrap();
            let start = *next;
            let end = (start + 7).min(self.n);
            *next = end;
            (start, end)
        };
        if start >= self.n {
            if self.bug == Bug::Endless {
                std::future::pending::<()>().await;
            }
            return Ok(None);
        }
        let batch_no = {
            let mut s = self.shared.lock().unwrap();
            s.read = s.read.max(end);
            s.batches += 1;
            s.batches
        };
        let shard = if self.bug == Bug::WrongShard && batch_no % 2 == 0 {
            ShardId::new("other")
        } else {
            ShardId::new("lines")
        };
        let mut records: Vec<Record> = (start..end)
            .map(|i| {
                let mut r = Record::new(
                    ShardId::new("lines"),
                    Sequence::from_offset(i),
                    "",
                    format!("line {i}"),
                );
                if self.bug == Bug::UnstableIds {
                    r.id = format!("run{}-{i}", self.run);
                }
                r
            })
            .collect();
        if self.bug == Bug::Reversed {
            records.reverse();
        }
        Ok(Some(Batch::new(shard, records)))
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        let mut s = self.shared.lock().unwrap();
        for cp in checkpoints {
            if let Position::Sequence(seq) = cp.position {
                let at: u64 = seq
                    .number
                    .parse()
                    .map_err(|_| SourceError::permanent("not a line number"))?;
                if self.bug == Bug::CommitTwiceFails && s.committed == Some(at) {
                    return Err(SourceError::permanent("already committed"));
                }
                s.committed = Some(at);
            }
        }
        Ok(())
    }
}

async fn run_toy(bug: Bug) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    conformance(|| std::future::ready(Toy::make(60, bug, &shared)), 60).await;
}

#[tokio::test(start_paused = true)]
async fn a_correct_toy_source_conforms() {
    run_toy(Bug::None).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"resume-after-commit\" broken")]
async fn a_source_that_ignores_commits_is_caught() {
    run_toy(Bug::IgnoresCommits).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"uncommitted-redelivered\" broken")]
async fn a_source_that_skips_records_read_but_not_committed_is_caught() {
    run_toy(Bug::ResumesAfterRead).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"ends-when-done\" broken")]
async fn a_source_that_never_ends_is_caught() {
    run_toy(Bug::Endless).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"shard-order\" broken")]
async fn a_source_out_of_order_is_caught() {
    run_toy(Bug::Reversed).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"batch-own-shard\" broken")]
async fn a_batch_with_records_of_another_shard_is_caught() {
    run_toy(Bug::WrongShard).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"uncommitted-redelivered\" broken")]
async fn a_source_whose_ids_change_between_runs_is_caught() {
    run_toy(Bug::UnstableIds).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "source conformance: rule \"commit-idempotent\" broken")]
async fn a_source_that_refuses_a_repeated_commit_is_caught() {
    run_toy(Bug::CommitTwiceFails).await;
}
