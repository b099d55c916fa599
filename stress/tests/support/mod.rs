//! What the chaos tests share: running `stress chaos` against a stack and reading its report.

use std::process::Command;

use serde_json::Value;
use testkit::stack::Stack;

/// Initial stock of each of the run's three products: few enough units (about 750 orders of
/// two units on average) that even a slow machine, its debug build killed every few seconds,
/// sells them out within the run, so that its last orders meet the rejection path (a run in CI
/// confirmed 1,471 orders in 35 s, short of the 3,000 that 2,000 units a product took).
const STOCK: i32 = 500;

/// A short chaos run (`-c 12 -d 35s`, [`STOCK`] units a product, short calms) against `stack`, with
/// `faults` as further `stress chaos` options; panics unless every check held. Returns the seed
/// (`CHAOS_SEED`, or drawn and printed in failures) and the report.
pub fn chaos(stack: &Stack, faults: &[&str]) -> (String, Value) {
    let seed = std::env::var("CHAOS_SEED").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (nanos % 1_000_000).to_string()
    });
    let output = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(["--url", &stack.url(), "--json", "-c", "12", "-d", "35s"])
        .args(["chaos", "--seed", &seed, "--stock", &STOCK.to_string()])
        .args(faults)
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
    (seed, report)
}
