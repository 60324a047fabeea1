//! The pipeline as an AWS Lambda function consuming a Kinesis stream
//! through an event source mapping. Feature `lambda`.
//!
//! A [`KinesisHandler`] takes each [`KinesisEvent`] (whose record `data`
//! `aws_lambda_events` has already base64-decoded), unpacks KPL aggregates
//! ([`crate::kinesis::unpack`]), runs the records through a
//! [`BatchProcessor`] (the pipeline's own stages and retry rules), and
//! answers with a [`KinesisEventResponse`] listing `batchItemFailures`.
//!
//! # What is reported as failed, and why
//!
//! With `FunctionResponseTypes = ["ReportBatchItemFailures"]` on the event
//! source mapping, Lambda checkpoints the shard just before the **lowest**
//! sequence number reported and retries the batch from there; every record
//! after it comes again, done or not. So the handler reports the first
//! Kinesis record that is not done and every later record of the batch that
//! is not done (an aggregate is done when all its user records are). Records
//! before the first failure are never reported, so they are not redelivered.
//!
//! - **Permanently bad records** (not JSON, too large, a corrupt KPL
//!   aggregate, a route that rejects them for good) go to the dead-letter
//!   sink and count as done: they never block the shard.
//! - **Retryable failures** that outlast the pipeline's retries (a
//!   throttled or unavailable backend, a timeout) are reported, so Lambda
//!   delivers them again, up to the mapping's `MaximumRetryAttempts`; then
//!   the mapping's on-failure destination gets the batch's metadata.
//!   ([`OnExhausted::Report`]).
//! - **The deadline.** No record is started later than
//!   [`KinesisHandler::safety_margin`] before the invocation's deadline;
//!   records in progress then are abandoned. Both are reported, so they are
//!   redelivered rather than lost, and the function answers before Lambda
//!   kills it (a timed-out invocation would retry the whole batch).
//! - **A dead-letter sink that fails** leaves its record not done: reported.
//!
//! Delivery is at-least-once: a record may be routed twice (an abandoned
//! call that had taken effect, or a done record after the first failure).
//!
//! An event that does not deserialize as a [`KinesisEvent`] (Kinesis always
//! sends valid base64 `data`, so this means a wrong trigger) fails the
//! invocation as a whole: the runtime posts an invocation error, and Lambda
//! retries the batch (`BisectBatchOnFunctionError` splits it).
//!
//! # Once per execution environment
//!
//! Build the handler, and so load the model, once, before [`run`]; every
//! invocation of the environment shares it.
//!
//! # Logs and metrics
//!
//! [`init_tracing`] writes `tracing` events as JSON lines to stdout, which
//! CloudWatch Logs stores and Logs Insights parses. With
//! [`KinesisHandler::emf_namespace`], each invocation also prints one
//! CloudWatch Embedded Metric Format line ([`emf_line`]), which CloudWatch
//! turns into metrics without any API call.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

pub use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
pub use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
pub use lambda_runtime::{Context, LambdaEvent};

use crate::batch::{BatchProcessor, BatchReport, OnExhausted};
use crate::classify::Classifier;
use crate::decode::Decoder;
use crate::pipeline::Stats;
use crate::record::{Record, ShardId};
use crate::router::Router;

/// Stop starting records this long before the invocation's deadline, by
/// default: time to abandon what is in progress, answer, and flush logs.
pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(2);

/// Why the Lambda runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The runtime loop ended with an error (the Runtime API could not be
    /// reached, or `AWS_LAMBDA_*` variables are missing outside Lambda).
    #[error(
        "the Lambda runtime stopped: {0}; outside Lambda, set AWS_LAMBDA_RUNTIME_API and the \
         AWS_LAMBDA_FUNCTION_* variables (or use an emulator)"
    )]
    Runtime(String),
}

/// The Kinesis event handler: a [`BatchProcessor`] plus the Lambda rules
/// above. Build it once per execution environment.
pub struct KinesisHandler<D, C, R, T> {
    processor: BatchProcessor<D, C, R, T>,
    safety_margin: Duration,
    emf_namespace: Option<String>,
}

impl<D, C, R, T> fmt::Debug for KinesisHandler<D, C, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisHandler")
            .field("processor", &self.processor)
            .field("safety_margin", &self.safety_margin)
            .field("emf_namespace", &self.emf_namespace)
            .finish()
    }
}

/// What one invocation did: the answer for Lambda, and the batch report.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The answer: the Kinesis sequence numbers to redeliver.
    pub response: KinesisEventResponse,
    /// Per user record outcomes and counts.
    pub report: BatchReport,
    /// Kinesis records in the event.
    pub kinesis_records: usize,
    /// Of those, KPL aggregates that could not be unpacked (dead-lettered).
    pub corrupt_aggregates: usize,
}

