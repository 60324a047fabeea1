//! Observations: an item as Amazon ML's `Record` ([`flatten_json`], [`json_record`]).

use std::collections::HashMap;
use std::io;

use serde::Serialize;
use serde_json::Value;

#[cfg(doc)]
use super::*;
use crate::error::ClassifyError;

/// Flattens a JSON object into an Amazon ML `Record` (a map of strings).
///
/// The rule:
/// - nested object keys are joined with `.`: `{"user":{"id":7}}` gives
///   `user.id = "7"`;
/// - array elements are keyed by their index: `{"tags":["a","b"]}` gives
///   `tags.0 = "a"`, `tags.1 = "b"` (nested arrays and objects continue the
///   path: `a.0.b`);
/// - strings are kept as they are, numbers are written as JSON writes them
///   (`42`, `0.5`, `1e300`), booleans as `true` / `false`;
/// - `null`, empty objects and empty arrays are left out, so a missing value
///   is a missing key, never the text `"None"` or `"null"`.
///
/// Keys that already contain `.` are kept as they are, so `{"a.b":1}` and
/// `{"a":{"b":1}}` both give `a.b`; when both occur, the later one in the
/// object wins.
///
/// Fails when `value` is not an object (a bare string or number has no
/// attribute name to put it under): map such items with
/// [`record_fn`](AmazonMlClassifierBuilder::record_fn).
///
/// ```
/// use streamsift::machine_learning::flatten_json;
/// let v = serde_json::json!({"text": "down again", "user": {"followers": 12, "verified": false,
///     "location": null}, "tags": ["outage", "help"]});
/// let r = flatten_json(&v).unwrap();
/// assert_eq!(r["text"], "down again");
/// assert_eq!(r["user.followers"], "12");
/// assert_eq!(r["user.verified"], "false");
/// assert_eq!(r["tags.1"], "help");
/// assert!(!r.contains_key("user.location"));
/// assert_eq!(r.len(), 5);
/// ```
pub fn flatten_json(value: &Value) -> Result<HashMap<String, String>, ClassifyError> {
    let Value::Object(map) = value else {
        return Err(ClassifyError::permanent(format!(
            "Amazon ML record mapping: expected the item to serialize to a JSON object, found {}; \
             give the classifier a record_fn that names each attribute",
            crate::util::json_kind(value)
        )));
    };
    let mut out = HashMap::new();
    let mut path = String::new();
    for (key, v) in map {
        path.clear();
        path.push_str(key);
        flatten_into(v, &mut path, &mut out);
    }
    Ok(out)
}

fn flatten_into(value: &Value, path: &mut String, out: &mut HashMap<String, String>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            out.insert(path.clone(), b.to_string());
        }
        Value::Number(n) => {
            out.insert(path.clone(), n.to_string());
        }
        Value::String(s) => {
            out.insert(path.clone(), s.clone());
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('.');
                path.push_str(&i.to_string());
                flatten_into(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                flatten_into(item, path, out);
                path.truncate(len);
            }
        }
    }
}

/// The default record mapping: `item` serialized to JSON, then
/// [`flatten_json`]. Fails (permanently) when the item does not serialize
/// to a JSON object.
pub fn json_record<T: Serialize + ?Sized>(
    item: &T,
) -> Result<HashMap<String, String>, ClassifyError> {
    let value = serde_json::to_value(item).map_err(|e| {
        ClassifyError::permanent(format!(
            "Amazon ML record mapping: the item could not be serialized to JSON ({e}); \
             give the classifier a record_fn"
        ))
        .with_source(e)
    })?;
    flatten_json(&value)
}

/// The size of `record` as the JSON object `Predict` sends, in bytes,
/// counted without building the text.
pub fn observation_size(record: &HashMap<String, String>) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of strings to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, record);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattening_follows_the_documented_rule() {
        let v = json!({
            "text": "help",
            "n": 3,
            "x": 0.25,
            "ok": true,
            "gone": null,
            "user": {"id": 7, "loc": null, "deep": {"k": "v"}},
            "tags": ["a", null, {"b": 1}, [false]],
            "empty_obj": {},
            "empty_arr": [],
            "blank": ""
        });
        let r = flatten_json(&v).unwrap();
        let mut got: Vec<(&str, &str)> = r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("blank", ""),
                ("n", "3"),
                ("ok", "true"),
                ("tags.0", "a"),
                ("tags.2.b", "1"),
                ("tags.3.0", "false"),
                ("text", "help"),
                ("user.deep.k", "v"),
                ("user.id", "7"),
                ("x", "0.25"),
            ]
        );
        assert!(r.values().all(|v| v != "None" && v != "null"));
    }

    #[test]
    fn flattening_rejects_non_objects_and_serializes_options_as_absent() {
        let err = flatten_json(&json!("just text")).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("found a string"), "{err}");
        assert!(err.to_string().contains("record_fn"), "{err}");

        #[derive(Serialize)]
        struct Tweet {
            text: String,
            reply_to: Option<u64>,
            lang: Option<String>,
        }
        let r = json_record(&Tweet {
            text: "x".into(),
            reply_to: None,
            lang: Some("en".into()),
        })
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r["lang"], "en");
        assert!(!r.contains_key("reply_to"));
    }

    #[test]
    fn observation_size_is_the_json_length() {
        let mut r = HashMap::new();
        r.insert("a".to_string(), "x\"y".to_string());
        assert_eq!(observation_size(&r), serde_json::to_vec(&r).unwrap().len());
        assert_eq!(observation_size(&HashMap::new()), 2);
    }
}
