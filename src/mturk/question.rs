//! The HTMLQuestion a worker sees: one item's text and one radio button
//! per category, in a form that posts to MTurk's `externalSubmit`.
//!
//! Pure: no SDK types, so it is tested (and can be fuzzed) on its own.

use crate::aggregate::ORIGINAL_CATEGORIES;

use super::Endpoint;

/// MTurk's limit on the Question parameter, in bytes.
pub const MAX_QUESTION_BYTES: usize = 65_535;

/// The HTMLQuestion schema's namespace.
pub const HTML_QUESTION_NAMESPACE: &str =
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd";

/// Why a question could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuestionError {
    /// The question XML is over MTurk's 64 KB limit.
    #[error(
        "the HTMLQuestion is {size} bytes, over MTurk's limit of {MAX_QUESTION_BYTES}: \
         shorten the item text or the prompt"
    )]
    TooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// The template has no category to choose from.
    #[error("the question has no categories: give at least one (value, text) pair")]
    NoCategories,
    /// A category value is empty or not a plain identifier.
    #[error(
        "category value {value:?} is not usable as a form value: use letters, digits, '_' \
         or '-' (the text shown to workers can be anything)"
    )]
    BadCategory {
        /// The value.
        value: String,
    },
}

/// The question shown to workers. The default is the original's: "What
/// category would the following tweet belong in?" with Request, Question,
/// Problem Report, Angry, None of the above (values
/// [`ORIGINAL_CATEGORIES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuestionTemplate {
    /// The question above the item (plain text; escaped).
    pub prompt: String,
    /// (form value, text shown) per category, in display order. The form
    /// value is the label that comes back in the answers.
    pub categories: Vec<(String, String)>,
    /// The form field's name: the QuestionIdentifier in the answers.
    pub field: String,
    /// The frame height in pixels MTurk gives the page (0: automatic).
    pub frame_height: u32,
}

