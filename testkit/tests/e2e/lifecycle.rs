//! `./stack up`, `down`, `status` and `up` again: data survives, and a rerun restarts only what died.

use serde_json::json;
use testkit::{http::Client, stack::Stack};

#[tokio::test]
async fn a_stopped_and_restarted_stack_still_has_its_data() {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    let user = json!({"command": "create", "id": 42, "username": "kept", "email": "k@x", "password": "pw"});
    assert_eq!(http.post("/user", &user).await.status, 200);

    stack.run("down");
    let status = stack.run("status");
    assert!(
        !status.contains("running") && !status.contains("ready"),
        "{status}"
    );

    stack.run("up");
    // A new client: the old one's pooled connections went with the old Nginx.
    let read = Client::new(stack.url()).get("/user/42").await;
    assert_eq!((read.status, &read.json["username"]), (200, &json!("kept")));
}

#[tokio::test]
async fn running_up_again_restarts_only_the_replica_that_died() {
    let stack = Stack::up();
    stack.kill("user-2");

    let output = stack.run("up");
    assert!(output.contains("starting user replica 2"), "{output}");
    for other in [
        "user replica 1",
        "product replica",
        "nats-server",
        "PostgreSQL on",
        "nginx on",
    ] {
        assert!(
            !output.contains(&format!("starting {other}")),
            "restarted {other}:\n{output}"
        );
    }
    let status = stack.run("status");
    assert_eq!(status.matches(" ready ").count(), 6, "{status}");
    let replica = Client::new(format!("http://{}", stack.replica("user", 2)));
    assert_eq!(replica.get("/ready").await.status, 200);
}

#[tokio::test]
async fn with_every_replica_of_a_service_down_nginx_answers_502_in_json_until_up_restarts_them() {
    let stack = Stack::up();
    stack.kill("product-1");
    stack.kill("product-2");
    let http = Client::new(stack.url());
    let down = http.get("/product/1").await;
    assert_eq!((down.status, down.json), (502, json!({})));
    assert_eq!(
        http.get("/user/1").await.status,
        404,
        "the other service is unaffected"
    );

    stack.run("up");
    assert_eq!(Client::new(stack.url()).get("/product/1").await.status, 404);
}

#[tokio::test]
async fn a_services_healthcheck_argument_says_whether_its_replica_is_ready() {
    let stack = Stack::up();
    let binaries = stack
        .env()
        .iter()
        .find(|(name, _)| name == "STACK_BIN_DIR")
        .map(|(_, dir)| std::path::PathBuf::from(dir))
        .expect("STACK_BIN_DIR");
    // As compose runs it: the replica's own HTTP_ADDR, which may name every interface.
    let healthy = |service: &str, replica: u16| {
        let port = stack.replica(service, replica);
        let port = port.rsplit(':').next().expect("port");
        std::process::Command::new(binaries.join(service))
            .arg("healthcheck")
            .env("HTTP_ADDR", format!("0.0.0.0:{port}"))
            .output()
            .expect("run the healthcheck")
            .status
            .success()
    };
    for service in ["user", "product", "order"] {
        assert!(healthy(service, 1), "{service} replica 1 is ready");
    }
    stack.kill("order-2");
    assert!(!healthy("order", 2), "a dead replica is not healthy");
    stack.kill("postgres");
    testkit::eventually("user replica 1 unhealthy without its database", || async {
        (!healthy("user", 1)).then_some(())
    })
    .await;
}
