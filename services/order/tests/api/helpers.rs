//! Three services in-process on one nats-server, each with its own fresh database.

use serde_json::{Value, json};
use testkit::{NatsServer, Postgres, app::TestApp};

/// Starts a replica of the order service.
pub async fn spawn_order(database_url: &str, nats_url: &str) -> TestApp {
    TestApp::spawn(database_url, nats_url, |common, listener, shutdown| {
        let config = order::Config {
            common,
            order_wait: std::time::Duration::from_secs(5),
        };
        order::run(config, listener, shutdown)
    })
    .await
}

/// Starts a replica of the user service.
pub async fn spawn_user(database_url: &str, nats_url: &str) -> TestApp {
    TestApp::spawn(database_url, nats_url, |common, listener, shutdown| {
        user::run(user::Config { common }, listener, shutdown)
    })
    .await
}

/// Starts a replica of the product service.
pub async fn spawn_product(database_url: &str, nats_url: &str) -> TestApp {
    TestApp::spawn(database_url, nats_url, |common, listener, shutdown| {
        product::run(product::Config { common }, listener, shutdown)
    })
    .await
}

/// The whole system: one replica of each service.
pub struct World {
    /// Dropping it stops the server, so it lives as long as the world even when no test reads it.
    #[allow(dead_code)]
    pub nats: NatsServer,
    #[allow(dead_code)]
    pub user_db: String,
    pub product_db: String,
    pub order_db: String,
    pub user: TestApp,
    pub product: TestApp,
    pub order: TestApp,
}

impl World {
    pub async fn new() -> Self {
        let nats = NatsServer::start();
        let postgres = Postgres::shared();
        let (user_db, product_db, order_db) = (
            postgres.database(),
            postgres.database(),
            postgres.database(),
        );
        // User and product first: they create the streams the order saga consumes from.
        let user = spawn_user(&user_db, &nats.url()).await;
        let product = spawn_product(&product_db, &nats.url()).await;
        let order = spawn_order(&order_db, &nats.url()).await;
        Self {
            nats,
            user_db,
            product_db,
            order_db,
            user,
            product,
            order,
        }
    }

    /// Creates user `id` through the user service.
    pub async fn user(&self, id: i32) {
        let body =
            json!({"command": "create", "id": id, "username": "u", "email": "e", "password": "p"});
        assert_eq!(self.user.http.post("/user", &body).await.status, 200);
    }

    /// Creates product `id` with `quantity` in stock through the product service.
    pub async fn product(&self, id: i32, quantity: i32) {
        let body = json!({"command": "create", "id": id, "name": "n", "description": "d", "price": 2.5, "quantity": quantity});
        assert_eq!(self.product.http.post("/product", &body).await.status, 200);
    }

    /// The product's stock as the product service reports it.
    pub async fn stock(&self, id: i32) -> i64 {
        self.product.http.get(&format!("/product/{id}")).await.json["quantity"]
            .as_i64()
            .expect("quantity")
    }

    /// Places an order through the order service.
    pub async fn place(
        &self,
        user_id: i32,
        product_id: i32,
        quantity: i32,
    ) -> testkit::http::Reply {
        self.order
            .http
            .post("/order", &place(user_id, product_id, quantity))
            .await
    }

    /// Runs `sql` against the product database.
    pub fn product_sql(&self, sql: &str) -> String {
        Postgres::shared().query(&self.product_db, sql)
    }
}

/// The body of a valid order.
pub fn place(user_id: i32, product_id: i32, quantity: i32) -> Value {
    json!({"command": "place order", "user_id": user_id, "product_id": product_id, "quantity": quantity})
}
