//! support_tweets' notification and SQS flags (`--features http` for the
//! webhooks, `--features sqs` for the queue; `--dedup-window` comes with
//! either). Each has an environment variable:
//!
//! | flag | variable | what |
//! |---|---|---|
//! | `--slack-webhook ROUTE=URL` | `STREAMSIFT_SLACK_WEBHOOK` (comma-separated) | post a route to a Slack incoming webhook; repeatable |
//! | `--slack-rate PER_SECOND` | `STREAMSIFT_SLACK_RATE` | messages a second per Slack webhook (default 1, Slack's documented limit) |
//! | `--teams-webhook ROUTE=URL` | `STREAMSIFT_TEAMS_WEBHOOK` (comma-separated) | post a route to a Teams workflow webhook; repeatable |
//! | `--pagerduty-routing-key ROUTE=KEY` | `STREAMSIFT_PAGERDUTY_ROUTING_KEY` (comma-separated) | trigger PagerDuty (Events API v2) for a route; repeatable |
//! | `--pagerduty-url URL` | `STREAMSIFT_PAGERDUTY_URL` | another Events API v2 URL (a proxy, a test server) |
//! | `--sqs-queue-url URL` | `STREAMSIFT_SQS_QUEUE_URL` | read tweets from this SQS queue until it is empty, instead of the bundled file |
//! | `--dedup-window DURATION` | `STREAMSIFT_DEDUP_WINDOW` | never notify the same tweet twice within `30s`, `10m`, `1h`, `2d` (keys in `dedup.log` next to the dead letters) |
//!
//! Routes are the team labels (`problem_report`, `support_request`,
//! `technical_question`, `feature_request`) and `review`, the human triage
//! queue; a route name that is not one of them is refused at start. A route
//! with a webhook or a routing key goes there; the others keep the local
//! inboxes (or SNS, with `--features aws` and `--sns-topic-arn`). Webhook
//! URLs and routing keys are secrets: the start-up banner shows a webhook's
//! scheme and host only, and never a routing key.
//!
//! `cargo run --example support_tweets --features http -- --slack-webhook
//! support_request=https://hooks.slack.com/services/... --dedup-window 1h`

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
#[cfg(feature = "http")]
use std::sync::Arc;
use std::time::Duration;

use streamsift::router::dedup::{Dedup, FileDedupStore};
use streamsift::{
    BoxClassifier, BoxRouter, Delivery, Label, REVIEW_ROUTE, Receipt, RouteError, Router, Shutdown,
};

use super::model;
use super::{Inboxes, Settings, Stages, Summary, TEAMS, Tweet, lines, run_stages};

/// `STREAMSIFT_SLACK_WEBHOOK`: `ROUTE=URL`, comma-separated.
pub const ENV_SLACK_WEBHOOK: &str = "STREAMSIFT_SLACK_WEBHOOK";
/// `STREAMSIFT_SLACK_RATE`: messages a second per Slack webhook.
pub const ENV_SLACK_RATE: &str = "STREAMSIFT_SLACK_RATE";
/// `STREAMSIFT_TEAMS_WEBHOOK`: `ROUTE=URL`, comma-separated.
pub const ENV_TEAMS_WEBHOOK: &str = "STREAMSIFT_TEAMS_WEBHOOK";
/// `STREAMSIFT_PAGERDUTY_ROUTING_KEY`: `ROUTE=KEY`, comma-separated.
pub const ENV_PAGERDUTY_ROUTING_KEY: &str = "STREAMSIFT_PAGERDUTY_ROUTING_KEY";
/// `STREAMSIFT_PAGERDUTY_URL`: another Events API v2 URL.
pub const ENV_PAGERDUTY_URL: &str = "STREAMSIFT_PAGERDUTY_URL";
/// `STREAMSIFT_SQS_QUEUE_URL`: the queue to read tweets from.
pub const ENV_SQS_QUEUE_URL: &str = "STREAMSIFT_SQS_QUEUE_URL";
/// `STREAMSIFT_DEDUP_WINDOW`: the deduplication window.
pub const ENV_DEDUP_WINDOW: &str = "STREAMSIFT_DEDUP_WINDOW";

