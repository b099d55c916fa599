//! SQL on `order_db`. Each function is one statement; the saga's decisions happen inside the
//! `UPDATE` that records a verdict, under the order's row lock.
//!
//! A statement that looks orders up by id and also filters on their state passes the state
//! as a parameter: written as a literal, it lets the planner prefer the partial index of that
//! state (pending orders, say) and scan every row in it, which is cheap while few orders wait
//! and slow exactly when many do.

use std::time::Duration;

use shared::saga::{OrderOutcome, OrderState, PlaceOrder, RejectReason, StockRequest};
use sqlx::{PgConnection, PgExecutor};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// An order as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Order {
    pub id: Uuid,
    pub user_id: i32,
    pub product_id: i32,
    pub quantity: i32,
    /// `pending`, `confirmed` or `rejected`.
    pub state: String,
    /// Why it was rejected (none when it outlived its final deadline).
    pub reason: Option<String>,
    /// The user verdict, once known.
    pub user_valid: Option<bool>,

    /// The stock verdict once known (`reserved`, a rejection reason), or `released` after compensation.
    pub stock: Option<String>,
    /// Where the replica that placed it hears its outcome, if one waits.
    pub notify: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Order {
    /// What the order asks of the product service (to reserve, or release).
    pub fn stock_request(&self) -> StockRequest {
        StockRequest {
            order_id: self.id,
            product_id: self.product_id,
            quantity: self.quantity,
        }
    }

    /// The order as `GET /order/{id}` and `order.query.get` show it.
    pub fn view(&self) -> shared::order::OrderView {
        let timestamp = |at: OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
        shared::order::OrderView {
            id: self.id,
            user_id: self.user_id,
            product_id: self.product_id,
            quantity: self.quantity,
            state: self.state.clone(),
            reason: self.reason.clone(),
            created_at: timestamp(self.created_at),
            updated_at: timestamp(self.updated_at),
        }
    }

    /// How the order ended, once it is decided.
    pub fn outcome(&self) -> Option<OrderOutcome> {
        let state = OrderState::parse(&self.state).filter(|s| *s != OrderState::Pending)?;
        Some(OrderOutcome {
            order_id: self.id,
            user_id: self.user_id,
            product_id: self.product_id,
            quantity: self.quantity,
            state,
            reason: self.reason.as_deref().and_then(RejectReason::parse),
        })
    }
}

/// Stores placed orders as pending; a second delivery of the same order changes nothing.
/// Returns every one of them as it now stands.
#[tracing::instrument(skip_all, fields(orders = orders.len()), err)]
pub async fn insert_pending(
    db: impl PgExecutor<'_>,
    orders: &[PlaceOrder],
) -> sqlx::Result<Vec<Order>> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
    let column = |f: fn(&PlaceOrder) -> i32| orders.iter().map(f).collect::<Vec<_>>();
    let notify: Vec<Option<&str>> = orders.iter().map(|o| o.notify.as_deref()).collect();
    // The rows inserted are not visible to the statement's own scan of `orders`: each order
    // comes back once, inserted or found.
    sqlx::query_as(
        "with inserted as (
             insert into orders (id, user_id, product_id, quantity, notify)
             select * from unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::text[])
             on conflict (id) do nothing
             returning id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at
         )
         select * from inserted
         union all
         select id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at from orders where id = any($1)",
    )
    .bind(&ids)
    .bind(column(|o| o.user_id))
    .bind(column(|o| o.product_id))
    .bind(column(|o| o.quantity))
    .bind(&notify)
    .fetch_all(db)
    .await
}

