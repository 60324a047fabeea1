//! A local labeling web page: [`LocalWebLabeler`], a [`Labeler`] that serves
//! a page on `127.0.0.1` where people label items by keyboard.
//!
//! - **The page** shows one item at a time with one button per category.
//!   Keys `1`–`9` answer with the matching category, `u` undoes the
//!   person's latest answer or skip, `s` skips. It shows progress: items
//!   done / total, the person's own count and their labels per minute
//!   (over the last ten minutes). The item shows at once; the person's
//!   name (the box at the top left) is needed only to answer.
//! - **Suggestions** (labeling as review): an item submitted with a
//!   [`suggestion`](LabelTask::suggestion) (or with a prediction, when
//!   [`suggest_predictions`](LocalWebLabelerBuilder::suggest_predictions)
//!   is set) shows it, label and confidence, above the buttons. `Enter` or
//!   `a` accepts it with one key; a number key picks another label. Each
//!   answer on a suggested item records in the dataset whether it accepted
//!   the suggestion (`"accepted":true|false`), and
//!   [`review_progress`](LocalWebLabeler::review_progress) counts them.
//! - **Storage**: every answer, skip and undo is appended to the dataset
//!   file (JSON lines) and fsynced before the page is told it was saved.
//!   Starting again on the same file replays it: nothing is lost and each
//!   person carries on where they stopped. A line that is not a valid event
//!   is a [`LabelUiError::CorruptLine`] naming the line, except an
//!   unfinished last line (no newline: a write cut short by a crash, never
//!   acknowledged), which is dropped with a warning and cut from the file.
//! - **Memory** holds only what is outstanding: an item (text, answers,
//!   leases, undo entries) is released once [`collect`](Labeler::collect)
//!   hands its result out; only a 16-byte fingerprint of its id stays, so
//!   that submitting it again is the same task and is not labeled twice.
//!   The file keeps everything, and a restart rebuilds the same state.
//! - **Several people**: each browser has a person's name (kept in its
//!   `localStorage`); each item gets
//!   [`answers_per_item`](LocalWebLabelerBuilder::answers_per_item) answers
//!   (1 unless set) from different people, and an item shown to someone is
//!   held for them for a while (the lease) so two people do not race for
//!   the last answer. Finished items come out of
//!   [`collect`](Labeler::collect) once, with every vote and the majority
//!   label from [`Aggregator::majority`](crate::aggregate::Aggregator::majority)
//!   (ties go to the category listed first).
//! - **Security**: it binds to loopback unless told otherwise (with a
//!   warning); every API call needs the random token printed at start-up
//!   (401 without, 403 with a wrong one); item text is rendered as text,
//!   never as markup; the Content-Security-Policy forbids any request
//!   outside this server. The token is redacted from `Debug` output and
//!   from logs.
//!
//! ```no_run
//! use streamsift::label_ui::LocalWebLabelerBuilder;
//! use streamsift::{LabelTask, Labeler};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let labeler = LocalWebLabelerBuilder::new("labels.jsonl", ["problem_report", "none"])
//!     .start(|text: &String| text.clone())
//!     .await?; // prints the URL with its token
//! let tweet = "the site is down".to_string();
//! labeler
//!     .submit(&[LabelTask::new("t1", &tweet)])
//!     .await?;
//! // ... later, once someone has answered:
//! for result in labeler.collect().await? {
//!     println!("{} -> {}", result.item_id, result.label);
//! }
//! # Ok(()) }
//! ```

mod server;
mod store;
mod token;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::classify::Label;
use crate::error::LabelError;
use crate::labeler::{LabelResult, LabelTask, Labeler, TaskId};

pub use server::CONTENT_SECURITY_POLICY;
pub use token::AccessToken;

use server::Shared;
use store::{Store, Suggestion};

/// Why the labeling page could not start, read its dataset, or save.
#[derive(Debug, thiserror::Error)]
pub enum LabelUiError {
    /// The dataset file could not be opened, read, written or synced.
    #[error(
        "could not read or write the labeling dataset {path}: {source}; check that the directory exists and is writable"
    )]
    Io {
        /// The dataset file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the dataset file is not a valid labeling event.
    #[error(
        "labeling dataset {path}, line {line}: {message}. Fix or delete that line and start again"
    )]
    CorruptLine {
        /// The dataset file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What was wrong with it.
        message: String,
    },
    /// The server could not listen on the address.
    #[error("could not listen on {addr}: {source}; choose another port or free this one")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("could not draw the access token from the OS random number generator: {0}")]
    Random(String),
    /// The builder was given settings that cannot work.
    #[error("invalid labeling page settings: {0}")]
    InvalidConfig(String),
}

