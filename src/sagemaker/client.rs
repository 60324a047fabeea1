//! [`SageMakerClassifier`], its builder, and the calls it makes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Serialize;

use crate::classify::{Classifier, Prediction};
use crate::error::ClassifyError;

use super::error::{Failure, Refusal, batcher_stopped, in_context, replicate};
use super::response::check_count;
use super::*;

/// A SageMaker realtime endpoint as a [`Classifier`].
///
/// Cloning is cheap (the client and the codecs are shared). See the
/// [module docs](crate::sagemaker) for the request and response formats, batching and
/// error mapping.
///
/// ```no_run
/// # async fn demo() {
/// use streamsift::Classifier;
/// use streamsift::sagemaker::{JsonResponse, SageMakerClassifier};
///
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let classifier = SageMakerClassifier::<serde_json::Value>::builder(&config, "tweet-triage")
///     .response(JsonResponse::new().binary_labels("actionable", "noise"))
///     .max_batch_size(16)
///     .build();
/// let tweet = serde_json::json!({"text": "my order never arrived"});
/// let prediction = classifier.classify(&tweet).await;
/// # }
/// ```
pub struct SageMakerClassifier<T> {
    inner: Arc<Inner<T>>,
    /// The micro-batcher `classify` goes through when `max_batch_size` > 1.
    /// Only the classifier (and its clones) hold it: when the last one is
    /// dropped, its queue closes and its task ends.
    batcher: Option<Arc<dyn Submit<T>>>,
}

/// What a call needs: the client, the endpoint, the codecs and the limits.
pub(super) struct Inner<T> {
    pub(super) client: Client,
    pub(super) endpoint_name: String,
    pub(super) content_type: String,
    pub(super) accept: String,
    pub(super) request: Arc<dyn RequestBuilder<T>>,
    pub(super) response: Arc<dyn ResponseParser>,
    pub(super) max_batch_size: usize,
    pub(super) concurrency: usize,
    pub(super) max_payload_bytes: usize,
    pub(super) split_failed_batches: bool,
    pub(super) target_variant: Option<String>,
    pub(super) target_model: Option<String>,
    pub(super) linger: Duration,
}

impl<T> Clone for SageMakerClassifier<T> {
    fn clone(&self) -> Self {
        SageMakerClassifier {
            inner: Arc::clone(&self.inner),
            batcher: self.batcher.clone(),
        }
    }
}

impl<T> fmt::Debug for SageMakerClassifier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client (and its credentials) is left out on purpose.
        let i = &self.inner;
        f.debug_struct("SageMakerClassifier")
            .field("endpoint_name", &i.endpoint_name)
            .field("content_type", &i.content_type)
            .field("accept", &i.accept)
            .field("max_batch_size", &i.max_batch_size)
            .field("micro_batching", &self.batcher.is_some())
            .field("linger", &i.linger)
            .field("concurrency", &i.concurrency)
            .field("max_payload_bytes", &i.max_payload_bytes)
            .field("split_failed_batches", &i.split_failed_batches)
            .field("target_variant", &i.target_variant)
            .field("target_model", &i.target_model)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SageMakerClassifier`]; see
/// [`SageMakerClassifier::builder`].
pub struct SageMakerClassifierBuilder<T> {
    inner: Inner<T>,
    /// Starts the micro-batcher; set by `max_batch_size`, where `T: Clone +
    /// Send` is known.
    batcher: Option<StartBatcher<T>>,
}

