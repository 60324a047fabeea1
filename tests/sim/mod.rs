//! The deterministic simulation of issue 13: a seeded world (source, store,
//! components, faults, crashes) driving the real `Pipeline` and
//! `BatchProcessor` on tokio's paused clock, with an oracle that checks
//! named invariants after every step and at the end of every seed.

pub mod components;
pub mod driver;
pub mod logs;
pub mod oracle;
pub mod plan;
pub mod rng;
pub mod source;
