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
