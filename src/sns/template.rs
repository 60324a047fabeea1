//! Message templates: text with `{field}` placeholders filled from a
//! [`Delivery`].
//!
//! # Syntax
//!
//! A template is plain text with fields in braces. `{{` and `}}` stand for
//! literal braces. A field names one of:
//!
//! | field | renders |
//! |---|---|
//! | `{label}` | the predicted label |
//! | `{route}` | the route the policy chose |
//! | `{confidence}` | the probability of the predicted label, two decimals (`0.93`) |
//! | `{score}` | the score a threshold policy compares (the positive-class probability of a binary prediction), else the confidence; up to five decimals (`0.93215`) |
//! | `{score.NAME}` | the probability of label `NAME`, up to five decimals |
//! | `{record.id}`, `{record.shard}`, `{record.sequence}`, `{record.partition_key}` | the record's id, shard, position and partition key |
//! | `{item}` | the whole item, as JSON (a string item renders without quotes) |
//! | `{item.a.b}` | a field of the item serialised with serde_json; a numeric segment indexes an array (`{item.entities.urls.0.url}`) |
//!
//! Inside an item path, a segment may not contain `.`, `|` or braces.
//!
//! Alternatives separated by `|` render the first one that is not empty:
//! `{item.id_str|item.id}`.
//!
//! # Missing values
//!
//! A field with no value renders as the empty string: a missing or `null`
//! item field, a prediction without scores, an item whose `Serialize` impl
//! fails. Strings render as they are, numbers and booleans as JSON text,
//! objects and arrays as compact JSON. Nothing is escaped: SNS messages are
//! plain text. A subscriber that puts them into HTML must escape them.

use std::fmt;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::router::Delivery;

/// Why a template could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{` with no matching `}`.
    #[error(
        "template has a `{{` at byte {at} with no closing `}}`: close the field, or write `{{{{` for a literal brace"
    )]
    Unclosed {
        /// Byte offset of the `{`.
        at: usize,
    },
    /// A `}` outside a field.
    #[error("template has a `}}` at byte {at} outside any field: write `}}}}` for a literal brace")]
    StrayClose {
        /// Byte offset of the `}`.
        at: usize,
    },
    /// A field (or one of its `|` alternatives) is empty.
    #[error("template has an empty field at byte {at}: name a field, such as `{{label}}`")]
    EmptyField {
        /// Byte offset of the field's `{`.
        at: usize,
    },
    /// A field name that is not known.
    #[error(
        "template field {name:?} at byte {at} is not known; expected label, route, confidence, \
         score, score.LABEL, record.id, record.shard, record.sequence, record.partition_key, item \
         or item.PATH"
    )]
    UnknownField {
        /// The name found.
        name: String,
        /// Byte offset of the field's `{`.
        at: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Field {
    Label,
    Route,
    Confidence,
    Score,
    ScoreOf(String),
    RecordId,
    RecordShard,
    RecordSequence,
    RecordPartitionKey,
    Item(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// Alternatives: the first non-empty one renders.
    Field(Vec<Field>),
}

/// A parsed message or subject template. See the [module docs](self) for
/// the syntax.
///
/// ```
/// use streamsift::sns::Template;
/// use streamsift::{Delivery, Label, Prediction, Record, Sequence, ShardId};
///
/// let template = Template::parse("@{item.user} says {item.text} [{label} {confidence}]")?;
/// let item = serde_json::json!({"user": "ann", "text": "my order is late"});
/// let record = Record::new(ShardId::new("s0"), Sequence::from_offset(1), "k", &b""[..]);
/// let prediction = Prediction::binary("actionable", "noise", 0.875);
/// let route = Label::from("support");
/// let delivery = Delivery { item: &item, record: &record, prediction: &prediction, route: &route };
/// assert_eq!(template.render(&delivery), "@ann says my order is late [actionable 0.88]");
/// # Ok::<(), streamsift::sns::TemplateError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.text).finish()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

fn parse_field(name: &str, at: usize) -> Result<Field, TemplateError> {
    let unknown = || TemplateError::UnknownField {
        name: name.to_owned(),
        at,
    };
    Ok(match name {
        "" => return Err(TemplateError::EmptyField { at }),
        "label" => Field::Label,
        "route" => Field::Route,
        "confidence" => Field::Confidence,
        "score" => Field::Score,
        "record.id" => Field::RecordId,
        "record.shard" => Field::RecordShard,
        "record.sequence" => Field::RecordSequence,
        "record.partition_key" => Field::RecordPartitionKey,
        "item" => Field::Item(Vec::new()),
        _ => {
            if let Some(label) = name.strip_prefix("score.") {
                if label.is_empty() {
                    return Err(unknown());
                }
                Field::ScoreOf(label.to_owned())
            } else if let Some(path) = name.strip_prefix("item.") {
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    return Err(unknown());
                }
                Field::Item(segments)
            } else {
                return Err(unknown());
            }
        }
    })
}

/// Formats a score for attributes and `{score}`: at most five decimals,
/// trailing zeros dropped. `None` for a value that is not finite.
pub(crate) fn format_score(score: f64) -> Option<String> {
    if !score.is_finite() {
        return None;
    }
    let text = format!("{score:.5}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    Some(if text == "-0" {
        "0".into()
    } else {
        text.into()
    })
}

