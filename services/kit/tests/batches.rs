//! A saga consumer's batches, against a real nats-server: what is ready arrives at once, a
//! batch that fails for one message is split until that message is alone, and only that one
//! goes to the dead letters; the others are acknowledged once handled. Nothing waits for a
//! redelivery: not what arrives during a slow batch, nor what is published as the broker returns.
//! Of two workers on one consumer, the one of the first rank takes the messages.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use kit::{
    jetstream::{Delivery, Worker},
    nats::{HandlerError, Rank},
};
use shared::{
    saga::ValidateUser,
    stream::{DEAD_LETTERS, USER_SAGA, USER_VALIDATE},
    subject,
};
use testkit::NatsServer;
use uuid::Uuid;

/// A nats-server with `USER_SAGA` and its `user-validate` consumer, as the user service sets
/// them up.
async fn user_validate() -> (
    NatsServer,
    jetstream::Context,
    jetstream::consumer::PullConsumer,
) {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    kit::jetstream::ensure_stream(&js, &USER_SAGA, 1)
        .await
        .expect("stream");
    let consumer = kit::jetstream::consumer(&js, &USER_VALIDATE, 1)
        .await
        .expect("consumer");
    (nats, js, consumer)
}

/// A worker on the `user-validate` consumer, pulling at `rank`, handling with `handler`.
fn validate_worker<F, Fut>(
    js: &jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    rank: &Rank,
    handler: F,
) -> Worker
where
    F: Fn(Vec<Delivery<ValidateUser>>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let metrics = kit::metrics::Metrics::new(|_| {});
    Worker::spawn(js, consumer, &metrics, rank, handler)
}

/// The user id the test's handler refuses, as a handler refuses a message it can never handle.
const POISON: i32 = -1;

#[tokio::test]
async fn a_batch_of_good_duplicate_and_poison_messages_handles_each_good_one_and_dead_letters_only_the_poison()
 {
    let (_nats, js, consumer) = user_validate().await;

    // Stored before the worker starts: its first pull finds them all waiting.
    let (a, b, c, poison) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let validate = |order_id, user_id| serde_json::to_vec(&ValidateUser { order_id, user_id });
    let messages = [
        validate(a, 1),
        validate(b, 2),
        validate(a, 1), // a's command again, as a redelivery would bring it
        validate(poison, POISON),
        Ok(b"not json".to_vec()),
        validate(c, 3),
    ];
    for payload in messages {
        let message = PublishMessage::build()
            .payload(payload.expect("json").into())
            .message_id(Uuid::new_v4().to_string());
        let ack = js
            .send_publish(subject::USER_VALIDATE.to_owned(), message)
            .await;
        ack.expect("publish").await.expect("stored");
    }

    let calls: Arc<Mutex<Vec<Vec<i32>>>> = Arc::default();
    let handled: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let (seen, done) = (calls.clone(), handled.clone());
    let worker = validate_worker(
        &js,
        consumer,
        &Rank::default(),
        move |batch: Vec<Delivery<ValidateUser>>| {
            let users: Vec<i32> = batch.iter().map(|d| d.payload.user_id).collect();
            seen.lock().expect("calls").push(users.clone());
            let done = done.clone();
            async move {
                if users.contains(&POISON) {
                    return Err(HandlerError::bad_request("this user id is refused"));
                }
                done.lock()
                    .expect("handled")
                    .extend(batch.iter().map(|d| d.payload.order_id));
                Ok(())
            }
        },
    );

    let stream = js.get_stream(USER_SAGA.name).await.expect("USER_SAGA");
    testkit::eventually("every message acknowledged or given up on", || {
        let stream = stream.clone();
        async move {
            let info = stream.consumer_info(USER_VALIDATE.name).await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    worker.stop(Duration::from_secs(5)).await;

    let calls = calls.lock().expect("calls").clone();
    assert_eq!(
        calls[0],
        [1, 2, 1, POISON, 3],
        "the first batch holds every message that decodes: {calls:?}"
    );
    assert!(
        calls.contains(&vec![POISON]),
        "the poison ends alone: {calls:?}"
    );
    let mut handled = handled.lock().expect("handled").clone();
    handled.sort();
    handled.dedup();
    let mut good = vec![a, b, c];
    good.sort();
    assert_eq!(handled, good, "every good message is handled");

    let mut letters = js
        .get_stream(DEAD_LETTERS.name)
        .await
        .expect("DEAD_LETTERS");
    assert_eq!(letters.info().await.expect("info").state.messages, 2);
    let dead = letters
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .expect("reader");
    let mut read = dead.messages().await.expect("messages").take(2);
    let mut payloads = Vec::new();
    while let Some(letter) = read.next().await {
        let letter = letter.expect("letter");
        assert_eq!(letter.subject.as_str(), "dead.user.cmd.validate");
        payloads.push(String::from_utf8_lossy(&letter.payload).into_owned());
    }
    payloads.sort();
    assert_eq!(payloads[0], "not json");
    assert!(payloads[1].contains(&poison.to_string()), "{payloads:?}");
}

/// Publishes a validation command for `user_id` and waits until the stream has stored it.
async fn publish_validate(js: &jetstream::Context, user_id: i32) {
    let payload = serde_json::to_vec(&ValidateUser {
        order_id: Uuid::now_v7(),
        user_id,
    })
    .expect("json");
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(Uuid::new_v4().to_string());
    let ack = js
        .send_publish(subject::USER_VALIDATE.to_owned(), message)
        .await;
    ack.expect("publish").await.expect("stored");
}

/// Each delivery a worker saw: (user id, attempt).
type Deliveries = Arc<Mutex<Vec<(i32, i64)>>>;

/// A worker on `consumer` that records every delivery; a batch holding user 0 takes 2.5 s,
/// longer than its pull waits (1 s) and then some.
fn recording_worker(
    js: &jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
) -> (Worker, Deliveries) {
    recording_worker_at(js, consumer, 0)
}

/// [`recording_worker`], pulling at `rank`.
fn recording_worker_at(
    js: &jetstream::Context,
    consumer: jetstream::consumer::PullConsumer,
    rank: usize,
) -> (Worker, Deliveries) {
    let deliveries = Deliveries::default();
    let seen = deliveries.clone();
    let worker = validate_worker(
        js,
        consumer,
        &Rank::fixed(rank),
        move |batch: Vec<Delivery<ValidateUser>>| {
            let slow = batch.iter().any(|d| d.payload.user_id == 0);
            seen.lock()
                .expect("deliveries")
                .extend(batch.iter().map(|d| (d.payload.user_id, d.attempt)));
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_millis(2_500)).await;
                }
                Ok(())
            }
        },
    );
    (worker, deliveries)
}

