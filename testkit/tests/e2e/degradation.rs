//! A dependency down: `/ready` says which, reads that need only what is left are served, writes
//! answer 503 at once in the documented shape, and everything comes back by itself when the
//! dependency does, without restarting a service.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{http::Client, stack::Stack};

/// Well under every timeout a request could otherwise wait out (NATS requests and the order
/// wait are 5 s): an answer slower than this means the request waited instead of failing fast.
const PROMPT: Duration = Duration::from_secs(2);

/// A write of each service answers 503 in its path's shape, promptly.
async fn assert_writes_refused_at_once(http: &Client) {
    let writes = [
        (
            "/user",
            json!({"command": "create", "id": 5, "username": "u", "email": "e", "password": "p"}),
            json!({}),
        ),
        (
            "/product",
            json!({"command": "update", "id": 2, "price": 9.0}),
            json!({}),
        ),
        ("/order", order(), json!({"status": "Service Unavailable"})),
    ];
    for (path, body, shape) in writes {
        let started = Instant::now();
        let reply = http.post(path, &body).await;
        assert_eq!((reply.status, reply.json), (503, shape), "{path}");
        let took = started.elapsed();
        assert!(took < PROMPT, "{path} took {took:?}");
    }
}

fn order() -> Value {
    json!({"command": "place order", "user_id": 1, "product_id": 2, "quantity": 1})
}

async fn seed(http: &Client) {
    let user =
        json!({"command": "create", "id": 1, "username": "u", "email": "e", "password": "p"});
    let product = json!({"command": "create", "id": 2, "name": "n", "description": "d", "price": 1.5, "quantity": 100});
    assert_eq!(http.post("/user", &user).await.status, 200);
    assert_eq!(http.post("/product", &product).await.status, 200);
    assert_eq!(http.post("/order", &order()).await.status, 200);
}

/// Every replica answers `/ready` with 503, saying which dependency is down, within [`PROMPT`]
/// of its loss: a killed nats-server's connections close at once, but each replica's client
/// notices on its own next read, which a loaded machine may schedule a few milliseconds late.
async fn assert_unready(stack: &Stack, nats: &str, database: &str) {
    let started = Instant::now();
    loop {
        let readiness = stack.readiness().await;
        let unready = |(_, status, body): &(String, u16, Value)| {
            *status == 503 && body["nats"] == nats && body["database"] == database
        };
        if readiness.iter().all(unready) {
            return;
        }
        assert!(
            started.elapsed() < PROMPT,
            "not every replica said nats {nats}, database {database}: {readiness:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After the dependency is back: every write works again through the same replicas.
async fn assert_recovered(stack: &Stack) {
    let http = Client::new(stack.url());
    for (replica, status, body) in stack.readiness().await {
        assert_eq!(status, 200, "{replica}: {body}");
    }
    let update = json!({"command": "update", "id": 2, "price": 2.5});
    let reply = http.post("/product", &update).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = http.post("/order", &order()).await;
    // Just back, on a loaded machine, the saga may outlast the order wait (5 s): then 202, as
    // the contract allows, and the order is still decided soon after.
    let logs = || {
        [
            "order-1",
            "order-2",
            "product-1",
            "product-2",
            "user-1",
            "user-2",
        ]
        .map(|replica| format!("{replica}:\n{}", stack.log_tail(replica, 15)))
        .join("\n")
    };
    match reply.status {
        200 => {}
        202 => {
            let path = format!("/order/{}", reply.json["id"].as_str().expect("id"));
            let state = testkit::eventually("the accepted order is decided", || {
                let (http, path) = (&http, &path);
                async move {
                    let order = http.get(path).await;
                    (order.json["state"] != "pending").then_some(order.json["state"].clone())
                }
            })
            .await;
            assert_eq!(state, "confirmed", "{}", logs());
        }
        status => panic!("{status}: {}\n{}", reply.text, logs()),
    }
    let user =
        json!({"command": "create", "id": 9, "username": "u", "email": "e", "password": "p"});
    assert_eq!(http.post("/user", &user).await.status, 200);
}

#[tokio::test]
async fn with_nats_down_reads_are_served_writes_answer_503_at_once_and_all_recovers_when_it_returns()
 {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    seed(&http).await;

    stack.kill("nats");

    assert_unready(&stack, "down", "up").await;
    assert_eq!(http.get("/user/1").await.status, 200);
    assert_eq!(http.get("/product/2").await.json["quantity"], json!(99));
    assert_writes_refused_at_once(&http).await;
    let history = http.get("/user/purchased/1").await;
    assert_eq!(
        (history.status, history.json),
        (503, json!({})),
        "it needs the user service"
    );

    stack.run("up");
    assert_recovered(&stack).await;
    assert_eq!(http.get("/user/purchased/1").await.json, json!({"2": 2}));
}

#[tokio::test]
async fn with_postgres_down_every_request_answers_503_at_once_and_all_recovers_when_it_returns() {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    seed(&http).await;

    stack.kill("postgres");

    assert_unready(&stack, "up", "down").await;
    assert_writes_refused_at_once(&http).await;
    for path in ["/user/1", "/product/2", "/user/purchased/1"] {
        let started = Instant::now();
        let reply = http.get(path).await;
        assert_eq!((reply.status, reply.json), (503, json!({})), "{path}");
        assert!(
            started.elapsed() < PROMPT,
            "{path} took {:?}",
            started.elapsed()
        );
    }

    stack.run("up");
    assert_recovered(&stack).await;
    assert_eq!(http.get("/product/2").await.json["quantity"], json!(98));
}
