//! SQL on `product_db`. Each function is one statement; callers pass a pool or a transaction.
//!
//! Every command write takes its command id and, in the same statement, acts only if the id is
//! new and records the answer in `command_log`; `None` then means "nothing done": see
//! [`outcome`] for why. Saga writes are keyed by the order id instead.

use shared::{
    product::{DeleteProduct, Product, UpdateProduct},
    saga::StockRequest,
};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

type Row = (i32, String, String, f64, i32);

fn product((id, name, description, price, quantity): Row) -> Product {
    Product {
        id,
        name,
        description,
        price,
        quantity,
    }
}

/// The product with `id`, if any.
#[tracing::instrument(skip_all, fields(id), err)]
pub async fn find(db: impl PgExecutor<'_>, id: i32) -> sqlx::Result<Option<Product>> {
    let row = sqlx::query_as::<_, Row>(
        "select id, name, description, price, quantity from products where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(product))
}

/// What command `command_id` answered, if it ran: `ok`, `conflict`, `not_found` or `deleted`.
#[tracing::instrument(skip_all, fields(%command_id), err)]
pub async fn outcome(db: impl PgExecutor<'_>, command_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("select outcome from command_log where id = $1")
        .bind(command_id)
        .fetch_optional(db)
        .await
}

/// Inserts `new` unless command `command_id` already ran; `None` when the id is taken (the
/// primary key decides, not a prior lookup) or the command is a repeat.
#[tracing::instrument(skip_all, fields(id = new.id, %command_id), err)]
pub async fn insert(
    db: impl PgExecutor<'_>,
    new: &Product,
    command_id: Uuid,
) -> sqlx::Result<Option<Product>> {
    let row = sqlx::query_as::<_, Row>(
        "with fresh as (select not exists (select 1 from command_log where id = $6) as yes),
         inserted as (
             insert into products (id, name, description, price, quantity)
             select $1, $2, $3, $4, $5 from fresh where yes
             on conflict (id) do nothing
             returning id, name, description, price, quantity
         ),
         logged as (
             insert into command_log (id, outcome)
             select $6, case when exists (select 1 from inserted) then 'ok' else 'conflict' end from fresh where yes
             on conflict (id) do nothing
         )
         select * from inserted",
    )
    .bind(new.id)
    .bind(&new.name)
    .bind(&new.description)
    .bind(new.price)
    .bind(new.quantity)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(product))
}

/// Applies the fields `change` carries unless command `command_id` already ran; `None` when the
/// product does not exist or the command is a repeat.
#[tracing::instrument(skip_all, fields(id = change.id, %command_id), err)]
pub async fn update(
    db: impl PgExecutor<'_>,
    change: &UpdateProduct,
    command_id: Uuid,
) -> sqlx::Result<Option<Product>> {
    let row = sqlx::query_as::<_, Row>(
        "with fresh as (select not exists (select 1 from command_log where id = $6) as yes),
         updated as (
             update products set name = coalesce($2, name), description = coalesce($3, description),
                    price = coalesce($4, price), quantity = coalesce($5, quantity)
             where id = $1 and (select yes from fresh)
             returning id, name, description, price, quantity
         ),
         logged as (
             insert into command_log (id, outcome)
             select $6, case when exists (select 1 from updated) then 'ok' else 'not_found' end from fresh where yes
             on conflict (id) do nothing
         )
         select * from updated",
    )
    .bind(change.id)
    .bind(&change.name)
    .bind(&change.description)
    .bind(change.price)
    .bind(change.quantity)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(product))
}

/// Deletes the product if name, price and quantity match, unless command `command_id` already
/// ran; true when a row went.
#[tracing::instrument(skip_all, fields(id = old.id, %command_id), err)]
pub async fn delete_matching(
    db: impl PgExecutor<'_>,
    old: &DeleteProduct,
    command_id: Uuid,
) -> sqlx::Result<bool> {
    let deleted: Option<i32> = sqlx::query_scalar(
        "with fresh as (select not exists (select 1 from command_log where id = $5) as yes),
         deleted as (
             delete from products
             where id = $1 and name = $2 and price = $3 and quantity = $4 and (select yes from fresh)
             returning id
         ),
         logged as (
             insert into command_log (id, outcome)
             select $5, case when exists (select 1 from deleted) then 'deleted' else 'not_found' end from fresh where yes
             on conflict (id) do nothing
         )
         select id from deleted",
    )
    .bind(old.id)
    .bind(&old.name)
    .bind(old.price)
    .bind(old.quantity)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(deleted.is_some())
}

