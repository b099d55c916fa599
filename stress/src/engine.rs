//! The load loops. Closed loop: N connections, each sending its next request when the last one
//! answered. Open loop: a fixed offered rate; request `i` is due at `start + i / rate`, and its
//! latency counts from that intended moment (or from when it was sent, if that was earlier), so a
//! stalled server cannot hide its tail behind the requests it kept from being sent (no
//! coordinated omission). Requests started during the warm-up are not recorded.

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::client::{Connection, Failure, Request, Targets};

/// The resolution of tokio's timer.
const TICK: Duration = Duration::from_millis(1);

/// Produces the request with a given sequence number; `None` ends a finite workload.
pub type Source = Arc<dyn Fn(u64) -> Option<Request> + Send + Sync>;

/// How one request ended: status and body, or why there was none.
pub type Outcome = Result<(u16, Bytes), Failure>;

/// How the load is applied.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Concurrent connections (workers).
    pub connections: usize,
    /// Offered requests per second (open loop); `None` for a closed loop.
    pub rate: Option<f64>,
    /// How long to measure, after the warm-up.
    pub duration: Option<Duration>,
    /// How many requests to send in all (warm-up included).
    pub requests: Option<u64>,
    /// Not recorded.
    pub warmup: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Keep every status and body, in sequence order (for replays).
    pub keep_responses: bool,
}

impl Shape {
    /// A closed loop over a finite workload: every request, none skipped as warm-up.
    pub fn finite(connections: usize, timeout: Duration) -> Self {
        Self {
            connections,
            rate: None,
            duration: None,
            requests: None,
            warmup: Duration::ZERO,
            timeout,
            keep_responses: false,
        }
    }
}

/// One recorded request, for the time series.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Completion time, in ms since the measurement began.
    pub at_ms: u32,
    /// Latency in µs.
    pub latency_us: u32,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Latencies of answered requests, in µs.
    pub latencies: Histogram<u64>,
    /// Answered requests by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Unanswered requests by kind.
    pub failures: BTreeMap<Failure, u64>,
    /// Requests answered during the warm-up, by status: not measured, but they did happen.
    pub warmup_statuses: BTreeMap<u16, u64>,
    /// Every answered request's completion time and latency.
    pub timeline: Vec<Sample>,
    /// Length of the measured window.
    pub measured: Duration,
    /// With `keep_responses`: `(sequence, outcome)` of every request.
    pub responses: Vec<(u64, Outcome)>,
}

impl Recording {
    fn empty() -> Self {
        Self {
            latencies: Histogram::new_with_bounds(1, 120_000_000, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            warmup_statuses: BTreeMap::new(),
            timeline: Vec::new(),
            measured: Duration::ZERO,
            responses: Vec::new(),
        }
    }

    /// Answered plus unanswered requests.
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures.values().sum::<u64>()
    }

    /// Adds `other`'s requests to this recording (its window is ignored).
    pub fn merge(&mut self, other: Recording) {
        let _ = self.latencies.add(&other.latencies);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        for (failure, count) in other.failures {
            *self.failures.entry(failure).or_default() += count;
        }
        for (status, count) in other.warmup_statuses {
            *self.warmup_statuses.entry(status).or_default() += count;
        }
        self.timeline.extend(other.timeline);
        self.responses.extend(other.responses);
    }
}

/// Counters the progress display reads while the run goes on.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    failed: AtomicU64,
}

struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Option<Instant>,
}

