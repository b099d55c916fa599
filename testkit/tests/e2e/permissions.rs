//! Least privilege on the running stack: each service's NATS user publishes and subscribes only
//! what it must (nats/permissions.conf), and each database role reaches only its own database,
//! with its password, over TCP or the server's socket.

use std::{collections::BTreeSet, time::Duration};

use futures::StreamExt;
use serde_json::json;
use sqlx::Connection;
use testkit::stack::Stack;
use tokio::sync::mpsc;

/// What each service's credentials must not publish: the other services' commands, verdicts
/// and outcomes, and the JetStream API of streams that are not its own.
const FORBIDDEN_PUBLISH: [(&str, &[&str]); 3] = [
    (
        "user",
        &[
            "order.cmd.place",
            "order.evt.confirmed",
            "order.outcome.someone",
            "product.cmd.create",
            "product.cmd.reserve",
            "product.evt.reserved",
            "user.cmd.validate",
            "$JS.API.STREAM.PURGE.PRODUCT_SAGA",
            "$JS.API.STREAM.DELETE.USER_SAGA",
            // Not even its own stream may be widened to capture more subjects.
            "$JS.API.STREAM.UPDATE.USER_SAGA",
        ],
    ),
    (
        "product",
        &[
            "user.cmd.create",
            "user.cmd.validate",
            "user.evt.validated",
            "order.cmd.place",
            "order.evt.confirmed",
            "order.outcome.someone",
            "product.cmd.reserve",
            "$JS.API.STREAM.PURGE.USER_SAGA",
            "$JS.API.CONSUMER.MSG.NEXT.ORDER_SAGA.order-place",
            "$JS.API.STREAM.UPDATE.DEAD_LETTERS",
        ],
    ),
    (
        "order",
        &[
            "user.cmd.create",
            "user.cmd.delete",
            "product.cmd.delete",
            "user.evt.validated",
            "product.evt.reserved",
            "$JS.API.STREAM.PURGE.USER_SAGA",
            "$JS.API.STREAM.DELETE.DEAD_LETTERS",
            "admin.cmd.anything",
            // Its consumer of verdicts, turned to the user service's commands.
            "$JS.API.CONSUMER.CREATE.USER_SAGA.order-user-verdicts.user.cmd.validate",
        ],
    ),
];

/// What each must not listen to: another service's commands, and everyone's replies.
const FORBIDDEN_SUBSCRIBE: [(&str, &[&str]); 3] = [
    ("user", &["product.cmd.>", "_INBOX.>", "order.outcome.*"]),
    ("product", &["user.cmd.>", "_INBOX.order.>", ">"]),
    ("order", &["user.cmd.create", "_INBOX.user.>", "dead.>"]),
];

/// An allowed request of each service, answered by its handler: the credentials do work.
fn allowed_request(service: &str) -> (&'static str, serde_json::Value) {
    match service {
        "user" => ("user.cmd.update", json!({"id": 999})),
        "product" => ("product.cmd.update", json!({"id": 999})),
        _ => ("user.query.get", json!({"id": 999})),
    }
}

