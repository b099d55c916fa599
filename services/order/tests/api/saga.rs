//! The order saga. With the whole system: each way an order ends. With the order service
//! alone, the test playing the user and product services on JetStream: verdicts in either
//! order, and redeliveries.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use shared::saga::{OrderOutcome, OrderState, PlaceOrder, RejectReason, StockOutcome};
use testkit::Postgres;
use uuid::Uuid;

use testkit::eventually;

use crate::helpers::{DEADLINES, Lone, World, next_release};

#[tokio::test]
async fn an_order_for_an_existing_user_and_enough_stock_is_confirmed_and_takes_the_stock() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let placed = world.place(1, 2, 3).await;
    assert_eq!(placed.status, 200, "{}", placed.text);
    assert_eq!(world.stock(2).await, 7);
    let id = placed.json["id"].as_str().expect("id").to_owned();
    let order = world.order.http.get(&format!("/order/{id}")).await;
    assert_eq!(
        (&order.json["state"], &order.json["reason"]),
        (&json!("confirmed"), &Value::Null)
    );
    let held = world.product_sql(&format!(
        "select state from reservations where order_id = '{id}'"
    ));
    assert_eq!(held, "reserved");
}

#[tokio::test]
async fn an_order_for_an_unknown_user_is_rejected_and_its_reservation_released() {
    let world = World::new().await;
    world.product(2, 10).await;

    let placed = world.place(99, 2, 4).await;
    assert_eq!(
        (placed.status, &placed.json),
        (404, &json!({"status": "Invalid Request"}))
    );
    let (id, reason): (String, String) = {
        let row = Postgres::shared().query(&world.order_db, "select id, reason from orders");
        let (id, reason) = row.split_once('|').expect("one order");
        (id.to_owned(), reason.to_owned())
    };
    assert_eq!(reason, "user_not_found");
    // The stock had been reserved in parallel with the user check; the saga gives it back.
    let sql = format!("select state from reservations where order_id = '{id}'");
    eventually("the release", || async {
        (world.product_sql(&sql) == "released").then_some(())
    })
    .await;
    assert_eq!(world.stock(2).await, 10);
    let order = world.order.http.get(&format!("/order/{id}")).await;
    assert_eq!(
        (&order.json["state"], &order.json["reason"]),
        (&json!("rejected"), &json!("user_not_found"))
    );
}

#[tokio::test]
async fn an_order_for_an_unknown_product_or_beyond_the_stock_is_rejected_and_takes_nothing() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 5).await;

    let unknown = world.place(1, 77, 1).await;
    assert_eq!(
        (unknown.status, &unknown.json),
        (404, &json!({"status": "Invalid Request"}))
    );
    let beyond = world.place(1, 2, 6).await;
    assert_eq!(
        (beyond.status, &beyond.json),
        (409, &json!({"status": "Exceeded quantity limit"}))
    );
    assert_eq!(world.stock(2).await, 5);
    let reasons =
        Postgres::shared().query(&world.order_db, "select reason from orders order by reason");
    assert_eq!(reasons, "insufficient_stock\nproduct_not_found");
    let held = world.product_sql("select count(*) from reservations where state = 'reserved'");
    assert_eq!(held, "0");
}

#[tokio::test]
async fn the_user_verdict_may_arrive_before_or_after_the_stock_verdict() {
    let lone = Lone::new(DEADLINES).await;
    let mut outcomes = lone
        .client
        .subscribe("order.evt.>")
        .await
        .expect("subscribe");

    let user_first = lone.place_pending(1, 2, 1).await;
    lone.user_verdict(user_first, true).await;
    assert_eq!(
        lone.state(user_first).await,
        "pending",
        "one verdict decides nothing"
    );
    lone.stock_verdict(user_first, StockOutcome::Reserved, None)
        .await;
    assert_eq!(lone.state(user_first).await, "confirmed");

    let stock_first = lone.place_pending(1, 2, 1).await;
    lone.stock_verdict(stock_first, StockOutcome::Reserved, None)
        .await;
    assert_eq!(lone.state(stock_first).await, "pending");
    lone.user_verdict(stock_first, true).await;
    assert_eq!(lone.state(stock_first).await, "confirmed");

    for expected in [user_first, stock_first] {
        let message = tokio::time::timeout(Duration::from_secs(5), outcomes.next())
            .await
            .expect("outcome")
            .expect("sub");
        let outcome: OrderOutcome = serde_json::from_slice(&message.payload).expect("outcome json");
        assert_eq!(
            (outcome.order_id, outcome.state),
            (expected, OrderState::Confirmed)
        );
        assert_eq!(message.subject.as_str(), "order.evt.confirmed");
    }
}

