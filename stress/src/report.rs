//! The summary of a run: throughput, latency percentiles, statuses and failures, as a table for
//! people and as JSON for scripts.

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use crate::engine::Recording;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A check a workload made after its run (stock conserved, data left as expected).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

/// One second of a run: the requests answered in it and their latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the measurement began.
    pub second: u32,
    /// Requests answered in this second.
    pub requests: usize,
    /// Their median latency, in milliseconds.
    pub p50: f64,
    /// Their 99th percentile, in milliseconds.
    pub p99: f64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Workload name and its parameters.
    pub workload: String,
    /// `closed loop, 64 connections` or `open loop at 8000 req/s, 64 connections`.
    pub load: String,
    /// Where the requests went.
    pub target: String,
    /// Requests recorded (warm-up excluded), answered or not.
    pub requests: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Recorded requests per second.
    pub throughput: f64,
    /// Over answered requests.
    pub latency_ms: Latency,
    /// Answered requests by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Unanswered requests by kind (`connect`, `timeout`, `io`).
    pub failures: BTreeMap<String, u64>,
    /// Preparation (seeding) reported apart from the measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preparation: Option<String>,
    /// Checks made after the run.
    pub checks: Vec<Check>,
    /// Throughput and latency second by second, to tell a stall from a steady tail.
    pub per_second: Vec<Second>,
    /// The measurements themselves, for plots.
    #[serde(skip)]
    pub recording: Recording,
}

/// Per-second throughput and latency percentiles from a run's samples.
fn per_second(recording: &Recording, seconds: f64) -> Vec<Second> {
    let seconds = usize::try_from(seconds.ceil() as u64).unwrap_or(0).max(1);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); seconds];
    for sample in &recording.timeline {
        let index = usize::try_from(sample.at_ms / 1000).unwrap_or(usize::MAX);
        if let Some(bucket) = buckets.get_mut(index) {
            bucket.push(sample.latency_us);
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(second, mut latencies)| {
            latencies.sort_unstable();
            let at = |q: f64| {
                let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
                latencies
                    .get(index)
                    .map_or(0.0, |us| f64::from(*us) / 1000.0)
            };
            Second {
                second: u32::try_from(second).unwrap_or(0),
                requests: latencies.len(),
                p50: at(0.5),
                p99: at(0.99),
            }
        })
        .collect()
}

