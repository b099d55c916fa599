//! `GET /health` (the process answers) and `GET /ready` (its database and NATS are reachable).

use std::time::Duration;

use async_nats::connection::State;
use axum::{Json, Router, extract::State as Extract, http::StatusCode, routing::get};
use serde_json::{Value, json};
use sqlx::PgPool;

/// What `/ready` checks.
#[derive(Clone)]
pub struct Dependencies {
    /// The service's database.
    pub pool: PgPool,
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
