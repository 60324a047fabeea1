//! support_tweets end to end on AWS services, emulated by moto (started by
//! each test): the bundled tweets are pushed into a Kinesis stream with the
//! `KinesisProducer`, the example's AWS code path (`app::aws::run`, what
//! `cargo run --example support_tweets --features aws -- --kinesis-stream ..`
//! runs) reads them back, classifies them with the local model and
//! publishes the actionable ones to SNS, and each route's SQS queue is read
//! back and checked against the model's own decisions and the gold labels.
#![cfg(feature = "aws")]

mod common;

#[path = "../examples/support_tweets/app.rs"]
mod app;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use app::aws::{AwsOptions, TopicArg};
use app::model::{self, LabeledData};
use common::moto::Moto;
use streamsift::checkpoint::FileCheckpointStore;
use streamsift::kinesis::{KinesisProducer, ProducerRecord};
use streamsift::{Action, REVIEW_ROUTE, Shutdown};

/// Held-out actionable tweets that must reach a person: the floor
/// `tests/support_tweets.rs` asserts offline.
const HELD_OUT_REACH_FLOOR: f64 = 0.90;

const STREAM: &str = "support-tweets";

/// Every route the local model's policy can choose: the teams, then triage.
fn routes() -> Vec<String> {
    let mut r: Vec<String> = app::TEAMS.iter().map(|(l, _)| l.to_string()).collect();
    r.push(REVIEW_ROUTE.as_str().to_string());
    r
}

/// How the test lays out SNS.
#[derive(Clone, Copy, Debug)]
enum Topology {
    /// A topic per route (`--sns-topic-arn ROUTE=ARN`), a queue on each.
    TopicPerRoute,
    /// One topic for all (`--sns-topic-arn ARN`), a queue per route with a
    /// filter policy on the `route` attribute, plus one unfiltered queue.
    OneTopicFiltered,
}

struct Env {
    _moto: Moto,
    config: aws_config::SdkConfig,
    options: AwsOptions,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    _dir: tempfile::TempDir,
    settings: app::Settings,
}

impl Env {
    async fn start() -> Env {
        let moto = Moto::start();
        let dir = tempfile::tempdir().unwrap();
        let options = AwsOptions {
            kinesis_stream: Some(STREAM.into()),
            checkpoint_dir: Some(dir.path().join("checkpoints")),
            from_start: true,
            stop_at_tip: true,
            endpoint_url: Some(moto.endpoint.clone()),
            region: Some("us-east-1".into()),
            ..AwsOptions::default()
        };
        // The binary's own SDK configuration (dummy credentials for the
        // emulator when the environment has none).
        let config = app::aws::sdk_config(&options).await;
        let settings = app::Settings {
            dead_letter_path: dir.path().join("dead-letter.jsonl"),
            ..app::Settings::default()
        };
        Env {
            sns: aws_sdk_sns::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            config,
            options,
            _moto: moto,
            _dir: dir,
            settings,
        }
    }

