//! Shared test support: emulators started by the tests themselves.
#![allow(dead_code)]

pub mod child;
pub mod logs;
#[cfg(feature = "mturk")]
pub mod mturk_server;
pub mod reconcile;

#[cfg(any(
    feature = "kinesis",
    feature = "dynamodb",
    feature = "sns",
    feature = "sagemaker",
    feature = "machine-learning"
))]
pub mod faulty_http;
#[cfg(feature = "kinesis")]
pub mod kinesis_local;
#[cfg(feature = "kinesis")]
pub mod kinesis_streams;
#[cfg(feature = "lambda")]
pub mod lambda_runtime_api;
#[cfg(any(
    feature = "kinesis",
    feature = "dynamodb",
    feature = "sns",
    feature = "sqs",
    feature = "sagemaker",
    feature = "machine-learning",
    feature = "sqs"
))]
pub mod moto;
#[cfg(feature = "sns")]
pub mod sns_sqs;
#[cfg(feature = "kafka")]
pub mod tansu;
