//! What every service process shares: configuration, JSON bodies, connections, health, start-up,
//! shutdown and panics, metrics, tracing.
//!
//! The services differ in their data and messages; this crate holds the parts that must
//! behave the same in all of them, so that a fix here is a fix everywhere.

/// The services' allocator: small, short-lived allocations (messages, JSON, headers) are most of
/// what they do, and mimalloc serves them faster than the system's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod body;
pub mod config;
pub mod db;
pub mod health;
pub mod jetstream;
pub mod metrics;
pub mod nats;
pub mod panics;
pub mod pool;
pub mod serve;
pub mod starting;
pub mod telemetry;