/// A reservation's state, as the saga is told it.
pub type Reservation = (String, Option<String>);

/// Takes `request.quantity` units for the order in one statement: the conditional decrement and
/// the reservation row commit together or not at all. `None` when stock or product is missing;
/// a second attempt for the same order fails on the primary key and takes nothing.
#[tracing::instrument(skip_all, fields(order_id = %request.order_id), err)]
pub async fn reserve(
    db: impl PgExecutor<'_>,
    request: &StockRequest,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "with taken as (
             update products set quantity = quantity - $3 where id = $2 and quantity >= $3 returning id
         )
         insert into reservations (order_id, product_id, quantity, state)
         select $1, $2, $3, 'reserved' from taken
         returning order_id",
    )
    .bind(request.order_id)
    .bind(request.product_id)
    .bind(request.quantity)
    .fetch_optional(db)
    .await
}

/// Records that the order was refused stock, with the reason; `None` if the order already has
/// a row (a concurrent or earlier attempt), whose answer then stands.
#[tracing::instrument(skip_all, fields(order_id = %request.order_id), err)]
pub async fn record_rejection(
    db: impl PgExecutor<'_>,
    request: &StockRequest,
) -> sqlx::Result<Option<Reservation>> {
    sqlx::query_as(
        "insert into reservations (order_id, product_id, quantity, state, reason)
         select $1, $2, $3, 'rejected',
                case when exists (select 1 from products where id = $2) then 'insufficient_stock'
                     else 'product_not_found' end
         on conflict (order_id) do nothing
         returning state, reason",
    )
    .bind(request.order_id)
    .bind(request.product_id)
    .bind(request.quantity)
    .fetch_optional(db)
    .await
}

/// The recorded answer for an order, if any.
#[tracing::instrument(skip_all, fields(%order_id), err)]
pub async fn reservation(
    db: impl PgExecutor<'_>,
    order_id: Uuid,
) -> sqlx::Result<Option<Reservation>> {
    sqlx::query_as("select state, reason from reservations where order_id = $1")
        .bind(order_id)
        .fetch_optional(db)
        .await
}

/// Leaves a `released` row for an order that has none, so that a reserve arriving after its
/// release takes nothing. Waits for a concurrent reserve of the same order to commit first.
#[tracing::instrument(skip_all, fields(order_id = %request.order_id), err)]
pub async fn release_tombstone(db: &mut PgConnection, request: &StockRequest) -> sqlx::Result<()> {
    sqlx::query(
        "insert into reservations (order_id, product_id, quantity, state) values ($1, $2, $3, 'released')
         on conflict (order_id) do nothing",
    )
    .bind(request.order_id)
    .bind(request.product_id)
    .bind(request.quantity)
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a held reservation released and returns its units to stock; false when nothing was held.
#[tracing::instrument(skip_all, fields(%order_id), err)]
pub async fn release(db: &mut PgConnection, order_id: Uuid) -> sqlx::Result<bool> {
    let held: Option<(i32, i32)> = sqlx::query_as(
        "update reservations set state = 'released', updated_at = now()
         where order_id = $1 and state = 'reserved'
         returning product_id, quantity",
    )
    .bind(order_id)
    .fetch_optional(&mut *db)
    .await?;
    let Some((product_id, quantity)) = held else {
        return Ok(false);
    };
    sqlx::query("update products set quantity = quantity + $2 where id = $1")
        .bind(product_id)
        .bind(quantity)
        .execute(db)
        .await?;
    Ok(true)
}

/// Deletes every product and reservation (operator reset).
pub async fn delete_everything(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("truncate products, reservations, command_log")
        .execute(db)
        .await
        .map(drop)
}