impl<T> fmt::Debug for SageMakerClassifierBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SageMakerClassifierBuilder")
            .field("endpoint_name", &self.inner.endpoint_name)
            .field("content_type", &self.inner.content_type)
            .field("max_batch_size", &self.inner.max_batch_size)
            .field("linger", &self.inner.linger)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + 'static> SageMakerClassifier<T> {
    /// A builder for endpoint `endpoint_name` whose client is made from
    /// `config` with the SDK's own retries turned off, with the defaults: a
    /// [`JsonRequest`] sent as `application/json`, `Accept:
    /// application/json`, a [`JsonResponse`], one item per call, four calls
    /// at a time in [`classify_batch`](Classifier::classify_batch), and the
    /// 6 MB payload limit.
    pub fn builder(
        config: &aws_config::SdkConfig,
        endpoint_name: impl Into<String>,
    ) -> SageMakerClassifierBuilder<T> {
        Self::builder_from_client(Client::new(config), endpoint_name)
    }

    /// A builder that calls through `client` (its configuration is kept,
    /// except for retries, which are turned off), with the defaults of
    /// [`builder`](SageMakerClassifier::builder).
    pub fn builder_from_client(
        client: Client,
        endpoint_name: impl Into<String>,
    ) -> SageMakerClassifierBuilder<T> {
        SageMakerClassifierBuilder::new(
            client,
            endpoint_name,
            CONTENT_TYPE_JSON,
            JsonRequest::new(),
        )
    }
}

impl<T: 'static> SageMakerClassifier<T> {
    /// A builder for items that are not `Serialize`: `request` builds the
    /// body, sent with `content_type`. The other defaults are those of
    /// [`builder`](SageMakerClassifier::builder).
    pub fn builder_with_request(
        config: &aws_config::SdkConfig,
        endpoint_name: impl Into<String>,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> SageMakerClassifierBuilder<T> {
        SageMakerClassifierBuilder::new(Client::new(config), endpoint_name, content_type, request)
    }

    /// The endpoint this classifier calls.
    pub fn endpoint_name(&self) -> &str {
        &self.inner.endpoint_name
    }
}

impl<T: 'static> SageMakerClassifierBuilder<T> {
    fn new(
        client: Client,
        endpoint_name: impl Into<String>,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> Self {
        let conf = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled());
        SageMakerClassifierBuilder {
            inner: Inner {
                client: Client::from_conf(conf.build()),
                endpoint_name: endpoint_name.into(),
                content_type: content_type.into(),
                accept: CONTENT_TYPE_JSON.to_string(),
                request: Arc::new(request),
                response: Arc::new(JsonResponse::new()),
                max_batch_size: 1,
                concurrency: 4,
                max_payload_bytes: MAX_PAYLOAD_BYTES,
                split_failed_batches: true,
                target_variant: None,
                target_model: None,
                linger: DEFAULT_LINGER,
            },
            batcher: None,
        }
    }
}

impl<T: Serialize + 'static> SageMakerClassifierBuilder<T> {
    /// Sends a [`CsvRequest`] of `fields` as `text/csv`.
    pub fn csv(self, fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.request(CONTENT_TYPE_CSV, CsvRequest::new(fields))
    }

    /// Sends a [`JsonRequest`] as `application/json` (the default).
    pub fn json(self) -> Self {
        self.request(CONTENT_TYPE_JSON, JsonRequest::new())
    }
}

