//! Graceful shutdown under load: SIGTERM to a replica of each service while clients keep
//! reading, writing and ordering through Nginx fails none of their requests.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use testkit::{http::Client, stack::Stack};

/// What one client does, request after request, until told to stop: every answer's status,
/// and the requests that got none.
async fn client(http: reqwest::Client, url: String, n: i32, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = (n * 7 + i) % 20 + 1;
        let request = match i % 4 {
            0 => http.get(format!("{url}/product/{id}")),
            1 => http
                .post(format!("{url}/product"))
                .json(&json!({"command": "update", "id": id, "price": f64::from(i)})),
            2 => http
                .post(format!("{url}/user"))
                .json(&json!({"command": "update", "id": id, "email": format!("{i}@x")})),
            _ => http.post(format!("{url}/order")).json(
                &json!({"command": "place order", "user_id": id, "product_id": id, "quantity": 1}),
            ),
        };
        seen.push(match request.send().await {
            Ok(response) => response.status().as_u16().to_string(),
            Err(error) => format!("no answer: {error}"),
        });
    }
    seen
}

fn pid(stack: &Stack, replica: &str) -> String {
    std::fs::read_to_string(stack.dir().join(format!("run/{replica}.pid")))
        .expect("pid file")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_sigterm_to_a_replica_of_each_service_under_load_fails_no_request() {
    let stack = Stack::up();
    let http = Client::new(stack.url());
    for id in 1..=20 {
        let user =
            json!({"command": "create", "id": id, "username": "u", "email": "e", "password": "p"});
        let product = json!({"command": "create", "id": id, "name": "n", "description": "d", "price": 1.0, "quantity": 100_000});
        assert_eq!(http.post("/user", &user).await.status, 200);
        assert_eq!(http.post("/product", &product).await.status, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|n| tokio::spawn(client(reqwest::Client::new(), stack.url(), n, stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let replicas = ["user-1", "product-1", "order-1"];
    let pids: Vec<String> = replicas.iter().map(|r| pid(&stack, r)).collect();
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .args(&pids)
        .status()
        .expect("kill");
    assert!(term.success());
    for pid in &pids {
        let gone = std::path::Path::new("/proc").join(pid).join("cmdline");
        testkit::eventually(&format!("pid {pid} exits"), || async {
            let cmdline = std::fs::read(&gone).unwrap_or_default();
            cmdline.is_empty().then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = stack.run("up");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = BTreeMap::<String, u64>::new();
    for task in clients {
        for outcome in task.await.expect("client") {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    for replica in replicas {
        let (service, n) = replica.split_once('-').expect("name");
        assert!(
            restarted.contains(&format!("starting {service} replica {n}")),
            "{replica} had exited: {restarted}"
        );
    }
    let failed: BTreeMap<&String, &u64> = outcomes
        .iter()
        .filter(|(outcome, _)| !matches!(outcome.as_str(), "200"))
        .collect();
    assert!(
        failed.is_empty(),
        "every request answered 200: {outcomes:?}\n{}",
        stack.errors()
    );
    assert!(outcomes.values().sum::<u64>() > 200, "{outcomes:?}");
}
