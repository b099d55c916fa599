//! Following a request through traces: an order placed with a W3C `traceparent` leaves spans
//! with that trace id in all three services (exported over OTLP to a collector the test runs),
//! and the order service's log lines carry it.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{http::Client, stack::Stack};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// The OTLP/HTTP requests a collector received: (path, JSON body).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A minimal OTLP/HTTP collector: answers every request 200 and keeps its JSON body.
async fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut connection = BufReader::new(connection);
                loop {
                    let mut request_line = String::new();
                    if connection.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        connection.read_line(&mut header).await.expect("header");
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().expect("length");
                        }
                    }
                    let mut body = vec![0; length];
                    connection.read_exact(&mut body).await.expect("body");
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    store.lock().expect("lock").push((path, body));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    connection
                        .get_mut()
                        .write_all(answer.as_bytes())
                        .await
                        .expect("answer");
                }
            });
        }
    });
    (url, received)
}

/// A client of the stack, which has user 1 and product 1 (5 units) to order.
async fn seeded(stack: &Stack) -> Client {
    let http = Client::new(stack.url());
    let user =
        json!({"command": "create", "id": 1, "username": "u", "email": "e", "password": "p"});
    assert_eq!(http.post("/user", &user).await.status, 200);
    let product = json!({"command": "create", "id": 1, "name": "n", "description": "d", "price": 1, "quantity": 5});
    assert_eq!(http.post("/product", &product).await.status, 200);
    http
}

/// Fails unless a log line of an order replica shows `trace_id`.
fn assert_order_logs_carry(stack: &Stack, trace_id: &str) {
    let logged = (1..=2).any(|replica| {
        let log = stack.dir().join(format!("logs/order-{replica}.log"));
        std::fs::read_to_string(log).is_ok_and(|text| text.contains(trace_id))
    });
    assert!(logged, "no order log line carries trace id {trace_id}");
}

/// Service name to the trace ids of its exported spans.
fn traces_by_service(received: &Received) -> BTreeMap<String, BTreeSet<String>> {
    let mut traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, body) in received.lock().expect("lock").iter() {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("?")
                .to_owned();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let id = span["traceId"].as_str().unwrap_or("").to_lowercase();
                    traces.entry(service.clone()).or_default().insert(id);
                }
            }
        }
    }
    traces
}

#[tokio::test]
async fn an_orders_trace_id_crosses_all_three_services() {
    let (endpoint, received) = collector().await;
    let stack = Stack::up_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("RUST_LOG", "info,tower_http=debug"),
    ]);
    let http = seeded(&stack).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let order = json!({"command": "place order", "user_id": 1, "product_id": 1, "quantity": 2});
    let placed = http
        .post_with("/order", &order, &[("traceparent", &traceparent)])
        .await;
    assert_eq!(placed.status, 200, "{}", placed.text);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let services = loop {
        let traces = traces_by_service(&received);
        let with_trace: Vec<String> = traces
            .iter()
            .filter(|(_, ids)| ids.contains(trace_id))
            .map(|(service, _)| service.clone())
            .collect();
        if with_trace.len() == 3 {
            break with_trace;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 10 s, spans of trace {trace_id} only from {with_trace:?}; all: {traces:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(services, ["order", "product", "user"]);
    assert!(
        received
            .lock()
            .expect("lock")
            .iter()
            .all(|(path, _)| path == "/v1/traces"),
        "spans go to the OTLP traces path"
    );

    // The order service's log lines of that request carry the trace id.
    assert_order_logs_carry(&stack, trace_id);
}

#[tokio::test]
async fn without_an_exporter_and_with_quiet_logs_an_order_starts_a_trace_that_all_its_messages_carry()
 {
    // Logs quieter than the spans: the trace must not depend on the log level.
    let stack = Stack::up_with(&[("RUST_LOG", "warn,tower_http=debug")]);
    let http = seeded(&stack).await;
    let nats = stack.nats_admin().await;
    let mut commands = nats.subscribe(">").await.expect("subscribe to everything");
    kit::nats::round_trip(&nats).await.expect("round trip");

    // No traceparent: the order service starts a trace.
    let order = json!({"command": "place order", "user_id": 1, "product_id": 1, "quantity": 1});
    assert_eq!(http.post("/order", &order).await.status, 200);

    let mut traces = BTreeMap::new();
    // The order's command, both saga commands, both verdicts and its outcome.
    while traces.len() < 6 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), commands.next())
            .await
            .unwrap_or_else(|_| panic!("messages of the order missing: {traces:?}"))
            .expect("subscription");
        let subject = message.subject.to_string();
        let saga = [
            "order.cmd.place",
            "user.cmd.validate",
            "product.cmd.reserve",
            "user.evt.validated",
            "product.evt.reserved",
        ];
        let outcome = subject == "order.evt.confirmed";
        if !saga.contains(&subject.as_str()) && !outcome {
            continue;
        }
        let traceparent = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("traceparent"))
            .unwrap_or_else(|| panic!("{subject} carries no traceparent: {:?}", message.headers))
            .to_string();
        let trace_id = traceparent.split('-').nth(1).expect("trace id").to_owned();
        traces.insert(subject, trace_id);
    }
    let ids: BTreeSet<&String> = traces.values().collect();
    assert_eq!(ids.len(), 1, "one trace for the whole order: {traces:?}");
    let trace_id = ids.into_iter().next().expect("one");
    assert_ne!(trace_id, &"0".repeat(32));
    assert_order_logs_carry(&stack, trace_id);
}