/// Runs `source` against `targets` with `shape` and returns what it measured. Shows live
/// progress on stderr when it is a terminal and `label` is given.
pub async fn run(
    targets: &Targets,
    source: Source,
    shape: &Shape,
    label: Option<&str>,
) -> Recording {
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let clock = Arc::new(Clock {
        start,
        measure_from,
        end: shape.duration.map(|d| measure_from + d),
    });
    let next = Arc::new(AtomicU64::new(0));
    let live = Arc::new(Live::default());
    let progress = label.map(|label| {
        show_progress(
            label,
            live.clone(),
            shape.duration.map(|d| d + shape.warmup),
        )
    });

    let workers: Vec<_> = (0..shape.connections.max(1))
        .map(|_| {
            let (targets, source, shape) = (targets.clone(), source.clone(), shape.clone());
            let (clock, next, live) = (clock.clone(), next.clone(), live.clone());
            tokio::spawn(
                async move { worker(&targets, &source, &shape, &clock, &next, &live).await },
            )
        })
        .collect();
    let mut recording = Recording::empty();
    for worker in workers {
        if let Ok(part) = worker.await {
            recording.merge(part);
        }
    }
    let finished = Instant::now();
    recording.measured = match clock.end {
        Some(end) => end.min(finished).saturating_duration_since(measure_from),
        None => finished.saturating_duration_since(measure_from),
    };
    recording.responses.sort_by_key(|(sequence, _)| *sequence);
    if let Some((task, bar)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    recording
}

async fn worker(
    targets: &Targets,
    source: &Source,
    shape: &Shape,
    clock: &Clock,
    next: &AtomicU64,
    live: &Live,
) -> Recording {
    let mut recording = Recording::empty();
    let mut connections: Vec<Option<Connection>> = (0..targets.len()).map(|_| None).collect();
    loop {
        let sequence = next.fetch_add(1, Ordering::Relaxed);
        if shape.requests.is_some_and(|limit| sequence >= limit) {
            break;
        }
        let intended = match shape.rate {
            Some(rate) => clock.start + Duration::from_secs_f64(sequence as f64 / rate),
            None => Instant::now(),
        };
        if clock.end.is_some_and(|end| intended >= end) {
            break;
        }
        let Some(request) = source(sequence) else {
            break;
        };
        // Tokio's timer fires at the first millisecond tick after its deadline, even one already
        // past (up to 3 ms late, 0.75 ms at the median). So a closed loop does not sleep, and
        // an open loop wakes a tick early and counts from when the request was sent or due,
        // whichever came first: never from later than it was due.
        if shape.rate.is_some() {
            tokio::time::sleep_until(intended.checked_sub(TICK).unwrap_or(intended)).await;
        }
        let from = Instant::now().min(intended);

        let target = targets.route(&request.path);
        let outcome = exchange(
            &mut connections[target],
            targets.addr(target),
            &request,
            shape.timeout,
        )
        .await;
        let done = Instant::now();
        live.done.fetch_add(1, Ordering::Relaxed);
        if !matches!(outcome, Ok((status, _)) if status < 500) {
            live.failed.fetch_add(1, Ordering::Relaxed);
        }
        if intended < clock.measure_from {
            if let Ok((status, _)) = &outcome {
                *recording.warmup_statuses.entry(*status).or_default() += 1;
            }
            continue;
        }
        match &outcome {
            Ok((status, _)) => {
                let latency = done.saturating_duration_since(from);
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                recording.latencies.saturating_record(micros);
                *recording.statuses.entry(*status).or_default() += 1;
                let at = done.saturating_duration_since(clock.measure_from);
                recording.timeline.push(Sample {
                    at_ms: u32::try_from(at.as_millis()).unwrap_or(u32::MAX),
                    latency_us: u32::try_from(micros).unwrap_or(u32::MAX),
                });
            }
            Err(failure) => *recording.failures.entry(*failure).or_default() += 1,
        }
        if shape.keep_responses {
            recording.responses.push((sequence, outcome));
        }
    }
    recording
}

/// Sends on the cached connection, opening one first if needed; drops it after a failure.
async fn exchange(
    slot: &mut Option<Connection>,
    addr: &str,
    request: &Request,
    timeout: Duration,
) -> Outcome {
    // A keep-alive connection the server closed after its last answer is not a failure: the
    // request has not been sent, and any client would open a new connection for it.
    if slot.as_ref().is_some_and(Connection::is_closed) {
        *slot = None;
    }
    if slot.is_none() {
        match Connection::open(addr, timeout).await {
            Ok(connection) => *slot = Some(connection),
            Err(failure) => {
                // Do not spin on a target that refuses connections.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(failure);
            }
        }
    }
    let connection = slot.as_mut().ok_or(Failure::Connect)?;
    let outcome = connection.send(request, timeout).await;
    if outcome.is_err() {
        *slot = None;
    }
    outcome
}

fn show_progress(
    label: &str,
    live: Arc<Live>,
    length: Option<Duration>,
) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(length.map_or(0, |d| d.as_secs()))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let template = if length.is_some() {
        "{prefix} [{bar:30}] {elapsed}/{duration} {msg}"
    } else {
        "{prefix} {spinner} {elapsed} {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (done, failed) = (
                live.done.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
            );
            let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), done);
            bar.set_position(started.elapsed().as_secs());
            bar.set_message(format!("{done} requests  {rate:.0} req/s  {failed} failed"));
        }
    });
    (task, shown)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An empty recording, for tests of the summary.
    pub(crate) fn empty_recording() -> Recording {
        Recording::empty()
    }

    #[test]
    fn merging_adds_counts_and_keeps_every_sample() {
        let mut a = Recording::empty();
        a.latencies.record(100).unwrap();
        a.statuses.insert(200, 1);
        a.timeline.push(Sample {
            at_ms: 1,
            latency_us: 100,
        });
        let mut b = Recording::empty();
        b.latencies.record(300).unwrap();
        b.statuses.insert(200, 1);
        b.statuses.insert(409, 1);
        b.failures.insert(Failure::Io, 2);
        a.merge(b);
        assert_eq!(a.total(), 5);
        assert_eq!(a.statuses[&200], 2);
        assert_eq!(a.latencies.len(), 2);
        assert_eq!(a.timeline.len(), 1);
    }
}
