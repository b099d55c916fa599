//! The fault-injection suite, short: orders under kills of every kind of component, and every
//! guarantee checked afterwards (`./stack chaos` runs it longer). A test binary of its own, so
//! that it runs alone: its kills and restarts would otherwise starve the stacks of the tests
//! running beside it, on two cores, into timeouts that are not theirs.

mod support;

use testkit::stack::Stack;

#[tokio::test]
async fn orders_survive_kills_of_every_component_with_nothing_lost_or_oversold() {
    // Short deadlines, so that orders stranded by a kill are re-driven and decided quickly.
    let stack = Stack::up_with(&[
        ("ORDER_REDRIVE_AFTER_MS", "2000"),
        ("ORDER_REJECT_AFTER_MS", "15000"),
    ]);
    let (seed, report) = support::chaos(&stack, &[]);
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
