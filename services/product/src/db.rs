//! SQL on `product_db`. Each function is one statement; callers pass a pool or a transaction.

use shared::product::{DeleteProduct, Product, UpdateProduct};
use sqlx::PgExecutor;

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

/// Inserts `new`; `None` when the id is taken (the primary key decides, not a prior lookup).
#[tracing::instrument(skip_all, fields(id = new.id), err)]
pub async fn insert(db: impl PgExecutor<'_>, new: &Product) -> sqlx::Result<Option<Product>> {
    let row = sqlx::query_as::<_, Row>(
        "insert into products (id, name, description, price, quantity) values ($1, $2, $3, $4, $5)
         on conflict (id) do nothing
         returning id, name, description, price, quantity",
    )
    .bind(new.id)
    .bind(&new.name)
    .bind(&new.description)
    .bind(new.price)
    .bind(new.quantity)
    .fetch_optional(db)
    .await?;
    Ok(row.map(product))
}

/// Applies the fields `change` carries; `None` when the product does not exist.
#[tracing::instrument(skip_all, fields(id = change.id), err)]
pub async fn update(
    db: impl PgExecutor<'_>,
    change: &UpdateProduct,
) -> sqlx::Result<Option<Product>> {
    let row = sqlx::query_as::<_, Row>(
        "update products set name = coalesce($2, name), description = coalesce($3, description),
                price = coalesce($4, price), quantity = coalesce($5, quantity)
         where id = $1
         returning id, name, description, price, quantity",
    )
    .bind(change.id)
    .bind(&change.name)
    .bind(&change.description)
    .bind(change.price)
    .bind(change.quantity)
    .fetch_optional(db)
    .await?;
    Ok(row.map(product))
}

/// Deletes the product if name, price and quantity match; true when a row went.
#[tracing::instrument(skip_all, fields(id = old.id), err)]
pub async fn delete_matching(db: impl PgExecutor<'_>, old: &DeleteProduct) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "delete from products where id = $1 and name = $2 and price = $3 and quantity = $4",
    )
    .bind(old.id)
    .bind(&old.name)
    .bind(old.price)
    .bind(old.quantity)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
