//! A record processor for the Kinesis Client Library's MultiLangDaemon.
//! Feature `kcl`; no AWS crate.
//!
//! The KCL's `MultiLangDaemon` (Java) holds the shard leases in DynamoDB,
//! balances them over workers and fails them over; for each shard lease it
//! starts a child process and speaks a line-oriented JSON protocol with it
//! on the child's stdin and stdout. [`KclProcessor::run`] is that child's
//! side, written against the protocol of the KCL 2.x/3.x multilang package
//! (`software.amazon.kinesis.multilang`, the message set with `leaseLost`,
//! `shardEnded` and `shutdownRequested`; the older `shutdown` with a
//! `reason` is accepted too):
//!
//! | daemon → processor | processor → daemon |
//! |---|---|
//! | `{"action":"initialize","shardId":..,"sequenceNumber":..,"subSequenceNumber":..}` | `{"action":"status","responseFor":"initialize"}` |
//! | `{"action":"processRecords","records":[..],"millisBehindLatest":..}` | `{"action":"checkpoint","sequenceNumber":..,"subSequenceNumber":..}` once the records are done, then `status` |
//! | `{"action":"checkpoint","sequenceNumber":..,"subSequenceNumber":..,"error":..}` (the answer to a checkpoint) | — |
//! | `{"action":"leaseLost"}` | `status` (no checkpoint: the lease is gone) |
//! | `{"action":"shardEnded"}` | `{"action":"checkpoint","sequenceNumber":null,"subSequenceNumber":null}` (SHARD_END), then `status` |
//! | `{"action":"shutdownRequested"}` | a checkpoint at the last done record if not yet committed, then `status` |
//!
//! A record is `{"action":"record","data":<base64>,"partitionKey":..,
//! "sequenceNumber":..,"subSequenceNumber":..,"approximateArrivalTimestamp":<epoch ms>}`;
//! the daemon has already de-aggregated KPL records.
//!
//! # Guarantees
//!
//! - Records are run through a [`BatchProcessor`] with
//!   [`OnExhausted::DeadLetter`](crate::batch::OnExhausted): the daemon does
//!   not redeliver on its own, so a record whose retries ran out is
//!   dead-lettered, as [`Pipeline::run`](crate::Pipeline::run) does.
//! - The processor checkpoints only after every record of the batch is done
//!   (routed, discarded, reviewed or dead-lettered). If a dead letter cannot
//!   be stored, it checkpoints the done prefix and returns
//!   [`KclError::Unfinished`]: the process should exit, and the daemon
//!   restarts the shard from the checkpoint, so nothing is lost.
//! - A checkpoint answered with `ThrottlingException` is retried with
//!   backoff; any other error (`ShutdownException`,
//!   `InvalidStateException`, ..) is logged and the position stays pending:
//!   the next checkpoint covers it.
//! - stdout carries only protocol lines; logs go through `tracing`, which
//!   the binary must send to stderr.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::batch::{BatchProcessor, OnExhausted};
use crate::classify::Classifier;
use crate::decode::Decoder;
use crate::record::{Record, Sequence, ShardId};
use crate::router::Router;

/// How many times a checkpoint answered with `ThrottlingException` is tried.
pub const CHECKPOINT_ATTEMPTS: u32 = 4;

/// A message from the MultiLangDaemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DaemonMessage {
    /// The processor is given a shard.
    Initialize {
        /// The shard.
        shard_id: String,
        /// Where processing resumes, if the shard was checkpointed.
        #[serde(default)]
        sequence_number: Option<String>,
        /// The sub-sequence of that position.
        #[serde(default)]
        sub_sequence_number: Option<u64>,
    },
    /// Records to process.
    ProcessRecords {
        /// The records.
        records: Vec<KclRecord>,
        /// How far behind the tip of the shard they are.
        #[serde(default)]
        millis_behind_latest: Option<u64>,
    },
    /// The daemon's answer to a checkpoint the processor asked for.
    Checkpoint {
        /// The position asked for.
        #[serde(default)]
        sequence_number: Option<String>,
        /// Its sub-sequence.
        #[serde(default)]
        sub_sequence_number: Option<u64>,
        /// The simple name of the exception the checkpoint raised, if any.
        #[serde(default)]
        error: Option<String>,
    },
    /// Another worker took the lease: do not checkpoint.
    LeaseLost,
    /// The shard was closed (resharding) and everything was delivered:
    /// checkpoint SHARD_END so the child shards can start.
    ShardEnded,
    /// The worker is shutting down: checkpoint what is done.
    ShutdownRequested,
    /// The older form of `leaseLost` / `shardEnded`: reason `ZOMBIE` or
    /// `TERMINATE`.
    Shutdown {
        /// `ZOMBIE` (lease lost) or `TERMINATE` (shard ended).
        reason: String,
    },
}

