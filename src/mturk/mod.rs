//! Amazon Mechanical Turk as a [`Labeler`] (feature `mturk`).
//!
//! **Mechanical Turk closed to new customers in 2026**, and its API
//! reference announces a permanent closure. This labeler is kept for those
//! who still have access, and as a faithful record of the original
//! application, which sent each tweet to 3 workers.
//!
//! - **HITs**: one HIT type (CreateHITType) per labeler, then one HIT per
//!   item (CreateHITWithHITType) with an HTMLQuestion built by
//!   [`QuestionTemplate`] (the original's categories unless set). The form
//!   posts to `externalSubmit` with the `assignmentId`, on the worker site
//!   that matches the endpoint. The item's text is HTML-escaped.
//! - **Endpoint**: the sandbox unless [`production`](MturkLabelerBuilder::production)
//!   is asked for explicitly.
//! - **Idempotence**: each CreateHITWithHITType carries a
//!   `UniqueRequestToken` derived from the item id (and a namespace), so a
//!   retried call never creates a second HIT. When MTurk answers that the
//!   HIT already exists, the labeler takes the HIT id from the message, or
//!   finds the HIT by its `RequesterAnnotation` (the item id). MTurk keeps
//!   tokens for 24 hours.
//! - **Budget**: before creating HITs, the labeler checks their worst-case
//!   cost (every assignment paid, plus MTurk's fee: see [`hit_cost`])
//!   against its maximum spend, then against `GetAccountBalance`, and
//!   refuses with [`BudgetError`] (inside a permanent [`LabelError`]).
//! - **Collecting**: `ListAssignmentsForHIT`, following `NextToken`; each
//!   assignment's `QuestionFormAnswers` XML is parsed by [`parse_answers`].
//!   A HIT is finished when it has `max_assignments` assignments. Blank
//!   answers, answers outside the categories and unparsable documents are
//!   not votes.
//! - **Review**: submitted assignments are approved when collected (unless
//!   [`auto_approve`](MturkLabelerBuilder::auto_approve) is off); an answer
//!   to a gold item (see [`gold`](MturkLabelerBuilder::gold)) that differs
//!   from the known label is rejected with a reason and is not a vote.
//!   [`approve`](MturkLabeler::approve) and [`reject`](MturkLabeler::reject)
//!   are there for manual review.
//!
//! Credentials never reach `Debug` output: the labeler's `Debug` shows its
//! settings, not its client.

mod answers;
mod budget;
mod question;

pub use answers::{
    AnswerValue, AnswersError, FormAnswer, MAX_ANSWERS_BYTES, answer_for, parse_answers,
};
pub use budget::{BudgetError, BudgetGuard, Cents, fee_per_assignment, hit_cost};
pub use question::{
    HTML_QUESTION_NAMESPACE, MAX_QUESTION_BYTES, QuestionError, QuestionTemplate, escape_html,
};

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_sdk_mturk::Client;
use aws_sdk_mturk::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_mturk::types::{AssignmentStatus, Comparator, QualificationRequirement};

use crate::aggregate::{Aggregator, Answer};
use crate::aws::{AwsErrorKind, AwsFailure};
use crate::classify::Label;
use crate::error::LabelError;
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId, Vote};
use crate::util::{hash_str, splitmix64};

/// The system qualification "Worker_PercentAssignmentsApproved".
pub const QUALIFICATION_PERCENT_APPROVED: &str = "000000000000000000L0";
/// The system qualification "Worker_Adult" (the worker agreed to see adult
/// content; the original's HITs required it).
pub const QUALIFICATION_ADULT: &str = "00000000000000000060";
/// The system qualification "Worker_NumberHITsApproved".
pub const QUALIFICATION_NUMBER_APPROVED: &str = "00000000000000000040";

/// Which Mechanical Turk: the sandbox (fake money, the default) or
/// production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// `mturk-requester-sandbox.us-east-1.amazonaws.com`; workers answer on
    /// `workersandbox.mturk.com`.
    #[default]
    Sandbox,
    /// `mturk-requester.us-east-1.amazonaws.com`; real workers, real money.
    Production,
}

