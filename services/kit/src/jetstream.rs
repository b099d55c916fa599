//! JetStream for the saga: streams and consumers from their definitions in `nats/`, publishing
//! with a message id, and consuming with acknowledgement only after the handler succeeded.

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use async_nats::jetstream::{
    self, AckKind, Context,
    consumer::{PullConsumer, pull},
    message::PublishMessage,
};
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use shared::stream::{ConsumerDef, StreamDef};
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::{
    metrics::{Kind, Metrics},
    nats::HandlerError,
};

/// How long start-up waits for a stream owned by another service to appear.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);

/// Creates `def` as written in its file, unless it exists. An existing stream is left as it is:
/// services may create their streams but not change them (nats/permissions.conf), so that a
/// compromised one cannot widen its stream to capture subjects that are not its own. When the
/// stream on the server has other subjects than the file, an operator applies the file.
pub async fn ensure_stream(js: &Context, def: &StreamDef) -> anyhow::Result<()> {
    let config: jetstream::stream::Config = serde_json::from_str(def.json)
        .with_context(|| format!("stream definition {}", def.name))?;
    let started = tokio::time::Instant::now();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => {
                if stream.cached_info().config.subjects != config.subjects {
                    tracing::warn!(
                        stream = def.name,
                        "the stream's subjects differ from nats/streams/{0}.json; apply it with `nats stream edit {0} --config nats/streams/{0}.json`",
                        def.name
                    );
                }
                return Ok(());
            }
            Err(error) if started.elapsed() < STREAM_PATIENCE => {
                tracing::warn!(stream = def.name, %error, "cannot create stream yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(anyhow::anyhow!("creating stream {}: {error}", def.name)),
        }
    }
}

/// Creates (or updates) the durable consumer `def` and returns it. Its stream may belong to
/// another service that is still starting, so this waits for the stream to appear.
pub async fn consumer(js: &Context, def: &ConsumerDef) -> anyhow::Result<PullConsumer> {
    ensure_stream(js, &shared::stream::DEAD_LETTERS).await?;
    let config: pull::Config = serde_json::from_str(def.json)
        .with_context(|| format!("consumer definition {}", def.name))?;
    let started = tokio::time::Instant::now();
    loop {
        let attempt = async {
            let stream = js
                .get_stream(def.stream)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            stream
                .create_consumer(config.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        match attempt.await {
            Ok(consumer) => return Ok(consumer),
            Err(error) if started.elapsed() < STREAM_PATIENCE => {
                tracing::warn!(stream = def.stream, consumer = def.name, %error, "waiting for stream");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.context(format!("creating consumer {}", def.name))),
        }
    }
}

/// Why a saga message could not be published.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {subject}: {reason}")]
pub struct PublishError {
    /// The subject.
    pub subject: String,
    /// What went wrong.
    pub reason: String,
}

/// Publishes `payload` as JSON on `subject` with `Nats-Msg-Id: message_id`, and waits until the
/// stream has stored it. A repeat within the stream's duplicate window is stored once. Fails at
/// once when the client is not connected. The message carries the current span's trace
/// (`traceparent`), which its handler continues.
pub async fn publish<T: Serialize>(
    js: &Context,
    subject: &str,
    message_id: &str,
    payload: &T,
) -> Result<(), PublishError> {
    let failed = |reason: String| PublishError {
        subject: subject.to_owned(),
        reason,
    };
    // While disconnected the client would hold the message until the ack times out: fail now.
    if js.client().connection_state() != async_nats::connection::State::Connected {
        return Err(failed("not connected to NATS".into()));
    }
    let body = serde_json::to_vec(payload).map_err(|e| failed(e.to_string()))?;
    let mut headers = async_nats::HeaderMap::new();
    crate::telemetry::inject(&mut headers);
    let publish = PublishMessage::build()
        .payload(body.into())
        .headers(headers)
        .message_id(message_id);
    let ack = js
        .send_publish(subject.to_owned(), publish)
        .await
        .map_err(|e| failed(e.to_string()))?;
    ack.await.map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// A saga message as a handler sees it.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The subject it was published on.
    pub subject: String,
    /// The decoded payload.
    pub payload: T,
    /// How many times it has been delivered, this time included.
    pub attempt: i64,
}

/// Messages fetched per pull request; each puller handles that many at once at most.
const BATCH: usize = 64;
/// How long a pull request waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long after its expiry a pull is given up on when the server never said it ended.
const PULL_MARGIN: Duration = Duration::from_millis(500);
/// Pull requests in flight per consumer and process, so one slow batch does not stall the rest.
const PULLERS: usize = 2;

/// Consumes `consumer` until `shutdown`, handing each message to `handler`: acknowledged when it
/// returns `Ok` (so only after its transaction committed), redelivered later when it fails for a
/// reason that may pass (503/500), terminated when it can never succeed (400, undecodable).
///
/// On shutdown no new batch is pulled; what was already pulled is handled before this returns.
pub async fn consume<T, F, Fut>(
    js: Context,
    consumer: PullConsumer,
    shutdown: CancellationToken,
    metrics: Metrics,
    handler: F,
) where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let info = consumer.cached_info();
    let origin = Origin {
        js,
        stream: info.stream_name.clone(),
        consumer: info.name.clone(),
        max_deliver: info.config.max_deliver,
        metrics,
    };
    let pullers = (0..PULLERS).map(|_| pull_loop(&consumer, &origin, &shutdown, &handler));
    futures::future::join_all(pullers).await;
}

/// Where messages come from, and where those that cannot be handled go.
struct Origin {
    js: Context,
    stream: String,
    consumer: String,
    max_deliver: i64,
    metrics: Metrics,
}

async fn pull_loop<T, F, Fut>(
    consumer: &PullConsumer,
    origin: &Origin,
    shutdown: &CancellationToken,
    handler: &F,
) where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    while !shutdown.is_cancelled() {
        let batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "cannot pull saga messages, retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        // The server ends a pull at its expiry. A pull the server never saw end (it restarted
        // meanwhile) would keep this loop waiting 5 s more (async-nats' own margin), and the
        // consumer idle: give up on it a moment after its expiry instead. Every message of the
        // batch has arrived by then, and all of them are handled at once.
        batch
            .take_until(tokio::time::sleep(PULL_EXPIRES + PULL_MARGIN))
            .for_each_concurrent(BATCH, |message| async move {
                match message {
                    Ok(message) => handle(message, origin, handler).await,
                    Err(error) => tracing::debug!(%error, "pull batch ended"),
                }
            })
            .await;
    }
}