impl DaemonMessage {
    /// The `action` name.
    pub fn action(&self) -> &'static str {
        match self {
            DaemonMessage::Initialize { .. } => "initialize",
            DaemonMessage::ProcessRecords { .. } => "processRecords",
            DaemonMessage::Checkpoint { .. } => "checkpoint",
            DaemonMessage::LeaseLost => "leaseLost",
            DaemonMessage::ShardEnded => "shardEnded",
            DaemonMessage::ShutdownRequested => "shutdownRequested",
            DaemonMessage::Shutdown { .. } => "shutdown",
        }
    }
}

/// One record as the daemon sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KclRecord {
    /// The payload, base64.
    #[serde(default)]
    pub data: Option<String>,
    /// The partition key.
    #[serde(default)]
    pub partition_key: String,
    /// The sequence number.
    pub sequence_number: String,
    /// The sub-sequence number (non-zero for de-aggregated KPL records).
    #[serde(default)]
    pub sub_sequence_number: Option<u64>,
    /// When the record reached the stream, in milliseconds since the epoch.
    #[serde(default)]
    pub approximate_arrival_timestamp: Option<u64>,
}

/// A message to the MultiLangDaemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ProcessorMessage {
    /// Asks the daemon to checkpoint; both `None` means SHARD_END (after
    /// `shardEnded`).
    Checkpoint {
        /// The position.
        sequence_number: Option<String>,
        /// Its sub-sequence.
        sub_sequence_number: Option<u64>,
    },
    /// The processor finished handling `response_for`.
    Status {
        /// The action handled.
        response_for: String,
    },
}

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum KclError {
    /// stdin could not be read.
    #[error("reading the daemon's messages (stdin) failed: {0}")]
    Read(#[source] std::io::Error),
    /// stdout could not be written.
    #[error("writing to the daemon (stdout) failed: {0}")]
    Write(#[source] std::io::Error),
    /// A line was not a protocol message.
    #[error(
        "line {line} from the daemon is not a MultiLang message: expected a JSON object whose \
         \"action\" is initialize, processRecords, checkpoint, leaseLost, shardEnded, \
         shutdownRequested or shutdown, found {found:?} ({source}); check that the daemon's \
         KCL version speaks this protocol"
    )]
    Parse {
        /// The line number (1-based).
        line: u64,
        /// The start of the line.
        found: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A message came that the protocol does not allow here.
    #[error(
        "expected {expected} from the daemon, found action {found:?}; the daemon and this \
         processor disagree about the protocol"
    )]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// The action found.
        found: String,
    },
    /// stdin closed while an answer was awaited.
    #[error("the daemon closed stdin while {waiting_for} was awaited")]
    Closed {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// A record could not be finished: its dead letter could not be stored.
    /// The done prefix was checkpointed; exit, so the daemon restarts the
    /// shard from there, and fix the dead-letter sink.
    #[error(
        "record {record} of shard {shard} could not be finished ({reason}); checkpointed the \
         records before it and stopped: fix the dead-letter sink, the shard resumes from there"
    )]
    Unfinished {
        /// The shard.
        shard: String,
        /// The record's sequence number.
        record: String,
        /// Why.
        reason: String,
    },
}

/// What a [`KclProcessor::run`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KclSummary {
    /// The shard, once initialized.
    pub shard: Option<String>,
    /// `processRecords` messages handled.
    pub batches: u64,
    /// Records handled.
    pub records: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Checkpoints the daemon confirmed.
    pub checkpoints: u64,
    /// Checkpoint errors the daemon answered with (exception names).
    pub checkpoint_errors: Vec<String>,
    /// How the lease ended: `leaseLost`, `shardEnded`, `shutdownRequested`
    /// or `shutdown`, if it did before stdin closed.
    pub ended_by: Option<String>,
}

/// The record processor: a [`BatchProcessor`] behind the MultiLang
/// protocol.
pub struct KclProcessor<D, C, R, T> {
    processor: BatchProcessor<D, C, R, T>,
    checkpoint_backoff: Duration,
}

