//! Amazon SNS as a [`Router`]: [`SnsRouter`]. Feature `sns`.
//!
//! Each delivery becomes one SNS message, published to the topic of its
//! route. Support agents subscribe to the topics (email, SMS, an SQS queue
//! per team) and filter on the message attributes.
//!
//! # Topics
//!
//! [`SnsRouterBuilder::topic`] publishes every route to one topic;
//! [`SnsRouterBuilder::route_topic`] gives a route its own topic (a team per
//! topic), and `topic` is then the fallback for the other routes. A route
//! with no topic and no fallback is a permanent error
//! ([`SnsError::UnknownRoute`]), so the record is dead-lettered, not
//! retried.
//!
//! # Message and subject
//!
//! Both are [`Template`]s (syntax in [`template`]). The defaults are
//! [`DEFAULT_MESSAGE_TEMPLATE`], close to the original application's
//! `Respond to this tweet: https://twitter.com/{user}/status/{id}` with the
//! label and confidence added, and [`DEFAULT_SUBJECT_TEMPLATE`]. Fields
//! with no value render empty; a template that renders an empty message is
//! a permanent error ([`SnsError::EmptyMessage`]). The rendered subject is
//! made acceptable to SNS by [`sanitize_subject`] (printable ASCII, one
//! line, at most 100 characters); a subject that sanitises to nothing is
//! left out.
//!
//! # Message attributes
//!
//! Every message carries, unless turned off with
//! [`SnsRouterBuilder::message_attributes`]:
//!
//! | name | type | value |
//! |---|---|---|
//! | `label` | String | the predicted label |
//! | `route` | String | the route the policy chose |
//! | `score` | Number | the score the policy compared (positive-class probability of a binary prediction, else the confidence), five decimals at most |
//! | `record_id` | String | the record's id |
//! | `source` | String | [`SnsRouterBuilder::source_name`], or else the record's shard |
//!
//! An attribute with no value (no score, an empty id) is left out, since
//! SNS refuses empty attribute values. A subscription filter policy such as
//! `{"label": ["complaint"]}` or `{"score": [{"numeric": [">=", 0.9]}]}`
//! then picks messages for one queue per team, from one topic.
//!
//! # Batching
//!
//! With batching on (the default), deliveries to one topic are queued to a
//! micro-batcher task, started on first use, that gathers what arrives
//! within [`linger`](SnsRouterBuilder::linger) (5 ms by default) of the
//! first message, up to 10 messages and 256 KiB ([`MAX_BATCH_ENTRIES`],
//! [`MAX_BATCH_BYTES`]), and sends them in one PublishBatch call; a message
//! that would push the batch over 256 KiB starts the next one. Each caller
//! gets its own result: an entry of the answer's `Failed` list fails its
//! own delivery only, retryable when `SenderFault` is false or its code is
//! a throttling code ([`SnsError::EntryFailed`]), and the pipeline retries
//! that record alone. At most
//! [`max_concurrent_batches`](SnsRouterBuilder::max_concurrent_batches)
//! calls per topic are in flight; a free slot is taken before a batch is
//! gathered, so deliveries that arrive while every slot is busy fill the
//! next batch. At most 1,024 deliveries wait per topic; more wait for room.
//! These rules are those of every micro-batcher in the crate (the SageMaker
//! classifier's too). With [`batching(false)`](SnsRouterBuilder::batching)
//! every delivery is one Publish call.
//!
//! # Retries
//!
//! Retries are decided in one place, the pipeline's
//! [`RetryPolicy`]: by default the router makes one
//! attempt per delivery, and the SDK client none of its own (both
//! constructors turn the SDK's retries off). Worst case, calls to SNS per
//! record:
//!
//! | pipeline attempts | router attempts | SDK attempts | calls per record |
//! |---|---|---|---|
//! | 5 (default [`RetryPolicy`]) | 1 (default) | 1 (off) | **5** |
//! | *p* | *r* ([`retry_policy`](SnsRouterBuilder::retry_policy)) | 1 | *p* × *r* |
//!
//! A router given its own [`retry_policy`](SnsRouterBuilder::retry_policy)
//! resends, after a jittered exponential backoff, only the entries that
//! failed with a retryable error (and calls that failed as a whole with
//! one), until they pass, its attempts run out
//! ([`SnsError::RetriesExhausted`]), or the delivery's caller stops waiting
//! (the pipeline's [`call_timeout`](crate::Pipeline::call_timeout) ends the
//! attempt): the pipeline's budget bounds the router's resends.
//!
//! # Start-up check
//!
//! [`build`](SnsRouterBuilder::build) calls GetTopicAttributes on every
//! topic, so a topic that does not exist, or that the role may not use,
//! fails before the first record with [`SnsConfigError::TopicCheck`], hint
//! first. Throttling and connection failures are retried until
//! [`startup_timeout`](SnsRouterBuilder::startup_timeout) (30 s by
//! default), then fail with [`SnsConfigError::StartupTimeout`].
//!
//! A delivery whose caller stops waiting (a pipeline call timeout drops
//! its future) before its batch is sent is left out of it; one already sent
//! may still be published, and at-least-once delivery makes the later retry
//! harmless (a FIFO topic drops it as a duplicate).
//!
//! The batcher runs on the Tokio runtime of the first caller. If that
//! runtime shuts down, the next delivery starts a new batcher; a delivery
//! caught in between fails with the retryable [`SnsError::BatcherGone`].
//!
//! # FIFO topics
//!
//! For a topic whose ARN ends in `.fifo`, each message gets a
//! `MessageGroupId`, the predicted label by default ([`FifoGroup`]), and a
//! `MessageDeduplicationId`, the record id, both made valid by
//! [`fifo_id`]. A record redelivered after a crash therefore has the same
//! deduplication id, and SNS drops the copy if it arrives within its
//! five-minute deduplication window. A batch retry resends only failed
//! entries, so messages of one group can be reordered when an earlier one
//! fails and a later one passes; set [`batching(false)`](SnsRouterBuilder::batching)
//! if strict order within a group matters.
//!
//! # Size
//!
//! SNS accepts at most 256 KiB per message, attributes included. The router
//! counts message, subject and attributes (name, type and value bytes), and
//! cuts a message that does not fit with [`truncate_message`]: at a UTF-8
//! character boundary, followed by `… [truncated N bytes]`. The limit can be
//! lowered with [`max_message_bytes`](SnsRouterBuilder::max_message_bytes)
//! (for SMS subscribers, for example).
//!
//! # Errors
//!
//! [`SnsError`] says what failed and what to do; it converts into
//! [`RouteError`] as throttled (Throttled, KMSThrottling), unavailable
//! (InternalError, 5xx, timeouts, connection failures) or permanent
//! (NotFound, AuthorizationError, InvalidParameter, KMS access), with the
//! SDK's error as its source.
//!
//! # Metrics
//!
//! Counters, labelled with `topic`: `streamsift_sns_published_total`
//! (messages accepted), `streamsift_sns_calls_total` (also labelled with
//! `operation`, `Publish` or `PublishBatch`), `streamsift_sns_retries_total`
//! (messages sent again), `streamsift_sns_failures_total` (messages that
//! failed for good, labelled with `kind`) and
//! `streamsift_sns_truncated_total`.
//!
//! # Permissions
//!
//! The role needs `sns:Publish` on each topic (PublishBatch is authorised
//! by the same action), `sns:GetTopicAttributes` for the start-up check
//! (or [`check_topics(false)`](SnsRouterBuilder::check_topics)), and for a topic encrypted with a customer managed
//! KMS key, `kms:GenerateDataKey*` and `kms:Decrypt` on that key.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use aws_sdk_sns::Client;
use serde::Serialize;