impl<T: 'static> SageMakerClassifierBuilder<T> {
    /// Replaces the request builder, and the content type sent with it.
    pub fn request(
        mut self,
        content_type: impl Into<String>,
        request: impl RequestBuilder<T> + 'static,
    ) -> Self {
        self.inner.content_type = content_type.into();
        self.inner.request = Arc::new(request);
        self
    }

    /// The `Accept` header (default `application/json`).
    pub fn accept(mut self, accept: impl Into<String>) -> Self {
        self.inner.accept = accept.into();
        self
    }

    /// Replaces the response parser (default [`JsonResponse::new`]).
    pub fn response(mut self, parser: impl ResponseParser + 'static) -> Self {
        self.inner.response = Arc::new(parser);
        self
    }

    /// How many calls [`classify_batch`](Classifier::classify_batch) makes
    /// at a time, and how many micro-batches are in flight at once (default
    /// 4; 0 counts as 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.inner.concurrency = n.max(1);
        self
    }

    /// The largest request body to send (default [`MAX_PAYLOAD_BYTES`]).
    /// A micro-batch whose body is larger is sent in halves (down to single
    /// items); a single item whose body is larger fails, before sending,
    /// with a permanent error.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.inner.max_payload_bytes = n;
        self
    }

    /// When a batch of several items is refused as a whole (too large, a
    /// `ModelError` or `ValidationError`), classify its items one by one so
    /// one bad item does not fail the others (default on). A batch answered
    /// with the wrong number of predictions is not split: that is a
    /// configuration error.
    pub fn split_failed_batches(mut self, on: bool) -> Self {
        self.inner.split_failed_batches = on;
        self
    }

    /// Sends every call to this production variant (`TargetVariant`).
    pub fn target_variant(mut self, variant: impl Into<String>) -> Self {
        self.inner.target_variant = Some(variant.into());
        self
    }

    /// The model to call on a multi-model endpoint (`TargetModel`).
    pub fn target_model(mut self, model: impl Into<String>) -> Self {
        self.inner.target_model = Some(model.into());
        self
    }

    /// How long a micro-batch waits for more items after its first one
    /// (default 2 ms), when [`max_batch_size`](Self::max_batch_size) is
    /// over one. A batch that fills up is sent at once. Every `classify`
    /// call may wait this long (besides waiting for a free call when
    /// `concurrency` calls are in flight), so keep it well under the
    /// model's latency.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.inner.linger = linger;
        self
    }

    /// The classifier. Building does no I/O: the micro-batcher's task
    /// starts with the first `classify` call.
    pub fn build(self) -> SageMakerClassifier<T> {
        let inner = Arc::new(self.inner);
        let batcher = match self.batcher {
            Some(start) if inner.max_batch_size > 1 => Some(start(Arc::clone(&inner))),
            _ => None,
        };
        SageMakerClassifier { inner, batcher }
    }
}

impl<T: Clone + Send + Sync + 'static> SageMakerClassifierBuilder<T> {
    /// How many items go in one call (default 1; 0 counts as 1), both in
    /// [`classify_batch`](Classifier::classify_batch) and for concurrent
    /// [`classify`](Classifier::classify) calls, which are then
    /// micro-batched: collected for up to [`linger`](Self::linger) or until
    /// `n` are waiting, and sent as one call (see the [module docs](crate::sagemaker)).
    ///
    /// Raise it only for a model that answers a multi-item body with one
    /// prediction per item; when it answers with another count, the batch's
    /// items fail with a permanent error that says so. Micro-batching hands
    /// a copy of each item to a background task, hence `T: Clone`; make the
    /// clone cheap (an `Arc` inside) for large items.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.inner.max_batch_size = n.max(1);
        self.batcher = Some(batcher::start::<T>);
        self
    }
}

