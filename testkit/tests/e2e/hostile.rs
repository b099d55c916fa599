//! Hostile input, generated: random JSON of every type, size and nesting, unicode, duplicate
//! keys, raw bytes and contract-shaped objects with wrong values, sent to every endpoint through
//! Nginx and on every NATS subject. Never a 5xx, never a crash, never a stuck consumer; saga
//! messages that cannot be handled end in DEAD_LETTERS.

use std::time::Duration;

use async_nats::{jetstream, service::NATS_SERVICE_ERROR_CODE};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use shared::saga::{PlaceOrder, StockRequest, StockVerdict, UserVerdict, ValidateUser};
use testkit::stack::Stack;

/// The contract's and the messages' field names, so that objects reach deep validation.
const FIELDS: [&str; 16] = [
    "command",
    "id",
    "username",
    "email",
    "password",
    "name",
    "description",
    "price",
    "quantity",
    "user_id",
    "product_id",
    "order_id",
    "valid",
    "outcome",
    "reason",
    "password_sha256",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            json!(2_147_483_648i64),
            json!(-2_147_483_649i64),
            json!(1.0),
            json!(3.5),
            json!(""),
            json!("0"),
            json!("create"),
            json!("update"),
            json!("delete"),
            json!("place order"),
            json!("01a22c70-94a8-7158-9969-0e3b3b64e3d3"),
            json!(u64::MAX),
        ]),
        ".{0,40}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS.to_vec()).prop_map(String::from),
        1 => ".{0,12}",
    ]
}

/// A body: JSON of any shape, a contract-shaped object with random values, duplicate keys,
/// deep nesting, a huge number, or bytes that are not even UTF-8.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => value().prop_map(|v| v.to_string().into_bytes()),
        4 => prop::collection::btree_map(
            prop::sample::select(FIELDS.to_vec()),
            prop_oneof![3 => leaf(), 1 => value()],
            0..9,
        )
        .prop_map(|map| json!(map).to_string().into_bytes()),
        1 => (prop::sample::select(FIELDS.to_vec()), leaf(), leaf()).prop_map(|(k, a, b)| {
            format!(r#"{{"command":"create","{k}":{a},"{k}":{b}}}"#).into_bytes()
        }),
        1 => (1usize..20_000, prop::sample::select(vec!["[", "{\"a\":"]))
            .prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
        1 => Just(br#"{"command":"create","id":1e400,"quantity":123456789012345678901234567890}"#.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// A request to one of the public endpoints, the id in its path random too.
fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    let segment = prop_oneof![
        (-3i64..30).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9%._~-]{0,20}",
    ];
    prop_oneof![
        (
            prop::sample::select(vec!["/user", "/product", "/order"]),
            body()
        )
            .prop_map(|(path, body)| ("POST".to_owned(), path.to_owned(), body)),
        (
            prop::sample::select(vec!["/user/", "/product/", "/order/", "/user/purchased/"]),
            segment
        )
            .prop_map(|(prefix, id)| (
                "GET".to_owned(),
                format!("{prefix}{id}"),
                Vec::new()
            )),
        (prop::sample::select(vec!["PUT", "DELETE", "PATCH"]), body())
            .prop_map(|(method, body)| (method.to_owned(), "/order".to_owned(), body)),
    ]
}

