//! What `nats micro ls|info|stats` show: every replica of the three services answers the NATS
//! services API (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) with its endpoints and counts.

use std::{collections::BTreeMap, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use testkit::{http::Client, stack::Stack};

/// Every answer to a services-API request on `subject`, gathered for a second (each replica
/// answers once, like `nats micro` does it).
async fn gather(nats: &async_nats::Client, subject: &str) -> Vec<Value> {
    let inbox = nats.new_inbox();
    let mut answers = nats.subscribe(inbox.clone()).await.expect("subscribe");
    nats.publish_with_reply(subject.to_owned(), inbox, "".into())
        .await
        .expect("publish");
    let mut gathered = Vec::new();
    let until = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => break,
            Some(answer) = answers.next() => {
                gathered.push(serde_json::from_slice(&answer.payload).expect("JSON answer"));
            }
        }
    }
    gathered
}

/// Answers by service name.
fn by_name(answers: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut named: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for answer in answers {
        let name = answer["name"].as_str().expect("name").to_owned();
        named.entry(name).or_default().push(answer);
    }
    named
}

#[tokio::test]
async fn every_replica_of_the_three_services_answers_the_nats_services_api() {
    let stack = Stack::up();
    let nats = stack.nats_admin().await;
    let http = Client::new(stack.url());

    let pings = gather(&nats, "$SRV.PING").await;
    let named = by_name(&pings);
    assert_eq!(
        named.keys().collect::<Vec<_>>(),
        ["order", "product", "user"],
        "{pings:?}"
    );
    for (name, replicas) in &named {
        assert_eq!(replicas.len(), 2, "two replicas of {name}: {replicas:?}");
        for ping in replicas {
            assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
            assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
        }
    }

    let infos = gather(&nats, "$SRV.INFO").await;
    let subjects = |name: &str| -> Vec<(String, String)> {
        let info = by_name(&infos)[name][0].clone();
        assert!(
            !info["description"].as_str().unwrap_or("").is_empty(),
            "{info}"
        );
        let mut endpoints: Vec<(String, String)> = info["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|endpoint| {
                assert!(
                    !endpoint["metadata"]["description"]
                        .as_str()
                        .unwrap_or("")
                        .is_empty(),
                    "every endpoint describes itself: {endpoint}"
                );
                assert_eq!(endpoint["queue_group"], name, "{endpoint}");
                let field = |key: &str| endpoint[key].as_str().expect("string").to_owned();
                (field("name"), field("subject"))
            })
            .collect();
        endpoints.sort();
        endpoints
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        subjects("user"),
        pairs(&[
            ("create", "user.cmd.create"),
            ("delete", "user.cmd.delete"),
            ("get", "user.query.get"),
            ("update", "user.cmd.update"),
        ])
    );
    assert_eq!(
        subjects("product"),
        pairs(&[
            ("create", "product.cmd.create"),
            ("delete", "product.cmd.delete"),
            ("get", "product.query.get"),
            ("update", "product.cmd.update"),
        ])
    );
    assert_eq!(
        subjects("order"),
        pairs(&[
            ("get", "order.query.get"),
            ("purchased", "order.query.purchased")
        ])
    );

    // Requests show in the counts of `nats micro stats`: writes through Nginx, and queries
    // as `nats req order.query.purchased '{"user_id":1}'` sends them.
    let user =
        json!({"command": "create", "id": 1, "username": "u", "email": "e", "password": "p"});
    assert_eq!(http.post("/user", &user).await.status, 200);
    for _ in 0..3 {
        let reply = nats
            .request("order.query.purchased", r#"{"user_id":1}"#.into())
            .await
            .expect("purchased");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(reply, json!({"units": {}}));
    }
    let reply = nats
        .request(
            "order.query.get",
            r#"{"id":"0190c3a4-0000-7000-8000-000000000000"}"#.into(),
        )
        .await
        .expect("get");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(reply, json!({"outcome": "not_found"}));
    let stats = gather(&nats, "$SRV.STATS.order").await;
    assert_eq!(stats.len(), 2, "both order replicas answer: {stats:?}");
    let requests = |endpoint: &str| -> u64 {
        stats
            .iter()
            .flat_map(|replica| replica["endpoints"].as_array().expect("endpoints"))
            .filter(|e| e["name"] == endpoint)
            .map(|e| e["num_requests"].as_u64().expect("num_requests"))
            .sum()
    };
    assert_eq!(requests("purchased"), 3, "{stats:?}");
    assert_eq!(requests("get"), 1, "{stats:?}");
    let user_stats = gather(&nats, "$SRV.STATS.user").await;
    let creates: u64 = user_stats
        .iter()
        .flat_map(|replica| replica["endpoints"].as_array().expect("endpoints"))
        .filter(|e| e["name"] == "create")
        .map(|e| e["num_requests"].as_u64().expect("num_requests"))
        .sum();
    assert_eq!(creates, 1, "{user_stats:?}");
}
