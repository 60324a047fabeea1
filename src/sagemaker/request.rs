//! Request bodies: [`RequestBuilder`], [`JsonRequest`] and [`CsvRequest`].

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::error::ClassifyError;

/// Turns a batch of one or more items into an `InvokeEndpoint` request body.
///
/// Implemented by [`JsonRequest`], [`CsvRequest`] and every
/// `Fn(&[&T]) -> Result<Bytes, ClassifyError> + Send + Sync`.
pub trait RequestBuilder<T>: Send + Sync {
    /// The body for `items` (never empty). An error here is the item's
    /// error: make it permanent when the item cannot be encoded.
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError>;
}

impl<T, F> RequestBuilder<T> for F
where
    F: Fn(&[&T]) -> Result<Bytes, ClassifyError> + Send + Sync,
{
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        self(items)
    }
}

/// The default request body: the item's JSON for one item, and
/// `{"instances":[item, …]}` for a batch of several (the shape TensorFlow
/// Serving and most JSON model servers take).
///
/// ```
/// use streamsift::sagemaker::{JsonRequest, RequestBuilder};
/// let (a, b) = (serde_json::json!({"text": "hi"}), serde_json::json!({"text": "yo"}));
/// assert_eq!(&JsonRequest::new().build(&[&a]).unwrap()[..], br#"{"text":"hi"}"#);
/// assert_eq!(
///     &JsonRequest::new().build(&[&a, &b]).unwrap()[..],
///     br#"{"instances":[{"text":"hi"},{"text":"yo"}]}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRequest {
    always_instances: bool,
}

impl JsonRequest {
    /// The item alone for one item, `{"instances":[…]}` for several.
    pub fn new() -> Self {
        JsonRequest::default()
    }

    /// `{"instances":[…]}` even for a single item, for a model that only
    /// takes that shape.
    pub fn always_instances() -> Self {
        JsonRequest {
            always_instances: true,
        }
    }
}

impl<T: Serialize> RequestBuilder<T> for JsonRequest {
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        let encoded = match items {
            [one] if !self.always_instances => serde_json::to_vec(one),
            _ => {
                #[derive(Serialize)]
                struct Instances<'a, T> {
                    instances: &'a [&'a T],
                }
                serde_json::to_vec(&Instances { instances: items })
            }
        };
        encoded.map(Bytes::from).map_err(|e| {
            ClassifyError::permanent(format!(
                "could not encode the item as JSON for the SageMaker request: {e}; \
                 check the item's Serialize impl (maps need string keys)"
            ))
            .with_source(e)
        })
    }
}

/// A CSV request body: one line per item, one cell per chosen field, no
/// header line (what SageMaker's CSV models, XGBoost and Linear Learner
/// among them, expect).
///
/// The item is serialised to JSON first and each field is looked up by a
/// dotted path (`"user.followers_count"`). Strings are written as they are
/// (quoted when they hold a comma, a quote or a line break), numbers as
/// text, booleans as `1` and `0`, and a null or missing field as an empty
/// cell. A field that is an object or an array is an error: choose a field
/// inside it.
///
/// ```
/// use streamsift::sagemaker::{CsvRequest, RequestBuilder};
/// let csv = CsvRequest::new(["text", "user.followers", "verified"]);
/// let a = serde_json::json!({"text": "hi, there", "user": {"followers": 12}, "verified": true});
/// let b = serde_json::json!({"text": "yo", "user": {}});
/// let body = csv.build(&[&a, &b]).unwrap();
/// assert_eq!(&body[..], b"\"hi, there\",12,1\nyo,,\n");
/// ```
#[derive(Clone, Debug)]
pub struct CsvRequest {
    fields: Vec<String>,
}

impl CsvRequest {
    /// Writes `fields` (dotted paths into the item's JSON), in this order.
    pub fn new(fields: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CsvRequest {
            fields: fields.into_iter().map(Into::into).collect(),
        }
    }

    /// The fields, in column order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    fn cell(&self, item: &Value, field: &str) -> Result<String, ClassifyError> {
        let Some(at) = crate::util::json_path(item, field.split('.')) else {
            return Ok(String::new());
        };
        match at {
            Value::Null => Ok(String::new()),
            Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            Value::Array(_) | Value::Object(_) => Err(ClassifyError::permanent(format!(
                "CSV field {field:?} is {}, but a CSV cell must be a string, number or boolean; \
                 choose a field inside it (a dotted path such as \"{field}.name\") \
                 or use a custom request builder",
                crate::util::json_kind(at)
            ))),
        }
    }
}

impl<T: Serialize> RequestBuilder<T> for CsvRequest {
    fn build(&self, items: &[&T]) -> Result<Bytes, ClassifyError> {
        if self.fields.is_empty() {
            return Err(ClassifyError::permanent(
                "CsvRequest has no fields: name the item fields to send, in the order the model was trained on",
            ));
        }
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        for item in items {
            let value = serde_json::to_value(item).map_err(|e| {
                ClassifyError::permanent(format!(
                    "could not encode the item for the CSV request: {e}"
                ))
                .with_source(e)
            })?;
            let row = self
                .fields
                .iter()
                .map(|f| self.cell(&value, f))
                .collect::<Result<Vec<_>, _>>()?;
            out.write_record(&row).map_err(|e| {
                ClassifyError::permanent(format!("could not write a CSV line: {e}")).with_source(e)
            })?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ClassifyError::permanent(format!("could not finish the CSV body: {e}")))?;
        Ok(Bytes::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_request_single_batch_and_always_instances() {
        let a = json!({"text": "a"});
        let b = json!({"text": "b"});
        let one = RequestBuilder::<Value>::build(&JsonRequest::new(), &[&a]).unwrap();
        assert_eq!(&one[..], br#"{"text":"a"}"#);
        let two = RequestBuilder::<Value>::build(&JsonRequest::new(), &[&a, &b]).unwrap();
        assert_eq!(&two[..], br#"{"instances":[{"text":"a"},{"text":"b"}]}"#);
        let wrapped =
            RequestBuilder::<Value>::build(&JsonRequest::always_instances(), &[&a]).unwrap();
        assert_eq!(&wrapped[..], br#"{"instances":[{"text":"a"}]}"#);
    }

    #[test]
    fn json_request_error_for_unserialisable_items() {
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), "tuple keys are not JSON");
        let err = JsonRequest::new().build(&[&bad]).unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("could not encode the item as JSON")
        );
    }

    #[test]
    fn csv_request_quotes_flattens_and_refuses_nested_values() {
        let csv = CsvRequest::new(["text", "user.followers", "score", "flag", "missing"]);
        let a = json!({"text": "say \"hi\"\nnow", "user": {"followers": 3}, "score": 0.5, "flag": false, "missing": null});
        let body = csv.build(&[&a]).unwrap();
        assert_eq!(&body[..], b"\"say \"\"hi\"\"\nnow\",3,0.5,0,\n");
        let nested = json!({"text": "x", "user": {"followers": [1, 2]}});
        let err = csv.build(&[&nested]).unwrap_err().to_string();
        assert!(err.contains("\"user.followers\" is an array"), "{err}");
        let none = CsvRequest::new(Vec::<String>::new());
        assert!(
            none.build(&[&a])
                .unwrap_err()
                .to_string()
                .contains("no fields")
        );
    }
}
