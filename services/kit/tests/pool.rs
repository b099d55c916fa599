//! The connection pool that keeps connections between statements, against a real PostgreSQL:
//! a statement that completed leaves its connection to the next one as it is; a failed, abandoned
//! or uncommitted one leaves it clean; a connection kept long enough goes back to sqlx, whose
//! lifetime applies; leases wait their turn, time out, and closing does not hang.

use std::time::{Duration, Instant};

use kit::{
    db::Probe,
    pool::{KEEP_AT_MOST, Pool},
};
use sqlx::{Connection, PgPool, postgres::PgPoolOptions};
use testkit::Postgres;

/// A pool of `size` connections to a fresh database with one table, waiting at most `patience`.
async fn pool(size: u32, patience: Duration) -> Pool {
    let sqlx: PgPool = PgPoolOptions::new()
        .max_connections(size)
        .connect_lazy(&Postgres::shared().database())
        .expect("pool");
    sqlx::query("create table items (id int primary key)")
        .execute(&sqlx)
        .await
        .expect("table");
    Pool::new(sqlx, size, Probe::new(), patience, KEEP_AT_MOST)
}

async fn backend(pool: &Pool) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("backend")
}

async fn items(pool: &Pool) -> i64 {
    sqlx::query_scalar("select count(*) from items")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn statements_in_a_row_use_the_one_kept_connection_and_every_kind_of_statement_works() {
    let pool = pool(2, Duration::from_secs(5)).await;
    let first = backend(&pool).await;
    for _ in 0..5 {
        assert_eq!(backend(&pool).await, first);
    }
    let inserted = sqlx::query("insert into items select generate_series(1, 3)")
        .execute(&pool)
        .await
        .expect("insert");
    assert_eq!(inserted.rows_affected(), 3);
    let ids: Vec<i32> = sqlx::query_scalar("select id from items order by id")
        .fetch_all(&pool)
        .await
        .expect("fetch_all");
    assert_eq!(ids, [1, 2, 3]);
    let none: Option<i32> = sqlx::query_scalar("select id from items where id = 9")
        .fetch_optional(&pool)
        .await
        .expect("fetch_optional");
    assert_eq!(none, None);
    assert_eq!(backend(&pool).await, first);
}

#[tokio::test]
async fn a_failed_statement_leaves_a_connection_that_answers_the_next_one() {
    let pool = pool(1, Duration::from_secs(5)).await;
    sqlx::query("insert into items values (1)")
        .execute(&pool)
        .await
        .expect("first");
    let error = sqlx::query("insert into items values (1)")
        .execute(&pool)
        .await
        .expect_err("a duplicate key");
    assert_eq!(kit::db::violated_constraint(&error), Some("items_pkey"));
    assert_eq!(items(&pool).await, 1);
}

#[tokio::test]
async fn a_statement_abandoned_midway_does_not_hand_its_answer_to_the_next_one() {
    let pool = pool(1, Duration::from_secs(5)).await;
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query_scalar::<_, i32>("select 7 from pg_sleep(0.5)").fetch_one(&pool),
    )
    .await;
    assert!(abandoned.is_err(), "the sleep should outlast the timeout");
    let answer: i32 = sqlx::query_scalar("select 42")
        .fetch_one(&pool)
        .await
        .expect("the next statement");
    assert_eq!(answer, 42);
}

#[tokio::test]
async fn a_transaction_dropped_uncommitted_is_rolled_back_at_once_and_holds_no_lock() {
    let database = Postgres::shared().database();
    let sqlx = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy(&database)
        .expect("pool");
    sqlx::query("create table items (id int primary key)")
        .execute(&sqlx)
        .await
        .expect("table");
    let pool = Pool::new(sqlx, 1, Probe::new(), Duration::from_secs(5), KEEP_AT_MOST);
    sqlx::query("insert into items values (1)")
        .execute(&pool)
        .await
        .expect("row");
    {
        let mut lease = pool.acquire().await.expect("lease");
        let mut tx = lease.begin().await.expect("begin");
        sqlx::query("insert into items values (2)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        sqlx::query("update items set id = 10 where id = 1")
            .execute(&mut *tx)
            .await
            .expect("lock the row");
        // Neither committed nor released: an error on the way, say.
    }
    // Seen from outside the pool, with the pool left alone: the row is free and the insert gone,
    // not waiting in a connection kept idle in its transaction for its next statement.
    let mut outside = sqlx::PgConnection::connect(&database)
        .await
        .expect("outside");
    sqlx::query("set lock_timeout = '2s'")
        .execute(&mut outside)
        .await
        .expect("lock timeout");
    let updated = sqlx::query("update items set id = 11 where id = 1")
        .execute(&mut outside)
        .await
        .expect("the row is free");
    assert_eq!(updated.rows_affected(), 1);
    let left: i64 = sqlx::query_scalar("select count(*) from items")
        .fetch_one(&mut outside)
        .await
        .expect("count");
    assert_eq!(left, 1, "the uncommitted insert is gone");
    assert_eq!(items(&pool).await, 1);
}

#[tokio::test]
async fn a_committed_transaction_released_stays_and_its_connection_serves_the_next_lease() {
    let pool = pool(1, Duration::from_secs(5)).await;
    let mut lease = pool.acquire().await.expect("lease");
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *lease)
        .await
        .expect("pid");
    let mut tx = lease.begin().await.expect("begin");
    sqlx::query("insert into items values (1), (2)")
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    lease.release();
    assert_eq!(backend(&pool).await, pid);
    assert_eq!(items(&pool).await, 2);
}

#[tokio::test]
async fn a_lease_beyond_the_size_waits_for_a_release_and_times_out_after_the_acquire_timeout() {
    let pool = pool(1, Duration::from_millis(300)).await;
    let held = pool.acquire().await.expect("the only connection");
    let started = Instant::now();
    let error = pool.acquire().await.expect_err("none left");
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { backend(&pool).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "it waits while the connection is lent"
    );
    let pid: i32 = {
        let mut held = held;
        let pid = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut *held)
            .await
            .expect("pid");
        held.release();
        pid
    };
    assert_eq!(waiting.await.expect("the waiting statement"), pid);
}

#[tokio::test]
async fn closing_the_pool_returns_the_kept_connections_and_refuses_new_leases() {
    let pool = pool(3, Duration::from_secs(5)).await;
    let statements: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { backend(&pool).await })
        })
        .collect();
    for statement in statements {
        statement.await.expect("statement");
    }
    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .expect("close does not wait for connections it keeps itself");
    let error = pool.acquire().await.expect_err("closed");
    assert!(matches!(error, sqlx::Error::PoolClosed), "{error:?}");
}

#[tokio::test]
async fn a_connection_kept_past_the_bound_goes_back_to_sqlx_which_ends_it_past_its_lifetime() {
    // sqlx ends a connection older than 200 ms when it comes back; the pool keeps one 400 ms.
    let sqlx = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(Duration::from_millis(200))
        .connect_lazy(&Postgres::shared().database())
        .expect("pool");
    let pool = Pool::new(
        sqlx,
        1,
        Probe::new(),
        Duration::from_secs(5),
        Duration::from_millis(400),
    );
    let first = backend(&pool).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Past sqlx's lifetime but within the pool's bound: still the kept connection.
    assert_eq!(backend(&pool).await, first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Kept past the bound: the lease hands it back to sqlx, which ends it and opens another.
    let second = backend(&pool).await;
    assert_ne!(second, first);
    assert_eq!(backend(&pool).await, second);
}