impl From<LabelUiError> for LabelError {
    fn from(err: LabelUiError) -> Self {
        match err {
            LabelUiError::Io { .. } => LabelError::unavailable(err.to_string()).with_source(err),
            _ => LabelError::permanent(err.to_string()).with_source(err),
        }
    }
}

/// How people answered items that came with a suggestion (answers standing,
/// undone ones not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReviewProgress {
    /// Answers on items with a suggestion.
    pub suggested: usize,
    /// Those that accepted it (answered the suggested label).
    pub accepted: usize,
}

/// Progress of the whole labeling job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items with all their answers.
    pub done: usize,
    /// Items submitted.
    pub total: usize,
}

/// What a [`LocalWebLabeler`] holds in memory, from
/// [`LocalWebLabeler::footprint`]: for tests and diagnostics of the
/// bounded-memory rule (collected items are released; only their ids'
/// fingerprints stay).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreFootprint {
    /// Items in memory: submitted and not collected yet.
    pub items: usize,
    /// Leases held (expired ones included until they are replaced).
    pub leases: usize,
    /// Collected items remembered by id fingerprint (16 bytes each).
    pub collected_ids: usize,
    /// Entries on the people's undo stacks.
    pub undo_entries: usize,
}

/// Settings for a [`LocalWebLabeler`]; [`start`](Self::start) opens the
/// dataset and starts serving.
#[derive(Debug, Clone)]
pub struct LocalWebLabelerBuilder {
    dataset: PathBuf,
    labels: Vec<Label>,
    answers_per_item: usize,
    addr: SocketAddr,
    title: String,
    lease: Duration,
    suggest_predictions: bool,
}

impl LocalWebLabelerBuilder {
    /// A page labeling with `labels` (in button order; keys `1`–`9` answer
    /// the first nine), saving to the JSON-lines file `dataset` (created if
    /// missing, replayed if present). It listens on `127.0.0.1` on a free
    /// port unless told otherwise.
    pub fn new<L: Into<Label>>(
        dataset: impl Into<PathBuf>,
        labels: impl IntoIterator<Item = L>,
    ) -> Self {
        LocalWebLabelerBuilder {
            dataset: dataset.into(),
            labels: labels.into_iter().map(Into::into).collect(),
            answers_per_item: 1,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            title: "streamsift labeling".to_owned(),
            lease: Duration::from_secs(5 * 60),
            suggest_predictions: false,
        }
    }

    /// Shows the task's [`prediction`](LabelTask::prediction) as the
    /// suggestion when the task has no
    /// [`suggestion`](LabelTask::suggestion) of its own (off unless set:
    /// the [`Labeler`] contract keeps the model's prediction from people,
    /// as it biases them; turn it on to make labeling a review of the
    /// model). A suggested label outside the categories is not shown.
    pub fn suggest_predictions(mut self, on: bool) -> Self {
        self.suggest_predictions = on;
        self
    }

    /// How many different people answer each item (1 unless set: one
    /// person labeling alone is the common case; use 3 for the original's
    /// "2 of 3" rule). Must be at least 1.
    pub fn answers_per_item(mut self, k: usize) -> Self {
        self.answers_per_item = k;
        self
    }

