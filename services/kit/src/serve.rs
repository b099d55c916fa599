//! Serving HTTP until shutdown, and the shutdown signal itself.

use std::{future::IntoFuture, time::Duration};

use axum::{Router, serve::ListenerExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting connections
/// and waits, at most `patience`, for in-flight requests to finish.
pub async fn http(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    patience: Duration,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server.into_future() => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(patience).await } => {
            tracing::warn!(?patience, "HTTP requests still in flight at shutdown deadline; closing them");
            Ok(())
        }
    }
}

/// A token cancelled on SIGTERM or Ctrl-C: the one shutdown signal the process passes around.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
            }
        }
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

/// The span of one HTTP request: method and the route template (`/user/{id}`), never the raw
/// path, so ids do not explode the set of span names.
pub fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str);
    tracing::info_span!("http", method = %request.method(), route)
}
