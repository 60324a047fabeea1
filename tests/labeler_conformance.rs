//! The Labeler conformance suite (`streamsift::testing::labeler`) against
//! `SimulatedCrowd`, with the `mturk` feature against `MturkLabeler` over
//! a scripted HTTP layer (`LocalWebLabeler`: tests/label_ui.rs;
//! `ActiveLearner`: tests/active_learning.rs), and against deliberately
//! broken labelers, to show that each rule can fail and names itself.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use streamsift::fakes::{SimulatedCrowd, Worker};
use streamsift::testing::labeler::{LabelerHarness, conformance as labeler_conformance};
use streamsift::{Label, LabelError, LabelResult, LabelTask, Labeler, TaskId, Vote};

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

    use super::common::mturk_server::{MturkServer, answer_xml};
    use super::{LABELS, truth, tweets};
    use streamsift::TaskId;
    use streamsift::mturk::{MturkLabeler, QuestionTemplate};
    use streamsift::testing::labeler::{LabelerHarness, conformance as labeler_conformance};

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

// ------------------------------------------------------- broken labelers --

/// How a [`Toy`] labeler breaks the contract.
#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// A resubmitted item gets a new task (people are paid twice).
    NewTaskOnResubmit,
    /// `collect` returns every result each time, not only new ones.
    CollectsAgain,
    /// Results carry no votes.
    NoVotes,
}

/// Answers every task at once when told to; labels by [`truth`].
struct Toy {
    bug: Bug,
    state: Mutex<ToyState>,
}

#[derive(Default)]
struct ToyState {
    tasks: Vec<(String, TaskId, &'static str)>,
    answered: usize,
    collected: usize,
}

#[async_trait::async_trait]
impl Labeler<String> for Toy {
    async fn submit(&self, tasks: &[LabelTask<'_, String>]) -> Result<Vec<TaskId>, LabelError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids = Vec::new();
        for t in tasks {
            let existing = s
                .tasks
                .iter()
                .find(|(id, _, _)| id == t.item_id)
                .map(|x| x.1.clone());
            let id = match existing {
                Some(id) if self.bug != Bug::NewTaskOnResubmit => id,
                _ => {
                    let id = TaskId(format!("task-{}", s.tasks.len()));
                    s.tasks
                        .push((t.item_id.to_string(), id.clone(), truth(t.item)));
                    id
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }

    async fn collect(&self) -> Result<Vec<LabelResult>, LabelError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let from = if self.bug == Bug::CollectsAgain {
            0
        } else {
            s.collected
        };
        let out = s.tasks[from..s.answered]
            .iter()
            .map(|(item, task, label)| LabelResult {
                task: task.clone(),
                item_id: item.clone(),
                label: Label::from(*label),
                agreement: 1.0,
                votes: if self.bug == Bug::NoVotes {
                    Vec::new()
                } else {
                    vec![Vote {
                        worker: "w".to_string(),
                        label: Label::from(*label),
                    }]
                },
            })
            .collect();
        s.collected = s.answered;
        Ok(out)
    }
}

struct ToyHarness(Bug);

impl LabelerHarness<String> for ToyHarness {
    type Labeler = Toy;

    async fn build(&mut self) -> Toy {
        Toy {
            bug: self.0,
            state: Mutex::new(ToyState::default()),
        }
    }

    async fn answer_all(&mut self, labeler: &Toy, _: &HashMap<String, TaskId>) {
        let mut s = labeler.state.lock().unwrap_or_else(|e| e.into_inner());
        s.answered = s.tasks.len();
    }
}

#[tokio::test]
async fn a_correct_toy_labeler_conforms() {
    let results = labeler_conformance(&mut ToyHarness(Bug::None), &tweets(), &LABELS).await;
    assert_eq!(results.len(), 5);
}

#[tokio::test]
#[should_panic(expected = "labeler conformance: rule \"resubmit-same-task\" broken")]
async fn a_labeler_that_makes_a_new_task_on_resubmit_is_caught() {
    labeler_conformance(&mut ToyHarness(Bug::NewTaskOnResubmit), &tweets(), &LABELS).await;
}

#[tokio::test]
#[should_panic(expected = "labeler conformance: rule \"collect-once\" broken")]
async fn a_labeler_that_returns_results_again_is_caught() {
    labeler_conformance(&mut ToyHarness(Bug::CollectsAgain), &tweets(), &LABELS).await;
}

#[tokio::test]
#[should_panic(expected = "labeler conformance: rule \"result-shape\" broken")]
async fn a_labeler_whose_results_have_no_votes_is_caught() {
    labeler_conformance(&mut ToyHarness(Bug::NoVotes), &tweets(), &LABELS).await;
}