/// The routes a webhook or routing key can be given to: the teams and the
/// triage queue.
pub fn webhook_routes() -> Vec<String> {
    let mut routes: Vec<String> = TEAMS.iter().map(|(label, _)| label.to_string()).collect();
    routes.push(REVIEW_ROUTE.as_str().to_string());
    routes
}

/// A `ROUTE=SECRET` value as given; checked by [`NotifyOptions::check`],
/// not by clap, so that a refused value (a URL with its secret) is never
/// echoed. Its `Debug` shows the route only.
#[derive(Clone, PartialEq, Eq)]
pub struct RouteSecret {
    /// The part before `=` (`None` without a `=`).
    pub route: Option<String>,
    /// The part after it: a webhook URL or a routing key.
    pub secret: String,
}

impl RouteSecret {
    /// Splits at the first `=`; never fails (see the type's docs).
    pub fn parse(value: &str) -> Result<RouteSecret, std::convert::Infallible> {
        Ok(match value.trim().split_once('=') {
            Some((route, secret)) => RouteSecret {
                route: Some(route.trim().to_string()),
                secret: secret.trim().to_string(),
            },
            None => RouteSecret {
                route: None,
                secret: value.trim().to_string(),
            },
        })
    }
}

impl fmt::Debug for RouteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteSecret")
            .field("route", &self.route)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A notification or SQS setting that cannot be used. No message repeats a
/// webhook URL or a routing key.
#[derive(Debug, thiserror::Error)]
pub enum NotifyArgError {
    /// A route that does not exist.
    #[error("{flag}: there is no route {route:?}; expected ROUTE=VALUE with ROUTE one of {known}")]
    UnknownRoute {
        /// The flag.
        flag: &'static str,
        /// The route given.
        route: String,
        /// The routes there are.
        known: String,
    },
    /// No `ROUTE=` part, or nothing after it.
    #[error(
        "{flag}: expected ROUTE=VALUE, e.g. support_request=https://hooks.slack.com/services/...; \
         the value given is not repeated here (it may be a secret)"
    )]
    NotRouteValue {
        /// The flag.
        flag: &'static str,
    },
    /// Two destinations for one route.
    #[error("route {route:?} is given both {first} and {second}; keep one destination per route")]
    TwoDestinations {
        /// The route.
        route: String,
        /// The first flag.
        first: &'static str,
        /// The second.
        second: &'static str,
    },
    /// A duration that is not `<number><unit>`.
    #[error(
        "{flag} {value:?}: expected a whole number and a unit (s, m, h or d), e.g. 30s, 10m, 1h"
    )]
    BadDuration {
        /// The flag or variable.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// A rate that is not a positive whole number.
    #[error("{flag} {value:?}: expected a whole number of messages a second, at least 1")]
    BadRate {
        /// The flag or variable.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// Webhooks in a build without them.
    #[error(
        "--slack-webhook, --teams-webhook and --pagerduty-routing-key need a build with \
         `--features http`"
    )]
    NeedsHttp,
    /// Two sources.
    #[error("--sqs-queue-url and --kinesis-stream are both set; read from one source at a time")]
    TwoSources,
}

/// Parses `30s`, `10m`, `1h` or `2d` (a whole number and a unit).
pub fn parse_duration(value: &str) -> Result<Duration, NotifyArgError> {
    let bad = || NotifyArgError::BadDuration {
        flag: "--dedup-window",
        value: value.to_string(),
    };
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    let total = n.checked_mul(secs).filter(|t| *t > 0).ok_or_else(bad)?;
    Ok(Duration::from_secs(total))
}

fn parse_rate(value: &str) -> Result<u32, NotifyArgError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| NotifyArgError::BadRate {
            flag: "--slack-rate",
            value: value.to_string(),
        })
}

/// Where one route's notifications go.
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    /// A Slack incoming webhook URL.
    Slack(String),
    /// A Teams workflow webhook URL.
    Teams(String),
    /// A PagerDuty integration (routing) key.
    PagerDuty(String),
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

impl Destination {
    /// `slack`, `teams` or `pagerduty`.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Slack(_) => "slack",
            Destination::Teams(_) => "teams",
            Destination::PagerDuty(_) => "pagerduty",
        }
    }
}

/// A URL with everything after its host cut: `https://hooks.slack.com/…`
/// (user info dropped too). What is not `scheme://host...` shows as
/// `(not a URL)`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.trim().split_once("://") else {
        return "(not a URL)".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        return "(not a URL)".into();
    }
    format!("{scheme}://{host}/…")
}

