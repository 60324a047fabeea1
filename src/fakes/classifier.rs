//! Classifiers for tests: [`FnClassifier`] wraps a synchronous closure, and
//! [`KeywordClassifier`] scores text against a table of keywords.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready, ready};

use crate::classify::{Classifier, Label, Prediction};
use crate::error::ClassifyError;

/// A classifier from a synchronous closure `Fn(&T) -> Result<Prediction,
/// ClassifyError>`.
///
/// An `async` closure is already a [`Classifier`]; this wrapper saves
/// writing `async move` around code that does not wait for anything.
///
/// ```
/// use streamsift::fakes::FnClassifier;
/// use streamsift::{Classifier, ClassifyError, Prediction};
///
/// let long = FnClassifier::new(|text: &String| {
///     if text.is_empty() {
///         return Err(ClassifyError::permanent("empty text: nothing to classify"));
///     }
///     Ok(Prediction::binary("long", "short", if text.len() > 10 { 0.9 } else { 0.1 }))
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let p = long.classify(&"a fairly long sentence".to_string()).await.unwrap();
/// assert_eq!(p.label, "long");
/// assert!(long.classify(&String::new()).await.is_err());
/// # });
/// ```
#[derive(Clone)]
pub struct FnClassifier<F> {
    f: F,
}

impl<F> FnClassifier<F> {
    /// Wraps a closure. See the [type docs](FnClassifier) for an example.
    pub fn new(f: F) -> Self {
        FnClassifier { f }
    }
}

impl<F> fmt::Debug for FnClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnClassifier")
    }
}

impl<T, F> Classifier<T> for FnClassifier<F>
where
    T: Sync,
    F: Fn(&T) -> Result<Prediction, ClassifyError> + Send + Sync,
{
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send {
        ready((self.f)(item))
    }
}

/// The default text extractor of a [`KeywordClassifier`]: the item's
/// [`AsRef<str>`] text (so `String`, `&str`, `Box<str>`, ... classify as
/// is). Replace it with [`KeywordClassifier::on`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AsText;

/// A multi-class classifier that scores text against keyword lists.
///
/// Each label has keywords, each with a weight. Matching is
/// case-insensitive:
///
/// - a single word (letters and digits only, such as `down` or `503`)
///   matches whole words, so `down` does not match `download`;
/// - a phrase (anything else, such as `not working` or `can't`) matches as
///   a substring of the text after lowercasing and collapsing runs of
///   whitespace into one space, and must also start and end on a word
///   boundary where the phrase itself starts or ends with a letter or digit
///   (so `not working` does not match `cannot working`).
///
/// A keyword counts once per text however often it occurs. A label's score
/// `s` is the sum of the weights of its matched keywords; the default label
/// starts from [`base_score`](KeywordClassifier::base_score) (0.5 unless
/// set) plus any keywords of its own. The probabilities are a softmax:
///
/// ```text
/// p(label) = exp(s(label) / t) / Σ exp(s(l) / t)        t = temperature, 0.25 unless set
/// ```
///
/// so they sum to 1, one matched keyword of weight 1 beats the default
/// label, and each further match makes the prediction more confident. Ties
/// go to the default label, then to the label whose first rule came first.
/// The result is deterministic.
///
/// It classifies anything that is [`AsRef<str>`]; for other types, say
/// where the text is with [`on`](KeywordClassifier::on).
///
/// ```
/// use streamsift::fakes::KeywordClassifier;
///
/// let kw = KeywordClassifier::new("none")
///     .rule("problem_report", &["down", "503", "not working", "outage"])
///     .rule("praise", &["love", "thanks"])
///     .rule_weighted("problem_report", &["urgent"], 2.0);
///
/// assert_eq!(kw.predict("The API is DOWN again, 503s everywhere").label, "problem_report");
/// assert_eq!(kw.predict("Download complete").label, "none");
/// assert_eq!(kw.predict("thanks, love the new console").label, "praise");
/// let p = kw.predict("nothing to see");
/// let total: f64 = p.scores.iter().map(|(_, s)| s).sum();
/// assert!((total - 1.0).abs() < 1e-9);
/// ```
#[derive(Clone)]
pub struct KeywordClassifier<X = AsText> {
    /// Every label; index 0 is the default label.
    labels: Vec<Label>,
    /// Single-word keywords: word -> index into `word_hits`.
    words: HashMap<String, usize>,
    /// For each single-word keyword, the (label index, weight) it adds.
    word_hits: Vec<Vec<(usize, f64)>>,
    /// Phrases, normalized, with the label index and weight they add.
    phrases: Vec<Phrase>,
    base_score: f64,
    temperature: f64,
    positive: Option<Label>,
    extract: X,
}

