//! Logs and traces. `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` writes one JSON
//! object per line. Every span takes part in a W3C trace: an HTTP request continues the
//! client's `traceparent`, and NATS commands, replies and events carry it in their headers, so
//! one order's spans in the three services share a trace id, which their log lines show.
//! Spans are exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::io::IsTerminal;

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::{Level, Metadata, Subscriber, span, subscriber::Interest};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::LevelFilter,
    fmt,
    layer::{self, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

/// The tracing pipeline of a process; dropping it (last, outside the async runtime) sends the
/// spans not yet exported. A panic that ends the process ([`crate::panics`]) does not wait for
/// them.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("shutting down the trace exporter: {error}");
        }
    }
}

/// The spans that make a trace: this workspace's (`kit`, the services), at `info` and above,
/// whatever `RUST_LOG` says, so that raising the log level changes what is logged but never
/// breaks a trace, nor takes the trace id off a warning.
fn traced_span(metadata: &Metadata<'_>) -> bool {
    let crate_name = metadata.target().split("::").next().unwrap_or_default();
    metadata.is_span()
        && *metadata.level() <= Level::INFO
        && ["kit", "user", "product", "order"].contains(&crate_name)
}

/// `RUST_LOG`'s filter, for every layer (one filter for all: the trace layer must see every
/// span it propagates), with the spans of [`traced_span`] enabled whatever it says.
struct Filter(EnvFilter);

impl<S> Layer<S> for Filter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if traced_span(metadata) {
            Interest::always()
        } else {
            Layer::<S>::register_callsite(&self.0, metadata)
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, context: layer::Context<'_, S>) -> bool {
        traced_span(metadata) || Layer::<S>::enabled(&self.0, metadata, context)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&self.0).map(|level| level.max(LevelFilter::INFO))
    }

    fn on_new_span(
        &self,
        attrs: &span::Attributes<'_>,
        id: &span::Id,
        context: layer::Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, context);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, context: layer::Context<'_, S>) {
        self.0.on_record(id, values, context);
    }

    fn on_enter(&self, id: &span::Id, context: layer::Context<'_, S>) {
        self.0.on_enter(id, context);
    }

    fn on_exit(&self, id: &span::Id, context: layer::Context<'_, S>) {
        self.0.on_exit(id, context);
    }

    fn on_close(&self, id: span::Id, context: layer::Context<'_, S>) {
        self.0.on_close(id, context);
    }
}

/// Installs the global subscriber for the service `name`. Call once, first thing in `main`,
/// before the async runtime starts (the OTLP exporter uses a blocking HTTP client on a thread
/// of its own).
pub fn init(name: &'static str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let ansi = std::io::stdout().is_terminal();
    let (provider, export_error) = tracer_provider(name);
    // Neither the thread nor the time a span spends idle is worth its cost on every span (an
    // async span is entered and left at every poll).
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(name))
        .with_threads(false)
        .with_tracked_inactivity(false);
    let text = (!json).then(|| fmt::layer().with_target(false).with_ansi(ansi));
    let objects = json.then(|| fmt::layer().json().with_target(false));
    tracing_subscriber::registry()
        .with(Filter(filter))
        .with(text)
        .with(objects)
        .with(traces)
        .init();
    if let Some(error) = export_error {
        tracing::error!(%error, "cannot export traces over OTLP; they are not exported");
    }
    Telemetry { provider }
}

/// A provider that makes trace ids always, and exports spans only when an OTLP endpoint is set.
/// Without one, spans are not even recorded (whatever a caller's `traceparent` asks): their
/// trace ids still travel and show in the logs.
fn tracer_provider(name: &'static str) -> (SdkTracerProvider, Option<String>) {
    let resource = Resource::builder().with_service_name(name).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let configured = |var: &str| std::env::var(var).is_ok_and(|value| !value.trim().is_empty());
    if !configured("OTEL_EXPORTER_OTLP_ENDPOINT")
        && !configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        return (builder.with_sampler(Sampler::AlwaysOff).build(), None);
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    // The specification's default; OTEL_EXPORTER_OTLP_PROTOCOL=http/json is honoured when set.
    if !configured("OTEL_EXPORTER_OTLP_PROTOCOL")
        && !configured("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    {
        exporter = exporter.with_protocol(Protocol::HttpBinary);
    }
    match exporter.build() {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), None),
        Err(error) => (builder.build(), Some(error.to_string())),
    }
}

/// For tests: logs to the test harness's output when `TEST_LOG` is set, otherwise stays silent.
/// Safe to call from every test.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
        let _ = fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Makes `span` continue the trace whose context `parent` carries (a new trace when it carries
/// none), and records the trace id in the span's `trace_id` field, which its log lines show.
/// Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, parent: Context) {
    if let Err(error) = span.set_parent(parent) {
        tracing::debug!(?error, "cannot set a span's parent");
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// Makes `span` the root of a new trace, and records its id (see [`continue_trace`]).
pub fn new_trace(span: &tracing::Span) {
    continue_trace(span, Context::new());
}

/// The trace context of an HTTP request's `traceparent` (and `tracestate`) headers.
pub fn from_http(headers: &axum::http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HttpHeaders(headers))
}

/// The trace context a NATS message carries in its headers, if any.
pub fn from_nats(headers: Option<&async_nats::HeaderMap>) -> Context {
    headers.map_or_else(Context::new, |headers| {
        TraceContextPropagator::new().extract_with_context(&Context::new(), &NatsHeaders(headers))
    })
}

/// Writes the current span's trace context into `headers` (`traceparent`, `tracestate`).
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut NatsHeadersMut(headers));
}

struct HttpHeaders<'a>(&'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

struct NatsHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct NatsHeadersMut<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeadersMut<'_> {
    /// An empty value (an empty `tracestate`) is left out: a header line with nothing after its
    /// colon makes NATS clients drop the headers that follow it, `traceparent` among them.
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key, value.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_nats_headers() {
        let mut http = axum::http::HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        http.insert("traceparent", traceparent.parse().unwrap());
        let context = from_http(&http);
        let mut nats = async_nats::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut NatsHeadersMut(&mut nats));
        assert_eq!(nats.get("traceparent").unwrap().as_str(), traceparent);
        // No `tracestate: ` with nothing after it: NATS clients drop the headers after one.
        assert!(nats.get("tracestate").is_none());
        let back = from_nats(Some(&nats));
        assert_eq!(
            back.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
