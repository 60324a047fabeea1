//! support_tweets on AWS (`--features aws`): each stage can be switched to
//! an AWS service on its own, by a flag or an environment variable.
//!
//! | flag | variable | stage |
//! |---|---|---|
//! | `--kinesis-stream NAME` | `STREAMSIFT_KINESIS_STREAM` | read tweets from Kinesis instead of the bundled file |
//! | `--checkpoint-dir DIR` | `STREAMSIFT_CHECKPOINT_DIR` | where the file checkpoint store writes |
//! | `--checkpoint-table NAME` | `STREAMSIFT_CHECKPOINT_TABLE` | keep checkpoints in a DynamoDB lease table instead |
//! | `--from-start` | `STREAMSIFT_FROM_START` | a shard with no checkpoint starts at `TRIM_HORIZON` (else `LATEST`) |
//! | `--stop-at-tip` | `STREAMSIFT_STOP_AT_TIP` | stop once every shard is read to its tip |
//! | `--ml-model-id ID` | `STREAMSIFT_ML_MODEL_ID` | classify with an Amazon ML realtime model |
//! | `--sagemaker-endpoint NAME` | `STREAMSIFT_SAGEMAKER_ENDPOINT` | classify with a SageMaker endpoint |
//! | `--sns-topic-arn [ROUTE=]ARN` | `STREAMSIFT_SNS_TOPIC_ARN` (comma-separated) | publish to SNS; repeatable |
//! | `--endpoint-url URL` | `STREAMSIFT_ENDPOINT_URL` | an emulator, for every AWS client |
//! | `--region REGION` | `STREAMSIFT_REGION` | the region (else the default chain, else us-east-1) |
//!
//! A flag wins over its variable. Boolean variables take `1`/`true`/`yes`
//! or `0`/`false`/`no`. Without any of the stage flags, the example runs
//! offline exactly as without the feature.
//!
//! `--sns-topic-arn ARN` publishes every route to one topic (subscribers
//! filter on the `route` or `label` message attribute);
//! `--sns-topic-arn ROUTE=ARN` gives one route its own topic. Routes are the
//! team labels, `review` (the human triage queue) and, for a binary remote
//! model, `actionable`. A route with no topic stays in the local inbox that
//! the example prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use aws_sdk_kinesis::config::Credentials;
use clap::builder::NonEmptyStringValueParser;
use streamsift::checkpoint::FileCheckpointStore;
use streamsift::checkpoint::dynamodb::DynamoDbCheckpointStore;
use streamsift::kinesis::{KinesisSource, StartPosition, StreamRef};
use streamsift::machine_learning::{AmazonMlClassifier, ConnectError};
use streamsift::sagemaker::{JsonResponse, SageMakerClassifier};
use streamsift::sns::{SnsConfigError, SnsRouter};
use streamsift::{
    BoxClassifier, CheckpointError, Delivery, Label, LabelRule, Policy, REVIEW_ROUTE, Receipt,
    RouteError, Router, Shutdown, SourceError, UncertainAction,
};

use super::model::{self, ACTIONABLE};
use super::{Inboxes, NOISE, Settings, Stages, Summary, TEAMS, Tweet, lines, run_stages};

