//! The wire side: [`Publisher`] sends one message (Publish) or a batch
//! (PublishBatch) with retries of what failed, and [`spawn`] starts the
//! micro-batcher task that groups concurrent deliveries into batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::error::{SnsError, entry_failed, from_sdk};
use super::message::{MAX_BATCH_BYTES, Outgoing};
use crate::pipeline::RetryPolicy;
use crate::util::splitmix64;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A message waiting in the batcher, and where its answer goes.
pub(crate) struct Job {
    pub(crate) out: Outgoing,
    pub(crate) reply: oneshot::Sender<Result<String, SnsError>>,
}

/// How the batcher groups messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchConfig {
    pub(crate) linger: Duration,
    pub(crate) max_entries: usize,
    pub(crate) max_concurrent: usize,
    pub(crate) queue: usize,
}

/// Sends messages to one topic, retrying what failed.
#[derive(Clone)]
pub(crate) struct Publisher {
    pub(crate) client: Client,
    pub(crate) topic: Arc<str>,
    pub(crate) retry: RetryPolicy,
    pub(crate) rng: Arc<AtomicU64>,
}

fn invalid_request(topic: &str, err: impl std::fmt::Display) -> SnsError {
    SnsError::InvalidRequest {
        topic: topic.to_owned(),
        detail: err.to_string(),
    }
}

fn attribute_map(out: &Outgoing) -> Result<Option<HashMap<String, MessageAttributeValue>>, String> {
    if out.attributes.is_empty() {
        return Ok(None);
    }
    let mut map = HashMap::with_capacity(out.attributes.len());
    for a in &out.attributes {
        let value = MessageAttributeValue::builder()
            .data_type(a.data_type)
            .string_value(&a.value)
            .build()
            .map_err(|e| e.to_string())?;
        map.insert(a.name.to_owned(), value);
    }
    Ok(Some(map))
}

impl Publisher {
    fn topic_label(&self) -> String {
        self.topic.to_string()
    }

    fn unit(&self) -> f64 {
        (splitmix64(self.rng.fetch_add(GOLDEN, Ordering::Relaxed)) >> 11) as f64
            / (1u64 << 53) as f64
    }

    /// The pause before retry `attempt`: "equal jitter" over the policy's
    /// exponential ceiling, between half of it and all of it. Never near
    /// zero by chance (plain full jitter can draw ~0 several times in a
    /// row and fire retries back to back), so an always-failing topic sees
    /// at most `max_attempts` calls per message, spread over at least half
    /// the policy's total backoff.
    fn pause(&self, attempt: u32) -> Duration {
        let ceiling = self.retry.backoff(attempt, 1.0);
        ceiling / 2 + ceiling.mul_f64(self.unit() / 2.0)
    }

    fn count_call(&self, operation: &'static str) {
        metrics::counter!("streamsift_sns_calls_total", "topic" => self.topic_label(), "operation" => operation)
            .increment(1);
    }

    fn count_outcome(&self, result: &Result<String, SnsError>) {
        match result {
            Ok(_) => metrics::counter!("streamsift_sns_published_total", "topic" => self.topic_label())
                .increment(1),
            Err(e) => metrics::counter!("streamsift_sns_failures_total", "topic" => self.topic_label(), "kind" => e.metric_kind())
                .increment(1),
        }
    }

    fn count_retries(&self, n: usize) {
        metrics::counter!("streamsift_sns_retries_total", "topic" => self.topic_label())
            .increment(n as u64);
    }

    /// Publishes one message with the Publish call, retrying failures that
    /// may pass.
    pub(crate) async fn publish_one(&self, out: &Outgoing) -> Result<String, SnsError> {
        let result = self.publish_one_inner(out).await;
        self.count_outcome(&result);
        result
    }

