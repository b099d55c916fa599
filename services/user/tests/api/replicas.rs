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
