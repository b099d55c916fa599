//! Test support: throwaway PostgreSQL and nats-server processes, started by the tests themselves.
//!
//! Every server runs under a small shell guardian that stops it and deletes its files when the
//! test process exits, however it exits, so a failed run leaves nothing behind.

pub mod app;
pub mod http;
pub mod nats;
pub mod postgres;
mod process;
pub mod stack;

pub use nats::NatsServer;
pub use postgres::Postgres;

/// Ports this process has handed out. Tests run in parallel, and a port one of them probed and
/// released may come back from the OS to another before the first has started its server on it.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Binds a free port on 127.0.0.1 that this process has never handed out (with `then` more
/// after it when asked: a service's replicas), and records them as handed out. The listener
/// is returned so that the caller can hold the port until it has chosen all it needs.
pub(crate) fn claim_ports(then: u16) -> Vec<std::net::TcpListener> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port on 127.0.0.1");
        let port = first.local_addr().expect("local addr").port();
        let mut listeners = vec![first];
        for next in 1..=then {
            let bound = port
                .checked_add(next)
                .and_then(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok());
            listeners.extend(bound);
        }
        let ports: Vec<u16> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
            .collect();
        if ports.len() == usize::from(then) + 1 && ports.iter().all(|p| !handed_out.contains(p)) {
            handed_out.extend(ports);
            return listeners;
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and that no other test of this process
/// was given.
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
