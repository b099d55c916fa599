//! Several hosts (`STACK_HOSTS=3`): a NATS cluster of three nodes with every stream kept on all
//! three, a replica of each service on each host, and a replica started by hand on yet another
//! address, configured like the others and announced to nobody, that takes its share of work.

use serde_json::json;
use testkit::{Guarded, http::Client, stack::Stack};

/// The sum of the `nats_messages_handled_total` of the replica at `address` for saga messages,
/// from its metrics.
async fn saga_messages_handled(address: &str) -> f64 {
    let metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("nats_messages_handled_total{") && line.contains("kind=\"saga\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn on_three_hosts_every_stream_has_three_replicas_and_a_fourth_replica_started_elsewhere_takes_work()
 {
    let stack = Stack::up_with(&[("STACK_HOSTS", "3")]);
    let http = Client::new(stack.url());
    for id in 1..=20 {
        let user =
            json!({"command": "create", "id": id, "username": "u", "email": "e", "password": "p"});
        let product = json!({"command": "create", "id": id, "name": "n", "description": "d", "price": 1.0, "quantity": 1_000_000});
        assert_eq!(http.post("/user", &user).await.status, 200);
        assert_eq!(http.post("/product", &product).await.status, 200);
    }

    let js = async_nats::jetstream::new(stack.nats_admin().await);
    for name in [
        "ORDER_SAGA",
        "ORDER_EVENTS",
        "USER_SAGA",
        "PRODUCT_SAGA",
        "DEAD_LETTERS",
    ] {
        let info = js
            .get_stream(name)
            .await
            .expect(name)
            .info()
            .await
            .expect("info")
            .clone();
        let cluster = info.cluster.expect("clustered");
        assert_eq!(info.config.num_replicas, 3, "{name}");
        assert!(cluster.leader.is_some(), "{name} has a leader");
        assert_eq!(cluster.replicas.len(), 2, "{name}: two followers");
    }
    let status = stack.run("status");
    for expected in ["host-1", "host-3", "pg-order", "ORDER_SAGA"] {
        assert!(status.contains(expected), "{expected} in:\n{status}");
    }

    // A fourth product replica on an address no host has, with the settings any replica has.
    let port = testkit::free_port();
    let address = format!("127.0.0.6:{port}");
    let binary = stack
        .env()
        .iter()
        .find(|(name, _)| name == "STACK_BIN_DIR")
        .map(|(_, dir)| format!("{dir}/product"))
        .expect("STACK_BIN_DIR");
    let command: Vec<String> = [
        "env".to_owned(),
        format!("HTTP_ADDR={address}"),
        format!("DATABASE_URL={}", stack.database_url("product", "product")),
        format!("NATS_URL={}", stack.nats_urls()),
        "NATS_USER=product".to_owned(),
        format!("NATS_PASSWORD={}", stack.secret("nats_product_password")),
        "STREAM_REPLICAS=3".to_owned(),
        "RUST_LOG=warn".to_owned(),
        binary,
    ]
    .into();
    let fourth = Guarded::spawn(
        &command,
        &stack.dir().join("logs/product-4.log"),
        "TERM",
        None,
    );
    let ready = format!("http://{address}/ready");
    testkit::eventually("the fourth replica is ready", || async {
        let answer = reqwest::get(&ready).await.ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;

    // Orders through Nginx, which knows nothing of the fourth replica: its work comes over NATS.
    for round in 0..10 {
        let orders = (1..=20).map(|id| {
            let body = json!({"command": "place order", "user_id": id, "product_id": (id + round) % 20 + 1, "quantity": 1});
            let http = &http;
            async move { http.post("/order", &body).await.status }
        });
        let statuses = futures::future::join_all(orders).await;
        assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    }
    let handled = saga_messages_handled(&address).await;
    assert!(
        handled > 0.0,
        "the fourth replica handled saga messages: {handled}"
    );
    drop(fourth);
}