#[tokio::test]
async fn a_services_nats_user_can_neither_publish_nor_subscribe_what_belongs_to_another() {
    let stack = Stack::up();
    let watcher = stack.nats_admin().await;
    let mut everything = watcher.subscribe(">").await.expect("subscribe");
    watcher.flush().await.expect("flush");

    for (service, subjects) in FORBIDDEN_PUBLISH {
        let (violations, mut reported) = mpsc::unbounded_channel();
        let client = stack
            .nats_options_as(service)
            .custom_inbox_prefix(format!("_INBOX.{service}"))
            .event_callback(move |event| {
                let violations = violations.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = violations.send(error.to_string());
                    }
                }
            })
            .connect(stack.nats_url())
            .await
            .expect("the service's credentials log in");

        let (subject, body) = allowed_request(service);
        let reply = client
            .request(subject, body.to_string().into())
            .await
            .unwrap_or_else(|error| panic!("{service} may send {subject}: {error}"));
        assert!(
            String::from_utf8_lossy(&reply.payload).contains("not_found"),
            "{service}: {reply:?}"
        );

        for subject in subjects {
            client
                .publish(subject.to_string(), "{}".into())
                .await
                .expect("publish");
        }
        let forbidden_subscriptions = FORBIDDEN_SUBSCRIBE
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, subjects)| *subjects)
            .unwrap_or_default();
        let mut subscriptions = Vec::new();
        for subject in forbidden_subscriptions {
            subscriptions.push(client.subscribe(subject.to_string()).await.expect("sub"));
        }
        client.flush().await.expect("flush");

        let mut refused = BTreeSet::new();
        let expected = subjects.len() + forbidden_subscriptions.len();
        while refused.len() < expected {
            let message = tokio::time::timeout(Duration::from_secs(5), reported.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{service}: only these were refused after 5 s: {refused:?}")
                })
                .expect("events");
            assert!(
                message.contains("Permissions Violation"),
                "{service}: {message}"
            );
            refused.insert(message);
        }
        for subject in subjects {
            let publish = format!("Publish to \"{subject}\"");
            assert!(
                refused.iter().any(|m| m.contains(&publish)),
                "{service} published {subject}: {refused:?}"
            );
        }
        for subject in forbidden_subscriptions {
            let subscription = format!("Subscription to \"{subject}\"");
            assert!(
                refused.iter().any(|m| m.contains(&subscription)),
                "{service} subscribed to {subject}: {refused:?}"
            );
        }
    }

    // Nothing refused reached anyone: after a marker sent last, the watcher saw none of it
    // (the JetStream API subjects are left out: the services use their own all the time).
    let marker = "permissions.test.marker";
    watcher.publish(marker, "".into()).await.expect("marker");
    let forbidden: BTreeSet<&str> = FORBIDDEN_PUBLISH
        .iter()
        .flat_map(|(_, subjects)| subjects.iter().copied())
        .filter(|subject| !subject.starts_with('$'))
        .collect();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), everything.next())
            .await
            .expect("the marker arrives")
            .expect("subscription open");
        assert!(
            !forbidden.contains(message.subject.as_str()),
            "{} got through",
            message.subject
        );
        if message.subject.as_str() == marker {
            break;
        }
    }
}

#[tokio::test]
async fn a_services_database_role_reaches_its_own_database_and_no_other() {
    let stack = Stack::up();
    let services = ["user", "product", "order"];
    for role in services {
        for database in services.iter().chain(&["postgres", "template1"]) {
            let url = stack.database_url(role, database);
            let connected = sqlx::PgConnection::connect(&url).await;
            if *database == role {
                connected.unwrap_or_else(|error| panic!("{role} into its own database: {error}"));
            } else {
                let error = connected
                    .err()
                    .unwrap_or_else(|| panic!("{role}_svc connected to {database}"));
                assert!(
                    error.to_string().contains("permission denied"),
                    "{role} into {database}: {error}"
                );
            }
        }
    }
}

#[tokio::test]
async fn on_one_host_the_services_use_the_database_socket_which_still_asks_for_their_password() {
    let stack = Stack::up();
    let port = stack.pg_port();
    let socket_dir = stack.dir().join("pg").join("run");
    for service in ["user", "product", "order"] {
        // The replicas' sessions, as their own role sees them: none over TCP (that one is ours).
        let mut own = sqlx::PgConnection::connect(&stack.database_url(service, service))
            .await
            .unwrap_or_else(|error| panic!("{service} over TCP: {error}"));
        let sessions: Vec<Option<String>> = sqlx::query_scalar(
            "select host(client_addr) from pg_stat_activity \
             where usename = current_user and pid <> pg_backend_pid()",
        )
        .fetch_all(&mut own)
        .await
        .expect("the role's sessions");
        assert!(
            !sessions.is_empty(),
            "{service}: no session of its replicas"
        );
        assert!(
            sessions.iter().all(Option::is_none),
            "{service}: replicas connected over TCP: {sessions:?}"
        );

        let socket = |password: &str| {
            format!(
                "postgres://{service}_svc{password}@localhost/{service}_db?host={}&port={port}",
                socket_dir.display()
            )
        };
        let error = sqlx::PgConnection::connect(&socket(""))
            .await
            .err()
            .unwrap_or_else(|| {
                panic!("{service}_svc connected over the socket without a password")
            });
        assert!(error.to_string().contains("password"), "{service}: {error}");
        let password = format!(":{}", stack.secret(&format!("{service}_db_password")));
        sqlx::PgConnection::connect(&socket(&password))
            .await
            .unwrap_or_else(|error| panic!("{service} over the socket: {error}"));
    }
}
