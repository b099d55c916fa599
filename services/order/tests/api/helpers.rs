//! Three services in-process on one nats-server, each with its own fresh database.

use std::time::Duration;

use async_nats::jetstream::{self, Context, message::PublishMessage};
use serde_json::{Value, json};
use shared::{
    saga::{RejectReason, StockOutcome, StockVerdict, UserVerdict},
    stream,
};
use testkit::{NatsServer, Postgres, app::TestApp, eventually};
use uuid::Uuid;

/// The admin token of [`World::with_admin`].
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The deadlines of a production order service.
pub const DEADLINES: order::Deadlines = order::Deadlines {
    redrive_after: Duration::from_secs(10),
    reject_after: Duration::from_secs(60),
    sweep_every: Duration::from_secs(1),
};

/// Starts a replica of the order service with the given deadlines.
pub async fn spawn_order_with_deadlines(
    database_url: &str,
    nats_url: &str,
    deadlines: order::Deadlines,
) -> TestApp {
    TestApp::spawn(database_url, nats_url, move |common, listener, shutdown| {
        order::run(
            order::Config {
                common,
                order_wait: Duration::from_secs(5),
                deadlines,
            },
            listener,
            shutdown,
        )
    })
    .await
}

async fn spawn_order_with(database_url: &str, nats_url: &str, admin: Option<&str>) -> TestApp {
    let deadlines = DEADLINES;
    let admin = admin.map(str::to_owned);
    TestApp::spawn(database_url, nats_url, |mut common, listener, shutdown| {
        common.admin_token = admin;
        let config = order::Config {
            common,
            order_wait: Duration::from_secs(5),
            deadlines,
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

/// The order service alone, with the streams of the services it talks to, which the test plays.
pub struct Lone {
    _nats: NatsServer,
    pub order: TestApp,
    pub database: String,
    pub js: Context,
    pub client: async_nats::Client,
}

impl Lone {
    /// With the order service's sweeper on `deadlines`.
    pub async fn new(deadlines: order::Deadlines) -> Self {
        let nats = NatsServer::start();
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        kit::jetstream::ensure_stream(&js, &stream::USER_SAGA, 1)
            .await
            .expect("USER_SAGA");
        kit::jetstream::ensure_stream(&js, &stream::PRODUCT_SAGA, 1)
            .await
            .expect("PRODUCT_SAGA");
        let database = Postgres::shared().database();
        let order = spawn_order_with_deadlines(&database, &nats.url(), deadlines).await;
        Self {
            _nats: nats,
            order,
            database,
            js,
            client,
        }
    }

    /// Places an order with `Prefer: respond-async` and waits until the saga has stored it.
    /// The NATS URL.
    pub fn order_nats_url(&self) -> String {
        self._nats.url()
    }

    pub async fn place_pending(&self, user_id: i32, product_id: i32, quantity: i32) -> Uuid {
        let response = reqwest::Client::new()
            .post(format!("http://{}/order", self.order.addr))
            .header("prefer", "respond-async")
            .json(&place(user_id, product_id, quantity))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("json");
        let id: Uuid = body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("uuid");
        eventually("the pending order", || async {
            (self.state(id).await == "pending").then_some(())
        })
        .await;
        id
    }

    pub async fn state(&self, id: Uuid) -> String {
        let reply = self.order.http.get(&format!("/order/{id}")).await;
        reply.json["state"].as_str().unwrap_or("absent").to_owned()
    }

    /// Publishes a verdict (with a fresh message id, as a redelivery would have) and waits until
    /// the order saga has acknowledged it.
    pub async fn deliver(&self, subject: &str, payload: Value, consumer: &str, stream: &str) {
        let message = PublishMessage::build()
            .payload(payload.to_string().into())
            .message_id(Uuid::new_v4().to_string());
        let ack = self
            .js
            .send_publish(subject.to_owned(), message)
            .await
            .expect("publish")
            .await
            .expect("ack");
        let stream = self.js.get_stream(stream).await.expect("stream");
        eventually("the acknowledgement", || async {
            let info = stream.clone().consumer_info(consumer).await.ok()?;
            (info.ack_floor.stream_sequence >= ack.sequence).then_some(())
        })
        .await;
    }

    /// Subscribes to the release commands the saga sends.
    pub async fn releases(&self) -> async_nats::Subscriber {
        self.client
            .subscribe("product.cmd.release")
            .await
            .expect("subscribe")
    }

    pub async fn user_verdict(&self, order_id: Uuid, valid: bool) {
        let subject = if valid {
            "user.evt.validated"
        } else {
            "user.evt.rejected"
        };
        let verdict = UserVerdict {
            order_id,
            user_id: 1,
            valid,
        };
        self.deliver(subject, json!(verdict), "order-user-verdicts", "USER_SAGA")
            .await;
    }

    pub async fn stock_verdict(
        &self,
        order_id: Uuid,
        outcome: StockOutcome,
        reason: Option<RejectReason>,
    ) {
        let verdict = StockVerdict {
            order_id,
            product_id: 2,
            quantity: 1,
            outcome,
            reason,
        };
        let subject = shared::subject::stock_verdict(outcome);
        self.deliver(
            subject,
            json!(verdict),
            "order-stock-verdicts",
            "PRODUCT_SAGA",
        )
        .await;
    }
}

/// The next release command on `releases`, within 5 s.
pub async fn next_release(releases: &mut async_nats::Subscriber) -> Value {
    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(5), releases.next())
        .await
        .expect("a release")
        .expect("subscription open");
    serde_json::from_slice(&message.payload).expect("json")
}
