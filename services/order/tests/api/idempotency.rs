//! `Idempotency-Key` on `POST /order` (API.md Part 2): one key places one order, whatever
//! the number of requests, their concurrency, or where the first one stopped.

use serde_json::{Value, json};
use testkit::Postgres;
use uuid::Uuid;

use crate::helpers::{World, place};

async fn place_with_key(world: &World, key: &str, body: &Value) -> testkit::http::Reply {
    world
        .order
        .http
        .post_with("/order", body, &[("idempotency-key", key)])
        .await
}

fn orders_in_db(world: &World) -> String {
    Postgres::shared().query(&world.order_db, "select count(*) from orders")
}

#[tokio::test]
async fn a_repeated_key_with_the_same_order_answers_the_first_response_and_places_one_order() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let first = place_with_key(&world, "key-1", &place(1, 2, 3)).await;
    let again = place_with_key(&world, "key-1", &place(1, 2, 3)).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!((again.status, &again.json), (200, &first.json));
    assert_eq!(world.stock(2).await, 7, "the stock is taken once");
    assert_eq!(orders_in_db(&world), "1");
    let history = world.order.http.get("/user/purchased/1").await;
    assert_eq!(history.json, json!({"2": 3}));
}

#[tokio::test]
async fn a_repeated_key_of_a_rejected_order_answers_the_same_rejection() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 1).await;

    let first = place_with_key(&world, "too-many", &place(1, 2, 5)).await;
    world.product_sql("update products set quantity = 100 where id = 2");
    let again = place_with_key(&world, "too-many", &place(1, 2, 5)).await;

    assert_eq!(first.status, 409, "{}", first.text);
    assert_eq!(
        (again.status, &again.json),
        (409, &first.json),
        "the first answer stands, even though the stock would now suffice"
    );
    assert_eq!(orders_in_db(&world), "1");
}

#[tokio::test]
async fn a_key_reused_for_a_different_order_answers_422_and_places_nothing_more() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;
    assert_eq!(
        place_with_key(&world, "k", &place(1, 2, 1)).await.status,
        200
    );

    for different in [place(1, 2, 2), place(1, 3, 1), place(7, 2, 1)] {
        let reply = place_with_key(&world, "k", &different).await;
        assert_eq!(reply.status, 422, "{different}: {}", reply.text);
        assert_eq!(reply.json, json!({"status": "Invalid Request"}));
    }
    assert_eq!(world.stock(2).await, 9);
    assert_eq!(orders_in_db(&world), "1");
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_place_one_order_and_agree_on_it() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 100).await;

    let body = place(1, 2, 4);
    let replies =
        futures::future::join_all((0..20).map(|_| place_with_key(&world, "same-key", &body))).await;

    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.json["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    assert_eq!(world.stock(2).await, 96);
    assert_eq!(orders_in_db(&world), "1");
}

#[tokio::test]
async fn a_repeated_key_whose_first_answer_was_202_answers_202_again_after_the_order_is_decided() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let first = world
        .order
        .http
        .post_with(
            "/order",
            &place(1, 2, 3),
            &[("idempotency-key", "later"), ("prefer", "respond-async")],
        )
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    let location = first.headers["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    testkit::eventually("the order decided", || async {
        (world.order.http.get(&location).await.json["state"] == "confirmed").then_some(())
    })
    .await;

    let again = place_with_key(&world, "later", &place(1, 2, 3)).await;
    assert_eq!((again.status, &again.json), (202, &first.json));
    assert_eq!(again.headers["location"], location.as_str());
    assert_eq!(world.stock(2).await, 7, "the stock is taken once");
    assert_eq!(orders_in_db(&world), "1");
}

#[tokio::test]
async fn a_key_answered_202_whose_order_was_never_stored_is_placed_by_its_repeat() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;
    // What a lost `order.cmd.place` (a purged stream) leaves: a key answered 202, no order.
    let lost = Uuid::now_v7();
    Postgres::shared().query(
        &world.order_db,
        &format!(
            "insert into idempotency_keys (key, order_id, user_id, product_id, quantity, first_answer)
             values ('lost', '{lost}', 1, 2, 2, 'accepted')"
        ),
    );

    let repeat = place_with_key(&world, "lost", &place(1, 2, 2)).await;

    assert_eq!(repeat.status, 202, "{}", repeat.text);
    assert_eq!(repeat.json["id"], json!(lost.to_string()));
    testkit::eventually("the lost order placed again", || async {
        let order = world.order.http.get(&format!("/order/{lost}")).await;
        (order.json["state"] == "confirmed").then_some(())
    })
    .await;
    assert_eq!(world.stock(2).await, 8);
}

#[tokio::test]
async fn a_key_claimed_by_a_request_that_died_before_publishing_is_placed_by_its_repeat() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;
    // What a replica killed between claiming the key and publishing the order leaves behind.
    let orphan = Uuid::now_v7();
    Postgres::shared().query(
        &world.order_db,
        &format!(
            "insert into idempotency_keys (key, order_id, user_id, product_id, quantity)
             values ('orphan', '{orphan}', 1, 2, 2)"
        ),
    );

    let repeat = place_with_key(&world, "orphan", &place(1, 2, 2)).await;

    assert_eq!(repeat.status, 200, "{}", repeat.text);
    assert_eq!(repeat.json["id"], json!(orphan.to_string()));
    assert_eq!(world.stock(2).await, 8);
}

#[tokio::test]
async fn an_invalid_order_with_a_key_is_400_and_leaves_the_key_free() {
    let world = World::new().await;
    world.user(1).await;
    world.product(2, 10).await;

    let invalid = place_with_key(&world, "k", &place(1, 2, 0)).await;
    let valid = place_with_key(&world, "k", &place(1, 2, 1)).await;

    assert_eq!(invalid.status, 400);
    assert_eq!(valid.status, 200, "{}", valid.text);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let world = World::new().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there"] {
        let reply = place_with_key(&world, key, &place(1, 2, 1)).await;
        assert_eq!(reply.status, 400, "{key:?}: {}", reply.text);
        assert_eq!(reply.json, json!({"status": "Invalid Request"}));
    }
    let twice = reqwest::Client::new()
        .post(format!("http://{}/order", world.order.addr))
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&place(1, 2, 1))
        .send()
        .await
        .expect("request");
    assert_eq!(twice.status(), 400);
    assert_eq!(orders_in_db(&world), "0");
}

#[tokio::test]
async fn the_service_forgets_keys_older_than_a_day_within_seconds_and_keeps_the_others() {
    let world = World::new().await;
    Postgres::shared().query(
        &world.order_db,
        "insert into idempotency_keys (key, order_id, user_id, product_id, quantity, created_at)
         select 'k' || n, gen_random_uuid(), 1, 1, 1,
                now() - case when n % 2 = 0 then interval '25 hours' else interval '23 hours' end
         from generate_series(1, 10) n",
    );
    let pool = sqlx::PgPool::connect(&world.order_db)
        .await
        .expect("connect");
    let kept =
        "select count(*) filter (where created_at > now() - interval '1 day') || ' of ' || count(*)
                from idempotency_keys";

    testkit::eventually("the keys older than a day pruned", || async {
        let kept: String = sqlx::query_scalar(kept).fetch_one(&pool).await.ok()?;
        (kept == "5 of 5").then_some(())
    })
    .await;
}