#[tokio::test]
async fn a_rejection_after_stock_was_reserved_sends_one_release_whichever_verdict_came_first() {
    let lone = Lone::new(DEADLINES).await;
    let mut releases = lone.releases().await;

    let stock_first = lone.place_pending(1, 2, 1).await;
    lone.stock_verdict(stock_first, StockOutcome::Reserved, None)
        .await;
    lone.user_verdict(stock_first, false).await;
    let user_first = lone.place_pending(1, 2, 1).await;
    lone.user_verdict(user_first, false).await;
    lone.stock_verdict(user_first, StockOutcome::Reserved, None)
        .await;

    for order_id in [stock_first, user_first] {
        assert_eq!(lone.state(order_id).await, "rejected");
        let release = next_release(&mut releases).await;
        assert_eq!(
            release,
            json!({"order_id": order_id, "product_id": 2, "quantity": 1})
        );
    }
    let reason = lone
        .order
        .http
        .get(&format!("/order/{user_first}"))
        .await
        .json["reason"]
        .clone();
    assert_eq!(reason, "user_not_found");
}

#[tokio::test]
async fn a_redelivered_verdict_changes_nothing_already_decided() {
    let lone = Lone::new(DEADLINES).await;
    let id = lone.place_pending(1, 2, 1).await;
    lone.stock_verdict(
        id,
        StockOutcome::Rejected,
        Some(RejectReason::InsufficientStock),
    )
    .await;
    lone.user_verdict(id, true).await;
    let decided = lone.order.http.get(&format!("/order/{id}")).await.json;
    assert_eq!(
        (&decided["state"], &decided["reason"]),
        (&json!("rejected"), &json!("insufficient_stock"))
    );

    // The same verdicts again, and contradicting ones: the first recorded answer stands.
    lone.stock_verdict(
        id,
        StockOutcome::Rejected,
        Some(RejectReason::InsufficientStock),
    )
    .await;
    lone.user_verdict(id, false).await;
    lone.user_verdict(id, true).await;
    assert_eq!(
        lone.order.http.get(&format!("/order/{id}")).await.json,
        decided
    );
}

#[tokio::test]
async fn stock_reserved_late_for_an_order_already_rejected_is_released() {
    let lone = Lone::new(DEADLINES).await;
    let mut releases = lone.releases().await;
    let id = lone.place_pending(1, 2, 1).await;
    lone.stock_verdict(
        id,
        StockOutcome::Rejected,
        Some(RejectReason::InsufficientStock),
    )
    .await;
    lone.user_verdict(id, true).await;

    // A reservation the order never asked to keep (say, a redelivered reserve that found stock).
    lone.stock_verdict(id, StockOutcome::Reserved, None).await;
    let release = next_release(&mut releases).await;
    assert_eq!(release["order_id"], json!(id));
    assert_eq!(lone.state(id).await, "rejected");
}

#[tokio::test]
async fn stock_reserved_for_an_order_this_service_does_not_know_is_released() {
    let lone = Lone::new(DEADLINES).await;
    let mut releases = lone.releases().await;
    let stranger = Uuid::now_v7();

    lone.stock_verdict(stranger, StockOutcome::Reserved, None)
        .await;

    let release = next_release(&mut releases).await;
    assert_eq!(
        release,
        json!({"order_id": stranger, "product_id": 2, "quantity": 1})
    );
    assert_eq!(lone.state(stranger).await, "absent");
}

#[tokio::test]
async fn a_redelivered_place_command_stores_the_order_once_and_asks_once() {
    let lone = Lone::new(DEADLINES).await;
    let order = PlaceOrder {
        order_id: Uuid::now_v7(),
        user_id: 1,
        product_id: 2,
        quantity: 1,
        notify: None,
    };
    for _ in 0..3 {
        lone.deliver("order.cmd.place", json!(order), "order-place", "ORDER_SAGA")
            .await;
    }
    assert_eq!(lone.state(order.order_id).await, "pending");
    // The validate and reserve commands carry the order id as message id: stored once each.
    let mut users = lone.js.get_stream("USER_SAGA").await.expect("stream");
    assert_eq!(users.info().await.expect("info").state.messages, 1);
    let mut products = lone.js.get_stream("PRODUCT_SAGA").await.expect("stream");
    assert_eq!(products.info().await.expect("info").state.messages, 1);
}
