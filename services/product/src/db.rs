//! SQL on `product_db`. Each function is one statement; callers pass a pool or a transaction.
//!
//! Writes of commands come in batches, each command with its command id: in the same statement,
//! each acts only if its id is new, and records its answer in `command_log`; a command that did
//! nothing learns why from [`outcomes`]. Saga writes are keyed by the order id instead.

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

/// The products among `ids` that exist.
#[tracing::instrument(skip_all, fields(ids = ids.len()), err)]
pub async fn find_many(db: impl PgExecutor<'_>, ids: &[i32]) -> sqlx::Result<Vec<Product>> {
    let rows = sqlx::query_as::<_, Row>(
        "select id, name, description, price, quantity from products where id = any($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(product).collect())
}

/// What the commands among `command_ids` answered, for those that ran: (id, `ok`,
/// `conflict`, `not_found` or `deleted`).
#[tracing::instrument(skip_all, fields(commands = command_ids.len()), err)]
pub async fn outcomes(
    db: impl PgExecutor<'_>,
    command_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, String)>> {
    sqlx::query_as("select id, outcome from command_log where id = any($1)")
        .bind(command_ids)
        .fetch_all(db)
        .await
}

/// Inserts the products of a batch of create commands (`(product, command id)`, no two with the
/// same product id) in one statement, each unless its command already ran, and records each
/// command's answer in `command_log`. Returns the commands that inserted their product; the
/// others found the id taken (the primary key decides) or are repeats: see [`outcomes`].
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn insert(
    db: impl PgExecutor<'_>,
    commands: &[(&Product, Uuid)],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::uuid[])
                 as t(id, name, description, price, quantity, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         inserted as (
             insert into products (id, name, description, price, quantity)
             select id, name, description, price, quantity from fresh
             on conflict (id) do nothing
             returning id
         ),
         logged as (
             insert into command_log (id, outcome)
             select command_id, case when id in (select id from inserted) then 'ok' else 'conflict' end
             from fresh
             on conflict (id) do nothing
         )
         select command_id from fresh where id in (select id from inserted)",
    )
    .bind(commands.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.name.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.description.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.price).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.quantity).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await
}

/// Applies a batch of update commands (no two on the same product) in one statement, each the
/// fields it carries and unless its command already ran. Returns the products updated, with
/// the command that updated each.
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn update(
    db: impl PgExecutor<'_>,
    commands: &[(&UpdateProduct, Uuid)],
) -> sqlx::Result<Vec<(Uuid, Product)>> {
    let rows = sqlx::query_as::<_, (Uuid, i32, String, String, f64, i32)>(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::uuid[])
                 as t(id, name, description, price, quantity, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         locked as (
             select id from products where id in (select id from fresh) order by id for update
         ),
         updated as (
             update products p set name = coalesce(f.name, p.name),
                    description = coalesce(f.description, p.description),
                    price = coalesce(f.price, p.price), quantity = coalesce(f.quantity, p.quantity)
             from fresh f join locked l on l.id = f.id where p.id = any($1) and p.id = f.id
             returning p.id, p.name, p.description, p.price, p.quantity
         ),
         logged as (
             insert into command_log (id, outcome)
             select command_id, case when id in (select id from updated) then 'ok' else 'not_found' end
             from fresh
             on conflict (id) do nothing
         )
         select f.command_id, p.id, p.name, p.description, p.price, p.quantity
         from updated p join fresh f on f.id = p.id",
    )
    .bind(commands.iter().map(|(c, _)| c.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.name.as_deref()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.description.as_deref()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.price).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.quantity).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(command_id, id, name, description, price, quantity)| {
            (
                command_id,
                product((id, name, description, price, quantity)),
            )
        })
        .collect())
}

/// Deletes, for a batch of delete commands (no two on the same product), each product whose
/// name, price and quantity match, unless its command already ran. Returns the commands that
/// deleted a product.
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn delete_matching(
    db: impl PgExecutor<'_>,
    commands: &[(&DeleteProduct, Uuid)],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::float8[], $4::int[], $5::uuid[])
                 as t(id, name, price, quantity, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         locked as (
             select id from products where id in (select id from fresh) order by id for update
         ),
         deleted as (
             delete from products p using fresh f, locked l
             where p.id = any($1) and p.id = f.id and l.id = f.id and p.name = f.name and p.price = f.price and p.quantity = f.quantity
             returning p.id
         ),
         logged as (
             insert into command_log (id, outcome)
             select command_id, case when id in (select id from deleted) then 'deleted' else 'not_found' end
             from fresh
             on conflict (id) do nothing
         )
         select command_id from fresh where id in (select id from deleted)",
    )
    .bind(commands.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.name.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.price).collect::<Vec<_>>())
    .bind(commands.iter().map(|(p, _)| p.quantity).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await
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
             where order_id = any($6) and state = $9
         ),
         stocked as (
             update products p set quantity = s.units
             from unnest($7::int[], $8::int[]) as s(id, units) where p.id = any($7) and p.id = s.id
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
    // A parameter, not a literal: `state = 'reserved'` would let the planner prefer the index
    // of held reservations and scan every one of them, which grows with every confirmed order.
    .bind(Recorded::Reserved.state())
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
