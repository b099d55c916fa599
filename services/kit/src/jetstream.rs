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

use crate::nats::HandlerError;

/// How long start-up waits for a stream owned by another service to appear.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);

/// Creates `def`, or updates it to match the file, on behalf of its owning service.
pub async fn ensure_stream(js: &Context, def: &StreamDef) -> anyhow::Result<()> {
    let config: jetstream::stream::Config = serde_json::from_str(def.json)
        .with_context(|| format!("stream definition {}", def.name))?;
    let started = tokio::time::Instant::now();
    loop {
        match js.create_or_update_stream(config.clone()).await {
            Ok(_) => return Ok(()),
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
/// stream has stored it. A repeat within the stream's duplicate window is stored once.
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
    let body = serde_json::to_vec(payload).map_err(|e| failed(e.to_string()))?;
    let publish = PublishMessage::build()
        .payload(body.into())
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
/// Pull requests in flight per consumer and process, so one slow batch does not stall the rest.
const PULLERS: usize = 2;

/// Consumes `consumer` until `shutdown`, handing each message to `handler`: acknowledged when it
/// returns `Ok` (so only after its transaction committed), redelivered later when it fails for a
/// reason that may pass (503/500), terminated when it can never succeed (400, undecodable).
///
/// On shutdown no new batch is pulled; what was already pulled is handled before this returns.
pub async fn consume<T, F, Fut>(consumer: PullConsumer, shutdown: CancellationToken, handler: F)
where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let pullers = (0..PULLERS).map(|_| pull_loop(&consumer, &shutdown, &handler));
    futures::future::join_all(pullers).await;
}

async fn pull_loop<T, F, Fut>(consumer: &PullConsumer, shutdown: &CancellationToken, handler: &F)
where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    while !shutdown.is_cancelled() {
        let batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_secs(1))
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
        batch
            .for_each_concurrent(BATCH, |message| async move {
                match message {
                    Ok(message) => handle(message, handler).await,
                    Err(error) => tracing::debug!(%error, "pull batch ended"),
                }
            })
            .await;
    }
}

async fn handle<T, F, Fut>(message: jetstream::Message, handler: &F)
where
    T: DeserializeOwned,
    F: Fn(Delivery<T>) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let subject = message.subject.to_string();
    let attempt = message.info().map(|info| info.delivered).unwrap_or(1);
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
    let ack = match outcome {
        Ok(()) => AckKind::Ack,
        Err(error) if error.code == shared::error::BAD_REQUEST => {
            tracing::error!(%subject, error = %error.message, "poison saga message, terminating it");
            AckKind::Term
        }
        Err(error) => {
            let delay = retry_delay(attempt);
            tracing::warn!(%subject, attempt, ?delay, error = %error.message, "saga message failed, will retry");
            AckKind::Nak(Some(delay))
        }
    };
    if let Err(error) = message.ack_with(ack).await {
        // Not acknowledged means redelivered after ack_wait; every handler is idempotent.
        tracing::warn!(%subject, %error, "could not acknowledge saga message");
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
}

impl Worker {
    /// Starts consuming `consumer` with `handler` (see [`consume`]).
    pub fn spawn<T, F, Fut>(consumer: PullConsumer, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(consume(consumer, stop.clone(), handler));
        Self { stop, task }
    }

    /// Stops pulling and waits, at most `patience`, for the messages already pulled.
    pub async fn stop(self, patience: Duration) {
        self.stop.cancel();
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
