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
