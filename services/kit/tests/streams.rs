//! Streams as the services set them up at start-up, against a real nats-server: created from
//! their files when missing, left as they are when present, and any setting that differs from
//! the file named (and logged) so that an operator can apply it.

use std::time::Duration;

use async_nats::jetstream;
use shared::stream::ORDER_SAGA;
use testkit::NatsServer;

/// A JetStream context on `nats`, with no stream yet.
async fn jetstream_of(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.expect("connect"))
}

/// `ORDER_SAGA` as the server has it.
async fn on_server(js: &jetstream::Context) -> jetstream::stream::Config {
    let stream = js.get_stream(ORDER_SAGA.name).await.expect("the stream");
    stream.cached_info().config.clone()
}

/// `ORDER_SAGA` as its file, `nats/streams/ORDER_SAGA.json`, defines it.
fn file_config() -> jetstream::stream::Config {
    serde_json::from_str(ORDER_SAGA.json).expect("ORDER_SAGA.json")
}

#[tokio::test]
async fn a_missing_stream_is_created_as_its_file_says_and_nothing_differs() {
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;

    let drifted = kit::jetstream::ensure_stream(&js, &ORDER_SAGA, 1)
        .await
        .expect("stream");

    assert!(drifted.is_empty(), "{drifted:?}");
    let config = on_server(&js).await;
    assert_eq!(config.duplicate_window, file_config().duplicate_window);
    assert_eq!(config.subjects, file_config().subjects);
}

#[tokio::test]
async fn a_stream_an_earlier_version_created_is_left_as_it_is_and_its_differences_are_named() {
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    let earlier = jetstream::stream::Config {
        duplicate_window: Duration::from_secs(120),
        ..file_config()
    };
    js.create_stream(earlier).await.expect("the earlier stream");

    let drifted = kit::jetstream::ensure_stream(&js, &ORDER_SAGA, 1)
        .await
        .expect("stream");

    assert_eq!(drifted, ["duplicate_window"]);
    let config = on_server(&js).await;
    assert_eq!(config.duplicate_window, Duration::from_secs(120));

    // Once an operator has applied the file, nothing differs any more.
    js.update_stream(file_config()).await.expect("applied");
    let drifted = kit::jetstream::ensure_stream(&js, &ORDER_SAGA, 1)
        .await
        .expect("stream");
    assert!(drifted.is_empty(), "{drifted:?}");
}
