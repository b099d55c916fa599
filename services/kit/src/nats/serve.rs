//! Serving services-API endpoints with typed handlers: one request at a time, or the commands
//! that arrive together in one batch (one transaction for all, then each its own reply).

use std::future::Future;

use async_nats::{
    Client,
    service::{self, endpoint::Endpoint},
};
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use shared::{
    error::{BAD_REQUEST, INTERNAL, UNAVAILABLE},
    subject::COMMAND_ID_HEADER,
};
use tracing::Instrument;

use crate::metrics::{Kind, Metrics};

use super::round_trip;

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

/// The output of `future`, or, when it panics, an internal error saying so: a handler's bug
/// fails what it was handling (answered 500, or a saga message retried and then dead-lettered)
/// instead of ending the task that serves every later request (see [`crate::panics`]).
pub(crate) async fn caught<T>(future: impl Future<Output = T>) -> Result<T, HandlerError> {
    crate::panics::caught(future)
        .await
        .map_err(|what| HandlerError::internal(format!("the handler panicked: {what}")))
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
            let span = request_span(&request);
            async move {
                let started = tokio::time::Instant::now();
                let outcome = match decode::<Req>(&request, context) {
                    Ok(command) => caught(handler(command.payload, command.id))
                        .await
                        .and_then(|outcome| outcome),
                    Err(error) => Err(error),
                };
                reply(&request, outcome, context, started).await;
            }
            .instrument(span)
        })
        .await;
}

/// A command as a batch handler gets it.
#[derive(Debug, Clone)]
pub struct Command<T> {
    /// The decoded payload.
    pub payload: T,
    /// Its `Command-Id` (a fresh one when it has none): a command is applied once per id.
    pub id: uuid::Uuid,
}

/// Commands one batch holds at most.
const COMMAND_BATCH: usize = 64;

/// Like [`serve`], but the requests that have arrived together (up to [`COMMAND_BATCH`]) go to
/// `handler` at once, which answers each, in order: one transaction commits them all. Under
/// light load a batch is one request. `concurrency` batches are handled at a time.
pub async fn serve_batched<Req, Rep, F, Fut>(endpoint: Endpoint, context: Serving, handler: F)
where
    Req: DeserializeOwned,
    Rep: Serialize,
    F: Fn(Vec<Command<Req>>) -> Fut,
    Fut: Future<Output = Vec<Result<Rep, HandlerError>>>,
{
    endpoint
        .ready_chunks(COMMAND_BATCH)
        .for_each_concurrent(context.concurrency, |requests| {
            let (handler, context) = (&handler, &context);
            async move {
                let started = tokio::time::Instant::now();
                let mut refused = Vec::new();
                let mut accepted = Vec::new();
                let mut commands = Vec::new();
                for request in requests {
                    let span = request_span(&request);
                    match decode::<Req>(&request, context) {
                        Ok(command) => {
                            commands.push(command);
                            accepted.push((request, span));
                        }
                        Err(error) => refused.push((request, span, error)),
                    }
                }
                for (request, span, error) in refused {
                    reply::<Rep>(&request, Err(error), context, started)
                        .instrument(span)
                        .await;
                }
                if commands.is_empty() {
                    return;
                }
                let count = commands.len();
                let outcomes = match caught(handler(commands)).await {
                    Ok(outcomes) => outcomes,
                    Err(panicked) => vec![panicked; count].into_iter().map(Err).collect(),
                };
                let mut outcomes = outcomes.into_iter();
                for (request, span) in accepted {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        Err(HandlerError::internal(format!(
                            "the batch handler answered fewer than its {count} commands"
                        )))
                    });
                    reply(&request, outcome, context, started)
                        .instrument(span)
                        .await;
                }
            }
        })
        .await;
}

