//! The wire side: [`Publisher`] sends one message (Publish) or a batch
//! (PublishBatch), with the router's own retries of what failed (none by
//! default). Concurrent deliveries are grouped into batches by the shared
//! micro-batcher ([`crate::aws::batcher`]), for which `Publisher` is the
//! [`Flush`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{SnsError, entry_failed, from_sdk};
use super::message::Outgoing;
use crate::aws::batcher::{Flush, Waiting};
use crate::pipeline::RetryPolicy;
use crate::util::splitmix64;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

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

    /// Publishes `batch` (at most 10, within the batch size limit) with
    /// PublishBatch, resending only the entries that failed with a
    /// retryable error while the router's attempts last, and returns one
    /// result per message, in order. A message whose caller no longer
    /// waits (`waiting`) is not resent.
    pub(crate) async fn publish_batch(
        &self,
        batch: Vec<Outgoing>,
        waiting: &Waiting<'_>,
    ) -> Vec<Result<String, SnsError>> {
        let mut results: Vec<Option<Result<String, SnsError>>> =
            batch.iter().map(|_| None).collect();
        // Entry ids are the position in the batch ("m0".."m9") and are kept
        // on retries, so a resent entry has the same id.
        let mut pending: Vec<(usize, &Outgoing)> = batch.iter().enumerate().collect();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        while !pending.is_empty() {
            let failed = self.publish_batch_once(&mut pending, &mut results).await;
            // `pending` now holds the messages that may pass on another
            // attempt, `failed` the error each got this time.
            if pending.is_empty() {
                break;
            }
            if attempt >= max_attempts {
                for ((i, _), err) in pending.drain(..).zip(failed) {
                    self.answer(&mut results, i, Err(exhausted(attempt, err)));
                }
                break;
            }
            tokio::time::sleep(self.pause(attempt)).await;
            // A caller that gave up (the pipeline's call timeout) is not
            // resent for: its deadline bounds the router's retries.
            let mut failed = failed.into_iter();
            pending.retain(|(i, _)| {
                let err = failed.next();
                if waiting(*i) {
                    return true;
                }
                if let Some(err) = err {
                    self.count_outcome(&Err(exhausted(attempt, err)));
                }
                false
            });
            if pending.is_empty() {
                break;
            }
            self.count_retries(pending.len());
            attempt += 1;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(invalid_request(
                        &self.topic,
                        "a message of the batch got no answer",
                    ))
                })
            })
            .collect()
    }

    fn answer(
        &self,
        results: &mut [Option<Result<String, SnsError>>],
        i: usize,
        result: Result<String, SnsError>,
    ) {
        self.count_outcome(&result);
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(result);
        }
    }

    /// One PublishBatch call. Answers the messages that are done (accepted,
    /// or refused for good), leaves the retryable ones in `pending`, and
    /// returns their errors in the same order.
    async fn publish_batch_once(
        &self,
        pending: &mut Vec<(usize, &Outgoing)>,
        results: &mut [Option<Result<String, SnsError>>],
    ) -> Vec<SnsError> {
        let mut entries = Vec::with_capacity(pending.len());
        let mut unbuildable = Vec::new();
        for (n, (i, out)) in pending.iter().enumerate() {
            let built = attribute_map(out).and_then(|attributes| {
                PublishBatchRequestEntry::builder()
                    .id(format!("m{i}"))
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
                Err(e) => unbuildable.push((n, e)),
            }
        }
        for (n, e) in unbuildable.into_iter().rev() {
            let (i, _) = pending.remove(n);
            self.answer(results, i, Err(invalid_request(&self.topic, e)));
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
                for (i, _) in pending.drain(..) {
                    self.answer(results, i, Err(err.clone()));
                }
                return Vec::new();
            }
        };
        let mut retry = Vec::new();
        let mut errors = Vec::new();
        for (i, out) in pending.drain(..) {
            let id = format!("m{i}");
            let ok = answer
                .successful()
                .iter()
                .find(|s| s.id() == Some(id.as_str()));
            let refused = answer.failed().iter().find(|f| f.id() == id);
            match (ok.and_then(|s| s.message_id()), refused) {
                (Some(message_id), _) => self.answer(results, i, Ok(message_id.to_owned())),
                (None, Some(f)) => {
                    let err = entry_failed(&self.topic, f.code(), f.message(), f.sender_fault());
                    if err.is_retryable() {
                        retry.push((i, out));
                        errors.push(err);
                    } else {
                        self.answer(results, i, Err(err));
                    }
                }
                (None, None) => {
                    let detail = if ok.is_some() {
                        format!("entry {id} as Successful with no MessageId")
                    } else {
                        format!("neither Successful nor Failed for entry {id}")
                    };
                    retry.push((i, out));
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

impl Flush for Publisher {
    type Item = Outgoing;
    type Output = Result<String, SnsError>;

    async fn flush(&self, batch: Vec<Outgoing>, waiting: &Waiting<'_>) -> Vec<Self::Output> {
        self.publish_batch(batch, waiting).await
    }

    fn size(&self, out: &Outgoing) -> usize {
        out.size()
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
