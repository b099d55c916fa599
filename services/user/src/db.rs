//! SQL on `user_db`. Each function is one statement; callers pass a pool or a transaction.
//!
//! Every write takes its command id and, in the same statement, acts only if the id is new and
//! records the answer in `command_log`; `None` then means "nothing done": see [`outcome`] for why.

use shared::user::{DeleteUser, UpdateUser, User};
use sqlx::PgExecutor;
use uuid::Uuid;

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
    new: &User,
    command_id: Uuid,
) -> sqlx::Result<Option<User>> {
    let row = sqlx::query_as::<_, Row>(
        "with fresh as (select not exists (select 1 from command_log where id = $5) as yes),
         inserted as (
             insert into users (id, username, email, password_sha256)
             select $1, $2, $3, $4 from fresh where yes
             on conflict (id) do nothing
             returning id, username, email, password_sha256
         ),
         logged as (
             insert into command_log (id, outcome)
             select $5, case when exists (select 1 from inserted) then 'ok' else 'conflict' end from fresh where yes
             on conflict (id) do nothing
         )
         select * from inserted",
    )
    .bind(new.id)
    .bind(&new.username)
    .bind(&new.email)
    .bind(&new.password_sha256)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(user))
}

/// Applies the fields `change` carries unless command `command_id` already ran; `None` when the
/// user does not exist or the command is a repeat.
#[tracing::instrument(skip_all, fields(id = change.id, %command_id), err)]
pub async fn update(
    db: impl PgExecutor<'_>,
    change: &UpdateUser,
    command_id: Uuid,
) -> sqlx::Result<Option<User>> {
    let row = sqlx::query_as::<_, Row>(
        "with fresh as (select not exists (select 1 from command_log where id = $5) as yes),
         updated as (
             update users set username = coalesce($2, username), email = coalesce($3, email),
                    password_sha256 = coalesce($4, password_sha256)
             where id = $1 and (select yes from fresh)
             returning id, username, email, password_sha256
         ),
         logged as (
             insert into command_log (id, outcome)
             select $5, case when exists (select 1 from updated) then 'ok' else 'not_found' end from fresh where yes
             on conflict (id) do nothing
         )
         select * from updated",
    )
    .bind(change.id)
    .bind(&change.username)
    .bind(&change.email)
    .bind(&change.password_sha256)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(user))
}

/// Deletes the user if every field matches, unless command `command_id` already ran; true
/// when a row went.
#[tracing::instrument(skip_all, fields(id = old.id, %command_id), err)]
pub async fn delete_matching(
    db: impl PgExecutor<'_>,
    old: &DeleteUser,
    command_id: Uuid,
) -> sqlx::Result<bool> {
    let deleted: Option<i32> = sqlx::query_scalar(
        "with fresh as (select not exists (select 1 from command_log where id = $5) as yes),
         deleted as (
             delete from users
             where id = $1 and username = $2 and email = $3 and password_sha256 = $4 and (select yes from fresh)
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
    .bind(&old.username)
    .bind(&old.email)
    .bind(&old.password_sha256)
    .bind(command_id)
    .fetch_optional(db)
    .await?;
    Ok(deleted.is_some())
}

/// The users among `ids` that exist.
#[tracing::instrument(skip_all, fields(ids = ids.len()), err)]
pub async fn existing(db: impl PgExecutor<'_>, ids: &[i32]) -> sqlx::Result<Vec<i32>> {
    sqlx::query_scalar("select id from users where id = any($1)")
        .bind(ids)
        .fetch_all(db)
        .await
}

/// Deletes every user (operator reset).
pub async fn delete_everything(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("truncate users, command_log")
        .execute(db)
        .await
        .map(drop)
}
