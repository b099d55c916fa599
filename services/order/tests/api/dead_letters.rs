//! Malformed saga messages on every subject: kept in DEAD_LETTERS with their reason, and the
//! system goes on working.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use testkit::eventually;
use uuid::Uuid;

use crate::helpers::World;

/// A JetStream context of a client of its own on the world's NATS.
async fn jetstream_of(world: &World) -> jetstream::Context {
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    jetstream::new(client)
}

#[tokio::test]
async fn a_malformed_message_on_any_saga_subject_is_dead_lettered_and_stops_nothing() {
    let world = World::new().await;
    let js = jetstream_of(&world).await;
    let subjects = shared::subject::SAGA;
    let garbage: [&[u8]; 3] = [
        b"not json",
        b"[1,2,3]",
        br#"{"order_id":"nope","quantity":-1}"#,
    ];
    for subject in subjects {
        for payload in garbage {
            let message = PublishMessage::build()
                .payload(bytes::Bytes::from_static(payload))
                .message_id(Uuid::new_v4().to_string());
            js.send_publish(subject.to_owned(), message)
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    }

    let dead = js
        .get_stream("DEAD_LETTERS")
        .await
        .expect("the stream exists");
    let count = eventually("every malformed message dead-lettered", || {
        let mut dead = dead.clone();
        async move {
            let messages = dead.info().await.ok()?.state.messages;
            (messages >= 27).then_some(messages)
        }
    })
    .await;
    assert_eq!(count, 27, "each once");
    for subject in subjects {
        let letter = dead
            .get_last_raw_message_by_subject(&format!("dead.{subject}"))
            .await
            .expect("a dead letter");
        let headers = letter.headers;
        let reason = headers
            .get("Dead-Reason")
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert!(
            reason.contains("undecodable") || reason.contains("invalid"),
            "{subject}: {reason}"
        );
        assert!(
            headers
                .get("Dead-Origin")
                .is_some_and(|v| v.as_str().contains("_SAGA:")),
            "{subject}"
        );
    }

    world.user(1).await;
    world.product(2, 5).await;
    let placed = tokio::time::timeout(Duration::from_secs(10), world.place(1, 2, 1))
        .await
        .expect("in time");
    assert_eq!(placed.status, 200, "the saga still works: {}", placed.text);
}

#[tokio::test]
async fn an_order_command_whose_text_holds_nul_is_dead_lettered_at_once_and_stores_no_order() {
    let world = World::new().await;
    let js = jetstream_of(&world).await;
    world.user(1).await;
    world.product(2, 5).await;
    let order_id = Uuid::now_v7();
    let place = shared::saga::PlaceOrder {
        order_id,
        user_id: 1,
        product_id: 2,
        quantity: 1,
        notify: Some("order.outcome.\0".to_owned()),
    };
    let message = PublishMessage::build()
        .payload(serde_json::to_vec(&place).expect("json").into())
        .message_id(Uuid::new_v4().to_string());
    js.send_publish(shared::subject::ORDER_PLACE, message)
        .await
        .expect("publish")
        .await
        .expect("stored");

    let dead = js.get_stream("DEAD_LETTERS").await.expect("the stream");
    let letter = eventually("the command dead-lettered", || {
        let dead = dead.clone();
        async move {
            dead.get_last_raw_message_by_subject("dead.order.cmd.place")
                .await
                .ok()
        }
    })
    .await;
    let reason = letter
        .headers
        .get("Dead-Reason")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(reason.contains("NUL"), "{reason}");
    let attempts = letter.headers.get("Dead-Attempts").map(|v| v.to_string());
    assert_eq!(
        attempts.as_deref(),
        Some("1"),
        "not retried: {:?}",
        letter.headers
    );
    let stored = world.order.http.get(&format!("/order/{order_id}")).await;
    assert_eq!(stored.status, 404, "{}", stored.text);
}