use crate::aws::batcher::{BatchConfig, Batcher, DEFAULT_QUEUE, Stopped};
use crate::aws::{AwsErrorKind, DEFAULT_STARTUP_TIMEOUT, StartupError, call_at_startup};
use crate::classify::Label;
use crate::error::RouteError;
use crate::pipeline::RetryPolicy;
use crate::router::{Delivery, Receipt, Router};

mod error;
mod message;
mod publish;
pub mod template;

pub use error::{FailureKind, SharedSdkError, SnsConfigError, SnsError};
use message::{Attribute, Outgoing};
pub use message::{
    MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_FIFO_ID_CHARS, MAX_MESSAGE_BYTES, MAX_SUBJECT_CHARS,
    fifo_id, sanitize_subject, truncate_message,
};
use publish::Publisher;
pub use template::{Template, TemplateError};

/// The default message: the original application's text, with the label
/// and the confidence.
pub const DEFAULT_MESSAGE_TEMPLATE: &str = "Respond to this tweet: \
https://twitter.com/{item.user.screen_name}/status/{item.id_str|item.id}\n\
Label: {label} (confidence {confidence})";

/// The default subject.
pub const DEFAULT_SUBJECT_TEMPLATE: &str = "[{route}] Tweet to respond to: {label} ({confidence})";