#[derive(Clone, Debug)]
struct Phrase {
    text: String,
    /// Whether a match must be preceded by a non-word character (the phrase
    /// starts with a word character).
    bound_start: bool,
    /// Whether a match must be followed by a non-word character.
    bound_end: bool,
    label: usize,
    weight: f64,
}

impl KeywordClassifier {
    /// A classifier that says `default_label` when no keyword matches. Add
    /// labels with [`rule`](KeywordClassifier::rule).
    ///
    /// ```
    /// use streamsift::fakes::KeywordClassifier;
    /// let kw = KeywordClassifier::new("noise").rule("outage", &["down"]);
    /// assert_eq!(kw.predict("is it down?").label, "outage");
    /// assert_eq!(kw.predict("sunny today").label, "noise");
    /// ```
    pub fn new(default_label: impl Into<Label>) -> Self {
        KeywordClassifier {
            labels: vec![default_label.into()],
            words: HashMap::new(),
            word_hits: Vec::new(),
            phrases: Vec::new(),
            base_score: 0.5,
            temperature: 0.25,
            positive: None,
            extract: AsText,
        }
    }
}

impl<X> KeywordClassifier<X> {
    /// Adds keywords for `label`, each with weight 1. Call it again for the
    /// same label to add more. Empty keywords are ignored.
    pub fn rule(self, label: impl Into<Label>, keywords: &[&str]) -> Self {
        self.rule_weighted(label, keywords, 1.0)
    }

    /// Adds keywords for `label`, each with `weight`. A negative weight
    /// counts against the label.
    ///
    /// # Panics
    ///
    /// If `weight` is not finite.
    ///
    /// ```
    /// use streamsift::fakes::KeywordClassifier;
    /// let kw = KeywordClassifier::new("none")
    ///     .rule("outage", &["down"])
    ///     .rule_weighted("outage", &["not down"], -2.0);
    /// assert_eq!(kw.predict("site is down").label, "outage");
    /// assert_eq!(kw.predict("site is not down").label, "none");
    /// ```
    pub fn rule_weighted(
        mut self,
        label: impl Into<Label>,
        keywords: &[&str],
        weight: f64,
    ) -> Self {
        assert!(
            weight.is_finite(),
            "keyword weight must be finite, got {weight}"
        );
        let label = label.into();
        let index = match self.labels.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label);
                self.labels.len() - 1
            }
        };
        for keyword in keywords {
            let norm = normalize(keyword);
            let norm = norm.trim();
            if norm.is_empty() {
                continue;
            }
            if norm.chars().all(is_word_char) {
                let next = self.word_hits.len();
                let slot = *self.words.entry(norm.to_owned()).or_insert(next);
                if slot == next {
                    self.word_hits.push(Vec::new());
                }
                self.word_hits[slot].push((index, weight));
            } else {
                self.phrases.push(Phrase {
                    bound_start: norm.chars().next().is_some_and(is_word_char),
                    bound_end: norm.chars().next_back().is_some_and(is_word_char),
                    text: norm.to_owned(),
                    label: index,
                    weight,
                });
            }
        }
        self
    }

    /// The default label's score before its own keywords (0.5 unless set).
    /// Raise it to need more evidence before a label beats the default.
    ///
    /// # Panics
    ///
    /// If `score` is not finite.
    pub fn base_score(mut self, score: f64) -> Self {
        assert!(score.is_finite(), "base score must be finite, got {score}");
        self.base_score = score;
        self
    }

    /// The softmax temperature (0.25 unless set): lower makes predictions
    /// more confident, higher makes them closer to uniform.
    ///
    /// # Panics
    ///
    /// If `temperature` is not finite and positive.
    pub fn temperature(mut self, temperature: f64) -> Self {
        assert!(
            temperature.is_finite() && temperature > 0.0,
            "temperature must be finite and positive, got {temperature}"
        );
        self.temperature = temperature;
        self
    }

    /// Also reports the probability of `label` as the prediction's
    /// [`positive_score`](Prediction::positive_score), so a binary
    /// [`Policy`](crate::Policy) can threshold it.
    ///
    /// ```
    /// use streamsift::fakes::KeywordClassifier;
    /// let kw = KeywordClassifier::new("noise").rule("actionable", &["help"]).positive("actionable");
    /// let p = kw.predict("please help");
    /// assert_eq!(p.positive_score, p.score("actionable"));
    /// ```
    pub fn positive(mut self, label: impl Into<Label>) -> Self {
        self.positive = Some(label.into());
        self
    }

    /// Classifies items of type `T` by the text `text` finds in them.
    ///
    /// ```
    /// use streamsift::Classifier;
    /// use streamsift::fakes::KeywordClassifier;
    ///
    /// struct Tweet { id: u64, text: String }
    /// let kw = KeywordClassifier::new("none")
    ///     .rule("problem_report", &["down"])
    ///     .on(|t: &Tweet| t.text.as_str());
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let tweet = Tweet { id: 1, text: "S3 is down".into() };
    /// assert_eq!(kw.classify(&tweet).await.unwrap().label, "problem_report");
    /// # });
    /// ```
    pub fn on<T, F>(self, text: F) -> KeywordClassifier<F>
    where
        F: Fn(&T) -> &str + Send + Sync,
    {
        KeywordClassifier {
            labels: self.labels,
            words: self.words,
            word_hits: self.word_hits,
            phrases: self.phrases,
            base_score: self.base_score,
            temperature: self.temperature,
            positive: self.positive,
            extract: text,
        }
    }

    /// Every label it can predict, the default label first.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Classifies a text. Scores list the default label first, then the
    /// others in the order their first rule was added.
    pub fn predict(&self, text: &str) -> Prediction {
        let norm = normalize(text);
        let mut scores = vec![0.0_f64; self.labels.len()];
        scores[0] = self.base_score;

        let mut seen = vec![false; self.word_hits.len()];
        for word in norm.split(|c: char| !is_word_char(c)) {
            if word.is_empty() {
                continue;
            }
            if let Some(&slot) = self.words.get(word)
                && !std::mem::replace(&mut seen[slot], true)
            {
                for &(label, weight) in &self.word_hits[slot] {
                    scores[label] += weight;
                }
            }
        }
        for phrase in &self.phrases {
            if phrase_matches(&norm, phrase) {
                scores[phrase.label] += phrase.weight;
            }
        }

        // Softmax, shifted by the maximum for numerical stability.
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for s in &mut scores {
            *s = ((*s - max) / self.temperature).exp();
            total += *s;
        }
        let probabilities: Vec<(Label, f64)> = self
            .labels
            .iter()
            .zip(&scores)
            .map(|(label, s)| (label.clone(), s / total))
            .collect();
        let mut prediction = Prediction::from_scores(probabilities)
            .unwrap_or_else(|| Prediction::label(self.labels[0].clone()));
        if let Some(positive) = &self.positive {
            prediction.positive_score = Some(prediction.score(positive.as_str()).unwrap_or(0.0));
        }
        prediction
    }
}