/// Records the user verdicts (order, valid) of pending orders that have none yet, deciding
/// those whose stock verdict is already in. `updated_at` moves only when an order is decided:
/// the first verdict then changes no indexed column, and PostgreSQL updates the row in place
/// (see migration 0006). Returns the orders it recorded a verdict on; the
/// others were repeats, or decided already. The rows are locked in id order first: the batch of
/// stock verdicts updating some of the same orders at once locks them in the same order, and
/// neither waits for the other in a circle.
#[tracing::instrument(skip_all, fields(verdicts = verdicts.len()), err)]
pub async fn record_user_verdicts(
    db: impl PgExecutor<'_>,
    verdicts: &[(Uuid, bool)],
) -> sqlx::Result<Vec<Order>> {
    let mut verdicts = verdicts.to_vec();
    verdicts.sort_unstable_by_key(|(id, _)| *id);
    let (ids, valid): (Vec<Uuid>, Vec<bool>) = verdicts.into_iter().unzip();
    sqlx::query_as(
        "with locked as (select id from orders where id = any($1) order by id for update)
         update orders o set
             user_valid = v.valid,
             state = case when o.stock is null then 'pending'
                          when v.valid and o.stock = 'reserved' then 'confirmed'
                          else 'rejected' end,
             reason = case when o.stock is null then null
                           when not v.valid then 'user_not_found'
                           when o.stock = 'reserved' then null
                           else o.stock end,
             updated_at = case when o.stock is null then o.updated_at else now() end
         from unnest($1::uuid[], $2::bool[]) as v(id, valid), locked
         where o.id = any($1) and o.id = v.id and o.id = locked.id and o.state = $3 and o.user_valid is null
         returning o.id, o.user_id, o.product_id, o.quantity, o.state, o.reason, o.user_valid, o.stock, o.notify, o.created_at, o.updated_at",
    )
    .bind(&ids)
    .bind(&valid)
    .bind(OrderState::Pending.as_str())
    .fetch_all(db)
    .await
}

/// Records the stock verdicts (order, `reserved`, `product_not_found` or `insufficient_stock`)
/// of pending orders that have none yet, deciding those whose user verdict is already in.
/// Returns the orders it recorded a verdict on.
#[tracing::instrument(skip_all, fields(verdicts = verdicts.len()), err)]
pub async fn record_stock_verdicts(
    db: impl PgExecutor<'_>,
    verdicts: &[(Uuid, &str)],
) -> sqlx::Result<Vec<Order>> {
    let mut verdicts = verdicts.to_vec();
    verdicts.sort_unstable_by_key(|(id, _)| *id);
    let (ids, stock): (Vec<Uuid>, Vec<&str>) = verdicts.into_iter().unzip();
    sqlx::query_as(
        "with locked as (select id from orders where id = any($1) order by id for update)
         update orders o set
             stock = v.stock,
             state = case when o.user_valid is null then 'pending'
                          when o.user_valid and v.stock = 'reserved' then 'confirmed'
                          else 'rejected' end,
             reason = case when o.user_valid is null then null
                           when not o.user_valid then 'user_not_found'
                           when v.stock = 'reserved' then null
                           else v.stock end,
             updated_at = case when o.user_valid is null then o.updated_at else now() end
         from unnest($1::uuid[], $2::text[]) as v(id, stock), locked
         where o.id = any($1) and o.id = v.id and o.id = locked.id and o.state = $3 and o.stock is null
         returning o.id, o.user_id, o.product_id, o.quantity, o.state, o.reason, o.user_valid, o.stock, o.notify, o.created_at, o.updated_at",
    )
    .bind(&ids)
    .bind(&stock)
    .bind(OrderState::Pending.as_str())
    .fetch_all(db)
    .await
}