/// Stops `worker` once a redelivery could not have come yet, well inside the consumer's
/// ack_wait (10 s), and checks that `users` were each delivered once, on the first attempt.
async fn assert_each_delivered_once_at_first(
    worker: Worker,
    deliveries: &Deliveries,
    users: std::ops::RangeInclusive<i32>,
    settle: Duration,
) {
    tokio::time::sleep(settle).await;
    worker.stop(Duration::from_secs(5)).await;
    let deliveries = deliveries.lock().expect("deliveries").clone();
    let mut seen: Vec<i32> = deliveries.iter().map(|(user, _)| *user).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        users.collect::<Vec<_>>(),
        "each message delivered once: {deliveries:?}"
    );
    assert!(
        deliveries.iter().all(|(_, attempt)| *attempt == 1),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn messages_that_arrive_while_a_batch_outlasts_its_pull_are_handled_on_their_first_delivery()
{
    let (_nats, js, consumer) = user_validate().await;
    let (worker, deliveries) = recording_worker(&js, consumer);

    // User 0's batch outlasts its pull; the others arrive meanwhile, delivered by the server to
    // that same pull.
    publish_validate(&js, 0).await;
    testkit::eventually("the slow batch starts", || {
        let started = !deliveries.lock().expect("deliveries").is_empty();
        async move { started.then_some(()) }
    })
    .await;
    for user_id in 1..=10 {
        publish_validate(&js, user_id).await;
    }

    assert_each_delivered_once_at_first(worker, &deliveries, 0..=10, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn messages_published_just_after_the_broker_returns_are_handled_on_their_first_delivery() {
    let (mut nats, js, consumer) = user_validate().await;
    let (worker, deliveries) = recording_worker(&js, consumer);

    // Down long enough for the worker to have pulled while disconnected, then back.
    nats.stop();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    nats.restart();
    let client = js.client();
    testkit::eventually("the client reconnects", || {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        async move { connected.then_some(()) }
    })
    .await;
    // One message every 100 ms through the next two seconds: pulls the worker sent while
    // disconnected reach the server with the reconnection, their inboxes already dropped, and
    // must not take these messages to nobody (the server skips a pull nobody listens to).
    for user_id in 1..=20 {
        publish_validate(&js, user_id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_each_delivered_once_at_first(worker, &deliveries, 1..=20, Duration::from_secs(4)).await;
}

#[tokio::test]
async fn the_worker_of_the_first_rank_takes_the_messages_and_the_next_takes_over_when_it_is_gone() {
    let (_nats, js, consumer) = user_validate().await;
    let (older, older_saw) = recording_worker_at(&js, consumer.clone(), 1);
    let (newer, newer_saw) = recording_worker_at(&js, consumer, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Three bursts while both wait: each goes to the first rank. (Between two of its pulls, a
    // moment every second, a message may go to the other: hence "nearly all".)
    for burst in 0..3 {
        let publishes = (1..=20).map(|n| publish_validate(&js, burst * 100 + n));
        futures::future::join_all(publishes).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let handled = || {
        let (newer, older) = (
            newer_saw.lock().expect("newer"),
            older_saw.lock().expect("older"),
        );
        (newer.len(), older.len())
    };
    testkit::eventually("every message is handled", || {
        let (newer, older) = handled();
        async move { (newer + older == 60).then_some(()) }
    })
    .await;
    let (by_newer, by_older) = handled();
    assert!(
        by_newer >= 55,
        "the first rank took {by_newer} of 60, the second {by_older}"
    );

    // Gone: the next rank takes everything at once, no redelivery needed.
    newer.stop(Duration::from_secs(5)).await;
    for user_id in 1_001..=1_010 {
        publish_validate(&js, user_id).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    older.stop(Duration::from_secs(5)).await;
    let late: Vec<(i32, i64)> = older_saw
        .lock()
        .expect("older")
        .iter()
        .filter(|(user, _)| *user > 1_000)
        .copied()
        .collect();
    let mut users: Vec<i32> = late.iter().map(|(user, _)| *user).collect();
    users.sort_unstable();
    assert_eq!(users, (1_001..=1_010).collect::<Vec<_>>(), "{late:?}");
    assert!(late.iter().all(|(_, attempt)| *attempt == 1), "{late:?}");
}

/// The user id whose message makes the test's handler panic, as a bug would.
const PANICS: i32 = -2;

#[tokio::test]
async fn a_handler_that_panics_on_one_message_fails_that_one_alone_and_the_worker_goes_on() {
    let (_nats, js, consumer) = user_validate().await;
    for user_id in [1, PANICS, 2] {
        publish_validate(&js, user_id).await;
    }
    let deliveries = Deliveries::default();
    let handled: Arc<Mutex<Vec<i32>>> = Arc::default();
    let (seen, done) = (deliveries.clone(), handled.clone());
    let worker = validate_worker(
        &js,
        consumer,
        &Rank::default(),
        move |batch: Vec<Delivery<ValidateUser>>| {
            seen.lock()
                .expect("deliveries")
                .extend(batch.iter().map(|d| (d.payload.user_id, d.attempt)));
            let users: Vec<i32> = batch.iter().map(|d| d.payload.user_id).collect();
            let done = done.clone();
            async move {
                assert!(!users.contains(&PANICS), "a bug in the handler");
                done.lock().expect("handled").extend(users);
                Ok::<(), HandlerError>(())
            }
        },
    );

    testkit::eventually("both good messages handled", || {
        let done = handled.lock().expect("handled").clone();
        async move { (done.contains(&1) && done.contains(&2)).then_some(()) }
    })
    .await;
    publish_validate(&js, 3).await;
    testkit::eventually("a message published after the panic handled too", || {
        let done = handled.lock().expect("handled").contains(&3);
        async move { done.then_some(()) }
    })
    .await;
    testkit::eventually("the panicking message delivered again, alone", || {
        let again = deliveries
            .lock()
            .expect("deliveries")
            .contains(&(PANICS, 2));
        async move { again.then_some(()) }
    })
    .await;
    worker.stop(Duration::from_secs(5)).await;
    assert!(!handled.lock().expect("handled").contains(&PANICS));
}
