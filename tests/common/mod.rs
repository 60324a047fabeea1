//! Shared test support: emulators started by the tests themselves.
#![allow(dead_code)]

#[cfg(feature = "kinesis")]
pub mod faulty_http;
#[cfg(feature = "kinesis")]
pub mod kinesis_local;
#[cfg(any(feature = "kinesis", feature = "dynamodb"))]
pub mod moto;