/// The default linger of the batcher.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// What a FIFO message's `MessageGroupId` is made of. SNS delivers the
/// messages of one group in order, and groups in parallel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FifoGroup {
    /// The predicted label (the default).
    #[default]
    Label,
    /// The route the policy chose.
    Route,
    /// The record's shard: the stream's own order.
    Shard,
    /// The record's partition key (for tweets, often the user).
    PartitionKey,
    /// One group for every message: a total order, and no parallelism.
    Fixed(String),
}

/// One topic: its ARN, whether it is FIFO, and its batcher, if started.
struct TopicSlot {
    arn: Arc<str>,
    fifo: bool,
    publisher: Publisher,
    /// The micro-batcher, when batching is on.
    batcher: Option<Batcher<Publisher>>,
}

struct Shared {
    topics: Vec<TopicSlot>,
    by_route: BTreeMap<Label, usize>,
    fallback: Option<usize>,
    message: Template,
    subject: Option<Template>,
    reads_item: bool,
    attributes: bool,
    source_name: Option<String>,
    fifo_group: FifoGroup,
    max_message_bytes: usize,
    retry: RetryPolicy,
    batching: Option<BatchConfig>,
}

/// Publishes deliveries to Amazon SNS. See the [module docs](self) for
/// topics, templates, attributes, batching, FIFO topics and limits.
///
/// Cloning is cheap and clones share topics and batchers.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use streamsift::sns::SnsRouter;
///
/// let config = aws_config::load_from_env().await;
/// let router: SnsRouter<serde_json::Value> = SnsRouter::builder(&config)
///     .topic("arn:aws:sns:us-east-1:123456789012:support")
///     .route_topic("billing", "arn:aws:sns:us-east-1:123456789012:billing")
///     .message_template("@{item.user.screen_name}: {item.text}\n{label} ({confidence})")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub struct SnsRouter<T> {
    shared: Arc<Shared>,
    _item: PhantomData<fn(&T)>,
}

impl<T> Clone for SnsRouter<T> {
    fn clone(&self) -> Self {
        SnsRouter {
            shared: Arc::clone(&self.shared),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SnsRouter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client is left out on purpose: its configuration holds the
        // credentials provider.
        let s = &self.shared;
        let arn = |i: &usize| s.topics.get(*i).map(|t| &*t.arn);
        let routes: BTreeMap<&str, Option<&str>> = s
            .by_route
            .iter()
            .map(|(route, i)| (route.as_str(), arn(i)))
            .collect();
        f.debug_struct("SnsRouter")
            .field("topic", &s.fallback.as_ref().and_then(arn))
            .field("route_topics", &routes)
            .field("message", &s.message)
            .field("subject", &s.subject)
            .field("attributes", &s.attributes)
            .field("source_name", &s.source_name)
            .field("fifo_group", &s.fifo_group)
            .field("max_message_bytes", &s.max_message_bytes)
            .field("retry", &s.retry)
            .field("batching", &s.batching)
            .finish_non_exhaustive()
    }
}

impl<T> SnsRouter<T> {
    /// A builder whose client is made from `config`, with the SDK's own
    /// retries turned off: the pipeline's retry policy decides alone (see
    /// [Retries](self#retries)).
    pub fn builder(config: &aws_config::SdkConfig) -> SnsRouterBuilder<T> {
        SnsRouterBuilder::new(Client::new(config))
    }

    /// A builder that publishes through `client` (a test double, a client
    /// with its own HTTP settings). Its configuration is kept, except for
    /// retries, which are turned off as in [`builder`](Self::builder).
    pub fn builder_from_client(client: Client) -> SnsRouterBuilder<T> {
        SnsRouterBuilder::new(client)
    }

