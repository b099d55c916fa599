//! Nginx, the only public port, bounds what one client may take: a request rate per address
//! (429 in JSON), header size, and the time a client may take to send its headers.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::{http::Client, stack::Stack};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_in_json_and_is_served_again_a_moment_later() {
    let stack = Stack::up_with(&[("STACK_RATE_LIMIT", "20"), ("STACK_RATE_BURST", "20")]);
    let http = Client::new(stack.url());

    let order = json!({"command": "place order", "user_id": 1, "product_id": 1, "quantity": 1});
    let (reads, orders) = futures::future::join(
        futures::future::join_all((0..60).map(|_| http.get("/product/1"))),
        futures::future::join_all((0..60).map(|_| http.post("/order", &order))),
    )
    .await;
    let limited = |replies: &[testkit::http::Reply]| {
        replies
            .iter()
            .filter(|r| r.status == 429)
            .map(|r| r.json.clone())
            .collect::<Vec<_>>()
    };
    let (limited_reads, limited_orders) = (limited(&reads), limited(&orders));
    let served = reads
        .iter()
        .chain(&orders)
        .filter(|r| r.status == 404)
        .count();
    assert!(
        !limited_reads.is_empty() && !limited_orders.is_empty() && served >= 20,
        "{} reads and {} orders limited, {served} served",
        limited_reads.len(),
        limited_orders.len()
    );
    assert_eq!(
        served + limited_reads.len() + limited_orders.len(),
        120,
        "nothing but 404 and 429"
    );
    assert!(limited_reads.iter().all(|body| *body == json!({})));
    assert!(
        limited_orders
            .iter()
            .all(|body| *body == json!({"status": "Too Many Requests"}))
    );

    // 20 a second: after a second and a half the bucket has room again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(http.get("/product/1").await.status, 404);
}

#[tokio::test]
async fn oversized_headers_are_refused_in_json_and_a_client_slow_to_send_them_is_cut_off() {
    let stack = Stack::up();
    let http = reqwest::Client::new();
    let huge = "x".repeat(16 * 1024);
    let response = http
        .get(format!("{}/product/1", stack.url()))
        .header("x-padding", &huge)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("JSON"),
        json!({})
    );
    // On POST /order, in the order's error shape, though Nginx refuses it before any location.
    let response = http
        .post(format!("{}/order", stack.url()))
        .header("x-padding", &huge)
        .body("{}")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("JSON"),
        json!({"status": "Invalid Request"})
    );
    // The bare prefixes answer JSON from the services, not Nginx's redirect page.
    for path in ["/user/purchased", "/admin"] {
        let response = http
            .get(format!("{}{path}", stack.url()))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.json::<serde_json::Value>().await.expect("JSON"),
            json!({}),
            "{path}"
        );
    }

    // Headers never finished: Nginx closes the connection after client_header_timeout (5 s).
    let addr = stack.url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"GET /product/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 10 s");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_eq!(
        http.get(format!("{}/product/1", stack.url()))
            .send()
            .await
            .expect("others are served")
            .status(),
        404
    );
}
