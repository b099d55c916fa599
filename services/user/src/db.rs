//! SQL on `user_db`. Each function is one statement; callers pass a pool or a transaction.
//!
//! Writes come in batches of commands, each with its command id: in the same statement, each
//! acts only if its id is new, and records its answer in `command_log`. A command that did
//! nothing learns why from [`outcomes`].

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

/// The users among `ids` that exist.
#[tracing::instrument(skip_all, fields(ids = ids.len()), err)]
pub async fn find_many(db: impl PgExecutor<'_>, ids: &[i32]) -> sqlx::Result<Vec<User>> {
    let rows = sqlx::query_as::<_, Row>(
        "select id, username, email, password_sha256 from users where id = any($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(user).collect())
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

/// Inserts the users of a batch of create commands (`(user, command id)`, no two with the same
/// user id) in one statement, each unless its command already ran, and records each command's
/// answer in `command_log`. Returns the commands that inserted their user; the others found
/// the id taken (the primary key decides, not a prior lookup) or are repeats: see [`outcomes`].
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn insert(
    db: impl PgExecutor<'_>,
    commands: &[(&User, Uuid)],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::uuid[])
                 as t(id, username, email, password_sha256, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         inserted as (
             insert into users (id, username, email, password_sha256)
             select id, username, email, password_sha256 from fresh
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
    .bind(commands.iter().map(|(u, _)| u.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.username.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.email.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.password_sha256.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await
}

/// Applies a batch of update commands (no two on the same user) in one statement, each the
/// fields it carries and unless its command already ran. Returns the users updated, with the
/// command that updated each; the others' users do not exist, or they are repeats.
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn update(
    db: impl PgExecutor<'_>,
    commands: &[(&UpdateUser, Uuid)],
) -> sqlx::Result<Vec<(Uuid, User)>> {
    let rows = sqlx::query_as::<_, (Uuid, i32, String, String, String)>(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::uuid[])
                 as t(id, username, email, password_sha256, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         locked as (
             select id from users where id in (select id from fresh) order by id for update
         ),
         updated as (
             update users u set username = coalesce(f.username, u.username),
                    email = coalesce(f.email, u.email),
                    password_sha256 = coalesce(f.password_sha256, u.password_sha256)
             from fresh f join locked l on l.id = f.id where u.id = any($1) and u.id = f.id
             returning u.id, u.username, u.email, u.password_sha256
         ),
         logged as (
             insert into command_log (id, outcome)
             select command_id, case when id in (select id from updated) then 'ok' else 'not_found' end
             from fresh
             on conflict (id) do nothing
         )
         select f.command_id, u.id, u.username, u.email, u.password_sha256
         from updated u join fresh f on f.id = u.id",
    )
    .bind(commands.iter().map(|(c, _)| c.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.username.as_deref()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.email.as_deref()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(c, _)| c.password_sha256.as_deref()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(command_id, id, username, email, password_sha256)| {
            (command_id, user((id, username, email, password_sha256)))
        })
        .collect())
}

/// Deletes, for a batch of delete commands (no two on the same user), each user whose every
/// field matches, unless its command already ran. Returns the commands that deleted a user.
#[tracing::instrument(skip_all, fields(commands = commands.len()), err)]
pub async fn delete_matching(
    db: impl PgExecutor<'_>,
    commands: &[(&DeleteUser, Uuid)],
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "with input as (
             select * from unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::uuid[])
                 as t(id, username, email, password_sha256, command_id)
         ),
         fresh as (
             select * from input where not exists (select 1 from command_log c where c.id = input.command_id)
         ),
         locked as (
             select id from users where id in (select id from fresh) order by id for update
         ),
         deleted as (
             delete from users u using fresh f, locked l
             where u.id = any($1) and u.id = f.id and l.id = f.id and u.username = f.username and u.email = f.email
                   and u.password_sha256 = f.password_sha256
             returning u.id
         ),
         logged as (
             insert into command_log (id, outcome)
             select command_id, case when id in (select id from deleted) then 'deleted' else 'not_found' end
             from fresh
             on conflict (id) do nothing
         )
         select command_id from fresh where id in (select id from deleted)",
    )
    .bind(commands.iter().map(|(u, _)| u.id).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.username.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.email.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(u, _)| u.password_sha256.as_str()).collect::<Vec<_>>())
    .bind(commands.iter().map(|(_, id)| *id).collect::<Vec<_>>())
    .fetch_all(db)
    .await
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
