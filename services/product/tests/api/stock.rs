//! The product service's side of the order saga, driven over JetStream as the order service
//! drives it: `product.cmd.reserve|release` in, `product.evt.reserved|rejected|released` out.

use std::{collections::HashSet, time::Duration};

use async_nats::{
    Client, Subscriber,
    jetstream::{self, Context, message::PublishMessage},
};
use futures::{FutureExt, StreamExt};
use serde_json::json;
use shared::{
    saga::{
        RejectReason::{self, InsufficientStock, ProductNotFound},
        StockOutcome, StockRequest, StockVerdict,
    },
    stream,
    subject::{self, PRODUCT_RELEASE, PRODUCT_RESERVE},
};
use testkit::Postgres;
use uuid::Uuid;

use crate::helpers::{World, create, with};

/// The test playing the order service: sends saga commands, watches the verdicts.
struct Saga {
    world: World,
    client: Client,
    js: Context,
    verdicts: Subscriber,
}

impl Saga {
    /// A product service with product 2 holding `stock` units, and a subscription to its verdicts.
    async fn with_stock(stock: i32) -> Self {
        let world = World::new().await;
        let product = with(create(2), "quantity", json!(stock));
        assert_eq!(world.app.http.post("/product", &product).await.status, 200);
        let client = async_nats::connect(world.nats.url()).await.expect("nats");
        let verdicts = client.subscribe("product.evt.>").await.expect("subscribe");
        client.flush().await.expect("subscription registered");
        let js = jetstream::new(client.clone());
        Self {
            world,
            client,
            js,
            verdicts,
        }
    }

    /// Publishes `payload` on `subject` under a fresh `Nats-Msg-Id`, so that sending the same
    /// command twice is a redelivery, not a duplicate JetStream would drop.
    async fn send(&self, subject: &str, payload: &[u8]) {
        let id = Uuid::new_v4().to_string();
        let message = PublishMessage::build()
            .payload(payload.to_vec().into())
            .message_id(id);
        let ack = self.js.send_publish(subject.to_owned(), message).await;
        ack.expect("publish").await.expect("stored by PRODUCT_SAGA");
    }

    async fn reserve(&self, order_id: Uuid, quantity: i32) {
        let request = request(order_id, 2, quantity);
        self.send(PRODUCT_RESERVE, &request).await;
    }

    async fn release(&self, order_id: Uuid, quantity: i32) {
        let request = request(order_id, 2, quantity);
        self.send(PRODUCT_RELEASE, &request).await;
    }

    /// The next verdict published, with its subject.
    async fn next_verdict(&mut self) -> (String, StockVerdict) {
        let next = tokio::time::timeout(Duration::from_secs(10), self.verdicts.next()).await;
        let message = next.expect("a verdict within 10 s").expect("subscribed");
        let verdict = serde_json::from_slice(&message.payload).expect("a StockVerdict");
        (message.subject.to_string(), verdict)
    }

    /// Asserts that the next verdict is `expected`, on its outcome's subject.
    async fn expect(&mut self, expected: StockVerdict) {
        let (subject, verdict) = self.next_verdict().await;
        let on = subject::stock_verdict(expected.outcome);
        assert_eq!((subject.as_str(), verdict), (on, expected));
    }

    /// Asserts that no verdict was published beyond those already taken.
    async fn expect_no_more_verdicts(&mut self) {
        // The round trip makes sure anything published before now has reached this client.
        self.client.flush().await.expect("flush");
        if let Some(Some(message)) = self.verdicts.next().now_or_never() {
            panic!("unexpected verdict on {}", message.subject);
        }
    }

    /// Product 2's stock as the product service reports it.
    async fn stock(&self) -> i64 {
        let product = self.world.app.http.get("/product/2").await;
        product.json["quantity"].as_i64().expect("quantity")
    }

    async fn set_stock(&self, quantity: i32) {
        let update = json!({"command": "update", "id": 2, "quantity": quantity});
        let updated = self.world.app.http.post("/product", &update).await;
        assert_eq!(updated.status, 200);
    }

    /// The recorded state of `order_id`'s reservation, empty when there is none.
    fn reservation(&self, order_id: Uuid) -> String {
        let sql = format!("select state from reservations where order_id = '{order_id}'");
        Postgres::shared().query(&self.world.database_url, &sql)
    }