impl<T: Sync + 'static> Inner<T> {
    /// One `InvokeEndpoint` call for `items`, checked to give one
    /// prediction per item.
    async fn invoke(&self, items: &[&T]) -> Result<Vec<Prediction>, Failure> {
        let i = self;
        let body = i.request.build(items)?;
        if body.len() > i.max_payload_bytes {
            return Err(Failure {
                error: ClassifyError::permanent(format!(
                    "the request body for {} item(s) is {} bytes, over the {}-byte limit of \
                     InvokeEndpoint; shorten the items{}",
                    items.len(),
                    body.len(),
                    i.max_payload_bytes,
                    if items.len() > 1 {
                        " or lower max_batch_size"
                    } else {
                        ""
                    }
                )),
                refusal: if items.len() > 1 {
                    Refusal::TooLarge
                } else {
                    Refusal::None
                },
            });
        }
        let output = i
            .client
            .invoke_endpoint()
            .endpoint_name(&i.endpoint_name)
            .content_type(&i.content_type)
            .accept(&i.accept)
            .set_target_variant(i.target_variant.clone())
            .set_target_model(i.target_model.clone())
            .body(Blob::new(body.to_vec()))
            .send()
            .await
            .map_err(|err| {
                let split = matches!(
                    &err,
                    SdkError::ServiceError(s) if matches!(
                        s.err(),
                        InvokeEndpointError::ModelError(_) | InvokeEndpointError::ValidationError(_)
                    )
                );
                let error = map_invoke_error(&i.endpoint_name, err);
                Failure {
                    refusal: if split && !error.is_retryable() && items.len() > 1 {
                        Refusal::Invalid
                    } else {
                        Refusal::None
                    },
                    error,
                }
            })?;
        let answer = output.body().map(|b| b.as_ref()).unwrap_or(&[]);
        let predictions = i.response.parse(answer, items.len()).map_err(|e| {
            in_context(
                e,
                &format!(
                    "the response of endpoint {:?} (content type {})",
                    i.endpoint_name,
                    output.content_type().unwrap_or("not given")
                ),
            )
        })?;
        check_count(predictions.len(), items.len())?;
        Ok(predictions)
    }

    /// One item alone, the path of `classify` without micro-batching.
    async fn classify_one(&self, item: &T) -> Result<Prediction, ClassifyError> {
        let mut predictions = self.invoke(&[item]).await.map_err(|f| f.error)?;
        predictions
            .pop()
            .ok_or_else(|| ClassifyError::permanent("the endpoint returned no prediction"))
    }

    /// Classifies `items` in as few calls as the refusals allow: one call for
    /// all of them, then, when the body is over `max_payload_bytes` and
    /// `halve_oversized` is set, the two halves in turn (down to single
    /// items), and, when the model or the service refuses a batch and
    /// `split_failed_batches` is on, its items one by one. One answer per
    /// item, in order.
    pub(super) async fn classify_group(
        &self,
        items: &[&T],
        halve_oversized: bool,
    ) -> Vec<Result<Prediction, ClassifyError>> {
        let mut out: Vec<Option<Result<Prediction, ClassifyError>>> =
            items.iter().map(|_| None).collect();
        // Ranges of `items` still to send, the next one last.
        let mut todo = Vec::with_capacity(1);
        todo.push(0..items.len());
        while let Some(range) = todo.pop() {
            let (Some(group), Some(slots)) = (items.get(range.clone()), out.get_mut(range.clone()))
            else {
                continue;
            };
            match self.invoke(group).await {
                Ok(predictions) => {
                    for (slot, p) in slots.iter_mut().zip(predictions) {
                        *slot = Some(Ok(p));
                    }
                }
                Err(Failure {
                    refusal: Refusal::TooLarge,
                    ..
                }) if halve_oversized && group.len() > 1 => {
                    let mid = range.start + group.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(Failure {
                    refusal: Refusal::Invalid | Refusal::TooLarge,
                    ..
                }) if self.split_failed_batches => {
                    for (slot, item) in slots.iter_mut().zip(group) {
                        *slot = Some(self.classify_one(item).await);
                    }
                }
                Err(f) => {
                    for (slot, err) in slots.iter_mut().zip(replicate(f.error, group.len())) {
                        *slot = Some(Err(err));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ClassifyError::permanent(
                        "the item was not classified (a bug in the SageMaker batching)",
                    ))
                })
            })
            .collect()
    }
}

impl<T: Sync + 'static> Classifier<T> for SageMakerClassifier<T> {
    async fn classify(&self, item: &T) -> Result<Prediction, ClassifyError> {
        if let Some(batcher) = &self.batcher {
            return batcher
                .submit(item)
                .await
                .unwrap_or_else(|_| Err(batcher_stopped()));
        }
        self.inner.classify_one(item).await
    }

    async fn classify_batch(&self, items: &[&T]) -> Vec<Result<Prediction, ClassifyError>> {
        // At most `concurrency` calls in flight; answers kept in input order.
        let inner = &*self.inner;
        let mut chunks = items.chunks(inner.max_batch_size);
        let mut in_flight = FuturesOrdered::new();
        let mut out = Vec::with_capacity(items.len());
        loop {
            while in_flight.len() < inner.concurrency {
                match chunks.next() {
                    Some(chunk) => {
                        in_flight.push_back(inner.classify_group(chunk, inner.split_failed_batches))
                    }
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(answers) => out.extend(answers),
                None => break,
            }
        }
        out
    }
}