/// `STREAMSIFT_KINESIS_STREAM`: the stream to read (a name or an ARN).
pub const ENV_KINESIS_STREAM: &str = "STREAMSIFT_KINESIS_STREAM";
/// `STREAMSIFT_CHECKPOINT_DIR`: the file checkpoint store's directory.
pub const ENV_CHECKPOINT_DIR: &str = "STREAMSIFT_CHECKPOINT_DIR";
/// `STREAMSIFT_CHECKPOINT_TABLE`: a DynamoDB lease table for checkpoints.
pub const ENV_CHECKPOINT_TABLE: &str = "STREAMSIFT_CHECKPOINT_TABLE";
/// `STREAMSIFT_FROM_START`: start shards without a checkpoint at the oldest
/// record.
pub const ENV_FROM_START: &str = "STREAMSIFT_FROM_START";
/// `STREAMSIFT_STOP_AT_TIP`: stop at the stream's tip.
pub const ENV_STOP_AT_TIP: &str = "STREAMSIFT_STOP_AT_TIP";
/// `STREAMSIFT_ML_MODEL_ID`: an Amazon ML model id.
pub const ENV_ML_MODEL_ID: &str = "STREAMSIFT_ML_MODEL_ID";
/// `STREAMSIFT_SAGEMAKER_ENDPOINT`: a SageMaker endpoint name.
pub const ENV_SAGEMAKER_ENDPOINT: &str = "STREAMSIFT_SAGEMAKER_ENDPOINT";
/// `STREAMSIFT_SNS_TOPIC_ARN`: topics, comma-separated, each `ARN` or
/// `ROUTE=ARN`.
pub const ENV_SNS_TOPIC_ARN: &str = "STREAMSIFT_SNS_TOPIC_ARN";
/// `STREAMSIFT_ENDPOINT_URL`: an emulator's URL for every AWS client.
pub const ENV_ENDPOINT_URL: &str = "STREAMSIFT_ENDPOINT_URL";
/// `STREAMSIFT_REGION`: the AWS region.
pub const ENV_REGION: &str = "STREAMSIFT_REGION";

/// The routes a topic can be given to: the teams, the triage queue, and
/// the single route of a binary remote model.
pub fn known_routes() -> Vec<String> {
    let mut routes: Vec<String> = TEAMS.iter().map(|(label, _)| label.to_string()).collect();
    routes.push(REVIEW_ROUTE.as_str().to_string());
    routes.push(ACTIONABLE.to_string());
    routes
}

/// A command-line or environment setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A topic given to a route that does not exist.
    #[error(
        "--sns-topic-arn {given:?}: there is no route {route:?}; expected ARN (every route) or \
         ROUTE=ARN with ROUTE one of {known}"
    )]
    UnknownRoute {
        /// The whole value.
        given: String,
        /// The route part.
        route: String,
        /// The routes there are.
        known: String,
    },
    /// A route given two topics.
    #[error("--sns-topic-arn: route {route:?} is given two topics, {first} and {second}; keep one")]
    DuplicateRoute {
        /// The route.
        route: String,
        /// The first topic.
        first: String,
        /// The second.
        second: String,
    },
    /// Two catch-all topics.
    #[error(
        "--sns-topic-arn: two topics for every route, {first} and {second}; give one plain ARN, \
         and ROUTE=ARN for the others"
    )]
    DuplicateFallback {
        /// The first topic.
        first: String,
        /// The second.
        second: String,
    },
    /// An empty value.
    #[error("{flag}: the value is empty; expected {expected}")]
    Empty {
        /// The flag or variable.
        flag: String,
        /// What the value looks like.
        expected: &'static str,
    },
    /// Both remote classifiers.
    #[error(
        "--ml-model-id {model} and --sagemaker-endpoint {endpoint} are both set; choose one \
         classifier (or neither, for the local model)"
    )]
    TwoClassifiers {
        /// The Amazon ML model.
        model: String,
        /// The SageMaker endpoint.
        endpoint: String,
    },
    /// A boolean variable with another value.
    #[error("{var}={value:?}: expected 1, true, yes, 0, false or no")]
    NotABool {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

/// Where `--sns-topic-arn` sends a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicArg {
    /// A plain ARN: every route without a topic of its own.
    All(String),
    /// `ROUTE=ARN`.
    Route(String, String),
}

impl TopicArg {
    /// Parses `ARN` or `ROUTE=ARN` (ARNs hold no `=`). The ARN itself is
    /// checked by the SNS router when it is built.
    pub fn parse(value: &str) -> Result<TopicArg, ArgError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ArgError::Empty {
                flag: "--sns-topic-arn".into(),
                expected: "ARN or ROUTE=ARN",
            });
        }
        let Some((route, arn)) = value.split_once('=') else {
            return Ok(TopicArg::All(value.to_string()));
        };
        let (route, arn) = (route.trim(), arn.trim());
        let known = known_routes();
        if !known.iter().any(|r| r == route) {
            return Err(ArgError::UnknownRoute {
                given: value.to_string(),
                route: route.to_string(),
                known: known.join(", "),
            });
        }
        if arn.is_empty() {
            return Err(ArgError::Empty {
                flag: format!("--sns-topic-arn {route}="),
                expected: "an SNS topic ARN after the =",
            });
        }
        Ok(TopicArg::Route(route.to_string(), arn.to_string()))
    }
}