    /// The topic ARN a route publishes to, if any.
    pub fn topic_for(&self, route: &str) -> Option<&str> {
        let s = &self.shared;
        let i = s.by_route.get(route).or(s.fallback.as_ref())?;
        s.topics.get(*i).map(|t| &*t.arn)
    }
}

/// Builds an [`SnsRouter`]; start with [`SnsRouter::builder`] or
/// [`SnsRouter::builder_from_client`].
pub struct SnsRouterBuilder<T> {
    client: Client,
    startup_timeout: Duration,
    check_topics: bool,
    topic: Option<String>,
    routes: Vec<(Label, String)>,
    message: String,
    subject: Option<String>,
    attributes: bool,
    source_name: Option<String>,
    fifo_group: FifoGroup,
    max_message_bytes: usize,
    retry: RetryPolicy,
    batching: bool,
    linger: Duration,
    max_batch_entries: usize,
    max_concurrent_batches: usize,
    seed: Option<u64>,
    _item: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for SnsRouterBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsRouterBuilder")
            .field("topic", &self.topic)
            .field("routes", &self.routes)
            .field("message", &self.message)
            .field("subject", &self.subject)
            .field("batching", &self.batching)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

impl<T> SnsRouterBuilder<T> {
    fn new(client: Client) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
            .build();
        SnsRouterBuilder {
            client: Client::from_conf(conf),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            check_topics: true,
            topic: None,
            routes: Vec::new(),
            message: DEFAULT_MESSAGE_TEMPLATE.to_owned(),
            subject: Some(DEFAULT_SUBJECT_TEMPLATE.to_owned()),
            attributes: true,
            source_name: None,
            fifo_group: FifoGroup::default(),
            max_message_bytes: MAX_MESSAGE_BYTES,
            retry: no_retries(),
            batching: true,
            linger: DEFAULT_LINGER,
            max_batch_entries: MAX_BATCH_ENTRIES,
            max_concurrent_batches: 16,
            seed: None,
            _item: PhantomData,
        }
    }

    /// The topic for every route that has none of its own.
    pub fn topic(mut self, arn: impl Into<String>) -> Self {
        self.topic = Some(arn.into());
        self
    }

    /// Publishes deliveries whose route is `route` to `arn`. Naming a
    /// route twice keeps the last topic.
    pub fn route_topic(mut self, route: impl Into<Label>, arn: impl Into<String>) -> Self {
        let route = route.into();
        self.routes.retain(|(r, _)| *r != route);
        self.routes.push((route, arn.into()));
        self
    }

    /// The message template (default [`DEFAULT_MESSAGE_TEMPLATE`]); see
    /// [`template`] for the syntax. Checked by [`build`](Self::build).
    pub fn message_template(mut self, template: impl Into<String>) -> Self {
        self.message = template.into();
        self
    }

    /// The subject template (default [`DEFAULT_SUBJECT_TEMPLATE`]);
    /// checked by [`build`](Self::build).
    pub fn subject_template(mut self, template: impl Into<String>) -> Self {
        self.subject = Some(template.into());
        self
    }

    /// Sends no subject.
    pub fn no_subject(mut self) -> Self {
        self.subject = None;
        self
    }

    /// Turns the message attributes on (default) or off.
    pub fn message_attributes(mut self, on: bool) -> Self {
        self.attributes = on;
        self
    }

    /// The value of the `source` attribute (default: the record's shard).
    pub fn source_name(mut self, name: impl Into<String>) -> Self {
        self.source_name = Some(name.into());
        self
    }

    /// What the `MessageGroupId` of FIFO topics is made of (default: the
    /// label).
    pub fn fifo_group(mut self, group: FifoGroup) -> Self {
        self.fifo_group = group;
        self
    }

    /// The most bytes of one message, attributes and subject included
    /// (default and most [`MAX_MESSAGE_BYTES`]); longer messages are
    /// truncated.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The router's own retry policy for failed entries and calls (attempts
    /// include the first). Default: one attempt, so retries are left to the
    /// pipeline, which counts them against the record (see
    /// [Retries](self#retries)). More attempts multiply the worst case per
    /// record by `max_attempts`.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Batches concurrent deliveries with PublishBatch (default `true`), or
    /// sends each with Publish.
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// How long the batcher waits for more messages after the first of a
    /// batch (default [`DEFAULT_LINGER`]). Zero sends what is already
    /// queued at once.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The most messages per PublishBatch call, 1 to 10 (default 10).
    pub fn max_batch_entries(mut self, n: usize) -> Self {
        self.max_batch_entries = n;
        self
    }

