//! Labeling and active learning: labels from people, turned into models.
//!
//! A classifier is only as good as its labels. A [`Labeler`](crate::Labeler)
//! sends items to people and collects their answers;
//! [`aggregate`](crate::aggregate) turns several people's answers into one
//! label; [`active`](crate::active) closes the loop while the stream flows.
//! The labelers that ship:
//!
//! | labeler | where | feature |
//! |---|---|---|
//! | `label_ui::LocalWebLabeler` | a labeling page on `127.0.0.1`, for you and your colleagues | `label-ui` |
//! | `mturk::MturkLabeler` | Amazon Mechanical Turk HITs (sandbox unless asked) | `mturk` |
//! | [`LlmLabeler`](crate::LlmLabeler) | LLM workers: a model under one or more prompts, or several models (any `Classifier`) | — |
//! | `fakes::SimulatedCrowd` | simulated workers, honest and spammers, for tests and offline runs | (`test-util`) |
//! | [`active::ActiveLearner`](crate::active::ActiveLearner) | a durable queue in front of any of them, most uncertain first | — |
//!
//! # Aggregating answers
//!
//! [`Aggregator::new(labels)`](crate::aggregate::Aggregator) works on
//! [`Answer`](crate::aggregate::Answer)s (item, worker, label) from any
//! labeler. Three rules give, per item, the label, its agreement, a
//! confidence and the vote count, plus a report per worker:
//!
//! - `majority`: the most voted label; ties go to the label first in the
//!   label set, whatever order the answers came in.
//! - `original_rule`: `actionable` when at least 2 valid votes name a
//!   category other than `none`, the rule of the application this crate
//!   grew from (3 votes per item).
//! - `dawid_skene`: Dawid–Skene EM, which estimates each worker's confusion
//!   matrix and discounts careless ones. Deterministic; its confidence is the
//!   posterior of the chosen label.
//!
//! A blank answer is not a vote, nor is a label outside the set or a
//! worker's second answer to one item; each is counted in `skipped`. Items
//! with fewer than `min_votes` valid votes are listed in `incomplete`, never
//! dropped. A worker whose answers barely depend on the true label (a random
//! clicker, or one who always gives the same answer) is flagged as a
//! spammer.
//!
//! ```
//! use streamsift::aggregate::{Aggregator, Answer, DawidSkene};
//!
//! let answers = vec![
//!     Answer::new("t1", "alice", "problem_report"),
//!     Answer::new("t1", "bob", "problem_report"),
//!     Answer::new("t1", "carol", "none"),
//!     Answer::new("t2", "alice", ""), // blank: not a vote, so t2 is incomplete
//! ];
//! let agg = Aggregator::new(["problem_report", "question", "none"]).min_votes(2);
//! let out = agg.dawid_skene(&answers, &DawidSkene::default());
//! assert_eq!(out.items[0].label, "problem_report");
//! assert_eq!(out.incomplete[0].item_id, "t2");
//! ```
//!
//! # LLM workers: `LlmLabeler`
//!
//! [`LlmLabeler`](crate::LlmLabeler) makes classifiers act as labeling
//! workers: each is a (worker id, [`Classifier`](crate::Classifier)) pair,
//! typically an `llm::LlmClassifier` (feature `llm`) under a given prompt
//! template or model. Every task goes to every worker and each answer is a
//! [`Vote`](crate::Vote) under the worker's id, so Dawid–Skene estimates
//! an LLM worker's reliability exactly as it does a person's, from the same
//! answers: put the LLM labeler's results next to people's results and
//! aggregate them together.
//!
//! ```
//! use streamsift::aggregate::{answers_from_results, Aggregator, DawidSkene};
//! use streamsift::fakes::FnClassifier;
//! use streamsift::{LabelTask, Labeler, LlmLabeler, Prediction};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // Stand-ins for one model under two prompts, and a second model.
//! let reads = |t: &String| {
//!     Ok(Prediction::label(if t.contains("down") { "problem_report" } else { "none" }))
//! };
//! let hasty = FnClassifier::new(|_: &String| Ok(Prediction::label("none")));
//! let llm = LlmLabeler::builder(["problem_report", "none"])
//!     .worker("llm:careful-v1", FnClassifier::new(reads))
//!     .worker("llm:hasty-v1", hasty)
//!     .worker("other-llm:careful-v1", FnClassifier::new(reads))
//!     .concurrency(4) // calls in flight, over all workers and tasks
//!     .build()
//!     .unwrap();
//! let tweets: Vec<(String, String)> = (0..20)
//!     .map(|i| (format!("t{i}"), if i % 2 == 0 { "site down".into() } else { "thanks".into() }))
//!     .collect();
//! let tasks: Vec<LabelTask<'_, String>> =
//!     tweets.iter().map(|(id, text)| LabelTask::new(id, text)).collect();
//! llm.submit(&tasks).await.unwrap();
//! let results = llm.collect().await.unwrap();
//! // (people's results from another labeler would be added here)
//! let out = Aggregator::new(["problem_report", "none"])
//!     .min_votes(1)
//!     .dawid_skene(&answers_from_results(&results), &DawidSkene::default());
//! let careful = out.worker("llm:careful-v1").unwrap().accuracy;
//! let hasty = out.worker("llm:hasty-v1").unwrap().accuracy;
//! assert!(careful > hasty);
//! # });
//! ```
//!
//! - **No bias.** A worker gets the item only: never the task's prediction
//!   nor its suggestion.
//! - **Failures.** Retryable errors are retried with a doubling backoff
//!   (`retry(attempts, backoff)`); a permanent error, a label outside the
//!   set, a panic or spent retries leave that worker's vote out, never a
//!   made-up vote. A task with no vote at all fails `submit` (retryable or
//!   permanent as its failures were) and is listed by `unanswered()`;
//!   submitting it again retries it under the same task id.
//! - **Active learning.** It is a `Labeler`, so it can be the inner labeler
//!   of an [`ActiveLearner`](crate::active::ActiveLearner): the review band
//!   is labeled by the LLM; while the LLM is down, items stay queued.
//!
//! # Labeling as review: suggestions
//!
//! A task can carry a [`suggestion`](crate::LabelTask::suggestion): a
//! label, and a confidence if known, from the model or an LLM. The labeling
//! page shows it above the buttons; `Enter` (or `a`) accepts it with one
//! key, a number key picks another label, so labeling becomes review, as in
//! Prodigy's accept/reject flow. Each answer records in the page's dataset
//! whether it accepted the suggestion, and
//! `LocalWebLabeler::review_progress` counts them. The task's
//! `prediction` is shown only when the page is built with
//! `suggest_predictions(true)` (the `Labeler` contract keeps the model's
//! prediction from people otherwise: it biases them).
//!
//! ```
//! use streamsift::{LabelTask, Prediction};
//!
//! let tweet = "the app crashes on start".to_string();
//! let llm_says = Prediction::from_scores(vec![
//!     ("problem_report".into(), 0.86),
//!     ("none".into(), 0.14),
//! ])
//! .unwrap();
//! let task = LabelTask::new("t1", &tweet).with_suggestion(&llm_says);
//! // The page shows: Suggested: problem_report (86% sure). Enter accepts.
//! assert_eq!(task.suggestion.unwrap().confidence(), Some(0.86));
//! ```
//!
//! # Labeling in the browser (feature `label-ui`)
//!
//! `LocalWebLabeler` serves a labeling page on `127.0.0.1`. Submit items as
//! to any labeler; people label them in the browser; finished items come out
//! of `collect()` with every vote and the majority label.
//!
//! ```no_run
//! # #[cfg(feature = "label-ui")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use streamsift::label_ui::LocalWebLabelerBuilder;
//! use streamsift::{LabelTask, Labeler};
//!
//! let labels = ["request", "question", "problem_report", "angry", "none"];
//! let labeler = LocalWebLabelerBuilder::new("labels.jsonl", labels)
//!     .answers_per_item(1) // 3 for a "2 of 3" rule
//!     .port(8377) // 127.0.0.1 only; without it a free port is picked
//!     .start(|tweet: &String| tweet.clone()) // the text shown for an item
//!     .await?;
//! // stderr: streamsift: label in your browser at http://127.0.0.1:8377/#token=…
//! let tweet = "@acme the app is down again".to_string();
//! labeler.submit(&[LabelTask::new("t1", &tweet)]).await?;
//! for result in labeler.collect().await? {
//!     println!("{} -> {} ({} votes)", result.item_id, result.label, result.votes.len());
//! }
//! # Ok(()) }
//! ```
//!
//! - **The token.** Each start draws a random token and prints the page's
//!   URL with it, once, on standard error. It sits in the URL fragment,
//!   which browsers do not send to servers; the page sends it with every
//!   API call. `Debug` output and logs never show it.
//! - **Keys.** `1`–`9` answer, `Enter` or `a` accepts the suggestion, `u`
//!   undoes, `s` skips.
//! - **The name.** The item shows as soon as the page opens; a person types
//!   their name in the box at the top left only to answer (the page asks
//!   for it then).
//! - **Several people.** Each item gets `answers_per_item` answers from
//!   different people; nobody sees an item twice; an item shown to someone
//!   is held for them for a while so two people do not race for its last
//!   answer. `bind_beyond_loopback(addr)` lets other machines in (plain
//!   HTTP: it logs a warning).
//! - **Resume.** Every event is appended to the dataset file and synced
//!   before the page moves on; start again on the same file and everyone
//!   carries on where they stopped.
//! - **Safety.** Item text is rendered as text, never markup, and a strict
//!   Content-Security-Policy keeps the page from reaching anything else.
//!
//! # Mechanical Turk (feature `mturk`)
//!
//! Mechanical Turk closed to new customers in 2026; `MturkLabeler` serves
//! accounts that still have access. It uses the **sandbox** unless built
//! with `.production()`.
//!
//! ```no_run
//! # #[cfg(feature = "mturk")]
//! # async fn demo() {
//! use streamsift::mturk::{Cents, MturkLabeler};
//!
//! let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
//! let labeler = MturkLabeler::builder(&config, |tweet: &String| tweet.clone())
//!     .max_spend(Cents(500)) // $5, rewards and MTurk's fee included
//!     .build(); // the sandbox; production needs `.production()`
//! # let _ = labeler; }
//! ```
//!
//! - **HITs.** One HIT type, then one HIT per item with an HTML question
//!   (the item HTML-escaped; `QuestionTemplate` changes the question).
//!   Defaults: 3 assignments, a 95% approval-rate qualification.
//! - **Idempotent.** Each HIT's `UniqueRequestToken` derives from the item
//!   id, so a retried call or a restarted process never creates a second
//!   HIT for an item (MTurk keeps tokens for 24 hours).
//! - **Budget.** Before creating HITs the labeler computes their worst-case
//!   cost, MTurk's fee included, and refuses past `max_spend` or the
//!   account's available balance with a typed `BudgetError`.
//! - **Collecting.** `collect` pages through the assignments, parses each
//!   answer, approves those it counts, and rejects wrong answers to `gold`
//!   items.
//!
//! # Building a labeled dataset: `label_and_train`
//!
//! ```text
//! cargo run --example label_and_train                 # offline: a simulated crowd labels
//! cargo run --example label_and_train -- --majority   # majority vote instead of Dawid–Skene
//! cargo run --features label-ui --example label_and_train -- --web --sample 100
//! cargo run --features mturk --example label_and_train -- --mturk --sample 40 --max-spend 10
//! cargo run --example label_and_train -- --llm-sim    # offline: two simulated LLM workers label
//! cargo run --features llm,label-ui --example label_and_train -- \
//!     --llm http://localhost:8000/v1 --llm-model qwen2.5-7b-instruct --review
//! ```
//!
//! It samples the unlabeled stream, removes retweets and duplicates (each
//! label costs money or someone's time), sends one task per tweet,
//! aggregates the answers, writes the training CSV, trains the local binary
//! model and measures it against the gold labels on a held-out 30%. Into
//! `target/label_and_train/` it writes `training.csv` (readable with
//! `LoadOptions::new("text").id("id").label("label")`), `aggregation.json`
//! (per-worker accuracy and spammer flags), `model.json` and `report.html`.
//!
//! **With an LLM.** `--llm URL` (an OpenAI-compatible server; the API key
//! is read from the variable `--llm-key-env` names, `OPENAI_API_KEY` unless
//! set, and never printed) or `--llm-sim` (two `SimulatedLlm` workers over
//! the gold labels, offline) pre-labels the sample with two LLM workers
//! (the model under two prompts) and aggregates their votes with
//! Dawid–Skene. With `--review`, the tweets the two workers disagree on go
//! to the labeling page, each with the LLM's label and confidence as the
//! suggestion; people accept it with `Enter` or pick another, and their
//! answer replaces the LLM's. It prints each worker's votes and agreement
//! with gold, the disagreements, how many suggestions people accepted, the
//! labels' agreement with gold before and after review, and the model's
//! hold-out figures; `tests/label_and_train.rs` runs it offline and checks
//! that review raises the labels' agreement with gold.
//!
//! # Active learning
//!
//! [`active`](crate::active) sends the policy's review band to people, turns
//! their labels into training data, and swaps a retrained model in while the
//! stream flows.
//!
//! - [`ActiveLearner`](crate::active::ActiveLearner) is the `Labeler` you
//!   give [`Pipeline::review`](crate::Pipeline::review). A review item is
//!   appended to a JSON-lines queue and synced before `submit` returns, so
//!   the record counts as done and the queue survives a restart. At most
//!   `capacity` items wait; when full, the least uncertain is evicted. Its
//!   `run` submits the **most uncertain** items first to the inner labeler,
//!   within a [`RateLimit`](crate::active::RateLimit) and a
//!   [`Budget`](crate::active::Budget) (counted in the queue file, so a
//!   restart does not reset it), collects labels into a
//!   [`DatasetStore`](crate::active::DatasetStore), and asks the retrainer.
//! - [`Retrainer`](crate::active::Retrainer) retrains after N new labels
//!   and/or on a schedule, off the async threads. A failed training keeps
//!   the model in service.
//! - [`HotSwapClassifier`](crate::active::HotSwapClassifier) holds the
//!   current model; every record is classified wholly by one model version,
//!   and a swap never waits for records in flight.
//!
//! ```no_run
//! use std::time::Duration;
//! use streamsift::active::{ActiveConfig, ActiveLearner, Budget, DatasetStore};
//! use streamsift::active::{HotSwapClassifier, RateLimit, RetrainTrigger, Retrainer, Uncertainty};
//! use streamsift::fakes::{MemorySource, RecordingRouter, SimulatedCrowd, Worker};
//! use streamsift::local::{Example, LocalClassifier, LocalModel, TrainConfig};
//! use streamsift::{JsonLinesDeadLetter, Pipeline, Policy, Shutdown};
//!
//! # async fn demo(base: Vec<Example>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = TrainConfig::binary("actionable");
//! let swap = HotSwapClassifier::new(LocalClassifier::new(LocalModel::train(&base, &config)?));
//! let trigger = RetrainTrigger { every_labels: Some(200), interval: Some(Duration::from_secs(3600)) };
//! let retrainer = Retrainer::local(swap.clone(), base, config, trigger);
//! // Offline, a simulated crowd answers; in production, a LocalWebLabeler or MturkLabeler.
//! let crowd = SimulatedCrowd::new(["actionable", "none"], |e: &Example| {
//!     if e.text.contains("down") { "actionable" } else { "none" }
//! })
//! .workers([Worker::accurate("a", 0.9), Worker::accurate("b", 0.85), Worker::spammer("c")]);
//! let learner = ActiveLearner::builder(crowd, |e: &Example| e.clone())
//!     .queue_file("state/review-queue.jsonl")
//!     .dataset(DatasetStore::new("state/labels.jsonl"))
//!     .config(ActiveConfig {
//!         uncertainty: Uncertainty::Threshold(0.3),
//!         batch_size: 50,
//!         rate: Some(RateLimit { tasks: 500, per: Duration::from_secs(3600) }),
//!         budget: Budget { max_tasks: None, cost_per_task: 0.12, max_spend: Some(100.0) },
//!         ..ActiveConfig::default()
//!     })
//!     .stats(swap.stats().clone())
//!     .retrainer(retrainer)
//!     .open()?;
//! let shutdown = Shutdown::new();
//! let background = tokio::spawn({
//!     let (learner, shutdown) = (learner.clone(), shutdown.clone());
//!     async move { learner.run(shutdown).await }
//! });
//! let report = Pipeline::new(MemorySource::from_payloads(1, Vec::<String>::new()))
//!     .json::<Example>()
//!     .classify(swap.clone())
//!     .policy(Policy::binary(0.3, "support").with_review_band(0.15, 0.45))
//!     .route(RecordingRouter::new())
//!     .review(learner)
//!     .dead_letter(JsonLinesDeadLetter::builder("state/dead-letter.jsonl").create_dirs(true).open()?)
//!     .active_stats(swap.stats().clone())
//!     .run()
//!     .await?;
//! shutdown.cancel();
//! background.await?;
//! println!("{:?}", report.active); // labels gathered, retrainings, records per model version
//! # Ok(()) }
//! ```
//!
//! `tests/active_learning.rs` checks the order (most uncertain first), the
//! rate and budget limits, a queue that survives a restart, a retraining
//! that swaps in a different model, and the swap under load (no record
//! fails or is lost, and per-version counts agree). The figures of the
//! aggregation and `label_and_train` runs are in `benches/README.md`.
