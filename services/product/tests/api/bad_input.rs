//! Hostile and broken requests: always a 4xx in the contract's shape, quickly, and nothing lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{World, create, record};

#[tokio::test]
async fn bodies_that_are_not_a_json_object_are_400_with_an_empty_object() {
    let world = World::new().await;
    // Well past serde_json's nesting limit, yet under the 64 KiB body limit.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let fields = r#""id":1,"name":"n","description":"d","quantity":1"#;
    let bodies = [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        "[]".to_owned(),
        String::new(),
        "null".to_owned(),
        "42".to_owned(),
        "\"create\"".to_owned(),
        "{\"command\":\"create\",".to_owned(),
        format!(r#"{{"command":"create",{fields},"price":1e400}}"#),
        format!(r#"{{"command":"create",{fields},"price":1,"x":{deep}}}"#),
        "\u{feff}{}".to_owned(),
    ];
    for body in bodies {
        let reply = world.app.http.post_raw("/product", body.clone()).await;
        assert_eq!(
            (reply.status, &reply.json),
            (400, &json!({})),
            "body {:?}",
            &body[..body.len().min(60)]
        );
    }
    assert_eq!(world.app.http.get("/product/1").await.status, 404);
}

#[tokio::test]
async fn a_two_mebibyte_body_is_413_and_stored_data_is_untouched() {
    let world = World::new().await;
    let http = &world.app.http;
    assert_eq!(http.post("/product", &create(1)).await.status, 200);
    let huge = json!({"command": "update", "id": 1, "description": "x".repeat(2 * 1024 * 1024)});
    let reply = http.post("/product", &huge).await;
    assert_eq!((reply.status, reply.json), (413, json!({})));
    assert_eq!(http.get("/product/1").await.json, record(1));
}

#[tokio::test]
async fn a_client_that_stalls_halfway_through_its_body_gets_400_within_a_second_and_others_are_served()
 {
    let world = World::new().await;
    let addr = world.app.addr.clone();
    let head = "POST /product HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 200";
    let started = Instant::now();
    let stalled = tokio::spawn(async move {
        testkit::http::stalled_request(
            &addr,
            head,
            br#"{"command":"create","id":1,"na"#,
            Duration::from_secs(5),
        )
        .await
    });

    // While that client hangs, another is served normally.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let other = world.app.http.post("/product", &create(2)).await;
    assert_eq!(other.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the healthy client waited for the stalled one"
    );

    let answer = stalled.await.expect("task");
    let elapsed = started.elapsed();
    assert_eq!(answer, Some((400, "{}".to_owned())));
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    assert_eq!(
        world.app.http.get("/product/1").await.status,
        404,
        "the half command was not applied"
    );
}