impl Summary {
    /// Summarises `recording`.
    pub fn new(workload: String, load: String, target: String, recording: Recording) -> Self {
        let seconds = recording.measured.as_secs_f64();
        let requests = recording.total();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let h = &recording.latencies;
        let latency_ms = if h.is_empty() {
            Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            }
        } else {
            Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
                mean: h.mean() / 1000.0,
            }
        };
        Self {
            workload,
            load,
            target,
            requests,
            seconds,
            throughput: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            latency_ms,
            statuses: recording.statuses.clone(),
            failures: recording
                .failures
                .iter()
                .map(|(kind, count)| {
                    (
                        serde_json::to_value(kind)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        *count,
                    )
                })
                .collect(),
            preparation: None,
            checks: Vec::new(),
            per_second: per_second(&recording, seconds),
            recording,
        }
    }

    /// Server errors (5xx) plus unanswered requests.
    pub fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| **status >= 500)
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.failures.values().sum::<u64>()
    }

    /// True when every check held.
    pub fn checks_passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, key: &str, value: String| {
            let _ = writeln!(out, "  {key:<12} {value}");
        };
        row(&mut out, "workload", self.workload.clone());
        row(&mut out, "load", self.load.clone());
        row(&mut out, "target", self.target.clone());
        if let Some(preparation) = &self.preparation {
            row(&mut out, "prepared", preparation.clone());
        }
        row(
            &mut out,
            "requests",
            format!("{} in {:.2} s", group(self.requests), self.seconds),
        );
        row(
            &mut out,
            "throughput",
            format!("{} req/s", group(self.throughput.round() as u64)),
        );
        let l = &self.latency_ms;
        row(
            &mut out,
            "latency",
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                millis(l.p50),
                millis(l.p90),
                millis(l.p99),
                millis(l.p999),
                millis(l.max),
                millis(l.mean)
            ),
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {}", group(*n)))
            .collect();
        row(
            &mut out,
            "statuses",
            if statuses.is_empty() {
                "none".into()
            } else {
                statuses.join("  ")
            },
        );
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(k, n)| format!("{k}: {}", group(*n)))
            .collect();
        row(
            &mut out,
            "failures",
            if failures.is_empty() {
                "none".into()
            } else {
                failures.join("  ")
            },
        );
        for check in &self.checks {
            let verdict = if check.passed { "ok" } else { "FAILED" };
            row(
                &mut out,
                "check",
                format!("{verdict}: {} ({})", check.what, check.detail),
            );
        }
        out
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in ms with sensible precision: `0.42 ms`, `3.1 ms`, `250 ms`.
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{client::Failure, engine::Recording};

    fn recording(latencies_ms: &[u64], seconds: u64) -> Recording {
        let mut recording = crate::engine::tests::empty_recording();
        for ms in latencies_ms {
            recording.latencies.record(ms * 1000).unwrap();
            *recording.statuses.entry(200).or_default() += 1;
        }
        recording.measured = Duration::from_secs(seconds);
        recording
    }

    #[test]
    fn throughput_is_recorded_requests_over_the_measured_window() {
        let summary = Summary::new("w".into(), "l".into(), "t".into(), recording(&[1; 500], 4));
        assert_eq!(summary.requests, 500);
        assert!((summary.throughput - 125.0).abs() < 1e-9);
    }

    #[test]
    fn each_second_counts_the_requests_answered_in_it_and_their_percentiles() {
        let mut recording = recording(&[], 3);
        // Second 0: 100 requests of 1..=100 ms; second 1: none; second 2: one of 7 ms.
        for ms in 1..=100u32 {
            recording.timeline.push(crate::engine::Sample {
                at_ms: 9 * ms,
                latency_us: ms * 1000,
            });
        }
        recording.timeline.push(crate::engine::Sample {
            at_ms: 2_500,
            latency_us: 7_000,
        });
        let summary = Summary::new("w".into(), "l".into(), "t".into(), recording);
        let seconds: Vec<(u32, usize, f64, f64)> = summary
            .per_second
            .iter()
            .map(|s| (s.second, s.requests, s.p50, s.p99))
            .collect();
        assert_eq!(
            seconds,
            vec![(0, 100, 50.0, 99.0), (1, 0, 0.0, 0.0), (2, 1, 7.0, 7.0)]
        );
    }

    #[test]
    fn percentiles_come_from_the_latency_distribution() {
        // 1..=1000 ms: p50 is 500 ms, p90 900 ms, p99 990 ms, max 1000 ms (to 3 significant digits).
        let latencies: Vec<u64> = (1..=1000).collect();
        let summary = Summary::new("w".into(), "l".into(), "t".into(), recording(&latencies, 1));
        let l = summary.latency_ms;
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(
            close(l.p50, 500.0) && close(l.p90, 900.0) && close(l.p99, 990.0),
            "{l:?}"
        );
        assert!(
            close(l.p999, 999.0) && close(l.max, 1000.0) && close(l.mean, 500.5),
            "{l:?}"
        );
    }

    #[test]
    fn errors_are_server_errors_and_unanswered_requests_not_client_errors() {
        let mut recording = recording(&[1, 1], 1);
        recording.statuses.insert(404, 7);
        recording.statuses.insert(503, 2);
        recording.failures.insert(Failure::Timeout, 3);
        recording.failures.insert(Failure::Connect, 1);
        let summary = Summary::new("w".into(), "l".into(), "t".into(), recording);
        assert_eq!(summary.requests, 2 + 7 + 2 + 4);
        assert_eq!(summary.errors(), 2 + 4);
        assert_eq!(summary.failures.get("timeout"), Some(&3));
        let table = summary.table();
        assert!(
            table.contains("404: 7") && table.contains("timeout: 3"),
            "{table}"
        );
    }

    #[test]
    fn numbers_are_grouped_and_latencies_rounded_for_reading() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(millis(0.4249), "0.42 ms");
        assert_eq!(millis(3.12), "3.1 ms");
        assert_eq!(millis(250.4), "250 ms");
    }
}
