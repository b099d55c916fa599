//! Prometheus metrics: one registry per process, served at `GET /metrics` in the Prometheus
//! text format, with the figures every service shares (HTTP requests, NATS handlers, dead
//! letters); a service registers its own (the order saga's) next to them.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Latency buckets, in seconds: 0.5 ms to about 16 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Labels of an HTTP request: the route template (`/user/{id}`, never the raw path), the
/// method and the status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of a message handled from NATS: its subject, whether it came as a request
/// (services API) or from a saga stream (JetStream), and how its handler ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    subject: String,
    kind: &'static str,
    outcome: &'static str,
}

/// Labels of a handler's latency: subject and kind, as above.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    subject: String,
    kind: &'static str,
}

/// Labels of a dead letter: the consumer that gave up on its message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLabels {
    consumer: String,
}

type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How a message arrived.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A request on the services API, answered with a reply.
    Request,
    /// A saga message from a JetStream consumer, acknowledged.
    Saga,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Saga => "saga",
        }
    }
}

/// The process's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: LatencyFamily<HttpLabels>,
    handled: Family<HandledLabels, Counter>,
    handler_duration: LatencyFamily<LatencyLabels>,
    dead_letters: Family<DeadLabels, Counter>,
    database_up: Gauge,
}

impl Metrics {
    /// The shared metrics, plus whatever `register` adds to the registry.
    pub fn new(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: LatencyFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            http_duration.clone(),
        );
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "nats_messages_handled",
            "NATS messages handled, by subject, kind (request or saga) and outcome (ok, bad_request, unavailable, failed)",
            handled.clone(),
        );
        let handler_duration: LatencyFamily<LatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "nats_handler_duration_seconds",
            "Time a NATS handler took, by subject and kind",
            handler_duration.clone(),
        );
        let dead_letters = Family::<DeadLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Saga messages given up on and moved to DEAD_LETTERS by this process, by consumer",
            dead_letters.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "1 when this replica's database answered its latest probe (every 250 ms), 0 when not",
            database_up.clone(),
        );
        register(&mut registry);
        Self(Arc::new(Inner {
            registry,
            http_requests,
            http_duration,
            handled,
            handler_duration,
            dead_letters,
            database_up,
        }))
    }

    /// Counts one HTTP request.
    pub fn http(&self, method: &str, route: &str, status: StatusCode, took: Duration) {
        let labels = HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status: status.as_u16(),
        };
        self.0.http_requests.get_or_create(&labels).inc();
        self.0
            .http_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts one message handled from NATS; `outcome` is `None` when it succeeded, otherwise
    /// the handler error's code.
    pub fn handled(&self, subject: &str, kind: Kind, outcome: Option<usize>, took: Duration) {
        let outcome = match outcome {
            None => "ok",
            Some(shared::error::BAD_REQUEST) => "bad_request",
            Some(shared::error::UNAVAILABLE) => "unavailable",
            Some(_) => "failed",
        };
        let kind = kind.as_str();
        let subject = subject.to_owned();
        self.0
            .handler_duration
            .get_or_create(&LatencyLabels {
                subject: subject.clone(),
                kind,
            })
            .observe(took.as_secs_f64());
        self.0
            .handled
            .get_or_create(&HandledLabels {
                subject,
                kind,
                outcome,
            })
            .inc();
    }

    /// Counts one message moved to `DEAD_LETTERS` by `consumer`.
    pub fn dead_lettered(&self, consumer: &str) {
        self.0
            .dead_letters
            .get_or_create(&DeadLabels {
                consumer: consumer.to_owned(),
            })
            .inc();
    }

    /// The registry in the Prometheus text format, with `database_up` as given.
    pub fn render(&self, database_up: bool) -> Response {
        self.0.database_up.set(i64::from(database_up));
        let mut text = String::new();
        match prometheus_text::encode(&mut text, &self.0.registry) {
            Ok(()) => (
                [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
                text,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "encoding metrics");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// `GET /metrics`, for services with nothing to refresh before a scrape.
pub fn routes<S>(metrics: Metrics, database: crate::db::Probe) -> Router<S> {
    Router::new()
        .route(
            "/metrics",
            get(
                |State((metrics, database)): State<(Metrics, crate::db::Probe)>| async move {
                    metrics.render(database.is_up())
                },
            ),
        )
        .with_state((metrics, database))
}

/// The method as a label: one of the methods HTTP defines, or `_OTHER`. Clients choose the
/// method, and every label value is a series kept for the life of the process.
pub fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("_OTHER", Method::as_str)
}

/// Middleware counting every request of the router it wraps (add it with `Router::layer`,
/// so that the route template is known).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    metrics.http(
        method.as_str(),
        &route,
        response.status(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_of_the_clients_invention_is_labelled_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"AAAB").unwrap();
        assert_eq!(method_label(&invented), "_OTHER");
    }

    #[test]
    fn the_text_format_shows_each_request_under_its_route_and_status() {
        let metrics = Metrics::new(|_| {});
        metrics.http(
            "GET",
            "/user/{id}",
            StatusCode::NOT_FOUND,
            Duration::from_millis(3),
        );
        metrics.handled(
            "user.query.get",
            Kind::Request,
            None,
            Duration::from_millis(1),
        );
        metrics.handled(
            "user.cmd.validate",
            Kind::Saga,
            Some(shared::error::UNAVAILABLE),
            Duration::ZERO,
        );
        metrics.dead_lettered("user-validate");
        let response = metrics.render(true);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let mut text = String::new();
        prometheus_text::encode(&mut text, &metrics.0.registry).unwrap();
        for line in [
            r#"http_requests_total{method="GET",route="/user/{id}",status="404"} 1"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/user/{id}",status="404",le="0.004"} 1"#,
            r#"nats_messages_handled_total{subject="user.query.get",kind="request",outcome="ok"} 1"#,
            r#"nats_messages_handled_total{subject="user.cmd.validate",kind="saga",outcome="unavailable"} 1"#,
            r#"dead_letters_total{consumer="user-validate"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
    }
}
