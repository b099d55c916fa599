//! The user and product contract through Nginx, with two replicas of each service behind it.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::{
    http::{Client, stalled_request},
    stack::Stack,
};

#[tokio::test]
async fn the_contract_is_served_through_nginx_with_two_replicas_of_each_service() {
    let stack = Stack::up();
    let http = Client::new(stack.url());

    let user =
        json!({"command": "create", "id": 1, "username": "ann", "email": "a@x", "password": "pw"});
    let created = http.post("/user", &user).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let product = json!({"command": "create", "id": 2, "name": "n", "description": "d", "price": 157, "quantity": 9});
    let created = http.post("/product", &product).await;
    assert_eq!(created.status, 200);
    assert!(created.text.contains("\"price\":157.0"), "{}", created.text);

    // Every replica sees what went through Nginx.
    for replica in 1..=2 {
        let direct = Client::new(format!("http://{}", stack.replica("user", replica)));
        assert_eq!(direct.get("/user/1").await.json["username"], "ann");
        let direct = Client::new(format!("http://{}", stack.replica("product", replica)));
        assert_eq!(direct.get("/product/2").await.json["quantity"], 9);
    }

    let update = http
        .post(
            "/product",
            &json!({"command": "update", "id": 2, "quantity": 0}),
        )
        .await;
    assert_eq!((update.status, &update.json["quantity"]), (200, &json!(0)));
    let reads = [
        ("/user/1", 200),
        ("/user/x", 400),
        ("/user/5", 404),
        ("/product/2", 200),
        ("/nowhere", 404),
    ];
    for (path, status) in reads {
        assert_eq!(http.get(path).await.status, status, "GET {path}");
    }
    // Nginx's access log keeps the errors, not the requests answered in time.
    let logged = testkit::eventually("the errors in Nginx's access log", || {
        let log = stack.log_tail("nginx-access", 1_000);
        async move { log.contains("\"GET /nowhere HTTP/1.1\" 404").then_some(log) }
    })
    .await;
    assert!(logged.contains("\"GET /user/x HTTP/1.1\" 400"), "{logged}");
    assert!(
        !logged.contains("\"GET /product/2 HTTP/1.1\" 200"),
        "{logged}"
    );
    let wrong = http.method("PUT", "/product").await;
    assert_eq!((wrong.status, wrong.json), (405, json!({})));
    let bad = http.post_raw("/user", "[1]").await;
    assert_eq!((bad.status, bad.json), (400, json!({})));

    let mut huge = user.clone();
    huge["username"] = json!("x".repeat(2 * 1024 * 1024));
    let too_large = http.post("/user", &huge).await;
    assert_eq!((too_large.status, too_large.json), (413, json!({})));

    let addr = stack.url().trim_start_matches("http://").to_owned();
    let head = "POST /product HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 300";
    let started = Instant::now();
    let stalled = stalled_request(
        &addr,
        head,
        br#"{"command":"delete","id":2,"na"#,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(stalled, Some((400, "{}".to_owned())));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered after {:?}",
        started.elapsed()
    );

    let delete =
        json!({"command": "delete", "id": 1, "username": "ann", "email": "a@x", "password": "pw"});
    assert_eq!(http.post("/user", &delete).await.json, json!({}));
    assert_eq!(http.get("/user/1").await.status, 404);
    assert_eq!(
        http.get("/product/2").await.status,
        200,
        "the stalled delete was not applied"
    );
}
