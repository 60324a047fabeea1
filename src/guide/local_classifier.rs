//! The local classifier: train and serve a model in-process.
//!
//! [`local`](crate::local) needs no service and no model download. Training
//! and serving share one featurizer, stored in the model file, so what the
//! model sees live is what it learned from.
//!
//! - **Featurizer.** Tweet-aware tokens (mentions, hashtags, URLs, numbers,
//!   emoji and emoticons as their own kinds; elongations collapsed), word
//!   unigrams and orthogonal sparse bigrams, optional character n-grams,
//!   text flags and optional record fields (booleans, quantile-binned
//!   numbers), signed hashing into 2^k buckets.
//! - **Models.** Binary logistic and multinomial (softmax) regression by
//!   AdaGrad, L2/L1, class weights; deterministic under a seed.
//! - **Dataset tools.** CSV and JSON-lines loaders whose errors name the
//!   line and column, label join by id, retweet and near-duplicate removal,
//!   stratified split and k-fold.
//! - **Evaluation.** ROC and PR curves, AUC, log-loss, reliability,
//!   per-class figures, and a threshold chosen **by cost** (a missed
//!   positive costs `fn_cost`, a false alarm `fp_cost`) or by minimum recall.
//!
//! # Train, save, serve
//!
//! ```no_run
//! use streamsift::local::{fit_binary_by_cost, Costs, LoadOptions, LocalClassifier, LocalModel};
//! use streamsift::local::TrainConfig;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let train = LoadOptions::new("text").label("label").load_path("train.csv")?;
//!     // The threshold of least cost (a miss costs 10 false alarms), chosen on
//!     // 5-fold out-of-fold scores; the model itself is trained on all the data.
//!     let config = TrainConfig::binary("actionable");
//!     let fit = fit_binary_by_cost(&train.examples, &config, Costs::new(10.0, 1.0), 5, 0, |_, _| {})?;
//!     println!("threshold {:.3}", fit.choice.threshold);
//!     fit.model.save("model.json")?;
//!
//!     let model = LocalModel::load("model.json")?;
//!     let policy = model.policy().cloned(); // the saved threshold, for Pipeline::policy
//!     let classifier = LocalClassifier::new(model); // a Classifier for any `Document`
//!     let _ = (policy, classifier);
//!     Ok(())
//! }
//! ```
//!
//! Implement [`local::Document`](crate::local::Document) for your decoded
//! item (its text, and any flags or numbers the featurizer is configured to
//! read) and pass the [`LocalClassifier`](crate::local::LocalClassifier) to
//! [`Pipeline::classify`](crate::Pipeline::classify).
//! [`local::Example`](crate::local::Example) already implements it.
//!
//! The threshold is never chosen on the data it is measured on: cross-
//! validated scores of the training set choose it, and a held-out set only
//! measures it.
//!
//! # The model file
//!
//! A versioned JSON file holds the featurizer configuration, the weights,
//! the labels, the chosen threshold as a [`Policy`](crate::Policy), the
//! training metadata and the test figures. A file of another version, or a
//! damaged one, is a clear [`ModelFileError`](crate::local::ModelFileError);
//! one whose shape would need more than
//! [`MAX_WEIGHT_CELLS`](crate::local::MAX_WEIGHT_CELLS) weights is refused
//! before anything is allocated.
//!
//! A saved model can tell whether it is still what training would produce:
//! [`training_fingerprint`](crate::local::training_fingerprint) hashes the
//! training examples, the configuration and the features this build makes
//! of them. The `support_tweets` example stores it in its model files and
//! retrains when it no longer matches (after a change to the tokenizer, for
//! example). After such a change, regenerate the bundled models with
//! `cargo run --release --example support_tweets -- --write-model` and
//! commit them.
//!
//! # On your data, from the command line: `train_eval`
//!
//! ```text
//! cargo run --release --example train_eval -- --train train.csv --test test.csv \
//!     [--text-column text] [--label-column label] [--positive actionable] \
//!     [--fn-cost 10] [--fp-cost 1] [--model model.json] [--report report.html]
//! ```
//!
//! Files are CSV with a header, or JSON lines (`.jsonl`; columns are then
//! field paths such as `user.bio`). With `--positive`, or exactly two labels,
//! it trains the binary model; with more, the softmax model. It prints ROC
//! AUC, the threshold, precision and recall on the test file, the confusion
//! matrix, training time and the time to predict one record, and ends with
//! one machine-readable line (`auc=… threshold=… precision=… recall=…`). For
//! comparison it also prints the threshold that would have been cheapest on
//! the test file itself.
//!
//! `--report` writes one self-contained HTML file (inline SVG, no script):
//! ROC and PR curves with the threshold marked, score histograms per class,
//! the confusion matrix, a reliability plot, the top features, and the worst
//! mistakes. Text from the data is HTML-escaped.
//!
//! Quality and speed figures (the bundled tweets, a public airline set, the
//! `classifier` bench) are in `benches/README.md`, each with its command.