/// The span of handling `request`, continuing the trace it carries.
fn request_span(request: &service::Request) -> tracing::Span {
    let subject = request.message.subject.as_str();
    let span = tracing::info_span!(
        "nats.handle",
        subject,
        otel.name = %format_args!("handle {subject}"),
        otel.kind = "server",
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(
        &span,
        crate::telemetry::from_nats(request.message.headers.as_ref()),
    );
    span
}

/// The request's payload and command id. Every handler needs the database: without it, the
/// request is refused as unavailable at once.
fn decode<Req: DeserializeOwned>(
    request: &service::Request,
    context: &Serving,
) -> Result<Command<Req>, HandlerError> {
    let payload = payload(&request.message.payload)?;
    if !context.database.is_up() {
        return Err(HandlerError::unavailable("the database does not answer"));
    }
    Ok(Command {
        payload,
        id: command_id(&request.message),
    })
}

/// A NATS message's JSON payload, or why it is refused as malformed (400): it does not decode,
/// or a string in it holds NUL, which no handler could store.
pub(crate) fn payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HandlerError> {
    if crate::body::escapes_nul(bytes) {
        return Err(HandlerError::bad_request(crate::body::HOLDS_NUL));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| HandlerError::bad_request(format!("undecodable payload: {error}")))
}

/// Answers `request` with `outcome` (an error in the services API headers), in the current
/// span's trace, and counts it.
async fn reply<Rep: Serialize>(
    request: &service::Request,
    outcome: Result<Rep, HandlerError>,
    context: &Serving,
    started: tokio::time::Instant,
) {
    let response = outcome
        .and_then(|reply| {
            serde_json::to_vec(&reply).map_err(|error| HandlerError::internal(error.to_string()))
        })
        .map(Into::into)
        .map_err(|error| {
            if error.code != BAD_REQUEST {
                tracing::warn!(code = error.code, error = %error.message, "handler failed");
            }
            service::error::Error {
                code: error.code,
                status: crate::jetstream::header_text(&error.message),
            }
        });
    let code = response.as_ref().err().map(|error| error.code);
    let subject = request.message.subject.as_str();
    context
        .metrics
        .handled(subject, Kind::Request, code, started.elapsed());
    let mut headers = async_nats::HeaderMap::new();
    crate::telemetry::inject(&mut headers);
    if let Err(error) = request.respond_with_headers(response, headers).await {
        tracing::warn!(%error, "could not send reply");
    }
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

/// How many batches one batched endpoint handles at once: a few, so that one batch being
/// committed does not leave the endpoint idle, and the next gathers what arrives meanwhile.
const BATCHES_AT_ONCE: usize = 2;

/// A service registered with the NATS services API and the tasks serving its endpoints.
pub struct Handlers {
    client: Client,
    serving: Serving,
    service: service::Service,
    tasks: tokio::task::JoinSet<()>,
    rank: super::Rank,
    ranking: tokio::task::JoinHandle<()>,
}

impl Handlers {
    /// Registers the service `name` (visible to `nats micro ls`); its endpoints share the queue
    /// group `name`, so each request is handled by exactly one replica.
    /// Requests are refused as unavailable while `database` does not answer, and counted in `metrics`.
    /// From then on the replica keeps its [`Handlers::rank`] among the service's replicas.
    pub async fn start(
        client: &Client,
        name: &str,
        description: &str,
        database: crate::db::Probe,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        use async_nats::service::ServiceExt;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let service = client
            .service_builder()
            .description(description)
            .queue_group(name)
            .metadata(std::collections::HashMap::from([(
                super::rank::STARTED.to_owned(),
                started.to_string(),
            )]))
            .start(name, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|error| anyhow::anyhow!("registering NATS service {name}: {error}"))?;
        let me = super::rank::Replica {
            started,
            id: service.info().await.id,
        };
        let rank = super::Rank::default();
        let ranking = tokio::spawn(super::rank::keep(
            client.clone(),
            name.to_owned(),
            me,
            rank.clone(),
        ));
        Ok(Self {
            client: client.clone(),
            serving: Serving {
                concurrency: ENDPOINT_CONCURRENCY,
                database,
                metrics,
            },
            service,
            tasks: tokio::task::JoinSet::new(),
            rank,
            ranking,
        })
    }

    /// This replica's rank among the live replicas of its service, newest first: the priority
    /// its saga workers pull at (see [`crate::jetstream::Worker::spawn`]).
    pub fn rank(&self) -> super::Rank {
        self.rank.clone()
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
        let endpoint = self.endpoint(name, subject, description).await?;
        self.tasks
            .spawn(serve(endpoint, self.serving.clone(), handler));
        self.confirm(subject).await;
        Ok(())
    }

    /// Adds the endpoint `name` on `subject` like [`Handlers::add`], its requests handled in
    /// batches of those that arrived together (see [`serve_batched`]): how commands that
    /// write share one commit.
    pub async fn add_batched<Req, Rep, F, Fut>(
        &mut self,
        name: &str,
        subject: &str,
        description: &str,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Rep: Serialize + Send + 'static,
        F: Fn(Vec<Command<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<Rep, HandlerError>>> + Send + 'static,
    {
        let endpoint = self.endpoint(name, subject, description).await?;
        let serving = Serving {
            concurrency: BATCHES_AT_ONCE,
            ..self.serving.clone()
        };
        self.tasks.spawn(serve_batched(endpoint, serving, handler));
        self.confirm(subject).await;
        Ok(())
    }

    async fn endpoint(
        &mut self,
        name: &str,
        subject: &str,
        description: &str,
    ) -> anyhow::Result<Endpoint> {
        self.service
            .endpoint_builder()
            .name(name)
            .metadata(std::collections::HashMap::from([(
                "description".to_owned(),
                description.to_owned(),
            )]))
            .add(subject)
            .await
            .map_err(|error| anyhow::anyhow!("adding NATS endpoint {subject}: {error}"))
    }

    /// When connected, returns only once the server has registered the subscriptions, so that a
    /// request sent from anywhere afterwards finds them.
    async fn confirm(&self, subject: &str) {
        if self.client.connection_state() == async_nats::connection::State::Connected
            && let Err(error) = round_trip(&self.client).await
        {
            tracing::warn!(%error, subject, "could not confirm the subscription with the NATS server");
        }
    }

    /// Unsubscribes every endpoint, waits (at most `patience`) for in-flight requests to be
    /// answered, then makes sure the server has processed the unsubscriptions, so that once this
    /// returns no new request is routed to this process.
    ///
    /// Known limit: async-nats forgets a subscription as soon as it sends UNSUB, so a request
    /// the server routed here during that round trip is dropped and its sender times out.
    pub async fn stop(mut self, patience: std::time::Duration) {
        self.ranking.abort();
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

/// Answers each command of a batch by running `run` on rounds of them: a round holds no two
/// commands with the same `key` (commands on the same record apply one after the other, in the
/// order they came), sorted by key (so that concurrent rounds lock their rows in the same order
/// and never wait on each other in a circle), and `run` answers a round's commands in order, in
/// one statement or transaction, or fails them all. A round that fails for a reason of its own (not an
/// unavailable dependency) is split until the command that makes it fail is alone, so that one
/// bad command fails no other.
pub async fn answer_each<T, K, R, F, Fut>(
    batch: Vec<Command<T>>,
    key: impl Fn(&T) -> K,
    run: F,
) -> Vec<Result<R, HandlerError>>
where
    T: Clone,
    K: std::hash::Hash + Ord,
    F: Fn(Vec<Command<T>>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, HandlerError>>,
{
    let mut answers: Vec<Option<Result<R, HandlerError>>> = batch.iter().map(|_| None).collect();
    let mut round_of: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (at, command) in batch.iter().enumerate() {
        let round = round_of.entry(key(&command.payload)).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(at);
        *round += 1;
    }
    for mut round in rounds {
        round.sort_by_key(|&at| key(&batch[at].payload));
        let mut pending = vec![round];
        while let Some(part) = pending.pop() {
            let commands = part.iter().map(|&at| batch[at].clone()).collect();
            match run(commands).await {
                Ok(results) => {
                    for (at, result) in part.iter().zip(results) {
                        answers[*at] = Some(Ok(result));
                    }
                }
                Err(error) if part.len() > 1 && error.code != UNAVAILABLE => {
                    let mut first = part;
                    let second = first.split_off(first.len() / 2);
                    pending.extend([second, first]);
                }
                Err(error) => {
                    for at in &part {
                        answers[*at] = Some(Err(error.clone()));
                    }
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| Err(HandlerError::internal("a command got no answer")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(keys: &[i32]) -> Vec<Command<i32>> {
        keys.iter()
            .map(|key| Command {
                payload: *key,
                id: uuid::Uuid::now_v7(),
            })
            .collect()
    }

    #[tokio::test]
    async fn commands_on_the_same_record_go_in_successive_rounds_in_their_order() {
        let seen = std::sync::Mutex::new(Vec::new());
        let answers = answer_each(
            commands(&[1, 2, 1, 1, 3]),
            |key| *key,
            |round| {
                let keys: Vec<i32> = round.iter().map(|c| c.payload).collect();
                seen.lock().unwrap().push(keys.clone());
                async move { Ok(keys) }
            },
        )
        .await;
        assert_eq!(*seen.lock().unwrap(), [vec![1, 2, 3], vec![1], vec![1]]);
        let answers: Vec<i32> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [1, 2, 1, 1, 3]);
    }

    #[tokio::test]
    async fn a_round_is_sorted_by_key_and_each_answer_returns_to_its_command() {
        let seen = std::sync::Mutex::new(Vec::new());
        let answers = answer_each(
            commands(&[5, 3, 9, 1]),
            |key| *key,
            |round| {
                let keys: Vec<i32> = round.iter().map(|c| c.payload).collect();
                seen.lock().unwrap().push(keys.clone());
                async move { Ok(keys.into_iter().map(|k| k * 10).collect()) }
            },
        )
        .await;
        assert_eq!(*seen.lock().unwrap(), [vec![1, 3, 5, 9]]);
        let answers: Vec<i32> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [50, 30, 90, 10]);
    }

    #[tokio::test]
    async fn a_bad_command_fails_alone_and_an_outage_fails_the_round() {
        let answers = answer_each(
            commands(&[1, 2, 66, 4]),
            |key| *key,
            |round| async move {
                if round.iter().any(|c| c.payload == 66) {
                    Err(HandlerError::bad_request("66"))
                } else {
                    Ok(round.iter().map(|c| c.payload).collect())
                }
            },
        )
        .await;
        let codes: Vec<Option<usize>> = answers
            .iter()
            .map(|a| a.as_ref().err().map(|e| e.code))
            .collect();
        assert_eq!(codes, [None, None, Some(BAD_REQUEST), None]);

        let answers = answer_each(
            commands(&[1, 2]),
            |key| *key,
            |_| async { Err::<Vec<i32>, _>(HandlerError::unavailable("down")) },
        )
        .await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_err_and(|e| e.code == UNAVAILABLE))
        );
    }
}