impl Default for QuestionTemplate {
    fn default() -> Self {
        let shown = [
            "Request",
            "Question",
            "Problem Report",
            "Angry",
            "None of the above",
        ];
        QuestionTemplate {
            prompt: "What category would the following tweet belong in?".to_owned(),
            categories: ORIGINAL_CATEGORIES
                .iter()
                .zip(shown)
                .map(|(v, t)| ((*v).to_owned(), t.to_owned()))
                .collect(),
            field: "category".to_owned(),
            frame_height: 0,
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values:
/// `& < > " '` become character references, and characters XML 1.0 does
/// not allow (most C0 controls, U+FFFE, U+FFFF) become U+FFFD, since the
/// page travels inside an XML document.
///
/// ```
/// use streamsift::mturk::escape_html;
/// assert_eq!(escape_html("<b>\"x\" & 'y'</b>"), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
/// ```
pub fn escape_html(text: &str) -> String {
    let xml_invalid = |c: char| {
        !matches!(c, '\t' | '\n' | '\r')
            && ((c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
    };
    if text.contains(xml_invalid) {
        let valid: String = text
            .chars()
            .map(|c| if xml_invalid(c) { '\u{FFFD}' } else { c })
            .collect();
        crate::local::escape_html(&valid)
    } else {
        crate::local::escape_html(text)
    }
}

fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl QuestionTemplate {
    /// The HTML page for one item, posting to `endpoint`'s
    /// `externalSubmit`. Every piece of text (the item, the prompt, the
    /// categories) is escaped.
    pub fn html(&self, item_text: &str, endpoint: Endpoint) -> Result<String, QuestionError> {
        if self.categories.is_empty() {
            return Err(QuestionError::NoCategories);
        }
        for (value, _) in &self.categories {
            if !is_identifier(value) {
                return Err(QuestionError::BadCategory {
                    value: value.clone(),
                });
            }
        }
        if !is_identifier(&self.field) {
            return Err(QuestionError::BadCategory {
                value: self.field.clone(),
            });
        }
        let mut html = String::with_capacity(2048 + item_text.len());
        html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
        html.push_str("<title>Categorize</title></head><body>\n");
        html.push_str(&format!(
            "<form name=\"mturk_form\" method=\"post\" id=\"mturk_form\" action=\"{}\">\n",
            escape_html(endpoint.external_submit_url())
        ));
        html.push_str(
            "<input type=\"hidden\" value=\"\" name=\"assignmentId\" id=\"assignmentId\">\n",
        );
        html.push_str(&format!("<p>{}</p>\n", escape_html(&self.prompt)));
        html.push_str(&format!(
            "<blockquote id=\"item\">{}</blockquote>\n",
            escape_html(item_text)
        ));
        let field = escape_html(&self.field);
        for (i, (value, shown)) in self.categories.iter().enumerate() {
            html.push_str(&format!(
                "<label><input type=\"radio\" name=\"{field}\" value=\"{}\" id=\"c{i}\" required> \
                 {}</label><br>\n",
                escape_html(value),
                escape_html(shown)
            ));
        }
        html.push_str("<input type=\"submit\" id=\"submitButton\" value=\"Submit\">\n</form>\n");
        // Our own script (no item text in it): copy the assignmentId from
        // the URL into the form, and keep the preview from submitting.
        html.push_str(
            "<script>\n(function () {\n  var p = new URLSearchParams(window.location.search);\n  \
             var id = p.get('assignmentId') || 'ASSIGNMENT_ID_NOT_AVAILABLE';\n  \
             document.getElementById('assignmentId').value = id;\n  \
             if (id === 'ASSIGNMENT_ID_NOT_AVAILABLE') {\n    \
             document.getElementById('submitButton').disabled = true;\n  }\n})();\n</script>\n",
        );
        html.push_str("</body></html>\n");
        // Escaping leaves no '>' from the text, so no "]]>" can end the
        // CDATA section early; check anyway rather than trust it.
        let body = html.replace("]]>", "]]&gt;");
        let xml = format!(
            "<HTMLQuestion xmlns=\"{HTML_QUESTION_NAMESPACE}\"><HTMLContent><![CDATA[\n{body}]]>\
             </HTMLContent><FrameHeight>{}</FrameHeight></HTMLQuestion>",
            self.frame_height
        );
        if xml.len() > MAX_QUESTION_BYTES {
            return Err(QuestionError::TooLarge { size: xml.len() });
        }
        Ok(xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "<script>alert(1)</script>\" onmouseover=\"x()\" ']]><img src=x onerror=y> & \u{0}";

    #[test]
    fn hostile_text_is_escaped_and_cannot_close_the_cdata() {
        let xml = QuestionTemplate::default()
            .html(HOSTILE, Endpoint::Sandbox)
            .unwrap();
        assert!(!xml.contains("<script>alert"), "{xml}");
        assert!(!xml.contains("<img"), "{xml}");
        assert!(!xml.contains("\" onmouseover"), "{xml}");
        assert!(!xml.contains('\u{0}'));
        // Exactly one CDATA end: ours.
        assert_eq!(xml.matches("]]>").count(), 1, "{xml}");
        assert!(xml.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;x()&quot; \
             &#39;]]&gt;&lt;img src=x onerror=y&gt; &amp; \u{FFFD}"
        ));
    }

    #[test]
    fn the_form_posts_to_the_endpoints_external_submit() {
        let t = QuestionTemplate::default();
        let sandbox = t.html("hi", Endpoint::Sandbox).unwrap();
        let prod = t.html("hi", Endpoint::Production).unwrap();
        assert!(
            sandbox.contains("action=\"https://workersandbox.mturk.com/mturk/externalSubmit\"")
        );
        assert!(prod.contains("action=\"https://www.mturk.com/mturk/externalSubmit\""));
        assert!(sandbox.contains("name=\"assignmentId\""));
        for value in ORIGINAL_CATEGORIES {
            assert!(sandbox.contains(&format!("value=\"{value}\"")), "{value}");
        }
        assert!(sandbox.contains("None of the above"));
        assert!(sandbox.starts_with("<HTMLQuestion xmlns="));
    }

    #[test]
    fn bad_templates_and_oversized_items_are_typed_errors() {
        let mut t = QuestionTemplate::default();
        assert_eq!(
            t.html(&"x".repeat(70_000), Endpoint::Sandbox).unwrap_err(),
            QuestionError::TooLarge {
                size: t.html("", Endpoint::Sandbox).unwrap().len() + 70_000
            }
        );
        t.categories.push(("bad value\"".into(), "Bad".into()));
        assert!(matches!(
            t.html("x", Endpoint::Sandbox),
            Err(QuestionError::BadCategory { .. })
        ));
        t.categories.clear();
        assert_eq!(
            t.html("x", Endpoint::Sandbox),
            Err(QuestionError::NoCategories)
        );
    }
}