    /// The most PublishBatch calls in flight per topic (default 16).
    pub fn max_concurrent_batches(mut self, n: usize) -> Self {
        self.max_concurrent_batches = n;
        self
    }

    /// Whether [`build`](Self::build) checks every topic with
    /// GetTopicAttributes (default `true`). Turn it off only where the role
    /// may publish but not read the topic's attributes.
    pub fn check_topics(mut self, on: bool) -> Self {
        self.check_topics = on;
        self
    }

    /// How long [`build`](Self::build)'s topic check may take, retries of
    /// throttling and connection failures included (default
    /// [`DEFAULT_STARTUP_TIMEOUT`], 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Seeds the backoff jitter, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the settings, then each topic with GetTopicAttributes (unless
    /// [`check_topics(false)`](Self::check_topics)), and builds the router.
    ///
    /// A topic that does not exist, or that the role may not use, fails
    /// here with [`SnsConfigError::TopicCheck`], before the first record; a
    /// service that cannot be reached fails with
    /// [`SnsConfigError::StartupTimeout`] after
    /// [`startup_timeout`](Self::startup_timeout).
    pub async fn build(self) -> Result<SnsRouter<T>, SnsConfigError> {
        let check = self
            .check_topics
            .then(|| (self.client.clone(), self.startup_timeout));
        let router = self.assemble()?;
        if let Some((client, timeout)) = check {
            let topics = router.shared.topics.iter().map(|t| &*t.arn);
            futures::future::try_join_all(topics.map(|t| check_topic(&client, t, timeout))).await?;
        }
        Ok(router)
    }

    fn assemble(self) -> Result<SnsRouter<T>, SnsConfigError> {
        let message =
            Template::parse(&self.message).map_err(|source| SnsConfigError::Template {
                which: "message",
                source,
            })?;
        let subject = self
            .subject
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|source| SnsConfigError::Template {
                which: "subject",
                source,
            })?;
        if !(1..=MAX_BATCH_ENTRIES).contains(&self.max_batch_entries) {
            return Err(SnsConfigError::InvalidSetting {
                setting: "max_batch_entries",
                found: self.max_batch_entries.to_string(),
                expected: "1 to 10",
            });
        }
        if self.max_concurrent_batches == 0 {
            return Err(SnsConfigError::InvalidSetting {
                setting: "max_concurrent_batches",
                found: "0".into(),
                expected: "at least 1",
            });
        }
        if !(64..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(SnsConfigError::InvalidSetting {
                setting: "max_message_bytes",
                found: self.max_message_bytes.to_string(),
                expected: "64 to 262144",
            });
        }
        if self.topic.is_none() && self.routes.is_empty() {
            return Err(SnsConfigError::NoTopic);
        }
        let seed = self.seed.unwrap_or_else(clock_seed);
        let rng = Arc::new(AtomicU64::new(seed));
        let batching = self.batching.then_some(BatchConfig {
            max_items: self.max_batch_entries,
            max_bytes: MAX_BATCH_BYTES,
            linger: self.linger,
            max_concurrent: self.max_concurrent_batches,
            queue: DEFAULT_QUEUE,
        });
        let mut topics: Vec<TopicSlot> = Vec::new();
        let mut slot_of = |arn: String| -> Result<usize, SnsConfigError> {
            check_topic_arn(&arn)?;
            if let Some(i) = topics.iter().position(|t| *t.arn == *arn) {
                return Ok(i);
            }
            let arn: Arc<str> = Arc::from(arn);
            let publisher = Publisher {
                client: self.client.clone(),
                topic: Arc::clone(&arn),
                retry: self.retry.clone(),
                rng: Arc::clone(&rng),
            };
            topics.push(TopicSlot {
                fifo: arn.ends_with(".fifo"),
                batcher: batching.map(|config| Batcher::new(publisher.clone(), config)),
                publisher,
                arn,
            });
            Ok(topics.len() - 1)
        };
        let fallback = self.topic.map(&mut slot_of).transpose()?;
        let mut by_route = BTreeMap::new();
        for (route, arn) in self.routes {
            by_route.insert(route, slot_of(arn)?);
        }
        let reads_item = message.reads_item() || subject.as_ref().is_some_and(Template::reads_item);
        Ok(SnsRouter {
            shared: Arc::new(Shared {
                topics,
                by_route,
                fallback,
                message,
                subject,
                reads_item,
                attributes: self.attributes,
                source_name: self.source_name,
                fifo_group: self.fifo_group,
                max_message_bytes: self.max_message_bytes,
                retry: self.retry,
                batching,
            }),
            _item: PhantomData,
        })
    }
}