impl Endpoint {
    /// The requester API's URL.
    pub fn requester_url(self) -> &'static str {
        match self {
            Endpoint::Sandbox => "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
            Endpoint::Production => "https://mturk-requester.us-east-1.amazonaws.com",
        }
    }

    /// Where the worker's form posts its answers.
    pub fn external_submit_url(self) -> &'static str {
        match self {
            Endpoint::Sandbox => "https://workersandbox.mturk.com/mturk/externalSubmit",
            Endpoint::Production => "https://www.mturk.com/mturk/externalSubmit",
        }
    }
}

/// A qualification a worker needs to accept the HITs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qualification {
    /// The qualification type id (see the `QUALIFICATION_*` constants).
    pub type_id: String,
    /// The test.
    pub test: QualificationTest,
}

/// How a worker's qualification value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QualificationTest {
    /// Value ≥ n.
    AtLeast(i32),
    /// Value = n.
    EqualTo(i32),
    /// The worker has the qualification.
    Exists,
}

impl Qualification {
    fn to_sdk(&self) -> Result<QualificationRequirement, LabelError> {
        let b = QualificationRequirement::builder().qualification_type_id(&self.type_id);
        let b = match self.test {
            QualificationTest::AtLeast(n) => b
                .comparator(Comparator::GreaterThanOrEqualTo)
                .integer_values(n),
            QualificationTest::EqualTo(n) => b.comparator(Comparator::EqualTo).integer_values(n),
            QualificationTest::Exists => b.comparator(Comparator::Exists),
        };
        b.build().map_err(|e| {
            LabelError::permanent(format!(
                "qualification {:?} could not be built: {e}",
                self.type_id
            ))
        })
    }
}

/// The HIT type and HIT settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitSettings {
    /// Shown in the HIT list.
    pub title: String,
    /// Shown in the HIT list.
    pub description: String,
    /// Paid per approved assignment.
    pub reward: Cents,
    /// Workers per item (3, as the original).
    pub max_assignments: u32,
    /// How long a HIT stays available.
    pub lifetime: Duration,
    /// How long a worker has once they accept.
    pub assignment_duration: Duration,
    /// After this, MTurk approves a submitted assignment by itself.
    pub auto_approval_delay: Duration,
    /// Comma-separated search keywords.
    pub keywords: String,
    /// Who may accept. Default: approval rate ≥ 95% and the adult-content
    /// flag, as the original had.
    pub qualifications: Vec<Qualification>,
    /// Whether a Masters qualification is among them (its fee is higher).
    pub masters: bool,
}

impl Default for HitSettings {
    fn default() -> Self {
        HitSettings {
            title: "Categorize a tweet".to_owned(),
            description: "Read a short tweet and choose the category it belongs in.".to_owned(),
            reward: Cents(5),
            max_assignments: 3,
            lifetime: Duration::from_secs(3 * 24 * 3600),
            assignment_duration: Duration::from_secs(10 * 60),
            auto_approval_delay: Duration::from_secs(3 * 24 * 3600),
            keywords: "tweet, categorize, categorization, twitter".to_owned(),
            qualifications: vec![
                Qualification {
                    type_id: QUALIFICATION_PERCENT_APPROVED.to_owned(),
                    test: QualificationTest::AtLeast(95),
                },
                Qualification {
                    type_id: QUALIFICATION_ADULT.to_owned(),
                    test: QualificationTest::EqualTo(1),
                },
            ],
            masters: false,
        }
    }
}

type TextFn<T> = Box<dyn Fn(&T) -> String + Send + Sync>;

/// Builds an [`MturkLabeler`]. See [`MturkLabeler::builder`].
pub struct MturkLabelerBuilder<T> {
    /// The client configuration; its endpoint URL and region are replaced
    /// by the labeler's endpoint at build, and its retries turned off.
    sdk: aws_sdk_mturk::config::Builder,
    text: TextFn<T>,
    endpoint: Endpoint,
    settings: HitSettings,
    question: QuestionTemplate,
    max_spend: Cents,
    gold: HashMap<String, String>,
    namespace: String,
    attempts: u32,
    backoff: Duration,
    auto_approve: bool,
    page_size: i32,
}

impl<T> fmt::Debug for MturkLabelerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MturkLabelerBuilder")
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .field("max_spend", &self.max_spend)
            .finish_non_exhaustive()
    }
}