/// The score a threshold policy compares: the positive-class probability of
/// a binary prediction, else the probability of the predicted label.
pub(crate) fn policy_score(p: &crate::Prediction) -> Option<f64> {
    p.positive_score.or_else(|| p.confidence())
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Array(_) | Value::Object(_) => {
            let _ = write!(out, "{value}");
        }
    }
}

impl Template {
    /// Parses a template; see the [module docs](self) for the syntax.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        while let Some((at, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|(_, c)| *c) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|(_, c)| *c) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose { at }),
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in rest.by_ref() {
                        match c {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => return Err(TemplateError::Unclosed { at }),
                            c => name.push(c),
                        }
                    }
                    if !closed {
                        return Err(TemplateError::Unclosed { at });
                    }
                    let alternatives = name
                        .split('|')
                        .map(|alt| parse_field(alt.trim(), at))
                        .collect::<Result<Vec<_>, _>>()?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(alternatives));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template's source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether any field reads the item (so it must be serialised).
    pub(crate) fn reads_item(&self) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Field(alts) => alts.iter().any(|f| matches!(f, Field::Item(_))),
            Part::Literal(_) => false,
        })
    }

    /// Renders the template for one delivery. Missing values render empty.
    pub fn render<T: Serialize>(&self, delivery: &Delivery<'_, T>) -> String {
        let item = if self.reads_item() {
            serde_json::to_value(delivery.item).ok()
        } else {
            None
        };
        self.render_with(delivery, item.as_ref())
    }

    /// Renders with the item already serialised (`None`: item fields render
    /// empty).
    pub(crate) fn render_with<T>(&self, d: &Delivery<'_, T>, item: Option<&Value>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(alternatives) => {
                    for field in alternatives {
                        let before = out.len();
                        write_field(&mut out, field, d, item);
                        if out.len() > before {
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

fn write_field<T>(out: &mut String, field: &Field, d: &Delivery<'_, T>, item: Option<&Value>) {
    match field {
        Field::Label => out.push_str(d.prediction.label.as_str()),
        Field::Route => out.push_str(d.route.as_str()),
        Field::Confidence => {
            if let Some(c) = d.prediction.confidence().filter(|c| c.is_finite()) {
                let _ = write!(out, "{c:.2}");
            }
        }
        Field::Score => {
            if let Some(s) = policy_score(d.prediction).and_then(format_score) {
                out.push_str(&s);
            }
        }
        Field::ScoreOf(label) => {
            if let Some(s) = d.prediction.score(label).and_then(format_score) {
                out.push_str(&s);
            }
        }
        Field::RecordId => out.push_str(&d.record.id),
        Field::RecordShard => out.push_str(d.record.shard.as_str()),
        Field::RecordSequence => {
            let _ = write!(out, "{}", d.record.sequence);
        }
        Field::RecordPartitionKey => out.push_str(&d.record.partition_key),
        Field::Item(path) => {
            if let Some(value) = item.and_then(|v| crate::util::json_path(v, path)) {
                write_value(out, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Label, Prediction, Record, Sequence, ShardId};
    use serde_json::json;

    fn render(template: &str, item: &Value, prediction: &Prediction) -> String {
        let record = Record::new(
            ShardId::new("shard-1"),
            Sequence::with_sub_sequence("42", 3),
            "pk",
            &b""[..],
        );
        let route = Label::from("billing");
        let d = Delivery {
            item,
            record: &record,
            prediction,
            route: &route,
        };
        Template::parse(template).expect("parses").render(&d)
    }

    #[test]
    fn fields_render_from_record_prediction_and_item() {
        let item = json!({"id": 1234567890123456789u64, "user": {"screen_name": "ann"},
                          "tags": ["a", "b"], "ok": true, "none": null});
        let p = Prediction::binary("actionable", "noise", 0.9123461);
        assert_eq!(
            render(
                "{label}/{route}/{confidence}/{score}/{score.noise}",
                &item,
                &p
            ),
            "actionable/billing/0.91/0.91235/0.08765"
        );
        assert_eq!(
            render(
                "{record.id} {record.shard} {record.sequence} {record.partition_key}",
                &item,
                &p
            ),
            "shard-1:42/3 shard-1 42/3 pk"
        );
        assert_eq!(
            render(
                "{item.user.screen_name} {item.id} {item.tags.1} {item.ok} [{item.none}]",
                &item,
                &p
            ),
            "ann 1234567890123456789 b true []"
        );
        assert_eq!(render("{item.tags}", &item, &p), r#"["a","b"]"#);
    }

    #[test]
    fn missing_fields_render_empty_and_alternatives_fall_through() {
        let item = json!({"id": 7});
        let p = Prediction::label("x");
        assert_eq!(
            render(
                "[{item.user.name}][{confidence}][{score}][{score.y}][{item.id.deeper}][{item.5}]",
                &item,
                &p
            ),
            "[][][][][][]"
        );
        assert_eq!(render("{item.id_str|item.id}", &item, &p), "7");
        assert_eq!(
            render(
                "{item.id_str|item.id}",
                &json!({"id_str": "8", "id": 7}),
                &p
            ),
            "8"
        );
        assert_eq!(render("{item}", &json!("plain text"), &p), "plain text");
    }

    #[test]
    fn braces_escape_and_errors_say_where() {
        let p = Prediction::label("x");
        assert_eq!(render("{{literal}} {label}", &json!({}), &p), "{literal} x");
        assert_eq!(
            Template::parse("a {label"),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert_eq!(
            Template::parse("a } b"),
            Err(TemplateError::StrayClose { at: 2 })
        );
        assert_eq!(
            Template::parse("{}"),
            Err(TemplateError::EmptyField { at: 0 })
        );
        assert_eq!(
            Template::parse("x {lable}"),
            Err(TemplateError::UnknownField {
                name: "lable".into(),
                at: 2
            })
        );
        assert!(matches!(
            Template::parse("{item..a}"),
            Err(TemplateError::UnknownField { .. })
        ));
        let err = Template::parse("{label").unwrap_err().to_string();
        assert!(err.contains("`{{`"), "{err}");
    }

    #[test]
    fn scores_format_with_at_most_five_decimals() {
        assert_eq!(format_score(1.0).as_deref(), Some("1"));
        assert_eq!(format_score(0.5).as_deref(), Some("0.5"));
        assert_eq!(format_score(0.123456).as_deref(), Some("0.12346"));
        assert_eq!(format_score(-0.000001).as_deref(), Some("0"));
        assert_eq!(format_score(f64::NAN), None);
    }
}
