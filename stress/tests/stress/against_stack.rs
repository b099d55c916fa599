//! The `stress` binary against a stack started by `./stack up`'s code: the counts it reports and
//! the data it leaves behind.

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;
use testkit::{http::Client, prometheus, stack::Stack};

/// Runs `stress --json <args>` against the stack and returns whether it passed and its summary.
fn stress(stack: &Stack, args: &[&str]) -> (bool, Value) {
    let token =
        std::fs::read_to_string(stack.dir().join("secrets/admin_token")).expect("admin token");
    let output = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args([
            "--url",
            &stack.url(),
            "--admin-token",
            token.trim(),
            "--json",
        ])
        .args(args)
        .current_dir(stack.dir())
        .output()
        .expect("running stress");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "stress {args:?} printed no JSON:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), summary)
}

fn statuses(summary: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(summary["statuses"].clone()).expect("statuses")
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(status, n)| ((*status).to_owned(), *n))
        .collect()
}

#[tokio::test]
async fn seed_runs_the_original_request_list_and_leaves_nothing_behind() {
    let stack = Stack::up();
    let (passed, summary) = stress(&stack, &["-c", "1", "seed"]);
    assert!(passed, "{summary:#}");
    assert_eq!(summary["requests"], 2000);
    assert_eq!(
        statuses(&summary),
        counts(&[("200", 1600), ("404", 400)]),
        "one connection keeps the original order"
    );

    let (passed, summary) = stress(&stack, &["-c", "32", "seed", "--ids", "300"]);
    assert!(passed, "{summary:#}");
    assert_eq!(summary["requests"], 3000);
    let http = Client::new(stack.url());
    for id in [1, 150, 300] {
        assert_eq!(http.get(&format!("/user/{id}")).await.status, 404);
        assert_eq!(http.get(&format!("/product/{id}")).await.status, 404);
    }
}

#[tokio::test]
async fn a_replay_answers_each_quirky_line_as_the_contract_says() {
    let stack = Stack::up();
    let quirks = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/quirks.txt");
    let (passed, summary) = stress(&stack, &["replay", quirks]);
    assert!(passed, "{summary:#}");
    // The product without a description is refused (the contract requires one), so reading it
    // finds nothing; an order of 100 exceeds the stock; an order for product 999 finds nothing.
    assert_eq!(
        statuses(&summary),
        counts(&[("200", 16), ("400", 1), ("404", 2), ("409", 1)])
    );
    let http = Client::new(stack.url());
    // User 2 bought one lamp and was deleted later; user 1 bought three; the lamp itself was
    // deleted last, its quantity matching.
    assert_eq!(http.get("/user/purchased/2").await.status, 404);
    assert_eq!(
        http.get("/user/purchased/1").await.json,
        serde_json::json!({"10": 3})
    );
    assert_eq!(http.get("/product/10").await.status, 404);
}

#[tokio::test]
async fn an_orders_run_reports_its_figures_and_that_stock_was_conserved() {
    let stack = Stack::up();
    let (passed, summary) = stress(
        &stack,
        &[
            "-d", "2s", "--warmup", "1s", "-c", "16", "orders", "--stock", "500",
        ],
    );
    assert!(passed, "{summary:#}");
    assert!(summary["throughput"].as_f64().unwrap_or(0.0) > 0.0);
    let checks = summary["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| {
        c["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("stock conserved"))
            && c["passed"] == true
    }));
    // 3 products of 500 units: whatever the rate, never more than 1500 sold.
    let http = Client::new(stack.url());
    let mut left = 0;
    for product in 1..=3 {
        left += http.get(&format!("/product/{product}")).await.json["quantity"]
            .as_i64()
            .expect("quantity");
    }
    assert!((0..=1500).contains(&left), "{left} units left");

    // What Prometheus would scrape afterwards agrees: one confirmed order per unit sold
    // (warm-up included), and every decided order timed by the saga.
    let mut samples = Vec::new();
    for replica in 1..=2 {
        let url = format!("http://{}/metrics", stack.replica("order", replica));
        samples.extend(prometheus::scrape(&url).await);
    }
    let confirmed = prometheus::total(&samples, "orders_confirmed_total", &[]);
    assert_eq!(
        confirmed,
        (1500 - left) as f64,
        "confirmed orders = units sold"
    );
    let rejected = prometheus::total(&samples, "orders_rejected_total", &[]);
    let timed = prometheus::total(&samples, "order_saga_duration_seconds_count", &[]);
    assert_eq!(timed, confirmed + rejected);
    let placed = prometheus::total(&samples, "http_requests_total", &[("route", "/order")]);
    assert!(
        placed >= summary["requests"].as_f64().unwrap_or(f64::MAX),
        "{placed}"
    );
}

#[tokio::test]
async fn a_replay_ending_in_shutdown_stops_every_service_and_a_replay_starting_with_restart_finds_the_data()
 {
    let stack = Stack::up();
    let first = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/first.txt");
    let (passed, summary) = stress(&stack, &["replay", first]);
    assert!(passed, "{summary:#}");
    assert_eq!(statuses(&summary), counts(&[("200", 5)]));
    let stopped = testkit::eventually("every service stopped", || async {
        let status = stack.run("status");
        (status.matches(" stopped ").count() == 6).then_some(status)
    })
    .await;
    assert!(stopped.contains("nginx              running"), "{stopped}");

    stack.run("up");
    let restart = concat!(env!("CARGO_MANIFEST_DIR"), "/workloads/restart.txt");
    let (passed, summary) = stress(&stack, &["replay", restart]);
    assert!(passed, "{summary:#}");
    assert_eq!(
        statuses(&summary),
        counts(&[("200", 4)]),
        "the user, the product and the purchase survived"
    );
    stack.run("up");
    let http = Client::new(stack.url());
    assert_eq!(
        http.get("/user/purchased/1").await.json,
        serde_json::json!({"7": 5})
    );
    assert_eq!(http.get("/product/7").await.json["quantity"], 5);
}
