//! The user service's NATS side: `user.cmd.create|update|delete`, `user.query.get`, and the saga
//! worker that answers `user.cmd.validate` on JetStream.

use std::collections::HashSet;

use kit::{
    jetstream::{Delivery, Outbox, Worker},
    nats::{HandlerError, Handlers},
};
use shared::{
    saga::{UserVerdict, ValidateUser, message_id},
    stream, subject,
    user::{DeleteUser, GetUser, UpdateUser, User, UserReply},
};

use uuid::Uuid;

use crate::{AppState, Error, db};

/// Registers the `user` service and its endpoints.
pub async fn start(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "user",
        "Users: create, update, delete, look up",
        state.database.clone(),
        state.metrics.clone(),
    )
    .await?;
    let s = state.clone();
    handlers
        .add(
            "create",
            subject::USER_CREATE,
            "Create a user (id, username, email, password)",
            move |cmd, id| create(s.clone(), cmd, id),
        )
        .await?;
    let s = state.clone();
    handlers
        .add(
            "update",
            subject::USER_UPDATE,
            "Change some fields of a user",
            move |cmd, id| update(s.clone(), cmd, id),
        )
        .await?;
    let s = state.clone();
    handlers
        .add(
            "delete",
            subject::USER_DELETE,
            "Delete a user whose credentials match",
            move |cmd, id| delete(s.clone(), cmd, id),
        )
        .await?;
    handlers
        .add(
            "get",
            subject::USER_GET,
            "One user by id",
            move |query, _| get(state.clone(), query),
        )
        .await?;
    Ok(handlers)
}

fn found(user: Option<User>) -> UserReply {
    user.map_or(UserReply::NotFound, |user| UserReply::Ok { user })
}

/// What a command that did nothing answers: a repeat answers what it answered the first time.
async fn earlier(state: &AppState, command_id: Uuid) -> Result<Option<String>, Error> {
    Ok(db::outcome(&state.pool, command_id).await?)
}

async fn create(state: AppState, new: User, command_id: Uuid) -> Result<UserReply, HandlerError> {
    if let Some(user) = db::insert(&state.pool, &new, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(UserReply::Ok { user });
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        // A repeat of a create that succeeded: it stored exactly these fields.
        Some("ok") => UserReply::Ok { user: new },
        _ => UserReply::Conflict,
    })
}

async fn update(
    state: AppState,
    change: UpdateUser,
    command_id: Uuid,
) -> Result<UserReply, HandlerError> {
    if let Some(user) = db::update(&state.pool, &change, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(UserReply::Ok { user });
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        Some("ok") => found(
            db::find(&state.pool, change.id)
                .await
                .map_err(Error::from)?,
        ),
        _ => UserReply::NotFound,
    })
}

async fn delete(
    state: AppState,
    old: DeleteUser,
    command_id: Uuid,
) -> Result<UserReply, HandlerError> {
    if db::delete_matching(&state.pool, &old, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(UserReply::Deleted);
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        Some("deleted") => UserReply::Deleted,
        _ => UserReply::NotFound,
    })
}

async fn get(state: AppState, query: GetUser) -> Result<UserReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}

/// Starts the `user-validate` saga worker: tells the order saga whether a buyer exists.
pub async fn start_saga(state: AppState) -> anyhow::Result<Worker> {
    kit::jetstream::ensure_stream(&state.js, &stream::USER_SAGA).await?;
    let consumer = kit::jetstream::consumer(&state.js, &stream::USER_VALIDATE).await?;
    let js = state.js.clone();
    Ok(Worker::spawn(
        &js,
        consumer,
        &state.metrics.clone(),
        move |batch| validate(state.clone(), batch),
    ))
}

/// A batch of `user.cmd.validate`: one lookup for all, then `user.evt.validated` or
/// `user.evt.rejected` for each. Reads only, so a redelivery is harmless; the saga keeps the
/// first verdict it records.
async fn validate(state: AppState, batch: Vec<Delivery<ValidateUser>>) -> Result<(), HandlerError> {
    let ids: Vec<i32> = batch.iter().map(|d| d.payload.user_id).collect();
    let existing: HashSet<i32> = db::existing(&state.pool, &ids)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let mut outbox = Outbox::new(&state.js);
    for delivery in &batch {
        let request = delivery.payload;
        let valid = existing.contains(&request.user_id);
        let verdict = UserVerdict {
            order_id: request.order_id,
            user_id: request.user_id,
            valid,
        };
        let subject = if valid {
            subject::USER_VALIDATED
        } else {
            subject::USER_REJECTED
        };
        let id = message_id("user-verdict", request.order_id);
        outbox.send(&delivery.span, subject, &id, &verdict).await;
    }
    outbox
        .stored()
        .await
        .map_err(|error| HandlerError::unavailable(error.to_string()))
}

/// Operator reset: pending validations go, then every user.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::USER_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