/// The router's own retry policy unless set: one attempt, no retry.
fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    }
}

/// GetTopicAttributes on `topic`, within `timeout`.
async fn check_topic(
    client: &Client,
    topic: &str,
    timeout: Duration,
) -> Result<(), SnsConfigError> {
    let call = || client.get_topic_attributes().topic_arn(topic).send();
    match call_at_startup(timeout, call).await {
        Ok(_) => Ok(()),
        Err(StartupError::Refused { failure, error }) => Err(SnsConfigError::TopicCheck {
            hint: topic_hint(failure.kind),
            topic: topic.to_owned(),
            failure,
            source: Arc::new(error),
        }),
        Err(StartupError::TimedOut { last }) => Err(SnsConfigError::StartupTimeout {
            topic: topic.to_owned(),
            after: timeout,
            last,
        }),
    }
}

fn topic_hint(kind: AwsErrorKind) -> &'static str {
    match kind {
        AwsErrorKind::NotFound => {
            "create the topic, or fix its ARN (name, region, account) or the endpoint URL"
        }
        AwsErrorKind::AccessDenied => {
            "grant sns:GetTopicAttributes and sns:Publish on the topic to this role (or turn the \
             check off with SnsRouterBuilder::check_topics(false)), and check the credentials"
        }
        kind => kind.hint(),
    }
}

fn check_topic_arn(arn: &str) -> Result<(), SnsConfigError> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts.first() == Some(&"arn")
        && parts.get(2) == Some(&"sns")
        && parts
            .iter()
            .enumerate()
            .all(|(i, p)| i == 3 || !p.is_empty());
    if ok {
        Ok(())
    } else {
        Err(SnsConfigError::InvalidTopicArn {
            arn: arn.to_owned(),
        })
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    crate::util::splitmix64(nanos ^ u64::from(std::process::id()))
}

