//! Every `/product` rule of API.md Part 1, table-driven, and the behaviour of each command.

use serde_json::{Value, json};

use crate::helpers::{World, create, delete, record, with, without};

/// One request and what the contract says it answers.
struct Case {
    name: String,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
}

fn post(name: impl Into<String>, body: Value, status: u16) -> Case {
    Case {
        name: name.into(),
        method: "POST",
        path: "/product",
        body: Some(body),
        status,
    }
}

fn call(method: &'static str, path: &'static str, status: u16) -> Case {
    Case {
        name: format!("{method} {path}"),
        method,
        path,
        body: None,
        status,
    }
}

/// Sends every case and fails once, listing all that did not get their status and an exact `{}` body.
async fn run_cases(world: &World, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let reply = match (&case.body, case.method) {
            (Some(body), "POST") => world.app.http.post(case.path, body).await,
            (None, "GET") => world.app.http.get(case.path).await,
            (None, method) => world.app.http.method(method, case.path).await,
            (Some(_), method) => panic!("case {} sends a body with {method}", case.name),
        };
        if reply.status != case.status || reply.json != json!({}) {
            failures.push(format!(
                "{}: expected {} {{}}, got {} {}",
                case.name, case.status, reply.status, reply.text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Values each field refuses, by the contract's type rules.
fn invalid_values() -> Vec<(&'static str, Vec<Value>)> {
    let ids = vec![
        json!("3"),
        json!(3.0),
        json!(3.5),
        json!(2_147_483_648_i64),
        json!(-2_147_483_649_i64),
        Value::Null,
    ];
    let texts = vec![json!(""), json!(5), json!(["x"]), Value::Null];
    let prices = vec![json!("1"), json!(-0.01), json!(true), Value::Null];
    let quantities = vec![json!(-1), json!(3.0), json!("3"), json!(2_147_483_648_i64)];
    vec![
        ("id", ids),
        ("name", texts.clone()),
        ("description", texts),
        ("price", prices),
        ("quantity", quantities),
    ]
}

#[tokio::test]
async fn every_validation_rule_answers_400_and_wins_over_404_and_409() {
    let world = World::new().await;
    assert_eq!(
        world.app.http.post("/product", &create(1)).await.status,
        200
    );
    // Id 1 exists (a 409 if valid) and id 999 does not (a 404 if valid): 400 must win over both.
    let update = json!({"command": "update", "id": 999});
    let mut bodies = vec![
        ("update without id".to_owned(), json!({"command": "update"})),
        ("missing command".to_owned(), without(create(2), "command")),
    ];
    for command in [json!("drop"), json!("CREATE"), json!(1), Value::Null] {
        bodies.push((
            format!("command {command}"),
            with(create(2), "command", command),
        ));
    }
    for (key, values) in invalid_values() {
        bodies.push((format!("create without {key}"), without(create(2), key)));
        if key != "description" {
            bodies.push((format!("delete without {key}"), without(delete(999), key)));
        }
        for value in values {
            let name = |command: &str| format!("{command} with {key} = {value}");
            bodies.push((name("create"), with(create(2), key, value.clone())));
            bodies.push((name("create of id 1"), with(create(1), key, value.clone())));
            bodies.push((name("update"), with(update.clone(), key, value.clone())));
            bodies.push((name("delete"), with(delete(999), key, value)));
        }
    }
    let mut cases: Vec<Case> = bodies
        .into_iter()
        .map(|(name, body)| post(name, body, 400))
        .collect();
    cases.extend(
        ["/product/abc", "/product/1.5", "/product/99999999999"].map(|path| call("GET", path, 400)),
    );
    run_cases(&world, cases).await;

    // None of the refused requests changed the stored product or created another.
    let stored = world.app.http.get("/product/1").await;
    assert_eq!((stored.status, stored.json), (200, record(1)));
    assert_eq!(world.app.http.get("/product/2").await.status, 404);
}

#[tokio::test]
async fn unknown_ids_duplicates_wrong_methods_and_unknown_paths_answer_404_409_and_405() {
    let world = World::new().await;
    assert_eq!(
        world.app.http.post("/product", &create(1)).await.status,
        200
    );
    let cases = vec![
        post("create of an existing id", create(1), 409),
        post(
            "update of an unknown id",
            json!({"command": "update", "id": 999, "quantity": 1}),
            404,
        ),
        post("delete of an unknown id", delete(999), 404),
        call("GET", "/product/999", 404),
        call("GET", "/product/-5", 404),
        call("PUT", "/product", 405),
        call("GET", "/product", 405),
        call("DELETE", "/product/1", 405),
        call("POST", "/product/1", 405),
        call("PATCH", "/product/1", 405),
        call("GET", "/products/1", 404),
        call("GET", "/product/1/stock", 404),
    ];
    run_cases(&world, cases).await;
    assert_eq!(world.app.http.get("/product/1").await.json, record(1));
}

#[tokio::test]
async fn create_returns_the_record_and_ignores_unknown_fields() {
    let world = World::new().await;
    let created = world
        .app
        .http
        .post("/product", &with(create(7), "colour", json!("green")))
        .await;
    assert_eq!((created.status, created.json), (200, record(7)));
    let read = world.app.http.get("/product/7").await;
    assert_eq!((read.status, read.json), (200, record(7)));
}

#[tokio::test]
async fn prices_are_always_returned_with_a_fraction_part() {
    let world = World::new().await;
    let http = &world.app.http;
    let cases = [
        (1, json!(157), "\"price\":157.0"),
        (2, json!(8.5), "\"price\":8.5"),
        (3, json!(0), "\"price\":0.0"),
        (4, json!(-0.0), "\"price\":0.0"),
        (5, json!(1e3), "\"price\":1000.0"),
    ];
    for (id, price, text) in cases {
        let created = http
            .post("/product", &with(create(id), "price", price.clone()))
            .await;
        assert_eq!(created.status, 200, "price {price}");
        assert!(
            created.text.contains(text),
            "price {price} created as {}",
            created.text
        );
        let read = http.get(&format!("/product/{id}")).await;
        assert!(
            read.text.contains(text),
            "price {price} read as {}",
            read.text
        );
    }

    let updated = http
        .post(
            "/product",
            &json!({"command": "update", "id": 2, "price": 3}),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert!(updated.text.contains("\"price\":3.0"), "{}", updated.text);
    assert!(http.get("/product/2").await.text.contains("\"price\":3.0"));
}

#[tokio::test]
async fn update_applies_only_the_fields_given_and_returns_the_full_record() {
    let world = World::new().await;
    let http = &world.app.http;
    http.post("/product", &create(1)).await;
    let update = json!({"command": "update", "id": 1});

    let unchanged = http.post("/product", &update).await;
    assert_eq!((unchanged.status, unchanged.json), (200, record(1)));

    // Each step changes one field; the reply shows it and every earlier change kept.
    let mut expected = record(1);
    let steps = [
        ("quantity", json!(0)),
        ("price", json!(8.5)),
        ("name", json!("renamed")),
        ("description", json!("new words")),
    ];
    for (key, value) in steps {
        let reply = http
            .post("/product", &with(update.clone(), key, value.clone()))
            .await;
        expected[key] = value;
        assert_eq!((reply.status, &reply.json), (200, &expected), "after {key}");
    }
    assert_eq!(http.get("/product/1").await.json, expected);
}

#[tokio::test]
async fn delete_removes_the_product_only_when_name_price_and_quantity_all_match() {
    let world = World::new().await;
    let http = &world.app.http;
    let stored_as_float = with(create(1), "price", json!(157.0));
    assert_eq!(http.post("/product", &stored_as_float).await.status, 200);
    let mismatches = [
        ("name", json!("product2")),
        ("price", json!(157.01)),
        ("quantity", json!(8)),
    ];
    for (key, value) in mismatches {
        let reply = http.post("/product", &with(delete(1), key, value)).await;
        assert_eq!((reply.status, reply.json), (404, json!({})), "wrong {key}");
        assert_eq!(http.get("/product/1").await.json, record(1), "wrong {key}");
    }

    // The integer price 157 matches the stored 157.0, and the description is not compared.
    let right = with(delete(1), "description", json!("other"));
    let deleted = http.post("/product", &right).await;
    assert_eq!((deleted.status, deleted.json), (200, json!({})));
    assert_eq!(http.get("/product/1").await.status, 404);
    assert_eq!(
        http.post("/product", &delete(1)).await.status,
        404,
        "a second delete finds nothing"
    );
    assert_eq!(
        http.post("/product", &create(1)).await.status,
        200,
        "the id is free again"
    );
}

#[tokio::test]
async fn a_product_with_no_stock_is_valid_and_can_be_deleted() {
    let world = World::new().await;
    let http = &world.app.http;
    let empty = with(create(1), "quantity", json!(0));
    let created = http.post("/product", &empty).await;
    assert_eq!(
        (created.status, created.json["quantity"].clone()),
        (200, json!(0))
    );

    let deleted = http
        .post("/product", &with(delete(1), "quantity", json!(0)))
        .await;
    assert_eq!((deleted.status, deleted.json), (200, json!({})));
}

#[tokio::test]
async fn extreme_ids_are_valid_ids() {
    let world = World::new().await;
    for id in [i32::MIN, -1, 0, i32::MAX] {
        let created = world.app.http.post("/product", &create(id)).await;
        assert_eq!((created.status, created.json), (200, record(id)), "id {id}");
        let read = world.app.http.get(&format!("/product/{id}")).await;
        assert_eq!(read.json, record(id), "id {id}");
    }
}
