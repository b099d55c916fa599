//! SQL on `user_db`. Each function is one statement; callers pass a pool or a transaction.

use shared::user::{DeleteUser, UpdateUser, User};
use sqlx::PgExecutor;

type Row = (i32, String, String, String);

fn user((id, username, email, password_sha256): Row) -> User {
    User {
        id,
        username,
        email,
        password_sha256,
    }
}

/// The user with `id`, if any.
#[tracing::instrument(skip_all, fields(id), err)]
pub async fn find(db: impl PgExecutor<'_>, id: i32) -> sqlx::Result<Option<User>> {
    let row = sqlx::query_as::<_, Row>(
        "select id, username, email, password_sha256 from users where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(user))
}

/// Inserts `new`; `None` when the id is taken (the primary key decides, not a prior lookup).
#[tracing::instrument(skip_all, fields(id = new.id), err)]
pub async fn insert(db: impl PgExecutor<'_>, new: &User) -> sqlx::Result<Option<User>> {
    let row = sqlx::query_as::<_, Row>(
        "insert into users (id, username, email, password_sha256) values ($1, $2, $3, $4)
         on conflict (id) do nothing
         returning id, username, email, password_sha256",
    )
    .bind(new.id)
    .bind(&new.username)
    .bind(&new.email)
    .bind(&new.password_sha256)
    .fetch_optional(db)
    .await?;
    Ok(row.map(user))
}

/// Applies the fields `change` carries; `None` when the user does not exist.
#[tracing::instrument(skip_all, fields(id = change.id), err)]
pub async fn update(db: impl PgExecutor<'_>, change: &UpdateUser) -> sqlx::Result<Option<User>> {
    let row = sqlx::query_as::<_, Row>(
        "update users set username = coalesce($2, username), email = coalesce($3, email),
                password_sha256 = coalesce($4, password_sha256)
         where id = $1
         returning id, username, email, password_sha256",
    )
    .bind(change.id)
    .bind(&change.username)
    .bind(&change.email)
    .bind(&change.password_sha256)
    .fetch_optional(db)
    .await?;
    Ok(row.map(user))
}

/// Deletes the user if every field matches; true when a row went.
#[tracing::instrument(skip_all, fields(id = old.id), err)]
pub async fn delete_matching(db: impl PgExecutor<'_>, old: &DeleteUser) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "delete from users where id = $1 and username = $2 and email = $3 and password_sha256 = $4",
    )
    .bind(old.id)
    .bind(&old.username)
    .bind(&old.email)
    .bind(&old.password_sha256)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a user with `id` exists.
#[tracing::instrument(skip_all, fields(id), err)]
pub async fn exists(db: impl PgExecutor<'_>, id: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from users where id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
}

/// Deletes every user (operator reset).
pub async fn delete_everything(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("truncate users").execute(db).await.map(drop)
}
