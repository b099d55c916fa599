//! What `nats sub '>'` shows: every write travels as a command, followed by its reply.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{http::Client, stack::Stack};

#[tokio::test]
async fn a_nats_subscriber_on_everything_sees_each_write_as_a_command_and_its_reply() {
    let stack = Stack::up();
    let nats = stack.nats_admin().await;
    let mut everything = nats.subscribe(">").await.expect("subscribe");
    nats.flush().await.expect("flush");
    let http = Client::new(stack.url());

    let user =
        json!({"command": "create", "id": 5, "username": "u", "email": "e", "password": "p"});
    assert_eq!(http.post("/user", &user).await.status, 200);
    let product = json!({"command": "update", "id": 77, "price": 1.5});
    assert_eq!(http.post("/product", &product).await.status, 404);

    // `>` never falls silent (JetStream consumers pull continuously), so read until both
    // commands and both replies have gone by.
    type Seen = Vec<(String, Option<String>, Value)>;
    let find = |seen: &Seen, subject: &str| -> Option<(Value, Value)> {
        let (_, reply, command) = seen.iter().find(|(s, _, _)| s == subject)?;
        let (_, _, answer) = seen.iter().find(|(s, _, _)| Some(s) == reply.as_ref())?;
        Some((command.clone(), answer.clone()))
    };
    let mut seen: Seen = Vec::new();
    while find(&seen, "user.cmd.create").is_none() || find(&seen, "product.cmd.update").is_none() {
        let message = tokio::time::timeout(Duration::from_secs(5), everything.next())
            .await
            .unwrap_or_else(|_| panic!("commands or replies missing from {seen:?}"))
            .expect("subscription");
        let payload: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        seen.push((
            message.subject.to_string(),
            message.reply.map(|r| r.to_string()),
            payload,
        ));
    }
    let reply_to = |subject: &str| find(&seen, subject).expect("seen");

    let (command, answer) = reply_to("user.cmd.create");
    assert_eq!(command["username"], "u");
    assert!(
        command.get("password").is_none(),
        "the clear password never travels: {command}"
    );
    assert_eq!(answer["outcome"], "ok");
    let (command, answer) = reply_to("product.cmd.update");
    assert_eq!(command, json!({"id": 77, "price": 1.5}));
    assert_eq!(answer, json!({"outcome": "not_found"}));
}

#[tokio::test]
async fn placing_an_order_shows_its_command_both_saga_commands_both_replies_and_the_outcome() {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    let user =
        json!({"command": "create", "id": 1, "username": "u", "email": "e", "password": "p"});
    let product = json!({"command": "create", "id": 2, "name": "n", "description": "d", "price": 1, "quantity": 5});
    assert_eq!(http.post("/user", &user).await.status, 200);
    assert_eq!(http.post("/product", &product).await.status, 200);
    let nats = stack.nats_admin().await;
    let mut everything = nats.subscribe(">").await.expect("subscribe");
    nats.flush().await.expect("flush");

    let order = json!({"command": "place order", "user_id": 1, "product_id": 2, "quantity": 1});
    let placed = http.post("/order", &order).await;
    assert_eq!(placed.status, 200);
    let id = placed.json["id"].as_str().expect("id").to_owned();

    let expected = [
        "order.cmd.place".to_owned(),
        "user.cmd.validate".to_owned(),
        "product.cmd.reserve".to_owned(),
        "user.evt.validated".to_owned(),
        "product.evt.reserved".to_owned(),
        "order.evt.confirmed".to_owned(),
        // The replica that placed the order is told, on its own subject.
        "order.outcome.".to_owned(),
    ];
    let mut missing: Vec<&String> = expected.iter().collect();
    while !missing.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(5), everything.next())
            .await
            .unwrap_or_else(|_| panic!("never saw {missing:?}"))
            .expect("subscription");
        let about_this_order = serde_json::from_slice::<Value>(&message.payload)
            .is_ok_and(|payload| payload["order_id"] == id.as_str());
        if about_this_order {
            let subject = message.subject.as_str();
            missing.retain(|expected| {
                *expected != subject
                    && !(expected.ends_with('.') && subject.starts_with(expected.as_str()))
            });
        }
    }
}
