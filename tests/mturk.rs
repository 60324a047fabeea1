//! MturkLabeler at the HTTP layer: the real SDK builds and sends every
//! request to a scripted MTurk (tests/common/mturk_server.rs), which
//! records them.
#![cfg(feature = "mturk")]

mod common;

use std::time::Duration;

use common::mturk_server::{MturkServer, Reply, SECRET, answer_xml};
use streamsift::mturk::{
    BudgetError, Cents, HitSettings, MturkLabeler, MturkLabelerBuilder, QUALIFICATION_ADULT,
    QUALIFICATION_PERCENT_APPROVED,
};
use streamsift::{LabelError, LabelTask, Labeler};

const SANDBOX_HOST: &str = "mturk-requester-sandbox.us-east-1.amazonaws.com";
const PRODUCTION_HOST: &str = "mturk-requester.us-east-1.amazonaws.com";
const HOSTILE: &str = "<script>alert('pwned')</script>\"><img src=x onerror=alert(1)> ]]> & done";

fn builder(server: &MturkServer) -> MturkLabelerBuilder<String> {
    MturkLabeler::builder_from_client(
        aws_sdk_mturk::Client::from_conf(server.config().build()),
        |t: &String| t.clone(),
    )
    .retries(3, Duration::from_millis(100))
}

fn task<'a>(id: &'a str, item: &'a String) -> LabelTask<'a, String> {
    LabelTask {
        item_id: id,
        item,
        prediction: None,
        suggestion: None,
    }
}

fn budget_error(err: &LabelError) -> Option<&BudgetError> {
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<BudgetError>())
}

#[tokio::test]
async fn create_hit_request_contents_and_escaping() {
    let server = MturkServer::new();
    let labeler = builder(&server).build();
    let tweet = HOSTILE.to_string();
    let ids = labeler.submit(&[task("tweet-1", &tweet)]).await.unwrap();
    assert_eq!(ids.len(), 1);

    // The balance is checked first, then the HIT type, then the HIT.
    assert_eq!(
        server.ops(),
        ["GetAccountBalance", "CreateHITType", "CreateHITWithHITType"]
    );
    assert!(
        server.state().calls.iter().all(|c| c.host == SANDBOX_HOST),
        "sandbox by default"
    );
    let hit_type = &server.calls_of("CreateHITType")[0].body;
    assert_eq!(hit_type["Reward"], "0.05");
    assert_eq!(hit_type["AssignmentDurationInSeconds"], 600);
    assert_eq!(hit_type["AutoApprovalDelayInSeconds"], 3 * 24 * 3600);
    assert!(hit_type["Keywords"].as_str().unwrap().contains("tweet"));
    let quals = hit_type["QualificationRequirements"].as_array().unwrap();
    assert_eq!(quals.len(), 2);
    assert_eq!(
        quals[0]["QualificationTypeId"],
        QUALIFICATION_PERCENT_APPROVED
    );
    assert_eq!(quals[0]["Comparator"], "GreaterThanOrEqualTo");
    assert_eq!(quals[0]["IntegerValues"][0], 95);
    assert_eq!(quals[1]["QualificationTypeId"], QUALIFICATION_ADULT);
    assert_eq!(quals[1]["Comparator"], "EqualTo");
    assert_eq!(quals[1]["IntegerValues"][0], 1);

    let create = &server.calls_of("CreateHITWithHITType")[0].body;
    assert_eq!(create["HITTypeId"], "3HITTYPE0000000000000000000001");
    assert_eq!(create["MaxAssignments"], 3);
    assert_eq!(create["LifetimeInSeconds"], 3 * 24 * 3600);
    assert_eq!(create["RequesterAnnotation"], "tweet-1");
    let token = create["UniqueRequestToken"].as_str().unwrap();
    assert!(!token.is_empty() && token.len() <= 64);
    let question = create["Question"].as_str().unwrap();
    assert!(question.starts_with("<HTMLQuestion"));
    assert!(question.contains("action=\"https://workersandbox.mturk.com/mturk/externalSubmit\""));
    assert!(question.contains("name=\"assignmentId\""));
    // The hostile text appears only escaped.
    assert!(question.contains(
        "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x \
         onerror=alert(1)&gt; ]]&gt; &amp; done"
    ));
    assert!(!question.contains("<script>alert"));
    assert!(!question.contains("<img"));
    assert!(!question.contains("onerror=alert(1)>"));
    assert_eq!(question.matches("]]>").count(), 1, "only our CDATA end");
    assert_eq!(ids[0].0, server.hits()[0].id);
    assert_eq!(labeler.committed_spend().await, Cents(18));
}

