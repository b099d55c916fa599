//! Several hosts (`STACK_HOSTS=3`): a NATS cluster of three nodes with every stream kept on all
//! three, a replica of each service on each host, and a replica started by hand on yet another
//! address while orders flow, configured like the others and announced to nobody, that takes its
//! share of work.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

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

    // Orders flow through Nginx meanwhile, from a few clients, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| tokio::spawn(place_orders(Client::new(stack.url()), n, stop.clone())))
        .collect();

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

    // Nginx knows nothing of it: its work comes over NATS, from the orders already flowing.
    testkit::eventually("the fourth replica handles saga messages", || async {
        (saga_messages_handled(&address).await > 0.0).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let statuses = client.await.expect("client");
        assert!(!statuses.is_empty(), "each client placed orders meanwhile");
        assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    }
    drop(fourth);
}

/// Places orders one after another until told to stop; every answer's status.
async fn place_orders(http: Client, n: i32, stop: Arc<AtomicBool>) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let body = json!({"command": "place order", "user_id": (n * 5 + i) % 20 + 1, "product_id": i % 20 + 1, "quantity": 1});
        statuses.push(http.post("/order", &body).await.status);
    }
    statuses
}
