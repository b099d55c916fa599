//! SQL on `product_db`. Each function is one statement; callers pass a pool or a transaction.
//!
//! Every command write takes its command id and, in the same statement, acts only if the id is
//! new and records the answer in `command_log`; `None` then means "nothing done": see
//! [`outcome`] for why. Saga writes are keyed by the order id instead.

use shared::{
    product::{DeleteProduct, Product, UpdateProduct},
    saga::RejectReason,
};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::stock::{Recorded, Reservation};

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

/// Locks the products among `ids` that exist, in id order (so that two batches never wait
/// on each other in a circle), until the transaction ends, and returns their stock.
#[tracing::instrument(skip_all, fields(products = ids.len()), err)]
pub async fn lock_stock(db: &mut PgConnection, ids: &[i32]) -> sqlx::Result<Vec<(i32, i32)>> {
    sqlx::query_as("select id, quantity from products where id = any($1) order by id for update")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// The reservations stored for the orders among `order_ids`.
#[tracing::instrument(skip_all, fields(orders = order_ids.len()), err)]
pub async fn reservations(
    db: &mut PgConnection,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, Reservation)>> {
    let rows: Vec<(Uuid, i32, i32, String, Option<String>)> = sqlx::query_as(
        "select order_id, product_id, quantity, state, reason from reservations where order_id = any($1)",
    )
    .bind(order_ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(order_id, product_id, quantity, state, reason)| {
            let recorded = match (
                state.as_str(),
                reason.as_deref().and_then(RejectReason::parse),
            ) {
                ("reserved", _) => Recorded::Reserved,
                ("rejected", Some(reason)) => Recorded::Rejected(reason),
                _ => Recorded::Released,
            };
            let reservation = Reservation {
                product_id,
                quantity,
                recorded,
            };
            (order_id, reservation)
        })
        .collect())
}

/// Writes what a batch of stock requests changed, in one statement: the reservations it made
/// (`created`), the stored ones it released, and the new stock of the products it changed,
/// which this transaction has locked. Returns the orders whose new row went in; another
/// transaction stored the others' first (an order whose product does not exist locks nothing),
/// and their stored answer stands.
#[tracing::instrument(skip_all, fields(created = created.len()), err)]
pub async fn write_batch(
    db: &mut PgConnection,
    created: &[(Uuid, Reservation)],
    released: &[Uuid],
    stock: &[(i32, i32)],
) -> sqlx::Result<Vec<Uuid>> {
    let column = |f: fn(&(Uuid, Reservation)) -> i32| created.iter().map(f).collect::<Vec<_>>();
    let order_ids: Vec<Uuid> = created.iter().map(|(id, _)| *id).collect();
    let states: Vec<&str> = created.iter().map(|(_, r)| r.recorded.state()).collect();
    let reasons: Vec<Option<&str>> = created.iter().map(|(_, r)| r.recorded.reason()).collect();
    let (products, units): (Vec<i32>, Vec<i32>) = stock.iter().copied().unzip();
    sqlx::query_scalar(
        "with released as (
             update reservations set state = 'released', updated_at = now()
             where order_id = any($6) and state = 'reserved'
         ),
         stocked as (
             update products p set quantity = s.units
             from unnest($7::int[], $8::int[]) as s(id, units) where p.id = s.id
         )
         insert into reservations (order_id, product_id, quantity, state, reason)
         select * from unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::text[])
         on conflict (order_id) do nothing
         returning order_id",
    )
    .bind(&order_ids)
    .bind(column(|(_, r)| r.product_id))
    .bind(column(|(_, r)| r.quantity))
    .bind(&states)
    .bind(&reasons)
    .bind(released)
    .bind(&products)
    .bind(&units)
    .fetch_all(db)
    .await
}

/// Deletes every product and reservation (operator reset).
pub async fn delete_everything(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("truncate products, reservations, command_log")
        .execute(db)
        .await
        .map(drop)
}