impl<D, C, R, T> std::fmt::Debug for KclProcessor<D, C, R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KclProcessor")
            .field("processor", &self.processor)
            .field("checkpoint_backoff", &self.checkpoint_backoff)
            .finish()
    }
}

/// A position to checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    sequence_number: String,
    sub_sequence_number: u64,
}

struct Io<I, O> {
    input: I,
    output: O,
    line_no: u64,
    buf: String,
}

impl<I: AsyncBufRead + Unpin, O: AsyncWrite + Unpin> Io<I, O> {
    /// The next message; `None` at end of input. Blank lines are skipped.
    async fn next(&mut self) -> Result<Option<DaemonMessage>, KclError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .await
                .map_err(KclError::Read)?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let line = self.buf.trim();
            if line.is_empty() {
                continue;
            }
            return serde_json::from_str(line)
                .map(Some)
                .map_err(|source| KclError::Parse {
                    line: self.line_no,
                    found: line.chars().take(120).collect(),
                    source,
                });
        }
    }

    async fn send(&mut self, message: &ProcessorMessage) -> Result<(), KclError> {
        let mut line = serde_json::to_string(message).map_err(|e| KclError::Write(e.into()))?;
        line.push('\n');
        self.output
            .write_all(line.as_bytes())
            .await
            .map_err(KclError::Write)?;
        self.output.flush().await.map_err(KclError::Write)
    }

    async fn status(&mut self, response_for: &str) -> Result<(), KclError> {
        self.send(&ProcessorMessage::Status {
            response_for: response_for.to_string(),
        })
        .await
    }
}

