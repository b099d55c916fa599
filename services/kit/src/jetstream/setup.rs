//! Streams and durable consumers, created from their definitions in `nats/` at start-up.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    self, Context,
    consumer::{PullConsumer, pull},
};
use shared::stream::{ConsumerDef, StreamDef};

/// How long start-up waits for a stream owned by another service to appear.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);

/// Creates `def` as written in its file, unless it exists. An existing stream is left as it is:
/// services may create their streams but not change them (nats/permissions.conf), so that a
/// compromised one cannot widen its stream to capture subjects that are not its own. When the
/// stream on the server has settings other than the file's (one created by an earlier version,
/// say, with a longer duplicate window), this warns, naming them, and returns their names: an
/// operator applies the file.
///
/// On a NATS cluster the stream is created with `replicas` copies (`STREAM_REPLICAS`), each on
/// another node; its consumers take as many. An existing stream keeps the copies it has.
pub async fn ensure_stream(
    js: &Context,
    def: &StreamDef,
    replicas: usize,
) -> anyhow::Result<Vec<&'static str>> {
    let mut config: jetstream::stream::Config = serde_json::from_str(def.json)
        .with_context(|| format!("stream definition {}", def.name))?;
    config.num_replicas = replicas.max(1);
    let started = tokio::time::Instant::now();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => {
                let existing = &stream.cached_info().config;
                if existing.num_replicas != config.num_replicas {
                    tracing::warn!(
                        stream = def.name,
                        replicas = existing.num_replicas,
                        wanted = config.num_replicas,
                        "the stream keeps another number of replicas than STREAM_REPLICAS; change it with `nats stream edit {} --replicas N`",
                        def.name
                    );
                }
                let drifted = drifted(existing, &config);
                if !drifted.is_empty() {
                    tracing::warn!(
                        stream = def.name,
                        settings = drifted.join(", "),
                        "the stream's settings differ from nats/streams/{0}.json; apply it with `nats stream edit {0} --config nats/streams/{0}.json`",
                        def.name
                    );
                }
                return Ok(drifted);
            }
            Err(error) if started.elapsed() < STREAM_PATIENCE => {
                tracing::warn!(stream = def.name, %error, "cannot create stream yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(anyhow::anyhow!("creating stream {}: {error}", def.name)),
        }
    }
}

/// The settings `wanted` (a stream's file) gives that `existing` (the stream on the server) has
/// otherwise, by their names in the file. Replicas are not among them: a stream keeps its own.
fn drifted(
    existing: &jetstream::stream::Config,
    wanted: &jetstream::stream::Config,
) -> Vec<&'static str> {
    [
        ("subjects", existing.subjects == wanted.subjects),
        ("retention", existing.retention == wanted.retention),
        ("storage", existing.storage == wanted.storage),
        ("discard", existing.discard == wanted.discard),
        ("max_msgs", existing.max_messages == wanted.max_messages),
        (
            "max_msgs_per_subject",
            existing.max_messages_per_subject == wanted.max_messages_per_subject,
        ),
        ("max_bytes", existing.max_bytes == wanted.max_bytes),
        ("max_age", existing.max_age == wanted.max_age),
        (
            "max_msg_size",
            existing.max_message_size == wanted.max_message_size,
        ),
        (
            "duplicate_window",
            existing.duplicate_window == wanted.duplicate_window,
        ),
    ]
    .into_iter()
    .filter_map(|(name, same)| (!same).then_some(name))
    .collect()
}

/// Creates (or updates) the durable consumer `def` and returns it. Its stream may belong to
/// another service that is still starting, so this waits for the stream to appear. Its own
/// failures go to `DEAD_LETTERS`, created here with `replicas` copies if missing.
///
/// On a NATS cluster (`replicas` > 1) the consumer keeps its state in memory on each of its
/// nodes, replicated like the file-stored state would be: a node lost or wiped catches up from
/// the others. Were every node to go at once, the consumer would start again from the messages
/// still in its work-queue stream, which are exactly the unacknowledged ones: redelivered,
/// and harmless, as every handler is idempotent. One node alone keeps it on disk.
pub async fn consumer(
    js: &Context,
    def: &ConsumerDef,
    replicas: usize,
) -> anyhow::Result<PullConsumer> {
    ensure_stream(js, &shared::stream::DEAD_LETTERS, replicas).await?;
    let mut config: pull::Config = serde_json::from_str(def.json)
        .with_context(|| format!("consumer definition {}", def.name))?;
    config.memory_storage = replicas > 1;
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
            Err(error) if fixed_differently(js, def, &config).await => {
                return Err(error.context(format!(
                    "consumer {0} exists with another priority policy or storage than this version \
                     gives it, which JetStream cannot change in place: remove it once (`nats consumer rm {1} {0}`; \
                     its unacknowledged messages stay in the work-queue stream and go to the new one)",
                    def.name, def.stream
                )));
            }
            Err(error) if started.elapsed() < STREAM_PATIENCE => {
                tracing::warn!(stream = def.stream, consumer = def.name, %error, "waiting for stream");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.context(format!("creating consumer {}", def.name))),
        }
    }
}

/// Whether `def` exists on the server with another priority policy or storage than `config`'s
/// (say, created by an earlier version): JetStream refuses to change either.
async fn fixed_differently(js: &Context, def: &ConsumerDef, config: &pull::Config) -> bool {
    let Ok(stream) = js.get_stream(def.stream).await else {
        return false;
    };
    stream.consumer_info(def.name).await.is_ok_and(|info| {
        info.config.priority_policy != config.priority_policy
            || info.config.memory_storage != config.memory_storage
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(
                config.priority_policy,
                jetstream::consumer::PriorityPolicy::Prioritized
            );
            assert_eq!(config.priority_groups, ["saga"]);
        }
    }

    #[test]
    fn a_stream_differs_from_its_file_in_the_settings_named_and_in_no_other() {
        let file: jetstream::stream::Config =
            serde_json::from_str(shared::stream::ORDER_SAGA.json).unwrap();
        let mut server = file.clone();
        server.num_replicas = 3;
        server.description = Some("edited by hand".into());
        assert!(drifted(&server, &file).is_empty());

        server.duplicate_window = Duration::from_secs(120);
        server.max_age = Duration::from_secs(3600);
        server.subjects.push("order.cmd.other".into());
        assert_eq!(
            drifted(&server, &file),
            ["subjects", "max_age", "duplicate_window"]
        );
    }
}
