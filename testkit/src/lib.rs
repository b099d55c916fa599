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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port on 127.0.0.1")
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
