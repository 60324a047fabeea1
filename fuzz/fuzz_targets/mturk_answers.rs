//! MTurk QuestionFormAnswers XML parsing on arbitrary text: `parse_answers`
//! must return answers or an `AnswersError`, never panic, and a label
//! looked up in what it returns is trimmed and not blank.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamsift::mturk::{answer_for, parse_answers};

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    match parse_answers(xml) {
        Ok(answers) => {
            for a in &answers {
                // A label, when there is one, is trimmed and not blank.
                if let Some(label) = answer_for(&answers, &a.question) {
                    assert!(!label.is_empty() && label.trim() == label, "{label:?}");
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
