//! Starting the product service in-process on a free port, against throwaway servers.

use serde_json::{Value, json};
use testkit::{NatsServer, Postgres, app::TestApp};

/// Starts a replica of the product service on `database_url` and `nats_url`.
pub async fn spawn(database_url: &str, nats_url: &str) -> TestApp {
    TestApp::spawn(database_url, nats_url, |common, listener, shutdown| {
        product::run(product::Config { common }, listener, shutdown)
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

/// The create command for a product with `id`; the price is the JSON integer `157` on purpose,
/// so every test also checks that it comes back as the float `157.0`.
pub fn create(id: i32) -> Value {
    json!({"command": "create", "id": id, "name": format!("product{id}"), "description": format!("about product {id}"), "price": 157, "quantity": 9})
}

/// The record the contract returns for [`create`]`(id)`.
pub fn record(id: i32) -> Value {
    json!({"id": id, "name": format!("product{id}"), "description": format!("about product {id}"), "price": 157.0, "quantity": 9})
}

/// The delete command that matches [`create`]`(id)`.
pub fn delete(id: i32) -> Value {
    json!({"command": "delete", "id": id, "name": format!("product{id}"), "price": 157, "quantity": 9})
}

/// `body` with `key` set to `value`.
pub fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// `body` without `key`.
pub fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().expect("object").remove(key);
    body
}