/// The AWS side of one run: which stages use which service. These are
/// support_tweets' AWS flags (`--help` prints this text); each has an
/// environment variable, read by [`AwsOptions::fill_from_env`].
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "AWS stages (each off unless given)")]
pub struct AwsOptions {
    /// Read tweets from this Kinesis stream (name or ARN) instead of the
    /// bundled file.
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub kinesis_stream: Option<String>,
    /// The file checkpoint store's directory [default:
    /// $TMPDIR/streamsift-support-tweets/checkpoints].
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Keep checkpoints in this DynamoDB lease table instead of files
    /// (created if missing).
    #[arg(long, value_name = "TABLE", value_parser = NonEmptyStringValueParser::new())]
    pub checkpoint_table: Option<String>,
    /// A shard with no checkpoint starts at the oldest record (else the
    /// newest); a shard with one resumes after it.
    #[arg(long)]
    pub from_start: bool,
    /// End the run when every shard has been read to its tip.
    #[arg(long)]
    pub stop_at_tip: bool,
    /// Classify with this Amazon ML realtime model.
    #[arg(long, value_name = "MODEL_ID", value_parser = NonEmptyStringValueParser::new())]
    pub ml_model_id: Option<String>,
    /// Classify with this SageMaker endpoint.
    #[arg(long, value_name = "ENDPOINT_NAME", value_parser = NonEmptyStringValueParser::new())]
    pub sagemaker_endpoint: Option<String>,
    /// Publish to SNS: ARN for every route, ROUTE=ARN for one route;
    /// repeatable. Routes: the team labels, review, actionable.
    #[arg(long = "sns-topic-arn", value_name = "[ROUTE=]ARN", value_parser = TopicArg::parse)]
    pub sns_topics: Vec<TopicArg>,
    /// An emulator's URL (moto, kinesis-local), for every AWS client.
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub endpoint_url: Option<String>,
    /// The AWS region [default: the SDK's chain, else us-east-1].
    #[arg(long, value_name = "REGION", value_parser = NonEmptyStringValueParser::new())]
    pub region: Option<String>,
}

impl AwsOptions {
    /// Whether any stage runs on AWS.
    pub fn uses_aws(&self) -> bool {
        self.kinesis_stream.is_some()
            || self.ml_model_id.is_some()
            || self.sagemaker_endpoint.is_some()
            || !self.sns_topics.is_empty()
    }

    /// Whether a remote model (Amazon ML or SageMaker) classifies.
    pub fn uses_remote_classifier(&self) -> bool {
        self.ml_model_id.is_some() || self.sagemaker_endpoint.is_some()
    }

