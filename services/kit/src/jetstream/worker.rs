//! Consuming a durable pull consumer in batches: a handler gets every message that is ready (up
//! to [`BATCH`]), handles them together (one transaction, say), and each is acknowledged only
//! when the handler succeeded. A batch that fails for a reason of its own is split until the
//! message that makes it fail is alone; that one is retried or dead-lettered, the rest go on.
//! Replicas pull at their [`Rank`]: the newest takes the messages, the others what it leaves.

use std::{future::Future, pin::Pin, time::Duration};

use async_nats::jetstream::{self, AckKind, Context, consumer::PullConsumer};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dead_letter::{
    DeadLetter, Disposition, dead_letter, dispose, retry_delay, watch_max_deliveries,
};
use crate::{
    metrics::{Kind, Metrics},
    nats::{HandlerError, Rank},
};

/// Most messages a handler gets at once.
const BATCH: usize = 128;
/// Most messages one pull request asks for: several batches, so that a replica pulling at the
/// first rank seldom stands without a pull waiting (then messages go to the next rank).
const PULL_BATCH: usize = 4 * BATCH;
/// How long a pull request waits on the server for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long after its expiry a pull is given up on when the server never said it ended.
const PULL_MARGIN: Duration = Duration::from_millis(500);
/// Pull requests in flight per consumer and process, so that one batch being handled does not
/// leave the consumer idle.
const PULLERS: usize = 1;
/// The priority group every saga consumer has (`priority_groups` in `nats/consumers/`).
const GROUP: &str = "saga";

/// A saga message as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    /// The subject it was published on.
    pub subject: String,
    /// The decoded payload.
    pub payload: T,
    /// How many times it has been delivered, this time included.
    pub attempt: i64,
    /// Its handling, in the trace the message carried: what it causes is published in this
    /// span (see [`super::Outbox::send`]), so that one order's messages share one trace.
    pub span: tracing::Span,
}

/// Where messages come from, and where those that cannot be handled go.
pub(super) struct Origin {
    pub js: Context,
    pub stream: String,
    pub consumer: String,
    pub max_deliver: i64,
    pub metrics: Metrics,
}

impl Origin {
    fn of(js: &Context, consumer: &PullConsumer, metrics: &Metrics) -> Self {
        let info = consumer.cached_info();
        Self {
            js: js.clone(),
            stream: info.stream_name.clone(),
            consumer: info.name.clone(),
            max_deliver: info.config.max_deliver,
            metrics: metrics.clone(),
        }
    }
}

/// A consumer being consumed in the background, stoppable gracefully.
pub struct Worker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Consumes `consumer` until stopped, handing `handler` the messages that are ready, up to
    /// [`BATCH`] at a time. When the handler returns `Ok`, every message of the batch is
    /// acknowledged: it must have committed its work, and published what the messages cause,
    /// before it returns. When it fails because a dependency is down (503), every message is
    /// delivered again later; when it fails otherwise, the batch is split in two and each half
    /// handled again, down to the one message that fails, which is retried later or, past its
    /// attempts, kept in `DEAD_LETTERS`. A message that does not decode goes there at once.
    /// Redeliveries must be harmless: every handler is idempotent.
    ///
    /// What JetStream itself gives up on (a message whose handler's process kept dying) is
    /// moved to `DEAD_LETTERS` too.
    ///
    /// Pulls go at priority `rank` (the consumers' policy is `prioritized`): while the newest
    /// replica has a pull waiting, a message goes to it, so that one replica handles a stage in
    /// batches as large as the load makes them, rather than every replica a share of each;
    /// the others get what arrives while it has none, and take over the moment it is gone.
    pub fn spawn<T, F, Fut>(
        js: &Context,
        consumer: PullConsumer,
        metrics: &Metrics,
        rank: &Rank,
        handler: F,
    ) -> Self
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(Vec<Delivery<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch_max_deliveries(
            Origin::of(js, &consumer, metrics),
            js.client(),
        ));
        let origin = Origin::of(js, &consumer, metrics);
        let shutdown = stop.clone();
        let rank = rank.clone();
        let task = tokio::spawn(async move {
            let pullers = (0..PULLERS).map(|_| pull_loop(&origin, &rank, &shutdown, &handler));
            futures::future::join_all(pullers).await;
        });
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

async fn pull_loop<T, F, Fut>(
    origin: &Origin,
    rank: &Rank,
    shutdown: &CancellationToken,
    handler: &F,
) where
    T: DeserializeOwned + Clone + Send + Sync,
    F: Fn(Vec<Delivery<T>>) -> Fut + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    while !shutdown.is_cancelled() {
        let pulled = pull(origin, rank.get()).await;
        let pulled = match pulled {
            Ok(pulled) => pulled,
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
        // meanwhile) would keep this loop waiting for good, and the consumer idle: stop waiting
        // a moment after its expiry instead. Past that moment, what has already arrived is
        // still taken (a slow batch may outlast the pull): a message dropped here would wait out
        // its ack_wait. Whatever has arrived is handled in batches as it comes: one message
        // under light load, many under heavy.
        let give_up = tokio::time::Instant::now() + PULL_EXPIRES + PULL_MARGIN;
        let mut ready = std::pin::pin!(pulled.ready_chunks(BATCH));
        // `timeout_at` polls the stream before its deadline, and unconstrained by tokio's
        // cooperative budget the stream is pending only when nothing has arrived.
        while let Ok(Some(messages)) =
            tokio::time::timeout_at(give_up, tokio::task::unconstrained(ready.next())).await
        {
            let mut batch = Vec::with_capacity(messages.len());
            for message in messages {
                if let Some(item) = decode(message, origin).await {
                    batch.push(item);
                }
            }
            if !batch.is_empty() {
                settle(batch, origin, handler).await;
            }
        }
    }
}

