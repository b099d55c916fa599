//! `GET /health` (the process answers) and `GET /ready` (its database and NATS are reachable).

use std::time::Duration;

use async_nats::connection::State;
use axum::{Json, Router, extract::State as Extract, http::StatusCode, routing::get};
use serde_json::{Value, json};

/// What `/ready` checks.
#[derive(Clone)]
pub struct Dependencies {
    /// The service's database.
    pub pool: crate::pool::Pool,
    /// The service's NATS connection.
    pub nats: async_nats::Client,
}

/// The two routes, with their own state so any service can merge them into its router.
pub fn routes<S>(dependencies: Dependencies) -> Router<S> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .with_state(dependencies)
}

async fn ready(Extract(deps): Extract<Dependencies>) -> (StatusCode, Json<Value>) {
    let database = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query("select 1").execute(&deps.pool),
    )
    .await
    .is_ok_and(|result| result.is_ok());
    let nats = deps.nats.connection_state() == State::Connected;
    let up = |ok: bool| if ok { "up" } else { "down" };
    let status = if database && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
        "database": up(database),
        "nats": up(nats),
    });
    (status, Json(body))
}

/// `<service> healthcheck`, for container healthchecks (the runtime image has no curl): asks
/// the process serving on `addr` (its `HTTP_ADDR`; an unspecified address means this host) for
/// `/ready` and succeeds only on 200.
pub fn probe(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer)?;
    let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    anyhow::ensure!(
        status_line.starts_with(b"HTTP/1.1 200 "),
        "{addr}/ready answered {}",
        String::from_utf8_lossy(status_line)
    );
    Ok(())
}