    /// Fills what no flag set from the environment (`env` looks a variable
    /// up), then checks the whole.
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ArgError> {
        let text = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        let flag = |var: &'static str| -> Result<bool, ArgError> {
            match text(var) {
                None => Ok(false),
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" => Ok(false),
                    _ => Err(ArgError::NotABool { var, value: v }),
                },
            }
        };
        if self.kinesis_stream.is_none() {
            self.kinesis_stream = text(ENV_KINESIS_STREAM);
        }
        if self.checkpoint_dir.is_none() {
            self.checkpoint_dir = text(ENV_CHECKPOINT_DIR).map(PathBuf::from);
        }
        if self.checkpoint_table.is_none() {
            self.checkpoint_table = text(ENV_CHECKPOINT_TABLE);
        }
        self.from_start |= flag(ENV_FROM_START)?;
        self.stop_at_tip |= flag(ENV_STOP_AT_TIP)?;
        if self.ml_model_id.is_none() {
            self.ml_model_id = text(ENV_ML_MODEL_ID);
        }
        if self.sagemaker_endpoint.is_none() {
            self.sagemaker_endpoint = text(ENV_SAGEMAKER_ENDPOINT);
        }
        if self.sns_topics.is_empty()
            && let Some(list) = text(ENV_SNS_TOPIC_ARN)
        {
            for part in list.split(',').filter(|p| !p.trim().is_empty()) {
                self.sns_topics.push(TopicArg::parse(part)?);
            }
        }
        if self.endpoint_url.is_none() {
            self.endpoint_url = text(ENV_ENDPOINT_URL);
        }
        if self.region.is_none() {
            self.region = text(ENV_REGION);
        }
        self.check()
    }

    /// Rejects settings that contradict each other.
    pub fn check(&self) -> Result<(), ArgError> {
        if let (Some(model), Some(endpoint)) = (&self.ml_model_id, &self.sagemaker_endpoint) {
            return Err(ArgError::TwoClassifiers {
                model: model.clone(),
                endpoint: endpoint.clone(),
            });
        }
        self.topics().map(|_| ())
    }

    /// The catch-all topic and the per-route topics.
    pub fn topics(&self) -> Result<(Option<&str>, BTreeMap<&str, &str>), ArgError> {
        let mut all: Option<&str> = None;
        let mut by_route: BTreeMap<&str, &str> = BTreeMap::new();
        for t in &self.sns_topics {
            match t {
                TopicArg::All(arn) => {
                    if let Some(first) = all {
                        return Err(ArgError::DuplicateFallback {
                            first: first.to_string(),
                            second: arn.clone(),
                        });
                    }
                    all = Some(arn);
                }
                TopicArg::Route(route, arn) => {
                    if let Some(first) = by_route.insert(route, arn) {
                        return Err(ArgError::DuplicateRoute {
                            route: route.clone(),
                            first: first.to_string(),
                            second: arn.clone(),
                        });
                    }
                }
            }
        }
        Ok((all, by_route))
    }

    /// The checkpoint directory in use.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir()
                .join("streamsift-support-tweets")
                .join("checkpoints")
        })
    }
}

