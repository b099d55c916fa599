//! Serving HTTP until shutdown, and the shutdown signal itself.

use std::{
    future::IntoFuture,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, HttpBody},
    extract::Request,
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
    serve::{Listener, ListenerExt},
};
use futures::StreamExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::Common;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops without failing a
/// request that Nginx (or any keep-alive client) has sent or is about to send:
///
/// 1. The listening socket closes at once, once the connections already in its backlog are
///    taken: a new connection is refused, and Nginx tries the next replica (a refused
///    connection carried no request, so even a POST is retried).
/// 2. For `config.shutdown_drain`, requests on open connections are still served, each answer
///    saying `Connection: close`: the client learns from the answer itself that the connection
///    ends, instead of sending its next request into a connection being closed under it (which
///    Nginx may not retry elsewhere, the request having been sent).
/// 3. Then the connections left idle are closed, and in-flight requests get at most
///    `config.shutdown_timeout` to finish.
pub async fn http(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    config: &Common,
) -> io::Result<()> {
    let listener = Closing::new(listener, shutdown.clone())?.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let draining = shutdown.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let draining = draining.clone();
            async move {
                let (request, read) = tracking_body(request);
                let mut response = next.run(request).await;
                let unread = read.is_some_and(|read| !read.load(Ordering::Relaxed));
                if draining.is_cancelled() || unread {
                    let close = HeaderValue::from_static("close");
                    response.headers_mut().insert(header::CONNECTION, close);
                }
                response
            }
        },
    ));
    let (drain, patience) = (config.shutdown_drain, config.shutdown_timeout);
    let drained = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        drained.cancelled().await;
        tokio::time::sleep(drain).await;
    });
    tokio::select! {
        result = server.into_future() => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain + patience).await } => {
            tracing::warn!(?patience, "HTTP requests still in flight at shutdown deadline; closing them");
            Ok(())
        }
    }
}

/// The request with its body wrapped to record, in the flag returned, whether it was read to
/// its end; no flag (and nothing wrapped or allocated) when it has no body. An answer given
/// before that (a 405 or 404 for a request with a body, a 413) ends its connection, since the
/// rest of the body would be read as the next request: it must say `Connection: close`, or
/// Nginx keeps the connection for its next request and the replica closes it under that
/// request (a 502, and a POST is not retried elsewhere).
fn tracking_body(request: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if request.body().is_end_stream() {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let read = Arc::new(AtomicBool::new(false));
    let end = read.clone();
    let ended = futures::stream::poll_fn(move |_| {
        end.store(true, Ordering::Relaxed);
        std::task::Poll::Ready(None)
    });
    let body = Body::from_stream(body.into_data_stream().chain(ended));
    (Request::from_parts(parts, body), Some(read))
}

/// A TCP listener that closes its socket as soon as shutdown begins (after taking the
/// connections already waiting in its backlog), so that connection attempts are refused rather
/// than queued where nobody will accept them.
pub(crate) struct Closing {
    listener: Option<TcpListener>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    /// Whether the connections waiting in the backlog at shutdown are taken first: not when
    /// another listener on the same socket stays to take them (see [`crate::starting`]).
    backlog: bool,
}

impl Closing {
    fn new(listener: TcpListener, shutdown: CancellationToken) -> io::Result<Self> {
        Ok(Self {
            addr: listener.local_addr()?,
            listener: Some(listener),
            shutdown,
            backlog: true,
        })
    }

    /// Like [`Closing::new`], but at shutdown it leaves the connections waiting in the backlog
    /// to the other listener on the same socket, and closes only its own descriptor.
    pub(crate) fn leaving_backlog(
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        Ok(Self {
            backlog: false,
            ..Self::new(listener, shutdown)?
        })
    }
}

impl Listener for Closing {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        use futures::FutureExt;
        loop {
            let Some(listener) = &self.listener else {
                return std::future::pending().await;
            };
            if self.shutdown.is_cancelled() && !self.backlog {
                self.listener = None;
                continue;
            }
            if self.shutdown.is_cancelled() {
                // Connections the kernel has already completed would be reset with the socket,
                // after the client may have sent its request on them: take them first (they are
                // served, and told `Connection: close`), then close.
                match listener.accept().now_or_never() {
                    Some(Ok(connection)) => return connection,
                    Some(Err(_)) => continue,
                    None => {
                        self.listener = None;
                        continue;
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                accepted = listener.accept() => match accepted {
                    Ok(connection) => return connection,
                    Err(error) => {
                        // As axum's own listener: a failed handshake is the client's business;
                        // anything else (too many open files) gets a pause before trying again.
                        if !matches!(
                            error.kind(),
                            io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) {
                            tracing::error!(%error, "accept error");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Middleware: a handler that panics is answered by `internal` (a 500 in the documented shape of
/// the request's route, given its URI) instead of having its connection dropped (which Nginx
/// answers 502); the panic is logged, and the connection and the process go on. What runs
/// outside it (the layers around it: metrics, the request's span; Hyper) is plumbing, where a
/// panic ends the process (see [`crate::panics`]).
pub async fn catch_panic(
    axum::extract::State(internal): axum::extract::State<fn(&axum::http::Uri) -> Response>,
    request: Request,
    next: Next,
) -> Response {
    let uri = request.uri().clone();
    match crate::panics::caught(next.run(request)).await {
        Ok(response) => response,
        Err(_) => internal(&uri),
    }
}

/// The whole `main` of a service process: as `<name> healthcheck`, asks a running one whether
/// it is ready; otherwise installs logging and tracing, binds `HTTP_ADDR`, and runs the service
/// until SIGTERM, then sends the spans not yet exported.
pub fn process<C, F, Fut>(
    name: &'static str,
    config: anyhow::Result<C>,
    common: fn(&C) -> &Common,
    run: F,
) -> anyhow::Result<()>
where
    F: FnOnce(C, TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use anyhow::Context as _;
    let config = config?;
    let addr = common(&config).http_addr;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return crate::health::probe(addr);
    }
    // Before the runtime, and dropped after it: the OTLP exporter runs a blocking HTTP client
    // on a thread of its own.
    let _telemetry = crate::telemetry::init(name);
    crate::panics::end_process_when_uncaught();
    crate::panics::runtime()?.block_on(async {
        let listener = listen(addr).with_context(|| format!("binding {addr}"))?;
        run(config, listener, on_signal()).await
    })
}

/// Connections a listening socket holds until they are accepted (the kernel caps it at
/// `net.core.somaxconn`). Nginx opens connections in bursts (when a replica restarts, or beyond
/// the ones it keeps alive): past the backlog a connection's first packet is dropped, and
/// retried only a second later.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with a backlog of [`BACKLOG`] connections (tokio's `bind` gives 128).
/// Call within the runtime.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted replica binds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
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
/// path, so ids do not explode the set of span names. It continues the client's W3C trace
/// (`traceparent`), or starts one.
pub fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str);
    let method = crate::metrics::method_label(request.method());
    let span = tracing::info_span!(
        "http",
        method,
        route,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, crate::telemetry::from_http(request.headers()));
    span
}