/// Handles one message in a span continuing the trace it carries, counts it, and acknowledges it.
async fn handle<T, F, Fut>(message: jetstream::Message, origin: &Origin, handler: &F)
where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let subject = message.subject.to_string();
    let span = tracing::info_span!(
        "saga.handle",
        subject,
        consumer = origin.consumer,
        otel.name = %format_args!("handle {subject}"),
        otel.kind = "consumer",
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, crate::telemetry::from_nats(message.headers.as_ref()));
    handle_in_span(message, subject, origin, handler)
        .instrument(span)
        .await;
}

async fn handle_in_span<T, F, Fut>(
    message: jetstream::Message,
    subject: String,
    origin: &Origin,
    handler: &F,
) where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let started = tokio::time::Instant::now();
    let (attempt, sequence) = message
        .info()
        .map(|info| (info.delivered, info.stream_sequence))
        .unwrap_or((1, 0));
    let outcome = match serde_json::from_slice::<T>(&message.payload) {
        Ok(payload) => {
            handler(Delivery {
                subject: subject.clone(),
                payload,
                attempt,
            })
            .await
        }
        Err(error) => Err(HandlerError::bad_request(format!(
            "undecodable payload: {error}"
        ))),
    };
    let code = outcome.as_ref().err().map(|error| error.code);
    origin
        .metrics
        .handled(&subject, Kind::Saga, code, started.elapsed());
    let ack = match dispose(outcome, attempt, origin.max_deliver) {
        Disposition::Ack => AckKind::Ack,
        Disposition::Retry(delay) => AckKind::Nak(Some(delay)),
        Disposition::DeadLetter(reason) => {
            tracing::error!(attempt, %reason, "saga message cannot be handled; moving it to DEAD_LETTERS");
            let letter = DeadLetter {
                subject: &subject,
                payload: &message.payload,
                reason: &reason,
                attempts: attempt,
            };
            match dead_letter(origin, sequence, &letter).await {
                Ok(()) => AckKind::Term,
                Err(error) => {
                    // Never drop it: without its dead letter stored, it stays to be tried again.
                    tracing::error!(%error, "could not store the dead letter; will try again");
                    AckKind::Nak(Some(retry_delay(attempt)))
                }
            }
        }
    };
    if let Err(error) = message.ack_with(ack).await {
        // Not acknowledged means redelivered after ack_wait; every handler is idempotent.
        tracing::warn!(%error, "could not acknowledge saga message");
    }
}

