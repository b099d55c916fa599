//! The HTTP server every service runs, over raw TCP as Nginx speaks to it: an answer given
//! before the request's body was read ends the connection and says so; one given after keeps it.
//! And what a service's port answers while the service starts.

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    http::StatusCode,
    routing::{get, post},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
    let listener = kit::serve::listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let addr = listener.local_addr().expect("addr");
    // Nobody accepts: the kernel completes each connection and keeps it in the backlog, or
    // drops its first packet, and the client would retry only a second later.
    let connects = (0..500)
        .map(|_| tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)));
    let connected = futures::future::join_all(connects)
        .await
        .into_iter()
        .filter(|outcome| matches!(outcome, Ok(Ok(_))))
        .count();
    assert_eq!(connected, 500, "every connection of the burst was taken in");
}

/// A server with one route, `POST /echo`, that reads its whole body; any other method on it is
/// answered 405 at once, without reading the body, as the services' fallbacks do.
async fn server() -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let router = Router::new().route(
        "/echo",
        post(|body: Body| async move {
            let limits = kit::body::Limits {
                max_bytes: 1024,
                timeout: Duration::from_secs(5),
            };
            match kit::body::read_object(body, limits).await {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::BAD_REQUEST,
            }
        })
        .fallback(|| async { StatusCode::METHOD_NOT_ALLOWED }),
    );
    let shutdown = CancellationToken::new();
    let config = kit::config::Common::from_env(0, "postgres://unused").expect("config");
    let stop = shutdown.clone();
    tokio::spawn(async move { kit::serve::http(listener, router, stop, &config).await });
    (addr, shutdown)
}

/// Reads one answer's head and returns its status line and lower-cased header lines.
async fn head(connection: &mut TcpStream) -> (String, Vec<String>) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut byte))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert_eq!(n, 1, "the connection closed before an answer: {bytes:?}");
        bytes.push(byte[0]);
    }
    let text = String::from_utf8(bytes).expect("utf-8 head");
    let mut lines = text.lines().map(str::to_owned);
    let status = lines.next().expect("status line");
    (status, lines.map(|line| line.to_lowercase()).collect())
}

/// Reads an answer's body, given by its `content-length`.
async fn body(connection: &mut TcpStream, headers: &[String]) -> String {
    let length: usize = headers
        .iter()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().expect("length"));
    let mut body = vec![0u8; length];
    connection.read_exact(&mut body).await.expect("body");
    String::from_utf8(body).expect("utf-8 body")
}

#[tokio::test]
async fn an_answer_given_before_the_request_body_was_read_says_connection_close() {
    let (addr, shutdown) = server().await;
    let mut connection = TcpStream::connect(&addr).await.expect("connect");
    // The head alone: the body (as Nginx streams it) is still on its way when the 405 is due.
    let request = "DELETE /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\n";
    connection
        .write_all(request.as_bytes())
        .await
        .expect("write");

    let (status, headers) = head(&mut connection).await;

    assert!(status.contains(" 405 "), "{status}");
    assert!(
        headers.iter().any(|line| line == "connection: close"),
        "{headers:?}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn an_answer_to_a_request_whose_body_was_read_keeps_the_connection_for_the_next() {
    let (addr, shutdown) = server().await;
    let mut connection = TcpStream::connect(&addr).await.expect("connect");
    let request = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\n{\"a\": 1}\n";

    for _ in 0..2 {
        connection
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let (status, headers) = head(&mut connection).await;
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            !headers.iter().any(|line| line.starts_with("connection:")),
            "{headers:?}"
        );
        body(&mut connection, &headers).await;
    }
    shutdown.cancel();
}

/// What the panic middleware of the test server below answers: a 500 naming the path.
fn panicked(uri: &axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = format!("{{\"panicked\":\"{}\"}}", uri.path());
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

#[tokio::test]
async fn a_handler_that_panics_is_answered_500_and_its_connection_serves_the_next_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("a bug in a handler");
                }
                StatusCode::OK
            }),
        )
        .route("/fine", get(|| async { StatusCode::OK }))
        .layer(axum::middleware::from_fn_with_state(
            panicked as fn(&_) -> _,
            kit::serve::catch_panic,
        ));
    let shutdown = CancellationToken::new();
    let config = kit::config::Common::from_env(0, "postgres://unused").expect("config");
    let stop = shutdown.clone();
    tokio::spawn(async move { kit::serve::http(listener, router, stop, &config).await });
    let mut connection = TcpStream::connect(addr).await.expect("connect");

    for path in ["/panic", "/fine", "/panic", "/fine"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        connection
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let (status, closes, body) = answer(&mut connection).await;
        if path == "/panic" {
            assert!(status.contains(" 500 "), "{status}");
            assert_eq!(body, r#"{"panicked":"/panic"}"#);
        } else {
            assert!(status.contains(" 200 "), "{status}");
        }
        assert!(!closes, "the connection is kept after {path}");
    }
    shutdown.cancel();
}

/// Sends `request` (a request line) on a new connection, without a body.
async fn send(addr: &str, request: &str) -> TcpStream {
    let mut connection = TcpStream::connect(addr).await.expect("connect");
    let request = format!("{request} HTTP/1.1\r\nhost: x\r\n\r\n");
    connection
        .write_all(request.as_bytes())
        .await
        .expect("write");
    connection
}

/// Reads the answer on `connection`: its status line, whether it closes the connection, its body.
async fn answer(connection: &mut TcpStream) -> (String, bool, String) {
    let (status, headers) = head(connection).await;
    let closes = headers.iter().any(|line| line == "connection: close");
    (status, closes, body(connection, &headers).await)
}

#[tokio::test]
async fn a_starting_service_answers_its_probes_at_once_and_other_requests_once_it_is_ready() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let starting = kit::starting::serve(&listener).expect("start-up answers");

    let (status, closes, text) = answer(&mut send(&addr, "GET /ready").await).await;
    assert!(status.contains(" 503 ") && closes, "{status}");
    assert_eq!(text, r#"{"status":"starting"}"#);
    let (status, closes, text) = answer(&mut send(&addr, "GET /health").await).await;
    assert!(status.contains(" 200 ") && closes, "{status}");
    assert_eq!(text, r#"{"status":"ok"}"#);
    // A request for the service itself waits until the service can serve it.
    let mut early = send(&addr, "GET /thing").await;
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(300), early.peek(&mut byte)).await;
    assert!(waited.is_err(), "answered before the service was ready");

    let router = Router::new()
        .route("/thing", get(|| async { "served" }))
        .route("/ready", get(|| async { "ready" }));
    starting.ready(router.clone());
    let (status, closes, text) = answer(&mut early).await;
    assert!(status.contains(" 200 ") && closes, "{status}");
    assert_eq!(text, "served");

    let shutdown = CancellationToken::new();
    let config = kit::config::Common::from_env(0, "postgres://unused").expect("config");
    let stop = shutdown.clone();
    tokio::spawn(async move { kit::serve::http(listener, router, stop, &config).await });
    for _ in 0..5 {
        let (status, _, text) = answer(&mut send(&addr, "GET /ready").await).await;
        assert!(status.contains(" 200 "), "once started: {status}");
        assert_eq!(text, "ready");
    }

    // When the service stops, its port refuses connections at once: nothing of start-up keeps
    // the socket listening.
    shutdown.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port still takes connections 2 s after the service began to stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