async fn check_answer(
    http: &reqwest::Client,
    base: &str,
    (method, path, body): (String, String, Vec<u8>),
) -> Result<(), TestCaseError> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = http
        .request(method.clone(), format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .map_err(|error| TestCaseError::fail(format!("{method} {path}: no answer: {error}")))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    prop_assert!(
        [200, 202, 400, 404, 405, 409, 413, 422].contains(&status),
        "{method} {path} {shown:?}: {status} {text}"
    );
    let json: Value = serde_json::from_str(&text)
        .map_err(|_| TestCaseError::fail(format!("{method} {path}: not JSON: {text}")))?;
    prop_assert!(json.is_object(), "{method} {path}: {text}");
    if status >= 400 {
        let order_shaped = path == "/order";
        prop_assert!(
            if order_shaped {
                json["status"].is_string()
            } else {
                json == json!({})
            },
            "{method} {path} {status}: {text}"
        );
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

async fn assert_all_ready(stack: &Stack) {
    for (replica, status, _) in stack.readiness().await {
        assert_eq!(status, 200, "{replica} is not ready");
    }
}

#[test]
fn random_requests_to_every_endpoint_never_get_a_5xx_or_an_answer_that_is_not_json() {
    let stack = Stack::up();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::new();
    let base = stack.url();

    let outcome = runner(600).run(&request(), |request| {
        runtime.block_on(check_answer(&http, &base, request))
    });

    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    runtime.block_on(assert_all_ready(&stack));
}

/// Whether `payload` decodes as what `subject` carries.
fn decodes(subject: &str, payload: &[u8]) -> bool {
    match subject {
        "order.cmd.place" => serde_json::from_slice::<PlaceOrder>(payload).is_ok(),
        "user.cmd.validate" => serde_json::from_slice::<ValidateUser>(payload).is_ok(),
        "product.cmd.reserve" | "product.cmd.release" => {
            serde_json::from_slice::<StockRequest>(payload).is_ok()
        }
        s if s.starts_with("user.evt.") => serde_json::from_slice::<UserVerdict>(payload).is_ok(),
        _ => serde_json::from_slice::<StockVerdict>(payload).is_ok(),
    }
}

#[test]
fn random_messages_on_every_subject_are_refused_or_dead_lettered_and_stop_nothing() {
    let stack = Stack::up();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut sampler = runner(1);
    let payloads: Vec<Vec<u8>> = (0..270)
        .map(|_| body().new_tree(&mut sampler).expect("payload").current())
        .collect();

    runtime.block_on(async {
        let nats = stack.nats_admin().await;
        let requests = [
            "user.cmd.create",
            "user.cmd.update",
            "user.cmd.delete",
            "user.query.get",
            "product.cmd.create",
            "product.cmd.update",
            "product.cmd.delete",
            "product.query.get",
        ];
        for (i, payload) in payloads.iter().enumerate() {
            let subject = requests[i % requests.len()];
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                nats.request(subject, payload.clone().into()),
            )
            .await
            .unwrap_or_else(|_| panic!("{subject}: no reply within 5 s"))
            .unwrap_or_else(|error| panic!("{subject}: {error}"));
            let code = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(NATS_SERVICE_ERROR_CODE))
                .map(|v| v.to_string());
            match code.as_deref() {
                None => assert!(
                    serde_json::from_slice::<Value>(&reply.payload).is_ok_and(|v| v.is_object()),
                    "{subject}: {reply:?}"
                ),
                Some(code) => assert_eq!(code, "400", "{subject} {payload:?}: {reply:?}"),
            }
        }

        let js = jetstream::new(nats.clone());
        let sagas = shared::subject::SAGA;
        let mut undecodable = std::collections::BTreeMap::<&str, u64>::new();
        for (i, payload) in payloads.iter().enumerate() {
            let subject = sagas[i % sagas.len()];
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(format!("hostile-{i}"));
            let stored = js
                .send_publish(subject.to_owned(), message)
                .await
                .expect("publish")
                .await;
            match stored {
                Ok(_) if !decodes(subject, payload) => {
                    *undecodable.entry(subject).or_default() += 1;
                }
                Ok(_) => {}
                // The saga streams take messages of 64 KiB at most (headers included): a
                // larger one never enters.
                Err(error) => assert!(
                    payload.len() > 60 * 1024 && error.to_string().contains("size exceeds"),
                    "{subject}: {error}"
                ),
            }
        }

        // Every consumer works through all of it: nothing left pending or unacknowledged.
        let consumers = [
            ("ORDER_SAGA", "order-place"),
            ("USER_SAGA", "user-validate"),
            ("USER_SAGA", "order-user-verdicts"),
            ("PRODUCT_SAGA", "product-stock"),
            ("PRODUCT_SAGA", "order-stock-verdicts"),
        ];
        for (stream, consumer) in consumers {
            let stream = js.get_stream(stream).await.expect("stream");
            testkit::eventually(&format!("{consumer} drained"), || {
                let stream = stream.clone();
                async move {
                    let info = stream.clone().consumer_info(consumer).await.ok()?;
                    (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
                }
            })
            .await;
        }
        let dead = js.get_stream("DEAD_LETTERS").await.expect("DEAD_LETTERS");
        for (subject, count) in &undecodable {
            let (filter, count) = (format!("dead.{subject}"), *count);
            let kept = testkit::eventually(&format!("{filter} kept"), || {
                let (dead, filter) = (dead.clone(), filter.clone());
                async move {
                    use futures::TryStreamExt;
                    let subjects = dead.info_with_subjects(&filter).await.ok()?;
                    let kept = subjects
                        .try_fold(0, |sum, (_, n)| async move { Ok(sum + n) })
                        .await
                        .ok()? as u64;
                    (kept >= count).then_some(kept)
                }
            })
            .await;
            assert!(kept >= count, "{subject}: {kept} of {count} dead-lettered");
        }
        assert!(!undecodable.is_empty(), "the payloads included malformed ones");

        // And the system still works.
        let http = testkit::http::Client::new(stack.url());
        let user = json!({"command": "create", "id": 424_242, "username": "u", "email": "e", "password": "p"});
        let product = json!({"command": "create", "id": 424_242, "name": "n", "description": "d", "price": 1.0, "quantity": 5});
        assert_eq!(http.post("/user", &user).await.status, 200);
        assert_eq!(http.post("/product", &product).await.status, 200);
        let order = json!({"command": "place order", "user_id": 424_242, "product_id": 424_242, "quantity": 2});
        let placed = http.post("/order", &order).await;
        assert_eq!(placed.status, 200, "{}", placed.text);
        assert_all_ready(&stack).await;
    });
}
