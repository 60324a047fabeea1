//! The Labeler conformance suite against `SimulatedCrowd` (and, with the
//! `mturk` feature, `MturkLabeler` over a scripted HTTP layer: see
//! tests/mturk.rs).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::labeler_conformance::{LabelerHarness, labeler_conformance};
use streamsift::TaskId;
use streamsift::fakes::{SimulatedCrowd, Worker};

const LABELS: [&str; 3] = ["problem_report", "question", "none"];

fn truth(text: &str) -> &'static str {
    if text.contains("down") {
        "problem_report"
    } else if text.contains('?') {
        "question"
    } else {
        "none"
    }
}

/// People answer a simulated crowd by time passing.
struct CrowdHarness {
    delay: Duration,
}

impl LabelerHarness<String> for CrowdHarness {
    type Labeler = SimulatedCrowd<String>;

    async fn build(&mut self) -> SimulatedCrowd<String> {
        SimulatedCrowd::new(LABELS, |t: &String| truth(t))
            .workers([
                Worker::accurate("a", 0.9),
                Worker::accurate("b", 0.8),
                Worker::spammer("c"),
            ])
            .completion_delay(self.delay)
            .completion_jitter(self.delay)
            .seed(7)
    }

    async fn answer_all(&mut self, _: &SimulatedCrowd<String>, _: &HashMap<String, TaskId>) {
        tokio::time::advance(self.delay * 2).await;
    }
}

fn tweets() -> Vec<(String, String)> {
    [
        "the api is down again",
        "how do I rotate keys?",
        "nice weather",
        "console down for everyone",
        "thanks!",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (format!("tweet-{i}"), t.to_string()))
    .collect()
}

#[tokio::test(start_paused = true)]
async fn simulated_crowd_conforms() {
    let mut harness = CrowdHarness {
        delay: Duration::from_secs(3600),
    };
    let results = labeler_conformance(&mut harness, &tweets(), &LABELS).await;
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r.votes.len() == 3));
}

/// People answer MTurk HITs through the scripted HTTP layer: each HIT gets
/// its assignments, with a label read from the item text in the Question.
#[cfg(feature = "mturk")]
mod mturk {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::common::labeler_conformance::{LabelerHarness, labeler_conformance};
    use super::common::mturk_server::{MturkServer, answer_xml};
    use super::{LABELS, truth, tweets};
    use streamsift::TaskId;
    use streamsift::mturk::{MturkLabeler, QuestionTemplate};

    struct MturkHarness {
        server: MturkServer,
    }

    impl LabelerHarness<String> for MturkHarness {
        type Labeler = MturkLabeler<String>;

        async fn build(&mut self) -> MturkLabeler<String> {
            let question = QuestionTemplate {
                categories: LABELS
                    .iter()
                    .map(|l| (l.to_string(), l.to_string()))
                    .collect(),
                ..QuestionTemplate::default()
            };
            MturkLabeler::builder_from_client(
                aws_sdk_mturk::Client::from_conf(self.server.config().build()),
                |t: &String| t.clone(),
            )
            .question(question)
            .retries(2, Duration::from_millis(1))
            .build()
        }

        async fn answer_all(&mut self, _: &MturkLabeler<String>, _: &HashMap<String, TaskId>) {
            self.server.answer_all(|hit, n| {
                // The worker reads the (escaped) tweet in the question.
                let shown = hit
                    .question
                    .split_once("<blockquote id=\"item\">")
                    .and_then(|(_, rest)| rest.split_once("</blockquote>"))
                    .map_or("", |(text, _)| text);
                let label = if n == 2 { "none" } else { truth(shown) };
                answer_xml("category", label)
            });
        }
    }

    #[tokio::test]
    async fn mturk_labeler_conforms() {
        let mut harness = MturkHarness {
            server: MturkServer::new(),
        };
        let results = labeler_conformance(&mut harness, &tweets(), &LABELS).await;
        assert_eq!(results.len(), 5);
        assert_eq!(harness.server.hits().len(), 5, "one HIT per item, no more");
        let by_id: HashMap<_, _> = results.iter().map(|r| (r.item_id.as_str(), r)).collect();
        assert_eq!(by_id["tweet-0"].label, "problem_report");
        assert_eq!(by_id["tweet-1"].label, "question");
        assert_eq!(by_id["tweet-2"].label, "none");
        assert!(results.iter().all(|r| r.votes.len() == 3));
    }
}
