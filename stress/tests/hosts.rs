//! The fault-injection suite on three hosts, short: orders with Idempotency-Keys while whole
//! hosts are killed, hosts lose their disks (their JetStream store deleted), and the node that
//! leads the saga's stream is killed on purpose; then every guarantee checked. A test binary of
//! its own, so that it runs alone (see chaos.rs).

mod support;

use std::collections::BTreeSet;

use testkit::stack::Stack;

#[tokio::test]
async fn orders_survive_losing_hosts_their_disks_and_the_streams_leader_with_nothing_lost_or_oversold()
 {
    let stack = Stack::up_with(&[
        ("STACK_HOSTS", "3"),
        ("ORDER_REDRIVE_AFTER_MS", "2000"),
        ("ORDER_REJECT_AFTER_MS", "15000"),
    ]);
    // A host killed, then another wiped, then the leader's node killed, round after round.
    let (seed, report) = support::chaos(&stack, &["--kill", "host,wipe,leader", "--in-order"]);
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