impl<T> MturkLabelerBuilder<T> {
    /// Use production: real workers and real money. The sandbox is used
    /// unless this is called.
    pub fn production(mut self) -> Self {
        self.endpoint = Endpoint::Production;
        self
    }

    /// The HIT settings.
    pub fn settings(mut self, settings: HitSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The question (the original's unless set).
    pub fn question(mut self, question: QuestionTemplate) -> Self {
        self.question = question;
        self
    }

    /// The most this labeler may commit, rewards and fees included ($10
    /// unless set).
    pub fn max_spend(mut self, max: Cents) -> Self {
        self.max_spend = max;
        self
    }

    /// Marks `item_id` as a gold item whose right answer is `label`: a
    /// submitted answer that differs is rejected and not counted.
    pub fn gold(mut self, item_id: impl Into<String>, label: impl Into<String>) -> Self {
        self.gold.insert(item_id.into(), label.into());
        self
    }

    /// Mixed into every `UniqueRequestToken` ("streamsift" unless set):
    /// change it to label the same item ids again as new HITs within 24
    /// hours.
    pub fn token_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How many times a call is tried on throttling or a transient failure,
    /// and the first backoff (doubling; 500 ms unless set).
    ///
    /// 1 unless set: no retries of the labeler's own, because in a pipeline
    /// the review stage retries `submit` and `collect` with the pipeline's
    /// retry policy (so attempts never stack), and the SDK's own retries are
    /// off. Outside a pipeline (a labeling job of your own), set it: each
    /// CreateHITWithHITType carries the same `UniqueRequestToken` on every
    /// try, so a retry never creates a second HIT.
    pub fn retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Whether `collect` approves the submitted assignments it counts (on
    /// unless set; off leaves them to MTurk's auto-approval delay or to
    /// [`MturkLabeler::approve`]).
    pub fn auto_approve(mut self, on: bool) -> Self {
        self.auto_approve = on;
        self
    }

    /// `MaxResults` for ListAssignmentsForHIT pages (100 unless set).
    pub fn page_size(mut self, n: i32) -> Self {
        self.page_size = n.clamp(1, 100);
        self
    }

    /// Builds the labeler. The client's endpoint URL and region are
    /// replaced by the labeler's endpoint (the sandbox unless
    /// [`production`](Self::production)), and its own retries are turned
    /// off.
    pub fn build(mut self) -> MturkLabeler<T> {
        let config = std::mem::take(&mut self.sdk)
            .endpoint_url(self.endpoint.requester_url())
            .region(aws_sdk_mturk::config::Region::new("us-east-1"))
            .retry_config(aws_sdk_mturk::config::retry::RetryConfig::disabled())
            .build();
        let labels = self
            .question
            .categories
            .iter()
            .map(|(v, _)| Label::from(v.clone()))
            .collect();
        MturkLabeler {
            client: Client::from_conf(config),
            labels,
            state: tokio::sync::Mutex::new(State {
                hit_type: None,
                by_item: HashMap::new(),
                open: Vec::new(),
                incomplete: Vec::new(),
                budget: BudgetGuard::new(self.max_spend),
            }),
            b: self,
        }
    }
}

#[derive(Clone, Debug)]
struct OpenHit {
    item_id: String,
    hit_id: String,
    /// After this, no assignment can still come: the HIT's lifetime plus
    /// one assignment duration.
    deadline: tokio::time::Instant,
}

#[derive(Debug)]
struct State {
    hit_type: Option<String>,
    by_item: HashMap<String, TaskId>,
    /// HITs not collected yet, in submission order.
    open: Vec<OpenHit>,
    incomplete: Vec<String>,
    budget: BudgetGuard,
}

/// Mechanical Turk as a [`Labeler`]. See the [module docs](self).
///
/// ```no_run
/// use streamsift::mturk::{Cents, MturkLabeler};
/// # async fn run() {
/// let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
/// let labeler = MturkLabeler::builder(&config, |tweet: &String| tweet.clone())
///     .max_spend(Cents(500)) // $5, fees included
///     .build(); // the sandbox: `.production()` is explicit
/// # let _ = labeler;
/// # }
/// ```
pub struct MturkLabeler<T> {
    client: Client,
    labels: Vec<Label>,
    state: tokio::sync::Mutex<State>,
    b: MturkLabelerBuilder<T>,
}

impl<T> fmt::Debug for MturkLabeler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No client: its configuration holds the credentials provider.
        f.debug_struct("MturkLabeler")
            .field("endpoint", &self.b.endpoint)
            .field("settings", &self.b.settings)
            .field("max_spend", &self.b.max_spend)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Whether MTurk said "slow down" in its own way: a `RequestError` whose
/// `TurkErrorCode` (in the body) or message speaks of throttling or a rate.
/// The standard throttling codes are the shared classification's.
fn mturk_throttled(code: &str, message: &str, body: &[u8]) -> bool {
    code.to_ascii_lowercase().contains("throttl")
        || message.to_ascii_lowercase().contains("rate exceeded")
        || String::from_utf8_lossy(body)
            .to_ascii_lowercase()
            .contains("throttl")
}

/// Maps an SDK error of `op` onto a [`LabelError`] through the shared
/// classification ([`AwsFailure::from_sdk`]), adding MTurk's own throttling
/// signs, its `ServiceFault` code, and the requester-account hint; the SDK
/// error is kept as the source.
fn sdk_error<E>(op: &'static str, err: SdkError<E>) -> LabelError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let body = match &err {
        SdkError::ServiceError(service) => service.raw().body().bytes().unwrap_or(&[]),
        _ => &[],
    };
    let kind = if failure.code.is_some()
        && mturk_throttled(failure.code_or_kind(), &failure.message, body)
    {
        AwsErrorKind::Throttled
    } else if failure.has_code("ServiceFault") {
        AwsErrorKind::Transient
    } else {
        failure.kind
    };
    let text = format!("MTurk {op}: {failure}");
    match kind {
        AwsErrorKind::Throttled => LabelError::throttled(format!(
            "{text}; MTurk asked us to slow down: submit smaller batches or less often"
        )),
        kind if kind.is_retryable() => LabelError::unavailable(text),
        AwsErrorKind::AccessDenied => LabelError::permanent(format!(
            "{text}; check the credentials and that the account is registered as a requester \
             on this endpoint (sandbox and production are separate)"
        )),
        _ => LabelError::permanent(text),
    }
    .with_source(err)
}

/// Whether an error says the HIT for this token already exists, and the
/// HIT id in its message if there is one.
fn already_exists<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<Option<String>> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let message = service.err().message().unwrap_or("");
    let code = service.err().code().unwrap_or("");
    let raw = std::str::from_utf8(service.raw().body().bytes().unwrap_or(&[])).unwrap_or("");
    let hit_exists = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("hitalreadyexists") || s.contains("already exists")
    };
    if !(hit_exists(code) || hit_exists(message) || raw.contains("HitAlreadyExists")) {
        return None;
    }
    Some(hit_id_in(message))
}

