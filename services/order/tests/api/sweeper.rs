//! Deadlines: an order nobody answers is asked about again, then rejected, and never keeps stock.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use shared::saga::StockOutcome;
use testkit::{Postgres, eventually};

use crate::helpers::{Lone, spawn_order_with_deadlines};

const FAST: order::Deadlines = order::Deadlines {
    redrive_after: Duration::from_millis(300),
    reject_after: Duration::from_millis(1500),
    sweep_every: Duration::from_millis(100),
};

/// How many messages on `subject` the stream holds.
async fn stored(lone: &Lone, stream: &str, subject: &str) -> u64 {
    let stream = lone.js.get_stream(stream).await.expect("stream");
    let mut subjects = stream.info_with_subjects(subject).await.expect("info");
    let mut count = 0;
    while let Some(Ok((name, n))) = subjects.next().await {
        if name == subject {
            count = u64::try_from(n).unwrap_or(0);
        }
    }
    count
}

#[tokio::test]
async fn an_order_left_without_verdicts_is_asked_about_again_and_then_confirmed() {
    let lone = Lone::new(order::Deadlines {
        reject_after: Duration::from_secs(60),
        ..FAST
    })
    .await;
    let id = lone.place_pending(1, 2, 1).await;
    assert_eq!(stored(&lone, "USER_SAGA", "user.cmd.validate").await, 1);

    // Nobody answered: past the first deadline the sweeper asks again, under new message ids.
    eventually("the validation requested again", || async {
        (stored(&lone, "USER_SAGA", "user.cmd.validate").await >= 2).then_some(())
    })
    .await;
    assert!(stored(&lone, "PRODUCT_SAGA", "product.cmd.reserve").await >= 2);

    // Only the missing verdict is asked for once the other is in.
    lone.user_verdict(id, true).await;
    let reserves = stored(&lone, "PRODUCT_SAGA", "product.cmd.reserve").await;
    let validations = stored(&lone, "USER_SAGA", "user.cmd.validate").await;
    eventually("the reservation requested again", || async {
        (stored(&lone, "PRODUCT_SAGA", "product.cmd.reserve").await > reserves).then_some(())
    })
    .await;
    assert_eq!(
        stored(&lone, "USER_SAGA", "user.cmd.validate").await,
        validations,
        "the user verdict is in"
    );
    lone.stock_verdict(id, StockOutcome::Reserved, None).await;
    assert_eq!(lone.state(id).await, "confirmed");
}

#[tokio::test]
async fn an_order_still_pending_at_its_final_deadline_is_rejected_and_its_stock_released() {
    let lone = Lone::new(FAST).await;
    let mut releases = lone
        .client
        .subscribe("product.cmd.release")
        .await
        .expect("subscribe");
    let id = lone.place_pending(1, 2, 1).await;
    let rejected = eventually("the rejection", || async {
        let order = lone.order.http.get(&format!("/order/{id}")).await.json;
        (order["state"] == "rejected").then_some(order)
    })
    .await;
    assert_eq!(
        rejected["reason"],
        Value::Null,
        "no verdict came: no reason"
    );
    let release = tokio::time::timeout(Duration::from_secs(5), releases.next())
        .await
        .expect("release")
        .expect("sub");
    let release: Value = serde_json::from_slice(&release.payload).expect("json");
    assert_eq!(release["order_id"], serde_json::json!(id));

    // The reservation turns up late: it is given back, and the order stays rejected.
    lone.stock_verdict(id, StockOutcome::Reserved, None).await;
    let again = tokio::time::timeout(Duration::from_secs(5), releases.next())
        .await
        .expect("release")
        .expect("sub");
    assert_eq!(
        serde_json::from_slice::<Value>(&again.payload).expect("json")["order_id"],
        serde_json::json!(id)
    );
    assert_eq!(lone.state(id).await, "rejected");
}

#[tokio::test]
async fn a_rejection_whose_release_is_not_confirmed_sends_the_release_again() {
    let lone = Lone::new(FAST).await;
    let mut releases = lone
        .client
        .subscribe("product.cmd.release")
        .await
        .expect("subscribe");
    let id = lone.place_pending(1, 2, 1).await;
    lone.stock_verdict(id, StockOutcome::Reserved, None).await;
    lone.user_verdict(id, false).await;
    // Releases keep coming until the product service says the stock is back.
    for _ in 0..2 {
        let release = tokio::time::timeout(Duration::from_secs(5), releases.next())
            .await
            .expect("release")
            .expect("sub");
        assert_eq!(
            serde_json::from_slice::<Value>(&release.payload).expect("json")["order_id"],
            serde_json::json!(id)
        );
    }
    lone.stock_verdict(id, StockOutcome::Released, None).await;
    let stock = Postgres::shared().query(
        &lone.database,
        &format!("select stock from orders where id = '{id}'"),
    );
    assert_eq!(stock, "released");
    // Drain what was already on its way, then nothing more comes.
    while tokio::time::timeout(Duration::from_millis(700), releases.next())
        .await
        .is_ok()
    {}
    assert!(
        tokio::time::timeout(Duration::from_millis(1000), releases.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn two_replicas_sweeping_reject_each_expired_order_once() {
    let lone = Lone::new(FAST).await;
    let second = spawn_order_with_deadlines(&lone.database, &lone.order_nats_url(), FAST).await;
    let mut outcomes = lone
        .client
        .subscribe("order.evt.rejected")
        .await
        .expect("subscribe");
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(lone.place_pending(1, 2, 1).await);
    }
    let mut seen = std::collections::HashMap::new();
    while seen.len() < ids.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), outcomes.next())
            .await
            .expect("outcomes")
            .expect("sub");
        let outcome: Value = serde_json::from_slice(&message.payload).expect("json");
        *seen
            .entry(outcome["order_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), outcomes.next()).await
    {
        let outcome: Value = serde_json::from_slice(&message.payload).expect("json");
        *seen
            .entry(outcome["order_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "an order rejected twice: {seen:?}"
    );
    second.stop().await;
}
