//! Every `/user` rule of API.md Part 1, table-driven.

use serde_json::{Value, json};

use crate::helpers::{SECRET_SHA256, World, create};

/// One request and what the contract says it answers.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    status: u16,
    /// The exact JSON body expected, when the case pins it.
    expect: Option<Value>,
}

fn post(name: &'static str, body: Value, status: u16) -> Case {
    let expect = (status != 200).then(|| json!({}));
    Case {
        name,
        method: "POST",
        path: "/user",
        body: Some(body),
        status,
        expect,
    }
}

fn call(name: &'static str, method: &'static str, path: &'static str, status: u16) -> Case {
    let expect = (status != 200).then(|| json!({}));
    Case {
        name,
        method,
        path,
        body: None,
        status,
        expect,
    }
}

async fn run_cases(world: &World, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let reply = match (&case.body, case.method) {
            (Some(body), "POST") => world.app.http.post(case.path, body).await,
            (None, "GET") => world.app.http.get(case.path).await,
            (None, method) => world.app.http.method(method, case.path).await,
            (Some(_), method) => panic!("case {} sends a body with {method}", case.name),
        };
        if reply.status != case.status
            || case.expect.as_ref().is_some_and(|body| *body != reply.json)
        {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {}",
                case.name, case.status, case.expect, reply.status, reply.text
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

fn record(id: i32) -> Value {
    json!({"id": id, "username": format!("user{id}"), "email": format!("u{id}@example.com"), "password": SECRET_SHA256})
}

#[tokio::test]
async fn every_validation_rule_answers_400_and_wins_over_404_and_409() {
    let world = World::new().await;
    assert_eq!(world.app.http.post("/user", &create(1)).await.status, 200);

    let with = |key: &str, value: Value| {
        let mut body = create(2);
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = create(2);
        body.as_object_mut().expect("object").remove(key);
        body
    };
    let cases = vec![
        post("create without id", without("id"), 400),
        post("create without username", without("username"), 400),
        post("create without email", without("email"), 400),
        post("create without password", without("password"), 400),
        post("id as a string", with("id", json!("2")), 400),
        post("id as 2.0", with("id", json!(2.0)), 400),
        post("id as 2.5", with("id", json!(2.5)), 400),
        post("id above i32", with("id", json!(2147483648_i64)), 400),
        post("id below i32", with("id", json!(-2147483649_i64)), 400),
        post("id null", with("id", Value::Null), 400),
        post("empty username", with("username", json!("")), 400),
        post("numeric username", with("username", json!(5)), 400),
        post("null email", with("email", Value::Null), 400),
        post("empty password", with("password", json!("")), 400),
        post("password as array", with("password", json!(["x"])), 400),
        post(
            "duplicate id with an empty email is 400 not 409",
            {
                let mut body = create(1);
                body["email"] = json!("");
                body
            },
            400,
        ),
        post(
            "update of an unknown id with an empty username is 400 not 404",
            json!({"command": "update", "id": 999, "username": ""}),
            400,
        ),
        post(
            "update without id",
            json!({"command": "update", "username": "x"}),
            400,
        ),
        post(
            "update with a null email",
            json!({"command": "update", "id": 1, "email": null}),
            400,
        ),
        post(
            "delete without password",
            json!({"command": "delete", "id": 1, "username": "user1", "email": "u1@example.com"}),
            400,
        ),
        post(
            "delete of an unknown id without username is 400 not 404",
            json!({"command": "delete", "id": 999, "email": "e", "password": "p"}),
            400,
        ),
        post(
            "missing command",
            json!({"id": 3, "username": "a", "email": "b", "password": "c"}),
            400,
        ),
        post("unknown command", json!({"command": "drop", "id": 1}), 400),
        post(
            "command in other case",
            json!({"command": "CREATE", "id": 3, "username": "a", "email": "b", "password": "c"}),
            400,
        ),
        post("command not a string", json!({"command": 1, "id": 3}), 400),
        post("create of an existing id", create(1), 409),
        post(
            "update of an unknown id",
            json!({"command": "update", "id": 999}),
            404,
        ),
        post(
            "delete of an unknown id",
            json!({"command": "delete", "id": 999, "username": "a", "email": "b", "password": "c"}),
            404,
        ),
        post(
            "delete with a wrong password",
            json!({"command": "delete", "id": 1, "username": "user1", "email": "u1@example.com", "password": "nope"}),
            404,
        ),
        post(
            "delete with a wrong username",
            json!({"command": "delete", "id": 1, "username": "userX", "email": "u1@example.com", "password": "secret"}),
            404,
        ),
        post(
            "delete with a wrong email",
            json!({"command": "delete", "id": 1, "username": "user1", "email": "x@example.com", "password": "secret"}),
            404,
        ),
        call("get a non-integer id", "GET", "/user/abc", 400),
        call("get a fractional id", "GET", "/user/1.5", 400),
        call("get an id beyond i32", "GET", "/user/99999999999", 400),
        call("get an unknown id", "GET", "/user/999", 404),
        call("get a negative unknown id", "GET", "/user/-5", 404),
        call("PUT /user", "PUT", "/user", 405),
        call("GET /user", "GET", "/user", 405),
        call("DELETE /user/1", "DELETE", "/user/1", 405),
        call("POST /user/1 without body", "POST", "/user/1", 405),
        call("PATCH /user/1", "PATCH", "/user/1", 405),
        call("an unknown path", "GET", "/users/1", 404),
    ];
    run_cases(&world, cases).await;

    // None of the refused requests changed the stored user.
    let stored = world.app.http.get("/user/1").await;
    assert_eq!((stored.status, stored.json), (200, record(1)));
    assert_eq!(world.app.http.get("/user/2").await.status, 404);
}

#[tokio::test]
async fn create_returns_the_record_with_the_password_hashed_and_ignores_unknown_fields() {
    let world = World::new().await;
    let mut body = create(7);
    body["favourite_colour"] = json!("green");
    let created = world.app.http.post("/user", &body).await;
    assert_eq!((created.status, created.json), (200, record(7)));
    let read = world.app.http.get("/user/7").await;
    assert_eq!((read.status, read.json), (200, record(7)));
}

#[tokio::test]
async fn extreme_ids_are_valid_ids() {
    let world = World::new().await;
    for id in [i32::MIN, -1, 0, i32::MAX] {
        let created = world.app.http.post("/user", &create(id)).await;
        assert_eq!((created.status, created.json), (200, record(id)), "id {id}");
        assert_eq!(
            world.app.http.get(&format!("/user/{id}")).await.json,
            record(id)
        );
    }
}

#[tokio::test]
async fn update_applies_only_the_fields_given_and_returns_the_full_record() {
    let world = World::new().await;
    let http = &world.app.http;
    http.post("/user", &create(1)).await;

    let unchanged = http
        .post("/user", &json!({"command": "update", "id": 1}))
        .await;
    assert_eq!((unchanged.status, unchanged.json), (200, record(1)));

    let emailed = http
        .post(
            "/user",
            &json!({"command": "update", "id": 1, "email": "new@example.com"}),
        )
        .await;
    let mut expected = record(1);
    expected["email"] = json!("new@example.com");
    assert_eq!((emailed.status, &emailed.json), (200, &expected));

    let renamed = http
        .post(
            "/user",
            &json!({"command": "update", "id": 1, "username": "ann", "password": "abc"}),
        )
        .await;
    expected["username"] = json!("ann");
    expected["password"] =
        json!("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    assert_eq!((renamed.status, &renamed.json), (200, &expected));
    assert_eq!(http.get("/user/1").await.json, expected);
}

#[tokio::test]
async fn delete_removes_the_user_only_when_every_field_matches() {
    let world = World::new().await;
    let http = &world.app.http;
    http.post("/user", &create(1)).await;
    let wrong = json!({"command": "delete", "id": 1, "username": "user1", "email": "u1@example.com", "password": "Secret"});
    assert_eq!(http.post("/user", &wrong).await.status, 404);
    assert_eq!(http.get("/user/1").await.status, 200);

    let right = json!({"command": "delete", "id": 1, "username": "user1", "email": "u1@example.com", "password": "secret"});
    let deleted = http.post("/user", &right).await;
    assert_eq!((deleted.status, deleted.json), (200, json!({})));
    assert_eq!(http.get("/user/1").await.status, 404);
    assert_eq!(
        http.post("/user", &right).await.status,
        404,
        "a second delete finds nothing"
    );
    assert_eq!(
        http.post("/user", &create(1)).await.status,
        200,
        "the id is free again"
    );
}
