//! Every `/order` and `/user/purchased` rule of API.md, with Part 2's `GET /order/{id}` and
//! `Prefer: respond-async`, over real HTTP to the order service; validation is table-driven.

use serde_json::{Value, json};
use testkit::Postgres;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use testkit::eventually;

use crate::helpers::{World, place};

/// One request and what the contract says it answers.
struct Case {
    method: &'static str,
    path: String,
    /// Sent as is, labelled `application/json`; `None` sends no body.
    body: Option<String>,
    status: u16,
    /// The exact JSON body expected.
    expect: Value,
}

/// The error body of `/order`.
fn invalid() -> Value {
    json!({"status": "Invalid Request"})
}

/// A bodiless request.
fn call(method: &'static str, path: impl Into<String>, status: u16, expect: Value) -> Case {
    let path = path.into();
    Case {
        method,
        path,
        body: None,
        status,
        expect,
    }
}

/// `POST /order` with `body` as raw text.
fn raw(body: &str, status: u16) -> Case {
    let body = Some(body.to_owned());
    Case {
        body,
        ..call("POST", "/order", status, invalid())
    }
}

/// `POST /order` with a JSON body that breaks a rule: 400.
fn bad(body: Value) -> Case {
    raw(&body.to_string(), 400)
}

/// A valid order of 1 unit of product 2 by user 1, with `key` set to `value`, or removed.
fn with(key: &str, value: Option<Value>) -> Value {
    let mut body = place(1, 2, 1);
    let fields = body.as_object_mut().expect("object");
    match value {
        Some(value) => fields.insert(key.to_owned(), value),
        None => fields.remove(key),
    };
    body
}

/// The elements of a JSON array written out.
fn values(array: &str) -> Vec<Value> {
    serde_json::from_str(array).expect("a JSON array")
}

async fn run_cases(world: &World, cases: Vec<Case>) {
    let http = &world.order.http;
    let mut failures = Vec::new();
    for case in cases {
        let (method, path) = (case.method, &case.path);
        let name = format!("{method} {path} {}", case.body.as_deref().unwrap_or(""));
        let reply = match (case.body, method) {
            (Some(body), "POST") => http.post_raw(path, body).await,
            (None, "GET") => http.get(path).await,
            (None, method) => http.method(method, path).await,
            (Some(_), _) => panic!("{name}: a body with {method}"),
        };
        if (reply.status, &reply.json) != (case.status, &case.expect) {
            let (status, expect) = (case.status, case.expect);
            let got = format!("{} {}", reply.status, reply.text);
            failures.push(format!("{name}: expected {status} {expect}, got {got}"));
        }
    }
    let report = failures.join("\n");
    assert!(failures.is_empty(), "failed cases:\n{report}");
}

/// The id of an order in a 200 or 202 body, which must be a UUID.
fn order_id(body: &Value) -> Uuid {
    let id = serde_json::from_value(body["id"].clone());
    id.unwrap_or_else(|_| panic!("no UUID id in {body}"))
}

