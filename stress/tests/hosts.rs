//! The fault-injection suite on three hosts, short: orders with Idempotency-Keys while whole
//! hosts are killed, hosts lose their disks (their JetStream store deleted), and the node that
//! leads the saga's stream is killed on purpose; then every guarantee checked. A test binary of
//! its own, so that it runs alone (see chaos.rs).

use std::{collections::BTreeSet, process::Command};

use serde_json::Value;
use testkit::stack::Stack;

#[tokio::test]
async fn orders_survive_losing_hosts_their_disks_and_the_streams_leader_with_nothing_lost_or_oversold()
 {
    let stack = Stack::up_with(&[
        ("STACK_HOSTS", "3"),
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
        // A host killed, then another wiped, then the leader's node killed, round after round.
        .args(["--kill", "host,wipe,leader", "--in-order"])
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
    let kills = report["kills"].as_array().expect("kills");
    let kinds: BTreeSet<&str> = kills.iter().filter_map(|k| k["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["host", "leader", "wipe"]),
        "seed {seed}: a host killed, a host wiped, the leader's node killed: {kills:?}"
    );
    let first = |kind: &str| {
        kills
            .iter()
            .find(|k| k["kind"] == kind)
            .and_then(|k| k["target"].as_str())
    };
    assert_ne!(
        first("host"),
        first("wipe"),
        "seed {seed}: the host wiped is another than the host killed: {kills:?}"
    );
    let clients = &report["clients"];
    assert!(
        clients["ok"].as_u64() > Some(100),
        "seed {seed}: orders were confirmed: {clients}"
    );
}
