//! Starting the user service in-process on a free port, against throwaway servers.

use serde_json::{Value, json};
use testkit::{NatsServer, Postgres, app::TestApp};

/// Starts a replica of the user service on `database_url` and `nats_url`.
pub async fn spawn(database_url: &str, nats_url: &str) -> TestApp {
    TestApp::spawn(database_url, nats_url, |common, listener, shutdown| {
        user::run(user::Config { common }, listener, shutdown)
    })
    .await
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
        let app = spawn(&database_url, &nats.url()).await;
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
