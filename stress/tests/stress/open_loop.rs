//! Latency accounting: a server that stalls for 500 ms must show it in the open loop's tail.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use stress::{
    client::{Request, Targets},
    engine::{self, Shape, Source},
};
use tokio::time::Instant;

/// A server that answers at once, except that from 1.0 s to 1.5 s after `epoch` it answers
/// nothing, then everything it held.
async fn stalling_server(epoch: Instant) -> String {
    async fn answer(State(epoch): State<Instant>) -> &'static str {
        let since = epoch.elapsed();
        if since >= Duration::from_millis(1000) && since < Duration::from_millis(1500) {
            tokio::time::sleep_until(epoch + Duration::from_millis(1500)).await;
        }
        "{}"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().route("/x", get(answer)).with_state(epoch);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn shape(rate: Option<f64>) -> Shape {
    Shape {
        connections: 50,
        rate,
        duration: Some(Duration::from_millis(2500)),
        requests: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        keep_responses: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_ms_stall_shows_in_the_open_loop_p99_but_hides_from_a_closed_loop() {
    let source: Source = Arc::new(|_| Some(Request::get("/x")));

    let epoch = Instant::now();
    let targets = Targets::through(&stalling_server(epoch).await).unwrap();
    let open = engine::run(&targets, source.clone(), &shape(Some(400.0)), None).await;

    let epoch = Instant::now();
    let targets = Targets::through(&stalling_server(epoch).await).unwrap();
    let closed = engine::run(&targets, source, &shape(None), None).await;

    // 400 req/s for 2.5 s: about a fifth of the requests were due during the stall, and each
    // waited from its due time to the end of the stall.
    let p = |recording: &engine::Recording, q: f64| {
        recording.latencies.value_at_quantile(q) as f64 / 1000.0
    };
    assert!(
        open.total() >= 950,
        "the offered rate was kept: {}",
        open.total()
    );
    assert!(
        p(&open, 0.99) >= 400.0,
        "open loop p99 {} ms",
        p(&open, 0.99)
    );
    assert!(
        p(&open, 0.90) >= 200.0,
        "open loop p90 {} ms",
        p(&open, 0.90)
    );
    assert!(
        p(&open, 0.50) < 50.0,
        "most requests did not stall: p50 {} ms",
        p(&open, 0.50)
    );
    // A closed loop stops sending while the server stalls: only its 50 in-flight requests wait.
    assert!(
        p(&closed, 0.99) < p(&open, 0.99) / 2.0,
        "closed p99 {} ms, open p99 {} ms",
        p(&closed, 0.99),
        p(&open, 0.99)
    );
    assert!(
        closed.latencies.max() as f64 / 1000.0 >= 400.0,
        "the stall is still its maximum"
    );
}

#[tokio::test]
async fn requests_sent_during_the_warm_up_are_not_recorded() {
    let epoch = Instant::now() - Duration::from_secs(10);
    let targets = Targets::through(&stalling_server(epoch).await).unwrap();
    let source: Source = Arc::new(|_| Some(Request::get("/x")));
    let shape = Shape {
        rate: Some(200.0),
        warmup: Duration::from_millis(500),
        duration: Some(Duration::from_secs(1)),
        ..shape(None)
    };
    let recording = engine::run(&targets, source, &shape, None).await;
    let warm: u64 = recording.warmup_statuses.values().sum();
    assert!(
        (95..=105).contains(&warm),
        "100 requests in the warm-up, got {warm}"
    );
    assert!(
        (190..=210).contains(&recording.total()),
        "200 measured, got {}",
        recording.total()
    );
    assert!(
        (recording.measured.as_secs_f64() - 1.0).abs() < 0.1,
        "{:?}",
        recording.measured
    );
}
