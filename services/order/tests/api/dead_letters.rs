//! Malformed saga messages on every subject: kept in DEAD_LETTERS with their reason, and the
//! system goes on working.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use testkit::eventually;
use uuid::Uuid;

use crate::helpers::World;

#[tokio::test]
async fn a_malformed_message_on_any_saga_subject_is_dead_lettered_and_stops_nothing() {
    let world = World::new().await;
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    let js = jetstream::new(client);
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