    /// Waits until the stock worker has acknowledged (or terminated) every command it was sent.
    async fn worker_idle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let saga = self.js.get_stream(stream::PRODUCT_SAGA.name).await;
        let saga = saga.expect("PRODUCT_SAGA");
        loop {
            let info = saga.consumer_info(stream::PRODUCT_STOCK.name).await;
            let info = info.expect("consumer info");
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker busy: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn request(order_id: Uuid, product_id: i32, quantity: i32) -> Vec<u8> {
    let request = StockRequest {
        order_id,
        product_id,
        quantity,
    };
    serde_json::to_vec(&request).expect("serialisable")
}

/// The verdict on `order_id`'s request for `quantity` units of product 2.
fn verdict(order_id: Uuid, quantity: i32, outcome: StockOutcome) -> StockVerdict {
    let product_id = 2;
    StockVerdict {
        order_id,
        product_id,
        quantity,
        outcome,
        reason: None,
    }
}

fn reserved(order_id: Uuid, quantity: i32) -> StockVerdict {
    verdict(order_id, quantity, StockOutcome::Reserved)
}

fn released(order_id: Uuid, quantity: i32) -> StockVerdict {
    verdict(order_id, quantity, StockOutcome::Released)
}

fn rejected(order_id: Uuid, quantity: i32, reason: RejectReason) -> StockVerdict {
    let reason = Some(reason);
    StockVerdict {
        reason,
        ..verdict(order_id, quantity, StockOutcome::Rejected)
    }
}

#[tokio::test]
async fn a_reserve_takes_the_units_once_however_often_it_is_delivered() {
    let mut saga = Saga::with_stock(10).await;
    let order = Uuid::now_v7();

    saga.reserve(order, 3).await;
    saga.expect(reserved(order, 3)).await;
    assert_eq!(saga.stock().await, 7);

    saga.reserve(order, 3).await;
    saga.expect(reserved(order, 3)).await;
    assert_eq!(saga.stock().await, 7);
    assert_eq!(saga.reservation(order), "reserved");
}

#[tokio::test]
async fn a_reserve_beyond_the_stock_is_rejected_and_takes_nothing() {
    let mut saga = Saga::with_stock(2).await;
    let order = Uuid::now_v7();

    saga.reserve(order, 3).await;

    saga.expect(rejected(order, 3, InsufficientStock)).await;
    assert_eq!(saga.stock().await, 2);
    assert_eq!(saga.reservation(order), "rejected");
}

#[tokio::test]
async fn a_reserve_for_an_unknown_product_is_rejected_as_product_not_found() {
    let mut saga = Saga::with_stock(2).await;
    let order = Uuid::now_v7();

    saga.send(PRODUCT_RESERVE, &request(order, 77, 1)).await;

    let mut not_found = rejected(order, 1, ProductNotFound);
    not_found.product_id = 77;
    saga.expect(not_found).await;
    assert_eq!(saga.stock().await, 2);
}

#[tokio::test]
async fn a_redelivered_rejected_reserve_stays_rejected_even_after_a_restock() {
    let mut saga = Saga::with_stock(2).await;
    let order = Uuid::now_v7();
    saga.reserve(order, 5).await;
    saga.expect(rejected(order, 5, InsufficientStock)).await;

    saga.set_stock(10).await;
    saga.reserve(order, 5).await;

    saga.expect(rejected(order, 5, InsufficientStock)).await;
    assert_eq!(saga.stock().await, 10);
}

#[tokio::test]
async fn a_release_gives_back_what_the_order_took_once_however_often_it_is_delivered() {
    let mut saga = Saga::with_stock(10).await;
    let order = Uuid::now_v7();
    saga.reserve(order, 4).await;
    saga.expect(reserved(order, 4)).await;

    saga.release(order, 4).await;
    saga.expect(released(order, 4)).await;
    assert_eq!(saga.stock().await, 10);

    saga.release(order, 4).await;
    saga.expect(released(order, 4)).await;
    assert_eq!(saga.stock().await, 10);
    assert_eq!(saga.reservation(order), "released");
}

#[tokio::test]
async fn a_release_onto_a_stock_restocked_to_the_most_it_can_hold_keeps_it_there() {
    let mut saga = Saga::with_stock(10).await;
    let order = Uuid::now_v7();
    saga.reserve(order, 4).await;
    saga.expect(reserved(order, 4)).await;
    saga.set_stock(i32::MAX).await;

    saga.release(order, 4).await;

    saga.expect(released(order, 4)).await;
    assert_eq!(saga.stock().await, i64::from(i32::MAX));
    assert_eq!(saga.reservation(order), "released");
}

#[tokio::test]
async fn a_reserve_arriving_after_its_release_takes_nothing() {
    let mut saga = Saga::with_stock(10).await;
    let order = Uuid::now_v7();

    saga.release(order, 4).await;
    saga.expect(released(order, 4)).await;
    saga.reserve(order, 4).await;

    saga.expect(released(order, 4)).await;
    assert_eq!(saga.stock().await, 10);
    assert_eq!(saga.reservation(order), "released");
}

#[tokio::test]
async fn a_malformed_reserve_takes_nothing_and_does_not_stop_the_worker() {
    let mut saga = Saga::with_stock(10).await;
    let (zero, negative, good) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let no_quantity = json!({"order_id": Uuid::now_v7(), "product_id": 2});
    saga.send(PRODUCT_RESERVE, b"not json").await;
    saga.send(PRODUCT_RESERVE, no_quantity.to_string().as_bytes())
        .await;
    saga.reserve(zero, 0).await;
    saga.reserve(negative, -5).await;

    saga.reserve(good, 1).await;

    saga.expect(reserved(good, 1)).await;
    saga.worker_idle().await;
    saga.expect_no_more_verdicts().await;
    assert_eq!(saga.stock().await, 9);
    assert_eq!(saga.reservation(zero), "");
    assert_eq!(saga.reservation(negative), "");
}

#[tokio::test]
async fn concurrent_reserves_never_take_more_than_the_stock() {
    let mut saga = Saga::with_stock(20).await;
    let orders: HashSet<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();

    futures::future::join_all(orders.iter().map(|order| saga.reserve(*order, 1))).await;

    let (mut reserved, mut rejected, mut answered) = (0, 0, HashSet::new());
    for _ in 0..orders.len() {
        let (_, verdict) = saga.next_verdict().await;
        let order = verdict.order_id;
        assert!(answered.insert(order), "a second verdict for {order}");
        match (verdict.outcome, verdict.reason) {
            (StockOutcome::Reserved, None) => reserved += 1,
            (StockOutcome::Rejected, Some(InsufficientStock)) => rejected += 1,
            other => panic!("unexpected verdict {other:?}"),
        }
    }
    assert_eq!((reserved, rejected), (20, 30));
    assert_eq!(answered, orders);
    assert_eq!(saga.stock().await, 0);
}
