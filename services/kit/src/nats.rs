//! NATS plumbing: connecting, sending a typed command and waiting for its reply, and serving a
//! services-API endpoint with a typed handler.

use std::future::Future;

use async_nats::{
    Client, ConnectOptions,
    client::RequestErrorKind,
    service::{self, endpoint::Endpoint},
};
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;
use tracing::Instrument;

use async_nats::connection::State;
use shared::{
    error::{BAD_REQUEST, INTERNAL, UNAVAILABLE},
    subject::COMMAND_ID_HEADER,
};

use crate::{
    config::Common,
    metrics::{Kind, Metrics},
};

/// Connects to NATS as `name`. The connection retries in the background, forever: a service
/// starts (and reports not ready) while NATS is down, and recovers when it returns.
pub async fn connect(config: &Common, name: &str) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new()
        .name(name)
        // Replies to this service come under its own prefix, the only inboxes its NATS user
        // may subscribe to (nats/permissions.conf).
        .custom_inbox_prefix(format!("_INBOX.{name}"))
        // async-nats logs every connection event itself, at info; a server error (say, a
        // permissions violation naming what nats/permissions.conf does not allow) is worth more.
        .event_callback(|event| async move {
            if let async_nats::Event::ServerError(error) = event {
                tracing::error!(%error, "NATS server error");
            }
        })
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(config.nats_request_timeout));
    if let Some((user, password)) = &config.nats_credentials {
        options = options.user_and_password(user.clone(), password.clone());
    }
    Ok(options.connect(&config.nats_url).await?)
}

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

/// A handler's refusal, sent back in the services API error headers.
#[derive(Debug, Clone)]
pub struct HandlerError {
    /// One of `shared::error`'s codes.
    pub code: usize,
    /// Short description for the requester's logs.
    pub message: String,
}

impl HandlerError {
    /// The request was malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A dependency of the handler is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: UNAVAILABLE,
            message: message.into(),
        }
    }

    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: INTERNAL,
            message: message.into(),
        }
    }
}

/// Handles every request arriving on `endpoint` with `handler`, up to `concurrency` at a time,
/// until the service is stopped. Returns once the last in-flight request has been answered.
///
/// The handler gets the request's command id (`Command-Id`), or a fresh one when it has none
/// (say, a request typed with `nats req`). It runs in a span continuing the request's trace,
/// and the reply carries that trace on.
pub async fn serve<Req, Rep, F, Fut>(endpoint: Endpoint, context: Serving, handler: F)
where
    Req: DeserializeOwned,
    Rep: Serialize,
    F: Fn(Req, uuid::Uuid) -> Fut,
    Fut: Future<Output = Result<Rep, HandlerError>>,
{
    endpoint
        .for_each_concurrent(context.concurrency, |request| {
            let (handler, context) = (&handler, &context);
            let subject = request.message.subject.to_string();
            let span = tracing::info_span!(
                "nats.handle",
                subject,
                otel.name = %format_args!("handle {subject}"),
                otel.kind = "server",
                trace_id = tracing::field::Empty,
            );
            crate::telemetry::continue_trace(&span, crate::telemetry::from_nats(request.message.headers.as_ref()));
            async move {
                let started = tokio::time::Instant::now();
                let outcome = match serde_json::from_slice::<Req>(&request.message.payload) {
                    // Every handler needs the database: without it, say so at once.
                    Ok(_) if !context.database.is_up() => Err(HandlerError::unavailable("the database does not answer")),
                    Ok(payload) => handler(payload, command_id(&request.message)).await,
                    Err(error) => Err(HandlerError::bad_request(format!("undecodable payload: {error}"))),
                };
                let response = outcome
                    .and_then(|reply| {
                        serde_json::to_vec(&reply).map_err(|error| HandlerError::internal(error.to_string()))
                    })
                    .map(Into::into)
                    .map_err(|error| {
                        if error.code != BAD_REQUEST {
                            tracing::warn!(code = error.code, error = %error.message, "handler failed");
                        }
                        service::error::Error { code: error.code, status: crate::jetstream::header_text(&error.message) }
                    });
                let code = response.as_ref().err().map(|error| error.code);
                context.metrics.handled(&subject, Kind::Request, code, started.elapsed());
                let mut headers = async_nats::HeaderMap::new();
                crate::telemetry::inject(&mut headers);
                if let Err(error) = request.respond_with_headers(response, headers).await {
                    tracing::warn!(%error, "could not send reply");
                }
            }
            .instrument(span)
        })
        .await;
}