impl<D, C, R, T> KclProcessor<D, C, R, T>
where
    T: Send + Sync,
    D: Decoder<T>,
    C: Classifier<T>,
    R: Router<T>,
{
    /// Wraps `processor`, switching it to [`OnExhausted::DeadLetter`].
    pub fn new(processor: BatchProcessor<D, C, R, T>) -> Self {
        KclProcessor {
            processor: processor.on_exhausted(OnExhausted::DeadLetter),
            checkpoint_backoff: Duration::from_millis(200),
        }
    }

    /// The first backoff before retrying a throttled checkpoint (default
    /// 200 ms, doubling).
    pub fn checkpoint_backoff(mut self, backoff: Duration) -> Self {
        self.checkpoint_backoff = backoff;
        self
    }

    /// Runs the protocol on the process's stdin and stdout until stdin
    /// closes.
    pub async fn run_stdio(&self) -> Result<KclSummary, KclError> {
        let input = tokio::io::BufReader::new(tokio::io::stdin());
        self.run(input, tokio::io::stdout()).await
    }

    /// Runs the protocol on `input` and `output` until `input` ends.
    pub async fn run<I, O>(&self, input: I, output: O) -> Result<KclSummary, KclError>
    where
        I: AsyncBufRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let mut io = Io {
            input,
            output,
            line_no: 0,
            buf: String::new(),
        };
        let mut summary = KclSummary::default();
        let mut shard = ShardId::new("unknown-shard");
        // The last done record, and the last position the daemon confirmed.
        let mut done: Option<Position> = None;
        let mut committed: Option<Position> = None;
        while let Some(message) = io.next().await? {
            let action = message.action();
            match message {
                DaemonMessage::Initialize { shard_id, .. } => {
                    tracing::info!(shard = %shard_id, "initialized");
                    shard = ShardId::new(&shard_id);
                    summary.shard = Some(shard_id);
                }
                DaemonMessage::ProcessRecords { records, .. } => {
                    summary.batches += 1;
                    let (positions, records) = to_records(&shard, records);
                    summary.records += records.len() as u64;
                    let report = self.processor.process(records, None).await;
                    summary.dead_lettered += report.stats.dead_lettered;
                    let first_bad = report.first_not_done();
                    let last_done = match first_bad {
                        Some(0) => None,
                        Some(i) => positions.get(i - 1).cloned(),
                        None => positions.last().cloned(),
                    };
                    if let Some(p) = last_done {
                        done = Some(p);
                    }
                    if done != committed {
                        let at = done.clone();
                        if self.checkpoint(&mut io, at.clone(), &mut summary).await? {
                            committed = at;
                        }
                    }
                    if let Some(i) = first_bad {
                        let reason = report
                            .outcomes
                            .get(i)
                            .map(|o| format!("{o:?}"))
                            .unwrap_or_default();
                        return Err(KclError::Unfinished {
                            shard: shard.to_string(),
                            record: positions
                                .get(i)
                                .map(|p| p.sequence_number.clone())
                                .unwrap_or_default(),
                            reason,
                        });
                    }
                }
                DaemonMessage::Checkpoint { .. } => {
                    return Err(KclError::Unexpected {
                        expected: "initialize, processRecords or a lease event",
                        found: action.to_string(),
                    });
                }
                DaemonMessage::LeaseLost => {
                    tracing::info!(shard = %shard, "lease lost; not checkpointing");
                    summary.ended_by = Some(action.to_string());
                }
                DaemonMessage::ShardEnded => {
                    tracing::info!(shard = %shard, "shard ended; checkpointing SHARD_END");
                    self.checkpoint(&mut io, None, &mut summary).await?;
                    summary.ended_by = Some(action.to_string());
                }
                DaemonMessage::ShutdownRequested => {
                    if done != committed {
                        let at = done.clone();
                        if self.checkpoint(&mut io, at.clone(), &mut summary).await? {
                            committed = at;
                        }
                    }
                    summary.ended_by = Some(action.to_string());
                }
                DaemonMessage::Shutdown { reason } => {
                    if reason.eq_ignore_ascii_case("TERMINATE") {
                        self.checkpoint(&mut io, None, &mut summary).await?;
                    }
                    summary.ended_by = Some(action.to_string());
                }
            }
            io.status(action).await?;
        }
        Ok(summary)
    }

    /// Asks the daemon to checkpoint at `at` (`None`: SHARD_END) and reads
    /// its answer; retries `ThrottlingException`. Returns whether it was
    /// confirmed.
    async fn checkpoint<I, O>(
        &self,
        io: &mut Io<I, O>,
        at: Option<Position>,
        summary: &mut KclSummary,
    ) -> Result<bool, KclError>
    where
        I: AsyncBufRead + Unpin,
        O: AsyncWrite + Unpin,
    {
        let mut backoff = self.checkpoint_backoff;
        for attempt in 1..=CHECKPOINT_ATTEMPTS {
            io.send(&ProcessorMessage::Checkpoint {
                sequence_number: at.as_ref().map(|p| p.sequence_number.clone()),
                sub_sequence_number: at.as_ref().map(|p| p.sub_sequence_number),
            })
            .await?;
            let answer = io.next().await?.ok_or(KclError::Closed {
                waiting_for: "the answer to a checkpoint",
            })?;
            let DaemonMessage::Checkpoint { error, .. } = answer else {
                return Err(KclError::Unexpected {
                    expected: "the answer to a checkpoint",
                    found: answer.action().to_string(),
                });
            };
            match error {
                None => {
                    summary.checkpoints += 1;
                    return Ok(true);
                }
                Some(error) => {
                    tracing::warn!(attempt, error = %error, "checkpoint failed in the daemon");
                    let retry = error == "ThrottlingException" && attempt < CHECKPOINT_ATTEMPTS;
                    summary.checkpoint_errors.push(error);
                    if !retry {
                        return Ok(false);
                    }
                    // Equal jitter: half the ceiling plus a uniform draw
                    // over the other half. Seeded by the shard (one lease,
                    // one processor), so processors of different shards
                    // throttled together do not retry in step.
                    let unit = crate::util::unit_f64(
                        crate::util::hash_str(summary.shard.as_deref().unwrap_or("")),
                        summary.checkpoint_errors.len() as u64,
                        u64::from(attempt),
                    );
                    tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * unit)).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
        Ok(false)
    }
}