/// `GET /user/purchased/{user_id}`, which must answer 200.
async fn purchased(world: &World, user_id: i32) -> Value {
    let path = format!("/user/purchased/{user_id}");
    let reply = world.order.http.get(&path).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

/// A response header as text, empty when absent.
fn header(response: &reqwest::Response, name: &str) -> String {
    let value = response.headers().get(name).map(|v| v.to_str());
    value.and_then(Result::ok).unwrap_or_default().to_owned()
}

/// Places `body` with `Prefer: respond-async`, checks the 202 and returns the order id.
async fn place_async(world: &World, body: &Value) -> Uuid {
    let url = format!("http://{}/order", world.order.addr);
    let request = reqwest::Client::new().post(url).json(body);
    let response = request.header("prefer", "respond-async").send().await;
    let response = response.expect("POST /order");
    let (status, location) = (response.status(), header(&response, "location"));
    let content_type = header(&response, "content-type");
    let json: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 202, "{json}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let id = order_id(&json);
    assert_eq!(json, json!({"id": id, "state": "pending"}));
    assert_eq!(location, format!("/order/{id}"));
    id
}

/// Waits until `GET /order/{id}` shows the order decided, then checks every field of it.
async fn check(world: &World, id: Uuid, order: (i32, i32, i32), state: &str, reason: Option<&str>) {
    let record = eventually("order decided", || async {
        let reply = world.order.http.get(&format!("/order/{id}")).await;
        // Right after a 202 the saga may not have stored the order yet.
        if reply.status == 404 {
            return None;
        }
        assert_eq!(reply.status, 200, "GET /order/{id}: {}", reply.text);
        (reply.json["state"] != "pending").then_some(reply.json)
    })
    .await;
    let at = |key: &str| {
        let text = record[key].as_str().unwrap_or_default();
        let parsed = OffsetDateTime::parse(text, &Rfc3339);
        parsed.unwrap_or_else(|e| panic!("{key} {text:?} in {record}: {e}"))
    };
    assert!(at("created_at") <= at("updated_at"), "{record}");
    let (user_id, product_id, quantity) = order;
    let expected = json!({
        "id": id, "user_id": user_id, "product_id": product_id, "quantity": quantity,
        "state": state, "reason": reason,
        "created_at": record["created_at"], "updated_at": record["updated_at"],
    });
    assert_eq!(record, expected);
}

#[tokio::test]
async fn every_invalid_order_answers_400_even_when_its_user_or_product_is_unknown() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let mut cases = vec![
        raw("{\"command\": \"place order\",", 400),
        raw("", 400),
        bad(json!([place(1, 2, 1)])),
        bad(json!("place order")),
        // 400 wins over 404 and 409.
        bad(place(99, 2, 0)),
        bad(place(1, 77, 0)),
        bad(json!({"command": "place order", "user_id": 99, "product_id": 2, "quantity": "1"})),
        bad(json!({"command": "place", "user_id": 1, "product_id": 2, "quantity": 11})),
    ];
    for key in ["command", "user_id", "product_id", "quantity"] {
        cases.push(bad(with(key, None)));
    }
    for command in values(r#"["place", "Place Order", "place order ", "", 1, null]"#) {
        cases.push(bad(with("command", Some(command))));
    }
    for id in values(r#"["1", 1.0, 1.5, 2147483648, -2147483649, null]"#) {
        cases.push(bad(with("user_id", Some(id.clone()))));
        cases.push(bad(with("product_id", Some(id))));
    }
    for quantity in values(r#"[0, -1, "1", 1.0, 1.5, 2147483648, null]"#) {
        cases.push(bad(with("quantity", Some(quantity))));
    }
    run_cases(&world, cases).await;

    // None of them reached the saga.
    let orders = Postgres::shared().query(&world.order_db, "select count(*) from orders");
    assert_eq!(orders, "0");
    assert_eq!(world.product_sql("select count(*) from reservations"), "0");
    assert_eq!(world.stock(2).await, 10);
}

#[tokio::test]
async fn an_unknown_user_or_product_answers_404_even_beyond_the_stock() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let not_found = |body: Value| raw(&body.to_string(), 404);
    let cases = vec![
        not_found(place(99, 2, 1)),
        not_found(place(1, 77, 1)),
        not_found(place(99, 77, 1)),
        // 404 wins over 409.
        not_found(place(99, 2, 11)),
    ];
    run_cases(&world, cases).await;

    // Stock reserved while the user was being checked is given back by the saga.
    let restored = || async { (world.stock(2).await == 10).then_some(()) };
    eventually("stock given back", restored).await;
    assert_eq!(purchased(&world, 1).await, json!({}));
}

#[tokio::test]
async fn an_order_beyond_the_stock_answers_409_and_leaves_the_stock_unchanged() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 5).await;

    let beyond = world.place(1, 2, 6).await;

    let exceeded = json!({"status": "Exceeded quantity limit"});
    assert_eq!((beyond.status, &beyond.json), (409, &exceeded));
    assert_eq!(world.stock(2).await, 5);
    // Exactly the stock can be ordered, and then nothing more.
    assert_eq!(world.place(1, 2, 5).await.status, 200);
    assert_eq!(world.stock(2).await, 0);
    assert_eq!(world.place(1, 2, 1).await.json, exceeded);
}