impl Invocation {
    /// The sequence numbers reported as failed, in event order.
    pub fn failed_sequence_numbers(&self) -> Vec<&str> {
        self.response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .collect()
    }
}

/// One Kinesis record of the event and the user records it became.
struct Slot {
    sequence_number: String,
    records: Range<usize>,
}

impl<D, C, R, T> KinesisHandler<D, C, R, T>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// Wraps `processor`, switching it to [`OnExhausted::Report`] so that
    /// retryable failures are redelivered by Lambda.
    pub fn new(processor: BatchProcessor<D, C, R, T>) -> Self {
        KinesisHandler {
            processor: processor.on_exhausted(OnExhausted::Report),
            safety_margin: DEFAULT_SAFETY_MARGIN,
            emf_namespace: None,
        }
    }

    /// Stop starting records this long before the deadline (default
    /// [`DEFAULT_SAFETY_MARGIN`]).
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// Print one Embedded Metric Format line per invocation, in this
    /// CloudWatch namespace.
    pub fn emf_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.emf_namespace = Some(namespace.into());
        self
    }

    /// Handles one event whose invocation must end by `deadline`.
    pub async fn handle(&self, event: KinesisEvent, deadline: SystemTime) -> Invocation {
        let remaining = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let stop_at = Instant::now() + remaining.saturating_sub(self.safety_margin);
        let kinesis_records = event.records.len();
        let mut records: Vec<Record> = Vec::with_capacity(kinesis_records);
        let mut slots = Vec::with_capacity(kinesis_records);
        let mut corrupt_aggregates = 0;
        for rec in event.records {
            let shard = shard_of(&rec);
            let kinesis = rec.kinesis;
            let start = records.len();
            let arrival = SystemTime::from(*kinesis.approximate_arrival_timestamp);
            if let Some(e) = crate::kinesis::unpack(
                &shard,
                &kinesis.sequence_number,
                &kinesis.partition_key,
                Bytes::from(kinesis.data.0),
                arrival,
                &mut records,
            ) {
                corrupt_aggregates += 1;
                tracing::warn!(
                    sequence_number = %kinesis.sequence_number,
                    error = %e,
                    "corrupt KPL aggregate; dead-lettering it whole"
                );
            }
            slots.push(Slot {
                sequence_number: kinesis.sequence_number,
                records: start..records.len(),
            });
        }
        let report = self.processor.process(records, Some(stop_at)).await;
        let failed = failures_to_report(&slots, &report);
        let mut response = KinesisEventResponse::default();
        for sequence_number in failed {
            response.add_failure(sequence_number);
        }
        tracing::info!(
            kinesis_records,
            user_records = report.outcomes.len(),
            routed = report.stats.routed,
            discarded = report.stats.discarded,
            reviewed = report.stats.sent_for_review,
            dead_lettered = report.stats.dead_lettered,
            failed = report.stats.unfinished,
            not_started = report.not_started(),
            reported = response.batch_item_failures.len(),
            stopped_early = report.stopped_early,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "batch done"
        );
        Invocation {
            response,
            report,
            kinesis_records,
            corrupt_aggregates,
        }
    }

    /// Handles one event from the runtime: [`handle`](Self::handle) with the
    /// context's deadline, plus the EMF line if set.
    pub async fn handle_event(&self, event: LambdaEvent<KinesisEvent>) -> KinesisEventResponse {
        let deadline = event.context.deadline();
        let invocation = self.handle(event.payload, deadline).await;
        if let Some(namespace) = &self.emf_namespace {
            let function = event.context.env_config.function_name.as_str();
            println!(
                "{}",
                emf_line(
                    namespace,
                    function,
                    &invocation.report.stats,
                    invocation.report.not_started(),
                    SystemTime::now(),
                )
            );
        }
        invocation.response
    }
}

/// The shard of a Lambda Kinesis record: its `eventID` is
/// `"{shardId}:{sequenceNumber}"`.
fn shard_of(rec: &KinesisEventRecord) -> ShardId {
    let id = rec
        .event_id
        .as_deref()
        .and_then(|id| id.split_once(':').map(|(shard, _)| shard))
        .filter(|shard| !shard.is_empty())
        .unwrap_or("unknown-shard");
    ShardId::new(id)
}