    async fn create_stream(&self, shards: i32) {
        let kinesis = aws_sdk_kinesis::Client::new(&self.config);
        kinesis
            .create_stream()
            .stream_name(STREAM)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        for _ in 0..100 {
            let out = kinesis
                .describe_stream_summary()
                .stream_name(STREAM)
                .send()
                .await
                .expect("DescribeStreamSummary");
            if out
                .stream_description_summary()
                .is_some_and(|d| d.stream_status().as_str() == "ACTIVE")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("stream {STREAM} never became ACTIVE");
    }

    /// Pushes every line of the bundled file, malformed ones included.
    async fn push_bundled(&self) -> usize {
        let lines = app::lines(app::TWEETS);
        let producer = KinesisProducer::builder(&self.config, STREAM)
            .seed(5)
            .build();
        let report = producer
            .send_all(lines.iter().cloned().map(ProducerRecord::new))
            .await
            .expect("PutRecords");
        assert!(
            report.is_complete(),
            "{} of {} records refused: {:?}",
            report.failed_count(),
            lines.len(),
            report.failures().next()
        );
        assert_eq!(report.accepted_count(), lines.len());
        lines.len()
    }

    async fn topic(&self, name: &str) -> String {
        common::sns_sqs::create_topic(&self.sns, name).await
    }

    /// A queue subscribed to `topic` (SNS envelope delivery), with an
    /// optional filter policy; returns its URL.
    async fn queue(&self, topic: &str, name: &str, filter: Option<String>) -> String {
        common::sns_sqs::subscribed_queue(
            &self.sns,
            &self.sqs,
            topic,
            name,
            false,
            filter.as_deref(),
        )
        .await
    }

    /// Every message of the queue, as (tweet id, route attribute, label
    /// attribute, subject), deleted once read.
    async fn drain(&self, url: &str) -> Vec<Published> {
        common::sns_sqs::drain_queue(&self.sqs, url)
            .await
            .iter()
            .map(|m| Published::parse(m.body().expect("a body")))
            .collect()
    }

    /// Creates the topics and queues; returns the `--sns-topic-arn` values
    /// and the queue URL of each route (plus `*`, all, for one topic).
    async fn lay_out(&self, topology: Topology) -> (Vec<TopicArg>, BTreeMap<String, String>) {
        let mut queues = BTreeMap::new();
        match topology {
            Topology::TopicPerRoute => {
                let mut args = Vec::new();
                for route in routes() {
                    let arn = self.topic(&format!("support-{route}")).await;
                    let url = self.queue(&arn, &format!("q-{route}"), None).await;
                    args.push(TopicArg::Route(route.clone(), arn));
                    queues.insert(route, url);
                }
                (args, queues)
            }
            Topology::OneTopicFiltered => {
                let arn = self.topic("support").await;
                for route in routes() {
                    let filter = serde_json::json!({ "route": [route] }).to_string();
                    let url = self.queue(&arn, &format!("q-{route}"), Some(filter)).await;
                    queues.insert(route, url);
                }
                let url = self.queue(&arn, "q-all", None).await;
                queues.insert("*".into(), url);
                (vec![TopicArg::All(arn)], queues)
            }
        }
    }
}

/// One SNS message as an SQS subscriber received it.
#[derive(Debug)]
struct Published {
    tweet_id: String,
    route: String,
    label: String,
    subject: String,
}

impl Published {
    /// Reads the SNS envelope: the tweet id from the message's link
    /// (`https://twitter.com/USER/status/ID`), the attributes, the subject.
    fn parse(body: &str) -> Published {
        let env: serde_json::Value = serde_json::from_str(body).expect("an SNS envelope");
        let message = env["Message"].as_str().expect("a Message");
        let (_, after) = message
            .split_once("/status/")
            .unwrap_or_else(|| panic!("no tweet link in {message:?}"));
        let tweet_id: String = after.chars().take_while(char::is_ascii_digit).collect();
        assert!(!tweet_id.is_empty(), "no tweet id in {message:?}");
        let attr = |name: &str| {
            env["MessageAttributes"][name]["Value"]
                .as_str()
                .unwrap_or_else(|| panic!("attribute {name} missing in {body}"))
                .to_string()
        };
        Published {
            tweet_id,
            route: attr("route"),
            label: attr("label"),
            subject: env["Subject"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// What the local model and its policy decide for each well-formed line
/// the pipeline accepts (not over its size limit), computed here directly:
/// route -> tweet ids.
fn expected_routes(models: &model::Models) -> BTreeMap<String, HashSet<String>> {
    let triage = model::Triage::new(models);
    let policy = model::triage_policy();
    let mut out: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for line in app::lines(app::TWEETS) {
        if line.len() > app::MAX_RECORD_BYTES {
            continue;
        }
        let Ok(tweet) = serde_json::from_slice::<app::Tweet>(&line) else {
            continue;
        };
        let route = match policy.decide(&triage.predict(&tweet)) {
            Action::Notify(route) => route.as_str().to_string(),
            Action::Review => REVIEW_ROUTE.as_str().to_string(),
            Action::Discard => continue,
        };
        out.entry(route).or_default().insert(tweet.id_str);
    }
    out
}

async fn end_to_end(topology: Topology) {
    let mut env = Env::start().await;
    env.create_stream(2).await;
    let pushed = env.push_bundled().await;
    let (topics, queues) = env.lay_out(topology).await;
    env.options.sns_topics = topics;

    let data = LabeledData::load(app::TWEETS, app::GOLD).unwrap();
    let models = model::load_or_train(&data, false).unwrap();
    let (summary, deployment) = app::aws::run(
        &env.settings,
        &env.options,
        &env.config,
        &data,
        &models,
        Shutdown::new(),
    )
    .await
    .expect("the run on moto");
    for route in routes() {
        assert!(
            deployment.topics.contains_key(&route),
            "{route} has no topic: {deployment}"
        );
    }

    // Nothing lost: every line pushed was read from Kinesis and either
    // decoded or dead-lettered, and the report reconciles.
    let stats = &summary.report.stats;
    let gold = app::gold_labels(app::GOLD);
    assert_eq!(stats.records_in as usize, pushed);
    assert_eq!(stats.decoded as usize, gold.len());
    assert_eq!(stats.dead_lettered as usize, pushed - gold.len());
    assert_eq!(stats.dead_lettered, 9, "the bundled file's malformed lines");
    assert_eq!(summary.dead_letters.len(), 9, "the dead-letter file");
    let kinds: HashSet<&str> = summary
        .dead_letters
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    for kind in ["invalid_json", "invalid_utf8", "empty", "too_large"] {
        assert!(kinds.contains(kind), "no {kind} dead letter: {kinds:?}");
    }
    assert!(stats.reconciles(), "{stats:?}");
    assert_eq!(
        stats.routed + stats.discarded + stats.sent_for_review,
        stats.decoded
    );
    assert_eq!(stats.dead_lettered_by_stage.get("route"), None);

    // Each route's queue holds exactly the tweets the model sent there,
    // once each, with the route and label attributes and a subject.
    let expected = expected_routes(&models);
    let mut received: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut team_messages = 0u64;
    for route in routes() {
        let messages = env.drain(&queues[&route]).await;
        let ids: HashSet<String> = messages.iter().map(|m| m.tweet_id.clone()).collect();
        assert_eq!(
            ids.len(),
            messages.len(),
            "{route}: a tweet published twice"
        );
        for m in &messages {
            assert_eq!(m.route, route, "{m:?}");
            assert!(m.subject.contains(&route), "{m:?}");
            assert!(gold.contains_key(&m.tweet_id), "{m:?} is no bundled tweet");
            if route != REVIEW_ROUTE.as_str() {
                assert_eq!(m.label, route, "{m:?}");
                team_messages += 1;
            }
        }
        let want = expected.get(&route).cloned().unwrap_or_default();
        assert_eq!(
            ids,
            want,
            "{route}: {} in the queue, {} decided by the model",
            ids.len(),
            want.len()
        );
        // The summary's record of what SNS accepted says the same.
        let noted: HashSet<String> = summary
            .inboxes
            .get(route.as_str())
            .map(|v| v.iter().map(|n| n.tweet_id.clone()).collect())
            .unwrap_or_default();
        assert_eq!(noted, ids, "{route}");
        received.insert(route, ids);
    }
    assert_eq!(team_messages, stats.routed, "one message per routed tweet");
    assert_eq!(
        received[REVIEW_ROUTE.as_str()].len() as u64,
        stats.sent_for_review
    );
    if let Some(all) = queues.get("*") {
        let everything = env.drain(all).await;
        assert_eq!(
            everything.len() as u64,
            stats.routed + stats.sent_for_review,
            "the unfiltered queue gets every message once"
        );
    }

    // Against the gold labels: the teams' queues are mostly right, and the
    // held-out actionable tweets (never trained on) reach a person.
    let reached: HashSet<&str> = received.values().flatten().map(String::as_str).collect();
    for (label, _) in app::TEAMS {
        let ids = &received[label];
        let correct = ids.iter().filter(|id| gold[*id] == label).count();
        assert!(
            correct * 2 > ids.len(),
            "{label}: {correct} of {} right",
            ids.len()
        );
    }
    let held_out: Vec<&str> = data
        .holdout
        .iter()
        .filter_map(|e| e.id.as_deref())
        .filter(|id| gold.get(*id).is_some_and(|l| l != app::NOISE))
        .collect();
    let held_out_reached = held_out.iter().filter(|id| reached.contains(**id)).count();
    let share = held_out_reached as f64 / held_out.len() as f64;
    assert!(
        share >= HELD_OUT_REACH_FLOOR,
        "held-out actionable tweets that reached a person: {held_out_reached} of {} ({share:.3})",
        held_out.len()
    );
    assert_eq!(summary.held_out.actionable_reached, held_out_reached);
    let all_actionable = gold.values().filter(|l| *l != app::NOISE).count();
    let all_reached = gold
        .iter()
        .filter(|(id, l)| *l != app::NOISE && reached.contains(id.as_str()))
        .count();
    assert_eq!(summary.actionable_reached, all_reached);
    println!(
        "{topology:?}: {} published ({} to teams, {} to triage); held-out reach {held_out_reached}/{} \
         ({:.1}%); all actionable reached {all_reached}/{all_actionable}",
        stats.routed + stats.sent_for_review,
        stats.routed,
        stats.sent_for_review,
        held_out.len(),
        share * 100.0
    );

    // The checkpoints were written: a second run over the same stream and
    // checkpoint directory reads nothing again and publishes nothing.
    let store = FileCheckpointStore::new(env.options.checkpoint_dir());
    assert!(store.path_for(STREAM).exists(), "no checkpoint file");
    let (again, _) = app::aws::run(
        &env.settings,
        &env.options,
        &env.config,
        &data,
        &models,
        Shutdown::new(),
    )
    .await
    .expect("the second run");
    assert_eq!(again.report.stats.records_in, 0, "{:?}", again.report.stats);
    for route in routes() {
        assert!(
            env.drain(&queues[&route]).await.is_empty(),
            "{route}: published again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tweets_from_kinesis_reach_a_topic_per_team() {
    end_to_end(Topology::TopicPerRoute).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tweets_from_kinesis_reach_filtered_queues_on_one_topic() {
    end_to_end(Topology::OneTopicFiltered).await;
}

#[test]
fn flags_and_environment_variables_configure_the_stages() {
    use clap::Parser as _;
    let cli = |args: &[&str]| {
        app::Cli::try_parse_from(std::iter::once("support_tweets").chain(args.iter().copied()))
    };
    let parsed = cli(&[
        "--kinesis-stream",
        "tweets",
        "--sns-topic-arn",
        "problem_report=arn:aws:sns:us-east-1:123456789012:incidents",
        "--stop-at-tip",
        "--endpoint-url=http://127.0.0.1:5000",
        "--retrain",
    ])
    .unwrap();
    assert!(parsed.retrain, "the offline flags sit beside the AWS ones");
    let mut options = parsed.aws;
    let env: HashMap<&str, &str> = HashMap::from([
        ("STREAMSIFT_KINESIS_STREAM", "ignored-the-flag-wins"),
        (
            "STREAMSIFT_SNS_TOPIC_ARN",
            "arn:aws:sns:us-east-1:1:ignored-flags-win",
        ),
        ("STREAMSIFT_SAGEMAKER_ENDPOINT", "triage"),
        ("STREAMSIFT_FROM_START", "yes"),
        ("STREAMSIFT_REGION", "eu-west-1"),
    ]);
    options
        .fill_from_env(|k| env.get(k).map(|v| v.to_string()))
        .unwrap();
    assert_eq!(options.kinesis_stream.as_deref(), Some("tweets"));
    assert_eq!(
        options.sns_topics,
        vec![TopicArg::Route(
            "problem_report".into(),
            "arn:aws:sns:us-east-1:123456789012:incidents".into()
        )]
    );
    assert_eq!(options.sagemaker_endpoint.as_deref(), Some("triage"));
    assert!(options.from_start && options.stop_at_tip);
    assert_eq!(options.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        options.endpoint_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert!(options.uses_aws());
    // Dummy credentials only for an emulator with none configured.
    assert!(app::aws::use_dummy_credentials(&options, |_| None));
    assert!(!app::aws::use_dummy_credentials(&options, |k| {
        (k == "AWS_PROFILE").then(|| "dev".to_string())
    }));
    assert!(!app::aws::use_dummy_credentials(
        &AwsOptions::default(),
        |_| None
    ));

    // Mistakes are refused with a message that says what to write.
    let err = TopicArg::parse("billing=arn:aws:sns:us-east-1:1:b").unwrap_err();
    assert!(
        err.to_string().contains("support_request"),
        "lists the routes: {err}"
    );
    let mut both = AwsOptions::default();
    let env = HashMap::from([
        ("STREAMSIFT_ML_MODEL_ID", "ml-123"),
        ("STREAMSIFT_SAGEMAKER_ENDPOINT", "triage"),
    ]);
    let err = both
        .fill_from_env(|k| env.get(k).map(|v| v.to_string()))
        .unwrap_err();
    assert!(err.to_string().contains("choose one"), "{err}");
    let mut bad = AwsOptions::default();
    let err = bad
        .fill_from_env(|k| (k == "STREAMSIFT_STOP_AT_TIP").then(|| "maybe".to_string()))
        .unwrap_err();
    assert!(err.to_string().contains("STREAMSIFT_STOP_AT_TIP"), "{err}");
    let twice = cli(&[
        "--sns-topic-arn",
        "arn:aws:sns:us-east-1:1:a",
        "--sns-topic-arn",
        "arn:aws:sns:us-east-1:1:b",
    ])
    .unwrap();
    assert!(twice.aws.check().is_err());
    let err = cli(&["--kinesis-stream"]).unwrap_err().to_string();
    assert!(err.contains("--kinesis-stream <NAME>"), "{err}");
    let err = cli(&["--sns-topic-arn", "billing=arn:aws:sns:us-east-1:1:b"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("there is no route"), "{err}");
    let err = cli(&["--region", ""]).unwrap_err().to_string();
    assert!(err.contains("--region <REGION>"), "{err}");
}
