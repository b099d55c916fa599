//! What a service's port answers while the service starts: it is bound before the service has
//! reached its database and NATS, and the probes are answered at once meanwhile, other requests
//! as soon as the service can serve them.

use std::{io, os::fd::AsFd, time::Duration};

use axum::{
    Json, Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::serve::Closing;

/// How long a request that came during start-up waits for the service before it is answered
/// 503: less than Nginx's `proxy_read_timeout` (15 s), so that Nginx gets an answer.
const HOLD: Duration = Duration::from_secs(10);

/// Start-up answers being served on a listener until [`Starting::ready`] (or until dropped).
pub struct Starting {
    router: watch::Sender<Option<Router>>,
    stop: CancellationToken,
}

/// Until [`Starting::ready`], serves `listener` (sharing its socket, which stays open) as a
/// replica that is not ready yet: `/health` 200 (the process lives) and `/ready` 503
/// `{"status": "starting"}` at once; any other request waits, at most [`HOLD`], for the service
/// and is then served by it, or answered 503 in its path's error shape. Every answer says
/// `Connection: close`, so that no client keeps a connection to this server past start-up.
///
/// Without it, connections would be accepted by the kernel and left unanswered for as long as
/// start-up takes (a minute when a stream of another service is missing): probes would hang
/// instead of learning that the replica is starting.
pub fn serve(listener: &TcpListener) -> io::Result<Starting> {
    let shared = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
    shared.set_nonblocking(true)?;
    let shared = TcpListener::from_std(shared)?;
    let (router, ready) = watch::channel(None);
    let stop = CancellationToken::new();
    // When the service is ready, this server stops accepting and closes its descriptor of the
    // socket (not the socket): the connections taken are answered, and the service takes those
    // still waiting. Closing the connections taken but not yet read, as a graceful shutdown
    // would, would reset them; keeping the descriptor would keep the port listening after the
    // service closes its own at shutdown, with nobody to take what queues there.
    let listener = Closing::leaving_backlog(shared, stop.clone())?;
    let server = tokio::spawn(async move {
        let app = Router::new().fallback(move |request| answer(request, ready.clone()));
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "serving start-up answers");
        }
    });
    // Once it accepts no more, its connections end by themselves (each answer closes its own);
    // the accepting task goes once they have.
    let stopped = stop.clone();
    tokio::spawn(async move {
        stopped.cancelled().await;
        tokio::time::sleep(HOLD).await;
        server.abort();
    });
    Ok(Starting { router, stop })
}

impl Starting {
    /// Hands the requests waiting for the service to `router` and stops accepting connections:
    /// those still waiting in the backlog are the caller's. The requests already taken are
    /// answered in the background, each closing its connection.
    pub fn ready(self, router: Router) {
        self.router.send_replace(Some(router));
    }
}

/// Dropped without [`Starting::ready`] (start-up failed), it stops accepting too, and the
/// requests it holds are answered 503.
impl Drop for Starting {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(request: Request, mut ready: watch::Receiver<Option<Router>>) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = match path.as_str() {
        "/health" => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        "/ready" if ready.borrow().is_none() => starting(),
        _ => {
            let waited = tokio::time::timeout(HOLD, ready.wait_for(Option::is_some)).await;
            let router = waited.ok().and_then(|found| found.ok()?.clone());
            match router {
                Some(router) => match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => unavailable(&path),
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn starting() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "starting"})),
    )
        .into_response();
    let retry = HeaderValue::from_static("1");
    response.headers_mut().insert(header::RETRY_AFTER, retry);
    response
}

/// 503 in the error shape of `path`: POST /order's own (API.md), `{}` elsewhere.
fn unavailable(path: &str) -> Response {
    let body = if path == "/order" {
        json!({"status": "Service Unavailable"})
    } else {
        json!({})
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