/// The first Kinesis record not done, and every later one not done.
fn failures_to_report(slots: &[Slot], report: &BatchReport) -> Vec<String> {
    let done = |slot: &Slot| {
        report
            .outcomes
            .get(slot.records.clone())
            .is_some_and(|outcomes| outcomes.iter().all(|o| o.is_done()))
    };
    let Some(first) = slots.iter().position(|s| !done(s)) else {
        return Vec::new();
    };
    slots[first..]
        .iter()
        .filter(|s| !done(s))
        .map(|s| s.sequence_number.clone())
        .collect()
}

/// One CloudWatch Embedded Metric Format line (a JSON object) with the
/// batch's counts, in `namespace`, with the dimension `FunctionName`.
pub fn emf_line(
    namespace: &str,
    function_name: &str,
    stats: &Stats,
    not_started: usize,
    now: SystemTime,
) -> String {
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let values: [(&str, u64); 10] = [
        ("RecordsIn", stats.records_in),
        ("Routed", stats.routed),
        ("Skipped", stats.skipped),
        ("Discarded", stats.discarded),
        ("Reviewed", stats.sent_for_review),
        ("DeadLettered", stats.dead_lettered),
        ("Failed", stats.unfinished),
        ("NotStarted", not_started as u64),
        ("Retries", stats.retries),
        ("Panics", stats.panics),
    ];
    let metrics: Vec<serde_json::Value> = values
        .iter()
        .map(|(name, _)| serde_json::json!({ "Name": name, "Unit": "Count" }))
        .collect();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics,
            }],
        },
        "FunctionName": function_name,
    });
    if let Some(obj) = line.as_object_mut() {
        for (name, value) in values {
            obj.insert(name.to_string(), serde_json::Value::from(value));
        }
    }
    line.to_string()
}

/// Installs a `tracing` subscriber that writes JSON lines to stdout for
/// CloudWatch Logs. The level comes from `AWS_LAMBDA_LOG_LEVEL`, else
/// `RUST_LOG`, else `info`. Does nothing if a subscriber is already set.
pub fn init_tracing() {
    use lambda_runtime::tracing::subscriber::EnvFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_ascii_lowercase();
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = lambda_runtime::tracing::subscriber::fmt()
        .json()
        .with_target(false)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Runs `handler` under the Lambda runtime: polls the Runtime API for
/// events until the environment is shut down.
pub async fn run<D, C, R, T>(handler: KinesisHandler<D, C, R, T>) -> Result<(), LambdaError>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    let handler = Arc::new(handler);
    let service = lambda_runtime::service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, std::convert::Infallible>(handler.handle_event(event).await) }
    });
    lambda_runtime::run(service)
        .await
        .map_err(|e| LambdaError::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordOutcome;

    fn report(outcomes: Vec<RecordOutcome>) -> BatchReport {
        BatchReport {
            outcomes,
            stats: Stats::default(),
            stopped_early: false,
            elapsed: Duration::ZERO,
        }
    }

    fn slots(ranges: &[(usize, usize)]) -> Vec<Slot> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, (a, b))| Slot {
                sequence_number: format!("seq{i}"),
                records: *a..*b,
            })
            .collect()
    }

    #[test]
    fn reports_the_first_failure_and_later_ones_not_done() {
        let failed = RecordOutcome::FailedRetryable {
            stage: Some(crate::Stage::Route),
            reason: "x".into(),
        };
        // Kinesis records: 0 -> [0], 1 -> [1,2] (aggregate), 2 -> [3], 3 -> [4].
        let s = slots(&[(0, 1), (1, 3), (3, 4), (4, 5)]);
        let r = report(vec![
            RecordOutcome::Discarded,
            RecordOutcome::Discarded,
            failed.clone(),
            RecordOutcome::Discarded,
            RecordOutcome::NotStarted,
        ]);
        assert_eq!(failures_to_report(&s, &r), vec!["seq1", "seq3"]);
        let all_done = report(vec![RecordOutcome::Discarded; 5]);
        assert!(failures_to_report(&s, &all_done).is_empty());
    }

    #[test]
    fn emf_line_names_every_metric_it_sets() {
        let stats = Stats {
            records_in: 7,
            routed: 2,
            skipped: 1,
            discarded: 2,
            dead_lettered: 1,
            unfinished: 1,
            panics: 1,
            ..Stats::default()
        };
        let line = emf_line("streamsift", "fn", &stats, 4, SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Skipped"], 1);
        assert_eq!(v["Panics"], 1);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "streamsift");
        assert_eq!(v["RecordsIn"], 7);
        assert_eq!(v["NotStarted"], 4);
        assert_eq!(v["FunctionName"], "fn");
        for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap();
            assert!(v.get(name).is_some(), "{name} has no value");
        }
    }
}