    /// Listens on `127.0.0.1:port` (0, the default, picks a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        self
    }

    /// Listens on `addr`, which may be reachable from other machines. Anyone
    /// who can reach it and has the token can label; the traffic is plain
    /// HTTP. A warning is logged at start when `addr` is not loopback.
    pub fn bind_beyond_loopback(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The page's title ("streamsift labeling" unless set). It is
    /// HTML-escaped.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// How long an item shown to a person is held for them before others
    /// may get it instead (5 minutes unless set).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Opens the dataset, draws the token, starts the server on the current
    /// tokio runtime, and prints the page's URL with its token on standard
    /// error. `text` gives the text shown for an item.
    pub async fn start<T, F>(self, text: F) -> Result<LocalWebLabeler<T>, LabelUiError>
    where
        F: Fn(&T) -> String + Send + Sync + 'static,
    {
        if self.labels.is_empty() {
            return Err(LabelUiError::InvalidConfig(
                "no categories: give at least one label".to_owned(),
            ));
        }
        for (i, label) in self.labels.iter().enumerate() {
            if label.as_str().is_empty() || self.labels[..i].contains(label) {
                return Err(LabelUiError::InvalidConfig(format!(
                    "category {label:?} is empty or listed twice; categories must be distinct and non-empty"
                )));
            }
        }
        if self.answers_per_item == 0 {
            return Err(LabelUiError::InvalidConfig(
                "answers_per_item is 0; each item needs at least one answer".to_owned(),
            ));
        }
        let store = Store::open(
            &self.dataset,
            self.labels.clone(),
            self.answers_per_item,
            self.lease,
        )?;
        let token = AccessToken::generate()?;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| LabelUiError::Bind {
                addr: self.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LabelUiError::Bind {
            addr: self.addr,
            source,
        })?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "the labeling page listens beyond loopback: anyone who can reach this address \
                 and has the token can label, over plain HTTP"
            );
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            token,
            title: self.title,
        });
        let app = server::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the labeling page server stopped");
            }
        });
        let labeler = LocalWebLabeler {
            shared,
            text: Box::new(text),
            suggest_predictions: self.suggest_predictions,
            addr,
            dataset: self.dataset,
            answers_per_item: self.answers_per_item,
            stop: Some(stop),
            task,
        };
        tracing::info!(%addr, dataset = %labeler.dataset.display(), "labeling page started");
        // The one place the token is shown: for the person who will label.
        eprintln!(
            "streamsift: label in your browser at {}",
            labeler.url_with_token()
        );
        Ok(labeler)
    }
}

type TextFn<T> = Box<dyn Fn(&T) -> String + Send + Sync>;

/// A [`Labeler`] that serves a labeling page on `127.0.0.1`; see the
/// [module documentation](self) for the page, the file and the security
/// model. Built by [`LocalWebLabelerBuilder`].
///
/// Dropping it stops the server; the dataset file keeps everything.
pub struct LocalWebLabeler<T> {
    shared: Arc<Shared>,
    text: TextFn<T>,
    suggest_predictions: bool,
    addr: SocketAddr,
    dataset: PathBuf,
    answers_per_item: usize,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl<T> LocalWebLabeler<T> {
    /// The address the page is served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL without the token (safe to log).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The page's URL with the token in its fragment: what a person opens.
    /// It is a secret: do not log it.
    pub fn url_with_token(&self) -> String {
        format!("{}#token={}", self.url(), self.shared.token.expose())
    }

    /// The access token the API requires.
    pub fn token(&self) -> &AccessToken {
        &self.shared.token
    }

    /// The dataset file.
    pub fn dataset(&self) -> &Path {
        &self.dataset
    }

    /// Items done (with all their answers) and submitted.
    pub fn progress(&self) -> Progress {
        let counts = self.shared.lock().counts(None);
        Progress {
            done: counts.done,
            total: counts.total,
        }
    }

    /// Answers on suggested items, and how many accepted the suggestion.
    pub fn review_progress(&self) -> ReviewProgress {
        let r = self.shared.lock().review_counts();
        ReviewProgress {
            suggested: r.suggested,
            accepted: r.accepted,
        }
    }

    /// What the labeling state holds in memory now.
    #[doc(hidden)]
    pub fn footprint(&self) -> StoreFootprint {
        let f = self.shared.lock().footprint();
        StoreFootprint {
            items: f.items,
            leases: f.leases,
            collected_ids: f.collected_ids,
            undo_entries: f.undo_entries,
        }
    }

    /// Stops the server and waits for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl<T> Drop for LocalWebLabeler<T> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl<T> fmt::Debug for LocalWebLabeler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalWebLabeler")
            .field("addr", &self.addr)
            .field("dataset", &self.dataset)
            .field("answers_per_item", &self.answers_per_item)
            .field("token", &self.shared.token)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<T: Sync> Labeler<T> for LocalWebLabeler<T> {
    async fn submit(&self, tasks: &[LabelTask<'_, T>]) -> Result<Vec<TaskId>, LabelError> {
        let items = tasks
            .iter()
            .map(|t| {
                let shown = t
                    .suggestion
                    .or(t.prediction.filter(|_| self.suggest_predictions));
                let suggestion = shown.map(|p| Suggestion {
                    label: p.label.as_str().to_owned(),
                    confidence: p
                        .confidence()
                        .filter(|c| c.is_finite())
                        .map(|c| c.clamp(0.0, 1.0)),
                });
                (t.item_id.to_owned(), (self.text)(t.item), suggestion)
            })
            .collect();
        Ok(self.shared.lock().submit(items)?)
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        Ok(self.shared.lock().collect()?)
    }
}