/// support_tweets' notification and SQS flags (see the module docs); each
/// has an environment variable, read by [`NotifyOptions::fill_from_env`].
#[derive(Clone, Debug, Default, clap::Args)]
#[command(next_help_heading = "Notifications and SQS (each off unless given)")]
pub struct NotifyOptions {
    /// Post ROUTE's notifications to this Slack incoming webhook;
    /// repeatable. Routes: the team labels and review.
    /// [env: STREAMSIFT_SLACK_WEBHOOK, comma-separated]
    #[arg(long = "slack-webhook", value_name = "ROUTE=URL", value_parser = RouteSecret::parse)]
    pub slack: Vec<RouteSecret>,
    /// Messages a second per Slack webhook [default: 1, Slack's limit].
    /// [env: STREAMSIFT_SLACK_RATE]
    #[arg(long, value_name = "PER_SECOND")]
    pub slack_rate: Option<String>,
    /// Post ROUTE's notifications to this Teams workflow webhook; repeatable.
    /// [env: STREAMSIFT_TEAMS_WEBHOOK, comma-separated]
    #[arg(long = "teams-webhook", value_name = "ROUTE=URL", value_parser = RouteSecret::parse)]
    pub teams: Vec<RouteSecret>,
    /// Trigger PagerDuty (Events API v2) with this routing key for ROUTE;
    /// repeatable. [env: STREAMSIFT_PAGERDUTY_ROUTING_KEY, comma-separated]
    #[arg(long = "pagerduty-routing-key", value_name = "ROUTE=KEY", value_parser = RouteSecret::parse)]
    pub pagerduty: Vec<RouteSecret>,
    /// Post PagerDuty events here instead of events.pagerduty.com.
    /// [env: STREAMSIFT_PAGERDUTY_URL]
    #[arg(long, value_name = "URL")]
    pub pagerduty_url: Option<String>,
    /// Read tweets from this SQS queue until it is empty (deleting each
    /// once done), instead of the bundled file. [env: STREAMSIFT_SQS_QUEUE_URL]
    #[cfg(feature = "sqs")]
    #[arg(long, value_name = "URL")]
    pub sqs_queue_url: Option<String>,
    /// Never notify the same tweet twice within this window (30s, 10m, 1h,
    /// 2d); the keys are kept in dedup.log next to the dead letters.
    /// [env: STREAMSIFT_DEDUP_WINDOW]
    #[arg(long, value_name = "DURATION")]
    pub dedup_window: Option<String>,
}

impl NotifyOptions {
    /// Whether any of these flags is set.
    pub fn uses_any(&self) -> bool {
        !self.slack.is_empty()
            || !self.teams.is_empty()
            || !self.pagerduty.is_empty()
            || self.dedup_window.is_some()
            || self.sqs_queue_url().is_some()
    }

    /// The queue to read, if any.
    pub fn sqs_queue_url(&self) -> Option<&str> {
        #[cfg(feature = "sqs")]
        return self.sqs_queue_url.as_deref();
        #[cfg(not(feature = "sqs"))]
        None
    }