#[tokio::test]
async fn production_only_when_asked() {
    let server = MturkServer::new();
    let labeler = builder(&server).production().build();
    let tweet = "hello".to_string();
    labeler.submit(&[task("t", &tweet)]).await.unwrap();
    assert!(
        server
            .state()
            .calls
            .iter()
            .all(|c| c.host == PRODUCTION_HOST)
    );
    let question = server.hits()[0].question.clone();
    assert!(question.contains("action=\"https://www.mturk.com/mturk/externalSubmit\""));
    assert!(!question.contains("workersandbox"));
}

#[tokio::test]
async fn collect_follows_pagination_and_parses_answers() {
    let server = MturkServer::new();
    let labeler = builder(&server)
        .settings(HitSettings {
            max_assignments: 5,
            ..HitSettings::default()
        })
        .page_size(2)
        .build();
    let tweet = "the console is down".to_string();
    let ids = labeler.submit(&[task("t1", &tweet)]).await.unwrap();
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "nobody answered yet"
    );
    server.answer_all(|_, n| match n {
        0 | 1 => answer_xml("category", "problem_report"),
        2 => answer_xml("category", "angry"),
        3 => answer_xml("category", "   "), // blank: not a vote
        _ => "<QuestionFormAnswers><Answer>".to_owned(), // malformed: not a vote
    });
    let results = labeler.collect().await.unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!((r.task.clone(), r.item_id.as_str()), (ids[0].clone(), "t1"));
    assert_eq!(r.label, "problem_report");
    assert_eq!(r.votes.len(), 3);
    assert!((r.agreement - 2.0 / 3.0).abs() < 1e-12);
    // Five assignments in pages of two: three calls, following NextToken.
    let pages = server.calls_of("ListAssignmentsForHIT");
    let last_three: Vec<_> = pages[pages.len() - 3..]
        .iter()
        .map(|c| (c.body["MaxResults"].clone(), c.body["NextToken"].clone()))
        .collect();
    assert_eq!(
        last_three,
        [
            (2.into(), serde_json::Value::Null),
            (2.into(), "page-2".into()),
            (2.into(), "page-4".into())
        ]
    );
    assert_eq!(
        pages[pages.len() - 1].body["AssignmentStatuses"],
        serde_json::json!(["Submitted", "Approved", "Rejected"])
    );
    // Every submitted assignment is approved; nothing comes back twice.
    assert_eq!(server.calls_of("ApproveAssignment").len(), 5);
    assert!(labeler.collect().await.unwrap().is_empty());
}