impl<X> fmt::Debug for KeywordClassifier<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywordClassifier")
            .field("labels", &self.labels)
            .field("words", &self.words.len())
            .field("phrases", &self.phrases.len())
            .field("base_score", &self.base_score)
            .field("temperature", &self.temperature)
            .field("positive", &self.positive)
            .finish_non_exhaustive()
    }
}

impl<T> Classifier<T> for KeywordClassifier<AsText>
where
    T: AsRef<str> + Sync,
{
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send {
        ok(self.predict(item.as_ref()))
    }
}

impl<T, F> Classifier<T> for KeywordClassifier<F>
where
    T: Sync,
    F: Fn(&T) -> &str + Send + Sync,
{
    fn classify(&self, item: &T) -> impl Future<Output = Result<Prediction, ClassifyError>> + Send {
        ok(self.predict((self.extract)(item)))
    }
}

fn ok(p: Prediction) -> Ready<Result<Prediction, ClassifyError>> {
    ready(Ok(p))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Lowercases and collapses each run of whitespace into one space.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
        } else {
            in_space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn phrase_matches(text: &str, phrase: &Phrase) -> bool {
    text.match_indices(phrase.text.as_str()).any(|(at, m)| {
        let before_ok =
            !phrase.bound_start || !text[..at].chars().next_back().is_some_and(is_word_char);
        let after_ok = !phrase.bound_end
            || !text[at + m.len()..]
                .chars()
                .next()
                .is_some_and(is_word_char);
        before_ok && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support() -> KeywordClassifier {
        KeywordClassifier::new("none")
            .rule("problem_report", &["down", "503", "not working", "outage"])
            .rule("praise", &["love", "thank you", "thanks"])
    }

    #[test]
    fn single_words_match_whole_words_case_insensitively() {
        let kw = support();
        assert_eq!(kw.predict("Is S3 DOWN?").label, "problem_report");
        assert_eq!(kw.predict("#down").label, "problem_report");
        assert_eq!(kw.predict("download finished").label, "none");
        assert_eq!(kw.predict("got a 5035 code").label, "none");
        assert_eq!(kw.predict("got a 503.").label, "problem_report");
    }

    #[test]
    fn phrases_match_across_whitespace_and_respect_word_edges() {
        let kw = support();
        assert_eq!(kw.predict("Console NOT\n  working").label, "problem_report");
        assert_eq!(kw.predict("cannot workingly").label, "none");
        assert_eq!(kw.predict("Thank you!").label, "praise");
        assert_eq!(kw.predict("thank youth").label, "none");
    }

    #[test]
    fn probabilities_sum_to_one_and_follow_the_softmax() {
        let kw = support();
        for text in ["", "down", "down 503 outage", "thanks but down", "lorem"] {
            let p = kw.predict(text);
            let total: f64 = p.scores.iter().map(|(_, s)| s).sum();
            assert!((total - 1.0).abs() < 1e-9, "{text}: {total}");
            assert_eq!(p.scores.len(), 3);
            assert_eq!(p.scores[0].0, "none", "default label first");
        }
        // No match: scores (0.5, 0, 0) / 0.25 -> e^2 / (e^2 + 2).
        let none = kw.predict("lorem ipsum").score("none").unwrap();
        let e2 = 2f64.exp();
        assert!((none - e2 / (e2 + 2.0)).abs() < 1e-12);
        // One match is a prediction; more matches make it more confident.
        let one = kw.predict("down").confidence().unwrap();
        let three = kw.predict("down, 503, outage").confidence().unwrap();
        assert!(one > 0.5 && three > one && three > 0.99, "{one} {three}");
    }

    #[test]
    fn a_keyword_counts_once_and_weights_add_up() {
        let kw = support();
        assert_eq!(
            kw.predict("down").scores,
            kw.predict("down down down").scores
        );
        let kw = KeywordClassifier::new("none")
            .rule("a", &["x", "y"])
            .rule_weighted("b", &["z"], 1.5);
        // a: 1 + 1 = 2 beats b: 1.5.
        assert_eq!(kw.predict("x y z").label, "a");
        assert_eq!(kw.predict("x z").label, "b");
    }

    #[test]
    fn ties_go_to_the_default_then_the_first_label() {
        let kw = KeywordClassifier::new("none")
            .base_score(1.0)
            .rule("a", &["x"])
            .rule("b", &["y"]);
        assert_eq!(kw.predict("x").label, "none");
        let kw = kw.base_score(0.0);
        assert_eq!(kw.predict("y x").label, "a");
    }

    #[test]
    fn positive_reports_the_chosen_labels_probability() {
        let kw = KeywordClassifier::new("noise")
            .rule("actionable", &["help"])
            .positive("actionable");
        let p = kw.predict("help me");
        assert_eq!(p.positive_score, p.score("actionable"));
        assert!(p.positive_score.unwrap() > 0.5);
        assert!(kw.predict("hello").positive_score.unwrap() < 0.5);
        assert_eq!(support().predict("down").positive_score, None);
    }

    #[tokio::test]
    async fn classifies_text_types_and_user_types() {
        let kw = support();
        assert_eq!(
            kw.classify(&"site down".to_string()).await.unwrap().label,
            "problem_report"
        );
        assert_eq!(kw.classify(&"thanks").await.unwrap().label, "praise");

        struct Tweet {
            text: String,
        }
        let on_tweets = support().on(|t: &Tweet| t.text.as_str());
        let tweet = Tweet {
            text: "love it".into(),
        };
        assert_eq!(on_tweets.classify(&tweet).await.unwrap().label, "praise");
        let batch = on_tweets
            .classify_batch(&[&tweet, &Tweet { text: "503".into() }])
            .await;
        assert_eq!(batch[1].as_ref().unwrap().label, "problem_report");
    }

    #[tokio::test]
    async fn fn_classifier_passes_results_and_errors_through() {
        let c = FnClassifier::new(|n: &u32| {
            if *n == 0 {
                Err(ClassifyError::permanent("zero"))
            } else {
                Ok(Prediction::label(if n.is_multiple_of(2) {
                    "even"
                } else {
                    "odd"
                }))
            }
        });
        assert_eq!(c.classify(&3).await.unwrap().label, "odd");
        assert_eq!(c.classify(&4).await.unwrap().label, "even");
        assert!(!c.classify(&0).await.unwrap_err().is_retryable());
    }
}
