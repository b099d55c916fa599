//! Test support: throwaway PostgreSQL and nats-server processes, started by the tests themselves.
//!
//! Every server runs under a small shell guardian that stops it and deletes its files when the
//! test process exits, however it exits, so a failed run leaves nothing behind.

pub mod app;
pub mod http;
pub mod nats;
pub mod postgres;
mod process;
pub mod prometheus;
pub mod stack;

pub use nats::NatsServer;
pub use postgres::Postgres;
pub use process::Guarded;

/// Ports this process has handed out: tests run in parallel, and each server must get a port
/// no other test was given.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Where test servers listen: below Linux's ephemeral range (32768 and up by default), from
/// which the OS picks the local port of every outgoing connection. A port picked from that range
/// and released until the server binds it could meanwhile become some connection's local port.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Binds a free port on 127.0.0.1, outside the ephemeral range, that this process has never
/// handed out (with `then` more after it when asked: a service's replicas), and records them
/// as handed out. The listeners are returned so that the caller can hold the ports until it has
/// chosen all it needs.
pub(crate) fn claim_ports(then: u16) -> Vec<std::net::TcpListener> {
    use std::hash::{BuildHasher, Hasher};
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start - then);
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let first = TEST_PORTS.start + u16::try_from(random % span).unwrap_or(0);
        let ports: Vec<u16> = (first..=first + then).collect();
        if ports.iter().any(|p| handed_out.contains(p)) {
            continue;
        }
        let listeners: Vec<std::net::TcpListener> = ports
            .iter()
            .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).ok())
            .collect();
        if listeners.len() == ports.len() {
            handed_out.extend(ports);
            return listeners;
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range, and that
/// no other test of this process was given.
pub fn free_port() -> u16 {
    claim_ports(0)[0].local_addr().expect("local addr").port()
}

/// Polls `check` every 10 ms until it returns `Some`, panicking with `what` after 10 s: how a
/// test waits for something asynchronous to have happened, without guessing a sleep.
pub async fn eventually<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
