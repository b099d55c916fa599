//! Sending a typed command over NATS and waiting for its reply, sent again once with the same
//! command id when the reply is late.

use std::time::Duration;

use async_nats::{Client, client::RequestErrorKind, connection::State, service};
use serde::{Serialize, de::DeserializeOwned};
use shared::{
    error::{BAD_REQUEST, UNAVAILABLE},
    subject::COMMAND_ID_HEADER,
};
use tracing::Instrument;

use crate::config::Common;

/// Why a command sent over NATS got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nobody answered (no responders, timeout, disconnected) or the handler said its database
    /// is down: the caller should answer 503.
    #[error("no reply from {subject}: {reason}")]
    Unavailable {
        /// The subject of the command.
        subject: String,
        /// What happened, for logs.
        reason: String,
    },
    /// The handler refused the request as malformed (a bug in the sender: the HTTP layer validates first).
    #[error("{subject} refused the request: {reason}")]
    Refused {
        /// The subject of the command.
        subject: String,
        /// The handler's description.
        reason: String,
    },
    /// The reply did not decode, or the handler failed internally.
    #[error("{subject} failed: {reason}")]
    Failed {
        /// The subject of the command.
        subject: String,
        /// What happened, for logs.
        reason: String,
    },
}

/// How long a request may wait for its reply.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Without a reply by then, the request is sent once more with the same command id.
    pub retry_after: Duration,
    /// Without a reply by then, the request has failed.
    pub give_up_after: Duration,
}

impl From<&Common> for Timing {
    fn from(config: &Common) -> Self {
        Self {
            retry_after: config.nats_retry_after,
            give_up_after: config.nats_request_timeout,
        }
    }
}

/// Sends `payload` as JSON on `subject` and decodes the JSON reply.
///
/// The request carries a fresh command id (`Command-Id`). When no reply comes within
/// `timing.retry_after`, it is sent once more with the same id: the first copy may have reached
/// a replica that was stopping, or that died before answering, and handlers apply an id once.
/// Without a NATS connection it fails at once instead of waiting.
pub async fn request<Req, Rep>(
    client: &Client,
    subject: &str,
    payload: &Req,
    timing: Timing,
) -> Result<Rep, RequestError>
where
    Req: Serialize,
    Rep: DeserializeOwned,
{
    let failed = |reason: String| RequestError::Failed {
        subject: subject.to_owned(),
        reason,
    };
    let unavailable = |reason: String| RequestError::Unavailable {
        subject: subject.to_owned(),
        reason,
    };
    if client.connection_state() != State::Connected {
        return Err(unavailable("not connected to NATS".into()));
    }
    let body: bytes::Bytes = serde_json::to_vec(payload)
        .map_err(|error| failed(error.to_string()))?
        .into();
    let span = tracing::info_span!(
        "nats.request",
        subject,
        otel.name = %format_args!("request {subject}"),
        otel.kind = "client",
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(COMMAND_ID_HEADER, uuid::Uuid::now_v7().to_string().as_str());
    span.in_scope(|| crate::telemetry::inject(&mut headers));
    let started = tokio::time::Instant::now();
    let mut retried = false;
    let reply = loop {
        let remaining = timing.give_up_after.saturating_sub(started.elapsed());
        let wait = if retried {
            remaining
        } else {
            timing.retry_after.min(remaining)
        };
        let request = async_nats::Request::new()
            .payload(body.clone())
            .headers(headers.clone())
            .timeout(Some(wait));
        match client
            .send_request(subject.to_owned(), request)
            .instrument(span.clone())
            .await
        {
            Ok(reply) => break reply,
            Err(error)
                if error.kind() == RequestErrorKind::TimedOut && !retried && wait < remaining =>
            {
                tracing::warn!(%subject, ?wait, "no reply yet; sending the command again with the same id");
                retried = true;
            }
            Err(error) => {
                return Err(match error.kind() {
                    RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                        failed(error.to_string())
                    }
                    RequestErrorKind::NoResponders
                    | RequestErrorKind::TimedOut
                    | RequestErrorKind::Other => unavailable(error.to_string()),
                });
            }
        }
    };
    if let Some(headers) = &reply.headers
        && let Some(code) = headers.get(service::NATS_SERVICE_ERROR_CODE)
    {
        let reason = headers
            .get(service::NATS_SERVICE_ERROR)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let subject = subject.to_owned();
        return Err(match code.as_str().parse::<usize>() {
            Ok(BAD_REQUEST) => RequestError::Refused { subject, reason },
            Ok(UNAVAILABLE) => RequestError::Unavailable { subject, reason },
            _ => RequestError::Failed { subject, reason },
        });
    }
    serde_json::from_slice(&reply.payload)
        .map_err(|error| failed(format!("undecodable reply: {error}")))
}
