//! `user.query.get` and malformed commands, spoken directly over NATS as another service would.

use serde_json::{Value, json};

use crate::helpers::{SECRET_SHA256, World, create};

async fn ask(world: &World, subject: &str, payload: &str) -> async_nats::Message {
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    client
        .request(subject.to_owned(), payload.to_owned().into())
        .await
        .expect("a reply")
}

#[tokio::test]
async fn the_get_query_answers_with_the_stored_user_or_not_found() {
    let world = World::new().await;
    assert_eq!(world.app.http.post("/user", &create(3)).await.status, 200);

    let found = ask(&world, "user.query.get", r#"{"id":3}"#).await;
    let body: Value = serde_json::from_slice(&found.payload).expect("json");
    let user = json!({"id": 3, "username": "user3", "email": "u3@example.com", "password_sha256": SECRET_SHA256});
    assert_eq!(body, json!({"outcome": "ok", "user": user}));

    let missing = ask(&world, "user.query.get", r#"{"id":4}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&missing.payload).expect("json"),
        json!({"outcome": "not_found"})
    );
}

#[tokio::test]
async fn a_malformed_command_is_refused_with_a_400_service_error_and_changes_nothing() {
    let world = World::new().await;
    let refused = [
        ("user.cmd.create", "not json"),
        ("user.cmd.create", r#"{"id":1,"username":"a"}"#),
        (
            "user.cmd.create",
            r#"{"id":1,"username":"","email":"e","password_sha256":"x"}"#,
        ),
        ("user.cmd.update", r#"{"id":"one"}"#),
        ("user.query.get", "[]"),
        (
            "user.cmd.create",
            r#"{"id":1,"username":"a\u0000","email":"e","password_sha256":"x"}"#,
        ),
        ("user.cmd.update", r#"{"id":1,"email":"\u0000"}"#),
        (
            "user.cmd.delete",
            r#"{"id":1,"username":"a","email":"e\u0000","password_sha256":"x"}"#,
        ),
    ];
    for (subject, payload) in refused {
        let reply = ask(&world, subject, payload).await;
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .map(|v| v.to_string());
        assert_eq!(code.as_deref(), Some("400"), "{subject} {payload}");
    }
    assert_eq!(world.app.http.get("/user/1").await.status, 404);
    assert_eq!(
        world.app.http.post("/user", &create(1)).await.status,
        200,
        "the service still works"
    );
}

/// Sends `payload` on `subject` with `Command-Id: id`, as the HTTP layer does, and decodes the reply.
async fn command(world: &World, subject: &str, payload: Value, id: &str) -> Value {
    let client = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Command-Id", id);
    let reply = client
        .request_with_headers(subject.to_owned(), headers, payload.to_string().into())
        .await
        .expect("a reply");
    serde_json::from_slice(&reply.payload).expect("json")
}

#[tokio::test]
async fn a_command_sent_again_with_its_id_acts_once_and_answers_as_the_first_time() {
    let world = World::new().await;
    let ann = json!({"id": 1, "username": "ann", "email": "a@x", "password_sha256": SECRET_SHA256});
    let create = "0191b1a0-0000-7000-8000-000000000001";
    let first = command(&world, "user.cmd.create", ann.clone(), create).await;
    assert_eq!(first, json!({"outcome": "ok", "user": ann}));
    assert_eq!(
        command(&world, "user.cmd.create", ann.clone(), create).await,
        first,
        "not a 409"
    );
    let other = "0191b1a0-0000-7000-8000-000000000002";
    assert_eq!(
        command(&world, "user.cmd.create", ann.clone(), other).await["outcome"],
        "conflict"
    );

    let delete = "0191b1a0-0000-7000-8000-000000000003";
    assert_eq!(
        command(&world, "user.cmd.delete", ann.clone(), delete).await["outcome"],
        "deleted"
    );
    // The user is created again by someone else; the delete, arriving again, must not touch it.
    let again = "0191b1a0-0000-7000-8000-000000000004";
    assert_eq!(
        command(&world, "user.cmd.create", ann.clone(), again).await["outcome"],
        "ok"
    );
    assert_eq!(
        command(&world, "user.cmd.delete", ann.clone(), delete).await["outcome"],
        "deleted"
    );
    assert_eq!(
        world.app.http.get("/user/1").await.status,
        200,
        "the repeat deleted nothing"
    );

    let rename = "0191b1a0-0000-7000-8000-000000000005";
    let renamed = command(
        &world,
        "user.cmd.update",
        json!({"id": 1, "username": "bea"}),
        rename,
    )
    .await;
    assert_eq!(renamed["user"]["username"], "bea");
    assert_eq!(
        command(
            &world,
            "user.cmd.update",
            json!({"id": 1, "username": "bea"}),
            rename
        )
        .await,
        renamed
    );
    let missing = "0191b1a0-0000-7000-8000-000000000006";
    assert_eq!(
        command(&world, "user.cmd.update", json!({"id": 9}), missing).await["outcome"],
        "not_found"
    );
    assert_eq!(
        command(&world, "user.cmd.update", json!({"id": 9}), missing).await["outcome"],
        "not_found"
    );
}
