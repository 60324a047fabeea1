//! The per-record ack contract (`AckMode::PerRecord`) through the real
//! Pipeline, with a small in-memory queue on tokio's paused clock: no SQS
//! needed. The seeded simulation (`tests/simulation.rs`, mode `Acking`)
//! checks the same invariants over fault schedules; these are the named
//! cases.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamsift::{
    Ack, AckMode, Batch, Checkpoint, ClassifyError, Delivery, MemoryDeadLetter, Pipeline,
    PipelineError, Policy, Prediction, Receipt, Record, RetryPolicy, RouteError, Sequence, ShardId,
    Source, SourceError,
};

#[derive(Default)]
struct Queue {
    batches: Mutex<VecDeque<Batch>>,
    acked: Mutex<Vec<Ack>>,
    ack_calls: Mutex<usize>,
    commits: Mutex<usize>,
    ordered: bool,
    fail_acks: bool,
}

impl Queue {
    fn new(ordered: bool, groups: &[(&str, usize)]) -> Arc<Queue> {
        let mut batches = VecDeque::new();
        for &(group, n) in groups {
            let records = (0..n)
                .map(|i| {
                    Record::new(
                        ShardId::new(group),
                        Sequence::from_offset(i as u64),
                        group,
                        format!(r#""{group}{i}""#).into_bytes(),
                    )
                })
                .collect();
            batches.push_back(Batch::new(ShardId::new(group), records));
        }
        Arc::new(Queue {
            batches: Mutex::new(batches),
            ordered,
            ..Queue::default()
        })
    }
}

/// The queue, shared with the test that reads what was acked.
struct Shared(Arc<Queue>);

impl Source for Shared {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        self.0.next_batch().await
    }

    async fn commit(&self, checkpoints: Vec<Checkpoint>) -> Result<(), SourceError> {
        self.0.commit(checkpoints).await
    }

    fn acks(&self) -> AckMode {
        self.0.acks()
    }

    async fn ack(&self, done: Vec<Ack>) -> Result<(), SourceError> {
        self.0.ack(done).await
    }
}

impl Source for Queue {
    async fn next_batch(&self) -> Result<Option<Batch>, SourceError> {
        Ok(self.batches.lock().unwrap().pop_front())
    }

    async fn commit(&self, _: Vec<Checkpoint>) -> Result<(), SourceError> {
        *self.commits.lock().unwrap() += 1;
        Ok(())
    }

    fn acks(&self) -> AckMode {
        AckMode::PerRecord {
            ordered: self.ordered,
        }
    }

    async fn ack(&self, done: Vec<Ack>) -> Result<(), SourceError> {
        *self.ack_calls.lock().unwrap() += 1;
        if self.fail_acks {
            return Err(SourceError::permanent("access denied: sqs:DeleteMessage"));
        }
        self.acked.lock().unwrap().extend(done);
        Ok(())
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// Runs the queue through a pipeline whose router logs each text, after
/// failing `a0`'s first `a0_failures` attempts.
async fn run(queue: Arc<Queue>, log: Log, a0_failures: u32) -> Result<u64, PipelineError> {
    let tries = Arc::new(Mutex::new(0u32));
    let report = Pipeline::new(Shared(queue))
        .json::<String>()
        .classify(|_: &String| async {
            Ok::<_, ClassifyError>(Prediction::binary("actionable", "noise", 0.9))
        })
        .policy(Policy::binary(0.5, "oncall"))
        .route(move |d: &Delivery<'_, String>| {
            let text = d.item.clone();
            let route = d.route.clone();
            let log = log.clone();
            let tries = tries.clone();
            async move {
                let fail = text == "a0" && {
                    let mut t = tries.lock().unwrap();
                    *t += 1;
                    *t <= a0_failures
                };
                if fail {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err(RouteError::unavailable("webhook down"));
                }
                log.lock().unwrap().push(text);
                Ok::<_, RouteError>(Receipt::new(route))
            }
        })
        .dead_letter(MemoryDeadLetter::new())
        .retry(RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        })
        .max_in_flight(8)
        .run()
        .await?;
    Ok(report.stats.routed)
}

#[tokio::test(start_paused = true)]
async fn ordered_a_retried_record_holds_up_its_group_only() {
    let queue = Queue::new(true, &[("a", 4), ("b", 4)]);
    let log = Log::default();
    let routed = run(queue.clone(), log.clone(), 3).await.unwrap();
    assert_eq!(routed, 8);
    let log = log.lock().unwrap().clone();
    let of =
        |g: char| -> Vec<String> { log.iter().filter(|t| t.starts_with(g)).cloned().collect() };
    assert_eq!(of('a'), ["a0", "a1", "a2", "a3"], "group a in order");
    assert_eq!(of('b'), ["b0", "b1", "b2", "b3"], "group b in order");
    assert_eq!(
        log.iter().position(|t| t == "a0"),
        Some(4),
        "group b finished while a0 was being retried: {log:?}"
    );
    assert_eq!(
        queue.acked.lock().unwrap().len(),
        8,
        "every done record acked"
    );
    assert_eq!(
        *queue.commits.lock().unwrap(),
        0,
        "a per-record source is never committed"
    );
}

#[tokio::test(start_paused = true)]
async fn unordered_records_of_a_group_run_at_once() {
    let queue = Queue::new(false, &[("a", 4)]);
    let log = Log::default();
    run(queue.clone(), log.clone(), 3).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.last().map(String::as_str),
        Some("a0"),
        "a0's retries did not hold a1..a3: {log:?}"
    );
    assert_eq!(queue.acked.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn acks_are_batched_and_flushed_when_the_source_ends() {
    let queue = Queue::new(false, &[("q", 25)]);
    run(queue.clone(), Log::default(), 0).await.unwrap();
    let acked = queue.acked.lock().unwrap().len();
    let calls = *queue.ack_calls.lock().unwrap();
    assert_eq!(
        acked, 25,
        "the last, partial batch of acks is flushed at the stop"
    );
    assert!(
        calls <= 5,
        "acks go in batches (ack_every 10): {calls} calls for 25 records"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ack_that_fails_for_good_stops_the_run_with_an_ack_error() {
    let queue = Arc::new(Queue {
        fail_acks: true,
        ..Arc::try_unwrap(Queue::new(false, &[("q", 30)]))
            .ok()
            .unwrap()
    });
    let err = run(queue.clone(), Log::default(), 0).await.unwrap_err();
    assert!(matches!(err, PipelineError::Ack { .. }), "{err}");
    assert!(
        err.to_string().contains("they will be delivered again"),
        "{err}"
    );
    assert_eq!(
        *queue.ack_calls.lock().unwrap(),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn a_checkpointing_source_is_never_acked() {
    // MemorySource keeps the default AckMode::Checkpoint.
    let source =
        streamsift::fakes::MemorySource::from_payloads(1, (0..5).map(|i| format!("\"{i}\"")));
    assert_eq!(source.acks(), AckMode::Checkpoint);
    let report = Pipeline::new(source)
        .json::<String>()
        .classify(|_: &String| async { Ok::<_, ClassifyError>(Prediction::binary("a", "n", 0.9)) })
        .policy(Policy::binary(0.5, "oncall"))
        .route(|d: &Delivery<'_, String>| {
            let route = d.route.clone();
            async move { Ok::<_, RouteError>(Receipt::new(route)) }
        })
        .dead_letter(MemoryDeadLetter::new())
        .run()
        .await
        .unwrap();
    assert_eq!(report.stats.routed, 5);
    assert!(
        !report.checkpoints.is_empty(),
        "checkpoints committed as before"
    );
}