/// What [`serve`] needs besides the endpoint and the handler.
#[derive(Clone)]
pub struct Serving {
    /// Requests handled at once.
    pub concurrency: usize,
    /// Requests are refused as unavailable while the database does not answer.
    pub database: crate::db::Probe,
    /// Where handled requests are counted.
    pub metrics: Metrics,
}

fn command_id(message: &async_nats::Message) -> uuid::Uuid {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(COMMAND_ID_HEADER))
        .and_then(|value| value.as_str().parse().ok())
        .unwrap_or_else(uuid::Uuid::now_v7)
}

/// How many requests one endpoint handles at once; the rest wait in the subscription's buffer.
/// The database pool, not this number, bounds the real parallelism.
const ENDPOINT_CONCURRENCY: usize = 128;

/// A service registered with the NATS services API and the tasks serving its endpoints.
pub struct Handlers {
    client: Client,
    serving: Serving,
    service: service::Service,
    tasks: tokio::task::JoinSet<()>,
}

impl Handlers {
    /// Registers the service `name` (visible to `nats micro ls`); its endpoints share the queue
    /// group `name`, so each request is handled by exactly one replica.
    /// Requests are refused as unavailable while `database` does not answer, and counted in `metrics`.
    pub async fn start(
        client: &Client,
        name: &str,
        description: &str,
        database: crate::db::Probe,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        use async_nats::service::ServiceExt;
        let service = client
            .service_builder()
            .description(description)
            .queue_group(name)
            .start(name, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|error| anyhow::anyhow!("registering NATS service {name}: {error}"))?;
        Ok(Self {
            client: client.clone(),
            serving: Serving {
                concurrency: ENDPOINT_CONCURRENCY,
                database,
                metrics,
            },
            service,
            tasks: tokio::task::JoinSet::new(),
        })
    }

    /// Adds the endpoint `name` on `subject`, served by `handler` in a background task;
    /// `description` goes in its metadata (`nats micro info` shows it). When connected,
    /// returns only once the server has registered the subscription, so a request sent from
    /// anywhere after this returns finds it.
    pub async fn add<Req, Rep, F, Fut>(
        &mut self,
        name: &str,
        subject: &str,
        description: &str,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Rep: Serialize + Send + 'static,
        F: Fn(Req, uuid::Uuid) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, HandlerError>> + Send + 'static,
    {
        let endpoint = self
            .service
            .endpoint_builder()
            .name(name)
            .metadata(std::collections::HashMap::from([(
                "description".to_owned(),
                description.to_owned(),
            )]))
            .add(subject)
            .await
            .map_err(|error| anyhow::anyhow!("adding NATS endpoint {subject}: {error}"))?;
        self.tasks
            .spawn(serve(endpoint, self.serving.clone(), handler));
        if self.client.connection_state() == async_nats::connection::State::Connected
            && let Err(error) = round_trip(&self.client).await
        {
            tracing::warn!(%error, subject, "could not confirm the subscription with the NATS server");
        }
        Ok(())
    }

    /// Unsubscribes every endpoint, waits (at most `patience`) for in-flight requests to be
    /// answered, then makes sure the server has processed the unsubscriptions, so that once this
    /// returns no new request is routed to this process.
    ///
    /// Known limit: async-nats forgets a subscription as soon as it sends UNSUB, so a request
    /// the server routed here during that round trip is dropped and its sender times out.
    pub async fn stop(mut self, patience: std::time::Duration) {
        if let Err(error) = self.service.stop().await {
            tracing::warn!(%error, "stopping NATS service");
        }
        let drained = tokio::time::timeout(patience, async {
            while self.tasks.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!("NATS handlers still busy at shutdown deadline; abandoning them");
        }
        if let Err(error) = round_trip(&self.client).await {
            tracing::warn!(%error, "confirming the unsubscriptions with the NATS server");
        }
    }
}

/// Returns once the server has processed everything this client sent before the call.
///
/// `Client::flush` only empties the socket buffer; this sends a message to a fresh inbox of our
/// own and waits for it to come back, which the server does in order on this connection.
pub async fn round_trip(client: &Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(std::time::Duration::from_secs(2), echo.next())
        .await
        .map_err(|_| anyhow::anyhow!("no echo from the NATS server within 2 s"))?;
    Ok(())
}