/// What becomes of a message once its handler has run.
#[derive(Debug, Clone, PartialEq)]
enum Disposition {
    /// Done.
    Ack,
    /// Deliver it again after this delay.
    Retry(Duration),
    /// Give up on it: keep it in `DEAD_LETTERS` with this reason.
    DeadLetter(String),
}

/// A handler error that is neither "malformed" nor "unavailable" gets this many deliveries.
const FAILING_ATTEMPTS: i64 = 10;

/// Malformed: dead at once. Failing: retried, dead after [`FAILING_ATTEMPTS`]. Unavailable (a
/// dependency is down, which passes): retried until the consumer's last delivery.
fn dispose(outcome: Result<(), HandlerError>, attempt: i64, max_deliver: i64) -> Disposition {
    let last = max_deliver > 0 && attempt >= max_deliver;
    match outcome {
        Ok(()) => Disposition::Ack,
        Err(error) if error.code == shared::error::BAD_REQUEST => {
            Disposition::DeadLetter(error.message)
        }
        Err(error) if error.code == shared::error::UNAVAILABLE && !last => {
            tracing::warn!(attempt, error = %error.message, "dependency unavailable; saga message will be retried");
            Disposition::Retry(retry_delay(attempt))
        }
        Err(error) if attempt >= FAILING_ATTEMPTS || last => Disposition::DeadLetter(format!(
            "still failing after {attempt} deliveries: {}",
            error.message
        )),
        Err(error) => {
            tracing::warn!(attempt, error = %error.message, "saga message failed; will retry");
            Disposition::Retry(retry_delay(attempt))
        }
    }
}

/// A message given up on.
struct DeadLetter<'a> {
    subject: &'a str,
    payload: &'a [u8],
    reason: &'a str,
    attempts: i64,
}

/// Stores `letter` in `DEAD_LETTERS` under `dead.<subject>`, once per origin message, in the
/// trace of the handler that gave up on it (when there is one).
async fn dead_letter(
    origin: &Origin,
    sequence: u64,
    letter: &DeadLetter<'_>,
) -> anyhow::Result<()> {
    use shared::subject::{
        DEAD_ATTEMPTS_HEADER, DEAD_CONSUMER_HEADER, DEAD_ORIGIN_HEADER, DEAD_REASON_HEADER,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(DEAD_REASON_HEADER, header_text(letter.reason).as_str());
    headers.insert(
        DEAD_ORIGIN_HEADER,
        format!("{}:{sequence}", origin.stream).as_str(),
    );
    headers.insert(DEAD_CONSUMER_HEADER, origin.consumer.as_str());
    headers.insert(DEAD_ATTEMPTS_HEADER, letter.attempts.to_string().as_str());
    crate::telemetry::inject(&mut headers);
    let publish = PublishMessage::build()
        .payload(bytes::Bytes::copy_from_slice(letter.payload))
        .headers(headers)
        .message_id(format!("dead:{}:{sequence}", origin.stream));
    let subject = shared::subject::dead_letter(letter.subject);
    let stored = origin.js.send_publish(subject, publish).await?.await?;
    // Every replica hears a max-deliveries advisory, and a failed `Term` brings the message
    // back: count the letter where the stream stored it, not where it was a duplicate.
    if !stored.duplicate {
        origin.metrics.dead_lettered(&origin.consumer);
    }
    Ok(())
}

/// `text` as a header value: printable ASCII on one line, at most 500 characters. A reason
/// may quote the message it is about (serde names an unknown variant as sent), and a control
/// character in a header would break the NATS protocol (async-nats panics on CR or LF).
pub(crate) fn header_text(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let plain = c == ' ' || c.is_ascii_graphic();
            plain
                .then_some(c)
                .into_iter()
                .chain((!plain).then(|| c.escape_default()).into_iter().flatten())
        })
        .take(500)
        .collect()
}