#[tokio::test]
async fn a_successful_order_answers_success_and_takes_exactly_its_quantity() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let placed = world.place(1, 2, 3).await;

    assert_eq!(placed.status, 200, "{}", placed.text);
    let id = order_id(&placed.json);
    let success =
        json!({"id": id, "product_id": 2, "user_id": 1, "quantity": 3, "status": "Success"});
    assert_eq!(placed.json, success);
    assert_eq!(world.stock(2).await, 7);
}

#[tokio::test]
async fn unknown_fields_in_an_order_are_ignored() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;
    let mut body = place(1, 2, 2);
    body["id"] = json!("not an id");
    body["price"] = json!(-1);
    body["note"] = json!({"gift": true});

    let placed = world.order.http.post("/order", &body).await;

    assert_eq!(placed.status, 200, "{}", placed.text);
    assert_eq!(placed.json["status"], "Success");
    assert_eq!(world.stock(2).await, 8);
}

#[tokio::test]
async fn wrong_methods_bad_ids_and_unknown_orders_answer_in_the_shape_of_their_path() {
    let world = World::new().await;
    world.user(1).await;
    let some = format!("/order/{}", Uuid::now_v7());

    let cases = vec![
        call("GET", "/order", 405, invalid()),
        call("PUT", "/order", 405, invalid()),
        call("DELETE", "/order", 405, invalid()),
        call("PATCH", "/order", 405, invalid()),
        call("POST", "/user/purchased/1", 405, json!({})),
        call("DELETE", "/user/purchased/1", 405, json!({})),
        call("POST", &some, 405, json!({})),
        call("PUT", &some, 405, json!({})),
        call("GET", &some, 404, json!({})),
        call("GET", "/order/abc", 404, json!({})),
        call("GET", "/order/1", 404, json!({})),
        call("GET", "/user/purchased/abc", 400, json!({})),
        call("GET", "/user/purchased/1.5", 400, json!({})),
        call("GET", "/user/purchased/99999999999", 400, json!({})),
        call("GET", "/user/purchased/99", 404, json!({})),
        // A user who bought nothing.
        call("GET", "/user/purchased/1", 200, json!({})),
    ];
    run_cases(&world, cases).await;
}

#[tokio::test]
async fn purchase_history_sums_each_product_over_confirmed_orders_only() {
    let world = World::new().await;
    world.user(1).await;
    world.user(3).await;
    world.product(2, 10).await;
    world.product(5, 10).await;
    let mut statuses = Vec::new();
    for (user, product, quantity) in [(1, 2, 1), (1, 2, 2), (1, 5, 1), (3, 5, 4), (1, 2, 100)] {
        statuses.push(world.place(user, product, quantity).await.status);
    }
    statuses.push(world.place(1, 77, 1).await.status);
    assert_eq!(statuses, [200, 200, 200, 200, 409, 404]);

    let mine = purchased(&world, 1).await;
    let theirs = purchased(&world, 3).await;

    assert_eq!(mine, json!({"2": 3, "5": 1}));
    assert_eq!(theirs, json!({"5": 4}));
}

#[tokio::test]
async fn get_order_shows_each_order_with_its_state_and_reason() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 5).await;
    let confirmed = order_id(&world.place(1, 2, 2).await.json);
    let no_user = place_async(&world, &place(99, 2, 1)).await;
    let no_product = place_async(&world, &place(1, 77, 1)).await;
    let no_stock = place_async(&world, &place(1, 2, 50)).await;

    check(&world, confirmed, (1, 2, 2), "confirmed", None).await;
    let rejected = [
        (no_user, (99, 2, 1), "user_not_found"),
        (no_product, (1, 77, 1), "product_not_found"),
        (no_stock, (1, 2, 50), "insufficient_stock"),
    ];
    for (id, order, reason) in rejected {
        check(&world, id, order, "rejected", Some(reason)).await;
    }
}

#[tokio::test]
async fn respond_async_answers_202_with_a_location_and_the_order_is_confirmed_later() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let id = place_async(&world, &place(1, 2, 4)).await;

    check(&world, id, (1, 2, 4), "confirmed", None).await;
    assert_eq!(world.stock(2).await, 6);
    assert_eq!(purchased(&world, 1).await, json!({"2": 4}));
}
