//! Pruning, against a real PostgreSQL with the user service's migrations: commands past their
//! use go, however many there are (a chunk at a time), and recent ones stay. (The order
//! service's idempotency keys: `services/order/tests/api/idempotency.rs`.)

use std::time::Duration;

use kit::{db::Probe, pool::Pool};
use sqlx::PgPool;
use testkit::Postgres;

/// A fresh database with the user service's migrations applied.
async fn user_database() -> Pool {
    let pool = PgPool::connect(&Postgres::shared().database())
        .await
        .expect("connect");
    sqlx::migrate!("../../migrations/user")
        .run(&pool)
        .await
        .expect("migrate");
    Pool::new(
        pool,
        2,
        Probe::new(),
        Duration::from_secs(5),
        kit::pool::KEEP_AT_MOST,
    )
}

#[tokio::test]
async fn pruning_the_command_log_deletes_every_old_command_in_chunks_and_keeps_the_recent_ones() {
    let pool = user_database().await;
    let old = 2 * kit::db::PRUNE_CHUNK + 500;
    sqlx::query(
        "insert into command_log (id, outcome, at)
         select gen_random_uuid(), 'ok', now() - interval '11 minutes' from generate_series(1, $1)",
    )
    .bind(old)
    .execute(&pool)
    .await
    .expect("old commands");
    sqlx::query(
        "insert into command_log (id, outcome, at)
         select gen_random_uuid(), 'ok', now() - interval '9 minutes' from generate_series(1, 7)",
    )
    .execute(&pool)
    .await
    .expect("recent commands");

    let deleted = kit::db::prune(&pool, kit::db::PRUNE_COMMAND_LOG)
        .await
        .expect("prune");

    assert_eq!(deleted, old.unsigned_abs());
    let left: i64 = sqlx::query_scalar("select count(*) from command_log")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 7);
    assert_eq!(
        kit::db::prune(&pool, kit::db::PRUNE_COMMAND_LOG)
            .await
            .expect("prune again"),
        0
    );
}