/// Why an AWS stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The settings are inconsistent.
    #[error(transparent)]
    Args(#[from] ArgError),
    /// The Amazon ML model is not usable.
    #[error("Amazon ML model {model}: {source}")]
    AmazonMl {
        /// The model id.
        model: String,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The SNS router's settings were refused.
    #[error("SNS: {0}")]
    Sns(#[from] SnsConfigError),
    /// The Kinesis stream could not be opened.
    #[error("Kinesis stream {stream}: {source}")]
    Kinesis {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: SourceError,
    },
    /// The checkpoint table could not be created.
    #[error("DynamoDB checkpoint table {table}: {source}")]
    CheckpointTable {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: CheckpointError,
    },
}

/// Whether to hand the SDK dummy credentials: only for an emulator
/// (`--endpoint-url`), and only when the environment names no credentials
/// of its own (`env` looks a variable up).
pub fn use_dummy_credentials(options: &AwsOptions, env: impl Fn(&str) -> Option<String>) -> bool {
    options.endpoint_url.is_some()
        && [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ]
        .iter()
        .all(|var| env(var).is_none_or(|v| v.is_empty()))
}

/// The SDK configuration every AWS client of the run is built from:
/// credentials from the default chain (dummy ones for an emulator when none
/// are configured), the region given, else the default chain's, else
/// us-east-1, and the emulator's endpoint URL if any.
pub async fn sdk_config(options: &AwsOptions) -> aws_config::SdkConfig {
    use aws_config::meta::region::RegionProviderChain;
    let region =
        RegionProviderChain::first_try(options.region.clone().map(aws_config::Region::new))
            .or_default_provider()
            .or_else(aws_config::Region::from_static("us-east-1"));
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
        if use_dummy_credentials(options, |var| std::env::var(var).ok()) {
            loader = loader.credentials_provider(Credentials::new(
                "emulator",
                "emulator",
                None,
                None,
                "support_tweets-emulator",
            ));
        }
    }
    loader.load().await
}

/// The remote classifiers' policy: the local triage policy, plus
/// `actionable` (the positive label of a binary model) routed as it is.
/// A multiclass model over the gold labels (`none` and the four teams) is
/// routed to the teams like the local model.
pub fn remote_policy() -> Policy {
    let mut rules: Vec<LabelRule> = TEAMS
        .iter()
        .map(|(label, _)| LabelRule {
            label: Label::from_static(label),
            route: Some(Label::from_static(label)),
            min_confidence: model::TEAM_MIN_CONFIDENCE,
        })
        .collect();
    rules.push(LabelRule {
        label: Label::from_static(ACTIONABLE),
        route: Some(Label::from_static(ACTIONABLE)),
        min_confidence: 0.0,
    });
    rules.push(LabelRule {
        label: Label::from_static(NOISE),
        route: None,
        min_confidence: 0.0,
    });
    Policy::Multiclass {
        rules,
        uncertain: UncertainAction::Review,
    }
}

/// The classifier of the run and its policy: the local model unless a
/// remote one is named.
pub async fn classifier(
    options: &AwsOptions,
    config: &aws_config::SdkConfig,
    models: &model::Models,
) -> Result<(BoxClassifier<Tweet>, Policy, String), SetupError> {
    if let Some(id) = &options.ml_model_id {
        let ml = AmazonMlClassifier::<Tweet>::builder(config, id.clone())
            .labels(ACTIONABLE, NOISE)
            .build()
            .await
            .map_err(|source| SetupError::AmazonMl {
                model: id.clone(),
                source,
            })?;
        let about = format!(
            "Amazon ML model {id} ({:?}) at {}",
            ml.kind(),
            ml.endpoint()
        );
        return Ok((BoxClassifier::new(ml), remote_policy(), about));
    }
    if let Some(endpoint) = &options.sagemaker_endpoint {
        let mut classes = vec![NOISE];
        classes.extend(TEAMS.iter().map(|(label, _)| *label));
        let sm = SageMakerClassifier::<Tweet>::builder(config, endpoint.clone())
            .response(
                JsonResponse::new()
                    .binary_labels(ACTIONABLE, NOISE)
                    .class_labels(classes),
            )
            .build();
        let about = format!("SageMaker endpoint {endpoint}");
        return Ok((BoxClassifier::new(sm), remote_policy(), about));
    }
    Ok((
        BoxClassifier::new(model::Triage::new(models)),
        model::triage_policy(),
        "streamsift::local (the bundled model)".into(),
    ))
}

/// The router of the run: routes with an SNS topic publish there (and are
/// noted in the inboxes once SNS has accepted them); the others go to the
/// local inboxes the example prints.
#[derive(Clone, Debug)]
pub struct Notifier {
    sns: Option<SnsRouter<Tweet>>,
    inboxes: Inboxes,
}

impl Notifier {
    /// The topic a route publishes to, if any.
    pub fn topic_for(&self, route: &str) -> Option<&str> {
        self.sns.as_ref().and_then(|s| s.topic_for(route))
    }
}

impl Router<Tweet> for Notifier {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        match &self.sns {
            Some(sns) if sns.topic_for(d.route.as_str()).is_some() => {
                let receipt = sns.route(d).await?;
                self.inboxes.record(d);
                Ok(receipt)
            }
            _ => self.inboxes.route(d).await,
        }
    }
}

/// Builds the [`Notifier`] from `--sns-topic-arn`.
pub async fn notifier(
    options: &AwsOptions,
    config: &aws_config::SdkConfig,
    inboxes: &Inboxes,
) -> Result<Notifier, SetupError> {
    let (all, by_route) = options.topics()?;
    let sns = if all.is_none() && by_route.is_empty() {
        None
    } else {
        let mut builder = SnsRouter::<Tweet>::builder(config).source_name(
            options
                .kinesis_stream
                .as_deref()
                .map(|s| StreamRef::parse(s).name().to_string())
                .unwrap_or_else(|| "support_tweets".into()),
        );
        if let Some(arn) = all {
            builder = builder.topic(arn);
        }
        for (route, arn) in by_route {
            builder = builder.route_topic(route.to_string(), arn);
        }
        Some(builder.build().await?)
    };
    Ok(Notifier {
        sns,
        inboxes: inboxes.clone(),
    })
}

