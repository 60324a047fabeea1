//! Parsing an assignment's `QuestionFormAnswers` XML.
//!
//! Pure: no SDK types, only a string in and typed values or a typed error
//! out, so it can be fuzzed. The answer text comes from workers' browsers:
//! it is data, never trusted.
//!
//! ```
//! use streamsift::mturk::{parse_answers, AnswerValue};
//! let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
//! <QuestionFormAnswers xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd">
//!   <Answer><QuestionIdentifier>category</QuestionIdentifier><FreeText>angry</FreeText></Answer>
//! </QuestionFormAnswers>"#;
//! let answers = parse_answers(xml).unwrap();
//! assert_eq!(answers[0].question, "category");
//! assert_eq!(answers[0].value, AnswerValue::FreeText("angry".into()));
//! ```

use quick_xml::Reader;
use quick_xml::events::Event;

/// The largest answers document we parse, in bytes.
pub const MAX_ANSWERS_BYTES: usize = 1 << 20;

/// One answered question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormAnswer {
    /// The QuestionIdentifier (for an HTMLQuestion: the form field's name).
    pub question: String,
    /// What the worker answered.
    pub value: AnswerValue,
}

/// The value of one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerValue {
    /// A FreeText answer (what HTMLQuestion forms send).
    FreeText(String),
    /// SelectionIdentifiers (QuestionForm selections), in order.
    Selections(Vec<String>),
    /// An OtherSelectionText.
    OtherSelection(String),
    /// An uploaded file's key.
    UploadedFile(String),
    /// An Answer element with no value.
    Empty,
}

impl AnswerValue {
    /// The answer as one label: the free text or the single selection,
    /// trimmed; `None` when blank or not a single value.
    pub fn as_label(&self) -> Option<&str> {
        let text = match self {
            AnswerValue::FreeText(t) | AnswerValue::OtherSelection(t) => t.as_str(),
            AnswerValue::Selections(s) if s.len() == 1 => s[0].as_str(),
            _ => return None,
        };
        let text = text.trim();
        (!text.is_empty()).then_some(text)
    }
}

/// Why an answers document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswersError {
    /// Not well-formed XML.
    #[error(
        "the assignment's Answer is not well-formed XML at byte {position}: {reason}; \
         expected a QuestionFormAnswers document"
    )]
    Malformed {
        /// Where the parser stopped.
        position: u64,
        /// What the parser said.
        reason: String,
    },
    /// Well-formed, but not a QuestionFormAnswers document.
    #[error("expected a QuestionFormAnswers document, found {found}")]
    WrongShape {
        /// What was found instead.
        found: String,
    },
    /// Too large to be an answer to our question.
    #[error("the answers document is {size} bytes, over the {MAX_ANSWERS_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    Question,
    FreeText,
    Selection,
    Other,
    Upload,
}

/// Parses a `QuestionFormAnswers` document into its answers, in order.
pub fn parse_answers(xml: &str) -> Result<Vec<FormAnswer>, AnswersError> {
    if xml.len() > MAX_ANSWERS_BYTES {
        return Err(AnswersError::TooLarge { size: xml.len() });
    }
    let mut reader = Reader::from_str(xml);
    let mut answers = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut current: Option<(Option<String>, AnswerValue)> = None;
    let mut field = Field::None;
    let mut text = String::new();
    let malformed = |reader: &Reader<&[u8]>, reason: String| AnswersError::Malformed {
        position: reader.buffer_position(),
        reason,
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(&reader, e.to_string()))?;
        match event {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_owned();
                depth += 1;
                match (depth, name.as_str()) {
                    (1, "QuestionFormAnswers") => saw_root = true,
                    (1, other) => {
                        return Err(AnswersError::WrongShape {
                            found: format!("a <{other}> root element"),
                        });
                    }
                    (2, "Answer") => current = Some((None, AnswerValue::Empty)),
                    (3, "QuestionIdentifier") => field = Field::Question,
                    (3, "FreeText") => field = Field::FreeText,
                    (3, "SelectionIdentifier") => field = Field::Selection,
                    (3, "OtherSelectionText") => field = Field::Other,
                    (3, "UploadedFileKey") => field = Field::Upload,
                    _ => field = Field::None,
                }
                text.clear();
            }
            Event::Empty(empty) => {
                let name = empty.local_name().as_ref().to_owned();
                if depth == 0 {
                    if name == "QuestionFormAnswers" {
                        saw_root = true;
                    } else {
                        return Err(AnswersError::WrongShape {
                            found: format!("a <{name}/> root element"),
                        });
                    }
                } else if depth == 2
                    && name == "FreeText"
                    && let Some((_, value)) = &mut current
                {
                    *value = AnswerValue::FreeText(String::new());
                }
            }
            // References come as their own events: this is plain text.
            Event::Text(t) if field != Field::None => text.push_str(&t),
            Event::GeneralRef(r) if field != Field::None => {
                let name: &str = &r;
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match quick_xml::escape::resolve_xml_entity(name) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(malformed(&reader, format!("unknown entity &{name};")));
                        }
                    },
                    Err(e) => return Err(malformed(&reader, e.to_string())),
                };
                text.push_str(&resolved);
            }
            Event::CData(c) if field != Field::None => text.push_str(&c),
            Event::End(_) => {
                if depth == 3
                    && let Some((question, value)) = &mut current
                {
                    let t = std::mem::take(&mut text);
                    match field {
                        Field::Question => *question = Some(t),
                        Field::FreeText => *value = AnswerValue::FreeText(t),
                        Field::Selection => match value {
                            AnswerValue::Selections(s) => s.push(t),
                            _ => *value = AnswerValue::Selections(vec![t]),
                        },
                        Field::Other => *value = AnswerValue::OtherSelection(t),
                        Field::Upload => *value = AnswerValue::UploadedFile(t),
                        Field::None => {}
                    }
                    field = Field::None;
                }
                if depth == 2
                    && let Some((question, value)) = current.take()
                {
                    let Some(question) = question else {
                        return Err(AnswersError::WrongShape {
                            found: "an <Answer> without a <QuestionIdentifier>".to_owned(),
                        });
                    };
                    answers.push(FormAnswer { question, value });
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(AnswersError::Malformed {
            position: reader.buffer_position(),
            reason: "the document ends inside an element".to_owned(),
        });
    }
    if !saw_root {
        return Err(AnswersError::WrongShape {
            found: "no <QuestionFormAnswers> element".to_owned(),
        });
    }
    Ok(answers)
}