#[tokio::test]
async fn gold_items_reject_wrong_answers_with_a_reason() {
    let server = MturkServer::new();
    let labeler = builder(&server).gold("gold-1", "question").build();
    let tweet = "how do I reset my password?".to_string();
    labeler.submit(&[task("gold-1", &tweet)]).await.unwrap();
    server.answer_all(|_, n| answer_xml("category", if n == 1 { "none" } else { "question" }));
    let results = labeler.collect().await.unwrap();
    assert_eq!(results[0].votes.len(), 2);
    assert!(results[0].votes.iter().all(|v| v.worker != "WORKER1"));
    let rejects = server.calls_of("RejectAssignment");
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        rejects[0].body["AssignmentId"],
        format!("{}-A1", server.hits()[0].id)
    );
    let reason = rejects[0].body["RequesterFeedback"].as_str().unwrap();
    assert!(
        reason.contains("question") && reason.contains("none"),
        "{reason}"
    );
    assert_eq!(server.calls_of("ApproveAssignment").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retried_create_never_makes_a_second_hit() {
    let server = MturkServer::new();
    server.state().lose_next_create = true;
    let labeler = builder(&server).build();
    let tweet = "hi".to_string();
    let ids = labeler.submit(&[task("t1", &tweet)]).await.unwrap();
    let creates = server.calls_of("CreateHITWithHITType");
    assert_eq!(creates.len(), 2, "one retry after the lost response");
    assert_eq!(
        creates[0].body["UniqueRequestToken"],
        creates[1].body["UniqueRequestToken"]
    );
    assert_eq!(server.hits().len(), 1, "no second HIT");
    assert_eq!(ids[0].0, server.hits()[0].id, "the existing HIT is used");

    // A new labeler (a restart) submitting the same item: same token,
    // same HIT; here the message does not name the HIT, so it is found by
    // its annotation.
    server.state().name_hit_in_message = false;
    let again = builder(&server).build();
    let ids2 = again.submit(&[task("t1", &tweet)]).await.unwrap();
    assert_eq!(ids2, ids);
    assert_eq!(server.hits().len(), 1);
    assert_eq!(server.calls_of("ListHITs").len(), 1);
}

#[tokio::test]
async fn the_budget_guard_refuses_before_creating_anything() {
    // Three HITs of 3 × ($0.05 + $0.01 fee) = $0.54 > $0.30.
    let server = MturkServer::new();
    let labeler = builder(&server).max_spend(Cents(30)).build();
    let items: Vec<String> = (0..3).map(|i| format!("tweet {i}")).collect();
    let ids: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
    let tasks: Vec<_> = ids.iter().zip(&items).map(|(id, t)| task(id, t)).collect();
    let err = labeler.submit(&tasks).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        budget_error(&err),
        Some(&BudgetError::OverMaxSpend {
            hits: 3,
            cost: Cents(54),
            spent: Cents(0),
            max: Cents(30)
        }),
        "{err}"
    );
    assert!(server.ops().is_empty(), "{:?}", server.ops());
    // One fits.
    labeler.submit(&tasks[..1]).await.unwrap();
    assert_eq!(labeler.committed_spend().await, Cents(18));
    // 10+ assignments pay the higher fee: 10 × ($0.05 + $0.02) = $0.70.
    let big = builder(&server)
        .settings(HitSettings {
            max_assignments: 10,
            ..HitSettings::default()
        })
        .max_spend(Cents(69))
        .build();
    let err = big.submit(&tasks[..1]).await.unwrap_err();
    assert!(matches!(
        budget_error(&err),
        Some(BudgetError::OverMaxSpend {
            cost: Cents(70),
            ..
        })
    ));

    // The account balance is checked too.
    let poor = MturkServer::new();
    poor.state().balance = "0.10".into();
    let labeler = builder(&poor).build();
    let err = labeler.submit(&tasks[..1]).await.unwrap_err();
    assert_eq!(
        budget_error(&err),
        Some(&BudgetError::InsufficientBalance {
            hits: 1,
            cost: Cents(18),
            balance: Cents(10)
        })
    );
    assert_eq!(poor.ops(), ["GetAccountBalance"]);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_with_the_same_token_then_reported() {
    let server = MturkServer::new();
    server.queue("CreateHITWithHITType", Reply::throttled());
    server.queue("CreateHITWithHITType", Reply::throttled());
    let labeler = builder(&server).build();
    let tweet = "x".to_string();
    let started = tokio::time::Instant::now();
    labeler.submit(&[task("t1", &tweet)]).await.unwrap();
    let creates = server.calls_of("CreateHITWithHITType");
    assert_eq!(creates.len(), 3);
    assert!(
        creates
            .iter()
            .all(|c| c.body["UniqueRequestToken"] == creates[0].body["UniqueRequestToken"])
    );
    assert_eq!(server.hits().len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "backed off 100 + 200 ms"
    );

    // Throttled every time: a retryable, throttling LabelError.
    for _ in 0..3 {
        server.queue("CreateHITWithHITType", Reply::throttled());
    }
    let err = labeler.submit(&[task("t2", &tweet)]).await.unwrap_err();
    assert!(err.is_throttling() && err.is_retryable(), "{err}");
    assert!(err.to_string().contains("slow down"), "{err}");
    // MTurk's own throttling code inside a RequestError counts too.
    for _ in 0..3 {
        server.queue(
            "CreateHITWithHITType",
            Reply {
                status: 400,
                body: serde_json::json!({
                    "__type": "RequestError",
                    "Message": "You have exceeded the allowed request rate.",
                    "TurkErrorCode": "AWS.MechanicalTurk.Throttled",
                }),
            },
        );
    }
    let err = labeler.submit(&[task("t2", &tweet)]).await.unwrap_err();
    assert!(err.is_throttling(), "{err}");
    // A permanent error is not retried.
    server.queue(
        "CreateHITWithHITType",
        Reply::error(400, "RequestError", "Reward is not valid"),
    );
    let before = server.calls_of("CreateHITWithHITType").len();
    let err = labeler.submit(&[task("t3", &tweet)]).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(server.calls_of("CreateHITWithHITType").len(), before + 1);
    // ServiceFault is transient.
    server.queue(
        "ListAssignmentsForHIT",
        Reply::error(500, "ServiceFault", "oops"),
    );
    let err = labeler.collect().await.unwrap_err();
    assert!(err.is_retryable() && !err.is_throttling(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_hit_finishes_with_the_answers_it_has() {
    let server = MturkServer::new();
    let labeler = builder(&server)
        .settings(HitSettings {
            lifetime: Duration::from_secs(3600),
            assignment_duration: Duration::from_secs(600),
            ..HitSettings::default()
        })
        .build();
    let (a, b) = ("one".to_string(), "two".to_string());
    labeler
        .submit(&[task("t1", &a), task("t2", &b)])
        .await
        .unwrap();
    // One worker answers t1, nobody answers t2.
    server.state().hits[0].max_assignments = 1;
    server.state().hits[1].max_assignments = 0;
    server.answer_all(|_, _| answer_xml("category", "angry"));
    assert!(labeler.collect().await.unwrap().is_empty(), "still open");
    tokio::time::advance(Duration::from_secs(3599 + 600)).await;
    assert!(
        labeler.collect().await.unwrap().is_empty(),
        "one second early"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let results = labeler.collect().await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].item_id.as_str(), results[0].votes.len()),
        ("t1", 1)
    );
    assert_eq!(labeler.incomplete().await, ["t2"], "reported, not dropped");
    assert!(labeler.collect().await.unwrap().is_empty());
}

#[tokio::test]
async fn debug_output_holds_no_credentials() {
    let server = MturkServer::new();
    let labeler = builder(&server).build();
    let shown = format!("{labeler:?}");
    assert!(shown.contains("Sandbox"), "{shown}");
    assert!(!shown.contains(SECRET));
    assert!(!shown.contains("AKIDMTURKTEST"));
}

/// By default the labeler does not retry on its own, and its client's SDK
/// retries are off: in a pipeline the review stage's retry policy is the
/// one place that decides, so a throttled call is sent once per `submit`.
#[tokio::test(start_paused = true)]
async fn retries_do_not_stack_a_default_labeler_sends_a_throttled_call_once() {
    let server = MturkServer::new();
    for _ in 0..20 {
        server.queue("CreateHITWithHITType", Reply::throttled());
    }
    // A client whose own configuration would retry 5 times.
    let generous = aws_sdk_mturk::Client::from_conf(
        server
            .config()
            .retry_config(
                aws_sdk_mturk::config::retry::RetryConfig::standard().with_max_attempts(5),
            )
            .build(),
    );
    let labeler = MturkLabeler::builder_from_client(generous, |t: &String| t.clone()).build();
    let tweet = "x".to_string();
    let err = labeler.submit(&[task("t1", &tweet)]).await.unwrap_err();
    assert!(err.is_throttling() && err.is_retryable(), "{err}");
    assert_eq!(
        server.calls_of("CreateHITWithHITType").len(),
        1,
        "one attempt: the caller's retry policy decides"
    );
}
