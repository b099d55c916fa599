//! Operator commands over a real nats-server: a reset whose handler panics fails alone.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};
use std::time::Duration;

use shared::{admin::ResetDone, subject};
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_reset_that_panics_is_not_confirmed_and_the_next_reset_still_runs() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let _admin = kit::admin::listen(
        &client,
        Some("token"),
        "user",
        CancellationToken::new(),
        move || {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_ne!(call, 0, "a bug in the first reset");
                Ok(())
            }
        },
    )
    .await
    .expect("listen")
    .expect("admin commands are on");

    let first = tokio::time::timeout(
        Duration::from_secs(1),
        client.request(subject::ADMIN_RESET, "".into()),
    )
    .await;
    let second = client
        .request(subject::ADMIN_RESET, "".into())
        .await
        .expect("the second reset is confirmed");

    assert!(
        !matches!(first, Ok(Ok(_))),
        "a reset that panicked is not confirmed"
    );
    let done: ResetDone = serde_json::from_slice(&second.payload).expect("ResetDone");
    assert_eq!(done.service, "user");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