/// The label a worker gave to `field` in an answers document: `Ok(None)`
/// when the field is missing or blank (not a vote).
pub fn answer_for<'a>(answers: &'a [FormAnswer], field: &str) -> Option<&'a str> {
    answers
        .iter()
        .find(|a| a.question == field)
        .and_then(|a| a.value.as_label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(inner: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\
             <QuestionFormAnswers xmlns=\"http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd\">{inner}</QuestionFormAnswers>"
        )
    }

    #[test]
    fn free_text_selections_and_entities() {
        let xml = doc(
            "<Answer><QuestionIdentifier>category</QuestionIdentifier><FreeText>problem_report</FreeText></Answer>\
             <Answer><QuestionIdentifier>note</QuestionIdentifier><FreeText>a &lt;b&gt; &amp; &#233;<![CDATA[ <raw> ]]></FreeText></Answer>\
             <Answer><QuestionIdentifier>multi</QuestionIdentifier><SelectionIdentifier>a</SelectionIdentifier><SelectionIdentifier>b</SelectionIdentifier></Answer>\
             <Answer><QuestionIdentifier>blank</QuestionIdentifier><FreeText>  </FreeText></Answer>\
             <Answer><QuestionIdentifier>empty</QuestionIdentifier></Answer>",
        );
        let answers = parse_answers(&xml).unwrap();
        assert_eq!(answers.len(), 5);
        assert_eq!(answer_for(&answers, "category"), Some("problem_report"));
        assert_eq!(
            answers[1].value,
            AnswerValue::FreeText("a <b> & é <raw> ".into())
        );
        assert_eq!(
            answers[2].value,
            AnswerValue::Selections(vec!["a".into(), "b".into()])
        );
        assert_eq!(answer_for(&answers, "multi"), None);
        assert_eq!(answer_for(&answers, "blank"), None, "blank is not a vote");
        assert_eq!(answers[4].value, AnswerValue::Empty);
        assert_eq!(answer_for(&answers, "missing"), None);
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        let cases = [
            "",
            "not xml at all",
            "<QuestionFormAnswers><Answer>",
            "<QuestionFormAnswers><Answer></FreeText></QuestionFormAnswers>",
            "<Other/>",
            "<Other><Answer/></Other>",
            "<QuestionFormAnswers><Answer><FreeText>x</FreeText></Answer></QuestionFormAnswers>",
            "<QuestionFormAnswers><Answer><QuestionIdentifier>q</QuestionIdentifier><FreeText>&bogus;</FreeText></Answer></QuestionFormAnswers>",
            "<QuestionFormAnswers><Answer><QuestionIdentifier>q</QuestionIdentifier><FreeText>&#xFFFFFFFF;</FreeText></Answer></QuestionFormAnswers>",
        ];
        for case in cases {
            let err = parse_answers(case).expect_err(case);
            assert!(!err.to_string().is_empty(), "{case}");
        }
        assert!(matches!(
            parse_answers(&"x".repeat(MAX_ANSWERS_BYTES + 1)),
            Err(AnswersError::TooLarge { .. })
        ));
        assert_eq!(parse_answers("<QuestionFormAnswers/>"), Ok(vec![]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and some mutations of a
        // valid document.
        let valid = doc(
            "<Answer><QuestionIdentifier>category</QuestionIdentifier><FreeText>a&amp;b</FreeText></Answer>",
        );
        for end in 0..=valid.len() {
            if valid.is_char_boundary(end) {
                let _ = parse_answers(&valid[..end]);
            }
        }
        let mut state = 7u64;
        for _ in 0..2000 {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..3 {
                state = crate::util::splitmix64(state);
                let at = (state % bytes.len() as u64) as usize;
                bytes[at] = b"<>&;/\"x]!?"[(state >> 32) as usize % 10];
            }
            if let Ok(text) = String::from_utf8(bytes) {
                let _ = parse_answers(&text);
            }
        }
    }
}
