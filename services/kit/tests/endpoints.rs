//! Services-API endpoints against a real nats-server: a handler that panics fails the request
//! it was handling, answered as an internal error, and its endpoint goes on serving.

use kit::nats::{Command, HandlerError, Handlers};
use testkit::NatsServer;

/// The number whose request makes the test's handlers panic, as a bug would.
const PANICS: i32 = -1;

/// The services API error code of `reply`, if it is an error.
fn error_code(reply: &async_nats::Message) -> Option<String> {
    let headers = reply.headers.as_ref()?;
    headers
        .get("Nats-Service-Error-Code")
        .map(|code| code.to_string())
}

async fn ask(client: &async_nats::Client, subject: &str, number: i32) -> async_nats::Message {
    client
        .request(subject.to_owned(), number.to_string().into())
        .await
        .expect("a reply")
}

#[tokio::test]
async fn a_handler_that_panics_answers_its_request_500_and_its_endpoint_serves_the_next() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let metrics = kit::metrics::Metrics::new(|_| {});
    let database = kit::db::Probe::new();
    let mut handlers = Handlers::start(&client, "doubler", "doubles", database, metrics)
        .await
        .expect("service");
    handlers
        .add(
            "one",
            "doubler.one",
            "one at a time",
            |n: i32, _| async move {
                assert_ne!(n, PANICS, "a bug in the handler");
                Ok::<i32, HandlerError>(2 * n)
            },
        )
        .await
        .expect("endpoint");
    handlers
        .add_batched(
            "many",
            "doubler.many",
            "in batches",
            |batch: Vec<Command<i32>>| async move {
                assert!(batch.iter().all(|c| c.payload != PANICS), "a bug");
                batch
                    .iter()
                    .map(|c| Ok::<i32, HandlerError>(2 * c.payload))
                    .collect::<Vec<_>>()
            },
        )
        .await
        .expect("batched endpoint");

    for subject in ["doubler.one", "doubler.many"] {
        for round in 0..2 {
            let refused = ask(&client, subject, PANICS).await;
            assert_eq!(
                error_code(&refused).as_deref(),
                Some("500"),
                "{subject}, round {round}"
            );
            let answered = ask(&client, subject, 21).await;
            assert_eq!(error_code(&answered), None, "{subject}, round {round}");
            assert_eq!(&answered.payload[..], b"42", "{subject}, round {round}");
        }
    }
    handlers.stop(std::time::Duration::from_secs(1)).await;
}
