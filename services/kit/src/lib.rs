//! What every service process shares: configuration, JSON bodies, connections, health, shutdown,
//! metrics, tracing.
//!
//! The services differ in their data and messages; this crate holds the parts that must
//! behave the same in all of them, so that a fix here is a fix everywhere.

pub mod admin;
pub mod body;
pub mod config;
pub mod db;
pub mod health;
pub mod jetstream;
pub mod metrics;
pub mod nats;
pub mod serve;
pub mod telemetry;
