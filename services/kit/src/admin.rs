//! Operator commands (API.md, "Admin commands"): `POST /admin/shutdown` and `POST /admin/reset`,
//! accepted by any service and carried out by every process of every service over NATS. They
//! need `Authorization: Bearer <ADMIN_TOKEN>` and do not exist (404) when no token is configured.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};

use async_nats::Client;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    routing::post,
};
use futures::StreamExt;
use serde_json::{Value, json};
use shared::{
    admin::{ResetDone, SERVICES},
    subject,
};
use tokio_util::sync::CancellationToken;

/// How long a reset waits for every service to report.
const RESET_PATIENCE: Duration = Duration::from_secs(10);

/// What the admin routes need.
#[derive(Clone)]
pub struct Admin {
    token: Option<Arc<str>>,
    nats: Client,
}

impl Admin {
    /// Admin commands guarded by `token`; `None` turns them off.
    pub fn new(token: Option<String>, nats: Client) -> Self {
        Self {
            token: token.map(Arc::from),
            nats,
        }
    }
}

type Answer = (StatusCode, Json<Value>);

/// `POST /admin/shutdown` and `POST /admin/reset`.
pub fn routes<S>(admin: Admin) -> Router<S> {
    Router::new()
        .route("/admin/shutdown", post(shutdown))
        .route("/admin/reset", post(reset))
        .with_state(admin)
}

fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(token) = &admin.token else {
        return Err((StatusCode::NOT_FOUND, Json(json!({}))));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!("admin command refused: bad or missing token");
        Err((StatusCode::UNAUTHORIZED, Json(json!({}))))
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn shutdown(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    if let Err(answer) = authorize(&admin, &headers) {
        return answer;
    }
    let sent = async {
        admin
            .nats
            .publish(subject::ADMIN_SHUTDOWN, bytes::Bytes::new())
            .await?;
        admin.nats.flush().await?;
        anyhow::Ok(())
    };
    match sent.await {
        Ok(()) => {
            tracing::warn!("shutdown of every service requested");
            (StatusCode::OK, Json(json!({})))
        }
        Err(error) => {
            tracing::error!(%error, "could not broadcast the shutdown");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})))
        }
    }
}

async fn reset(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    if let Err(answer) = authorize(&admin, &headers) {
        return answer;
    }
    tracing::warn!("reset of every service requested");
    let mut done = BTreeSet::new();
    let collected = async {
        let inbox = admin.nats.new_inbox();
        let mut replies = admin.nats.subscribe(inbox.clone()).await?;
        admin
            .nats
            .publish_with_reply(subject::ADMIN_RESET, inbox, bytes::Bytes::new())
            .await?;
        while done.len() < SERVICES.len() {
            let Some(reply) = replies.next().await else {
                break;
            };
            if let Ok(report) = serde_json::from_slice::<ResetDone>(&reply.payload) {
                done.insert(report.service);
            }
        }
        anyhow::Ok(())
    };
    let finished = tokio::time::timeout(RESET_PATIENCE, collected).await;
    let status = match finished {
        Ok(Ok(())) if done.len() == SERVICES.len() => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(json!({ "reset": done })))
}

/// Obeys `admin.cmd.shutdown` (cancels `shutdown`) and `admin.cmd.reset` (runs `reset`, then
/// answers with this service's name), when admin commands are on (`token` is set).
pub async fn listen<F, Fut>(
    nats: &Client,
    token: Option<&str>,
    service: &'static str,
    shutdown: CancellationToken,
    reset: F,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    if token.is_none() {
        return Ok(None);
    }
    let stops = nats.subscribe(subject::ADMIN_SHUTDOWN).await?;
    let resets = nats.subscribe(subject::ADMIN_RESET).await?;
    let nats = nats.clone();
    Ok(Some(tokio::spawn(async move {
        let mut commands = futures::stream::select(stops, resets);
        while let Some(command) = commands.next().await {
            if command.subject.as_str() == subject::ADMIN_SHUTDOWN {
                tracing::warn!("shutting down on operator command");
                shutdown.cancel();
                continue;
            }
            // A reset that panics is logged by `caught` and, like a failed one, not confirmed.
            match crate::panics::caught(async { reset().await }).await {
                Ok(Ok(())) => {
                    tracing::warn!("all data deleted on operator command");
                    let done = serde_json::to_vec(&ResetDone {
                        service: service.to_owned(),
                    })
                    .unwrap_or_default();
                    if let Some(reply) = command.reply
                        && let Err(error) = nats.publish(reply, done.into()).await
                    {
                        tracing::warn!(%error, "could not confirm the reset");
                    }
                }
                Ok(Err(error)) => tracing::error!(error = ?error, "reset failed"),
                Err(_) => {}
            }
        }
    })))
}

/// Purges the JetStream streams named `streams` (pending saga work), as part of a reset.
pub async fn purge(js: &async_nats::jetstream::Context, streams: &[&str]) -> anyhow::Result<()> {
    for name in streams {
        js.get_stream(name)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
            .purge()
            .await
            .map_err(|e| anyhow::anyhow!("purging {name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