/// Notes that rejected orders' stock was given back (or, never taken, can no longer be).
#[tracing::instrument(skip_all, fields(orders = ids.len()), err)]
pub async fn mark_released(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query(
        "update orders set stock = 'released', updated_at = now()
         where id = any($1) and state = $2 and (stock is null or stock = 'reserved')",
    )
    .bind(ids)
    .bind(OrderState::Rejected.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// The orders among `ids` that exist.
#[tracing::instrument(skip_all, fields(orders = ids.len()), err)]
pub async fn find_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Order>> {
    sqlx::query_as("select id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at from orders where id = any($1)")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// The order with `id`, if any.
#[tracing::instrument(skip_all, fields(%id), err)]
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Order>> {
    sqlx::query_as(
        "select id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at
         from orders where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Units bought per product over the user's confirmed orders.
#[tracing::instrument(skip_all, fields(user_id), err)]
pub async fn purchased(db: impl PgExecutor<'_>, user_id: i32) -> sqlx::Result<Vec<(i32, i64)>> {
    sqlx::query_as(
        "select product_id, sum(quantity)::bigint from orders
         where user_id = $1 and state = 'confirmed'
         group by product_id order by product_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// How many orders are pending.
pub async fn count_pending(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from orders where state = 'pending'")
        .fetch_one(db)
        .await
}

/// Deletes every order (operator reset).
pub async fn delete_everything(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("truncate orders, idempotency_keys")
        .execute(db)
        .await
        .map(drop)
}

/// Claims (row locks, skipping rows another replica holds) up to `limit` orders still pending
/// with no change for `quiet`, oldest first, for the sweeper.
#[tracing::instrument(skip_all, err)]
pub async fn claim_stale(
    db: &mut PgConnection,
    quiet: Duration,
    limit: i64,
) -> sqlx::Result<Vec<Order>> {
    sqlx::query_as(
        "select id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at
         from orders
         where state = 'pending' and updated_at < now() - make_interval(secs => $1)
         order by updated_at
         limit $2
         for update skip locked",
    )
    .bind(quiet.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Claims up to `limit` rejected orders whose stock has not been confirmed released, with no
/// change for `quiet`: their release is sent again.
#[tracing::instrument(skip_all, err)]
pub async fn claim_unreleased(
    db: &mut PgConnection,
    quiet: Duration,
    limit: i64,
) -> sqlx::Result<Vec<Order>> {
    sqlx::query_as(
        "select id, user_id, product_id, quantity, state, reason, user_valid, stock, notify, created_at, updated_at
         from orders
         where state = 'rejected' and (stock is null or stock = 'reserved')
               and updated_at < now() - make_interval(secs => $1)
         order by updated_at
         limit $2
         for update skip locked",
    )
    .bind(quiet.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Rejects claimed pending orders that outlived their final deadline (no reason: undecided).
#[tracing::instrument(skip_all, err)]
pub async fn expire(db: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("update orders set state = 'rejected', reason = null, updated_at = now() where id = any($1) and state = $2")
        .bind(ids)
        .bind(OrderState::Pending.as_str())
        .execute(db)
        .await
        .map(drop)
}

/// Marks claimed orders as just looked at, so the next re-drive waits a full period.
#[tracing::instrument(skip_all, err)]
pub async fn touch(db: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("update orders set updated_at = now() where id = any($1)")
        .bind(ids)
        .execute(db)
        .await
        .map(drop)
}

/// What claiming an `Idempotency-Key` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free; it now stands for the order given.
    Taken,
    /// An earlier request holds the key, for this order; `accepted` when its first answer was
    /// 202 (repeats answer the same).
    Held {
        /// The order the key stands for.
        order: PlaceOrder,
        /// Whether the key's first answer was 202.
        accepted: bool,
    },
}

/// Claims `key` for `order`. The primary key decides between concurrent requests; the loser
/// reads what the winner stored (a fresh statement, so it sees the winner's commit).
#[tracing::instrument(skip_all, fields(order_id = %order.order_id), err)]
pub async fn claim_key(db: &kit::pool::Pool, key: &str, order: &PlaceOrder) -> sqlx::Result<Claim> {
    let taken: Option<Uuid> = sqlx::query_scalar(
        "insert into idempotency_keys (key, order_id, user_id, product_id, quantity)
         values ($1, $2, $3, $4, $5)
         on conflict (key) do nothing
         returning order_id",
    )
    .bind(key)
    .bind(order.order_id)
    .bind(order.user_id)
    .bind(order.product_id)
    .bind(order.quantity)
    .fetch_optional(db)
    .await?;
    if taken.is_some() {
        return Ok(Claim::Taken);
    }
    let (order_id, user_id, product_id, quantity, accepted) = sqlx::query_as(
        "select order_id, user_id, product_id, quantity, first_answer is not distinct from 'accepted'
         from idempotency_keys where key = $1",
    )
    .bind(key)
    .fetch_one(db)
    .await?;
    Ok(Claim::Held {
        order: PlaceOrder {
            order_id,
            user_id,
            product_id,
            quantity,
            notify: None,
        },
        accepted,
    })
}

/// Records what the request that claimed `key` answered (202 `accepted`, or the outcome).
#[tracing::instrument(skip_all, err)]
pub async fn record_first_answer(
    db: &kit::pool::Pool,
    key: &str,
    accepted: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "update idempotency_keys set first_answer = case when $2 then 'accepted' else 'decided' end
         where key = $1 and first_answer is null",
    )
    .bind(key)
    .bind(accepted)
    .execute(db)
    .await
    .map(drop)
}

/// Forgets keys older than a day: a client retries within minutes, not days. `$1`: most rows
/// at once (see [`kit::db::prune`]).
pub const PRUNE_IDEMPOTENCY_KEYS: &str = "delete from idempotency_keys where key in (
         select key from idempotency_keys where created_at < now() - interval '1 day'
         order by created_at limit $1
     )";
