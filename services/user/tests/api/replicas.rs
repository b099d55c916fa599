//! Two replicas of the service on one database and one NATS: shared state, one handler per command.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{World, create, spawn};

#[tokio::test]
async fn a_write_sent_to_one_replica_is_visible_through_the_other() {
    let world = World::new().await;
    let other = spawn(&world.database_url, &world.nats.url()).await;

    assert_eq!(world.app.http.post("/user", &create(1)).await.status, 200);
    assert_eq!(other.http.get("/user/1").await.json["username"], "user1");

    let update = json!({"command": "update", "id": 1, "username": "renamed"});
    assert_eq!(other.http.post("/user", &update).await.status, 200);
    assert_eq!(
        world.app.http.get("/user/1").await.json["username"],
        "renamed"
    );
    other.stop().await;
}

#[tokio::test]
async fn each_command_is_handled_exactly_once_with_two_replicas_running() {
    let world = World::new().await;
    let other = spawn(&world.database_url, &world.nats.url()).await;
    let commands = 100;

    let replies = join_all((0..commands).map(|id| {
        let app = if id % 2 == 0 { &world.app } else { &other };
        async move { app.http.post("/user", &create(id)).await.status }
    }))
    .await;
    assert!(replies.iter().all(|&status| status == 200), "{replies:?}");

    let stats = testkit::nats::service_stats(&world.nats.url(), "user", 2).await;
    let handled: Vec<u64> = stats
        .iter()
        .map(|instance| testkit::nats::endpoint_requests(instance, "create"))
        .collect();
    assert_eq!(
        handled.iter().sum::<u64>(),
        commands as u64,
        "per replica: {handled:?}"
    );
    assert!(
        handled.iter().all(|&n| n > 0),
        "both replicas share the work: {handled:?}"
    );
    other.stop().await;
}

#[tokio::test]
async fn a_replica_stops_cleanly_while_the_other_keeps_serving() {
    let world = World::new().await;
    let other = spawn(&world.database_url, &world.nats.url()).await;
    assert_eq!(other.http.post("/user", &create(1)).await.status, 200);
    other.stop().await;
    assert_eq!(world.app.http.post("/user", &create(2)).await.status, 200);
    assert_eq!(world.app.http.get("/user/1").await.status, 200);
}

#[tokio::test]
async fn a_command_lost_by_a_replica_that_never_answers_is_sent_again_and_succeeds() {
    use futures::StreamExt;
    let world = World::new().await;
    // A member of the queue group that takes one command and drops it, as a replica that dies
    // or stops at the wrong moment does.
    let rogue = async_nats::connect(world.nats.url())
        .await
        .expect("connect");
    let mut swallow = rogue
        .queue_subscribe("user.cmd.create", "user".into())
        .await
        .expect("subscribe");
    swallow.unsubscribe_after(1).await.expect("limit");
    rogue.flush().await.expect("flush");

    let mut statuses = Vec::new();
    for id in 1..=12 {
        statuses.push(world.app.http.post("/user", &create(id)).await.status);
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let swallowed = tokio::time::timeout(std::time::Duration::from_secs(1), swallow.next()).await;
    assert!(
        matches!(swallowed, Ok(Some(_))),
        "the rogue member took a command"
    );
    for id in 1..=12 {
        assert_eq!(
            world.app.http.get(&format!("/user/{id}")).await.status,
            200,
            "user {id}"
        );
    }
}