    /// Fills what no flag set from the environment, then checks the whole.
    pub fn fill_from_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), NotifyArgError> {
        let text = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        let list = |var: &str| -> Vec<RouteSecret> {
            text(var)
                .map(|l| {
                    l.split(',')
                        .filter(|p| !p.trim().is_empty())
                        .filter_map(|p| RouteSecret::parse(p).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        if self.slack.is_empty() {
            self.slack = list(ENV_SLACK_WEBHOOK);
        }
        if self.teams.is_empty() {
            self.teams = list(ENV_TEAMS_WEBHOOK);
        }
        if self.pagerduty.is_empty() {
            self.pagerduty = list(ENV_PAGERDUTY_ROUTING_KEY);
        }
        if self.slack_rate.is_none() {
            self.slack_rate = text(ENV_SLACK_RATE);
        }
        if self.pagerduty_url.is_none() {
            self.pagerduty_url = text(ENV_PAGERDUTY_URL);
        }
        #[cfg(feature = "sqs")]
        if self.sqs_queue_url.is_none() {
            self.sqs_queue_url = text(ENV_SQS_QUEUE_URL);
        }
        if self.dedup_window.is_none() {
            self.dedup_window = text(ENV_DEDUP_WINDOW);
        }
        self.check()
    }

    /// Checks the routes, the window and the rate.
    pub fn check(&self) -> Result<(), NotifyArgError> {
        self.destinations()?;
        self.window()?;
        self.rate()?;
        Ok(())
    }

    /// The deduplication window, if any.
    pub fn window(&self) -> Result<Option<Duration>, NotifyArgError> {
        self.dedup_window.as_deref().map(parse_duration).transpose()
    }

    /// Slack messages a second per webhook.
    pub fn rate(&self) -> Result<u32, NotifyArgError> {
        self.slack_rate.as_deref().map_or(Ok(1), parse_rate)
    }

    /// Each route's destination, checked.
    pub fn destinations(&self) -> Result<BTreeMap<String, Destination>, NotifyArgError> {
        let known = webhook_routes();
        let mut out: BTreeMap<String, (Destination, &'static str)> = BTreeMap::new();
        type Group<'a> = (&'static str, &'a [RouteSecret], fn(String) -> Destination);
        let groups: [Group<'_>; 3] = [
            ("--slack-webhook", &self.slack, Destination::Slack),
            ("--teams-webhook", &self.teams, Destination::Teams),
            (
                "--pagerduty-routing-key",
                &self.pagerduty,
                Destination::PagerDuty,
            ),
        ];
        for (flag, values, make) in groups {
            for v in values {
                let route = match &v.route {
                    Some(r) if !r.is_empty() && !v.secret.is_empty() => r,
                    _ => return Err(NotifyArgError::NotRouteValue { flag }),
                };
                if !known.iter().any(|k| k == route) {
                    return Err(NotifyArgError::UnknownRoute {
                        flag,
                        route: route.clone(),
                        known: known.join(", "),
                    });
                }
                if let Some((_, first)) = out.get(route) {
                    return Err(NotifyArgError::TwoDestinations {
                        route: route.clone(),
                        first,
                        second: flag,
                    });
                }
                out.insert(route.clone(), (make(v.secret.clone()), flag));
            }
        }
        Ok(out.into_iter().map(|(r, (d, _))| (r, d)).collect())
    }
}

/// The router of a run with webhooks: routes with a destination go to the
/// [`HttpRouter`](streamsift::http::HttpRouter) (and are noted in the
/// inboxes once it accepted them); the others to `fallback`.
#[derive(Clone)]
pub struct Webhooks {
    #[cfg(feature = "http")]
    http: Option<Arc<streamsift::http::HttpRouter<Tweet>>>,
    routes: Vec<Label>,
    fallback: BoxRouter<Tweet>,
    inboxes: Inboxes,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Router<Tweet> for Webhooks {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        #[cfg(feature = "http")]
        if let Some(http) = &self.http
            && self.routes.contains(d.route)
        {
            let receipt = http.route(d).await?;
            self.inboxes.record(d);
            return Ok(receipt);
        }
        self.fallback.route(d).await
    }
}

/// Why the notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifySetupError {
    /// The flags are inconsistent.
    #[error(transparent)]
    Args(#[from] NotifyArgError),
    /// The webhook router refused its settings.
    #[cfg(feature = "http")]
    #[error("webhooks: {0}")]
    Http(#[from] streamsift::http::HttpConfigError),
    /// The dedup store could not be opened.
    #[error("dedup store {path}: {source}")]
    Dedup {
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: streamsift::router::dedup::DedupStoreError,
    },
    /// The dedup store's directory could not be made.
    #[error("dedup store directory {path}: {source}")]
    DedupDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQS queue could not be opened.
    #[cfg(feature = "sqs")]
    #[error("SQS queue: {0}")]
    Sqs(#[from] streamsift::sqs::SqsConfigError),
}

/// The run's router: `fallback` for routes without a destination, the
/// webhooks for the others, all inside [`Dedup`] with a file store next to
/// the dead letters when a window is set. Also returns the banner lines.
pub fn router(
    options: &NotifyOptions,
    settings: &Settings,
    fallback: BoxRouter<Tweet>,
    inboxes: &Inboxes,
) -> Result<(BoxRouter<Tweet>, Vec<String>), NotifySetupError> {
    let destinations = options.destinations()?;
    let mut banner = Vec::new();
    #[cfg(feature = "http")]
    let http = if destinations.is_empty() {
        None
    } else {
        use std::num::NonZeroU32;
        use streamsift::http::{Endpoint, Fields, HttpRouter, PAGERDUTY_EVENTS_URL};
        use streamsift::rate::RateLimiter;
        let rate = NonZeroU32::new(options.rate()?).unwrap_or(NonZeroU32::MIN);
        let mut builder = HttpRouter::<Tweet>::builder().fields(|t: &Tweet| {
            Fields::new(t.text.clone())
                .author(format!("@{}", t.user.screen_name))
                .link(format!(
                    "https://twitter.com/{}/status/{}",
                    t.user.screen_name, t.id_str
                ))
        });
        for (route, dest) in &destinations {
            let (endpoint, shown) = match dest {
                Destination::Slack(url) => (
                    Endpoint::slack(url.clone())
                        .rate_limit(RateLimiter::with_burst(rate, NonZeroU32::MIN)),
                    format!("{} ({rate}/s)", redact_url(url)),
                ),
                Destination::Teams(url) => (Endpoint::teams(url.clone()), redact_url(url)),
                Destination::PagerDuty(key) => {
                    let url = options
                        .pagerduty_url
                        .clone()
                        .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_string());
                    let shown = format!("{} (routing key not shown)", redact_url(&url));
                    (Endpoint::pagerduty(key.clone()).url(url), shown)
                }
            };
            banner.push(format!("{}: route {route} -> {shown}", dest.kind()));
            builder = builder.route(route.clone(), endpoint);
        }
        Some(Arc::new(builder.build()?))
    };
    #[cfg(not(feature = "http"))]
    if !destinations.is_empty() {
        return Err(NotifyArgError::NeedsHttp.into());
    }
    let webhooks = Webhooks {
        #[cfg(feature = "http")]
        http,
        routes: destinations
            .keys()
            .map(|r| Label::from(r.clone()))
            .collect(),
        fallback,
        inboxes: inboxes.clone(),
    };
    let Some(window) = options.window()? else {
        return Ok((BoxRouter::new(webhooks), banner));
    };
    let path = dedup_path(settings);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| NotifySetupError::DedupDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let store = FileDedupStore::open(&path, window).map_err(|source| NotifySetupError::Dedup {
        path: path.clone(),
        source,
    })?;
    banner.push(format!(
        "dedup: a tweet notified within {} is not notified again (keys in {})",
        options.dedup_window.as_deref().unwrap_or_default(),
        path.display()
    ));
    Ok((BoxRouter::new(Dedup::new(webhooks, store)), banner))
}

/// The dedup store's file: `dedup.log` next to the dead letters.
pub fn dedup_path(settings: &Settings) -> PathBuf {
    settings
        .dead_letter_path
        .parent()
        .map(|d| d.join("dedup.log"))
        .unwrap_or_else(|| PathBuf::from("dedup.log"))
}

/// The SDK configuration for the SQS client when the AWS flags are not
/// compiled in: the default chain, else us-east-1 (`AWS_ENDPOINT_URL` is
/// honoured by the SDK itself).
#[cfg(all(feature = "sqs", not(feature = "aws")))]
async fn sdk_config() -> aws_config::SdkConfig {
    use aws_config::meta::region::RegionProviderChain;
    let region = RegionProviderChain::default_provider()
        .or_else(aws_config::Region::from_static("us-east-1"));
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .load()
        .await
}

/// Runs support_tweets with these flags (and, with `--features aws`, the
/// AWS ones): the source (SQS, Kinesis or the bundled file), the
/// classifier, and the router built by [`router`]. Returns the summary,
/// the banner lines and the SNS topics in use.
pub async fn run(
    settings: &Settings,
    options: &NotifyOptions,
    #[cfg(feature = "aws")] aws: &super::aws::AwsOptions,
    data: &model::LabeledData,
    models: &model::Models,
    shutdown: Shutdown,
) -> Result<(Summary, Vec<String>, BTreeMap<String, String>), Box<dyn std::error::Error>> {
    options.check()?;
    let mut settings = settings.clone();
    if !options.slack.is_empty() {
        // A paced webhook: up to max_in_flight sends wait for their slot
        // inside the call, so the call may take that long.
        let wait = settings.max_in_flight as u64 / u64::from(options.rate()?);
        settings.call_timeout = Some(Duration::from_secs(10 + wait));
    }
    let settings = &settings;
    let inboxes = Inboxes::default();
    #[cfg_attr(not(feature = "aws"), allow(unused_mut))]
    let mut topics = BTreeMap::new();
    #[cfg(feature = "aws")]
    let config = if aws.uses_aws() || options.sqs_queue_url().is_some() {
        if aws.kinesis_stream.is_some() && options.sqs_queue_url().is_some() {
            return Err(NotifyArgError::TwoSources.into());
        }
        aws.check()?;
        Some(super::aws::sdk_config(aws).await)
    } else {
        None
    };
    #[cfg(all(feature = "sqs", not(feature = "aws")))]
    let config = match options.sqs_queue_url() {
        Some(_) => Some(sdk_config().await),
        None => None,
    };

    let (classifier, policy, fallback): (BoxClassifier<Tweet>, _, BoxRouter<Tweet>) = {
        #[cfg(feature = "aws")]
        if let (Some(config), true) = (&config, aws.uses_aws()) {
            let (classifier, policy, about) = super::aws::classifier(aws, config, models).await?;
            let notifier = super::aws::notifier(aws, config, &inboxes).await?;
            for route in super::aws::known_routes() {
                if let Some(arn) = notifier.topic_for(&route) {
                    topics.insert(route, arn.to_string());
                }
            }
            println!("classifier in use: {about}");
            (classifier, policy, BoxRouter::new(notifier))
        } else {
            local(models, &inboxes)
        }
        #[cfg(not(feature = "aws"))]
        local(models, &inboxes)
    };
    let (router, mut banner) = router(options, settings, fallback, &inboxes)?;
    if !topics.is_empty() {
        banner.push(format!(
            "sns: routes {} (see --sns-topic-arn)",
            topics.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    banner.push("other routes: the local inboxes printed below".into());

    #[cfg(feature = "sqs")]
    if let (Some(url), Some(config)) = (options.sqs_queue_url(), &config) {
        // Read until empty: a 2 s long poll ends the run soon after the
        // last message; four receivers keep the pipeline fed.
        let source = streamsift::sqs::SqsSource::builder(config, url)
            .wait_time(Duration::from_secs(2))
            .receivers(4)
            .stop_when_empty(true)
            .build()
            .await
            .map_err(NotifySetupError::from)?;
        banner.insert(0, "source: the SQS queue (until it is empty)".into());
        print_banner(&banner);
        let stages = Stages {
            source,
            classifier,
            policy,
            router,
            inboxes: &inboxes,
            lines: None,
        };
        return Ok((
            run_stages(settings, data, stages, shutdown).await?,
            banner,
            topics,
        ));
    }
    #[cfg(feature = "aws")]
    if let (Some(stream), Some(config)) = (&aws.kinesis_stream, &config) {
        let source = super::aws::kinesis_source(aws, config, stream).await?;
        banner.insert(0, format!("source: Kinesis stream {stream}"));
        print_banner(&banner);
        let stages = Stages {
            source,
            classifier,
            policy,
            router,
            inboxes: &inboxes,
            lines: None,
        };
        return Ok((
            run_stages(settings, data, stages, shutdown).await?,
            banner,
            topics,
        ));
    }
    let lines = lines(super::TWEETS);
    let source =
        streamsift::fakes::MemorySource::from_payloads(settings.shards, lines.iter().cloned())
            .batch_size(50);
    banner.insert(
        0,
        "source: the bundled file (examples/data/tweets.jsonl)".into(),
    );
    print_banner(&banner);
    let stages = Stages {
        source,
        classifier,
        policy,
        router,
        inboxes: &inboxes,
        lines: Some(lines.len()),
    };
    Ok((
        run_stages(settings, data, stages, shutdown).await?,
        banner,
        topics,
    ))
}

fn print_banner(banner: &[String]) {
    for line in banner {
        println!("{line}");
    }
    println!();
}

fn local(
    models: &model::Models,
    inboxes: &Inboxes,
) -> (BoxClassifier<Tweet>, streamsift::Policy, BoxRouter<Tweet>) {
    (
        BoxClassifier::new(model::Triage::new(models)),
        model::triage_policy(),
        BoxRouter::new(inboxes.clone()),
    )
}