impl Shared {
    /// The index of the topic slot for `route`.
    fn slot_for(&self, route: &Label) -> Result<usize, SnsError> {
        self.by_route
            .get(route)
            .or(self.fallback.as_ref())
            .copied()
            .ok_or_else(|| SnsError::UnknownRoute {
                route: route.to_string(),
                known: if self.by_route.is_empty() {
                    "none".to_owned()
                } else {
                    self.by_route
                        .keys()
                        .map(Label::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    fn attributes<T>(&self, d: &Delivery<'_, T>) -> Vec<Attribute> {
        if !self.attributes {
            return Vec::new();
        }
        let source = self
            .source_name
            .clone()
            .unwrap_or_else(|| d.record.shard.to_string());
        let candidates = [
            ("label", "String", Some(d.prediction.label.to_string())),
            ("route", "String", Some(d.route.to_string())),
            (
                "score",
                "Number",
                template::policy_score(d.prediction).and_then(template::format_score),
            ),
            ("record_id", "String", Some(d.record.id.clone())),
            ("source", "String", Some(source)),
        ];
        candidates
            .into_iter()
            .filter_map(|(name, data_type, value)| {
                value.filter(|v| !v.is_empty()).map(|value| Attribute {
                    name,
                    data_type,
                    value,
                })
            })
            .collect()
    }

    /// Renders a delivery into the message for its topic.
    fn prepare<T: Serialize>(&self, d: &Delivery<'_, T>) -> Result<(usize, Outgoing), SnsError> {
        let index = self.slot_for(d.route)?;
        let Some(slot) = self.topics.get(index) else {
            return Err(SnsError::InvalidRequest {
                topic: String::new(),
                detail: format!("no topic slot {index}"),
            });
        };
        let item = if self.reads_item {
            serde_json::to_value(d.item).ok()
        } else {
            None
        };
        let rendered = self.message.render_with(d, item.as_ref());
        if rendered.is_empty() {
            return Err(SnsError::EmptyMessage {
                template: self.message.as_str().to_owned(),
                record_id: d.record.id.clone(),
            });
        }
        let subject = self
            .subject
            .as_ref()
            .and_then(|t| sanitize_subject(&t.render_with(d, item.as_ref())));
        let attributes = self.attributes(d);
        let (group_id, dedup_id) = if slot.fifo {
            let group = match &self.fifo_group {
                FifoGroup::Label => d.prediction.label.as_str(),
                FifoGroup::Route => d.route.as_str(),
                FifoGroup::Shard => d.record.shard.as_str(),
                FifoGroup::PartitionKey => d.record.partition_key.as_str(),
                FifoGroup::Fixed(group) => group.as_str(),
            };
            (Some(fifo_id(group)), Some(fifo_id(&d.record.id)))
        } else {
            (None, None)
        };
        let fixed = subject.as_ref().map_or(0, String::len)
            + attributes.iter().map(Attribute::size).sum::<usize>();
        let too_large = || SnsError::TooLarge {
            fixed,
            limit: self.max_message_bytes,
        };
        let budget = self
            .max_message_bytes
            .checked_sub(fixed)
            .ok_or_else(too_large)?;
        let (message, truncated) = match truncate_message(&rendered, budget) {
            None => return Err(too_large()),
            Some(std::borrow::Cow::Borrowed(_)) => (rendered, false),
            Some(std::borrow::Cow::Owned(cut)) => (cut, true),
        };
        if truncated {
            metrics::counter!("streamsift_sns_truncated_total", "topic" => slot.arn.to_string())
                .increment(1);
            tracing::debug!(record = %d.record.id, topic = %slot.arn, "SNS message truncated to fit");
        }
        Ok((
            index,
            Outgoing {
                message,
                subject,
                attributes,
                group_id,
                dedup_id,
                truncated,
            },
        ))
    }

    async fn publish(&self, index: usize, out: Outgoing) -> Result<String, SnsError> {
        let Some(slot) = self.topics.get(index) else {
            return Err(SnsError::InvalidRequest {
                topic: String::new(),
                detail: format!("no topic slot {index}"),
            });
        };
        match &slot.batcher {
            Some(batcher) => batcher.submit(out).await.unwrap_or_else(|Stopped| {
                Err(SnsError::BatcherGone {
                    topic: slot.arn.to_string(),
                })
            }),
            None => slot.publisher.publish_one(&out).await,
        }
    }
}

impl<T: Serialize + Sync> Router<T> for SnsRouter<T> {
    fn route(
        &self,
        delivery: &Delivery<'_, T>,
    ) -> impl Future<Output = Result<Receipt, RouteError>> + Send {
        let prepared = self.shared.prepare(delivery);
        let route = delivery.route.clone();
        let shared = Arc::clone(&self.shared);
        async move {
            let (index, out) = prepared?;
            let message_id = shared.publish(index, out).await?;
            Ok(Receipt::new(route).with_message_id(message_id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Prediction, Record, Sequence, ShardId};

    fn client() -> Client {
        let conf = aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(conf)
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:support";
    const FIFO: &str = "arn:aws:sns:us-east-1:123456789012:billing.fifo";

    fn prepare(
        router: &SnsRouter<serde_json::Value>,
        item: &serde_json::Value,
        route: &str,
    ) -> Result<(usize, Outgoing), SnsError> {
        let record = Record::new(
            ShardId::new("shardId-0"),
            Sequence::from_offset(9),
            "pk",
            &b""[..],
        );
        let prediction = Prediction::binary("actionable", "noise", 0.8);
        let route = Label::from(route.to_owned());
        let d = Delivery {
            item,
            record: &record,
            prediction: &prediction,
            route: &route,
        };
        router.shared.prepare(&d)
    }

    #[test]
    fn builder_checks_topics_templates_and_settings() {
        let err = SnsRouter::<()>::builder_from_client(client())
            .assemble()
            .unwrap_err();
        assert!(matches!(err, SnsConfigError::NoTopic));
        let err = SnsRouter::<()>::builder_from_client(client())
            .topic("support")
            .assemble()
            .unwrap_err();
        assert!(
            matches!(err, SnsConfigError::InvalidTopicArn { .. }),
            "{err}"
        );
        let err = SnsRouter::<()>::builder_from_client(client())
            .topic(TOPIC)
            .message_template("{lable}")
            .assemble()
            .unwrap_err();
        assert!(err.to_string().contains("message template"), "{err}");
        let err = SnsRouter::<()>::builder_from_client(client())
            .topic(TOPIC)
            .max_batch_entries(11)
            .assemble()
            .unwrap_err();
        assert!(err.to_string().contains("1 to 10"), "{err}");
    }

    #[test]
    fn routes_pick_topics_with_a_fallback_and_unknown_routes_fail_for_good() {
        let router: SnsRouter<serde_json::Value> = SnsRouter::builder_from_client(client())
            .route_topic("billing", FIFO)
            .route_topic("outage", TOPIC)
            .assemble()
            .unwrap();
        assert_eq!(router.topic_for("billing"), Some(FIFO));
        assert_eq!(router.topic_for("other"), None);
        let item = serde_json::json!({});
        let err = prepare(&router, &item, "other").unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("\"other\"") && text.contains("billing, outage"),
            "{text}"
        );
        let route_err: RouteError = err.into();
        assert!(!route_err.is_retryable());

        let with_default: SnsRouter<serde_json::Value> = SnsRouter::builder_from_client(client())
            .topic(TOPIC)
            .route_topic("billing", FIFO)
            .assemble()
            .unwrap();
        assert_eq!(with_default.topic_for("other"), Some(TOPIC));
        let (i, out) = prepare(&with_default, &item, "other").unwrap();
        assert_eq!(&*with_default.shared.topics[i].arn, TOPIC);
        assert_eq!((out.group_id, out.dedup_id), (None, None), "standard topic");
        let (i, out) = prepare(&with_default, &item, "billing").unwrap();
        assert_eq!(&*with_default.shared.topics[i].arn, FIFO);
        assert_eq!(out.group_id.as_deref(), Some("actionable"));
        assert_eq!(out.dedup_id.as_deref(), Some("shardId-0:9"));
    }

    #[test]
    fn default_templates_render_the_tweet_link_label_and_confidence() {
        let router: SnsRouter<serde_json::Value> = SnsRouter::builder_from_client(client())
            .topic(TOPIC)
            .assemble()
            .unwrap();
        let tweet = serde_json::json!({"id": 1, "id_str": "1234", "user": {"screen_name": "ann"}});
        let (_, out) = prepare(&router, &tweet, "support").unwrap();
        assert_eq!(
            out.message,
            "Respond to this tweet: https://twitter.com/ann/status/1234\nLabel: actionable (confidence 0.80)"
        );
        assert_eq!(
            out.subject.as_deref(),
            Some("[support] Tweet to respond to: actionable (0.80)")
        );
        let attrs: Vec<(&str, &str, &str)> = out
            .attributes
            .iter()
            .map(|a| (a.name, a.data_type, a.value.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("label", "String", "actionable"),
                ("route", "String", "support"),
                ("score", "Number", "0.8"),
                ("record_id", "String", "shardId-0:9"),
                ("source", "String", "shardId-0"),
            ]
        );
    }

    #[test]
    fn oversized_messages_are_cut_to_the_limit_with_attributes_counted() {
        let router: SnsRouter<serde_json::Value> = SnsRouter::builder_from_client(client())
            .topic(TOPIC)
            .message_template("{item.text}")
            .max_message_bytes(1000)
            .assemble()
            .unwrap();
        let item = serde_json::json!({"text": "ü".repeat(800)});
        let (_, out) = prepare(&router, &item, "r").unwrap();
        assert!(out.truncated);
        assert!(out.size() <= 1000, "{}", out.size());
        assert!(out.size() > 950, "uses the room it has: {}", out.size());
        assert!(out.message.ends_with(" bytes]"));
        let empty = serde_json::json!({});
        assert!(matches!(
            prepare(&router, &empty, "r"),
            Err(SnsError::EmptyMessage { .. })
        ));
    }

    #[test]
    fn debug_leaves_the_client_out() {
        let router: SnsRouter<()> = SnsRouter::builder_from_client(client())
            .topic(TOPIC)
            .assemble()
            .unwrap();
        let text = format!("{router:?}");
        assert!(text.contains(TOPIC) && !text.contains("Client"), "{text}");
    }

    #[test]
    fn topic_check_hints_name_what_to_do() {
        assert!(topic_hint(AwsErrorKind::NotFound).starts_with("create the topic"));
        let denied = topic_hint(AwsErrorKind::AccessDenied);
        assert!(
            denied.contains("sns:GetTopicAttributes") && denied.contains("check_topics(false)"),
            "{denied}"
        );
        assert_eq!(
            topic_hint(AwsErrorKind::ExpiredCredentials),
            AwsErrorKind::ExpiredCredentials.hint()
        );
    }
}