/// Opens the Kinesis stream with its checkpoint store.
pub async fn kinesis_source(
    options: &AwsOptions,
    config: &aws_config::SdkConfig,
    stream: &str,
) -> Result<KinesisSource, SetupError> {
    let builder = KinesisSource::builder(config, StreamRef::parse(stream))
        .start_position(if options.from_start {
            StartPosition::TrimHorizon
        } else {
            StartPosition::Latest
        })
        .stop_at_tip(options.stop_at_tip);
    let builder = match &options.checkpoint_table {
        Some(table) => {
            let store = DynamoDbCheckpointStore::builder(config, table.clone())
                .create_table_if_missing(true)
                .build()
                .await
                .map_err(|source| SetupError::CheckpointTable {
                    table: table.clone(),
                    source,
                })?;
            builder.checkpoints(store)
        }
        None => builder.checkpoints(FileCheckpointStore::new(options.checkpoint_dir())),
    };
    builder.build().await.map_err(|source| SetupError::Kinesis {
        stream: stream.to_string(),
        source,
    })
}

/// What a run on AWS used, for the printout.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Where the tweets came from.
    pub source: String,
    /// Who classified them.
    pub classifier: String,
    /// The topic of each route that has one.
    pub topics: BTreeMap<String, String>,
}

impl fmt::Display for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source: {}", self.source)?;
        writeln!(f, "classifier in use: {}", self.classifier)?;
        if self.topics.is_empty() {
            write!(f, "notifications: local inboxes (no --sns-topic-arn)")
        } else {
            write!(f, "notifications: SNS")?;
            for (route, arn) in &self.topics {
                write!(f, "\n  {route:<19} -> {arn}")?;
            }
            write!(
                f,
                "\n  message attributes route, label, score, record_id: SQS message attributes \
                 for a subscription with RawMessageDelivery=true, else inside the body's JSON \
                 under \"MessageAttributes\""
            )
        }
    }
}

/// Runs support_tweets with the stages `options` moves to AWS: the code
/// path of `cargo run --example support_tweets --features aws -- ...`.
pub async fn run(
    settings: &Settings,
    options: &AwsOptions,
    config: &aws_config::SdkConfig,
    data: &model::LabeledData,
    models: &model::Models,
    shutdown: Shutdown,
) -> Result<(Summary, Deployment), Box<dyn std::error::Error>> {
    options.check()?;
    let (classifier, policy, about) = classifier(options, config, models).await?;
    let inboxes = Inboxes::default();
    let notifier = notifier(options, config, &inboxes).await?;
    let mut topics = BTreeMap::new();
    for route in known_routes() {
        if let Some(arn) = notifier.topic_for(&route) {
            topics.insert(route, arn.to_string());
        }
    }
    let summary = match &options.kinesis_stream {
        Some(stream) => {
            let source = kinesis_source(options, config, stream).await?;
            let deployment = Deployment {
                source: format!(
                    "Kinesis stream {stream} ({}; checkpoints in {})",
                    if options.from_start {
                        "resuming after its checkpoints; a shard without one starts at the oldest record"
                    } else {
                        "resuming after its checkpoints; a shard without one starts at the newest record"
                    },
                    match &options.checkpoint_table {
                        Some(t) => format!("DynamoDB table {t}"),
                        None => options.checkpoint_dir().display().to_string(),
                    }
                ),
                classifier: about,
                topics,
            };
            let stages = Stages {
                source,
                classifier,
                policy,
                router: notifier,
                inboxes: &inboxes,
                lines: None,
            };
            (
                run_stages(settings, data, stages, shutdown).await?,
                deployment,
            )
        }
        None => {
            let lines = lines(super::TWEETS);
            let source = streamsift::fakes::MemorySource::from_payloads(
                settings.shards,
                lines.iter().cloned(),
            )
            .batch_size(50);
            let deployment = Deployment {
                source: "the bundled file (examples/data/tweets.jsonl)".into(),
                classifier: about,
                topics,
            };
            let stages = Stages {
                source,
                classifier,
                policy,
                router: notifier,
                inboxes: &inboxes,
                lines: Some(lines.len()),
            };
            (
                run_stages(settings, data, stages, shutdown).await?,
                deployment,
            )
        }
    };
    Ok(summary)
}
