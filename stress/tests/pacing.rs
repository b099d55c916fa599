//! When the load loops send: a closed loop at once, an open loop on time, and neither counts the
//! tool's own timer as the server's latency.

use std::{sync::Arc, time::Duration};

use axum::{Router, routing::get};
use stress::{
    client::{Request, Targets},
    engine::{self, Shape, Source},
};

/// A server that answers `/x` after `delay` (at once for zero), to within the operating
/// system's timer (tokio's would round it up to whole milliseconds).
async fn server(delay: Duration) -> Targets {
    let answer = move || async move {
        if !delay.is_zero() {
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
        }
        "{}"
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().route("/x", get(answer));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Targets::through(&format!("http://{addr}")).expect("a target")
}

fn shape(connections: usize, rate: Option<f64>, duration: Duration) -> Shape {
    Shape {
        rate,
        duration: Some(duration),
        ..Shape::finite(connections, Duration::from_secs(5))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_sends_its_next_request_as_soon_as_the_last_is_answered() {
    let targets = server(Duration::ZERO).await;
    let source: Source = Arc::new(|_| Some(Request::get("/x")));
    let window = Duration::from_millis(500);
    let recording = engine::run(&targets, source, &shape(1, None, window), None).await;
    // A loop that waited for the timer's next millisecond tick before each request could send
    // at most one a millisecond; on loopback an answer takes a small fraction of that.
    let most_at_one_a_tick = window.as_millis() as u64 + 1;
    assert!(
        recording.total() > 2 * most_at_one_a_tick,
        "{} requests in {window:?} on one connection",
        recording.total()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_never_times_a_request_from_before_it_was_sent() {
    // Every answer takes at least 3 ms, so no latency may be shorter: an open loop that sent a
    // request before its due time and timed it from that due time would record less.
    let answer = Duration::from_millis(3);
    let targets = server(answer).await;
    let source: Source = Arc::new(|_| Some(Request::get("/x")));
    let recording = engine::run(
        &targets,
        source,
        &shape(50, Some(4_000.0), Duration::from_secs(1)),
        None,
    )
    .await;
    assert!(
        (3_900..=4_100).contains(&recording.total()),
        "4,000 requests offered, {} sent",
        recording.total()
    );
    let shortest = Duration::from_micros(recording.latencies.min());
    assert!(shortest >= answer, "a latency of {shortest:?}");
}