/// Watches JetStream's advisory for messages of this consumer that reached `max_deliver`
/// without an acknowledgement (their handler's process kept dying), and moves them to
/// `DEAD_LETTERS` too. Every replica watches; the message id keeps one copy.
async fn watch_max_deliveries(origin: Origin, client: async_nats::Client) {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        origin.stream, origin.consumer
    );
    let mut advisories = match client.subscribe(subject).await {
        Ok(advisories) => advisories,
        Err(error) => return tracing::warn!(%error, "cannot watch max-deliveries advisories"),
    };
    while let Some(advisory) = advisories.next().await {
        let advisory: serde_json::Value =
            serde_json::from_slice(&advisory.payload).unwrap_or_default();
        let Some(sequence) = advisory["stream_seq"].as_u64() else {
            continue;
        };
        let attempts = advisory["deliveries"]
            .as_i64()
            .unwrap_or(origin.max_deliver);
        let moved = async {
            let stream = origin.js.get_stream(&origin.stream).await?;
            let message = stream.get_raw_message(sequence).await?;
            let reason = format!("its handler never finished in {attempts} deliveries");
            let letter = DeadLetter {
                subject: &message.subject,
                payload: &message.payload,
                reason: &reason,
                attempts,
            };
            dead_letter(&origin, sequence, &letter).await?;
            stream.delete_message(sequence).await?;
            anyhow::Ok(())
        };
        if let Err(error) = moved.await {
            tracing::debug!(%error, sequence, "max-deliveries advisory: message already moved or gone");
        }
    }
}

/// 100 ms, 200 ms, 400 ms, ... up to 5 s between attempts.
fn retry_delay(attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(5))
}

/// A consumer being consumed in the background, stoppable gracefully.
pub struct Worker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts consuming `consumer` with `handler` (see [`consume`]), and moving what JetStream
    /// gives up on to `DEAD_LETTERS`.
    pub fn spawn<T, F, Fut>(
        js: &Context,
        consumer: PullConsumer,
        metrics: &Metrics,
        handler: F,
    ) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let info = consumer.cached_info();
        let origin = Origin {
            js: js.clone(),
            stream: info.stream_name.clone(),
            consumer: info.name.clone(),
            max_deliver: info.config.max_deliver,
            metrics: metrics.clone(),
        };
        let watcher = tokio::spawn(watch_max_deliveries(origin, js.client()));
        let task = tokio::spawn(consume(
            js.clone(),
            consumer,
            stop.clone(),
            metrics.clone(),
            handler,
        ));
        Self {
            stop,
            task,
            watcher,
        }
    }

    /// Stops pulling and waits, at most `patience`, for the messages already pulled.
    pub async fn stop(self, patience: Duration) {
        self.stop.cancel();
        self.watcher.abort();
        if tokio::time::timeout(patience, self.task).await.is_err() {
            tracing::warn!(
                "saga worker still busy at shutdown deadline; its messages will be redelivered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_seconds() {
        let delays: Vec<u128> = (1..=9).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn malformed_messages_die_at_once_failing_ones_after_ten_tries_and_unavailable_ones_wait() {
        let malformed = Err(HandlerError::bad_request("bad"));
        assert_eq!(
            dispose(malformed, 1, 100),
            Disposition::DeadLetter("bad".into())
        );
        assert_eq!(dispose(Ok(()), 100, 100), Disposition::Ack);
        assert_eq!(
            dispose(Err(HandlerError::internal("x")), 3, 100),
            Disposition::Retry(retry_delay(3))
        );
        assert!(matches!(
            dispose(Err(HandlerError::internal("x")), 10, 100),
            Disposition::DeadLetter(_)
        ));
        assert_eq!(
            dispose(Err(HandlerError::unavailable("db")), 50, 100),
            Disposition::Retry(retry_delay(50))
        );
        assert!(matches!(
            dispose(Err(HandlerError::unavailable("db")), 100, 100),
            Disposition::DeadLetter(_)
        ));
        assert_eq!(
            dispose(Err(HandlerError::unavailable("db")), 500, -1),
            Disposition::Retry(retry_delay(500))
        );
    }

    #[test]
    fn a_reason_becomes_one_line_of_printable_ascii_of_at_most_500_characters() {
        assert_eq!(
            header_text("unknown variant `a\rb\nc\u{7f}é`, expected x"),
            "unknown variant `a\\rb\\nc\\u{7f}\\u{e9}`, expected x"
        );
        let long = header_text(&"é".repeat(1000));
        assert_eq!(long.len(), 500);
        assert!(long.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn every_definition_in_nats_parses_as_an_async_nats_config() {
        for def in shared::stream::STREAMS {
            let config: jetstream::stream::Config = serde_json::from_str(def.json).unwrap();
            assert_eq!(config.name, def.name);
        }
        for def in shared::stream::CONSUMERS {
            let config: pull::Config = serde_json::from_str(def.json).unwrap();
            assert_eq!(config.durable_name.as_deref(), Some(def.name));
            assert_eq!(config.ack_policy, jetstream::consumer::AckPolicy::Explicit);
        }
    }
}
