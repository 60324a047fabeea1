//! What the support-tweets serving examples (`lambda_support_tweets`,
//! `kcl_support_tweets`) share: loading the bundled or given models once,
//! and the notifier; and the two mains, so the tests can run them in a
//! child process of their own (`cargo test --examples` builds examples as
//! test harnesses, not as these binaries).

#![allow(dead_code)]

#[cfg(feature = "kcl")]
pub mod kcl;
#[cfg(feature = "lambda")]
pub mod lambda;

use std::sync::Arc;

use super::app::Tweet;
use super::app::model::{self, Models};
use streamsift::local::LocalModel;
use streamsift::{Delivery, Receipt, RouteError, Router};

const BUNDLED_ACTIONABLE: &str = include_str!("../data/support_actionable.model.json");
const BUNDLED_TEAM: &str = include_str!("../data/support_team.model.json");

/// The models, from `MODEL_DIR` or the copies bundled at build time.
pub fn load_models() -> Result<Models, Box<dyn std::error::Error>> {
    let (actionable, team) = match std::env::var_os("MODEL_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            (
                LocalModel::load(dir.join("support_actionable.model.json"))?,
                LocalModel::load(dir.join("support_team.model.json"))?,
            )
        }
        None => (
            LocalModel::from_json(BUNDLED_ACTIONABLE)?,
            LocalModel::from_json(BUNDLED_TEAM)?,
        ),
    };
    let figure = |key: &str| {
        actionable
            .evaluation
            .as_ref()
            .map(|e| e[key].clone())
            .ok_or_else(|| format!("the actionable model file has no `{key}` in its evaluation"))
    };
    let held_out = serde_json::from_value(figure("held_out")?)?;
    let fingerprint = serde_json::from_value(figure("fingerprint")?)?;
    Ok(Models {
        actionable: Arc::new(actionable),
        team: Arc::new(team),
        held_out,
        fingerprint,
        origin: model::Origin::Bundled,
    })
}

/// Where notifications go.
pub enum Notify {
    /// Written to the log (no topic configured).
    Log,
    /// Published to SNS.
    #[cfg(feature = "sns")]
    Sns(streamsift::sns::SnsRouter<Tweet>),
}

impl Router<Tweet> for Notify {
    async fn route(&self, d: &Delivery<'_, Tweet>) -> Result<Receipt, RouteError> {
        match self {
            Notify::Log => {
                tracing::info!(
                    route = %d.route,
                    tweet_id = %d.item.id_str,
                    author = %d.item.user.screen_name,
                    "notification (dry run: no SNS_TOPIC_ARN)"
                );
                Ok(Receipt::new(d.route.clone()))
            }
            #[cfg(feature = "sns")]
            Notify::Sns(sns) => sns.route(d).await,
        }
    }
}

pub async fn notifier() -> Result<Notify, Box<dyn std::error::Error>> {
    #[cfg(feature = "sns")]
    if let Ok(arn) = std::env::var("SNS_TOPIC_ARN") {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sns = streamsift::sns::SnsRouter::<Tweet>::builder(&config)
            .topic(arn)
            .message_attributes(true)
            .source_name("support_tweets")
            .build()
            .await?;
        return Ok(Notify::Sns(sns));
    }
    Ok(Notify::Log)
}
