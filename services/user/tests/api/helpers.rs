//! Starting the user service in-process on a free port, against throwaway servers.

use kit::config::Common;
use serde_json::{Value, json};
use testkit::{NatsServer, Postgres, http::Client};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One running replica of the service.
pub struct TestApp {
    pub http: Client,
    pub addr: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Starts a replica on `database_url` and `nats_url`, listening on a free port.
    pub async fn spawn(database_url: &str, nats_url: &str) -> Self {
        let mut common = Common::from_env(0, database_url).expect("config");
        common.database_url = database_url.to_owned();
        common.nats_url = nats_url.to_owned();
        common.nats_credentials = None;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(user::run(
            user::Config { common },
            listener,
            shutdown.clone(),
        ));
        Self {
            http: Client::new(format!("http://{addr}")),
            addr,
            shutdown,
            task,
        }
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

/// A fresh database and nats-server, and one replica on them.
pub struct World {
    pub nats: NatsServer,
    pub database_url: String,
    pub app: TestApp,
}

impl World {
    pub async fn new() -> Self {
        let nats = NatsServer::start();
        let database_url = Postgres::shared().database();
        let app = TestApp::spawn(&database_url, &nats.url()).await;
        Self {
            nats,
            database_url,
            app,
        }
    }
}

/// The create command for a user with `id` and simple field values.
pub fn create(id: i32) -> Value {
    json!({"command": "create", "id": id, "username": format!("user{id}"), "email": format!("u{id}@example.com"), "password": "secret"})
}

/// The contract's hash of "secret".
pub const SECRET_SHA256: &str = "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B";