    async fn publish_one_inner(&self, out: &Outgoing) -> Result<String, SnsError> {
        let attributes = attribute_map(out).map_err(|e| invalid_request(&self.topic, e))?;
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            self.count_call("Publish");
            let err = match self
                .client
                .publish()
                .topic_arn(&*self.topic)
                .message(&out.message)
                .set_subject(out.subject.clone())
                .set_message_attributes(attributes.clone())
                .set_message_group_id(out.group_id.clone())
                .set_message_deduplication_id(out.dedup_id.clone())
                .send()
                .await
            {
                Ok(answer) => match answer.message_id() {
                    Some(id) => return Ok(id.to_owned()),
                    None => SnsError::MalformedResponse {
                        topic: self.topic.to_string(),
                        detail: "no MessageId".into(),
                    },
                },
                Err(e) => from_sdk("Publish", &self.topic, e),
            };
            if !err.is_retryable() {
                return Err(err);
            }
            if attempt >= max_attempts {
                return Err(exhausted(attempt, err));
            }
            tokio::time::sleep(self.pause(attempt)).await;
            self.count_retries(1);
            attempt += 1;
        }
    }

    /// Publishes `jobs` (at most 10, within the batch size limit) with
    /// PublishBatch, resending only the entries that failed with a
    /// retryable error, and answers every job.
    pub(crate) async fn publish_batch(&self, jobs: Vec<Job>) {
        // Entry ids are the position in the first call ("m0".."m9") and are
        // kept on retries, so a resent entry has the same id.
        let mut pending: Vec<(String, Job)> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, job)| (format!("m{i}"), job))
            .collect();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        while !pending.is_empty() {
            let failed = self.publish_batch_once(&mut pending).await;
            // `pending` now holds the jobs that may pass on another attempt,
            // `failed` the error each got this time.
            if pending.is_empty() {
                break;
            }
            if attempt >= max_attempts {
                for ((_, job), err) in pending.drain(..).zip(failed) {
                    self.answer(job, Err(exhausted(attempt, err)));
                }
                break;
            }
            tokio::time::sleep(self.pause(attempt)).await;
            self.count_retries(pending.len());
            attempt += 1;
        }
    }

    fn answer(&self, job: Job, result: Result<String, SnsError>) {
        self.count_outcome(&result);
        // A caller that gave up (its future was dropped) no longer listens.
        let _ = job.reply.send(result);
    }

    /// One PublishBatch call. Answers the jobs that are done (accepted, or
    /// refused for good), leaves the retryable ones in `pending`, and
    /// returns their errors in the same order.
    async fn publish_batch_once(&self, pending: &mut Vec<(String, Job)>) -> Vec<SnsError> {
        let mut entries = Vec::with_capacity(pending.len());
        let mut unbuildable = Vec::new();
        for (i, (id, job)) in pending.iter().enumerate() {
            let out = &job.out;
            let built = attribute_map(out).and_then(|attributes| {
                PublishBatchRequestEntry::builder()
                    .id(id)
                    .message(&out.message)
                    .set_subject(out.subject.clone())
                    .set_message_attributes(attributes)
                    .set_message_group_id(out.group_id.clone())
                    .set_message_deduplication_id(out.dedup_id.clone())
                    .build()
                    .map_err(|e| e.to_string())
            });
            match built {
                Ok(entry) => entries.push(entry),
                Err(e) => unbuildable.push((i, e)),
            }
        }
        for (i, e) in unbuildable.into_iter().rev() {
            let (_, job) = pending.remove(i);
            let err = invalid_request(&self.topic, e);
            self.answer(job, Err(err));
        }
        if pending.is_empty() {
            return Vec::new();
        }
        self.count_call("PublishBatch");
        let answer = self
            .client
            .publish_batch()
            .topic_arn(&*self.topic)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let err = from_sdk("PublishBatch", &self.topic, e);
                if err.is_retryable() {
                    return vec![err; pending.len()];
                }
                for (_, job) in pending.drain(..) {
                    self.answer(job, Err(err.clone()));
                }
                return Vec::new();
            }
        };
        let mut retry = Vec::new();
        let mut errors = Vec::new();
        for (id, job) in pending.drain(..) {
            let ok = answer
                .successful()
                .iter()
                .find(|s| s.id() == Some(id.as_str()));
            let refused = answer.failed().iter().find(|f| f.id() == id);
            match (ok.and_then(|s| s.message_id()), refused) {
                (Some(message_id), _) => self.answer(job, Ok(message_id.to_owned())),
                (None, Some(f)) => {
                    let err = entry_failed(&self.topic, f.code(), f.message(), f.sender_fault());
                    if err.is_retryable() {
                        retry.push((id, job));
                        errors.push(err);
                    } else {
                        self.answer(job, Err(err));
                    }
                }
                (None, None) => {
                    let detail = if ok.is_some() {
                        format!("entry {id} as Successful with no MessageId")
                    } else {
                        format!("neither Successful nor Failed for entry {id}")
                    };
                    retry.push((id, job));
                    errors.push(SnsError::MalformedResponse {
                        topic: self.topic.to_string(),
                        detail,
                    });
                }
            }
        }
        *pending = retry;
        errors
    }
}

fn exhausted(attempts: u32, last: SnsError) -> SnsError {
    if attempts <= 1 {
        // With a single attempt allowed, the failure itself says the most.
        return last;
    }
    SnsError::RetriesExhausted {
        attempts,
        last: Box::new(last),
    }
}

/// Starts a batcher task for `publisher`'s topic on the current Tokio
/// runtime and returns its queue. The task ends when every sender is
/// dropped and the queue is drained.
pub(crate) fn spawn(publisher: Publisher, config: BatchConfig) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    tokio::spawn(run(publisher, config, rx));
    tx
}

async fn run(publisher: Publisher, config: BatchConfig, mut rx: mpsc::Receiver<Job>) {
    let permits = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
    let max_entries = config
        .max_entries
        .clamp(1, super::message::MAX_BATCH_ENTRIES);
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut bytes = first.out.size();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < max_entries {
            let next = tokio::select! {
                biased;
                job = rx.recv() => job,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(job) = next else { break };
            let size = job.out.size();
            if bytes + size > MAX_BATCH_BYTES {
                carry = Some(job);
                break;
            }
            bytes += size;
            batch.push(job);
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let publisher = publisher.clone();
        tokio::spawn(async move {
            publisher.publish_batch(batch).await;
            drop(permit);
        });
    }
}
