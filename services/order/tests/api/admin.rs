//! Operator commands through any one service, carried out by all of them.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, World};

#[tokio::test]
async fn admin_commands_do_not_exist_without_a_token() {
    let world = World::new().await;
    for path in ["/admin/reset", "/admin/shutdown"] {
        let reply = world
            .order
            .http
            .post_with(path, &json!({}), &[("authorization", "Bearer anything")])
            .await;
        assert_eq!((reply.status, reply.json), (404, json!({})), "{path}");
    }
    assert_eq!(
        world.user.http.get("/ready").await.status,
        200,
        "nothing stopped"
    );
}

#[tokio::test]
async fn a_reset_with_the_token_deletes_the_data_of_every_service() {
    let world = World::with_admin().await;
    world.user(1).await;
    world.product(2, 10).await;
    let placed = world.place(1, 2, 3).await;
    assert_eq!(placed.status, 200);
    let order = format!("/order/{}", placed.json["id"].as_str().expect("id"));

    let refused = world
        .product
        .http
        .post_with(
            "/admin/reset",
            &json!({}),
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!((refused.status, refused.json), (401, json!({})));
    let anonymous = world.product.http.post("/admin/reset", &json!({})).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(world.stock(2).await, 7, "a refused reset deletes nothing");

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let reset = world
        .product
        .http
        .post_with("/admin/reset", &json!({}), &[("authorization", &bearer)])
        .await;
    assert_eq!(
        (reset.status, reset.json),
        (200, json!({"reset": ["order", "product", "user"]}))
    );
    assert_eq!(world.user.http.get("/user/1").await.status, 404);
    assert_eq!(world.product.http.get("/product/2").await.status, 404);
    assert_eq!(world.order.http.get(&order).await.status, 404);

    // The system works as new afterwards, ids included.
    world.user(1).await;
    world.product(2, 1).await;
    assert_eq!(world.place(1, 2, 1).await.status, 200);
}

#[tokio::test]
async fn a_shutdown_with_the_token_stops_every_process_of_every_service() {
    let world = World::with_admin().await;
    world.user(1).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let stopped = world
        .user
        .http
        .post_with("/admin/shutdown", &json!({}), &[("authorization", &bearer)])
        .await;
    assert_eq!((stopped.status, stopped.json), (200, json!({})));
    for app in [world.user, world.product, world.order] {
        app.exited(Duration::from_secs(15))
            .await
            .expect("a clean exit");
    }
}
