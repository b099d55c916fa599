//! The process's tracing pipeline as `main` installs it: a request's trace reaches the NATS
//! headers of what the request sends.

#[test]
fn a_requests_trace_goes_into_the_nats_headers_sent_while_handling_it() {
    let _telemetry = kit::telemetry::init("test");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = axum::http::Request::builder()
        .uri("/order")
        .header("traceparent", traceparent)
        .body(axum::body::Body::empty())
        .expect("request");
    let span = kit::serve::request_span(&request);
    let mut headers = async_nats::HeaderMap::new();
    span.in_scope(|| kit::telemetry::inject(&mut headers));
    let sent = headers.get("traceparent").map(|v| v.to_string());
    assert!(
        sent.as_deref()
            .is_some_and(|sent| sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")),
        "{sent:?}"
    );
}
