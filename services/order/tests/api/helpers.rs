//! Three services in-process on one nats-server, each with its own fresh database.

use serde_json::{Value, json};
use testkit::{NatsServer, Postgres, app::TestApp};

/// The admin token of [`World::with_admin`].
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Starts a replica of the order service.
pub async fn spawn_order(database_url: &str, nats_url: &str) -> TestApp {
    spawn_order_with(database_url, nats_url, None).await
}

async fn spawn_order_with(database_url: &str, nats_url: &str, admin: Option<&str>) -> TestApp {
    let admin = admin.map(str::to_owned);
    TestApp::spawn(database_url, nats_url, |mut common, listener, shutdown| {
        common.admin_token = admin;
        let config = order::Config {
            common,
            order_wait: std::time::Duration::from_secs(5),
        };
        order::run(config, listener, shutdown)
    })
    .await
}

/// Starts a replica of the user service.
pub async fn spawn_user(database_url: &str, nats_url: &str, admin: Option<&str>) -> TestApp {
    let admin = admin.map(str::to_owned);
    TestApp::spawn(database_url, nats_url, |mut common, listener, shutdown| {
        common.admin_token = admin;
        user::run(user::Config { common }, listener, shutdown)
    })
    .await
}

/// Starts a replica of the product service.
pub async fn spawn_product(database_url: &str, nats_url: &str, admin: Option<&str>) -> TestApp {
    let admin = admin.map(str::to_owned);
    TestApp::spawn(database_url, nats_url, |mut common, listener, shutdown| {
        common.admin_token = admin;
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
    /// The system without admin commands (the default).
    pub async fn new() -> Self {
        Self::start(None).await
    }

    /// The system with admin commands on, guarded by [`ADMIN_TOKEN`].
    pub async fn with_admin() -> Self {
        Self::start(Some(ADMIN_TOKEN)).await
    }

    async fn start(admin: Option<&str>) -> Self {
        let nats = NatsServer::start();
        let postgres = Postgres::shared();
        let (user_db, product_db, order_db) = (
            postgres.database(),
            postgres.database(),
            postgres.database(),
        );
        // User and product first: they create the streams the order saga consumes from.
        let user = spawn_user(&user_db, &nats.url(), admin).await;
        let product = spawn_product(&product_db, &nats.url(), admin).await;
        let order = spawn_order_with(&order_db, &nats.url(), admin).await;
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
