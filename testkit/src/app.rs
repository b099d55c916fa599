//! One replica of a service running in-process on a free port, as the integration tests use it.

use std::future::Future;

use kit::config::Common;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::http::Client;

/// A running replica: its address, a client for it, and the token that stops it.
pub struct TestApp {
    /// A JSON-checking HTTP client for the replica.
    pub http: Client,
    /// `127.0.0.1:port`.
    pub addr: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Starts `run` (a service's `run`, given its common settings) on `database_url` and
    /// `nats_url`, listening on a free port. Requests may be sent at once: the listener is bound.
    pub async fn spawn<F, Fut>(database_url: &str, nats_url: &str, run: F) -> Self
    where
        F: FnOnce(Common, TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        kit::telemetry::init_for_tests();
        let mut common = Common::from_env(0, database_url).expect("default configuration");
        common.database_url = database_url.to_owned();
        common.nats_servers = nats_url.parse().expect("a NATS URL");
        common.nats_credentials = None;
        // Tests that want admin commands set the token in `run`.
        common.admin_token = None;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(common, listener, shutdown.clone()));
        let app = Self {
            http: Client::new(format!("http://{addr}")),
            addr,
            shutdown,
            task,
        };
        app.wait_ready().await;
        app
    }

    /// Waits until `/ready` answers 200: the database is migrated, NATS is connected and the
    /// service's subscriptions are registered, so a test may speak NATS to it directly.
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.http.get("/ready").await.status != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {} not ready after 30 s",
                self.addr
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits, at most `within`, for the replica to stop by itself (say, on an operator command),
    /// and returns how its `run` ended.
    pub async fn exited(self, within: std::time::Duration) -> anyhow::Result<()> {
        tokio::time::timeout(within, self.task)
            .await
            .map_err(|_| anyhow::anyhow!("replica {} still running after {within:?}", self.addr))?
            .expect("service task panicked")
    }

    /// Stops the replica the way SIGTERM does and waits for it to exit cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("service task panicked")
            .expect("service failed");
    }
}