/// The daemon's records as pipeline records, with their positions. A
/// record whose data is not base64 keeps its raw text and gets a
/// [`Record::defect`], so the pipeline dead-letters it.
fn to_records(shard: &ShardId, records: Vec<KclRecord>) -> (Vec<Position>, Vec<Record>) {
    let mut positions = Vec::with_capacity(records.len());
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let sub = r.sub_sequence_number.unwrap_or(0);
        let sequence = if sub == 0 {
            Sequence::new(r.sequence_number.clone())
        } else {
            Sequence::with_sub_sequence(r.sequence_number.clone(), sub)
        };
        let raw = r.data.unwrap_or_default();
        let (payload, defect) = match base64::engine::general_purpose::STANDARD.decode(&raw) {
            Ok(bytes) => (Bytes::from(bytes), None),
            Err(e) => (
                Bytes::from(raw.into_bytes()),
                Some(std::sync::Arc::from(format!(
                    "record data is not base64 ({e}); the daemon sends base64, so the record is corrupt"
                ))),
            ),
        };
        let arrival = r
            .approximate_arrival_timestamp
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
            .unwrap_or_else(SystemTime::now);
        positions.push(Position {
            sequence_number: r.sequence_number,
            sub_sequence_number: sub,
        });
        out.push(Record {
            id: format!("{shard}:{sequence}"),
            partition_key: r.partition_key,
            shard: shard.clone(),
            sequence,
            payload,
            arrival,
            defect,
        });
    }
    (positions, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_daemon_action() {
        let lines = [
            r#"{"action":"initialize","shardId":"shardId-000000000001","sequenceNumber":"TRIM_HORIZON","subSequenceNumber":0}"#,
            r#"{"action":"processRecords","millisBehindLatest":20,"records":[{"action":"record","data":"e30=","partitionKey":"p","sequenceNumber":"1","subSequenceNumber":0,"approximateArrivalTimestamp":1700000000000}]}"#,
            r#"{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber":0,"error":"ThrottlingException"}"#,
            r#"{"action":"leaseLost"}"#,
            r#"{"action":"shardEnded"}"#,
            r#"{"action":"shutdownRequested"}"#,
            r#"{"action":"shutdown","reason":"TERMINATE"}"#,
        ];
        let actions: Vec<&str> = lines
            .iter()
            .map(|l| serde_json::from_str::<DaemonMessage>(l).unwrap().action())
            .collect();
        assert_eq!(
            actions,
            [
                "initialize",
                "processRecords",
                "checkpoint",
                "leaseLost",
                "shardEnded",
                "shutdownRequested",
                "shutdown"
            ]
        );
    }

    #[test]
    fn writes_checkpoint_and_status_as_the_daemon_reads_them() {
        let shard_end = ProcessorMessage::Checkpoint {
            sequence_number: None,
            sub_sequence_number: None,
        };
        assert_eq!(
            serde_json::to_string(&shard_end).unwrap(),
            r#"{"action":"checkpoint","sequenceNumber":null,"subSequenceNumber":null}"#
        );
        let status = ProcessorMessage::Status {
            response_for: "processRecords".into(),
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"action":"status","responseFor":"processRecords"}"#
        );
    }

    #[derive(Debug)]
    struct BrokenSink;

    #[async_trait::async_trait]
    impl crate::DeadLetterSink for BrokenSink {
        async fn store(&self, _: &crate::DeadLetter) -> Result<(), crate::DeadLetterError> {
            Err(crate::DeadLetterError::permanent("disk full"))
        }
    }

    #[derive(Clone, Debug, Deserialize)]
    struct Msg {
        #[allow(dead_code)]
        text: String,
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_finished_checkpoints_the_done_prefix_and_stops() {
        let processor =
            crate::batch::builder()
                .json::<Msg>()
                .classify(|_: &Msg| {
                    futures::future::ready(Ok::<_, crate::ClassifyError>(
                        crate::Prediction::binary("actionable", "noise", 0.1),
                    ))
                })
                .policy(crate::Policy::binary(0.5, "oncall"))
                .route(crate::fakes::RecordingRouter::<Msg>::new())
                .dead_letter(BrokenSink)
                .max_in_flight(1)
                .into_batch_processor()
                .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let script = format!(
            "{}\n{}\n{}\n",
            r#"{"action":"initialize","shardId":"shardId-1"}"#,
            serde_json::json!({"action":"processRecords","records":[
                {"data": b64(r#"{"text":"a"}"#), "partitionKey":"k","sequenceNumber":"1","subSequenceNumber":0},
                {"data": b64("not json"), "partitionKey":"k","sequenceNumber":"2","subSequenceNumber":0},
                {"data": b64(r#"{"text":"c"}"#), "partitionKey":"k","sequenceNumber":"3","subSequenceNumber":0},
            ]}),
            r#"{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber":0,"error":null}"#,
        );
        let mut out = Vec::new();
        let err = KclProcessor::new(processor)
            .run(script.as_bytes(), &mut out)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, KclError::Unfinished { record, .. } if record == "2"),
            "{err}"
        );
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"action":"status","responseFor":"initialize"}"#,
                r#"{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber":0}"#,
            ]
        );
    }

    #[test]
    fn an_unknown_action_is_a_typed_error() {
        let err = serde_json::from_str::<DaemonMessage>(r#"{"action":"dance"}"#).unwrap_err();
        assert!(err.to_string().contains("dance"), "{err}");
    }
}
