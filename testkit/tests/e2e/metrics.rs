//! What Prometheus scrapes: `GET /metrics` on every replica, whose counts add up to the traffic
//! that went through Nginx, and Nginx's own `stub_status` on its internal address.

use futures::future::join_all;
use serde_json::json;
use testkit::{
    http::Client,
    prometheus::{self, Sample, total},
    stack::Stack,
};

/// What a sum over a service's replicas must be.
#[derive(Debug)]
enum Bound {
    Exactly(f64),
    AtLeast(f64),
}
use Bound::{AtLeast, Exactly};

/// Service, metric name, labels the samples must carry, and the bound of their sum.
type Expectation = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Bound,
);

/// Every replica's samples of `service`, scraped directly (Prometheus scrapes each target).
async fn scrape(stack: &Stack, service: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for replica in 1..=2 {
        let url = format!("http://{}/metrics", stack.replica(service, replica));
        samples.extend(prometheus::scrape(&url).await);
    }
    samples
}

#[tokio::test]
async fn metrics_of_every_service_count_the_traffic_that_went_through_nginx() {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    for id in 1..=3 {
        let user =
            json!({"command": "create", "id": id, "username": "u", "email": "e", "password": "p"});
        assert_eq!(http.post("/user", &user).await.status, 200);
    }
    let product = json!({"command": "create", "id": 1, "name": "n", "description": "d", "price": 2.5, "quantity": 10});
    assert_eq!(http.post("/product", &product).await.status, 200);
    for _ in 0..4 {
        assert_eq!(http.get("/product/1").await.status, 200);
    }
    assert_eq!(http.get("/product/2").await.status, 404);

    // 10 units: five orders of 2 succeed, two more find no stock, two name a missing user.
    let place = |user_id: i32| json!({"command": "place order", "user_id": user_id, "product_id": 1, "quantity": 2});
    let mut statuses: Vec<u16> = join_all((0..7).map(|i| {
        let (http, body) = (&http, place(1 + i % 3));
        async move { http.post("/order", &body).await.status }
    }))
    .await;
    statuses.extend(
        join_all((0..2).map(|_| {
            let (http, body) = (&http, place(99));
            async move { http.post("/order", &body).await.status }
        }))
        .await,
    );
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 404, 404, 409, 409]);

    // Sums over both replicas of each service. `>=` where a redelivery may add one.
    let (user, product, order) = ("user", "product", "order");
    let expected: &[Expectation] = &[
        (
            user,
            "http_requests_total",
            &[("method", "POST"), ("route", "/user"), ("status", "200")],
            Exactly(3.0),
        ),
        (
            user,
            "nats_messages_handled_total",
            &[
                ("subject", "user.cmd.create"),
                ("kind", "request"),
                ("outcome", "ok"),
            ],
            Exactly(3.0),
        ),
        (
            user,
            "nats_messages_handled_total",
            &[
                ("subject", "user.cmd.validate"),
                ("kind", "saga"),
                ("outcome", "ok"),
            ],
            Exactly(9.0),
        ),
        (
            user,
            "nats_handler_duration_seconds_count",
            &[("subject", "user.cmd.validate")],
            Exactly(9.0),
        ),
        (user, "database_up", &[], Exactly(2.0)),
        (
            product,
            "http_requests_total",
            &[("route", "/product/{id}"), ("status", "200")],
            Exactly(4.0),
        ),
        (
            product,
            "http_requests_total",
            &[("route", "/product/{id}"), ("status", "404")],
            Exactly(1.0),
        ),
        (
            product,
            "http_request_duration_seconds_count",
            &[("route", "/product/{id}")],
            Exactly(5.0),
        ),
        (
            product,
            "nats_messages_handled_total",
            &[
                ("subject", "product.cmd.create"),
                ("kind", "request"),
                ("outcome", "ok"),
            ],
            Exactly(1.0),
        ),
        (
            product,
            "nats_messages_handled_total",
            &[("subject", "product.cmd.reserve"), ("outcome", "ok")],
            AtLeast(9.0),
        ),
        (
            order,
            "http_requests_total",
            &[("route", "/order"), ("status", "200")],
            Exactly(5.0),
        ),
        (
            order,
            "http_requests_total",
            &[("route", "/order"), ("status", "409")],
            Exactly(2.0),
        ),
        (
            order,
            "http_requests_total",
            &[("route", "/order"), ("status", "404")],
            Exactly(2.0),
        ),
        (order, "orders_confirmed_total", &[], Exactly(5.0)),
        (
            order,
            "orders_rejected_total",
            &[("reason", "insufficient_stock")],
            Exactly(2.0),
        ),
        (
            order,
            "orders_rejected_total",
            &[("reason", "user_not_found")],
            Exactly(2.0),
        ),
        (
            order,
            "order_saga_duration_seconds_count",
            &[],
            Exactly(9.0),
        ),
        (order, "orders_pending", &[], Exactly(0.0)),
        (
            order,
            "nats_messages_handled_total",
            &[
                ("subject", "order.cmd.place"),
                ("kind", "saga"),
                ("outcome", "ok"),
            ],
            AtLeast(9.0),
        ),
        (order, "dead_letters_total", &[], Exactly(0.0)),
    ];
    // A handler counts a message once it has handled it, which may be a moment after the
    // client got the answer the message led to: scrape again until the counts settle.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut wrong = Vec::new();
        for service in [user, product, order] {
            let samples = scrape(&stack, service).await;
            for (of, name, labels, bound) in expected.iter().filter(|e| e.0 == service) {
                let value = total(&samples, name, labels);
                let holds = match bound {
                    Exactly(expected) => value == *expected,
                    AtLeast(least) => value >= *least,
                };
                if !holds {
                    wrong.push(format!(
                        "{of}: {name}{labels:?} = {value}, expected {bound:?}"
                    ));
                }
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 10 s:\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let status = reqwest::get(stack.nginx_status_url())
        .await
        .expect("stub_status");
    assert_eq!(status.status(), 200);
    let text = status.text().await.expect("text");
    assert!(text.starts_with("Active connections:"), "{text}");
    assert!(text.contains("server accepts handled requests"), "{text}");
    let public = http.get("/nginx_status").await;
    assert_eq!(
        public.status, 404,
        "stub_status is not public: {}",
        public.text
    );
}
