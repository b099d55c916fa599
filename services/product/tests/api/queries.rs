//! `product.query.get` and malformed commands, spoken directly over NATS as another service would.

use serde_json::{Value, json};

use crate::helpers::{World, create, record};

async fn ask(world: &World, subject: &str, payload: &str) -> async_nats::Message {
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    client
        .request(subject.to_owned(), payload.to_owned().into())
        .await
        .expect("a reply")
}

#[tokio::test]
async fn the_get_query_answers_with_the_stored_product_or_not_found() {
    let world = World::new().await;
    assert_eq!(
        world.app.http.post("/product", &create(3)).await.status,
        200
    );

    let found = ask(&world, "product.query.get", r#"{"id":3}"#).await;
    let body: Value = serde_json::from_slice(&found.payload).expect("json");
    assert_eq!(body, json!({"outcome": "ok", "product": record(3)}));

    let missing = ask(&world, "product.query.get", r#"{"id":4}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&missing.payload).expect("json"),
        json!({"outcome": "not_found"})
    );
}

#[tokio::test]
async fn a_malformed_command_is_refused_with_a_400_service_error_and_changes_nothing() {
    let world = World::new().await;
    let refused = [
        ("product.cmd.create", "not json"),
        ("product.cmd.create", r#"{"id":1,"name":"a"}"#),
        (
            "product.cmd.create",
            r#"{"id":1,"name":"a","description":"d","price":1.0,"quantity":-1}"#,
        ),
        (
            "product.cmd.create",
            r#"{"id":1,"name":"","description":"d","price":1.0,"quantity":1}"#,
        ),
        ("product.cmd.update", r#"{"id":1.5}"#),
        ("product.query.get", "[]"),
        (
            "product.cmd.create",
            r#"{"id":1,"name":"a\u0000","description":"d","price":1.0,"quantity":1}"#,
        ),
        ("product.cmd.update", r#"{"id":1,"description":"\u0000"}"#),
    ];
    for (subject, payload) in refused {
        let reply = ask(&world, subject, payload).await;
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map(|v| v.to_string());
        assert_eq!(code.as_deref(), Some("400"), "{subject} {payload}");
    }
    assert_eq!(world.app.http.get("/product/1").await.status, 404);
    assert_eq!(
        world.app.http.post("/product", &create(1)).await.status,
        200,
        "the service still works"
    );
}

/// Sends `payload` on `subject` with `Command-Id: id`, as the HTTP layer does, and decodes the reply.
async fn command(world: &World, subject: &str, payload: Value, id: &str) -> Value {
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Command-Id", id);
    let reply = client
        .request_with_headers(subject.to_owned(), headers, payload.to_string().into())
        .await
        .expect("a reply");
    serde_json::from_slice(&reply.payload).expect("json")
}

#[tokio::test]
async fn a_command_sent_again_with_its_id_acts_once_and_answers_as_the_first_time() {
    let world = World::new().await;
    let lamp = json!({"id": 4, "name": "lamp", "description": "d", "price": 2.5, "quantity": 3});
    let create = "0191b1a0-0000-7000-8000-0000000000a1";
    let first = command(&world, "product.cmd.create", lamp.clone(), create).await;
    assert_eq!(first, json!({"outcome": "ok", "product": lamp}));
    assert_eq!(
        command(&world, "product.cmd.create", lamp.clone(), create).await,
        first
    );

    let delete = "0191b1a0-0000-7000-8000-0000000000a2";
    let old = json!({"id": 4, "name": "lamp", "price": 2.5, "quantity": 3});
    assert_eq!(
        command(&world, "product.cmd.delete", old.clone(), delete).await["outcome"],
        "deleted"
    );
    let again = "0191b1a0-0000-7000-8000-0000000000a3";
    assert_eq!(
        command(&world, "product.cmd.create", lamp.clone(), again).await["outcome"],
        "ok"
    );
    assert_eq!(
        command(&world, "product.cmd.delete", old, delete).await["outcome"],
        "deleted"
    );
    assert_eq!(
        world.app.http.get("/product/4").await.status,
        200,
        "the repeat deleted nothing"
    );

    // Raising the stock twice by the same command raises it once.
    let restock = "0191b1a0-0000-7000-8000-0000000000a4";
    let change = json!({"id": 4, "quantity": 10});
    assert_eq!(
        command(&world, "product.cmd.update", change.clone(), restock).await["product"]["quantity"],
        10
    );
    let manual = json!({"id": 4, "quantity": 1});
    let other = "0191b1a0-0000-7000-8000-0000000000a5";
    assert_eq!(
        command(&world, "product.cmd.update", manual, other).await["product"]["quantity"],
        1
    );
    assert_eq!(
        command(&world, "product.cmd.update", change, restock).await["product"]["quantity"],
        1,
        "not applied again"
    );
}
