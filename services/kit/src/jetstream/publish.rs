//! Publishing saga messages: each with a message id (a repeat within the stream's duplicate
//! window is stored once) and the trace of what caused it, sent together and then waited for
//! together, so that a batch of messages costs one round trip to the server, not one each.

use async_nats::jetstream::{Context, context::PublishAckFuture, message::PublishMessage};
use serde::Serialize;

/// Why a saga message could not be published.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {subject}: {reason}")]
pub struct PublishError {
    /// The subject.
    pub subject: String,
    /// What went wrong.
    pub reason: String,
}

/// Publishes `payload` as JSON on `subject` with `Nats-Msg-Id: message_id`, in the current
/// span's trace, and waits until the stream has stored it.
pub async fn publish<T: Serialize>(
    js: &Context,
    subject: &str,
    message_id: &str,
    payload: &T,
) -> Result<(), PublishError> {
    let mut outbox = Outbox::new(js);
    outbox
        .send(&tracing::Span::current(), subject, message_id, payload)
        .await;
    outbox.stored().await
}

/// Saga messages published together: each is sent as soon as it is added, and
/// [`Outbox::stored`] then waits until the streams have acknowledged every one. Nothing that
/// depends on them (acknowledging what caused them) may happen before that.
pub struct Outbox {
    js: Context,
    sent: Vec<(String, PublishAckFuture)>,
    failure: Option<PublishError>,
}

impl Outbox {
    /// An empty outbox on `js`.
    pub fn new(js: &Context) -> Self {
        Self {
            js: js.clone(),
            sent: Vec::new(),
            failure: None,
        }
    }

    /// Sends `payload` as JSON on `subject` with `Nats-Msg-Id: message_id`, carrying the trace of
    /// `span` (the handling of the message that caused it), which its handler continues. While
    /// the client is not connected nothing is sent: the client would hold the message until the
    /// acknowledgement times out, and [`Outbox::stored`] fails at once instead.
    pub async fn send<T: Serialize>(
        &mut self,
        span: &tracing::Span,
        subject: &str,
        message_id: &str,
        payload: &T,
    ) {
        if self.failure.is_some() {
            return;
        }
        let failed = |reason: String| PublishError {
            subject: subject.to_owned(),
            reason,
        };
        if self.js.client().connection_state() != async_nats::connection::State::Connected {
            self.failure = Some(failed("not connected to NATS".into()));
            return;
        }
        let body = match serde_json::to_vec(payload) {
            Ok(body) => body,
            Err(error) => {
                self.failure = Some(failed(error.to_string()));
                return;
            }
        };
        let mut headers = async_nats::HeaderMap::new();
        span.in_scope(|| crate::telemetry::inject(&mut headers));
        let message = PublishMessage::build()
            .payload(body.into())
            .headers(headers)
            .message_id(message_id);
        match self.js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => self.sent.push((subject.to_owned(), ack)),
            Err(error) => self.failure = Some(failed(error.to_string())),
        }
    }

    /// Waits until every message sent is stored; the first failure, if any.
    pub async fn stored(self) -> Result<(), PublishError> {
        let acks = self.sent.into_iter().map(|(subject, ack)| async move {
            ack.await.map(drop).map_err(|error| PublishError {
                subject,
                reason: error.to_string(),
            })
        });
        let stored = futures::future::join_all(acks).await;
        match self.failure {
            Some(failure) => Err(failure),
            None => stored.into_iter().collect(),
        }
    }
}