/// One pull request for up to [`PULL_BATCH`] messages, waiting at most [`PULL_EXPIRES`] on the server,
/// at `priority` in the consumer's group: the messages as they arrive, until the request is
/// satisfied or ends. (async-nats' `batch()` cannot name a priority.)
async fn pull(
    origin: &Origin,
    priority: usize,
) -> anyhow::Result<impl futures::Stream<Item = jetstream::Message> + use<>> {
    use async_nats::StatusCode;
    let request = jetstream::consumer::pull::BatchConfig {
        batch: PULL_BATCH,
        expires: Some(PULL_EXPIRES),
        no_wait: false,
        max_bytes: 0,
        idle_heartbeat: Duration::ZERO,
        min_pending: None,
        min_ack_pending: None,
        group: Some(GROUP.to_owned()),
        priority: Some(priority),
    };
    let client = origin.js.client();
    let inbox = client.new_inbox();
    let replies = client.subscribe(inbox.clone()).await?;
    let subject = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        origin.stream, origin.consumer
    );
    client
        .publish_with_reply(subject, inbox, serde_json::to_vec(&request)?.into())
        .await?;
    let js = origin.js.clone();
    // Data messages, until PULL_BATCH of them or a status other than a heartbeat (408: the request
    // expired; 409: the consumer is gone, or over a limit; never 404, as no_wait is off).
    Ok(replies
        .filter(|message| futures::future::ready(message.status != Some(StatusCode::IDLE_HEARTBEAT)))
        .take_while(|message| {
            let data = matches!(message.status, None | Some(StatusCode::OK));
            if !data {
                tracing::debug!(status = ?message.status, description = ?message.description, "pull ended");
            }
            futures::future::ready(data)
        })
        .take(PULL_BATCH)
        .map(move |message| jetstream::Message {
            message,
            context: js.clone(),
        }))
}

/// A pulled message with its decoded payload.
struct Item<T> {
    message: jetstream::Message,
    delivery: Delivery<T>,
    sequence: u64,
}

/// The message as its handler sees it, in a span continuing the trace it carries; `None` when
/// it does not decode or a string in it holds NUL (then it is dead-lettered at once).
async fn decode<T: DeserializeOwned>(
    message: jetstream::Message,
    origin: &Origin,
) -> Option<Item<T>> {
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
    let (attempt, sequence) = message
        .info()
        .map(|info| (info.delivered, info.stream_sequence))
        .unwrap_or((1, 0));
    match crate::nats::payload::<T>(&message.payload) {
        Ok(payload) => Some(Item {
            message,
            delivery: Delivery {
                subject,
                payload,
                attempt,
                span,
            },
            sequence,
        }),
        Err(error) => {
            origin
                .metrics
                .handled(&subject, Kind::Saga, Some(error.code), Duration::ZERO);
            let disposition = dispose(Err(error), attempt, origin.max_deliver);
            finish(&message, &subject, attempt, sequence, disposition, origin)
                .instrument(span)
                .await;
            None
        }
    }
}

/// Hands `batch` to `handler` and acknowledges, retries, splits or dead-letters as its outcome
/// says (see [`Worker::spawn`]).
fn settle<'a, T, F, Fut>(
    batch: Vec<Item<T>>,
    origin: &'a Origin,
    handler: &'a F,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
where
    T: Clone + Send + Sync + 'a,
    F: Fn(Vec<Delivery<T>>) -> Fut + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    Box::pin(async move {
        let started = tokio::time::Instant::now();
        let deliveries = batch.iter().map(|item| item.delivery.clone()).collect();
        // A handler that panics fails its batch like any other error: split, and retried.
        let outcome = crate::nats::caught(handler(deliveries))
            .await
            .and_then(|outcome| outcome);
        match outcome {
            Err(error) if batch.len() > 1 && error.code != shared::error::UNAVAILABLE => {
                tracing::debug!(size = batch.len(), error = %error.message, "saga batch failed; handling its halves apart");
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                settle(first, origin, handler).await;
                settle(second, origin, handler).await;
            }
            outcome => {
                let (elapsed, code) = (started.elapsed(), outcome.as_ref().err().map(|e| e.code));
                for item in &batch {
                    let delivery = &item.delivery;
                    origin
                        .metrics
                        .handled(&delivery.subject, Kind::Saga, code, elapsed);
                    let disposition =
                        dispose(outcome.clone(), delivery.attempt, origin.max_deliver);
                    finish(
                        &item.message,
                        &delivery.subject,
                        delivery.attempt,
                        item.sequence,
                        disposition,
                        origin,
                    )
                    .instrument(delivery.span.clone())
                    .await;
                }
            }
        }
    })
}

/// Acknowledges `message`, asks for it again later, or moves it to `DEAD_LETTERS`.
async fn finish(
    message: &jetstream::Message,
    subject: &str,
    attempt: i64,
    sequence: u64,
    disposition: Disposition,
    origin: &Origin,
) {
    let ack = match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Retry(delay) => AckKind::Nak(Some(delay)),
        Disposition::DeadLetter(reason) => {
            tracing::error!(attempt, %reason, "saga message cannot be handled; moving it to DEAD_LETTERS");
            let letter = DeadLetter {
                subject,
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