/// A HIT id in a message: the first run of 20 or more ASCII capitals and
/// digits.
fn hit_id_in(message: &str) -> Option<String> {
    message
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
        .find(|w| w.len() >= 20 && w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// The `UniqueRequestToken` for an item: at most 64 characters, a pure
/// function of the namespace and the item id.
pub fn request_token(namespace: &str, item_id: &str) -> String {
    let a = hash_str(namespace) ^ splitmix64(hash_str(item_id));
    let b = splitmix64(a ^ hash_str(item_id).rotate_left(17));
    format!("streamsift-{a:016x}{b:016x}")
}

impl<T> MturkLabeler<T> {
    /// A labeler whose workers see `text(item)`, on the sandbox, with an
    /// MTurk client made from `config` (credentials, HTTP client).
    pub fn builder(
        config: &aws_config::SdkConfig,
        text: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> MturkLabelerBuilder<T> {
        Self::builder_with(aws_sdk_mturk::config::Builder::from(config), text)
    }

    /// Like [`builder`](Self::builder), over `client` (for tests and custom
    /// HTTP clients): its credentials and HTTP client are kept; its
    /// endpoint URL and region are the labeler's, and its own retries are
    /// turned off.
    pub fn builder_from_client(
        client: Client,
        text: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> MturkLabelerBuilder<T> {
        Self::builder_with(client.config().to_builder(), text)
    }

    fn builder_with(
        sdk: aws_sdk_mturk::config::Builder,
        text: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> MturkLabelerBuilder<T> {
        MturkLabelerBuilder {
            sdk,
            text: Box::new(text),
            endpoint: Endpoint::Sandbox,
            settings: HitSettings::default(),
            question: QuestionTemplate::default(),
            max_spend: Cents(1000),
            gold: HashMap::new(),
            namespace: "streamsift".to_owned(),
            attempts: 1,
            backoff: Duration::from_millis(500),
            auto_approve: true,
            page_size: 100,
        }
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> Endpoint {
        self.b.endpoint
    }

    /// What the HITs created so far may cost at most.
    pub async fn committed_spend(&self) -> Cents {
        self.state.lock().await.budget.spent()
    }

    /// Items whose HIT finished without a single valid vote (all blank,
    /// rejected or unreadable): they need labeling again.
    pub async fn incomplete(&self) -> Vec<String> {
        self.state.lock().await.incomplete.clone()
    }

    /// Approves an assignment (pays the worker).
    pub async fn approve(&self, assignment_id: &str) -> Result<(), LabelError> {
        self.client
            .approve_assignment()
            .assignment_id(assignment_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("ApproveAssignment", e))
    }

    /// Rejects an assignment with a reason the worker sees.
    pub async fn reject(&self, assignment_id: &str, reason: &str) -> Result<(), LabelError> {
        self.client
            .reject_assignment()
            .assignment_id(assignment_id)
            .requester_feedback(reason)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("RejectAssignment", e))
    }

    async fn backoff(&self, attempt: u32) {
        let delay = self.b.backoff.saturating_mul(1u32 << attempt.min(10));
        tokio::time::sleep(delay).await;
    }

    async fn hit_type(&self, state: &mut State) -> Result<String, LabelError> {
        if let Some(id) = &state.hit_type {
            return Ok(id.clone());
        }
        let s = &self.b.settings;
        let mut quals = Vec::new();
        for q in &s.qualifications {
            quals.push(q.to_sdk()?);
        }
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .create_hit_type()
                .title(&s.title)
                .description(&s.description)
                .reward(s.reward.to_dollars())
                .assignment_duration_in_seconds(s.assignment_duration.as_secs() as i64)
                .auto_approval_delay_in_seconds(s.auto_approval_delay.as_secs() as i64)
                .keywords(&s.keywords)
                .set_qualification_requirements(Some(quals.clone()))
                .send()
                .await;
            match result {
                Ok(out) => {
                    let id = out.hit_type_id().ok_or_else(|| {
                        LabelError::permanent("MTurk CreateHITType answered without a HITTypeId")
                    })?;
                    state.hit_type = Some(id.to_owned());
                    return Ok(id.to_owned());
                }
                Err(e) => {
                    let err = sdk_error("CreateHITType", e);
                    attempt += 1;
                    if !err.is_retryable() || attempt >= self.b.attempts {
                        return Err(err);
                    }
                    self.backoff(attempt - 1).await;
                }
            }
        }
    }

    async fn balance(&self) -> Result<Cents, LabelError> {
        let mut attempt = 0;
        loop {
            match self.client.get_account_balance().send().await {
                Ok(out) => {
                    let text = out.available_balance().unwrap_or("");
                    return Cents::parse_dollars(text).ok_or_else(|| {
                        LabelError::permanent(format!(
                            "MTurk GetAccountBalance: expected an available balance in dollars, \
                             found {text:?}"
                        ))
                    });
                }
                Err(e) => {
                    let err = sdk_error("GetAccountBalance", e);
                    attempt += 1;
                    if !err.is_retryable() || attempt >= self.b.attempts {
                        return Err(err);
                    }
                    self.backoff(attempt - 1).await;
                }
            }
        }
    }

    /// Finds the HIT this labeler created for `item_id`, by its
    /// RequesterAnnotation.
    async fn find_hit(&self, item_id: &str) -> Result<Option<String>, LabelError> {
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_hits()
                .set_next_token(next.take())
                .max_results(100)
                .send()
                .await
                .map_err(|e| sdk_error("ListHITs", e))?;
            for hit in out.hits() {
                if hit.requester_annotation() == Some(item_id) {
                    return Ok(hit.hit_id().map(str::to_owned));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() && !out.hits().is_empty() => next = Some(t.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    async fn create_hit(
        &self,
        hit_type: &str,
        item_id: &str,
        question: &str,
    ) -> Result<String, LabelError> {
        let token = request_token(&self.b.namespace, item_id);
        let s = &self.b.settings;
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .create_hit_with_hit_type()
                .hit_type_id(hit_type)
                .max_assignments(s.max_assignments as i32)
                .lifetime_in_seconds(s.lifetime.as_secs() as i64)
                .question(question)
                .requester_annotation(item_id)
                .unique_request_token(&token)
                .send()
                .await;
            let err = match result {
                Ok(out) => {
                    return out
                        .hit()
                        .and_then(|h| h.hit_id())
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            LabelError::permanent(
                                "MTurk CreateHITWithHITType answered without a HIT id",
                            )
                        });
                }
                Err(e) => e,
            };
            if let Some(found) = already_exists(&err) {
                // An earlier try (ours, lost on the way back) created it.
                let id = match found {
                    Some(id) => Some(id),
                    None => self.find_hit(item_id).await?,
                };
                return id.ok_or_else(|| {
                    LabelError::permanent(format!(
                        "MTurk says the HIT for item {item_id:?} already exists, but neither the \
                         message nor ListHITs names it"
                    ))
                    .with_source(sdk_error("CreateHITWithHITType", err))
                });
            }
            let err = sdk_error("CreateHITWithHITType", err);
            attempt += 1;
            if !err.is_retryable() || attempt >= self.b.attempts {
                return Err(err);
            }
            self.backoff(attempt - 1).await;
        }
    }

    /// Every assignment of a HIT, following NextToken.
    async fn assignments(
        &self,
        hit_id: &str,
    ) -> Result<Vec<aws_sdk_mturk::types::Assignment>, LabelError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_assignments_for_hit()
                .hit_id(hit_id)
                .max_results(self.b.page_size)
                .assignment_statuses(AssignmentStatus::Submitted)
                .assignment_statuses(AssignmentStatus::Approved)
                .assignment_statuses(AssignmentStatus::Rejected)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| sdk_error("ListAssignmentsForHIT", e))?;
            let page = out.assignments();
            all.extend(page.iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() && !page.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    /// Reviews a finished HIT's assignments and returns its votes.
    async fn review(
        &self,
        item_id: &str,
        assignments: &[aws_sdk_mturk::types::Assignment],
    ) -> Result<Vec<Vote>, LabelError> {
        let gold = self.b.gold.get(item_id);
        let mut votes = Vec::new();
        for a in assignments {
            let (Some(id), Some(worker)) = (a.assignment_id(), a.worker_id()) else {
                continue;
            };
            let status = a.assignment_status();
            if status == Some(&AssignmentStatus::Rejected) {
                continue;
            }
            let label = match parse_answers(a.answer().unwrap_or("")) {
                Ok(answers) => answer_for(&answers, &self.b.question.field).map(str::to_owned),
                Err(e) => {
                    tracing::warn!(assignment = id, error = %e, "unreadable MTurk answer: not a vote");
                    None
                }
            };
            let submitted = status == Some(&AssignmentStatus::Submitted);
            if let (Some(expected), Some(given)) = (gold, &label)
                && given != expected
            {
                if submitted {
                    self.reject(
                        id,
                        &format!(
                            "This item has a known answer ({expected}); the answer given was \
                             {given}."
                        ),
                    )
                    .await?;
                }
                continue;
            }
            if submitted && self.b.auto_approve {
                self.approve(id).await?;
            }
            if let Some(label) = label
                && self.labels.iter().any(|l| l.as_str() == label)
            {
                votes.push(Vote {
                    worker: worker.to_owned(),
                    label: Label::from(label),
                });
            }
        }
        Ok(votes)
    }
}

#[async_trait::async_trait]
impl<T: Sync> Labeler<T> for MturkLabeler<T> {
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        let mut state = self.state.lock().await;
        let mut fresh: Vec<&LabelTask<'_, T>> = Vec::new();
        for task in tasks {
            if !state.by_item.contains_key(task.item_id)
                && !fresh.iter().any(|t| t.item_id == task.item_id)
            {
                fresh.push(task);
            }
        }
        if !fresh.is_empty() {
            let s = &self.b.settings;
            let per_hit = hit_cost(s.reward, s.max_assignments, s.masters);
            let cost = Cents(per_hit.0.saturating_mul(fresh.len() as u64));
            // The maximum first (no call needed), then the balance.
            state
                .budget
                .check(fresh.len(), cost, Cents(u64::MAX))
                .map_err(|e| LabelError::permanent(e.to_string()).with_source(e))?;
            let balance = self.balance().await?;
            state
                .budget
                .check(fresh.len(), cost, balance)
                .map_err(|e| LabelError::permanent(e.to_string()).with_source(e))?;
            let hit_type = self.hit_type(&mut state).await?;
            for task in fresh {
                let text = (self.b.text)(task.item);
                let question = self
                    .b
                    .question
                    .html(&text, self.b.endpoint)
                    .map_err(|e| LabelError::permanent(e.to_string()).with_source(e))?;
                let hit = self.create_hit(&hit_type, task.item_id, &question).await?;
                state.budget.commit(per_hit);
                state
                    .by_item
                    .insert(task.item_id.to_owned(), TaskId(hit.clone()));
                state.open.push(OpenHit {
                    item_id: task.item_id.to_owned(),
                    hit_id: hit,
                    deadline: tokio::time::Instant::now() + s.lifetime + s.assignment_duration,
                });
            }
        }
        tasks
            .iter()
            .map(|t| {
                state.by_item.get(t.item_id).cloned().ok_or_else(|| {
                    LabelError::permanent(format!("item {:?} has no HIT", t.item_id))
                })
            })
            .collect()
    }

    /// Returns the HITs that finished since the last call: those with all
    /// their assignments, and those past their lifetime (plus one
    /// assignment duration) with whatever answers they got; a HIT that
    /// ends without a valid vote is listed by
    /// [`incomplete`](MturkLabeler::incomplete). If a call fails
    /// part way, the results gathered so far are returned and the failed
    /// HIT is tried again next time; the error is returned only when
    /// nothing was gathered.
    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        let mut state = self.state.lock().await;
        let mut results = Vec::new();
        let open = state.open.clone();
        let want = self.b.settings.max_assignments as usize;
        let aggregator = Aggregator::new(self.labels.iter().cloned());
        for OpenHit {
            item_id,
            hit_id,
            deadline,
        } in open
        {
            let outcome = async {
                let assignments = self.assignments(&hit_id).await?;
                if assignments.len() < want && tokio::time::Instant::now() < deadline {
                    return Ok(None);
                }
                self.review(&item_id, &assignments).await.map(Some)
            }
            .await;
            let votes = match outcome {
                Ok(Some(votes)) => votes,
                Ok(None) => continue,
                Err(e) if results.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(hit = %hit_id, error = %e, "collect stopped early; will retry");
                    break;
                }
            };
            state.open.retain(|h| h.hit_id != hit_id);
            let answers: Vec<Answer> = votes
                .iter()
                .map(|v| Answer::new(item_id.clone(), v.worker.clone(), v.label.as_str()))
                .collect();
            match aggregator.majority(&answers).items.into_iter().next() {
                Some(item) => results.push(LabelResult {
                    task: TaskId(hit_id),
                    item_id,
                    label: item.label,
                    agreement: item.agreement,
                    votes,
                }),
                None => state.incomplete.push(item_id),
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_short_and_distinct() {
        let a = request_token("streamsift", "tweet-1");
        assert_eq!(a, request_token("streamsift", "tweet-1"));
        assert_ne!(a, request_token("streamsift", "tweet-2"));
        assert_ne!(a, request_token("other", "tweet-1"));
        assert!(a.len() <= 64, "{a}");
    }

    #[test]
    fn hit_ids_are_found_in_messages() {
        assert_eq!(
            hit_id_in("The HIT with ID `3QREJ3J433XSBAMX7IXVKH6NBA4KLT` already exists."),
            Some("3QREJ3J433XSBAMX7IXVKH6NBA4KLT".into())
        );
        assert_eq!(hit_id_in("There is already a HIT with this token"), None);
    }

    #[test]
    fn throttling_is_recognised() {
        assert!(mturk_throttled("RequestError", "Rate exceeded", b""));
        assert!(mturk_throttled(
            "RequestError",
            "",
            br#"{"TurkErrorCode":"AWS.MechanicalTurk.Throttled"}"#
        ));
        assert!(!mturk_throttled("RequestError", "Reward is invalid", b"{}"));
    }
}
