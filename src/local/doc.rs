//! What the local model reads from an item: its text and optional extra fields.
//!
//! Training and serving both go through [`Document`], so the featurizer sees
//! the same inputs in both places. [`Example`] is the training-side type that
//! the dataset loaders produce; users implement [`Document`] for their own
//! decoded item type (or use [`Example`] directly).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An item the local model can featurize: text plus optional named fields.
///
/// `flag` and `number` return `None` when the item does not carry that field;
/// the featurizer then emits no feature for it (and counts it as missing).
pub trait Document {
    /// The free text (a tweet's `text`).
    fn text(&self) -> &str;
    /// A boolean field by name, such as `"is_reply"`.
    fn flag(&self, _name: &str) -> Option<bool> {
        None
    }
    /// A numeric field by name, such as `"followers"`.
    fn number(&self, _name: &str) -> Option<f64> {
        None
    }
}

impl Document for str {
    fn text(&self) -> &str {
        self
    }
}

impl Document for String {
    fn text(&self) -> &str {
        self
    }
}

impl<D: Document + ?Sized> Document for &D {
    fn text(&self) -> &str {
        (**self).text()
    }
    fn flag(&self, name: &str) -> Option<bool> {
        (**self).flag(name)
    }
    fn number(&self, name: &str) -> Option<f64> {
        (**self).number(name)
    }
}

/// One example of a dataset: an optional id, the text, an optional label and
/// extra fields by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The item's id (a tweet's `id_str`), when the data has one.
    pub id: Option<String>,
    /// The text.
    pub text: String,
    /// The label, when the example is labeled.
    pub label: Option<String>,
    /// Boolean fields by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, bool>,
    /// Numeric fields by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numbers: BTreeMap<String, f64>,
}

impl Example {
    /// An unlabeled example with text only.
    pub fn new(text: impl Into<String>) -> Self {
        Example {
            text: text.into(),
            ..Example::default()
        }
    }

    /// Sets the label.
    pub fn labeled(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

impl Document for Example {
    fn text(&self) -> &str {
        &self.text
    }
    fn flag(&self, name: &str) -> Option<bool> {
        self.flags.get(name).copied()
    }
    fn number(&self, name: &str) -> Option<f64> {
        self.numbers.get(name).copied()
    }
}
