//! The fault-injection suite, short: orders under kills of every kind of component, and every
//! guarantee checked afterwards (`./stack chaos` runs it longer). A test binary of its own, so
//! that it runs alone: its kills and restarts would otherwise starve the stacks of the tests
//! running beside it, on two cores, into timeouts that are not theirs.

use std::process::Command;

use serde_json::Value;
use testkit::stack::Stack;

#[tokio::test]
async fn orders_survive_kills_of_every_component_with_nothing_lost_or_oversold() {
    // Short deadlines, so that orders stranded by a kill are re-driven and decided quickly.
    let stack = Stack::up_with(&[
        ("ORDER_REDRIVE_AFTER_MS", "2000"),
        ("ORDER_REJECT_AFTER_MS", "15000"),
    ]);
    let seed = std::env::var("CHAOS_SEED").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (nanos % 1_000_000).to_string()
    });

    let output = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(["--url", &stack.url(), "--json", "-c", "12", "-d", "35s"])
        .args(["chaos", "--seed", &seed, "--stock", "2000"])
        .args(["--calm", "3s", "--down", "1s", "--settle", "45s"])
        .arg("--stack")
        .arg(stack.script())
        .envs(stack.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running stress chaos");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "seed {seed}: no report:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["passed"] != true)
        .collect();
    assert!(
        failed.is_empty() && output.status.success(),
        "seed {seed}: {failed:#?}"
    );
    let killed: std::collections::BTreeSet<&str> = report["kills"]
        .as_array()
        .expect("kills")
        .iter()
        .filter_map(|kill| kill["kind"].as_str())
        .collect();
    assert_eq!(
        killed.len(),
        6,
        "seed {seed}: every kind of component killed at least once: {killed:?}"
    );
    let clients = &report["clients"];
    assert!(
        clients["ok"].as_u64() > Some(100) && clients["conflict"].as_u64() > Some(0),
        "seed {seed}: orders were confirmed, and some found no stock left: {clients}"
    );
}
