//! The stock saga with many requests in one batch, as under load: they wait in the stream while
//! no replica runs, and the replica that starts takes them all at once.

use std::collections::HashMap;

use async_nats::jetstream::{self, Context, message::PublishMessage};
use futures::StreamExt;
use serde_json::json;
use shared::{
    saga::{RejectReason, StockOutcome, StockRequest, StockVerdict},
    stream,
    subject::{PRODUCT_RELEASE, PRODUCT_RESERVE},
};
use testkit::{NatsServer, Postgres};
use uuid::Uuid;

use crate::helpers::{create, spawn, with};

/// Product 2 with `stock` units, and the stock worker stopped: what is sent now waits.
struct Waiting {
    nats: NatsServer,
    database_url: String,
    client: async_nats::Client,
    js: Context,
}

impl Waiting {
    async fn with_stock(stock: i32) -> Self {
        let nats = NatsServer::start();
        let database_url = Postgres::shared().database();
        let app = spawn(&database_url, &nats.url()).await;
        let product = with(create(2), "quantity", json!(stock));
        assert_eq!(app.http.post("/product", &product).await.status, 200);
        app.stop().await;
        let client = async_nats::connect(nats.url()).await.expect("nats");
        let js = jetstream::new(client.clone());
        Self {
            nats,
            database_url,
            client,
            js,
        }
    }

    async fn send(&self, subject: &str, payload: Vec<u8>) {
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(Uuid::new_v4().to_string());
        let ack = self.js.send_publish(subject.to_owned(), message).await;
        ack.expect("publish").await.expect("stored");
    }

    async fn request(&self, subject: &str, order_id: Uuid, product_id: i32, quantity: i32) {
        let request = StockRequest {
            order_id,
            product_id,
            quantity,
        };
        self.send(subject, serde_json::to_vec(&request).expect("json"))
            .await;
    }

    /// Starts a replica, which takes the waiting requests in one batch, and collects `count`
    /// verdicts, then waits until the worker has settled every request.
    async fn handle(&self, count: usize) -> (Vec<StockVerdict>, testkit::app::TestApp) {
        let mut verdicts = self.client.subscribe("product.evt.>").await.expect("sub");
        self.client.flush().await.expect("flush");
        let app = spawn(&self.database_url, &self.nats.url()).await;
        let mut seen = Vec::new();
        while seen.len() < count {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), verdicts.next());
            let message = next.await.expect("a verdict within 10 s").expect("sub");
            seen.push(serde_json::from_slice(&message.payload).expect("verdict"));
        }
        let saga = self
            .js
            .get_stream(stream::PRODUCT_SAGA.name)
            .await
            .expect("stream");
        testkit::eventually("the stock worker idle", || {
            let saga = saga.clone();
            async move {
                let info = saga.consumer_info(stream::PRODUCT_STOCK.name).await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
        (seen, app)
    }

    fn sql(&self, query: &str) -> String {
        Postgres::shared().query(&self.database_url, query)
    }
}

#[tokio::test]
async fn concurrent_orders_for_one_product_in_one_batch_sell_exactly_the_stock_each_with_its_own_answer()
 {
    let waiting = Waiting::with_stock(20).await;
    // 3, 1, 3, 1, ... units: 60 asked of 20, and a big order that does not fit leaves the
    // stock to the smaller ones after it.
    let orders: Vec<(Uuid, i32)> = (0..30)
        .map(|n| (Uuid::now_v7(), if n % 2 == 0 { 3 } else { 1 }))
        .collect();
    for (order, quantity) in &orders {
        waiting.request(PRODUCT_RESERVE, *order, 2, *quantity).await;
    }

    let (verdicts, app) = waiting.handle(orders.len()).await;

    let answers: HashMap<Uuid, StockVerdict> = verdicts.iter().map(|v| (v.order_id, *v)).collect();
    assert_eq!(answers.len(), orders.len(), "one answer for each order");
    // As if handled one by one, in order: each takes its units while they last.
    let mut left = 20;
    for (order, quantity) in &orders {
        let expected = if *quantity <= left {
            left -= quantity;
            (StockOutcome::Reserved, None)
        } else {
            (
                StockOutcome::Rejected,
                Some(RejectReason::InsufficientStock),
            )
        };
        let verdict = answers[order];
        assert_eq!((verdict.outcome, verdict.reason), expected, "order {order}");
    }
    let sold: i32 = answers
        .values()
        .filter(|v| v.outcome == StockOutcome::Reserved)
        .map(|v| v.quantity)
        .sum();
    assert_eq!(sold, 20, "exactly the stock is sold");
    assert_eq!(
        waiting.sql("select quantity from products where id = 2"),
        "0"
    );
    let held =
        waiting.sql("select coalesce(sum(quantity), 0) from reservations where state = 'reserved'");
    assert_eq!(held, "20");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_mixing_good_repeated_and_poison_requests_answers_every_good_one_and_keeps_the_poison_apart()
 {
    let waiting = Waiting::with_stock(10).await;
    let (a, b, unknown, poison) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    waiting.request(PRODUCT_RESERVE, a, 2, 2).await;
    waiting.request(PRODUCT_RESERVE, a, 2, 2).await; // redelivered
    waiting.request(PRODUCT_RESERVE, b, 2, 3).await;
    waiting.request(PRODUCT_RESERVE, poison, 2, 0).await; // no order asks for 0 units
    waiting
        .send(PRODUCT_RESERVE, b"{\"order_id\": 7}".to_vec())
        .await;
    waiting.request(PRODUCT_RESERVE, unknown, 77, 1).await;
    waiting.request(PRODUCT_RELEASE, a, 2, 2).await;

    let (verdicts, app) = waiting.handle(5).await;

    let mut by_order: HashMap<Uuid, Vec<(StockOutcome, Option<RejectReason>)>> = HashMap::new();
    for verdict in &verdicts {
        by_order
            .entry(verdict.order_id)
            .or_default()
            .push((verdict.outcome, verdict.reason));
    }
    let reserved = (StockOutcome::Reserved, None);
    assert_eq!(
        by_order[&a],
        [reserved, reserved, (StockOutcome::Released, None)],
        "a repeat is answered the same, and the release gives back"
    );
    assert_eq!(by_order[&b], [reserved]);
    assert_eq!(
        by_order[&unknown],
        [(StockOutcome::Rejected, Some(RejectReason::ProductNotFound))]
    );
    assert!(
        !by_order.contains_key(&poison),
        "the poison gets no verdict"
    );
    assert_eq!(
        waiting.sql("select quantity from products where id = 2"),
        "7"
    );
    let states = waiting.sql(&format!(
        "select order_id = '{a}', state from reservations order by 1 desc, 2"
    ));
    assert_eq!(states, "t|released\nf|rejected\nf|reserved");
    let mut dead = waiting
        .js
        .get_stream(stream::DEAD_LETTERS.name)
        .await
        .expect("DEAD_LETTERS");
    assert_eq!(dead.info().await.expect("info").state.messages, 2);
    app.stop().await;
}
